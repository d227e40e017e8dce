"""precision_recall_f1, EMeasure, helen_part_f1: hand values, scikit-learn and a literal numpy port of
Fan et al.'s E-measure as references; shared input validation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import precision_recall_fscore_support

from seglab.datasets.helen import CLASS_NAMES
from seglab.metrics import ConfusionMatrix, EMeasure, Trimap, helen_part_f1, precision_recall_f1

IGN = 255
EPS = np.finfo(np.float64).eps

# ---------------------------------------------------------------- precision / recall / F1

# rows = label, cols = prediction. Class 3 is labelled but never predicted, class 4 predicted but
# never labelled, class 5 absent from both.
HAND = [
    [3, 1, 0, 0, 0, 0],
    [0, 2, 1, 0, 2, 0],
    [1, 0, 1, 0, 0, 0],
    [2, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
]
# column sums (TP + FP): 6, 3, 2, 0, 2, 0; row sums (TP + FN): 4, 5, 2, 2, 0, 0
HAND_P = [3 / 6, 2 / 3, 1 / 2, 0.0, 0 / 2, math.nan]
HAND_R = [3 / 4, 2 / 5, 1 / 2, 0 / 2, 0.0, math.nan]
HAND_F1 = [6 / 10, 4 / 8, 2 / 4, 0.0, 0.0, math.nan]  # 2 TP / (row + col)


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12, abs=1e-15), (a, b)


def test_precision_recall_f1_by_hand():
    r = precision_recall_f1(torch.tensor(HAND))
    _same(r["precision"], HAND_P)
    _same(r["recall"], HAND_R)
    _same(r["f1"], HAND_F1)
    assert r["mean_precision"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 5, rel=1e-12)  # NaN class 5 left out
    assert r["mean_recall"] == pytest.approx((0.75 + 0.4 + 0.5) / 5, rel=1e-12)
    assert r["mean_f1"] == pytest.approx((0.6 + 0.5 + 0.5) / 5, rel=1e-12)
    sub = precision_recall_f1(np.array(HAND), classes=[1, 2, 5])
    _same(sub["precision"], HAND_P)  # per-class lists do not depend on classes
    assert sub["mean_precision"] == pytest.approx((2 / 3 + 1 / 2) / 2, rel=1e-12)
    assert sub["mean_recall"] == pytest.approx((0.4 + 0.5) / 2, rel=1e-12)
    assert sub["mean_f1"] == pytest.approx(0.5, rel=1e-12)
    assert math.isnan(precision_recall_f1(HAND, classes=[5])["mean_f1"])
    with pytest.raises(ValueError, match=r"classes \[6\]"):
        precision_recall_f1(HAND, classes=[0, 6])
    with pytest.raises(ValueError, match=r"\(C, C\)"):
        precision_recall_f1(torch.zeros(2, 3))


def test_f1_is_two_iou_over_one_plus_iou():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        cm = ConfusionMatrix(7)
        cm.matrix.copy_(torch.randint(0, 50, (7, 7), generator=g))
        cm.matrix[2, :] = 0
        cm.matrix[:, 2] = 0  # class 2 absent: NaN in both
        cm.matrix[4, :] = 0  # class 4 only predicted: IoU 0, F1 0
        iou = torch.tensor(cm.compute()["per_class_iou"], dtype=torch.float64)
        f1 = torch.tensor(precision_recall_f1(cm.matrix)["f1"], dtype=torch.float64)
        assert torch.equal(torch.isnan(f1), torch.isnan(iou)) and bool(torch.isnan(f1[2]))
        keep = ~torch.isnan(iou)
        assert torch.allclose(f1[keep], 2 * iou[keep] / (1 + iou[keep]), rtol=1e-12, atol=0)
        assert f1[4] == 0


def test_precision_recall_f1_against_sklearn():
    rng = np.random.default_rng(1)
    c, n = 6, 400
    y_true = rng.integers(0, 4, n)  # labels 0-3; 4 only predicted, 5 nowhere
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 5, n))
    y_true[:7] = 3
    y_pred[y_pred == 3] = 0  # 3 labelled, never predicted
    cm = ConfusionMatrix(c)
    cm.update(torch.from_numpy(y_pred).view(1, 1, n), torch.from_numpy(y_true).view(1, 1, n))
    r = precision_recall_f1(cm.matrix)
    seen = [0, 1, 2, 3, 4]
    p, rec, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=seen, average=None, zero_division=0)
    _same(r["precision"], list(p) + [math.nan])
    _same(r["recall"], list(rec) + [math.nan])
    _same(r["f1"], list(f1) + [math.nan])
    mp_, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert (r["mean_precision"], r["mean_recall"]) == pytest.approx((mp_, mr), rel=1e-12)
    # sklearn's macro F1 is the mean of per-class F1s, the same definition
    assert r["mean_f1"] == pytest.approx(mf, rel=1e-12)


# ---------------------------------------------------------------- EMeasure


def _ref_emeasure(fm: np.ndarray, gt: np.ndarray) -> float:
    """Literal float64 port of Fan et al.'s reference ``Emeasure.m`` on two 1-D bool maps."""
    dfm, dgt = fm.astype(np.float64), gt.astype(np.float64)
    if dgt.sum() == 0:
        enhanced = 1.0 - dfm
    elif (~gt).sum() == 0:
        enhanced = dfm
    else:
        align_fm, align_gt = dfm - dfm.mean(), dgt - dgt.mean()
        align = 2 * align_gt * align_fm / (align_gt * align_gt + align_fm * align_fm + EPS)
        enhanced = (align + 1) ** 2 / 4
    return enhanced.sum() / (gt.size - 1 + EPS)


