"""ResNet-50/101 trunks: exact torchvision parameter counts and names, dilation semantics, strides."""
import pytest
import torch

from seglab.models.backbones.resnet import RESNET_LAYERS, ResNetBackbone, resnet50, resnet101
from seglab.models.complexity import count_parameters


def meta(factory, **kwargs):
    with torch.device("meta"):
        return factory(**kwargs)


def test_parameter_counts_match_torchvision_without_fc():
    # torchvision resnet50 25,557,032 / resnet101 44,549,160, minus fc (2048 * 1000 + 1000 = 2,049,000)
    assert count_parameters(meta(resnet50)) == 25_557_032 - 2_049_000 == 23_508_032
    assert count_parameters(meta(resnet101)) == 44_549_160 - 2_049_000 == 42_500_160
    # dilation changes no shapes
    assert count_parameters(meta(resnet101, output_stride=8)) == 42_500_160


def torchvision_keys(layers):
    """The state-dict keys of torchvision's resnet (hand-written), without fc."""
    def bn(prefix):
        return [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    keys = ["conv1.weight", *bn("bn1")]
    for i, blocks in enumerate(layers, start=1):
        for b in range(blocks):
            p = f"layer{i}.{b}"
            for j in (1, 2, 3):
                keys += [f"{p}.conv{j}.weight", *bn(f"{p}.bn{j}")]
            if b == 0:
                keys += [f"{p}.downsample.0.weight", *bn(f"{p}.downsample.1")]
    return keys


@pytest.mark.parametrize("arch", ["resnet50", "resnet101"])
def test_state_dict_keys_are_torchvision_names(arch):
    model = meta(ResNetBackbone, layers=RESNET_LAYERS[arch])
    assert list(model.state_dict()) == torchvision_keys(RESNET_LAYERS[arch])
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_dilation_follows_replace_stride_with_dilation():
    model = meta(resnet50, output_stride=8)
    # layer2 untouched; layer3/4: first block keeps the previous dilation with stride 1
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].downsample[0].stride == (2, 2)
    l3, l4 = model.layer3, model.layer4
    assert l3[0].conv2.stride == (1, 1) and l3[0].conv2.dilation == (1, 1) and l3[0].downsample[0].stride == (1, 1)
    assert all(b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2) for b in l3[1:])
    assert l4[0].conv2.stride == (1, 1) and l4[0].conv2.dilation == (2, 2)
    assert all(b.conv2.dilation == (4, 4) and b.conv2.padding == (4, 4) for b in l4[1:])
    # the 1x1 convs are never dilated
    assert all(b.conv1.dilation == (1, 1) and b.conv3.dilation == (1, 1) for b in [*l3, *l4])
    os16 = meta(resnet50, output_stride=16)
    assert os16.layer3[0].conv2.stride == (2, 2) and os16.layer4[0].conv2.stride == (1, 1)
    assert os16.layer4[0].conv2.dilation == (1, 1) and os16.layer4[1].conv2.dilation == (2, 2)


@pytest.mark.parametrize("output_stride, sizes", [
    (32, {"layer1": 16, "layer2": 8, "layer3": 4, "layer4": 2}),
    (16, {"layer1": 16, "layer2": 8, "layer3": 4, "layer4": 4}),
    (8, {"layer1": 16, "layer2": 8, "layer3": 8, "layer4": 8}),
])
def test_feature_strides(output_stride, sizes):
    model = meta(resnet50, output_stride=output_stride)
    feats = model(torch.empty(1, 3, 64, 64, device="meta"))
    assert {k: v.shape[-1] for k, v in feats.items()} == sizes
    assert {k: v.shape[1] for k, v in feats.items()} == model.out_channels
    assert {k: 64 // model.strides[k] for k in feats} == sizes


def test_rejects_bad_output_stride():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        meta(resnet50, output_stride=4)
