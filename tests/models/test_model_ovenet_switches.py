"""OVeNet switches: base (HRNet / HRNet+OCR), branch stage, tau_mode, cascade, resample, freeze_body,
inference_output -- each checked against hand-worked numbers or an independent recomputation."""
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import ConfigError
from seglab.losses import build_loss
from seglab.models import build_model
from seglab.models.complexity import count_parameters
from seglab.models.ovenet import PROB_EPS, cascade_offsets
from tests.models.conftest import build_meta

SMALL = "ovenet_hrnet_w18_small_v1"


def small(name=SMALL, seed=0, **kwargs):
    torch.manual_seed(seed)
    return build_model(name, num_classes=4, **kwargs)


def saturate(model, x_bias, y_bias, conf_bias=0.0):
    """Zero offset-head classifier weights and the given biases: o = tanh(bias) * tau everywhere."""
    classifier = model.offset_head.classifier
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([x_bias, y_bias, conf_bias]))


@functools.lru_cache(maxsize=None)
def meta_w48(name, branch_stage=None):
    """W48 models on the meta device, built once per test session (read-only use)."""
    kwargs = {} if branch_stage is None else {"branch_stage": branch_stage}
    return build_meta(name, num_classes=19, **kwargs)


def shift(maps, dy, dx):
    """``maps[..., clamp(i + dy), clamp(j + dx)]`` by indexing: an integer shift with border clamp."""
    h, w = maps.shape[-2:]
    rows = (torch.arange(h) + dy).clamp(0, h - 1)
    cols = (torch.arange(w) + dx).clamp(0, w - 1)
    return maps[..., rows, :][..., cols]


