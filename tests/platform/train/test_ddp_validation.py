"""Issue 19 item 3: validation under real DDP (2 gloo processes) with a BatchNorm model and a split
smaller than the worker count (1 image: rank 1's shard is empty).

A forward through the DDP wrapper broadcasts buffers (a collective) on the ranks that have data only, so
rank 0 waited in that broadcast while rank 1 went on to the evaluators' all-reduce: a hang, or metrics
paired with the wrong collective. The trainer evaluates the unwrapped module after giving every rank
rank 0's buffers. Checked: the 2-process run ends (no hang), its val / test metrics equal a one-process
evaluation of rank 0's weights and buffers, and so does the report split of a run resumed with nothing
left to train."""
import copy
import json
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from tests.platform.train.test_trainer import BASE

WORLD = 2


def _run_dict():
    d = copy.deepcopy(BASE)
    d["dataset"]["train"]["num_samples"] = 4
    d["dataset"]["val"]["num_samples"] = 1
    d["dataset"]["test"]["num_samples"] = 1
    d["trainer"].update(epochs=1, batch_size=2, num_workers=WORLD)
    return d


def _worker(rank, init_file, out_dir):
    from seglab.platform import checkpoint as ckpt
    from seglab.platform.config import RunConfig
    from seglab.platform.train.trainer import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        run = RunConfig.from_dict(_run_dict())
        torch.manual_seed(0)
        trainer = Trainer.from_run(run, wrap=lambda m: DDP(m), say=lambda text: None)
        scores = trainer.fit()
        out = {"val": {k: v for k, v in trainer.last_metrics.items() if k.startswith("val_")}, "test": scores}
        state = trainer.state_dict()
        if rank == 0:
            ckpt.save_atomic(state, str(Path(out_dir) / "state.pt"))
        # a run resumed after its last epoch: nothing to train, the report split is scored again
        resumed = Trainer.from_run(run, wrap=lambda m: DDP(m), say=lambda text: None)
        resumed.load_state_dict(copy.deepcopy(state))
        out["resumed"] = resumed.fit()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def _single_process(state, split):
    from seglab.platform import checkpoint as ckpt
    from seglab.platform.build import build_datasets, build_report_dataset
    from seglab.platform.config import RunConfig
    from seglab.platform.evaluation import EvalContext, SegmentationEvaluator, evaluate, validation_shard

    run = RunConfig.from_dict(_run_dict())
    ds = build_datasets(run.dataset)[1] if split == "val" else build_report_dataset(run.dataset)
    ctx = EvalContext(int(ds.num_classes), 255, list(ds.class_names), list(ds.palette), torch.device("cpu"))
    model = ckpt.model_from_state(state)
    return evaluate(model, DataLoader(validation_shard(ds, 0, 1), batch_size=2), [SegmentationEvaluator(ctx)],
                    torch.device("cpu"))


def test_two_gloo_workers_with_batchnorm_and_one_image_equal_one_process(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3]))
    ctx = mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=False)
    limit = 240
    deadline = time.monotonic() + limit
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"DDP validation with an empty shard hung (no result after {limit} s)")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for part in ("val", "test", "resumed"):  # every rank reports the same, all-reduced scores
        scores = [{k: v for k, v in r[part].items() if "test_" in k or k.startswith("val_")} for r in results]
        assert scores[0] == scores[1] and len(scores[0]) > 5
    from seglab.platform import checkpoint as ckpt

    state = ckpt.load(str(tmp_path / "state.pt"))
    val = _single_process(state, "val")
    test = _single_process(state, "test")
    assert results[0]["val"]["val_miou"] == pytest.approx(val["val_miou"], abs=1e-12)
    assert results[0]["val"]["val_pixel_acc"] == pytest.approx(val["val_pixel_acc"], abs=1e-12)
    assert results[0]["test"]["test_miou"] == pytest.approx(test["val_miou"], abs=1e-12)
    assert results[0]["resumed"]["test_miou"] == pytest.approx(test["val_miou"], abs=1e-12)
    assert results[0]["resumed"]["selected_epoch"] == 1
