"""Model complexity: parameter count and GFLOPs in the HRNet README convention."""
from __future__ import annotations

import copy
from typing import Dict, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_CONVENTION = (
    "GFLOPs = multiply-adds of convolution and linear (mm/addmm/bmm) ops, biases excluded, "
    "for one image (batch 1) of the given input size, divided by 2**30 "
    "(HRNet README / modelsummary.py convention; torch FlopCounterMode counts 2 FLOPs per "
    "multiply-add, so its count is halved). Normalisation, activations, interpolation and "
    "resampling are not counted."
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


def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers live on ``meta`` (no data copied)."""
    memo: Dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def _count_multiply_adds(model: nn.Module, images: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(images)
    per_op = counter.get_flop_counts().get("Global", {})
    return sum(n for op, n in per_op.items() if op in _COUNTED_OPS) // 2


def count_flops(model: nn.Module, input_size: Tuple[int, int] = (1024, 2048), in_chans: int = 3) -> float:
    """GFLOPs of one forward pass at ``input_size = (H, W)``, see :data:`FLOPS_CONVENTION`.

    Runs on a copy of ``model`` on the ``meta`` device (shapes only, no compute, no memory for
    activations). If some op has no meta implementation, falls back to the real model in eval
    mode under ``no_grad`` with a real zero image (training flags restored afterwards).
    """
    h, w = input_size
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    meta_model = _meta_copy(model).eval()
    try:
        macs = _count_multiply_adds(meta_model, torch.empty(1, in_chans, h, w, device="meta", dtype=dtype))
    except (NotImplementedError, RuntimeError):
        device = param.device if param is not None else torch.device("cpu")
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            macs = _count_multiply_adds(model, torch.zeros(1, in_chans, h, w, device=device, dtype=dtype))
        finally:
            for m, training in modes.items():
                m.training = training
    return macs / 2**30
