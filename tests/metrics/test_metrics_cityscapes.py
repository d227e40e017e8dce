"""CityscapesScores equals cityscapesScripts' evalPixelLevelSemanticLabeling on a fixture in the
official layout (labelIds + instanceIds), predictions including void / non-evaluated labelIds."""
import math
from pathlib import Path

import numpy as np
import pytest

from seglab.datasets.fixtures.cityscapes import block_ids, instance_ids, write_png
from seglab.metrics import CityscapesScores
from seglab.metrics.cityscapes import train_ids_to_label_ids

SIZE = (32, 64)


def write_fixture(root: Path, predictions: Path, count: int = 3, seed: int = 0, hit_rate: float = 0.6):
    """gtFine val labelIds / instanceIds of ``count`` images (instances of uneven sizes: a 16x16
    instance grid over 8x8 label blocks) and predictions ``<city>_<seq>_<frame>_pred_labelIds.png``:
    the ground truth where ``rand < hit_rate``, else a random labelId 0..33. Returns (gt files, pred files)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(count):
        city = ("frankfurt", "lindau")[i % 2]
        stem = f"{city}_{i:06d}_{19 + i:06d}"
        ids = block_ids(rng, SIZE, 34, block=8)
        ids[:8, :16] = 26  # always some car and person pixels
        ids[8:16, :8] = 24
        gt = root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"
        write_png(gt, ids)
        write_png(gt.with_name(f"{stem}_gtFine_instanceIds.png"), instance_ids(ids, block=16))
        write_png(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", np.zeros((*SIZE, 3), np.uint8))
        pred = np.where(rng.random(SIZE) < hit_rate, ids, rng.integers(0, 34, SIZE)).astype(np.uint8)
        pred_file = predictions / city / f"{stem}_pred_labelIds.png"
        write_png(pred_file, pred)
        gts.append(str(gt))
        preds.append(str(pred_file))
    return gts, preds


def cityscapes_reference(gts, preds, monkeypatch):
    """cityscapesScripts' own evaluation of the file lists (np.in1d shimmed: numpy 2.4 removed it)."""
    monkeypatch.setattr(np, "in1d", np.isin, raising=False)
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev

    monkeypatch.setattr(ev.args, "JSONOutput", False)
    monkeypatch.setattr(ev.args, "quiet", True)
    monkeypatch.setattr(ev.args, "evalPixelAccuracy", False)
    return ev.evaluateImgLists(list(preds), list(gts), ev.args)


def ours(gts, preds) -> dict:
    import cv2

    scores = CityscapesScores()
    for gt, pred in zip(gts, preds):
        scores.update(cv2.imread(pred, cv2.IMREAD_UNCHANGED), cv2.imread(gt, cv2.IMREAD_UNCHANGED),
                      cv2.imread(gt.replace("labelIds", "instanceIds"), cv2.IMREAD_UNCHANGED))
    return scores.compute()


