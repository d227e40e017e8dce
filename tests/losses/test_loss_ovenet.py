"""The ``ovenet`` loss: confidence loss by hand, total = weighted hand sum, gradients, errors."""
import math

import pytest
import torch

from seglab.errors import ConfigError
from seglab.losses import build_loss, confidence_loss, confidence_targets
from seglab.losses.ovenet import OVeNetLoss
from seglab.models.outputs import SegOutput

IGN = 255


def _ce_hand(z, label):
    return math.log(sum(math.exp(v) for v in z)) - z[label]


# ---------------------------------------------------------------- confidence loss, by hand
# Label map H (3 x 4), one ignore pixel at (1, 1):
LABELS = [
    [0, 0, 1, 1],
    [0, IGN, 1, 1],
    [2, 2, 2, 1],
]
# Offsets in pixels (dx, dy) per pixel (row, col). In normalised align_corners=True units one pixel
# is 2/(W-1) = 2/3 in x and 2/(H-1) = 1 in y.
#   (0,0) dx=1.3 -> rounds to 1 -> (0,1)=0, H=0: same
#   (0,1) dx=0.6 -> rounds to 1 -> (0,2)=1, H=0: different
#   (0,2) dy=1   -> (1,2)=1, H=1: same
#   (0,3) dx=1, dy=-1 -> clamped (border) to (0,3) itself: same
#   (1,0) dx=1   -> (1,1)=ignore: EXCLUDED
#   (1,1) H=ignore: EXCLUDED
#   (1,2) 0      -> itself: same
#   (1,3) dx=-1, dy=1 -> (2,2)=2, H=1: different
#   (2,0) dx=0.4 -> rounds to 0 -> itself: same
#   (2,1) dy=-1  -> (1,1)=ignore: EXCLUDED
#   (2,2) dx=1   -> (2,3)=1, H=2: different
#   (2,3) 0      -> itself: same
PIX_OFFSETS = {
    (0, 0): (1.3, 0), (0, 1): (0.6, 0), (0, 2): (0, 1), (0, 3): (1, -1),
    (1, 0): (1, 0), (1, 3): (-1, 1),
    (2, 0): (0.4, 0), (2, 1): (0, -1), (2, 2): (1, 0),
}
FVALS = [
    [0.9, 0.2, 0.7, 0.6],
    [0.5, 0.4, 0.8, 0.3],
    [0.95, 0.1, 0.25, 0.85],
]
SAME = [(0, 0), (0, 2), (0, 3), (1, 2), (2, 0), (2, 3)]
DIFF = [(0, 1), (1, 3), (2, 2)]
EXCLUDED = [(1, 0), (1, 1), (2, 1)]


def _offsets_tensor(h=3, w=4):
    off = torch.zeros(1, 2, h, w)
    for (r, c), (dx, dy) in PIX_OFFSETS.items():
        off[0, 0, r, c] = dx * 2 / (w - 1)
        off[0, 1, r, c] = dy * 2 / (h - 1)
    return off


def test_confidence_targets_by_hand():
    same, valid = confidence_targets(_offsets_tensor(), torch.tensor([LABELS]), IGN)
    assert int(valid.sum()) == 9
    for r in range(3):
        for c in range(4):
            assert bool(valid[0, r, c]) == ((r, c) not in EXCLUDED), (r, c)
            if (r, c) in SAME:
                assert bool(same[0, r, c]), (r, c)
            if (r, c) in DIFF:
                assert not bool(same[0, r, c]), (r, c)


def test_confidence_loss_by_hand_excludes_ignore():
    f = torch.tensor([[FVALS]], requires_grad=True)
    offsets = _offsets_tensor().requires_grad_(True)
    target = torch.tensor([LABELS])
    expected = -(
        math.log(0.9) + math.log(0.7) + math.log(0.6) + math.log(0.8) + math.log(0.95) + math.log(0.85)  # same
        + math.log(1 - 0.2) + math.log(1 - 0.3) + math.log(1 - 0.25)  # different
    ) / 9  # 12 pixels - 3 excluded (ignore pixel, two pixels pointing into it)
    loss = confidence_loss(f, offsets, target, IGN)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # excluded pixels get no gradient, others exactly d/dF of their BCE term / 9
    for r, c in EXCLUDED:
        assert f.grad[0, 0, r, c].item() == 0.0
    for r, c in SAME:
        assert f.grad[0, 0, r, c].item() == pytest.approx(-1 / (9 * FVALS[r][c]), rel=1e-5)
    for r, c in DIFF:
        assert f.grad[0, 0, r, c].item() == pytest.approx(1 / (9 * (1 - FVALS[r][c])), rel=1e-5)
    assert offsets.grad is None  # the label lookup is discrete: no gradient into the offsets