# ------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name,kwargs,fragment", [
    (SMALL, {"tau_mode": "pixels"}, "model.tau_mode must be one of normalized, isotropic (got 'pixels')"),
    (SMALL, {"branch_stage": 1}, "model.branch_stage must be one of 2, 3, 4 (got 1)"),
    (SMALL, {"branch_stage": "4"}, "model.branch_stage must be one of 2, 3, 4 (got '4')"),
    (SMALL, {"branch_stage": True}, "model.branch_stage must be one of 2, 3, 4 (got True)"),
    (SMALL, {"branch_stage": 3, "offset_modules": 2},
     "model.offset_modules must be an integer >= 1 (only with branch_stage 4), a list of 2 integers >= 1 "
     "(one per offset-branch stage 3, 4) or null (got 2 with branch_stage 3)"),
    (SMALL, {"offset_modules": [1, 2]}, "a list of 1 integers >= 1 (one per offset-branch stage 4)"),
    (SMALL, {"branch_stage": 2, "offset_modules": [1, 0, 1]}, "model.offset_modules must be an integer >= 1"),
    (SMALL, {"offset_modules": "2"}, "model.offset_modules must be an integer >= 1"),
    (SMALL, {"cascade_steps": -1}, "model.cascade_steps must be an integer >= 0 (got -1)"),
    (SMALL, {"cascade_steps": 1.5}, "model.cascade_steps must be an integer >= 0 (got 1.5)"),
    (SMALL, {"resample": "softmax"}, "model.resample must be one of logits, probs (got 'softmax')"),
    (SMALL, {"freeze_body": "yes"}, "model.freeze_body must be true or false (got 'yes')"),
    (SMALL, {"inference_output": "fused"}, "model.inference_output must be one of final, initial, seed (got 'fused')"),
    (SMALL + "_ocr", {"ocr_dropout": 1.0}, "model.ocr_dropout must be a number in [0, 1)"),
    (SMALL + "_ocr", {"ocr_key_channels": 0}, "model.ocr_key_channels must be an integer >= 1"),
    (SMALL, {"ocr_dropout": 0.1}, "model.ocr_dropout is not an option of model 'ovenet_hrnet_w18_small_v1'"),
])
def test_bad_switch_values_raise_one_line_config_error(name, kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        build_meta(name, num_classes=19, **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------- branch point
@pytest.mark.parametrize("branch_stage,names,counts", [
    (4, ["offset_transition", "offset_stage"], (2,)),
    (3, ["offset_transition2", "offset_stage3", "offset_transition", "offset_stage"], (3, 2)),
    (2, ["offset_transition1", "offset_stage2", "offset_transition2", "offset_stage3", "offset_transition",
         "offset_stage"], (1, 3, 2)),
])
def test_w48_branch_points_add_exactly_the_duplicated_modules(branch_stage, names, counts):
    """Thesis: the offset head repeats its modules "1, 3 and 2 times" for stages 2, 3 and 4 (main: 1, 4, 3)."""
    hrnet = meta_w48("hrnet_w48")
    ovenet = meta_w48("ovenet_hrnet_w48", branch_stage)
    assert ovenet.offset_stage_modules == counts
    assert [n for n, _ in ovenet.named_children() if n.startswith("offset_")] == names + ["offset_head"]
    # independently, from HRNetV2-W48's own module tree: one transition + the first n modules per copied stage
    copies = 0
    for stage, n in zip(range(branch_stage, 5), counts):
        copies += count_parameters(getattr(hrnet, f"transition{stage - 1}"))
        copies += sum(count_parameters(m) for m in getattr(hrnet, f"stage{stage}")[:n])
        assert len(getattr(ovenet, names[2 * (stage - branch_stage) + 1])) == n
    width = sum(hrnet.out_channels)  # 720: offset head = 1x1 conv 720->720 (+bias) + BN + 1x1 conv 720->3 (+bias)
    offset_head = width * width + width + 2 * width + 3 * width + 3
    assert count_parameters(ovenet) == count_parameters(hrnet) + copies + offset_head
    # every main-path key is HRNetV2's: the baseline and ImageNet checkpoints load by name
    assert {k for k in ovenet.state_dict() if not k.startswith("offset_")} == set(hrnet.state_dict())


def test_w48_branch_3_and_2_parameter_increments():
    hrnet = meta_w48("hrnet_w48")
    p = {b: count_parameters(meta_w48("ovenet_hrnet_w48", b)) for b in (2, 3, 4)}
    stage3 = count_parameters(hrnet.transition2) + sum(count_parameters(m) for m in hrnet.stage3[:3])
    stage2 = count_parameters(hrnet.transition1) + count_parameters(hrnet.stage2[0])
    assert p[3] - p[4] == stage3
    assert p[2] - p[3] == stage2
    assert round(p[4] / 1e6, 1) == 98.8


@pytest.mark.parametrize("branch_stage", [2, 3, 4])
def test_branch_copied_from_main_computes_the_main_features(branch_stage):
    """W18-small-v1 has one module per stage, so the default offset branch is a full copy of the
    main path from ``branch_stage`` on: after init_offset_branch_from_main both heads see the same
    stage-4 features (this checks the wiring of the shared body and of every copied module)."""
    model = small(branch_stage=branch_stage).eval()
    seen = {}
    model.head.register_forward_hook(lambda m, args, out: seen.__setitem__("main", args[0]))
    model.offset_head.register_forward_hook(lambda m, args, out: seen.__setitem__("offset", args[0]))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(images)
        assert not torch.allclose(seen["main"][0], seen["offset"][0])
        model.init_offset_branch_from_main()
        model(images)
    assert [x.shape[1] for x in seen["offset"]] == [16, 32, 64, 128]
    for main, offset in zip(seen["main"], seen["offset"]):
        torch.testing.assert_close(offset, main, rtol=0, atol=1e-6)


def test_init_offset_branch_from_main_copies_every_duplicated_module():
    model = small("ovenet_hrnet_w18_small_v2", branch_stage=2)  # main 1, 3, 2 modules; offset 1, 2, 1
    assert model.offset_stage_modules == (1, 2, 1)
    model.init_offset_branch_from_main()
    pairs = [("offset_transition1", "transition1"), ("offset_transition2", "transition2"),
             ("offset_transition", "transition3"), ("offset_stage2.0", "stage2.0"), ("offset_stage3.0", "stage3.0"),
             ("offset_stage3.1", "stage3.1"), ("offset_stage.0", "stage4.0")]
    modules = dict(model.named_modules())
    for offset_name, main_name in pairs:
        offset_state, main_state = modules[offset_name].state_dict(), modules[main_name].state_dict()
        assert offset_state.keys() == main_state.keys() and offset_state
        for key in main_state:
            assert torch.equal(offset_state[key], main_state[key]), (offset_name, key)
    assert not torch.equal(model.offset_stage3[1].branches[0][0].conv1.weight, model.stage3[2].branches[0][0].conv1.weight)


# ------------------------------------------------------------------------------------- tau_mode
@pytest.mark.parametrize("tau_mode,tau,y_pixels", [("normalized", 0.5, 3.75), ("isotropic", 0.5, 7.75),
                                                   ("isotropic", 0.2, 3.1)])
def test_tau_mode_pixel_bounds_with_saturated_offsets(tau_mode, tau, y_pixels):
    """64x128 input -> 16x32 maps. normalized: at most tau*(32-1)/2 px in x, tau*(16-1)/2 in y;
    isotropic: tau*(32-1)/2 px on both axes (0.5: 7.75 px; 0.2: 3.1 px)."""
    model = small(tau=tau, tau_mode=tau_mode)
    saturate(model, 100.0, -100.0)  # right and up, as far as allowed
    out = model(torch.randn(1, 3, 64, 128))
    h, w = out.offsets.shape[-2:]
    assert (h, w) == (16, 32)
    x_px, y_px = out.offsets[:, 0] * (w - 1) / 2, out.offsets[:, 1] * (h - 1) / 2
    torch.testing.assert_close(x_px, torch.full_like(x_px, tau * 15.5), rtol=0, atol=1e-5)
    torch.testing.assert_close(y_px, torch.full_like(y_px, -y_pixels), rtol=0, atol=1e-5)
    # the seed of pixel (row 15, col 2) is at y = 15 - y_pixels, x = 2 + tau*15.5 (bilinear, by hand)
    initial = out.initial_logits[0]
    y, x = 15 - y_pixels, 2 + tau * 15.5
    y0, x0 = math.floor(y), math.floor(x)
    fy, fx = y - y0, x - x0
    expected = (1 - fy) * ((1 - fx) * initial[:, y0, x0] + fx * initial[:, y0, x0 + 1]) + fy * (
        (1 - fx) * initial[:, y0 + 1, x0] + fx * initial[:, y0 + 1, x0 + 1])
    torch.testing.assert_close(out.seed_logits[0, :, 15, 2], expected, atol=1e-5, rtol=1e-5)


def test_tau_modes_agree_on_square_maps():
    images = torch.randn(1, 3, 64, 64)
    outs = []
    for mode in ("normalized", "isotropic"):
        model = small(tau_mode=mode)
        nn.init.normal_(model.offset_head.classifier.weight, std=0.5, generator=torch.Generator().manual_seed(3))
        outs.append(model(images))
    assert outs[0].offsets.abs().max() > 0.05
    assert torch.equal(outs[0].offsets, outs[1].offsets)


# ------------------------------------------------------------------------------------- cascade
@pytest.mark.parametrize("axis", [0, 1])
def test_cascade_offsets_by_hand(axis):
    """5 pixels along one axis; field (pixels) o_0 = [0.5, 1, 0, 0, 1]; 1 px = 2/(5-1) = 0.5 normalised.
    The official loop samples the current field: o_{n+1}(p) = o_n(p) + o_n(p + o_n(p)).
    o_1(0) = 0.5 + o_0(0.5) = 0.5 + 0.75 = 1.25;   o_2(0) = 1.25 + o_1(1.25) = 1.25 + (1 + 0.25 (0 - 1)) = 2
    o_1(1) = 1 + o_0(2) = 1;                       o_2(1) = 1 + o_1(2) = 1
    o_1(4) = 1 + o_0(5 -> clamped 4) = 2;          o_2(4) = 2 + o_1(6 -> 4) = 2 + 2 = 4
    (sampling the original field instead would give o_2(4) = 2 + o_0(4) = 3)."""
    field_px = torch.tensor([0.5, 1.0, 0.0, 0.0, 1.0])
    offsets = torch.zeros(1, 2, 3, 5)
    offsets[0, 0] = field_px * 0.5
    if axis == 1:  # the same along y: transpose the maps
        offsets = offsets.transpose(2, 3).flip(1).contiguous()
    expected_px = {0: [0.5, 1, 0, 0, 1], 1: [1.25, 1, 0, 0, 2], 2: [2.0, 1, 0, 0, 4]}
    for steps, pixels in expected_px.items():
        refined = cascade_offsets(offsets, steps)
        along = refined[0, axis] if axis == 0 else refined[0, axis].transpose(0, 1)
        across = refined[0, 1 - axis]
        torch.testing.assert_close(along / 0.5, torch.tensor(pixels).expand(3, 5), rtol=0, atol=1e-6)
        assert torch.equal(across, torch.zeros_like(across))


def test_cascade_two_steps_equals_a_grid_sample_recomputation_float64():
    """A random field, 2 steps, against an independent float64 recomputation with
    ``F.grid_sample(align_corners=True, padding_mode="border")`` of o_n + o_n(p + o_n) (the
    official loop, positions clamped to [-1, 1]); the original-field formula o_n + o_0(p + o_n) differs."""
    gen = torch.Generator().manual_seed(3)
    o0 = (torch.rand(2, 2, 7, 9, generator=gen, dtype=torch.float64) - 0.5) * 0.6
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 7, dtype=torch.float64),
                            torch.linspace(-1, 1, 9, dtype=torch.float64), indexing="ij")
    identity = torch.stack([xs, ys], dim=-1).expand(2, 7, 9, 2)

    def sample(field, at):
        grid = (identity + at.permute(0, 2, 3, 1)).clamp(-1, 1)
        return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)

    o1 = o0 + sample(o0, o0)
    o2 = o1 + sample(o1, o1)
    torch.testing.assert_close(cascade_offsets(o0, 2), o2, rtol=0, atol=1e-12)
    assert (cascade_offsets(o0, 2) - (o1 + sample(o0, o1))).abs().max() > 1e-3


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
def test_cascade_constant_field_doubles_every_step_clamped(steps):
    """68x68 input -> 17x17 maps, tau = 0.125 = exactly 1 px ((17-1)/2 = 8): a constant field c gives
    o_{n+1} = o_n + o_n(p + o_n) = 2 o_n, so after N steps the seed is 2**N px right and down,
    clamped at the border; the shift is exact."""
    model = small(tau=0.125, cascade_steps=steps)
    saturate(model, 100.0, 100.0)
    out = model(torch.randn(1, 3, 68, 68))
    assert out.offsets.shape[-2:] == (17, 17)
    assert torch.equal(out.offsets, torch.full_like(out.offsets, 0.125 * 2 ** steps))
    assert torch.equal(out.seed_logits, shift(out.initial_logits, 2 ** steps, 2 ** steps))


