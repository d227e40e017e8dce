"""OVeNet: structure vs the thesis, offsets/confidence ranges, zero-offset identity, fusion."""
import pytest
import torch
from torch import nn

from seglab.models import build_model
from tests.models.conftest import build_meta
from seglab.models.complexity import count_flops, count_parameters
from seglab.models.ovenet import fuse_logits





def small_ovenet(**kwargs):
    torch.manual_seed(0)
    return build_model("ovenet_hrnet_w18_small_v1", num_classes=4, **kwargs)


def test_w48_matches_the_thesis_parameters_and_gflops():
    """Thesis Tables 5.5/5.8: OVeNet on HRNetV2-W48 branching at stage 4: 98.8M params, 234.7 / 233.1 GFLOPs."""
    model = build_meta("ovenet_hrnet_w48", num_classes=19, branch_stage=4)
    params = count_parameters(model)
    assert abs(params / 1e6 - 98.8) / 98.8 < 0.01
    assert round(params / 1e6, 1) == 98.8
    gflops = count_flops(model, input_size=(512, 1024))  # Cityscapes crop (the table's HRNet 174 is 512x1024 too)
    assert abs(gflops - 234.7) / 234.7 < 0.01
    gflops = count_flops(model, input_size=(540, 960))  # Table 5.8 (ACDC crop): 233.1
    assert abs(gflops - 233.1) / 233.1 < 0.01


@pytest.mark.parametrize("width,main_modules,offset_modules", [
    ("w18_small_v1", 1, 1), ("w18_small_v2", 2, 1), ("w18", 3, 2), ("w32", 3, 2), ("w48", 3, 2)])
def test_offset_branch_is_a_stage4_copy_with_fewer_modules(width, main_modules, offset_modules):
    ovenet = build_meta(f"ovenet_hrnet_{width}", num_classes=19)
    hrnet = build_meta(f"hrnet_{width}", num_classes=19)
    assert len(ovenet.stage4) == main_modules
    assert len(ovenet.offset_stage) == offset_modules
    assert ovenet.offset_head.classifier.out_channels == 3
    # the main path is exactly HRNetV2 (same names and shapes): OVeNet = HRNetV2 + offset branch
    offset_parts = (ovenet.offset_transition, ovenet.offset_stage, ovenet.offset_head)
    offset_branch = sum(count_parameters(m) for m in offset_parts)
    assert count_parameters(ovenet) == count_parameters(hrnet) + offset_branch
    per_module = count_parameters(hrnet.stage4[-1])
    transition = count_parameters(hrnet.transition3)
    head3 = count_parameters(hrnet.head) - count_parameters(hrnet.head.classifier) + 3 * (
        hrnet.head.classifier.in_channels + 1)
    assert offset_branch == offset_modules * per_module + transition + head3


