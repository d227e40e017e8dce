"""OHEM ``min_kept`` as a fraction of the batch's valid pixels, and the ``loss=ovenet_paper`` preset:
kept pixels counted by hand, a numpy float64 recomputation, one-line errors naming the key."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seglab.errors import ConfigError
from seglab.losses import build_loss, ohem_cross_entropy
from seglab.losses.ohem import kept_count
from seglab.models.outputs import SegOutput

IGN = 255
LOSS_CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "loss"

# 2 classes, 1 image, 1 row: 6 valid pixels whose true-class probabilities are set exactly, then 2
# ignored pixels (which must not count towards the batch's valid pixels).
PROBS = [0.6, 0.1, 0.95, 0.3, 0.8, 0.5]  # sorted: 0.1, 0.3, 0.5, 0.6, 0.8, 0.95
LABELS = [1, 0, 1, 1, 0, 0]


def _tiny():
    c0, c1 = [], []
    for p, y in zip(PROBS, LABELS):
        a, b = math.log(p), math.log(1 - p)
        c0.append(a if y == 0 else b)
        c1.append(b if y == 0 else a)
    c0 += [5.0, -5.0]
    c1 += [-5.0, 5.0]
    logits = torch.tensor([[[c0], [c1]]], dtype=torch.float64, requires_grad=True)  # (1, 2, 1, 8)
    return logits, torch.tensor([[LABELS + [IGN, IGN]]])


def _mean_nll(ps):
    return sum(-math.log(p) for p in ps) / len(ps)


@pytest.mark.parametrize("fraction, kept_probs", [
    # n = 6 valid pixels (the 2 ignored ones do not count); thresh 0.2 keeps only p = 0.1, so the
    # count binds: k = max(1, floor(6 f + 1/2)), threshold = sorted p[k], kept p < threshold.
    (0.5, [0.1, 0.3, 0.5]),          # k = 3 -> threshold 0.6 (with 8 pixels counted: k = 4, 0.6 kept too)
    (0.25, [0.1, 0.3]),              # 1.5 rounds up to k = 2 -> threshold 0.5
    (0.24, [0.1]),                   # 1.44 rounds to k = 1 -> threshold 0.3
    (0.01, [0.1]),                   # 0.06 rounds to 0, at least 1 -> threshold 0.3
    (1.0, PROBS),                    # k = 6 = n: every valid pixel
    (0.9, [0.1, 0.3, 0.5, 0.6, 0.8]),  # 5.4 -> k = 5 -> threshold 0.95
])
def test_fraction_kept_pixels_by_hand(fraction, kept_probs):
    logits, target = _tiny()
    loss = build_loss("ohem", thresh=0.2, min_kept=fraction)(SegOutput(logits=logits), target)
    assert loss.total.item() == pytest.approx(_mean_nll(kept_probs), rel=1e-12)
    loss.total.backward()
    g = logits.grad[0, :, 0]
    kept = {PROBS.index(p) for p in kept_probs}
    assert [bool(g[:, i].abs().sum() > 0) for i in range(6)] == [i in kept for i in range(6)]
    assert torch.all(g[:, 6:] == 0)


def test_fraction_and_the_equivalent_count_agree_and_thresh_still_binds():
    logits, target = _tiny()
    # 0.5 of 6 valid pixels = the count 3
    assert ohem_cross_entropy(logits, target, 0.2, 0.5).item() == ohem_cross_entropy(logits, target, 0.2, 3).item()
    # thresh 0.7 above the 2nd smallest p: threshold 0.7 keeps 0.1, 0.3, 0.5, 0.6 whatever k = 2
    assert ohem_cross_entropy(logits, target, 0.7, 0.3).item() == pytest.approx(
        _mean_nll([0.1, 0.3, 0.5, 0.6]), rel=1e-12)


def test_kept_count_rule():
    assert [kept_count(f, 10) for f in (0.05, 0.1, 0.14, 0.15, 0.25, 1.0)] == [1, 1, 1, 2, 3, 10]
    assert kept_count(0.125, 2 * 512 * 1024) == 131072  # the official Cityscapes count per GPU
    assert kept_count(7, 3) == 7 and kept_count(0, 3) == 0  # ints stay counts


def _ohem64(logits, target, thresh, fraction):
    """Independent numpy float64 OHEM: whole batch pooled, k = max(1, floor(f n + 1/2))."""
    z = logits.detach().numpy().astype(np.float64)  # already at label size here
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    t = target.numpy()
    valid = t != IGN
    b, h, w = np.nonzero(valid)
    lp = logp[b, t[valid], h, w]
    p = np.exp(lp)
    n = p.size
    k = max(1, int(np.floor(fraction * n + 0.5)))
    keep = np.ones(n, bool) if n <= k else p < max(thresh, np.sort(p)[k])
    return float(-lp[keep].mean()), int(keep.sum()), n


@pytest.mark.parametrize("thresh, fraction", [(0.7, 0.3), (0.2, 0.125), (0.9, 0.6), (0.5, 1.0)])
def test_fraction_matches_float64_recomputation_over_a_batch(thresh, fraction):
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 5, 6, 9, generator=g, dtype=torch.float64) * 2
    target = torch.randint(0, 5, (3, 6, 9), generator=g)
    target[0, :3] = IGN
    target[2, :, :4] = IGN  # the images have different valid counts: the fraction is of the batch's
    expected, kept, n = _ohem64(logits, target, thresh, fraction)
    assert n == 162 - 27 - 24
    assert 0 < kept <= n
    ours = build_loss("ohem", thresh=thresh, min_kept=fraction)(SegOutput(logits=logits), target).total
    assert ours.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("bad", [1.5, 0.0, -0.25, float("nan"), float("inf"), 100000.0, True, "0.1", -1])
def test_bad_min_kept_is_a_one_line_error_naming_the_key(bad):
    with pytest.raises(ConfigError) as err:
        build_loss("ohem", min_kept=bad)
    text = str(err.value)
    assert "\n" not in text and text.startswith("loss.min_kept must be") and "(0, 1]" in text and repr(bad) in text


def test_bad_fraction_in_an_ovenet_criterion_names_the_nested_key():
    with pytest.raises(ConfigError, match=r"^loss\.criterion_seed\.min_kept must be .*\(0, 1\].*got 2\.0$"):
        build_loss("ovenet", criterion_seed={"name": "ohem", "min_kept": 2.0})


# ---------------------------------------------------------------- loss=ovenet_paper
def _paper_loss():
    cfg = yaml.safe_load((LOSS_CONF / "ovenet_paper.yaml").read_text())
    assert cfg.pop("name") == "ovenet"  # the same method: the platform dispatches on the loss name
    return build_loss("ovenet", **cfg)


def test_ovenet_paper_preset_is_ohem_on_every_term():
    loss = _paper_loss()
    assert (loss.kappa, loss.lam, loss.conf_weight) == (0.5, 0.5, 1.0)
    for term in ("final", "seed", "initial"):
        crit = loss.criteria[term]
        assert type(crit).__name__ == "OhemCrossEntropyLoss"
        assert (crit.thresh, crit.min_kept) == (0.9, 0.125) and isinstance(crit.min_kept, float)


def test_ovenet_paper_total_matches_float64_recomputation():
    g = torch.Generator().manual_seed(11)
    c, h, w = 4, 8, 8
    maps = {k: (torch.randn(2, c, h, w, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
            for k in ("final", "seed", "initial")}
    conf = (torch.rand(2, 1, h, w, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    out = SegOutput(logits=maps["final"], final_logits=maps["final"], seed_logits=maps["seed"],
                    initial_logits=maps["initial"], confidence=conf, offsets=torch.zeros(2, 2, h, w))
    target = torch.randint(0, c, (2, h, w), generator=g)
    target[1, :3] = IGN
    result = _paper_loss()(out, target)
    terms = {k: _ohem64(maps[k], target, 0.9, 0.125) for k in maps}
    n = 128 - 24
    assert all(t[2] == n for t in terms.values())
    # k = floor(0.125 * 104 + 1/2) = 13; the random maps are hard (p < 0.9 mostly): more are kept
    assert all(13 <= t[1] < n for t in terms.values())
    # zero offsets: every valid pixel's seed is itself -> L_conf = mean over valid pixels of -log F
    conf64 = float(-np.log(conf.detach().numpy()[:, 0][target.numpy() != IGN]).mean())
    for k in maps:
        assert result.terms[f"loss_{k}"].item() == pytest.approx(terms[k][0], rel=1e-10)
    expected = terms["final"][0] + 0.5 * terms["seed"][0] + 0.5 * terms["initial"][0] + conf64
    assert result.total.item() == pytest.approx(expected, rel=1e-6)