def test_cascade_of_zero_offsets_is_the_identity():
    out = small(cascade_steps=3)(torch.randn(2, 3, 64, 64))
    assert torch.equal(out.offsets, torch.zeros_like(out.offsets))
    assert torch.equal(out.seed_logits, out.initial_logits) and torch.equal(out.final_logits, out.initial_logits)


def test_cascade_gradient_reaches_the_offset_head():
    model = small(cascade_steps=2)
    nn.init.normal_(model.offset_head.classifier.weight, std=0.1)
    out = model(torch.randn(1, 3, 64, 64))
    out.logits.square().mean().backward()
    assert model.offset_head.classifier.weight.grad[:2].abs().sum() > 0


# ------------------------------------------------------------------------------------- resample = probs
def test_probs_mode_returns_log_probabilities_of_the_hand_mixture():
    """o = 1 px right (tau = 0.125 on 17x17 maps), F = sigmoid(0.7); P_i from the logits-mode twin."""
    images = torch.randn(2, 3, 68, 68, generator=torch.Generator().manual_seed(0))  # not the global RNG
    probs_model = small(tau=0.125, resample="probs")
    saturate(probs_model, 100.0, 0.0, 0.7)
    logits_model = small(tau=0.125)
    logits_model.load_state_dict(probs_model.state_dict())
    out = probs_model(images)
    s_i = logits_model(images).initial_logits.double()
    p_i = F.softmax(s_i, dim=1)
    p_s = shift(p_i, 0, 1)
    conf = torch.sigmoid(torch.tensor(0.7, dtype=torch.float64))
    p_f = (1 - conf) * p_i + conf * p_s
    for name, expected in (("initial_logits", p_i), ("seed_logits", p_s), ("final_logits", p_f)):
        got = getattr(out, name).double().exp()
        torch.testing.assert_close(got.sum(1), torch.ones_like(got.sum(1)), rtol=0, atol=1e-6)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert out.logits is out.final_logits
    # cross-entropy on the returned maps = NLL of the mixture probabilities
    target = torch.randint(0, 4, (2, 17, 17), generator=torch.Generator().manual_seed(0))
    # the model floors probabilities at PROB_EPS before the log (a saturated pixel may fall below it)
    nll = -torch.log(p_f.gather(1, target.unsqueeze(1)).clamp_min(PROB_EPS)).mean()
    torch.testing.assert_close(F.cross_entropy(out.final_logits.double(), target), nll, rtol=1e-5, atol=1e-7)


