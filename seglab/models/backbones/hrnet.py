"""HRNetV2 backbone (Wang et al., "Deep High-Resolution Representation Learning", TPAMI 2020).

The structure and the sub-module names follow the official HRNet-semantic-segmentation code
(``conv1, bn1, conv2, bn2, layer1, transition1, stage2, ..., stage4``; blocks ``conv1/bn1/...``,
``downsample``; modules ``branches`` / ``fuse_layers``), so official ImageNet-pretrained state
dicts load into :class:`HRNetBackbone` -- and into the segmentation models, which subclass it --
without renaming. Branch ``i`` of stage ``s`` runs at
stride ``4 * 2**i``; the backbone returns the four stage-4 branches ``[(B, C, H/4, W/4),
(B, 2C, H/8, W/8), (B, 4C, H/16, W/16), (B, 8C, H/32, W/32)]``.

The stage specs in :data:`HRNET_SPECS` are the ``MODEL.EXTRA.STAGE{1..4}`` entries of the
official Cityscapes yaml files (``seg_hrnet_w18_small_v1/v2``, ``seg_hrnet_w18/w32/w48``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple, Type

import torch.nn.functional as F
from torch import Tensor, nn

from seglab.models.backbones.resnet import Bottleneck  # the same block (dilation 1), same names

STEM_CHANNELS = 64


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet basic block)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


BLOCKS: Dict[str, Type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass(frozen=True)
class StageSpec:
    """One ``STAGEk`` entry: modules, block type, blocks per branch, channels per branch."""

    num_modules: int
    block: str
    num_blocks: Tuple[int, ...]
    num_channels: Tuple[int, ...]

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        return tuple(c * BLOCKS[self.block].expansion for c in self.num_channels)


@dataclass(frozen=True)
class HRNetSpec:
    stage1: StageSpec
    stage2: StageSpec
    stage3: StageSpec
    stage4: StageSpec


def _wide(c: int) -> HRNetSpec:
    """HRNetV2-W{c}: stage1 4 bottlenecks of 64; stages 2-4 have 1/4/3 modules of 4 basic blocks."""
    return HRNetSpec(
        stage1=StageSpec(1, "bottleneck", (4,), (64,)),
        stage2=StageSpec(1, "basic", (4, 4), (c, 2 * c)),
        stage3=StageSpec(4, "basic", (4, 4, 4), (c, 2 * c, 4 * c)),
        stage4=StageSpec(3, "basic", (4, 4, 4, 4), (c, 2 * c, 4 * c, 8 * c)),
    )


HRNET_SPECS: Dict[str, HRNetSpec] = {
    "hrnet_w18_small_v1": HRNetSpec(
        stage1=StageSpec(1, "bottleneck", (1,), (32,)),
        stage2=StageSpec(1, "basic", (2, 2), (16, 32)),
        stage3=StageSpec(1, "basic", (2, 2, 2), (16, 32, 64)),
        stage4=StageSpec(1, "basic", (2, 2, 2, 2), (16, 32, 64, 128)),
    ),
    "hrnet_w18_small_v2": HRNetSpec(
        stage1=StageSpec(1, "bottleneck", (2,), (64,)),
        stage2=StageSpec(1, "basic", (2, 2), (18, 36)),
        stage3=StageSpec(3, "basic", (2, 2, 2), (18, 36, 72)),
        stage4=StageSpec(2, "basic", (2, 2, 2, 2), (18, 36, 72, 144)),
    ),
    "hrnet_w18": _wide(18),
    "hrnet_w32": _wide(32),
    "hrnet_w48": _wide(48),
}


def make_layer(block: str, inplanes: int, planes: int, num_blocks: int, stride: int = 1,
               bn_momentum: float = 0.1) -> nn.Sequential:
    """``num_blocks`` blocks; the first gets a 1x1 conv + BN shortcut if the shape changes."""
    cls = BLOCKS[block]
    downsample = None
    if stride != 1 or inplanes != planes * cls.expansion:
        downsample = nn.Sequential(conv1x1(inplanes, planes * cls.expansion, stride),
                                   nn.BatchNorm2d(planes * cls.expansion, momentum=bn_momentum))
    layers = [cls(inplanes, planes, stride, downsample, bn_momentum=bn_momentum)]
    layers += [cls(planes * cls.expansion, planes, bn_momentum=bn_momentum) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks followed by multi-resolution fusion.

    Output ``i`` is ``ReLU(sum_j f_ij(x_j))`` with ``f_ii`` the identity, ``f_ij`` (j > i) a
    1x1 conv + BN then bilinear upsampling to branch ``i``'s size, and ``f_ij`` (j < i) ``i - j``
    stride-2 3x3 conv + BN (ReLU between them, not after the last).
    """

    def __init__(self, block: str, num_blocks: Sequence[int], in_channels: Sequence[int],
                 num_channels: Sequence[int], bn_momentum: float = 0.1, align_corners: bool = True) -> None:
        super().__init__()
        self.num_branches = len(num_channels)
        self.align_corners = align_corners
        expansion = BLOCKS[block].expansion
        self.branches = nn.ModuleList(
            make_layer(block, in_channels[i], num_channels[i], num_blocks[i], bn_momentum=bn_momentum)
            for i in range(self.num_branches)
        )
        self.out_channels = [c * expansion for c in num_channels]
        self.fuse_layers = self._make_fuse_layers(self.out_channels, bn_momentum) if self.num_branches > 1 else None

    @staticmethod
    def _make_fuse_layers(channels: List[int], bn_momentum: float) -> nn.ModuleList:
        n = len(channels)
        fuse_layers = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(conv1x1(channels[j], channels[i]),
                                             nn.BatchNorm2d(channels[i], momentum=bn_momentum)))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out_ch = channels[i] if last else channels[j]
                        step = [conv3x3(channels[j], out_ch, stride=2), nn.BatchNorm2d(out_ch, momentum=bn_momentum)]
                        if not last:
                            step.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*step))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(row)
        return fuse_layers

    def forward(self, xs: List[Tensor]) -> List[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:
                    z = F.interpolate(z, size=size, mode="bilinear", align_corners=self.align_corners)
                y = y + z
            fused.append(F.relu(y))
        return fused


def make_transition(pre_channels: Sequence[int], cur_channels: Sequence[int],
                    bn_momentum: float = 0.1) -> nn.ModuleList:
    """Maps stage ``s`` outputs to stage ``s+1`` inputs.

    Existing branches get a 3x3 conv + BN + ReLU where the width changes (identity otherwise);
    each new branch is made from the lowest-resolution input by stride-2 3x3 conv + BN + ReLU
    steps (official layout: the last step changes the width).
    """
    n_pre = len(pre_channels)
    layers = nn.ModuleList()
    for i, out_ch in enumerate(cur_channels):
        if i < n_pre:
            if pre_channels[i] != out_ch:
                layers.append(nn.Sequential(conv3x3(pre_channels[i], out_ch),
                                            nn.BatchNorm2d(out_ch, momentum=bn_momentum), nn.ReLU(inplace=True)))
            else:
                layers.append(nn.Identity())
        else:
            steps = []
            for j in range(i + 1 - n_pre):
                in_ch = pre_channels[-1]
                step_out = out_ch if j == i - n_pre else in_ch
                steps.append(nn.Sequential(conv3x3(in_ch, step_out, stride=2),
                                           nn.BatchNorm2d(step_out, momentum=bn_momentum), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return layers


def apply_transition(transition: nn.ModuleList, xs: List[Tensor]) -> List[Tensor]:
    """Branch ``i`` reads input ``i``; new branches read the lowest-resolution input."""
    return [layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]


def make_stage(spec: StageSpec, in_channels: Sequence[int], num_modules: int | None = None,
               bn_momentum: float = 0.1, align_corners: bool = True) -> nn.Sequential:
    """``num_modules`` (default ``spec.num_modules``) HighResolutionModules in sequence."""
    modules = []
    channels = list(in_channels)
    for _ in range(spec.num_modules if num_modules is None else num_modules):
        module = HighResolutionModule(spec.block, spec.num_blocks, channels, spec.num_channels,
                                      bn_momentum=bn_momentum, align_corners=align_corners)
        channels = module.out_channels
        modules.append(module)
    return nn.Sequential(*modules)


class HRNetBackbone(nn.Module):
    """Stem (two stride-2 3x3 convs, 64 ch) + stage1 (bottlenecks) + stages 2-4 with transitions.

    Args:
        spec: the four stage specs (see :data:`HRNET_SPECS`).
        in_chans: input image channels.
        bn_momentum: BatchNorm momentum (the models pass the official value: 0.01 for HRNetV2,
            0.1 for HRNet-OCR).
        align_corners: ``align_corners`` of the bilinear upsampling in the fusion units (the
            models pass the official value: False for HRNetV2 -- its Cityscapes yamls --, True for
            HRNet-OCR).
    """

    def __init__(self, spec: HRNetSpec, in_chans: int = 3, bn_momentum: float = 0.1,
                 align_corners: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.conv1 = nn.Conv2d(in_chans, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        s1 = spec.stage1
        self.layer1 = make_layer(s1.block, STEM_CHANNELS, s1.num_channels[0], s1.num_blocks[0], bn_momentum=bn_momentum)
        kw = dict(bn_momentum=bn_momentum, align_corners=align_corners)
        self.transition1 = make_transition(s1.out_channels, spec.stage2.out_channels, bn_momentum)
        self.stage2 = make_stage(spec.stage2, spec.stage2.out_channels, **kw)
        self.transition2 = make_transition(spec.stage2.out_channels, spec.stage3.out_channels, bn_momentum)
        self.stage3 = make_stage(spec.stage3, spec.stage3.out_channels, **kw)
        self.transition3 = make_transition(spec.stage3.out_channels, spec.stage4.out_channels, bn_momentum)
        self.stage4 = make_stage(spec.stage4, spec.stage4.out_channels, **kw)
        self.out_channels: Tuple[int, ...] = spec.stage4.out_channels

    def forward_to_stage3(self, images: Tensor) -> List[Tensor]:
        """``(B, in_chans, H, W)`` -> the three stage-3 branch outputs (strides 4, 8, 16)."""
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        xs = self.stage2(apply_transition(self.transition1, xs))
        return self.stage3(apply_transition(self.transition2, xs))

    def forward_stage4(self, stage3_outputs: List[Tensor]) -> List[Tensor]:
        return self.stage4(apply_transition(self.transition3, stage3_outputs))

    def stage_layers(self, stage: int) -> Tuple[nn.ModuleList, nn.Sequential]:
        """``(transition{stage-1}, stage{stage})`` for ``stage`` in 2..4: the transition that maps
        stage ``stage - 1``'s outputs to stage ``stage``'s inputs, and the stage itself."""
        if stage not in (2, 3, 4):
            raise ValueError(f"stage must be 2, 3 or 4 (got {stage!r})")
        return getattr(self, f"transition{stage - 1}"), getattr(self, f"stage{stage}")

    def forward_stem(self, images: Tensor) -> List[Tensor]:
        """``(B, in_chans, H, W)`` -> ``[stage-1 output (B, C1, H/4, W/4)]`` (stem + ``layer1``)."""
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        return [self.layer1(x)]

    def forward_stages(self, xs: List[Tensor], first: int, last: int = 4) -> List[Tensor]:
        """Run transitions and stages ``first..last`` (each in 2..4) on stage ``first - 1``'s
        outputs ``xs``; returns stage ``last``'s branches (``xs`` unchanged if ``first > last``)."""
        for stage in range(first, last + 1):
            transition, modules = self.stage_layers(stage)
            xs = modules(apply_transition(transition, xs))
        return xs

    def forward_to_stage(self, images: Tensor, stage: int) -> List[Tensor]:
        """``(B, in_chans, H, W)`` -> the ``stage`` branch outputs of stage ``stage`` in 1..4
        (stage ``s`` has ``s`` branches at strides ``4, 8, ..., 4 * 2**(s-1)``)."""
        if stage not in (1, 2, 3, 4):
            raise ValueError(f"stage must be 1, 2, 3 or 4 (got {stage!r})")
        return self.forward_stages(self.forward_stem(images), 2, stage)

    def forward_features(self, images: Tensor) -> List[Tensor]:
        """``(B, in_chans, H, W)`` -> the four stage-4 branches (strides 4, 8, 16, 32)."""
        return self.forward_stage4(self.forward_to_stage3(images))

    def forward(self, images: Tensor) -> List[Tensor]:
        return self.forward_features(images)


WEIGHT_INITS = ("kaiming", "hrnet")


def init_hrnet_weights(module: nn.Module, scheme: str = "kaiming") -> None:
    """Initialise convs and BNs (BN weight 1, bias 0; conv biases 0).

    ``"hrnet"``: the official HRNet init, conv weights ~ N(0, 0.001). It is meant to be overwritten
    by ImageNet weights and trains very slowly from scratch (and its tiny gradients hit CPU denormals).
    ``"kaiming"`` (default): He-normal conv weights (fan_out, ReLU), the usual from-scratch init.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if scheme == "hrnet":
                nn.init.normal_(m.weight, std=0.001)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
