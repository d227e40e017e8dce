"""Frozen batch normalisation: a fixed per-channel affine map built from BN statistics.

SEMEDA trains with "BN parameters frozen" (S:199) at mini-batches of 2-6 (S:199, S:350), where
batch statistics would be too noisy. :func:`freeze_batchnorm` swaps every ``nn.BatchNorm2d`` /
``nn.SyncBatchNorm`` of a model for a :class:`FrozenBatchNorm2d` holding the same statistics and
affine parameters, so ``model.train()`` no longer changes how normalisation behaves.

>>> model = freeze_batchnorm(build_model("deeplabv3plus_r50", num_classes=21))
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import Tensor, nn

__all__ = ["FrozenBatchNorm2d", "freeze_batchnorm"]


class FrozenBatchNorm2d(nn.Module):
    """``y = x * scale + shift`` per channel, with ``scale = weight / sqrt(running_var + eps)`` and
    ``shift = bias - running_mean * scale``: ``nn.BatchNorm2d``'s eval-mode output, in train and
    eval mode alike, with no statistics update and nothing to train.

    ``weight``, ``bias``, ``running_mean`` and ``running_var`` are buffers (not parameters), so
    an optimiser built from ``model.parameters()`` never sees them; the state-dict keys are
    those of ``nn.BatchNorm2d`` without ``num_batches_tracked`` (a BN state dict that has it loads:
    the entry is dropped; and this module's state dict loads into ``nn.BatchNorm2d``, which then
    starts its counter at 0).

    Args:
        num_features: C of the ``(B, C, H, W)`` input.
        eps: added to the variance (copied from the BN it replaces).

    The scale and shift are computed in float32 at least, then cast to the input's dtype.
    """

    _version = 1  # < BatchNorm's 2: nn.BatchNorm2d fills in num_batches_tracked when loading our state

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def scale_and_shift(self) -> "tuple[Tensor, Tensor]":
        """``(scale (C,), shift (C,))`` in float32 (or float64 if the buffers are float64)."""
        dtype = torch.promote_types(self.running_var.dtype, torch.float32)
        scale = self.weight.to(dtype) * torch.rsqrt(self.running_var.to(dtype) + self.eps)
        shift = self.bias.to(dtype) - self.running_mean.to(dtype) * scale
        return scale, shift

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        if x.dim() != 4:
            raise ValueError(f"FrozenBatchNorm2d expects a (B, C, H, W) input; got shape {tuple(x.shape)}")
        scale, shift = self.scale_and_shift()
        return x * scale.to(x.dtype).view(1, -1, 1, 1) + shift.to(x.dtype).view(1, -1, 1, 1)

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, local_metadata: Dict[str, Any],
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)  # a BatchNorm2d state dict
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> "FrozenBatchNorm2d":
        """A frozen copy of ``bn`` (statistics and affine parameters cloned, same device/dtype).

        Raises ``ValueError`` for a BN without running statistics (``track_running_stats=False``),
        which has nothing to freeze.
        """
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"cannot freeze {bn!r}: it keeps no running statistics (track_running_stats=False)")
        frozen = cls(bn.num_features, bn.eps)
        stats = bn.running_mean
        frozen.running_mean = bn.running_mean.detach().clone()
        frozen.running_var = bn.running_var.detach().clone()
        if bn.affine:
            frozen.weight = bn.weight.detach().clone()
            frozen.bias = bn.bias.detach().clone()
        else:
            frozen.weight = torch.ones_like(stats)
            frozen.bias = torch.zeros_like(stats)
        frozen.train(bn.training)
        return frozen

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


_BATCHNORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` and ``nn.SyncBatchNorm`` in ``module`` (recursively) by a
    :class:`FrozenBatchNorm2d` with its statistics and affine parameters.

    Children are replaced in place and ``module`` is returned; if ``module`` itself is a BN, a new
    :class:`FrozenBatchNorm2d` is returned. Works on the meta device (the buffers are cloned, not
    read). Parameter sharing of a BN used twice is kept (one frozen module, used twice).
    """
    if isinstance(module, _BATCHNORMS):
        return FrozenBatchNorm2d.from_batchnorm(module)
    replaced: Dict[int, nn.Module] = {}

    def visit(parent: nn.Module) -> None:
        # _modules, not named_children(): the latter lists a module used in two slots only once
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if isinstance(child, _BATCHNORMS):
                if id(child) not in replaced:
                    replaced[id(child)] = FrozenBatchNorm2d.from_batchnorm(child)
                setattr(parent, name, replaced[id(child)])
            else:
                visit(child)

    visit(module)
    return module