def _ref_dataset(preds, targets, c):
    sums, counts = np.zeros(c), np.zeros(c, int)
    for p, t in zip(preds, targets):
        valid = t != IGN
        p, t = p[valid], t[valid]
        if t.size < 2:
            continue
        for k in range(c):
            if (t == k).any() or (p == k).any():
                sums[k] += _ref_emeasure(p == k, t == k)
                counts[k] += 1
    return sums, counts


def _em(pred, target, c):
    em = EMeasure(c)
    em.update(torch.tensor(pred), torch.tensor(target))
    return em.compute()


def test_emeasure_by_hand_normal_case():
    # GT_1 = [1, 1, 0, 0], FM_1 = [1, 0, 0, 0]: phi_GT = [.5, .5, -.5, -.5], phi_FM = [.75, -.25, -.25, -.25]
    # xi = [.75/.8125 = 12/13, -.25/.3125 = -.8, .8, .8]; (1 + xi)^2 / 4 = [625/676, .01, .81, .81]
    # E = sum / (4 - 1). Class 0 is the complement of class 1 (both phis negated): same E.
    e = (625 / 676 + 0.01 + 0.81 + 0.81) / 3
    r = _em([[[1, 0, 0, 0]]], [[[1, 1, 0, 0]]], 2)
    assert r["per_class"] == pytest.approx([e, e], rel=1e-12)
    assert r["mean"] == pytest.approx(e, rel=1e-12)
    assert r["image_count"] == [1, 1]


def test_emeasure_special_cases_all_foreground_and_all_background_gt():
    # GT all class 0 (n = 5). Class 0: GT all 1 -> sum(FM) / (n - 1) = 3/4.
    # Classes 1, 2: GT all 0 -> sum(1 - FM) / (n - 1) = 4/4. Class 3: seen nowhere -> NaN.
    r = _em([[[0, 0, 0, 1, 2]]], [[[0, 0, 0, 0, 0]]], 4)
    _same(r["per_class"], [3 / 4, 1.0, 1.0, math.nan])
    assert r["mean"] == pytest.approx((3 / 4 + 2) / 3, rel=1e-12)
    assert r["image_count"] == [1, 1, 1, 0]
    # perfect prediction of an all-foreground GT: n / (n - 1), above 1 as in the reference code
    assert _em([[[2] * 5]], [[[2] * 5]], 3)["per_class"][2] == pytest.approx(5 / 4, rel=1e-12)