def test_confidence_loss_low_res_inputs_upsampled_to_labels():
    # F (1x2) and offsets (1x2) are constant, so the bilinear upsampling to 2x4 keeps them constant.
    # Offsets move exactly 1 px right at label resolution: o_x = 2/(W-1) = 2/3 (not rescaled).
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, IGN]]])
    f = torch.full((1, 1, 1, 2), 0.7, requires_grad=True)
    offsets = torch.zeros(1, 2, 1, 2)
    offsets[:, 0] = 2 / 3
    # row 0: (0,0)->0 same, (0,1)->1 diff, (0,2)->1 same, (0,3)->border itself same
    # row 1: (1,0) same, (1,1) same, (1,2)->ignore excluded, (1,3) ignore excluded
    expected = (5 * -math.log(0.7) - math.log(1 - 0.7)) / 6
    assert confidence_loss(f, offsets, target).item() == pytest.approx(expected, rel=1e-6)


def test_confidence_loss_all_ignore_zero_with_grad_and_eps_clamp():
    f = torch.tensor([[[[0.0, 1.0]]]], requires_grad=True)
    target = torch.full((1, 1, 2), IGN)
    loss = confidence_loss(f, torch.zeros(1, 2, 1, 2), target)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    # F exactly 0 / 1 with the "wrong" target stays finite thanks to the eps clamp
    f2 = torch.tensor([[[[0.0, 1.0]]]])
    off = torch.zeros(1, 2, 1, 2)
    off[0, 0, 0, 1] = -2.0  # pixel 1 looks 1 px left (2/(W-1) = 2) at a different class
    loss2 = confidence_loss(f2, off, torch.tensor([[[0, 1]]]))
    # pixel 0: same, F=0 -> -log(1e-6); pixel 1: different, F=1 -> -log(1e-6)
    assert math.isfinite(loss2.item())
    assert loss2.item() == pytest.approx(-math.log(1e-6), rel=1e-3)


# ---------------------------------------------------------------- full OVeNet loss
# labels [[0, 1]] (H=1, W=2), C = 2 classes; per pixel: (class-0 logit, class-1 logit)
SF = [(2.0, -1.0), (0.0, 1.0)]
SS = [(0.5, 0.0), (0.5, 2.0)]
SI = [(1.0, 1.0), (-2.0, 0.5)]
F_TINY = [0.9, 0.6]


def _logits(pix, requires_grad=True):
    return torch.tensor([[[[pix[0][0], pix[1][0]]], [[pix[0][1], pix[1][1]]]]], requires_grad=requires_grad)


def _tiny_output():
    offsets = torch.zeros(1, 2, 1, 2, requires_grad=True)
    with torch.no_grad():
        offsets[0, 0, 0, 0] = 2.0  # pixel 0 points 1 px right (2/(W-1) = 2) -> label 1 != 0
    return SegOutput(
        logits=_logits(SF),
        seed_logits=_logits(SS),
        initial_logits=_logits(SI),
        confidence=torch.tensor([[[F_TINY]]], requires_grad=True),
        offsets=offsets,
    )


def _hand_terms():
    ce = lambda s: (_ce_hand(list(s[0]), 0) + _ce_hand(list(s[1]), 1)) / 2  # noqa: E731
    conf = (-math.log(1 - F_TINY[0]) - math.log(F_TINY[1])) / 2  # pixel 0 different, pixel 1 same
    return ce(SF), ce(SS), ce(SI), conf


