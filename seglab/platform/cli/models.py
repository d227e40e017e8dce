"""``seglab models [PATTERN ...]``: registered models with their parameters and GFLOPs.

    seglab models                          every registered model
    seglab models 'hrnet_w48*' unet        only the models whose names match a pattern (fnmatch:
                                           ``*``, ``?``, ``[...]``); listed in registry order, each once

A pattern that matches no registered model is a user error: one line ``seglab: error: ...`` naming
the pattern and the valid model names, exit status 2 (before any model is built).
"""
from __future__ import annotations

import argparse
from fnmatch import fnmatchcase
from typing import List, Sequence

from seglab.errors import ConfigError


def select_models(names: Sequence[str], patterns: Sequence[str]) -> List[str]:
    """The ``names`` (in their order) matching any of ``patterns`` (all of them without patterns);
    ConfigError on the first pattern that matches none."""
    if not patterns:
        return list(names)
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            raise ConfigError(f"no registered model matches {pattern!r}; valid model names: {', '.join(names)}")
    return [name for name in names if any(fnmatchcase(name, p) for p in patterns)]


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from seglab.models import build_model, list_models
    from seglab.models.complexity import FLOPS_CONVENTION, count_flops, count_inference_parameters, count_parameters

    selected = select_models(list_models(), getattr(args, "patterns", None) or [])
    h, w = args.size
    print(f"{'model':<28} {'params (M)':>11} {'GFLOPs':>9} {'inference params (M)':>21}")
    for name in selected:
        with torch.device("meta"):
            model = build_model(name, num_classes=args.num_classes)
        total, inference = count_parameters(model), count_inference_parameters(model)
        print(f"{name:<28} {total / 1e6:>11.2f} {count_flops(model, input_size=(h, w)):>9.1f} "
              f"{'' if inference == total else f'{inference / 1e6:.2f}':>21}", flush=True)
    print(f"\n{args.num_classes} classes, input {h}x{w}. {FLOPS_CONVENTION} Inference params: without "
          f"training-only parts (a posterior network), where a model has them.")
    return 0
