"""ResNet-50/101 trunks (Bottleneck, expansion 4) and ResNet-18/34 trunks (BasicBlock, expansion 1)
with torchvision parameter names, for segmentation.

Parameter names are torchvision's (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``,
``layer1.0.downsample.0.weight``, ``layer1.0.downsample.1.*``, ...) so that a local torchvision
ImageNet checkpoint loads without renaming; there is no ``fc`` (classification head), so such a
checkpoint's ``fc.*`` keys are reported as unexpected and ignored.

``output_stride`` 32 / 16 / 8 follows torchvision's ``replace_stride_with_dilation``: in a dilated
layer the stride of the first block's 3x3 conv (``conv2``) and of its downsample is set to 1, the
first block keeps the previous dilation and the following blocks use the new one (x2 per layer).
This changes no parameter shapes, so ImageNet weights still load.

BasicBlock trunks (ResNet-18/34) support ``output_stride`` 32 only, as torchvision's BasicBlock
rejects dilation.

``forward`` returns a dict ``{"layer1": stride 4, "layer2": stride 8, "layer3": ..., "layer4": ...}``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Type, Union

from torch import Tensor, nn

RESNET_LAYERS: Dict[str, List[int]] = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}
#: BasicBlock trunks (torchvision ``resnet18`` / ``resnet34``), kept apart from the Bottleneck ones above.
RESNET_BASIC_LAYERS: Dict[str, List[int]] = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}

# output_stride -> replace_stride_with_dilation for (layer2, layer3, layer4)
_DILATION_FLAGS = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet V1.5: stride on the 3x3 conv), expansion 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1, bn_momentum: float = 0.1) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv3x3(stride)-BN-ReLU-conv3x3-BN + identity, ReLU; expansion 1.

    Parameter names ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.{0,1}`` as in torchvision.
    Like torchvision, dilation > 1 is rejected (``ValueError``).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1, bn_momentum: float = 0.1) -> None:
        super().__init__()
        if dilation > 1:
            raise ValueError("BasicBlock (resnet18/resnet34) supports no dilation: use output_stride 32")
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


ResNetBlock = Union[Type[Bottleneck], Type[BasicBlock]]


class ResNetBackbone(nn.Module):
    """ResNet trunk (stem + layer1..layer4, no avgpool/fc).

    Args:
        layers: blocks per stage, e.g. ``[3, 4, 23, 3]`` (see :data:`RESNET_LAYERS`).
        output_stride: 32 (plain), 16 (layer4 dilated) or 8 (layer3 and layer4 dilated).
        in_chans: input image channels.
        bn_momentum: BatchNorm momentum.
        block: :class:`Bottleneck` (default; ResNet-50/101) or :class:`BasicBlock` (ResNet-18/34,
            ``output_stride`` 32 only).

    Attributes: ``out_channels`` (dict of stage -> channels), ``strides`` (stage -> stride).
    """

    def __init__(self, layers: List[int], output_stride: int = 32, in_chans: int = 3,
                 bn_momentum: float = 0.1, block: ResNetBlock = Bottleneck) -> None:
        super().__init__()
        if output_stride not in _DILATION_FLAGS:
            raise ValueError(f"output_stride must be 8, 16 or 32 (got {output_stride!r})")
        self.output_stride = output_stride
        self.block = block
        self._bn_momentum = bn_momentum
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        flags = _DILATION_FLAGS[output_stride]
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2, dilate=flags[0])
        self.layer3 = self._make_layer(256, layers[2], stride=2, dilate=flags[1])
        self.layer4 = self._make_layer(512, layers[3], stride=2, dilate=flags[2])
        e = block.expansion
        self.out_channels = {"layer1": 64 * e, "layer2": 128 * e, "layer3": 256 * e, "layer4": 512 * e}
        self.strides = {"layer1": 4, "layer2": 8, "layer3": min(16, output_stride), "layer4": output_stride}

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        block, out = self.block, planes * self.block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out, momentum=self._bn_momentum),
            )
        mods = [block(self.inplanes, planes, stride, downsample, previous_dilation, self._bn_momentum)]
        self.inplanes = out
        for _ in range(1, blocks):
            mods.append(block(self.inplanes, planes, dilation=self.dilation, bn_momentum=self._bn_momentum))
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return {"layer1": c1, "layer2": c2, "layer3": c3, "layer4": c4}


def resnet50(output_stride: int = 32, in_chans: int = 3, bn_momentum: float = 0.1) -> ResNetBackbone:
    return ResNetBackbone(RESNET_LAYERS["resnet50"], output_stride, in_chans, bn_momentum)


def resnet101(output_stride: int = 32, in_chans: int = 3, bn_momentum: float = 0.1) -> ResNetBackbone:
    return ResNetBackbone(RESNET_LAYERS["resnet101"], output_stride, in_chans, bn_momentum)


def resnet18(output_stride: int = 32, in_chans: int = 3, bn_momentum: float = 0.1) -> ResNetBackbone:
    """torchvision ResNet-18 trunk (BasicBlock [2, 2, 2, 2], 64/128/256/512 channels); output_stride 32 only."""
    return ResNetBackbone(RESNET_BASIC_LAYERS["resnet18"], output_stride, in_chans, bn_momentum, block=BasicBlock)


def resnet34(output_stride: int = 32, in_chans: int = 3, bn_momentum: float = 0.1) -> ResNetBackbone:
    """torchvision ResNet-34 trunk (BasicBlock [3, 4, 6, 3], 64/128/256/512 channels); output_stride 32 only."""
    return ResNetBackbone(RESNET_BASIC_LAYERS["resnet34"], output_stride, in_chans, bn_momentum, block=BasicBlock)


#: Trunk factories by name (all with torchvision parameter names).
RESNET_TRUNKS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101}
