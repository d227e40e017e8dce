"""The ``seglab`` command.

    seglab models [PATTERN ...] [--size 1024x2048] [--num-classes 19]
                                                          registered models with params and GFLOPs: every one,
                                                          or those matching a PATTERN (fnmatch, e.g. 'hrnet_w48*')
    seglab compare [SWEEP_RUN_ID ...] [--experiment NAME] [--out DIR] [--no-log]
                                                          the comparison of sweeps (latest by default), plots
    seglab data check DATASET ROOT [--split S ...] [--option KEY=VALUE ...]
                                                          verify a data set on disk (exit 0 clean, 1 bad samples)
    seglab eval CHECKPOINT [--dataset NAME] [--root R] [--split test] [--scales 0.75 1.0 1.25] [--flip]
                [--slide [--crop HxW]] [--json OUT]       score a checkpoint on a split (table, MLflow run)
    seglab eval --predictions DIR --dataset NAME --root R [--split val] [--json OUT]
                                                          score prediction PNGs in the official result format
    seglab predict CHECKPOINT_OR_RUN INPUT... --out DIR [--ms] [--flip] [--slide] [--palette] [--video]
                                                          label maps (train ids), overlays, a method's maps, videos
    seglab export CHECKPOINT_OR_RUN --format onnx|torchscript --out FILE [--size HxW] [--dynamic]
                                                          an ONNX / TorchScript file, verified against eager PyTorch
    seglab ui [--experiment NAME] [--no-browser]          the MLflow UI links of the latest sweep

One module per command in this package (``models``, ``compare``, ``data``, ``eval``, ``predict``, ``export``, ``ui``); a user error
anywhere is one line ``seglab: error: ...`` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from seglab.errors import ConfigError
from seglab.platform.cli.common import Parser, hw_type, positive
from seglab.platform.cli.compare import cmd_compare
from seglab.platform.cli.data import cmd_data_check
from seglab.platform.cli.eval import add_parser as add_eval_parser
from seglab.platform.cli.export import add_parser as add_export_parser
from seglab.platform.cli.predict import add_parser as add_predict_parser
from seglab.platform.cli.ui import add_parser as add_ui_parser
from seglab.platform.cli.models import cmd_models
from seglab.platform.quiet import quiet


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``seglab`` with ``argv`` (default: the command line); returns the exit status."""
    quiet()
    parser = Parser(prog="seglab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list registered models with params and GFLOPs")
    p.add_argument("patterns", nargs="*", metavar="PATTERN",
                   help="list only the models whose names match one of these fnmatch patterns, e.g. 'hrnet_w48*' "
                        "(default: every registered model); a pattern that matches none is an error (exit 2)")
    p.add_argument("--size", type=hw_type("--size", "1024x2048"), default=(1024, 2048),
                   help="input HxW (default 1024x2048)")
    p.add_argument("--num-classes", type=positive, default=19)
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
    p.add_argument("--workers", type=positive, default=2, help="threads decoding labels (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_data_check)
    add_eval_parser(sub)
    add_predict_parser(sub)
    add_export_parser(sub)
    add_ui_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"seglab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
