"""The ``seglab`` command.

    seglab models [--size 1024x2048] [--num-classes 19]   every registered model with params and GFLOPs
    seglab compare [PARENT_RUN_ID] [--experiment NAME]    the comparison table of a sweep (latest by default)
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from seglab.errors import ConfigError
from seglab.platform.quiet import quiet


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h <= 0 or w <= 0:
            raise ValueError
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be HxW with positive integers, e.g. 1024x2048 (got {text!r})")


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from seglab.models import build_model, list_models
    from seglab.models.complexity import FLOPS_CONVENTION, count_flops, count_parameters

    h, w = args.size
    print(f"{'model':<28} {'params (M)':>11} {'GFLOPs':>9}")
    for name in list_models():
        with torch.device("meta"):
            model = build_model(name, num_classes=args.num_classes)
        print(f"{name:<28} {count_parameters(model) / 1e6:>11.2f} {count_flops(model, input_size=(h, w)):>9.1f}",
              flush=True)
    print(f"\n{args.num_classes} classes, input {h}x{w}. {FLOPS_CONVENTION}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from seglab.platform import report, tracking

    uri = tracking.tracking_uri()
    parent = args.parent_run_id
    if parent is None:
        client = tracking.client(uri)
        exp = client.get_experiment_by_name(args.experiment)
        if exp is None:
            raise ConfigError(f"no MLflow experiment '{args.experiment}' in {uri}")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`seglab.kind` = 'sweep'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise ConfigError(f"experiment '{args.experiment}' has no sweep yet; run `make demo`")
        parent = runs[0].info.run_id
    rows = report.collect(parent, uri)
    print(f"sweep run {parent}\n")
    print(report.format_table(rows))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    quiet()
    parser = argparse.ArgumentParser(prog="seglab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list registered models with params and GFLOPs")
    p.add_argument("--size", type=_size, default=(1024, 2048), help="input HxW (default 1024x2048)")
    p.add_argument("--num-classes", type=int, default=19)
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("compare", help="print the comparison table of a sweep")
    p.add_argument("parent_run_id", nargs="?", help="the sweep's parent run id (default: the latest sweep)")
    p.add_argument("--experiment", default="seglab")
    p.set_defaults(func=cmd_compare)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"seglab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
