"""Validation sharded over 2 gloo workers (the train loop's shards: sample i on rank i % world)
equals single-process validation, also when the validation set is smaller than the worker count
(rank 1 gets no sample) -- every evaluator's all-reduce sequence must match across ranks -- and
when a rank's only sample is bad (``on_bad_sample=skip``: left out, counted, the count summed)."""
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader

from seglab.models.outputs import SegOutput

CASES = {"three_samples": 3, "one_sample": 1}  # world 2: shards [0, 2] / [1], and [0] / []
GROUPS = ["x", "y", "x"]


class TinyNet(nn.Module):
    def __init__(self, classes):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 3, padding=1)

    def forward(self, x):
        return SegOutput(logits=nn.functional.avg_pool2d(self.conv(x), 2), output_stride=2)


def _validate(n, rank, world):
    from seglab.datasets import build_dataset
    from seglab.platform.evaluation import (EvalContext, ScoresEvaluator, SegmentationEvaluator, TrimapEvaluator,
                                            evaluate)
    from seglab.platform.evaluation import validation_shard

    ds = build_dataset("synthetic", split="val", num_samples=n, image_size=[32, 64], augment=False)
    c = int(ds.num_classes)
    ctx = EvalContext(c, 255, list(ds.class_names), list(ds.palette), torch.device("cpu"), groups=GROUPS[:n])
    # the train loop's validation shards: no padding, sample i on rank i % world
    loader = DataLoader(validation_shard(ds, rank, world), batch_size=2)
    evaluators = [SegmentationEvaluator(ctx), ScoresEvaluator(ctx), TrimapEvaluator(ctx, (1, 3))]
    return evaluate(TinyNet(c), loader, evaluators, torch.device("cpu")), len(loader.dataset)


def _validate_bad(root, rank, world):
    """HELEN val with sample 1 bad (tests.platform.evaluation.test_bad_samples.py): world 2 gives
    rank 0 the good samples 0 and 2, rank 1 only the bad one."""
    from seglab.datasets import build_dataset
    from seglab.datasets.eval_items import collate_evaluation
    from seglab.platform.evaluation import (EvalContext, ScoresEvaluator, SegmentationEvaluator, evaluate,
                                            validation_shard)
    from tests.platform.evaluation.test_bad_samples import AllSkin

    ds = build_dataset("helen", split="val", root=root, on_bad_sample="skip")
    ctx = EvalContext(11, 255, list(ds.class_names), list(ds.palette), torch.device("cpu"))
    loader = DataLoader(validation_shard(ds, rank, world), batch_size=2, collate_fn=collate_evaluation)
    evaluator = SegmentationEvaluator(ctx)
    metrics = evaluate(AllSkin(), loader, [evaluator, ScoresEvaluator(ctx)], torch.device("cpu"))
    return {"metrics": metrics, "matrix": evaluator.matrix.matrix.tolist()}


def _worker(rank, world, init_file, out_dir, bad_root):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for name, n in CASES.items():
            metrics, seen = _validate(n, rank, world)
            Path(out_dir, f"{name}_{rank}.json").write_text(json.dumps({"metrics": metrics, "seen": seen}))
        Path(out_dir, f"bad_{rank}.json").write_text(json.dumps(_validate_bad(bad_root, rank, world)))
    finally:
        dist.destroy_process_group()


def test_two_gloo_workers_equal_one_process(tmp_path, monkeypatch):
    world = 2
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[__name__.count(".")]))
    from tests.platform.evaluation.test_bad_samples import expected_matrix, write_bad_val_split

    bad_root = str(write_bad_val_split(tmp_path / "helen"))
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path), bad_root), nprocs=world, join=True)
    for name, n in CASES.items():
        single, _ = _validate(n, 0, 1)
        ranks = [json.loads((tmp_path / f"{name}_{r}.json").read_text()) for r in range(world)]
        assert [r["seen"] for r in ranks] == ([2, 1] if n == 3 else [1, 0])
        for r in ranks:
            sharded = r["metrics"]
            assert set(sharded) == set(single), name
            for key, value in single.items():
                if value != value:  # NaN
                    assert sharded[key] != sharded[key], (name, key)
                else:
                    assert sharded[key] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, key)
        assert "val_miou_x" in single and "val_trimap_miou_w3" in single and "val_f1" in single
    # a bad sample on rank 1 (its only one): left out there, counted once over both ranks
    single_bad = _validate_bad(bad_root, 0, 1)
    assert single_bad["metrics"]["val_skipped_samples"] == 1
    for r in range(world):
        sharded = json.loads((tmp_path / f"bad_{r}.json").read_text())
        assert sharded["matrix"] == expected_matrix().tolist()
        assert sharded["metrics"] == pytest.approx(single_bad["metrics"], rel=1e-12, nan_ok=True)
