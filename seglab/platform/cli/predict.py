"""``seglab predict``: label maps, overlays and method maps of a trained model for images, folders, globs, videos.

    seglab predict CHECKPOINT_OR_RUN INPUT... --out DIR [--scales S ...] [--flip] [--slide [--crop HxW]]
                   [--palette [NAME|FILE]] [--video] [--batch-size N] [--model NAME --num-classes N]

CHECKPOINT_OR_RUN: a seglab checkpoint, an official checkpoint (with ``--model``), an MLflow run id or
``models:/NAME/VERSION`` (:mod:`seglab.platform.serve.source`); the outputs:
:mod:`seglab.platform.serve.predict`. Everything is checked (the model, every input's file) before
the first file is written.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional, Tuple

from seglab.errors import ConfigError
from seglab.platform.cli.common import add_official_checkpoint_args, positive
from seglab.platform.cli.eval import add_inference_args


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict", help="label maps and colour overlays of a model for images, folders, globs or videos",
        description="Predict INPUT (images, folders, quoted globs, video files) with CHECKPOINT_OR_RUN (a seglab "
                    "checkpoint, an official checkpoint with --model, an MLflow run id or models:/NAME/VERSION); "
                    "writes DIR/labels (train ids, what `seglab eval --predictions DIR/labels` scores), "
                    "DIR/overlay, and a method's maps. Exit status 2 on a usage error.")
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    add_inference_args(p, ms=True)
    p.add_argument("--palette", nargs="?", const="model", metavar="NAME|FILE",
                   help="also write DIR/color (colour label maps) and colour overlays with this palette: 'model' "
                        "(the data set's; the default of a bare --palette), 'cityscapes', or a JSON file of RGB triples")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the class colours (default 0.5)")
    p.add_argument("--video", action="store_true", help="a folder INPUT is a sequence of frames: also write it "
                                                         "back as DIR/<folder>_overlay.mp4")
    p.add_argument("--batch-size", type=positive, default=None, help="images per forward (default 4 on a GPU, 1 on CPU)")
    add_official_checkpoint_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_predict)
    return p


def read_palette(value: Optional[str], num_classes: int, default: List[Tuple[int, int, int]]):
    """``--palette``: None / 'model' -> the model's; 'cityscapes'; a JSON file of ``num_classes`` RGB triples."""
    from seglab.datasets.labels import CITYSCAPES_PALETTE

    if value in (None, "model"):
        return default
    if value == "cityscapes":
        if num_classes > len(CITYSCAPES_PALETTE):
            raise ConfigError(f"--palette cityscapes: {len(CITYSCAPES_PALETTE)} colours, the model has {num_classes} classes")
        return [tuple(c) for c in CITYSCAPES_PALETTE[:num_classes]]
    try:
        colours = json.loads(Path(value).read_text())
        ok = (isinstance(colours, list) and len(colours) >= num_classes
              and all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                      for c in colours))
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"--palette {value}: give 'model', 'cityscapes' or a JSON file holding a list of "
                          f"{num_classes} [R, G, B] triples (0..255)")
    return [tuple(c) for c in colours[:num_classes]]


def cmd_predict(args: argparse.Namespace) -> int:
    from seglab.platform.evaluation.checkpoint import inference_config, pick_device
    from seglab.platform.evaluation.results import ProgressBar
    from seglab.platform.serve import inputs as serve_inputs
    from seglab.platform.serve.predict import Predictor, predict_images, predict_video
    from seglab.platform.serve.source import resolve

    if args.ms and args.scales:
        raise ConfigError("give --ms or --scales, not both (--ms is --scales 0.75 1.0 1.25)")
    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha must be in 0..1 (got {args.alpha})")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    jobs = serve_inputs.expand(args.inputs, frames_as_video=args.video)
    serve_inputs.check_readable([p for job in jobs for p in job.images])
    device = pick_device(args.device)
    loaded = resolve(args.checkpoint, args.model, args.num_classes)
    config = inference_config(loaded.state, [0.75, 1.0, 1.25] if args.ms else args.scales, args.flip, args.slide,
                              args.crop, args.stride)
    palette = read_palette(args.palette, loaded.num_classes, loaded.palette)
    loaded.model.to(device)
    predictor = Predictor(loaded, config, device, out, method=method_of(loaded), palette=palette,
                          write_color=args.palette is not None, alpha=args.alpha)
    batch = args.batch_size or (4 if device.type == "cuda" else 1)
    total = sum(len(j.images) for j in jobs) + sum(frame_count(j.source) for j in jobs if j.source is not None)
    bar = ProgressBar(total, not args.no_progress, desc="predict")
    videos = []
    try:
        for job in jobs:
            run = predict_video if job.source is not None else predict_images
            videos.append(run(predictor, job, batch, bar.update))
    finally:
        bar.close()
    print(f"{loaded.name} ({config.describe()}, {device}): {predictor.written} image(s) -> {out / 'labels'} "
          f"(train ids 0..{loaded.num_classes - 1}), {out / 'overlay'}")
    for video in filter(None, videos):
        print(f"video: {video}")
    return 0


def method_of(loaded):
    """The method whose maps ``seglab predict`` also writes (None: a plain network)."""
    from seglab.platform import methods
    from seglab.platform.config import RunConfig

    try:
        method = methods.for_run(RunConfig.from_dict(loaded.state["run"])) if loaded.state.get("run") else None
    except (ConfigError, KeyError, TypeError):
        method = None
    if method is None:
        method = next((m for m in methods.all_methods() if any(loaded.name.startswith(p) for p in m.model_prefixes)),
                      None)
    if method is None or type(method).prediction_maps is methods.Method.prediction_maps:
        return None
    return method


def frame_count(path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    finally:
        capture.release()