@pytest.mark.parametrize("kwargs", [{}, {"kappa": 0.3, "lam": 0.7, "conf_weight": 2.0}])
def test_ovenet_total_is_weighted_hand_sum(kwargs):
    kappa, lam, w = kwargs.get("kappa", 0.5), kwargs.get("lam", 0.5), kwargs.get("conf_weight", 1.0)
    lf, ls, li, lc = _hand_terms()
    out = _tiny_output()
    loss = build_loss("ovenet", **kwargs)(out, torch.tensor([[[0, 1]]]))
    assert loss.total.item() == pytest.approx(lf + kappa * ls + lam * li + w * lc, rel=1e-6)
    assert set(loss.terms) == {"loss", "loss_final", "loss_seed", "loss_initial", "loss_conf"}
    assert loss.terms["loss"].item() == pytest.approx(loss.total.item(), rel=1e-7)
    assert loss.terms["loss_final"].item() == pytest.approx(lf, rel=1e-6)
    assert loss.terms["loss_seed"].item() == pytest.approx(ls, rel=1e-6)
    assert loss.terms["loss_initial"].item() == pytest.approx(li, rel=1e-6)
    assert loss.terms["loss_conf"].item() == pytest.approx(lc, rel=1e-6)
    assert all(not t.requires_grad and t.dim() == 0 for t in loss.terms.values())
    loss.total.backward()
    for name in ("logits", "seed_logits", "initial_logits", "confidence"):
        grad = getattr(out, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert out.offsets.grad is None
    # the confidence gradient is exactly w * d(conf)/dF
    assert out.confidence.grad[0, 0, 0, 0].item() == pytest.approx(w / (2 * (1 - F_TINY[0])), rel=1e-5)
    assert out.confidence.grad[0, 0, 0, 1].item() == pytest.approx(-w / (2 * F_TINY[1]), rel=1e-5)


def test_ovenet_zero_weights_drop_terms():
    lf, _, _, _ = _hand_terms()
    loss = build_loss("ovenet", kappa=0, lam=0.0, conf_weight=0)(_tiny_output(), torch.tensor([[[0, 1]]]))
    assert loss.total.item() == pytest.approx(lf, rel=1e-6)


@pytest.mark.parametrize("key", ["kappa", "lam", "conf_weight"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), "0.5"])
def test_ovenet_bad_weights_raise_config_error(key, value):
    with pytest.raises(ConfigError, match=rf"loss\.{key} must be a finite number >= 0"):
        build_loss("ovenet", **{key: value})


def test_ovenet_negative_kappa_message():
    with pytest.raises(ConfigError) as info:
        OVeNetLoss(kappa=-1)
    assert "loss.kappa" in str(info.value) and ">= 0" in str(info.value) and "-1" in str(info.value)


def test_ovenet_on_plain_model_output_raises():
    out = SegOutput(logits=torch.randn(1, 2, 2, 2))
    with pytest.raises(ConfigError) as info:
        build_loss("ovenet")(out, torch.zeros(1, 4, 4, dtype=torch.long))
    msg = str(info.value)
    assert "loss 'ovenet' needs an OVeNet model output" in msg
    assert "initial_logits" in msg and "model=ovenet_*" in msg and "loss=ce" in msg


def test_ovenet_bad_label_raises():
    out = _tiny_output()
    with pytest.raises(ValueError, match=r"\[5\]"):
        build_loss("ovenet")(out, torch.tensor([[[0, 5]]]))


def test_ovenet_low_res_outputs_all_ignore_finite():
    g = torch.Generator().manual_seed(1)
    out = SegOutput(
        logits=torch.randn(2, 3, 4, 4, generator=g, requires_grad=True),
        seed_logits=torch.randn(2, 3, 4, 4, generator=g),
        initial_logits=torch.randn(2, 3, 4, 4, generator=g),
        confidence=torch.rand(2, 1, 4, 4, generator=g),
        offsets=torch.rand(2, 2, 4, 4, generator=g) * 0.2 - 0.1,
    )
    target = torch.randint(0, 3, (2, 16, 16), generator=g)
    loss = build_loss("ovenet")(out, target)
    assert math.isfinite(loss.total.item()) and loss.total.item() > 0
    empty = build_loss("ovenet")(out, torch.full((2, 16, 16), IGN))
    assert empty.total.item() == 0.0


# ---------------------------------------------------------------- criteria, class weights, OCR terms
def _random_output(seed=0, ocr=False, classes=3, size=4):
    """Low-res (size x size) OVeNet-like output with zero offsets (every seed is the pixel itself)."""
    g = torch.Generator().manual_seed(seed)
    maps = lambda: (torch.randn(2, classes, size, size, generator=g) * 2).requires_grad_(True)  # noqa: E731
    fields = dict(logits=maps(), seed_logits=maps(), initial_logits=maps(),
                  confidence=(torch.rand(2, 1, size, size, generator=g) * 0.8 + 0.1).requires_grad_(True),
                  offsets=torch.zeros(2, 2, size, size))
    fields["final_logits"] = fields["logits"]
    if ocr:
        fields.update(aux_logits=maps(), seed_aux_logits=maps(), initial_aux_logits=maps())
    return SegOutput(**fields)


def _random_target(seed=0, classes=3, size=8):
    g = torch.Generator().manual_seed(100 + seed)
    target = torch.randint(0, classes, (2, size, size), generator=g)
    target[0, :2, :3] = IGN
    return target


