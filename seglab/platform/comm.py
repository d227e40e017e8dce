"""Every collective the platform uses, in one place (detectron2's ``utils/comm.py`` idea).

Each helper is a no-op (or the identity) without an initialised ``torch.distributed`` process
group, so the same code runs in one process (tests, benchmarks, ``seglab eval``) and under DDP.
Every rank must call a collective with the same arguments in the same order; the training loop
and the evaluators are written so that ranks without data still make the same calls.

* :func:`rank`, :func:`world_size`, :func:`is_rank0`, :func:`initialized`;
* :func:`all_reduce_sum` (in place, returns the tensor), :func:`agreed_max` (floats), :func:`all_agree`
  (a boolean every rank must share, e.g. "the loss is finite everywhere");
* :func:`gather_objects` (a picklable object per rank, in rank order);
* :func:`broadcast_buffers` (rank 0's buffers, e.g. BatchNorm statistics, to every rank).
"""
from __future__ import annotations

from typing import Any, List

import torch
from torch import Tensor, nn

from seglab.metrics.confusion import all_reduce_sum as _sum_in_place


def initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if initialized() else 1


def is_rank0() -> bool:
    return rank() == 0


def _device_for_backend(t: Tensor) -> Tensor:
    import torch.distributed as dist

    if dist.get_backend() == "nccl" and not t.is_cuda:
        return t.to(torch.device("cuda", torch.cuda.current_device()))
    return t


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over the ranks in place and return it (NCCL: through a CUDA copy)."""
    _sum_in_place(t)
    return t


def agreed_max(*values: float) -> List[float]:
    """The maximum of each value over the ranks (the values themselves in one process)."""
    x = torch.tensor(values, dtype=torch.float64)
    if initialized():
        import torch.distributed as dist

        y = _device_for_backend(x)
        dist.all_reduce(y, op=dist.ReduceOp.MAX)
        x = y.cpu()
    return x.tolist()


def all_agree(flag: bool) -> bool:
    """True when ``flag`` is true on every rank (one tiny all-reduce: ranks decide together)."""
    bad = torch.tensor([0.0 if flag else 1.0], dtype=torch.float64)
    return bool(all_reduce_sum(bad).item() == 0)


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on at least one rank."""
    hit = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)
    return bool(all_reduce_sum(hit).item() > 0)


def gather_objects(obj: Any) -> List[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` in one process)."""
    if not initialized():
        return [obj]
    import torch.distributed as dist

    parts: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def broadcast_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics ...), as DDP does at the start
    of a training forward. Called by every rank before evaluating the unwrapped model, so that all
    ranks evaluate the same weights and no rank issues a collective the others do not."""
    if not initialized():
        return
    import torch.distributed as dist

    for buf in module.buffers():
        if buf.is_floating_point() or buf.dtype in (torch.int64, torch.int32):
            shipped = _device_for_backend(buf.data)
            dist.broadcast(shipped, src=0)
            if shipped is not buf.data:
                buf.data.copy_(shipped.to(buf.device))
