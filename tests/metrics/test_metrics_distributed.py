"""ConfusionMatrix.all_reduce across 2 real processes (gloo, CPU)."""
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seglab.metrics import ConfusionMatrix

C = 5


def _rank_data(rank):
    g = torch.Generator().manual_seed(100 + rank)
    n = 2 + rank  # different batch sizes per rank
    pred = torch.randint(0, C, (n, 6, 7), generator=g)
    target = torch.randint(0, C, (n, 6, 7), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.15] = 255
    return pred, target


def _worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        cm = ConfusionMatrix(C)
        cm.update(*_rank_data(rank))
        torch.save(cm.matrix.clone(), os.path.join(out_dir, f"local{rank}.pt"))
        cm.all_reduce()
        torch.save(cm.matrix, os.path.join(out_dir, f"reduced{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_two_processes(tmp_path, monkeypatch):
    world = 2
    # The spawned children unpickle ``_worker`` by module name; put the folder from which that name
    # is importable on sys.path (children inherit it), whatever name pytest gave this module.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[__name__.count(".")]))
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    single = ConfusionMatrix(C)
    for rank in range(world):
        single.update(*_rank_data(rank))
    locals_ = [torch.load(tmp_path / f"local{r}.pt") for r in range(world)]
    assert not torch.equal(locals_[0], locals_[1])  # the ranks really saw different data
    for rank in range(world):
        reduced = torch.load(tmp_path / f"reduced{rank}.pt")
        assert torch.equal(reduced, single.matrix)
        assert torch.equal(reduced, locals_[0] + locals_[1])
