"""``seglab export``: a model as an ONNX or TorchScript file, verified against eager PyTorch.

    seglab export CHECKPOINT_OR_RUN --format onnx|torchscript --out FILE [--size HxW] [--dynamic]
                  [--exporter dynamo|legacy] [--model NAME --num-classes N]

What the file takes and returns, and how it is checked: :mod:`seglab.platform.serve.export`. Exit
status 0: written and verified; 1: the file disagrees with the eager model (nothing written); 2: a
usage error (one line).
"""
from __future__ import annotations

import argparse
import os

from seglab.errors import ConfigError
from seglab.platform.cli.common import add_official_checkpoint_args, hw_type


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a model to ONNX or TorchScript, checked against eager PyTorch",
        description="Export CHECKPOINT_OR_RUN (a seglab checkpoint, an official checkpoint with --model, an MLflow "
                    "run id or models:/NAME/VERSION) to FILE: input 'images' (B, 3, H, W) float32, preprocessed as "
                    "printed; output 'logits' (B, C, H, W). The file is run on a sample and compared with the eager "
                    "model before it is kept (exit 1 and no file when they disagree).")
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
    p.add_argument("--format", required=True, metavar="FORMAT", help="onnx or torchscript")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (its folder must exist)")
    p.add_argument("--size", type=hw_type("--size", "512x1024"), metavar="HxW",
                   help="input size of the sample (and of the file without --dynamic; default: the run's training "
                        "crop, else 512x1024)")
    p.add_argument("--dynamic", action="store_true", help="batch, height and width free (checked at a second size)")
    p.add_argument("--exporter", default="dynamo", metavar="NAME",
                   help="ONNX only: dynamo (torch.export, torch's default) or legacy (TorchScript-based, faster)")
    add_official_checkpoint_args(p)
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    from seglab.platform.evaluation.checkpoint import train_crop
    from seglab.platform.serve.export import EXPORTERS, FORMATS, MIN_AGREEMENT, REL_TOL, export
    from seglab.platform.serve.source import resolve

    if args.format not in FORMATS:
        raise ConfigError(f"--format {args.format}: unknown; one of {', '.join(FORMATS)}")
    if args.exporter not in EXPORTERS:
        raise ConfigError(f"--exporter {args.exporter}: unknown; one of {', '.join(EXPORTERS)}")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise ConfigError(f"--out {args.out}: folder {folder} does not exist")
    if os.path.isdir(args.out):
        raise ConfigError(f"--out {args.out}: is a folder; give a file name")
    loaded = resolve(args.checkpoint, args.model, args.num_classes)
    size = args.size or train_crop(loaded.state) or (512, 1024)
    meta, parity = export(loaded, args.format, args.out, size, args.dynamic, args.exporter)
    how = f"{args.format}" + (f" ({args.exporter} exporter, opset 18)" if args.format == "onnx" else " (traced)")
    shape = " x ".join(str(v) if v else n for v, n in zip(meta["input"]["size"], "BCHW"))
    free = " (" + ", ".join(meta["input"]["dynamic"]) + " free)" if meta["input"]["dynamic"] else ""
    print(f"{loaded.name} -> {args.out}: {how}, input 'images' {shape}{free}, "
          f"output 'logits' B x {loaded.num_classes} x H x W")
    print(f"preprocessing: {meta['preprocessing']['text']} (in the file's metadata 'seglab')")
    for p in parity:
        print(f"parity vs eager PyTorch, batch {p.line()}")
    if not all(p.ok for p in parity):
        print(f"seglab: error: the exported file disagrees with the eager model (needs argmax agreement >= "
              f"{100 * MIN_AGREEMENT:g} % and max |Δlogits| <= {REL_TOL:g} x max(1, max |logits|)); nothing written")
        return 1
    return 0