def _ce64(logits, target, weight=None):
    """Independent float64 recomputation: upsample, then torch's (weighted) mean cross-entropy."""
    up = torch.nn.functional.interpolate(logits.detach().double(), size=target.shape[-2:], mode="bilinear",
                                         align_corners=False)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    return torch.nn.functional.cross_entropy(up, target, weight=w, ignore_index=IGN).item()


def _conf64(output, target):
    """Zero offsets: every valid pixel is 'same', so L_conf = mean over valid pixels of -log F."""
    f = torch.nn.functional.interpolate(output.confidence.detach().double(), size=target.shape[-2:],
                                        mode="bilinear", align_corners=False)[:, 0]
    valid = target != IGN
    return (-torch.log(f[valid])).mean().item()


@pytest.mark.parametrize("class_weights", [None, [1.0, 2.0, 0.5]])
def test_ovenet_ce_total_matches_float64_recomputation(class_weights):
    out, target = _random_output(), _random_target()
    loss = build_loss("ovenet", kappa=0.3, lam=0.7, conf_weight=2.0, class_weights=class_weights)(out, target)
    lf, ls, li = (_ce64(m, target, class_weights) for m in (out.logits, out.seed_logits, out.initial_logits))
    lc = _conf64(out, target)
    assert loss.terms["loss_final"].item() == pytest.approx(lf, rel=1e-5)
    assert loss.terms["loss_seed"].item() == pytest.approx(ls, rel=1e-5)
    assert loss.terms["loss_initial"].item() == pytest.approx(li, rel=1e-5)
    assert loss.terms["loss_conf"].item() == pytest.approx(lc, rel=1e-5)
    assert loss.total.item() == pytest.approx(lf + 0.3 * ls + 0.7 * li + 2.0 * lc, rel=1e-5)
    if class_weights is not None:  # the weights matter for this target
        assert abs(lf - _ce64(out.logits, target)) > 1e-3


def test_ovenet_class_weight_preset():
    out, target = _random_output(classes=19), _random_target(classes=19)
    from seglab.losses.ce import CITYSCAPES_CLASS_WEIGHTS
    loss = build_loss("ovenet", class_weights="cityscapes")(out, target)
    assert loss.terms["loss_seed"].item() == pytest.approx(_ce64(out.seed_logits, target, CITYSCAPES_CLASS_WEIGHTS),
                                                           rel=1e-5)


def test_ovenet_reads_final_logits_before_logits():
    """In eval mode with inference_output=initial, logits is S_i: the loss must still use S_f."""
    out, target = _random_output(), _random_target()
    out.logits = out.initial_logits
    loss = build_loss("ovenet")(out, target)
    assert loss.terms["loss_final"].item() == pytest.approx(_ce64(out.final_logits, target), rel=1e-5)
    out.final_logits = None  # fallback for outputs without it
    loss = build_loss("ovenet")(out, target)
    assert loss.terms["loss_final"].item() == pytest.approx(_ce64(out.initial_logits, target), rel=1e-5)


def test_ovenet_ohem_terms_equal_the_ohem_loss_on_the_same_logits():
    out, target = _random_output(seed=3), _random_target(seed=3)
    ohem = {"name": "ohem", "thresh": 0.7, "min_kept": 20}
    loss = build_loss("ovenet", criterion=ohem, criterion_initial="ce", kappa=0.25, lam=0.5, conf_weight=0.5,
                      class_weights=[1.0, 1.5, 0.5])(out, target)
    reference = build_loss("ohem", thresh=0.7, min_kept=20, class_weights=[1.0, 1.5, 0.5])
    lf = reference(SegOutput(logits=out.final_logits), target).total.item()
    ls = reference(SegOutput(logits=out.seed_logits), target).total.item()
    li = build_loss("ce", class_weights=[1.0, 1.5, 0.5])(SegOutput(logits=out.initial_logits), target).total.item()
    assert abs(lf - _ce64(out.final_logits, target, [1.0, 1.5, 0.5])) > 1e-2  # OHEM selected a subset here
    assert loss.terms["loss_final"].item() == pytest.approx(lf, rel=1e-6)
    assert loss.terms["loss_seed"].item() == pytest.approx(ls, rel=1e-6)
    assert loss.terms["loss_initial"].item() == pytest.approx(li, rel=1e-6)
    lc = _conf64(out, target)
    assert loss.total.item() == pytest.approx(lf + 0.25 * ls + 0.5 * li + 0.5 * lc, rel=1e-5)


