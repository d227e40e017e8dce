"""The ``seglab`` command.

    seglab models [--size 1024x2048] [--num-classes 19]   every registered model with params and GFLOPs
    seglab compare [SWEEP_RUN_ID ...] [--experiment NAME] [--out DIR] [--no-log]
                                                          the comparison of sweeps (latest by default), plots
    seglab data check DATASET ROOT [--split S ...] [--option KEY=VALUE ...]
                                                          verify a data set on disk (exit 0 clean, 1 bad samples)
    seglab eval CHECKPOINT [--dataset NAME] [--root R] [--split test] [--scales 0.75 1.0 1.25] [--flip]
                [--slide [--crop HxW]] [--json OUT]       score a checkpoint on a split (table, MLflow run)
    seglab eval --predictions DIR --dataset NAME --root R [--split val] [--json OUT]
                                                          score prediction PNGs in the official result format
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import List, Optional, Tuple

from seglab.errors import ConfigError
from seglab.platform.quiet import quiet


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every seglab command: ``seglab: error: ...``, exit 2
    (argparse's default prints its usage line first)."""

    def error(self, message: str):  # type: ignore[override]
        message = re.sub(r"^argument (\S+): \1 ", r"\1 ", message)  # "argument --size: --size must ..."
        print(f"seglab: error: {message} (see `{self.prog} --help`)", file=sys.stderr, flush=True)
        sys.exit(2)


def hw_type(flag: str, example: str):
    """An argparse ``type`` for ``HxW`` with positive integers -> ``(H, W)``; errors name ``flag``."""
    def parse(text: str) -> Tuple[int, int]:
        try:
            h, w = (int(v) for v in text.lower().split("x"))
            if h <= 0 or w <= 0:
                raise ValueError
            return h, w
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be HxW with positive integers, e.g. {example} (got {text!r})")

    return parse


_size = hw_type("--size", "1024x2048")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {text!r})")
    return value


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
          f"training-only parts (PHGMM's PostNet), where a model has them.")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """The comparison table of one or several sweeps, with its plots logged to their parent runs."""
    from seglab.platform import compare, tracking

    uri = tracking.tracking_uri()
    store = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    if store is not None and not os.path.isfile(store):  # do not create an empty store just to read it
        raise ConfigError(f"no MLflow store at {store} (MLFLOW_TRACKING_URI, or SEGLAB_HOME/mlflow.db); "
                          f"run a sweep first, e.g. `make demo`")
    parents = list(args.parent_run_id or [])
    if not parents:
        client = tracking.client(uri)
        exp = client.get_experiment_by_name(args.experiment)
        if exp is None:
            raise ConfigError(f"no MLflow experiment '{args.experiment}' in {uri}")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`seglab.kind` = 'sweep'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise ConfigError(f"experiment '{args.experiment}' has no sweep yet; run `make demo`")
        parents = [runs[0].info.run_id]
    else:
        from mlflow.exceptions import MlflowException

        for parent in parents:
            try:
                run = tracking.client(uri).get_run(parent)
            except MlflowException:
                raise ConfigError(f"no MLflow run '{parent}' in {uri}; give sweeps' parent run ids "
                                  f"(or none for the latest sweep of --experiment)") from None
            if run.data.tags.get("seglab.kind") != "sweep":
                raise ConfigError(f"MLflow run '{parent}' is not a sweep's parent run (tag seglab.kind="
                                  f"{run.data.tags.get('seglab.kind')}); give a sweep's parent run id")
    table = compare.compare(parents, uri, out_dir=args.out, log=not args.no_log)
    print(f"sweep run{'s' if len(parents) > 1 else ''} {', '.join(parents)}\n")
    print(table)
    if not args.no_log:
        print(f"\nplots and tables logged under compare/ of the parent run{'s' if len(parents) > 1 else ''}"
              + (f"; copies in {args.out}" if args.out else ""))
    return 0


class _Progress:
    """Progress bars on stderr for ``check_dataset``: tqdm when importable, else a carriage-return bar."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars: dict = {}
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is usually installed
            tqdm = None
        self.tqdm = tqdm

    def __call__(self, split: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.tqdm is not None:
            bar = self.bars.get(split)
            if bar is None:
                bar = self.bars[split] = self.tqdm(total=total, desc=f"check {split}", unit="img", file=sys.stderr,
                                                   dynamic_ncols=True)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\rcheck {split} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def cmd_data_check(args: argparse.Namespace) -> int:
    from seglab.datasets.check import check_dataset, format_reports, parse_options

    options = parse_options(args.option)
    for key in ("splits", "progress", "workers", "count_labels"):
        if key in options:
            raise ConfigError(f"--option {key}: not a dataset option (see seglab data check --help)")
    progress = _Progress(enabled=not args.no_progress)
    try:
        reports = check_dataset(args.dataset, args.root, splits=args.split, progress=progress,
                                workers=args.workers, **options)
    finally:
        progress.close()
    print(format_reports(reports, root=args.root))
    return 1 if any(r.bad for r in reports) else 0


def main(argv: Optional[List[str]] = None) -> int:
    quiet()
    parser = _Parser(prog="seglab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list registered models with params and GFLOPs")
    p.add_argument("--size", type=_size, default=(1024, 2048), help="input HxW (default 1024x2048)")
    p.add_argument("--num-classes", type=_positive, default=19)
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("compare", help="the comparison table of one or several sweeps, plots to their parent runs")
    p.add_argument("parent_run_id", nargs="*", metavar="SWEEP_RUN_ID",
                   help="sweeps' parent run ids (default: the latest sweep of --experiment)")
    p.add_argument("--experiment", default="seglab", help="where to look for the latest sweep (default seglab)")
    p.add_argument("--out", default=None, metavar="DIR", help="also write the table, CSVs and plots to DIR")
    p.add_argument("--no-log", action="store_true", help="print only; log nothing to the parent runs")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("data", help="data set tools (data check)")
    data = p.add_subparsers(dest="data_command", required=True)
    p = data.add_parser("check", help="verify a data set on disk: layout, pairing, label values, corrupt files",
                        description="Verify every split present (or the --split ones) of DATASET under ROOT. "
                                    "Exit status 0: clean; 1: bad samples (listed); 2: a usage/layout error.")
    p.add_argument("dataset", help="registered data set name, e.g. cityscapes, acdc, synthia")
    p.add_argument("root", help="the data set's root directory (official layout)")
    p.add_argument("--split", action="append", default=None, metavar="S",
                   help="check this split only (repeatable; default: every split present)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option, e.g. annotations=coarse or conditions=[fog,night] (repeatable)")
    p.add_argument("--workers", type=_positive, default=2, help="threads decoding labels (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_data_check)
    from seglab.platform.eval_cli import add_parser as add_eval_parser

    add_eval_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"seglab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
