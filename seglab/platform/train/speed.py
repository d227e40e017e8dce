"""The training loop's speed switches: mixed precision, channels_last, torch.compile, SyncBatchNorm.

``trainer.precision`` = ``fp32`` | ``bf16`` | ``fp16``: the forward pass and the loss run under
``torch.autocast`` in that dtype (weights and the optimizer stay fp32); ``fp16`` adds a
``GradScaler`` (its small gradients would underflow), ``bf16`` needs none. ``trainer.channels_last``
stores the model's weights and each input batch NHWC (faster convolutions on tensor cores).
``trainer.compile`` wraps the model in ``torch.compile``; a model the compiler cannot handle runs
eagerly, with one line saying so. ``trainer.sync_bn`` turns BatchNorm into SyncBatchNorm for DDP on
GPUs (statistics over the global batch, as HRNet and OVeNet train); on CPU workers it is ignored
with one line (PyTorch's SyncBatchNorm runs on GPUs only). On GPUs, cuDNN picks its fastest
algorithms (``torch.backends.cudnn.benchmark``).

No Ray or MLflow here: the benchmarks and the tests use the same functions as the loop.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Optional

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """A factory of the context the forward pass and the loss run in (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = _DTYPES[precision]
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> Optional["torch.amp.GradScaler"]:
    """A GradScaler for fp16 (loss scaling against underflow); None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                  scaler: Optional["torch.amp.GradScaler"]) -> None:
    """``loss.backward(); optimizer.step()``, through the scaler when there is one."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool = False, sync_bn: bool = False,
                  distributed: bool = False, say: Callable[[str], None] = print) -> nn.Module:
    """Before DDP wraps the model: SyncBatchNorm (GPU + DDP only) and the memory format."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if sync_bn:
        if device.type != "cuda":
            say("trainer.sync_bn=true is ignored on CPU workers (PyTorch's SyncBatchNorm needs GPUs): plain BatchNorm")
        elif distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def compile_model(model: nn.Module, enabled: bool, say: Callable[[str], None] = print) -> nn.Module:
    """``torch.compile(model)`` when enabled; a compile that fails at any point falls back to eager."""
    if not enabled:
        return model
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a graph the compiler cannot handle runs eagerly
        return torch.compile(model)
    except Exception as exc:  # e.g. no C++ compiler for the CPU backend, an unsupported platform
        say(f"trainer.compile=true: torch.compile is unavailable ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); training eagerly")
        return model


def to_input(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images
