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