def test_ovenet_per_term_overrides_and_ohem_defaults():
    out, target = _random_output(seed=4), _random_target(seed=4)
    loss = build_loss("ovenet", criterion_seed="ohem", criterion_final={"name": "ohem", "min_kept": 10})(out, target)
    # "ohem" = thresh 0.7, min_kept 100000 (> 2*8*8 valid pixels: all kept, i.e. plain CE)
    assert loss.terms["loss_seed"].item() == pytest.approx(
        build_loss("ohem")(SegOutput(logits=out.seed_logits), target).total.item(), rel=1e-6)
    assert loss.terms["loss_seed"].item() == pytest.approx(_ce64(out.seed_logits, target), rel=1e-5)
    assert loss.terms["loss_final"].item() == pytest.approx(
        build_loss("ohem", min_kept=10)(SegOutput(logits=out.final_logits), target).total.item(), rel=1e-6)
    assert loss.terms["loss_initial"].item() == pytest.approx(_ce64(out.initial_logits, target), rel=1e-5)


@pytest.mark.parametrize("main_weight,aux_weight", [(1.0, 0.4), (0.7, 0.2)])
def test_ovenet_ocr_terms_weight_main_and_aux(main_weight, aux_weight):
    out, target = _random_output(seed=5, ocr=True), _random_target(seed=5)
    kwargs = {} if (main_weight, aux_weight) == (1.0, 0.4) else {"main_weight": main_weight, "aux_weight": aux_weight}
    loss = build_loss("ovenet", kappa=0.3, lam=0.6, **kwargs)(out, target)
    assert set(loss.terms) == {"loss", "loss_final", "loss_seed", "loss_initial", "loss_conf", "loss_final_aux",
                               "loss_seed_aux", "loss_initial_aux"}
    pairs = {"final": (out.final_logits, out.aux_logits), "seed": (out.seed_logits, out.seed_aux_logits),
             "initial": (out.initial_logits, out.initial_aux_logits)}
    expected = _conf64(out, target)
    for term, weight in (("final", 1.0), ("seed", 0.3), ("initial", 0.6)):
        main, aux = (_ce64(m, target) for m in pairs[term])
        assert loss.terms[f"loss_{term}"].item() == pytest.approx(main, rel=1e-5)
        assert loss.terms[f"loss_{term}_aux"].item() == pytest.approx(aux, rel=1e-5)
        expected += weight * (main_weight * main + aux_weight * aux)
    assert loss.total.item() == pytest.approx(expected, rel=1e-5)
    loss.total.backward()
    assert out.seed_aux_logits.grad.abs().sum() > 0 and out.initial_aux_logits.grad.abs().sum() > 0


def test_ovenet_ocr_output_needs_all_aux_maps():
    out, target = _random_output(ocr=True), _random_target()
    out.seed_aux_logits = None
    with pytest.raises(ValueError, match="seed_aux_logits and initial_aux_logits"):
        build_loss("ovenet")(out, target)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"criterion": "focal"}, "loss.criterion must be one of ce, ohem or a mapping"),
    ({"criterion": {"name": "dice"}}, "loss.criterion must be one of ce, ohem"),
    ({"criterion": 3}, "loss.criterion must be one of ce, ohem"),
    ({"criterion": {"thresh": 0.7}}, "the mapping has no name"),
    ({"criterion": {"name": "ce", "thresh": 0.7}}, "loss.criterion.thresh is not an option of criterion 'ce'"),
    ({"criterion": {"name": "ohem", "top_k": 3}},
     "loss.criterion.top_k is not an option of criterion 'ohem'; valid options: thresh, min_kept"),
    ({"criterion_seed": {"name": "ohem", "thresh": 2.0}}, "loss.criterion_seed.thresh must be a probability in (0, 1]"),
    ({"criterion_final": "lovasz"}, "loss.criterion_final must be one of ce, ohem"),
    ({"criterion_initial": {"name": "ohem", "min_kept": -1}}, "loss.criterion_initial.min_kept must be an integer >= 0"),
    ({"class_weights": "kitti"}, "loss.class_weights must be null, one of cityscapes"),
    ({"main_weight": -1.0}, "loss.main_weight must be a finite number >= 0"),
    ({"aux_weight": float("nan")}, "loss.aux_weight must be a finite number >= 0"),
    ({"crit": "ce"}, "loss 'ovenet' has no option loss.crit"),
])
def test_ovenet_bad_criterion_options_raise_one_line_config_error(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        build_loss("ovenet", **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)