def test_probs_mode_floors_probabilities_at_eps():
    model = small(resample="probs")
    with torch.no_grad():
        model.head.classifier.bias.copy_(torch.tensor([200.0, 0.0, 0.0, 0.0]))  # P ~ e^-200 for classes 1-3
    out = model(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(out.final_logits).all()
    torch.testing.assert_close(out.final_logits[:, 1:], torch.full_like(out.final_logits[:, 1:], math.log(1e-12)))


# ------------------------------------------------------------------------------------- inference_output
@pytest.mark.parametrize("choice", ["final", "initial", "seed"])
def test_inference_output_selects_logits_in_eval_only(choice):
    model = small(inference_output=choice)
    nn.init.normal_(model.offset_head.classifier.weight, std=0.5, generator=torch.Generator().manual_seed(1))
    images = torch.randn(1, 3, 64, 64)
    out = model(images)  # training mode: always S_f
    assert out.logits is out.final_logits
    model.eval()
    with torch.no_grad():
        out = model(images)
    maps = {"final": out.final_logits, "initial": out.initial_logits, "seed": out.seed_logits}
    assert not torch.allclose(maps["initial"], maps["seed"]) and not torch.allclose(maps["final"], maps["seed"])
    assert out.logits is maps[choice]
    torch.testing.assert_close(out.final_logits,
                               (1 - out.confidence) * out.initial_logits + out.confidence * out.seed_logits)


# ------------------------------------------------------------------------------------- OCR base
def test_ocr_logits_and_aux_are_resampled_and_fused_alike():
    model = small(SMALL + "_ocr", tau=0.125).eval()  # eval: OCR dropout off
    saturate(model, -100.0, 100.0, -0.4)  # 1 px left, 1 px down
    with torch.no_grad():
        out = model(torch.randn(2, 3, 68, 68))
    conf = torch.sigmoid(torch.tensor(-0.4))
    assert torch.equal(out.seed_logits, shift(out.initial_logits, 1, -1))
    assert torch.equal(out.seed_aux_logits, shift(out.initial_aux_logits, 1, -1))
    assert not torch.allclose(out.initial_aux_logits, out.initial_logits)
    torch.testing.assert_close(out.aux_logits, (1 - conf) * out.initial_aux_logits + conf * out.seed_aux_logits)
    torch.testing.assert_close(out.final_logits, (1 - conf) * out.initial_logits + conf * out.seed_logits)


def test_ocr_probs_mode_softmaxes_only_the_ocr_output_and_fuses_aux_as_logits():
    """Official ``LOGITS: false``: softmax(OCR logits) is resampled and fused; the soft-region map stays
    logits (here compared with the logits-mode twin, which has the same weights: o = 1 px right)."""
    images = torch.randn(1, 3, 68, 68, generator=torch.Generator().manual_seed(2))
    probs_model = small(SMALL + "_ocr", tau=0.125, resample="probs").eval()
    saturate(probs_model, 100.0, 0.0, 0.3)
    logits_model = small(SMALL + "_ocr", tau=0.125).eval()
    logits_model.load_state_dict(probs_model.state_dict())
    with torch.no_grad():
        out, twin = probs_model(images), logits_model(images)
    conf = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
    aux = twin.initial_aux_logits.double()  # raw logits, not log-probabilities
    torch.testing.assert_close(out.initial_aux_logits.double(), aux, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.aux_logits.double(), (1 - conf) * aux + conf * shift(aux, 0, 1), rtol=1e-5, atol=1e-5)
    p_i = F.softmax(twin.initial_logits.double(), dim=1)
    p_f = (1 - conf) * p_i + conf * shift(p_i, 0, 1)
    torch.testing.assert_close(out.final_logits.double().exp(), p_f, rtol=1e-5, atol=1e-7)


def test_ocr_main_path_is_hrnet_ocr_and_offset_branch_is_unchanged():
    ocr = meta_w48("hrnet_w48_ocr")
    hrnet = meta_w48("hrnet_w48")
    ovenet = meta_w48("ovenet_hrnet_w48_ocr")
    plain = meta_w48("ovenet_hrnet_w48", 4)
    assert {k for k in ovenet.state_dict() if not k.startswith("offset_")} == set(ocr.state_dict())
    assert count_parameters(ovenet) - count_parameters(ocr) == count_parameters(plain) - count_parameters(hrnet)


# ------------------------------------------------------------------------------------- freeze_body / load_body_state
def test_freeze_body_sgd_step_changes_only_the_offset_branch():
    model = small(freeze_body=True)
    nn.init.normal_(model.offset_head.classifier.weight, std=0.1, generator=torch.Generator().manual_seed(2))
    model.train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if not n.startswith("offset_")}
    assert model.training and model.offset_stage.training and model.offset_head.training
    assert not any(m.training for n, m in model.named_modules() if n and not n.startswith("offset_"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                weight_decay=5e-4)
    out = model(torch.randn(2, 3, 64, 64))
    target = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(0))
    build_loss("ovenet")(out, target).total.backward()
    optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        if not key.startswith("offset_"):
            assert torch.equal(after[key], value), key  # parameters and BN buffers alike
    for key in ("offset_head.classifier.weight", "offset_head.classifier.bias", "offset_head.bottleneck.0.weight",
                "offset_stage.0.branches.0.0.conv1.weight", "offset_transition.3.0.0.weight",
                "offset_stage.0.branches.0.0.bn1.running_mean"):
        assert not torch.equal(after[key], before[key]), key