def test_hrnet_state_dict_loads_into_ovenet():
    hrnet = build_model("hrnet_w18_small_v1", num_classes=4)
    missing, unexpected = small_ovenet().load_state_dict(hrnet.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(k.startswith(("offset_transition.", "offset_stage.", "offset_head.")) for k in missing)


def test_initial_offsets_are_zero_so_seed_and_fused_logits_equal_initial():
    model = small_ovenet()
    out = model(torch.randn(2, 3, 64, 64))
    assert torch.equal(out.offsets, torch.zeros_like(out.offsets))
    assert torch.equal(out.confidence, torch.full_like(out.confidence, 0.5))
    assert torch.equal(out.seed_logits, out.initial_logits)
    assert torch.equal(out.logits, out.initial_logits)


def test_zeroing_the_offset_conv_gives_exact_identity_after_nonzero_offsets():
    model = small_ovenet()
    classifier = model.offset_head.classifier
    images = torch.randn(2, 3, 64, 64)
    nn.init.normal_(classifier.weight, std=1.0)
    out = model(images)
    assert out.offsets.abs().max() > 1e-3
    assert not torch.equal(out.seed_logits, out.initial_logits)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    out = model(images)
    assert torch.equal(out.seed_logits, out.initial_logits)


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_offsets_saturate_at_tau_and_confidence_fuses_in_the_forward(tau):
    model = small_ovenet(tau=tau)
    images = torch.randn(1, 3, 64, 64)
    bias = model.offset_head.classifier.bias
    with torch.no_grad():
        bias.copy_(torch.tensor([100.0, -100.0, 1e4]))  # o = (+tau, -tau): up-right; F = 1
    out = model(images)
    assert torch.equal(out.offsets[:, 0], torch.full_like(out.offsets[:, 0], tau))
    assert torch.equal(out.offsets[:, 1], torch.full_like(out.offsets[:, 1], -tau))
    assert torch.equal(out.confidence, torch.ones_like(out.confidence))
    assert torch.equal(out.logits, out.seed_logits)  # F = 1 -> S_f = S_s
    # o = (+tau, -tau) moves tau * (W - 1) / 2 pixels right and tau * (H - 1) / 2 up (16x16 map)
    initial = out.initial_logits[0]
    h, w = initial.shape[-2:]
    y, x = 15 - tau * (h - 1) / 2, 2 + tau * (w - 1) / 2
    y0, x0 = int(y), int(x)
    fy, fx = y - y0, x - x0
    expected = (1 - fy) * ((1 - fx) * initial[:, y0, x0] + fx * initial[:, y0, x0 + 1]) + fy * (
        (1 - fx) * initial[:, y0 + 1, x0] + fx * initial[:, y0 + 1, x0 + 1])
    torch.testing.assert_close(out.seed_logits[0, :, 15, 2], expected, atol=1e-6, rtol=1e-5)
    # the top-right corner samples beyond the image: clamped to itself
    assert torch.equal(out.seed_logits[0, :, 0, w - 1], initial[:, 0, w - 1])
    with torch.no_grad():
        bias.copy_(torch.tensor([0.0, 0.0, -1e4]))  # F = 0
    out = model(images)
    assert torch.equal(out.confidence, torch.zeros_like(out.confidence))
    assert torch.equal(out.logits, out.initial_logits)  # F = 0 -> S_f = S_i


def test_fuse_logits_is_the_convex_combination():
    initial = torch.randn(2, 3, 4, 5)
    seed = torch.randn(2, 3, 4, 5)
    assert torch.equal(fuse_logits(initial, seed, torch.zeros(2, 1, 4, 5)), initial)
    assert torch.equal(fuse_logits(initial, seed, torch.ones(2, 1, 4, 5)), seed)
    confidence = torch.rand(2, 1, 4, 5)
    torch.testing.assert_close(fuse_logits(initial, seed, confidence), initial + confidence * (seed - initial))


def test_offset_branch_gets_gradient_at_zero_init():
    model = small_ovenet()
    out = model(torch.randn(2, 3, 64, 64))
    out.logits.square().mean().backward()
    assert model.offset_head.classifier.weight.grad[:2].abs().sum() > 0  # through the offsets


def test_forward_runs_on_meta_device():
    """count_flops relies on it: the whole forward, resampling included, has meta kernels."""
    model = build_meta("ovenet_hrnet_w18_small_v1", num_classes=4)
    out = model(torch.empty(2, 3, 64, 64, device="meta"))
    assert out.logits.device.type == "meta" and out.logits.shape == (2, 4, 16, 16)


def test_init_offset_branch_from_main_copies_stage4_weights():
    model = build_model("ovenet_hrnet_w18_small_v2", num_classes=4)  # main stage 4: 2 modules, offset: 1
    model.init_offset_branch_from_main()
    for key, value in model.offset_stage[0].state_dict().items():
        assert torch.equal(value, model.stage4[0].state_dict()[key]), key
    for key, value in model.offset_transition.state_dict().items():
        assert torch.equal(value, model.transition3.state_dict()[key]), key
    assert not model.offset_stage[0].branches[0][0].conv1.weight.is_set_to(model.stage4[0].branches[0][0].conv1.weight)
    assert torch.equal(model.offset_head.classifier.weight, torch.zeros_like(model.offset_head.classifier.weight))
