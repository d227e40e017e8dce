"""Evaluation with ``dataset.on_bad_sample=skip``: a bad validation / report sample is left out and
counted (``val_skipped_samples``), never replaced by another sample (which would count that one
twice). Unit level: :func:`seglab.platform.evaluation.evaluate` over the trainer's shards."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from seglab.models.outputs import SegOutput

#: Pixels per class of the HELEN fixture's label (its documented rectangles, 32x48 = 1536 pixels):
#: background cols [0, 4) + [44, 48): 2 * 32 * 4; hair 6 x 40; skin 26 x 40 less the 216 part pixels;
#: brows 2 x 8; eyes 3 x 6; nose 6 x 6; upper lip 2 x 16; inner mouth 1 x 16; lower lip 4 x 16.
FIXTURE_PIXELS = [256, 824, 16, 16, 18, 18, 36, 32, 16, 64, 240]
assert sum(FIXTURE_PIXELS) == 32 * 48


def write_bad_val_split(root: Path) -> Path:
    """HELEN (split_folders layout) with 3 val images: 0 is the fixture, 1 does not decode (a
    corrupt JPEG), 2's label is all hair (10), so a repeated sample changes the scores."""
    from seglab.datasets.fixtures.helen import helen_fixture_names, write_helen

    write_helen(root, splits={"val": 3}, layout="split_folders")
    names = helen_fixture_names("val", 3)
    (root / "val" / "images" / f"{names[1]}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(root / "val" / "labels" / f"{names[2]}.png"), np.full((32, 48), 10, np.uint8))
    return root


def expected_matrix() -> np.ndarray:
    """The confusion matrix of :class:`AllSkin` over the good images 0 and 2, by hand."""
    m = np.zeros((11, 11), np.int64)
    m[:, 1] = FIXTURE_PIXELS
    m[10, 1] += 32 * 48  # image 2: all hair
    return m


class AllSkin(nn.Module):
    """Predicts skin (class 1) at every pixel."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 11, *x.shape[-2:])
        logits[:, 1] = 1.0
        return SegOutput(logits=logits)


@pytest.fixture()
def bad_val(tmp_path):
    from seglab.datasets import build_dataset

    write_bad_val_split(tmp_path)
    return build_dataset("helen", split="val", root=str(tmp_path), on_bad_sample="skip")


@pytest.mark.parametrize("batch_size, workers", [(1, 0), (2, 0), (3, 0), (2, 2)])
def test_a_bad_sample_is_left_out_and_counted(bad_val, batch_size, workers):
    from seglab.datasets.eval_items import collate_evaluation
    from seglab.platform.evaluation import EvalContext, SegmentationEvaluator, evaluate, validation_shard

    ds = bad_val
    ctx = EvalContext(11, 255, list(ds.class_names), list(ds.palette), torch.device("cpu"))
    evaluator = SegmentationEvaluator(ctx)
    loader = DataLoader(validation_shard(ds, 0, 1), batch_size=batch_size, collate_fn=collate_evaluation,
                        num_workers=workers)
    metrics = evaluate(AllSkin(), loader, [evaluator], torch.device("cpu"))
    np.testing.assert_array_equal(evaluator.matrix.matrix.cpu().numpy(), expected_matrix())
    assert metrics["val_skipped_samples"] == 1
    assert metrics["val_pixel_acc"] == pytest.approx(824 / 3072, rel=1e-12)
    if workers == 0:  # (loader workers list it in their own copies of the data set)
        assert len(ds.skipped) == 1 and "does not decode" in ds.skipped[0]


def test_no_bad_sample_no_metric(tmp_path):
    """Without a bad sample nothing is skipped and ``val_skipped_samples`` is not logged."""
    from seglab.datasets import build_dataset
    from seglab.datasets.eval_items import collate_evaluation
    from seglab.datasets.fixtures.helen import write_helen
    from seglab.platform.evaluation import EvalContext, SegmentationEvaluator, evaluate, validation_shard

    write_helen(tmp_path, splits={"val": 2}, layout="split_folders")
    ds = build_dataset("helen", split="val", root=str(tmp_path), on_bad_sample="skip")
    ctx = EvalContext(11, 255, list(ds.class_names), list(ds.palette), torch.device("cpu"))
    evaluator = SegmentationEvaluator(ctx)
    loader = DataLoader(validation_shard(ds, 0, 1), batch_size=2, collate_fn=collate_evaluation)
    metrics = evaluate(AllSkin(), loader, [evaluator], torch.device("cpu"))
    assert "val_skipped_samples" not in metrics
    assert int(evaluator.matrix.matrix.sum()) == 2 * 32 * 48


def test_the_report_split_records_its_skipped_samples(bad_val):
    """The report split's scores (the trainer names them after the per-epoch ones) carry the count as ``test_*``."""
    from seglab.datasets.eval_items import collate_evaluation
    from seglab.platform.evaluation import EvalContext, SegmentationEvaluator, evaluate, validation_shard
    from seglab.platform.train.trainer import renamed

    ctx = EvalContext(11, 255, list(bad_val.class_names), list(bad_val.palette), torch.device("cpu"))
    loader = DataLoader(validation_shard(bad_val, 0, 1), batch_size=2, collate_fn=collate_evaluation)
    metrics = evaluate(AllSkin(), loader, [SegmentationEvaluator(ctx)], torch.device("cpu"))
    scores = {**renamed(metrics, "test_"), **renamed(metrics, "final_test_")}
    assert scores["test_skipped_samples"] == 1 and scores["final_test_skipped_samples"] == 1
    assert scores["test_pixel_acc"] == pytest.approx(824 / 3072, rel=1e-12)
