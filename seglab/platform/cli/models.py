"""``seglab models``: every registered model with its parameters and GFLOPs."""
from __future__ import annotations

import argparse


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from seglab.models import build_model, list_models
    from seglab.models.complexity import FLOPS_CONVENTION, count_flops, count_inference_parameters, count_parameters

    h, w = args.size
    print(f"{'model':<28} {'params (M)':>11} {'GFLOPs':>9} {'inference params (M)':>21}")
    for name in list_models():
        with torch.device("meta"):
            model = build_model(name, num_classes=args.num_classes)
        total, inference = count_parameters(model), count_inference_parameters(model)
        print(f"{name:<28} {total / 1e6:>11.2f} {count_flops(model, input_size=(h, w)):>9.1f} "
              f"{'' if inference == total else f'{inference / 1e6:.2f}':>21}", flush=True)
    print(f"\n{args.num_classes} classes, input {h}x{w}. {FLOPS_CONVENTION} Inference params: without "
          f"training-only parts (a posterior network), where a model has them.")
    return 0
