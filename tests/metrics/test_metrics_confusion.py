"""ConfusionMatrix: hand-computed scores, streaming, logits input, torchmetrics cross-check."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from seglab.metrics import ConfusionMatrix

IGN = 255

# 10 pixels, one ignored (its prediction 3 must not count), 4 classes where class 3 is absent from
# both the (valid) prediction and the label.
TARGET = [0, 0, 0, 1, 1, 2, 2, IGN, 1, 0]
PRED = [0, 0, 1, 1, 2, 2, 0, 3, 1, 0]
# rows = label, cols = prediction:
#   label 0: pred 0 x3, pred 1 x1   label 1: pred 1 x2, pred 2 x1   label 2: pred 0 x1, pred 2 x1
EXPECTED = [
    [3, 1, 0, 0],
    [0, 2, 1, 0],
    [1, 0, 1, 0],
    [0, 0, 0, 0],
]


def _hand_cm():
    cm = ConfusionMatrix(4, ignore_index=IGN)
    cm.update(torch.tensor(PRED).view(1, 2, 5), torch.tensor(TARGET).view(1, 2, 5))
    return cm


def test_hand_computed_matrix_and_scores():
    cm = _hand_cm()
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == EXPECTED
    r = cm.compute()
    # IoU_c = TP / (TP + FP + FN) = TP / (row + col - TP)
    iou = [3 / (4 + 4 - 3), 2 / (3 + 3 - 2), 1 / (2 + 2 - 1)]
    assert r["per_class_iou"][:3] == pytest.approx(iou, rel=1e-12)
    assert math.isnan(r["per_class_iou"][3])  # absent from both: NaN ...
    assert r["miou"] == pytest.approx((0.6 + 0.5 + 1 / 3) / 3, rel=1e-12)  # ... and not in the mean
    assert r["pixel_acc"] == pytest.approx(6 / 9, rel=1e-12)
    assert r["per_class_acc"][:3] == pytest.approx([3 / 4, 2 / 3, 1 / 2], rel=1e-12)
    assert math.isnan(r["per_class_acc"][3])
    assert r["mean_acc"] == pytest.approx((3 / 4 + 2 / 3 + 1 / 2) / 3, rel=1e-12)
    assert all(isinstance(v, float) for v in r["per_class_iou"])


def test_class_predicted_but_not_labelled_counts_with_iou_zero():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[[0, 2, 1, 1]]]), torch.tensor([[[0, 0, 1, 1]]]))
    r = cm.compute()
    assert r["per_class_iou"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert r["miou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert math.isnan(r["per_class_acc"][2])
    assert r["mean_acc"] == pytest.approx((0.5 + 1.0) / 2)


def test_empty_and_reset():
    cm = _hand_cm()
    cm.reset()
    assert cm.matrix.sum() == 0
    r = cm.compute()
    assert math.isnan(r["miou"]) and math.isnan(r["pixel_acc"]) and math.isnan(r["mean_acc"])
    cm.update(torch.full((1, 3, 3), IGN), torch.full((1, 3, 3), IGN))  # all-ignore batch is fine
    assert cm.matrix.sum() == 0


def test_streaming_equals_single_update():
    g = torch.Generator().manual_seed(0)
    preds = [torch.randint(0, 6, (2, 7, 9), generator=g) for _ in range(4)]
    targets = [torch.randint(0, 6, (2, 7, 9), generator=g) for _ in range(4)]
    for t in targets:
        t[torch.rand(t.shape, generator=g) < 0.2] = IGN
    streamed = ConfusionMatrix(6)
    for p, t in zip(preds, targets):
        streamed.update(p, t)
    once = ConfusionMatrix(6)
    once.update(torch.cat(preds), torch.cat(targets))
    assert torch.equal(streamed.matrix, once.matrix)
    assert streamed.compute() == once.compute()
    assert int(once.matrix.sum()) == sum(int((t != IGN).sum()) for t in targets)


def test_against_torchmetrics_random():
    g = torch.Generator().manual_seed(1)
    c = 5
    pred = torch.randint(0, c, (3, 20, 30), generator=g)
    target = torch.randint(0, c, (3, 20, 30), generator=g)
    # bias the prediction towards the label so that the scores are not all ~1/C
    agree = torch.rand(pred.shape, generator=g) < 0.5
    pred[agree] = target[agree]
    target[torch.rand(target.shape, generator=g) < 0.1] = IGN
    cm = ConfusionMatrix(c)
    cm.update(pred, target)
    ref_cm = MulticlassConfusionMatrix(num_classes=c, ignore_index=IGN)(pred, target)
    assert torch.equal(cm.matrix, ref_cm.long())
    ref_iou = MulticlassJaccardIndex(num_classes=c, ignore_index=IGN, average=None)(pred, target)
    r = cm.compute()
    assert r["per_class_iou"] == pytest.approx(ref_iou.double().tolist(), rel=1e-6)
    assert r["miou"] == pytest.approx(ref_iou.double().mean().item(), rel=1e-6)
    valid = target != IGN
    assert r["pixel_acc"] == pytest.approx((pred[valid] == target[valid]).double().mean().item(), rel=1e-12)


def test_logits_input_upsampled_then_argmax():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 10, 12), generator=g)
    cm = ConfusionMatrix(4)
    cm.update(logits, target)
    ref = ConfusionMatrix(4)
    ref.update(F.interpolate(logits, size=(10, 12), mode="bilinear", align_corners=False).argmax(1), target)
    assert torch.equal(cm.matrix, ref.matrix)
    # same-size logits: plain argmax
    same = ConfusionMatrix(4)
    same.update(logits, target[:, :5, :6])
    ids = ConfusionMatrix(4)
    ids.update(logits.argmax(1), target[:, :5, :6])
    assert torch.equal(same.matrix, ids.matrix)


def test_logits_upsampling_by_hand():
    # class-1 score [-1, 3] along the width, class 0 constant 0; bilinear align_corners=False to
    # width 4 gives [-1, 0, 2, 3] -> argmax [0, 0, 1, 1] (nearest would also give that, so make
    # the crossing point discriminate: align_corners=True would give [-1, 1/3, 5/3, 3] -> [0,1,1,1]).
    logits = torch.tensor([[[[0.0, 0.0]], [[-1.0, 3.0]]]])
    cm = ConfusionMatrix(2)
    cm.update(logits, torch.tensor([[[0, 0, 1, 1]]]))
    assert cm.matrix.tolist() == [[2, 0], [0, 2]]


def test_bad_label_raises_naming_value():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"label value\(s\) \[3, 7\]"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 3], [7, IGN]]]))
    with pytest.raises(ValueError, match=r"\[-1\]"):
        cm.update(torch.zeros(1, 1, 2, dtype=torch.long), torch.tensor([[[0, -1]]]))
    assert cm.matrix.sum() == 0  # nothing was added by the failed updates
    with pytest.raises(ValueError, match="predicted class id"):
        cm.update(torch.tensor([[[0, 5]]]), torch.tensor([[[0, 1]]]))
    with pytest.raises(ValueError, match="does not match"):
        cm.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="channels"):
        cm.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_custom_ignore_index_and_no_op_all_reduce():
    cm = ConfusionMatrix(2, ignore_index=-1)
    cm.update(torch.tensor([[[0, 1, 1]]]), torch.tensor([[[0, -1, 1]]]))
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]
    cm.all_reduce()  # not initialised: no-op
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]


def test_compute_over_a_class_subset():
    cm = _hand_cm()
    full = cm.compute()
    assert repr(cm.compute(classes=None)) == repr(full)  # repr: NaN == NaN
    sub = cm.compute(classes=[1, 2])
    # IoU 1/2 and 1/3, label accuracy 2/3 and 1/2 (see test_hand_computed_matrix_and_scores)
    assert sub["miou"] == pytest.approx((0.5 + 1 / 3) / 2, rel=1e-12)
    assert sub["mean_acc"] == pytest.approx((2 / 3 + 1 / 2) / 2, rel=1e-12)
    assert sub["pixel_acc"] == full["pixel_acc"]
    assert sub["per_class_iou"][:3] == full["per_class_iou"][:3]
    assert cm.compute(classes=(0, 1, 2, 3))["miou"] == full["miou"]  # NaN class 3 left out either way
    assert math.isnan(cm.compute(classes=[3])["miou"])
    for bad, match in (([0, 4], r"classes \[4\]"), ([-1], r"\[-1\]"), ([], "non-empty"), ([1, 1], "repeats"),
                       ([0.5], "int class ids"), ([True], "int class ids")):
        with pytest.raises(ValueError, match=match):
            cm.compute(classes=bad)


def _numpy_matrix(pred, target, c, ignore):
    import numpy as np

    t, p = target.numpy().ravel().astype(np.int64), pred.numpy().ravel().astype(np.int64)
    keep = t != ignore
    return np.bincount(c * t[keep] + p[keep], minlength=c * c).reshape(c, c).tolist()


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_chunked_fast_path_equals_numpy_over_many_chunks(dtype):
    # 2 x 300 x 1000 = 600k pixels: three CPU chunks of 2**18, the last one partial.
    g = torch.Generator().manual_seed(3)
    c = 19
    target = torch.randint(0, c, (2, 300, 1000), generator=g)
    target[torch.rand(2, 300, 1000, generator=g) < 0.1] = IGN
    pred = torch.randint(0, c, (2, 300, 1000), generator=g)
    cm = ConfusionMatrix(c)
    cm.update(pred.to(dtype), target.to(dtype))
    cm.update(pred[:, :7, :5].to(dtype), target[:, :7, :5].to(dtype))  # a smaller batch reuses the buffers
    expected = torch.tensor(_numpy_matrix(pred, target, c, IGN)) + torch.tensor(
        _numpy_matrix(pred[:, :7, :5].contiguous(), target[:, :7, :5].contiguous(), c, IGN))
    assert cm.matrix.tolist() == expected.tolist()


@pytest.mark.parametrize("bad", [19, 254, 256, 2**31 + 5, 2**32 + 3, -7])
def test_every_out_of_range_label_is_caught(bad):
    # Values between C and the ignore index, just past it, beyond int32 (which int32 would read as a
    # negative number or, for 2**32 + 3, as the valid label 3) and negative: all raise, none counts.
    c = 19
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    target[0, 2, 1] = bad
    target[0, 0, 0] = IGN
    cm = ConfusionMatrix(c)
    with pytest.raises(ValueError, match=rf"label value\(s\) \[{bad}\]"):
        cm.update(torch.ones(1, 4, 4, dtype=torch.int64), target)
    assert cm.matrix.sum() == 0


def test_out_of_range_prediction_at_an_ignored_pixel_is_not_counted():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[[2, 99, 1]]]), torch.tensor([[[2, IGN, 0]]]))
    assert cm.matrix.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match=r"predicted class id\(s\) \[99\]"):
        cm.update(torch.tensor([[[2, 99, 1]]]), torch.tensor([[[2, 1, 0]]]))


def test_ignore_index_inside_the_class_range_and_non_contiguous_input():
    # ignore_index 0 < C: the ignored class must not count (the checked path).
    cm = ConfusionMatrix(3, ignore_index=0)
    cm.update(torch.tensor([[[1, 2, 2, 0]]]), torch.tensor([[[0, 2, 1, 1]]]))
    assert cm.matrix.tolist() == [[0, 0, 0], [1, 0, 1], [0, 0, 1]]
    base = torch.randint(0, 4, (2, 6, 8), generator=torch.Generator().manual_seed(1))
    pred, target = base.transpose(1, 2), base.flip(0).transpose(1, 2)  # non-contiguous views
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    assert cm.matrix.tolist() == _numpy_matrix(pred.contiguous(), target.contiguous(), 4, IGN)