def test_load_body_state_loads_the_baseline_and_leaves_the_offset_branch():
    torch.manual_seed(5)
    baseline = build_model("hrnet_w18_small_v1", num_classes=4).eval()
    model = small(freeze_body=True, inference_output="initial")
    nn.init.normal_(model.offset_head.classifier.weight, std=0.1)
    offset_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("offset_")}
    loaded = model.load_body_state({f"module.{k}": v for k, v in baseline.state_dict().items()})
    assert loaded == len(baseline.state_dict())
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in offset_before.items())
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("offset_"))
    model.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, expected = model(images), baseline(images)
    assert torch.equal(out.logits, expected.logits)
    assert not torch.allclose(out.final_logits, expected.logits)


def test_load_body_state_for_ocr():
    torch.manual_seed(6)
    baseline = build_model("hrnet_w18_small_v1_ocr", num_classes=4).eval()
    model = small(SMALL + "_ocr")
    assert model.load_body_state(baseline.state_dict()) == len(baseline.state_dict())
    model.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, expected = model(images), baseline(images)
    assert torch.equal(out.initial_logits, expected.logits) and torch.equal(out.initial_aux_logits, expected.aux_logits)


def test_load_body_state_names_the_first_missing_or_mismatched_key():
    state = build_model("hrnet_w18_small_v1", num_classes=4).state_dict()
    model = small()
    del state["stage4.0.branches.1.0.bn2.running_var"]
    with pytest.raises(ConfigError, match=r"no key 'stage4\.0\.branches\.1\.0\.bn2\.running_var'"):
        model.load_body_state(state)
    with pytest.raises(ConfigError, match=r"key 'head\.classifier\.weight' has shape \(5, 240, 1, 1\), the model "
                                          r"needs \(4, 240, 1, 1\)"):
        model.load_body_state(build_model("hrnet_w18_small_v1", num_classes=5).state_dict())
    with pytest.raises(ConfigError, match=r"no key 'head\.aux_head\.bottleneck\.0\.weight'.*hrnet_<w>_ocr"):
        small(SMALL + "_ocr").load_body_state(build_model("hrnet_w18_small_v1", num_classes=4).state_dict())


def test_ocr_model_trains_with_the_ovenet_loss():
    model = small(SMALL + "_ocr", cascade_steps=1, branch_stage=3)
    nn.init.normal_(model.offset_head.classifier.weight, std=0.1)
    out = model(torch.randn(2, 3, 64, 64))
    target = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(0))
    loss = build_loss("ovenet")(out, target)
    assert {"loss_final_aux", "loss_seed_aux", "loss_initial_aux"} <= set(loss.terms)
    loss.total.backward()
    for name in ("head.aux_head.classifier.weight", "head.classifier.weight", "offset_head.classifier.weight",
                 "offset_stage3.0.branches.0.0.conv1.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