def test_emeasure_mean_runs_over_the_reported_classes_only():
    # the all-background case above: per class [3/4, 1, 1, NaN]; class 0 (left out of a data set's
    # reported mean, e.g. miou_classes = [1, 2, 3]) is the only one below 1
    em = EMeasure(4)
    em.update(torch.tensor([[[0, 0, 0, 1, 2]]]), torch.tensor([[[0, 0, 0, 0, 0]]]))
    reported = em.compute(classes=[1, 2, 3])
    assert reported["mean"] == pytest.approx(1.0, rel=1e-12)  # (1 + 1) / 2; class 3 (NaN) left out
    _same(reported["per_class"], [3 / 4, 1.0, 1.0, math.nan])  # per-class list: all C
    assert em.compute()["mean"] == pytest.approx((3 / 4 + 2) / 3, rel=1e-12)
    assert math.isnan(em.compute(classes=[3])["mean"])
    with pytest.raises(ValueError, match=r"classes \[4\]"):
        em.compute(classes=[4])


def test_emeasure_aggregates_over_images_where_class_appears():
    # image A = the normal case above (classes 0, 1); image B = [0,0,0,0,0] vs [0,0,0,1,2] (classes 0-2)
    e = (625 / 676 + 1.62 + 0.01) / 3
    pred = torch.tensor([[[1, 0, 0, 0, 9]], [[0, 0, 0, 1, 2]]])  # the 9 sits on a void pixel
    target = torch.tensor([[[1, 1, 0, 0, IGN]], [[0, 0, 0, 0, 0]]])
    em = EMeasure(3)
    em.update(pred, target)
    r = em.compute()
    _same(r["per_class"], [(e + 3 / 4) / 2, (e + 1) / 2, 1.0])
    assert r["mean"] == pytest.approx(((e + 3 / 4) / 2 + (e + 1) / 2 + 1) / 3, rel=1e-12)
    assert r["image_count"] == [2, 2, 1]


def test_emeasure_skips_images_with_fewer_than_two_valid_pixels():
    r = _em([[[1, 0, 0]]], [[[1, IGN, IGN]]], 2)
    assert r["image_count"] == [0, 0] and math.isnan(r["mean"])
    em = EMeasure(2)
    em.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), IGN))
    assert em.compute()["image_count"] == [0, 0]


def _random_maps(g, b, c, size=(5, 6)):
    target = torch.randint(0, c, (b, *size), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.15] = IGN
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.5, target.clamp_max(c - 1),
                       torch.randint(0, c, target.shape, generator=g))
    target[0] = 1  # an all-foreground image for class 1 (all-background for the rest)
    target[1, :, :3] = 0  # an image with only two classes
    target[1, :, 3:] = 2
    return pred, target


def test_emeasure_against_numpy_reference_and_streaming():
    g = torch.Generator().manual_seed(2)
    c = 4
    pred, target = _random_maps(g, 6, c)
    sums, counts = _ref_dataset(pred.flatten(1).numpy(), target.flatten(1).numpy(), c)
    once = EMeasure(c)
    once.update(pred, target)
    assert once.image_count.tolist() == counts.tolist()
    assert np.allclose(once.score_sum.numpy(), sums, rtol=1e-12, atol=0)
    streamed = EMeasure(c)
    for i in range(0, 6, 2):
        streamed.update(pred[i:i + 2], target[i:i + 2])
    assert torch.equal(streamed.image_count, once.image_count)
    assert torch.allclose(streamed.score_sum, once.score_sum, rtol=1e-13, atol=0)
    assert streamed.compute()["mean"] == pytest.approx(float(np.mean(sums / counts)), rel=1e-12)
    streamed.all_reduce()  # not initialised: no-op
    streamed.reset()
    assert streamed.image_count.sum() == 0 and streamed.score_sum.sum() == 0


def test_emeasure_logits_equal_ids():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    target = torch.randint(0, 3, (2, 8, 10), generator=g)
    em = EMeasure(3)
    em.update(logits, target)
    ids = EMeasure(3)
    ids.update(F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=False).argmax(1), target)
    assert torch.equal(em.score_sum, ids.score_sum) and torch.equal(em.image_count, ids.image_count)


