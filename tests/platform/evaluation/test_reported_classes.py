"""The evaluators' class means run over the data set's reported classes (``EvalContext.miou_classes``),
as ``val_miou`` does: trimap (boundary and non-boundary) mIoU, F1 / precision / recall and the
E-measure. Hand-built maps where the left-out class scores the opposite of the others."""

import pytest
import torch
import torch.nn.functional as F

from seglab.models.outputs import SegOutput
from seglab.platform.evaluation import (EvalBatch, EvalContext, ScoresEvaluator, SegmentationEvaluator,
                                        TrimapEvaluator)

# two identical rows; class 0 plays the background a data set leaves out of its mean (miou_classes)
TARGET = torch.tensor([[[0, 0, 1, 1, 2, 2]] * 2])
PRED = torch.tensor([[[0, 2, 1, 1, 2, 1]] * 2])


def _run(evaluators):
    logits = F.one_hot(PRED, 3).permute(0, 3, 1, 2).float()  # argmax = PRED
    batch = EvalBatch(torch.zeros(1, 3, 2, 6), TARGET, [0], SegOutput(logits=logits), None)
    out = {}
    for ev in evaluators:
        ev.process(batch)
        ev.all_reduce()
        out.update(ev.metrics())
    return out


def _ctx(miou_classes):
    return EvalContext(3, 255, ["background", "a", "b"], [(0, 0, 0)] * 3, torch.device("cpu"),
                       miou_classes=miou_classes)


def test_trimap_and_scores_means_cover_the_reported_classes_only():
    m = _run([SegmentationEvaluator(_ctx([1, 2])), TrimapEvaluator(_ctx([1, 2]), (1,)), ScoresEvaluator(_ctx([1, 2]))])
    # whole image: label [0 0 1 1 2 2] vs pred [0 2 1 1 2 1] (x2 rows): IoU 1/2, 2/3, 1/3
    assert m["val_miou"] == pytest.approx((2 / 3 + 1 / 3) / 2, rel=1e-12)
    # band (columns 1-4): label [0 1 1 2] vs pred [2 1 1 2]: IoU 0, 1, 1/2; rest: [0 2] vs [0 1]: IoU 1, 0, 0
    assert m["val_trimap_miou_w1"] == pytest.approx((1 + 1 / 2) / 2, rel=1e-12)
    assert m["val_nonboundary_miou_w1"] == 0.0
    assert m["val_trimap_error_w1"] == pytest.approx(1 / 4, rel=1e-12)  # a pixel quantity, not a class mean
    # F1 = 2 TP / (label + pred): class 0: 2*2/(4+2) = 2/3, class 1: 2*4/(4+6) = 4/5, class 2: 2*2/(4+4) = 1/2
    assert m["val_f1"] == pytest.approx((4 / 5 + 1 / 2) / 2, rel=1e-12)
    # E-measure, one image of 12 pixels (Fan et al.; n - 1 = 11):
    # per class from the binary maps by the reference formula (_emeasure: a per-pixel port, not the
    # confusion-count shortcut of seglab.metrics): 0.779, 0.854, 0.731
    per_class = [_emeasure([p == c for p in [0, 2, 1, 1, 2, 1]] * 2, [t == c for t in [0, 0, 1, 1, 2, 2]] * 2)
                 for c in range(3)]
    assert m["val_emeasure_background"] == pytest.approx(per_class[0], rel=1e-12)
    assert m["val_emeasure"] == pytest.approx((per_class[1] + per_class[2]) / 2, rel=1e-12)
    assert abs(sum(per_class) / 3 - (per_class[1] + per_class[2]) / 2) > 1e-3  # the mean over all 3 differs


def test_without_miou_classes_every_class_counts():
    m = _run([TrimapEvaluator(_ctx(None), (1,)), ScoresEvaluator(_ctx(None))])
    assert m["val_trimap_miou_w1"] == pytest.approx((0 + 1 + 1 / 2) / 3, rel=1e-12)
    assert m["val_nonboundary_miou_w1"] == pytest.approx(1 / 3, rel=1e-12)
    assert m["val_f1"] == pytest.approx((2 / 3 + 4 / 5 + 1 / 2) / 3, rel=1e-12)


def _emeasure(fm, gt):
    """Fan et al.'s ``Emeasure.m`` on two lists of bools (neither map constant here)."""
    n = len(gt)
    mf, mg = sum(fm) / n, sum(gt) / n
    total = 0.0
    for f, g in zip(fm, gt):
        af, ag = f - mf, g - mg
        xi = 2 * ag * af / (ag * ag + af * af + 2.220446049250313e-16)
        total += (1 + xi) ** 2 / 4
    assert 0 < sum(gt) < n
    return total / (n - 1 + 2.220446049250313e-16)