def assert_same(a: float, b: float) -> None:
    assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_equals_cityscapes_scripts(tmp_path, monkeypatch):
    gts, preds = write_fixture(tmp_path / "cs", tmp_path / "results")
    ref = cityscapes_reference(gts, preds, monkeypatch)
    got = ours(gts, preds)
    for name, iou, iiou in zip(got["class_names"], got["per_class_iou"], got["per_class_iiou"]):
        assert_same(iou, ref["classScores"][name])
        assert_same(iiou, ref["classInstScores"][name])
    for name, iou in zip(got["category_names"], got["per_category_iou"]):
        assert_same(iou, ref["categoryScores"][name])
    for name, iiou in zip(got["instance_category_names"], got["per_category_iiou"]):
        assert_same(iiou, ref["categoryInstScores"][name])
    assert got["instance_category_names"] == ["human", "vehicle"]
    assert_same(got["miou"], ref["averageScoreClasses"])
    assert_same(got["iiou"], ref["averageScoreInstClasses"])
    assert_same(got["category_miou"], ref["averageScoreCategories"])
    assert_same(got["category_iiou"], ref["averageScoreInstCategories"])
    # the fixture really exercises the instance weighting: iIoU differs from IoU for some class
    car = got["class_names"].index("car")
    assert not math.isnan(got["per_class_iiou"][car])
    assert abs(got["per_class_iiou"][car] - got["per_class_iou"][car]) > 1e-3
    # pixel scores over the 19 classes, recomputed in float64 from the pixels
    import cv2

    lut = train_ids_to_label_ids()
    train = {int(lab): t for t, lab in enumerate(lut[:19])}
    tp = np.zeros(19); gt_n = np.zeros(19); pred_n = np.zeros(19)
    for gt, pred in zip(gts, preds):
        g, p = cv2.imread(gt, cv2.IMREAD_UNCHANGED), cv2.imread(pred, cv2.IMREAD_UNCHANGED)
        gt_t = np.vectorize(lambda v: train.get(int(v), 255))(g)
        pred_t = np.vectorize(lambda v: train.get(int(v), 254))(p)
        valid = gt_t != 255
        for c in range(19):
            tp[c] += np.sum(valid & (gt_t == c) & (pred_t == c))
            gt_n[c] += np.sum(valid & (gt_t == c))
            pred_n[c] += np.sum(valid & (pred_t == c))
    assert got["pixel_acc"] == pytest.approx(tp.sum() / gt_n.sum(), rel=1e-12)
    seen = gt_n > 0
    assert got["mean_acc"] == pytest.approx(np.mean(tp[seen] / gt_n[seen]), rel=1e-12)
    both = gt_n + pred_n > 0
    assert got["f1"][car] == pytest.approx(2 * tp[13] / (gt_n[13] + pred_n[13]), rel=1e-12)
    assert got["mean_f1"] == pytest.approx(np.mean(2 * tp[both] / (gt_n[both] + pred_n[both])), rel=1e-12)
    assert got["mean_precision"] == pytest.approx(np.mean(np.where(pred_n > 0, tp / np.maximum(pred_n, 1), 0)[both]))


def test_train_id_predictions_and_streaming_match(tmp_path, monkeypatch):
    """update_train_ids (a model's argmax) equals update with the labelIds the train ids stand for."""
    gts, preds = write_fixture(tmp_path / "cs", tmp_path / "results", count=2, seed=3, hit_rate=0.8)
    import cv2

    lut = train_ids_to_label_ids()
    to_train = np.full(256, 255, np.int64)
    to_train[lut[:19]] = np.arange(19)
    a, b = CityscapesScores(), CityscapesScores()
    for gt, pred in zip(gts, preds):
        g = cv2.imread(gt, cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(gt.replace("labelIds", "instanceIds"), cv2.IMREAD_UNCHANGED)
        p = cv2.imread(pred, cv2.IMREAD_UNCHANGED)
        train_pred = to_train[p]
        a.update_train_ids(train_pred, g, inst)
        b.update(lut[train_pred], g, inst)
    ra, rb = a.compute(), b.compute()
    assert ra.keys() == rb.keys()
    for key in ra:
        for x, y in zip(np.ravel(ra[key]), np.ravel(rb[key])):
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), key
    # 255 (a train-id "ignore" prediction) is mapped to labelId 0, a miss
    assert lut[255] == 0


def test_bad_values_and_missing_instances():
    s = CityscapesScores()
    with pytest.raises(ValueError, match=r"predicted labelId\(s\) \[34\]"):
        s.update(np.full((2, 2), 34), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="same"):
        s.update(np.zeros((2, 3), int), np.zeros((2, 2), int))
    s.update(np.full((2, 2), 26), np.full((2, 2), 26))  # no instance file: iIoU undefined, IoU defined
    out = s.compute()
    assert out["per_class_iou"][13] == 1.0 and math.isnan(out["iiou"]) and math.isnan(out["category_iiou"])