# ---------------------------------------------------------------- shared input validation


@pytest.mark.parametrize("make", [lambda: ConfusionMatrix(3), lambda: Trimap(3, widths=(1, 2)), lambda: EMeasure(3)])
@pytest.mark.parametrize("pred, target, match", [
    (torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 3], [7, IGN]]]), r"label value\(s\) \[3, 7\]"),
    (torch.tensor([[[0, 5]]]), torch.tensor([[[0, 1]]]), r"predicted class id\(s\) \[5\]"),
    (torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 3, 2, dtype=torch.long), "does not match"),
    (torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "channels"),
    (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "integer class ids"),
    (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), r"\(B, H, W\)"),
])
def test_same_validation_errors_as_confusion_matrix(make, pred, target, match):
    with pytest.raises(ValueError, match=match):
        make().update(pred, target)


def test_prediction_at_void_pixels_is_not_validated():
    for metric in (ConfusionMatrix(2), Trimap(2, widths=(1,)), EMeasure(2)):
        metric.update(torch.tensor([[[0, 7]]]), torch.tensor([[[0, IGN]]]))


# ---------------------------------------------------------------- HELEN part F1

# indices: 0 background, 1 skin, 2 l-brow, 3 r-brow, 4 l-eye, 5 r-eye, 6 nose, 7 u-lip, 8 mouth,
# 9 l-lip, 10 hair
HELEN_ENTRIES = {
    (0, 0): 10, (1, 1): 20, (1, 0): 4, (1, 4): 2,  # skin -> bg (miss), skin -> l-eye
    (2, 2): 3, (2, 3): 1, (3, 3): 2, (3, 1): 2,  # l-brow -> r-brow (hit for brows), r-brow -> skin
    (4, 4): 5, (5, 5): 5, (6, 6): 6,
    (7, 7): 3, (8, 8): 2, (9, 9): 3, (7, 9): 1, (9, 10): 2,  # u-lip -> l-lip (hit), l-lip -> hair
    (10, 10): 8, (10, 1): 3,  # hair -> skin
}


def test_helen_part_f1_by_hand():
    m = torch.zeros(11, 11, dtype=torch.long)
    for (t, p), v in HELEN_ENTRIES.items():
        m[t, p] = v
    r = helen_part_f1(m, CLASS_NAMES)
    # brows: TP = 3+1+2 = 6, label rows 4+4 = 8, predicted cols 3+3 = 6 -> 12/14
    # eyes: TP = 10, rows 10, cols (5+2)+5 = 12 -> 20/22
    # mouth: TP = 3+1+2+3 = 9, rows 4+2+5 = 11, cols 3+2+4 = 9 -> 18/20
    # overall (skin..lower lip): TP = 55, rows 61, cols 58 -> 110/119
    assert r == pytest.approx({"brows": 12 / 14, "eyes": 20 / 22, "mouth": 18 / 20, "overall": 110 / 119}, rel=1e-12)
    # without skin: TP = 31, rows 35, cols 33 -> 62/68
    assert helen_part_f1(m, CLASS_NAMES, include_skin=False)["overall"] == pytest.approx(62 / 68, rel=1e-12)
    # skin-free overall differs from the skin one here, and the brows/eyes/mouth do not depend on it
    no_skin = helen_part_f1(m.numpy(), [n.upper() for n in CLASS_NAMES], include_skin=False)
    assert {k: no_skin[k] for k in ("brows", "eyes", "mouth")} == pytest.approx({k: r[k] for k in ("brows", "eyes", "mouth")})


def test_helen_part_f1_errors():
    names = ["r_eye" if n == "right eye" else n for n in CLASS_NAMES]
    with pytest.raises(ValueError, match="'right eye'"):
        helen_part_f1(torch.zeros(11, 11), names)
    with pytest.raises(ValueError, match="class names"):
        helen_part_f1(torch.zeros(10, 10), CLASS_NAMES)
    assert math.isnan(helen_part_f1(torch.zeros(11, 11), CLASS_NAMES)["eyes"])

