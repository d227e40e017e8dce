"""``seglab eval``: score a checkpoint, or a folder of prediction PNGs, on a data set split.

    seglab eval CHECKPOINT [--dataset NAME] [--root R] [--split S] [--scales 0.75 1.0 1.25] [--flip]
                [--slide [--crop HxW] [--stride HxW]] [--json OUT]
    seglab eval --predictions DIR --dataset NAME [--root R] [--split val] [--json OUT]

Checkpoint mode rebuilds the model a seglab checkpoint records (``best.pt`` / ``checkpoint.pt``:
``model``, ``run``, ``num_classes``, ``mlflow_run_id``), predicts every image of the split
(:func:`seglab.metrics.inference.predict_probs`: multi-scale, flip, sliding window), prints the
table and, when an MLflow store is configured (``MLFLOW_TRACKING_URI``, or an existing
``$SEGLAB_HOME/mlflow.db``), logs an evaluation run tagged ``seglab.kind=evaluation`` and
``seglab.evaluates=<the trial's run id>`` in the trial's experiment.

The scoring lives in :mod:`seglab.platform.evaluation` (:mod:`~seglab.platform.evaluation.checkpoint`,
:mod:`~seglab.platform.evaluation.predictions`, :mod:`~seglab.platform.evaluation.results`,
:mod:`~seglab.platform.evaluation.record`); this module is the command.

Predictions mode scores files in the data set's official result format with no model: for
``cityscapes``, ``*labelIds`` PNGs named ``<city>_<seq>_<frame>*.png`` after the ground-truth
images (searched recursively, as cityscapesScripts does); for every other on-disk data set, PNGs
of train ids ``0..C-1`` named ``<image stem>.png``.

Cityscapes is scored as cityscapesScripts does (:class:`seglab.metrics.CityscapesScores`: class
and category IoU, iIoU, category iIoU); every data set also gets pixel accuracy, mean accuracy,
per-class precision / recall / F1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from seglab.errors import ConfigError
from seglab.platform.cli.common import hw_type


def scale_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--scales must be numbers > 0, e.g. --scales 0.75 1.0 1.25 (got {text!r})")
    return value


def add_inference_args(p: argparse.ArgumentParser, ms: bool = False) -> None:
    """The inference options ``seglab eval`` and ``seglab predict`` share (one inference code path):
    --scales (and, with ``ms``, its --ms shorthand), --flip, --slide, --crop, --stride, --device."""
    p.add_argument("--scales", nargs="+", type=scale_type, metavar="S", help="test scales (default 1.0)")
    if ms:
        p.add_argument("--ms", action="store_true",
                       help="multi-scale: --scales 0.75 1.0 1.25 (with --flip: HRNet's test)")
    p.add_argument("--flip", action="store_true", help="also predict the horizontally flipped image")
    p.add_argument("--slide", action="store_true", help="sliding-window inference with windows of --crop")
    p.add_argument("--crop", type=hw_type("--crop", "512x1024"), metavar="HxW",
                   help="sliding window size (default: the run's training crop)")
    p.add_argument("--stride", type=hw_type("--stride", "512x1024"), metavar="HxW",
                   help="window step (default 2/3 of --crop)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda when available")


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``seglab eval`` on the ``sub`` sub-parsers of the seglab command."""
    p = sub.add_parser(
        "eval", help="score a checkpoint or a folder of prediction PNGs on a data set split",
        description="Score CHECKPOINT (a seglab checkpoint) or --predictions DIR (PNGs in the data set's official "
                    "result format) on a data set split; prints mIoU, pixel/mean accuracy, per-class IoU "
                    "(Cityscapes also category mIoU, iIoU, category iIoU). Exit status 2 on a usage error.")
    p.add_argument("checkpoint", nargs="?", help="a seglab checkpoint file (best.pt / checkpoint.pt)")
    p.add_argument("--predictions", metavar="DIR", help="score the PNGs in DIR instead of a model")
    p.add_argument("--dataset", metavar="NAME",
                   help="registered data set name (checkpoint mode: default the run's data set)")
    p.add_argument("--root", metavar="R", help="the data set's root directory (official layout)")
    p.add_argument("--split", metavar="S",
                   help="split to score (default: the run's report split -- test for the embedded data set -- "
                        "else val)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a data set option, e.g. cities=[lindau] (repeatable)")
    add_inference_args(p)
    p.add_argument("--json", metavar="OUT", help="also write the scores as JSON to OUT")
    p.add_argument("--experiment", default="seglab",
                   help="MLflow experiment of the evaluation run when the checkpoint's trial run is not in the "
                        "store (default seglab)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow evaluation run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_eval)
    return p


def cmd_eval(args: argparse.Namespace) -> int:
    """Check the flags (one line for a bad combination), score, print, write the JSON, record the run."""
    from seglab.datasets.check import parse_options
    from seglab.platform.evaluation.checkpoint import evaluate_checkpoint
    from seglab.platform.evaluation.predictions import evaluate_predictions
    from seglab.platform.evaluation.record import log_evaluation_run
    from seglab.platform.evaluation.results import format_result, json_result

    options = parse_options(args.option)
    for key in ("split", "root", "augment"):
        if key in options:
            raise ConfigError(f"--option {key}: give it as --{key}" if key != "augment"
                              else "--option augment: evaluation never augments")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise ConfigError(f"--json {args.json}: folder {folder} does not exist")
    if args.predictions is not None:
        if args.checkpoint is not None:
            raise ConfigError("give either CHECKPOINT or --predictions DIR, not both")
        for flag, given in (("--scales", args.scales), ("--flip", args.flip), ("--slide", args.slide),
                            ("--crop", args.crop), ("--stride", args.stride)):
            if given:
                raise ConfigError(f"{flag} needs a model (CHECKPOINT); --predictions scores the files as they are")
        if not args.dataset:
            raise ConfigError("--predictions needs --dataset NAME (and --root R for on-disk data sets)")
        result = evaluate_predictions(args.predictions, args.dataset, root=args.root, split=args.split or "val",
                                      options=options, progress=not args.no_progress)
        title = f"predictions {args.predictions}"
    else:
        if args.checkpoint is None:
            raise ConfigError("give a CHECKPOINT file or --predictions DIR (see `seglab eval --help`)")
        if (args.crop or args.stride) and not args.slide:
            raise ConfigError("--crop / --stride set the sliding window: add --slide")
        result = evaluate_checkpoint(args.checkpoint, dataset=args.dataset, root=args.root, split=args.split,
                                     options=options, scales=args.scales, flip=args.flip, slide=args.slide,
                                     crop=args.crop, stride=args.stride, device=args.device,
                                     progress=not args.no_progress)
        title = f"checkpoint {args.checkpoint}"
    print(format_result(result, title))
    if args.json:
        Path(args.json).write_text(json.dumps(json_result(result), indent=2) + "\n")
        print(f"\nscores written to {args.json}")
    if args.predictions is None and not args.no_mlflow:
        run_id = log_evaluation_run(result, args.checkpoint, experiment=args.experiment)
        if run_id:
            print(f"\nMLflow evaluation run {run_id} ({result['tracking']})")
    return 0
