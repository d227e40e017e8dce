"""count_parameters / count_flops against hand-computed numbers."""
import pytest
import torch
from torch import nn

from seglab.models.complexity import FLOPS_CONVENTION, count_flops, count_parameters


class ConvLinear(nn.Module):
    """conv 3->8 (3x3, pad 1) + BN + ReLU, global pool, linear 8->5: hand-countable."""

    def __init__(self, needs_real_data: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        self.needs_real_data = needs_real_data

    devices_seen = []  # class attribute: shared with the deep copy count_flops makes

    def forward(self, x):
        self.devices_seen.append(x.device.type)
        x = torch.relu(self.bn(self.conv(x)))
        if self.needs_real_data:  # .item() has no meta implementation -> real-tensor fallback
            x = x * (1.0 + 0.0 * float(x.mean()))
        return self.fc(x.mean(dim=(2, 3)))


def expected_gflops(h, w):
    conv = 8 * 3 * 3 * 3 * h * w  # out_ch * in_ch * k * k multiply-adds per output pixel, bias excluded
    linear = 8 * 5
    return (conv + linear) / 2**30


def test_count_parameters():
    model = ConvLinear()
    assert count_parameters(model) == (8 * 3 * 9 + 8) + 2 * 8 + (8 * 5 + 5)
    model.fc.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == (8 * 3 * 9 + 8) + 2 * 8


def test_count_flops_hand_computed_on_meta():
    model = ConvLinear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ConvLinear.devices_seen.clear()
    assert count_flops(model, input_size=(32, 48), on="meta") == expected_gflops(32, 48)
    assert ConvLinear.devices_seen == ["meta"]  # no real compute
    # the model itself is untouched: still on CPU, same training flag and BN statistics
    assert model.training and next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_count_flops_falls_back_to_real_tensors():
    model = ConvLinear(needs_real_data=True)
    model.train()
    running_mean = model.bn.running_mean.clone()
    ConvLinear.devices_seen.clear()
    assert count_flops(model, input_size=(16, 16), on="meta") == expected_gflops(16, 16)
    assert ConvLinear.devices_seen == ["meta", "cpu"]
    assert model.training and model.bn.training
    assert torch.equal(model.bn.running_mean, running_mean)  # counted in eval mode


def test_count_flops_on_a_meta_model_and_other_channels():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(1, 4, 1, bias=False))
    assert count_flops(model, input_size=(10, 10), in_chans=1) == 4 * 1 * 100 / 2**30


def test_convention_is_stated():
    for word in ("multiply-adds", "2**30", "bias", "batch 1"):
        assert word in FLOPS_CONVENTION


class TakesTargets(ConvLinear):
    """ConvLinear with the models' ``forward(images, targets=None)``; records what it was given."""

    calls = []

    def forward(self, x, targets=None):
        self.calls.append((self.training, None if targets is None else (tuple(targets.shape), targets.dtype)))
        return super().forward(x)


def test_training_count_feeds_targets_in_train_mode_and_leaves_the_model_alone():
    model = TakesTargets(needs_real_data=True).eval()  # .item() -> the real-tensor fallback runs too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    TakesTargets.calls.clear()
    ConvLinear.devices_seen.clear()
    assert count_flops(model, input_size=(16, 24), train=True, on="meta") == expected_gflops(16, 24)  # per image
    # a batch of 2 (BatchNorm in train mode needs > 1 value per channel), long class ids (B, H, W)
    assert TakesTargets.calls == [(True, ((2, 16, 24), torch.long))] * 2
    assert ConvLinear.devices_seen == ["meta", "cpu"]
    assert not model.training and not model.bn.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics restored


def test_small_inputs_are_counted_on_a_zero_cpu_copy_large_ones_on_meta():
    from seglab.models.complexity import CPU_COUNT_MAX_PIXELS

    model = ConvLinear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ConvLinear.devices_seen.clear()
    assert count_flops(model, input_size=(32, 48)) == expected_gflops(32, 48)
    assert count_flops(model, input_size=(16, 24)) == expected_gflops(16, 24)
    assert ConvLinear.devices_seen == ["cpu", "cpu"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a copy ran, not the model
    ConvLinear.devices_seen.clear()
    side = int(CPU_COUNT_MAX_PIXELS ** 0.5) + 1
    assert count_flops(model, input_size=(side, side)) == expected_gflops(side, side)
    assert ConvLinear.devices_seen == ["meta"]
    with pytest.raises(ValueError, match="on must be auto, cpu or meta"):
        count_flops(model, on="gpu")


@pytest.mark.parametrize("name", ["hrnet_w18_small_v1", "ovenet_hrnet_w18_small_v1_ocr", "phgmm_r18",
                                  "deeplabv3plus_r50"])
def test_the_cpu_and_the_meta_count_agree(name):
    """The zero CPU copy runs the same counted ops with the same shapes as the meta copy (inference and
    the training forward, PHGMM's PostNet included)."""
    from seglab.models import build_model

    with torch.device("meta"):
        model = build_model(name, num_classes=9)
    for train in (False, True):
        assert count_flops(model, (32, 64), train=train, on="cpu") == count_flops(model, (32, 64), train=train,
                                                                                     on="meta")
