"""The ``ohem`` loss, class-weighted ``ce`` and the auxiliary-logits weighting: by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from seglab.errors import ConfigError
from seglab.losses import CITYSCAPES_CLASS_WEIGHTS, build_loss, list_losses, ohem_cross_entropy
from seglab.models.outputs import SegOutput

IGN = 255
# 2 classes; the true-class probability of each pixel is set exactly via logits (log(1-p), log(p))
# for label 1, (log(p), log(1-p)) for label 0. Row 0: 6 valid pixels; row 1: 2 ignored pixels
# whose (ignored) true-class probability would be the smallest of all.
PROBS = [0.6, 0.1, 0.95, 0.3, 0.8, 0.5]
LABELS = [1, 0, 1, 1, 0, 0]


def _tiny(extra_ignored=True):
    c0, c1, labels = [], [], []
    for p, y in zip(PROBS, LABELS):
        a, b = math.log(p), math.log(1 - p)
        c0.append(a if y == 0 else b)
        c1.append(b if y == 0 else a)
        labels.append(y)
    if extra_ignored:
        c0 += [5.0, -5.0]
        c1 += [-5.0, 5.0]
        labels += [IGN, IGN]
    logits = torch.tensor([[[c0], [c1]]], dtype=torch.float64, requires_grad=True)  # (1, 2, 1, N)
    return logits, torch.tensor([[labels]])


def _nll(ps):
    return [-math.log(p) for p in ps]


def test_ohem_registered():
    assert "ohem" in list_losses()


def test_ohem_thresh_binding():
    # n = 6 > min_kept = 2; sorted p = [0.1, 0.3, 0.5, 0.6, 0.8, 0.95]; p_(2) = 0.5 < 0.7
    # -> threshold 0.7, kept p < 0.7: 0.1, 0.3, 0.5, 0.6
    logits, target = _tiny()
    expected = sum(_nll([0.1, 0.3, 0.5, 0.6])) / 4
    out = build_loss("ohem", thresh=0.7, min_kept=2)(SegOutput(logits=logits), target)
    assert out.total.item() == pytest.approx(expected, rel=1e-9)
    assert set(out.terms) == {"loss"}
    out.total.backward()
    g = logits.grad[0, :, 0]
    for i, p in enumerate(PROBS):
        assert (g[:, i].abs().sum() > 0) == (p < 0.7), i
    assert torch.all(g[:, 6:] == 0)  # ignored pixels


def test_ohem_min_kept_binding():
    # thresh 0.2 would keep only p = 0.1; min_kept = 3 -> threshold p_(3) = 0.6: keep 0.1, 0.3, 0.5
    logits, target = _tiny()
    expected = sum(_nll([0.1, 0.3, 0.5])) / 3
    assert ohem_cross_entropy(logits, target, thresh=0.2, min_kept=3).item() == pytest.approx(expected, rel=1e-9)


def test_ohem_too_few_valid_keeps_all_valid():
    logits, target = _tiny()
    expected = sum(_nll(PROBS)) / 6
    for min_kept in (6, 100000):
        loss = build_loss("ohem", thresh=0.7, min_kept=min_kept)(SegOutput(logits=logits), target)
        assert loss.total.item() == pytest.approx(expected, rel=1e-9)


def test_ohem_matches_official_formula_random():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 7, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 5, 7), generator=g)
    target[0, :2] = IGN
    for thresh, min_kept in [(0.7, 10), (0.2, 30), (0.9, 0)]:
        # official OhemCrossEntropy._ohem_forward (n > min_kept here)
        pred = F.softmax(logits, 1)
        losses = F.cross_entropy(logits, target, ignore_index=IGN, reduction="none").view(-1)
        mask = target.view(-1) != IGN
        tmp = target.clone()
        tmp[tmp == IGN] = 0
        pred = pred.gather(1, tmp.unsqueeze(1)).view(-1)[mask]
        pred, ind = pred.sort()
        threshold = max(pred[min(min_kept, pred.numel() - 1)].item(), thresh)
        ref = losses[mask][ind][pred < threshold].mean()
        ours = ohem_cross_entropy(logits, target, thresh=thresh, min_kept=min_kept)
        assert ours.item() == pytest.approx(ref.item(), rel=1e-9)


def test_ohem_class_weights_multiply_pixel_losses():
    logits, target = _tiny()
    w = [2.0, 0.5]
    kept = [(0.1, 0), (0.3, 1), (0.5, 0), (0.6, 1)]
    expected = sum(w[y] * -math.log(p) for p, y in kept) / 4
    loss = build_loss("ohem", thresh=0.7, min_kept=2, class_weights=w)(SegOutput(logits=logits), target)
    assert loss.total.item() == pytest.approx(expected, rel=1e-9)


def test_ohem_all_ignore_is_zero_with_grad():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = build_loss("ohem", min_kept=0)(SegOutput(logits=logits), torch.full((1, 4, 4), IGN)).total
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


# ---------------------------------------------------------------- class-weighted ce
def test_weighted_ce_by_hand():
    z = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0], [1.5, -0.5, 0.5]]
    labels = [0, 2, IGN, 1]
    w = [0.5, 2.0, 3.0]
    logits = torch.tensor(z, dtype=torch.float64).t().reshape(1, 3, 1, 4)
    target = torch.tensor([[labels]])
    nll = lambda v, y: math.log(sum(math.exp(x) for x in v)) - v[y]  # noqa: E731
    num = w[0] * nll(z[0], 0) + w[2] * nll(z[1], 2) + w[1] * nll(z[3], 1)
    expected = num / (w[0] + w[2] + w[1])
    loss = build_loss("ce", class_weights=w)(SegOutput(logits=logits), target)
    assert loss.total.item() == pytest.approx(expected, rel=1e-9)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w, dtype=torch.float64), ignore_index=IGN)
    assert loss.total.item() == pytest.approx(ref.item(), rel=1e-9)


def test_cityscapes_preset_matches_torch():
    assert len(CITYSCAPES_CLASS_WEIGHTS) == 19
    assert CITYSCAPES_CLASS_WEIGHTS[0] == 0.8373 and CITYSCAPES_CLASS_WEIGHTS[-1] == 1.0507
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 19, 4, 4, generator=g)
    target = torch.randint(0, 19, (2, 4, 4), generator=g)
    target[0, 0] = IGN
    ref = F.cross_entropy(logits, target, weight=torch.tensor(CITYSCAPES_CLASS_WEIGHTS), ignore_index=IGN)
    loss = build_loss("ce", class_weights="cityscapes")(SegOutput(logits=logits), target)
    assert loss.total.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "ohem"])
def test_class_weights_length_mismatch_raises(name):
    loss = build_loss(name, class_weights="cityscapes")
    with pytest.raises(ConfigError, match=r"loss\.class_weights has 19 values .* 3 classes"):
        loss(SegOutput(logits=torch.randn(1, 3, 2, 2)), torch.zeros(1, 2, 2, dtype=torch.long))


def test_weighted_ce_all_ignore_is_zero():
    logits = torch.randn(1, 2, 2, 2, requires_grad=True)
    loss = build_loss("ce", class_weights=[1.0, 2.0])(SegOutput(logits=logits), torch.full((1, 2, 2), IGN)).total
    assert loss.item() == 0.0 and not torch.isnan(loss)


# ---------------------------------------------------------------- auxiliary weighting
MAIN = [(2.0, -1.0), (0.0, 1.0)]  # per pixel (class-0 logit, class-1 logit); labels [0, 1]
AUX = [(0.5, 0.0), (-1.0, -0.5)]


def _logits(pix):
    return torch.tensor([[[[pix[0][0], pix[1][0]]], [[pix[0][1], pix[1][1]]]]], requires_grad=True)


def _ce_pix(pix):
    nll = lambda v, y: math.log(sum(math.exp(x) for x in v)) - v[y]  # noqa: E731
    return (nll(list(pix[0]), 0) + nll(list(pix[1]), 1)) / 2


@pytest.mark.parametrize("name", ["ce", "ohem"])
@pytest.mark.parametrize("kwargs", [{}, {"aux_weight": 1.5, "main_weight": 0.5}])
def test_aux_weighting_by_hand(name, kwargs):
    aw, mw = kwargs.get("aux_weight", 0.4), kwargs.get("main_weight", 1.0)
    lm, la = _ce_pix(MAIN), _ce_pix(AUX)
    out = SegOutput(logits=_logits(MAIN), aux_logits=_logits(AUX))
    extra = {"thresh": 1.0, "min_kept": 0} if name == "ohem" else {}  # ohem keeps every pixel (p < 1)
    loss = build_loss(name, **kwargs, **extra)(out, torch.tensor([[[0, 1]]]))
    assert set(loss.terms) == {"loss", "loss_main", "loss_aux"}
    assert loss.total.item() == pytest.approx(mw * lm + aw * la, rel=1e-6)
    assert loss.terms["loss"].item() == pytest.approx(loss.total.item(), rel=1e-7)
    assert loss.terms["loss_main"].item() == pytest.approx(lm, rel=1e-6)
    assert loss.terms["loss_aux"].item() == pytest.approx(la, rel=1e-6)
    assert all(not t.requires_grad for t in loss.terms.values())
    loss.total.backward()
    assert out.logits.grad.abs().sum() > 0 and out.aux_logits.grad.abs().sum() > 0


def test_no_aux_only_loss_term():
    out = SegOutput(logits=_logits(MAIN))
    loss = build_loss("ce")(out, torch.tensor([[[0, 1]]]))
    assert set(loss.terms) == {"loss"}
    assert loss.total.item() == pytest.approx(_ce_pix(MAIN), rel=1e-6)


@pytest.mark.parametrize(
    "name,kwargs,key",
    [
        ("ce", {"class_weights": "kitti"}, "class_weights"),
        ("ce", {"class_weights": [1.0, -1.0]}, "class_weights"),
        ("ohem", {"class_weights": []}, "class_weights"),
        ("ohem", {"class_weights": [0, 0]}, "class_weights"),
        ("ce", {"aux_weight": -0.4}, "aux_weight"),
        ("ohem", {"main_weight": float("nan")}, "main_weight"),
        ("ohem", {"thresh": 0}, "thresh"),
        ("ohem", {"thresh": 1.5}, "thresh"),
        ("ohem", {"thresh": "0.7"}, "thresh"),
        ("ohem", {"min_kept": -1}, "min_kept"),
        ("ohem", {"min_kept": 1.5}, "min_kept"),
        ("ohem", {"ignore_index": "255"}, "ignore_index"),
        ("ohem", {"threshold": 0.7}, "threshold"),
    ],
)
def test_bad_kwargs_raise_config_error_naming_key(name, kwargs, key):
    with pytest.raises(ConfigError, match=rf"loss\.{key}"):
        build_loss(name, **kwargs)
