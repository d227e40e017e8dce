"""Model complexity: parameter count and GFLOPs in the HRNet README convention."""
from __future__ import annotations

import copy
from typing import Dict, Optional, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_CONVENTION = (
    "GFLOPs = multiply-adds of convolution and linear (mm/addmm/bmm) ops, biases excluded, "
    "for one image (batch 1) of the given input size, divided by 2**30 "
    "(HRNet README / modelsummary.py convention; torch FlopCounterMode counts 2 FLOPs per "
    "multiply-add, so its count is halved). Normalisation, activations, interpolation and "
    "resampling are not counted. The training count (count_flops(train=True)) is the forward a training "
    "step runs: with labels, in train mode, so training-only modules (PHGMM's PostNet) are included; it is "
    "counted on a batch of 2 and halved (per image)."
)

_aten = torch.ops.aten
_CONV_OPS = {_aten.convolution, _aten._convolution, _aten.cudnn_convolution, _aten._slow_conv2d_forward,
             _aten.convolution_overrideable}
_LINEAR_OPS = {_aten.mm, _aten.addmm, _aten.bmm}
_COUNTED_OPS = _CONV_OPS | _LINEAR_OPS


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all of them unless ``trainable_only``); shared ones once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_inference_parameters(model: nn.Module) -> int:
    """Parameter elements used at inference: :func:`count_parameters` minus the parameters that only
    the modules listed by ``model.training_only_modules()`` hold (if the model has that method, e.g.
    PHGMM's PostNet). A parameter that an inference module shares is still counted."""
    listed = getattr(model, "training_only_modules", None)
    if listed is None:
        return count_parameters(model)
    excluded_modules = {id(m) for root in listed() for m in root.modules()}
    kept = {id(p) for m in model.modules() if id(m) not in excluded_modules for p in m.parameters(recurse=False)}
    return sum(p.numel() for p in model.parameters() if id(p) in kept)


def _copy_with(model: nn.Module, tensor) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are ``tensor(original)`` (no data copied)."""
    memo: Dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(tensor(p), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = tensor(b)
    return copy.deepcopy(model, memo)


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on ``meta``."""
    return _copy_with(model, lambda t: torch.empty_like(t, device="meta"))


def _zero_cpu_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are zeros on the CPU."""
    return _copy_with(model, lambda t: torch.zeros(t.shape, dtype=t.dtype))


#: Up to this many pixels per image ``count_flops`` runs a zero copy of the model on the CPU: faster
#: than the ``meta`` device (whose elementwise ops run as Python), with the same count.
CPU_COUNT_MAX_PIXELS = 128 * 256


def _count_multiply_adds(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor] = None) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if targets is None:
            model(images)
        else:
            model(images, targets)
    per_op = counter.get_flop_counts().get("Global", {})
    return sum(n for op, n in per_op.items() if op in _COUNTED_OPS) // 2


def _inputs(batch: int, in_chans: int, size: Tuple[int, int], train: bool, device: torch.device,
            dtype: torch.dtype) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A zero image batch ``(batch, in_chans, H, W)`` and, for a training forward, zero class ids
    ``(batch, H, W)`` (long; class 0 is in range for every model)."""
    images = torch.zeros(batch, in_chans, *size, device=device, dtype=dtype)
    targets = torch.zeros(batch, *size, device=device, dtype=torch.long) if train else None
    return images, targets


def _count_on_real_model(model: nn.Module, size: Tuple[int, int], in_chans: int, train: bool, batch: int,
                         dtype: torch.dtype) -> int:
    """The fallback of :func:`count_flops`: the real model under ``no_grad`` in eval (or train) mode on
    zero inputs; its training flags and buffers (BatchNorm statistics) are restored afterwards."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    modes = {m: m.training for m in model.modules()}
    buffers = {id(b): b.detach().clone() for b in model.buffers()} if train else {}
    model.train(train)
    try:
        return _count_multiply_adds(model, *_inputs(batch, in_chans, size, train, device, dtype))
    finally:
        for m, training in modes.items():
            m.training = training
        with torch.no_grad():
            for b in model.buffers():
                if id(b) in buffers:
                    b.copy_(buffers[id(b)])


def count_flops(model: nn.Module, input_size: Tuple[int, int] = (1024, 2048), in_chans: int = 3,
                train: bool = False, on: str = "auto") -> float:
    """GFLOPs of one forward pass of one image at ``input_size = (H, W)``, see :data:`FLOPS_CONVENTION`.

    ``train=False`` (the inference count, the ``gflops`` column): ``model(images)`` in eval mode.
    ``train=True`` (a method's training compute): the forward a training step runs,
    ``model(images, targets)`` in train mode with dummy targets (class ids 0, ``(B, H, W)`` long), so
    modules that run only in training with labels (PHGMM's PostNet) are counted. It runs on a batch
    of 2 (BatchNorm in train mode needs more than one value per channel) and is halved: every
    counted op is per image. Losses are not part of the model and are not counted. Every registered
    model's ``forward(images, targets=None)`` accepts the targets.

    Runs on a copy of ``model`` on the ``meta`` device (shapes only, no compute, no memory for
    activations), or (``on="auto"`` up to :data:`CPU_COUNT_MAX_PIXELS` pixels, or ``on="cpu"``) on a
    zero copy on the CPU: the counted ops and their shapes are the same, the small forward is faster.
    If some op fails there, falls back to the ``meta`` copy, then to the real model under ``no_grad``
    with real zero inputs (training flags and, for ``train=True``, buffers such as BatchNorm statistics
    restored afterwards).
    """
    if on not in ("auto", "cpu", "meta"):
        raise ValueError(f"count_flops: on must be auto, cpu or meta (got {on!r})")
    size = tuple(input_size)
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    batch = 2 if train else 1
    if on == "cpu" or (on == "auto" and size[0] * size[1] <= CPU_COUNT_MAX_PIXELS):
        try:
            macs = _count_multiply_adds(_zero_cpu_copy(model).train(train),
                                        *_inputs(batch, in_chans, size, train, torch.device("cpu"), dtype))
            return macs / batch / 2**30
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # e.g. an op that rejects all-zero weights: the meta copy has no values to reject
    meta_model = _meta_copy(model).train(train)
    try:
        macs = _count_multiply_adds(meta_model, *_inputs(batch, in_chans, size, train, torch.device("meta"), dtype))
    except (NotImplementedError, RuntimeError):
        macs = _count_on_real_model(model, size, in_chans, train, batch, dtype)
    return macs / batch / 2**30
