"""The optimiser and its learning-rate schedule: poly decay after an optional linear warm-up, over the
run's steps or, with a training-time budget, over its training seconds."""
from __future__ import annotations

import torch


def poly_lr(base_lr: float, step: int, total_steps: int, power: float, warmup_steps: int = 0) -> float:
    """Poly schedule ``base_lr * (1 - step / total_steps) ** power``, after an optional linear
    warm-up: ``base_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (then the
    poly value of the same step, so the two meet without a jump only approximately, as mmseg's
    ``warmup='linear'`` with ``warmup_ratio=0`` does)."""
    poly = base_lr * (1.0 - min(step, total_steps) / max(total_steps, 1)) ** power
    if step < warmup_steps:
        return poly * (step + 1) / warmup_steps
    return poly


def schedule_step(step: int, total_steps: int, time_limit_s, train_time_s: float) -> int:
    """The step the poly schedule is evaluated at: the optimiser step, or with a training-time budget
    (``time_limit_s``) the step matching the fraction of the budget spent in training
    (``train_time_s``), whichever is further: the lr reaches its end when the budget does."""
    if time_limit_s is None:
        return step
    return max(step, int(train_time_s / time_limit_s * total_steps))


def build_optimizer(model: torch.nn.Module, t) -> torch.optim.Optimizer:
    """``trainer.optimizer`` over the trainable parameters (frozen ones, ``requires_grad=False``,
    are left out): SGD with ``momentum``, or Adam / AdamW with ``weight_decay`` (L2 / decoupled)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
