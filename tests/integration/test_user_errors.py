"""The bad-input matrix: every user-facing config key and command, given a bad value.

:data:`ROWS` is the table: one bad input per row (the command, its arguments, the kind of mistake,
a fragment the error must contain). For every row the test asserts what a user must see:

* exit status 2;
* exactly one line on stderr, ``seglab: error: ...``, containing the fragment (it names the key or
  file and what is allowed);
* no traceback, on stderr or stdout;
* nothing started: no MLflow store and no run folder under the row's ``SEGLAB_HOME``, and no Ray
  (``ray.init`` is a tripwire, ``ray.is_initialized()`` stays false and no Ray session folder
  appears under the worker's private ``RAY_TMPDIR``).

Speed: a Python process importing torch, Hydra and seglab takes seconds, so the rows do not get a
process each. One worker process (this file run as a script) calls the real entry points per row,
in-process: an experiment script as ``__main__`` (``runpy``: its ``run_hydra(main)`` and Hydra's own
command-line parsing run as from a shell) or ``seglab.platform.cli.main``, with stdout and stderr
captured at the file-descriptor level. The rows marked ``process=True`` also run as real processes
(``python experiments/<script>.py ...``, the installed ``seglab`` command) next to the worker, to
prove the exit status a shell sees: one per way out (Hydra's own config-group error, seglab's
ConfigError from a script, the ``seglab`` command's), as each kind of mistake leaves by one of them.

README.md's section "What errors look like" is this table with the lines printed; after changing a
row or a message, rewrite it with ``.venv/bin/python tests/integration/test_user_errors.py --readme``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

# the matrix fixture costs ~50 s: its tests go to one pytest worker (a test xdist still sends to another
# reads the matrix that worker saved, see matrix())
pytestmark = pytest.mark.xdist_group("user_errors")

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SECTION = "## What errors look like"
SCRIPTS = ("ovenet_sweep.py", "semeda_sweep.py", "phgmm_sweep.py", "baselines.py")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class Row:
    command: str  # an experiment script (experiments/<command>) or "seglab"
    args: str  # the arguments, shell-quoted; relative paths are fixtures in the worker's folder
    kind: str  # what it tests
    fragment: str  # the one line must contain this
    process: bool = False  # also run it as a real process
    store: bool = False  # an (empty) MLflow store exists already
    unless_root: bool = False  # root reads a chmod-000 file: not meaningful then


R = Row
ROWS: List[Row] = [
    # ---- wrong type
    R("ovenet_sweep.py", "trainer.epochs=abc", "wrong type", "trainer.epochs must be an integer >= 1 (got 'abc')",
      process=True),
    R("ovenet_sweep.py", "trainer.batch_size=1.5", "wrong type", "trainer.batch_size must be an integer >= 1 (got 1.5)"),
    R("ovenet_sweep.py", "trainer.lr=fast", "wrong type", "trainer.lr must be a number (got 'fast')"),
    R("ovenet_sweep.py", "trainer.seed=abc", "wrong type", "trainer.seed must be an integer (got 'abc')"),
    R("ovenet_sweep.py", "trainer.use_gpu=maybe", "wrong type", "trainer.use_gpu must be true, false or auto"),
    R("ovenet_sweep.py", "trainer.flops_input_size=abc", "wrong type", "trainer.flops_input_size must be [H, W]"),
    R("ovenet_sweep.py", "trainer.crop_size=[321]", "wrong type", "trainer.crop_size must be null or [H, W]"),
    R("ovenet_sweep.py", "model.tau=abc", "wrong type", "model.tau"),
    R("ovenet_sweep.py", "+model.freeze_bn=maybe", "wrong type", "model.freeze_bn must be true or false"),
    R("ovenet_sweep.py", "model.pretrained=5", "wrong type", "model.pretrained must be null or the path"),
    R("ovenet_sweep.py", "dataset.image_size=abc", "wrong type", "dataset.image_size must be two ints"),
    R("ovenet_sweep.py", "dataset.train=5", "wrong type", "dataset.train must be a mapping of options"),
    R("ovenet_sweep.py", "sweep.dry_run=maybe", "wrong type", "sweep.dry_run must be true or false"),
    R("ovenet_sweep.py", "sweep.kappa=[0.5,abc]", "wrong type", "sweep.kappa values must be numbers (got 'abc')"),
    R("ovenet_sweep.py", "sweep.max_concurrent_trials=abc", "wrong type",
      "sweep.max_concurrent_trials must be null or an integer >= 1"),
    R("ovenet_sweep.py", "trainer.poly_power=abc", "wrong type", "trainer.poly_power must be a number (got 'abc')"),
    R("ovenet_sweep.py", "sweep.include_baseline=maybe", "wrong type", "sweep.include_baseline must be true or false"),
    R("ovenet_sweep.py", "sweep.seed=abc", "wrong type", "sweep.seed must be an integer (got 'abc')"),
    R("ovenet_sweep.py", "dataset.train.augment=maybe", "wrong type", "dataset.train.augment must be true or false"),
    R("ovenet_sweep.py", "loss.class_weights=abc", "wrong type", "loss.class_weights"),
    # ---- out of range
    R("ovenet_sweep.py", "trainer.epochs=0", "out of range", "trainer.epochs must be an integer >= 1 (got 0)"),
    R("ovenet_sweep.py", "trainer.lr=-1", "out of range", "trainer.lr must be > 0 (got -1)"),
    R("ovenet_sweep.py", "trainer.num_workers=0", "out of range", "trainer.num_workers must be an integer >= 1 (got 0)"),
    R("ovenet_sweep.py", "trainer.momentum=1", "out of range", "trainer.momentum must be in [0, 1)"),
    R("ovenet_sweep.py", "trainer.loader_workers=-1", "out of range", "trainer.loader_workers must be auto or"),
    R("ovenet_sweep.py", "trainer.trimap_widths=[0,3]", "out of range",
      "trainer.trimap_widths must be a list of distinct positive"),
    R("ovenet_sweep.py", "trainer.cpus_per_worker=0", "out of range", "trainer.cpus_per_worker must be > 0 (got 0)"),
    R("ovenet_sweep.py", "trainer.weight_decay=-1", "out of range", "trainer.weight_decay must be >= 0 (got -1)"),
    R("ovenet_sweep.py", "trainer.poly_power=-1", "out of range", "trainer.poly_power must be >= 0 (got -1)"),
    R("ovenet_sweep.py", "trainer.max_failures=-2", "out of range", "trainer.max_failures must be >= -1"),
    R("ovenet_sweep.py", "trainer.fail_once_at_epoch=0", "out of range",
      "trainer.fail_once_at_epoch must be null or an integer >= 1 (got 0)"),
    R("ovenet_sweep.py", "trainer.viz_samples=-1", "out of range", "trainer.viz_samples must be an integer >= 0"),
    R("ovenet_sweep.py", "trainer.viz_every=0", "out of range", "trainer.viz_every must be an integer >= 1 (got 0)"),
    R("ovenet_sweep.py", "model.tau=-1", "out of range", "model.tau must be > 0"),
    R("ovenet_sweep.py", "model.cascade_steps=-1", "out of range", "model.cascade_steps"),
    R("ovenet_sweep.py", "model.branch_stage=5", "out of range", "model.branch_stage"),
    R("ovenet_sweep.py", "loss.kappa=-0.5", "out of range", "loss.kappa"),
    R("ovenet_sweep.py", "dataset.val.num_samples=0", "out of range", "dataset.val.num_samples must be a positive int"),
    R("ovenet_sweep.py", "dataset.train.crop_size=[1000,1000]", "out of range", "dataset.train.crop_size must be"),
    R("ovenet_sweep.py", "loss=ohem loss.thresh=2", "out of range", "loss.thresh"),
    R("ovenet_sweep.py", "sweep.tau=[0.5,-1]", "out of range", "sweep.tau values must be > 0"),
    R("ovenet_sweep.py", "sweep.num_samples=0", "out of range", "sweep.num_samples must be >= 1"),
    R("ovenet_sweep.py", "sweep.seeds=0", "out of range", "sweep.seeds must be an integer >= 1 (got 0)"),
    R("ovenet_sweep.py", "sweep.budget=gpu", "unknown name", "sweep.budget must be one of schedule, flops, time"),
    R("ovenet_sweep.py", "sweep.budget=time", "missing value", "sweep.budget=time needs sweep.time_budget_s"),
    R("ovenet_sweep.py", "+dataset.selection_fraction=1.5", "out of range",
      "dataset.selection_fraction must be null or a number in (0, 1)"),
    R("ovenet_sweep.py", "loss=ohem loss.min_kept=1.5", "out of range", "loss.min_kept"),
    R("ovenet_sweep.py", "sweep.max_trial_failures=-2", "out of range", "sweep.max_trial_failures must be an integer >= -1"),
    R("ovenet_sweep.py", "sweep=ovenet_kappa_lambda_tau sweep.asha.grace_period=0", "out of range",
      "sweep.asha.grace_period must be an integer >= 1"),
    R("ovenet_sweep.py", "sweep.lam={uniform:[1,0]} sweep.search=random", "out of range",
      "sweep.lam.uniform needs [lo, hi] with lo < hi"),
    R("ovenet_sweep.py", "sweep=ovenet_ablation sweep.variants=[]", "out of range", "sweep.variants must be a non-empty list"),
    R("semeda_sweep.py", "sweep.lambda1=[-1]", "out of range", "sweep.lambda1 values must be >= 0"),
    R("phgmm_sweep.py", "sweep.k=[0]", "out of range", "sweep.k values must be"),
    R("baselines.py", "sweep.models=[]", "out of range", "sweep.models must be a non-empty list"),
    R("ovenet_sweep.py", "sweep.experiment=''", "out of range", "sweep.experiment must be the name of an MLflow experiment"),
    R("semeda_sweep.py", "loss.lambda2=-1", "out of range", "loss.lambda2 must be"),
    R("phgmm_sweep.py", "model.num_components=0", "out of range", "model.num_components"),
    R("baselines.py", "loss=ce loss.class_weights=[1,2]", "out of range",
      "loss.class_weights has 2 values but dataset 'synthetic' has 9"),
    # ---- unknown name
    R("ovenet_sweep.py", "model=nope", "unknown name (config group)",
      "unknown model 'nope' (model=nope); valid model names: deeplabv2_r101,", process=True),
    R("ovenet_sweep.py", "loss=nope", "unknown name (config group)", "unknown loss 'nope' (loss=nope); valid loss names: ce,"),
    R("ovenet_sweep.py", "dataset=nope", "unknown name (config group)", "unknown dataset 'nope' (dataset=nope); valid dataset"),
    R("ovenet_sweep.py", "trainer=nope", "unknown name (config group)",
      "unknown trainer 'nope' (trainer=nope); valid trainer names: default, demo,"),
    R("ovenet_sweep.py", "sweep=nope", "unknown name (config group)", "unknown sweep 'nope' (sweep=nope); valid sweep names:"),
    R("ovenet_sweep.py", "cluster=nope", "unknown name (config group)",
      "unknown cluster 'nope' (cluster=nope); valid cluster names: aws, gcp, inprocess, k8s, local"),
    R("ovenet_sweep.py", "trainer.log_checkpoints=all", "unknown name",
      "trainer.log_checkpoints must be one of best, last, none (got 'all')"),
    R("ovenet_sweep.py", "sweep.resume=/nonexistent/sweep", "missing file",
      "sweep.resume=/nonexistent/sweep: not a sweep folder"),
    R("ovenet_sweep.py", "sweep.resume=true", "missing file", "sweep.resume=true: no interrupted run of sweep"),
    R("ovenet_sweep.py", "cluster.storage_path=s3://bucket/runs", "wrong type",
      "cluster.storage_path must be a POSIX path that every node mounts"),
    R("ovenet_sweep.py", "--config-name nope", "unknown name (config group)",
      "unknown primary config 'nope' (--config-name); valid: baselines, config, phgmm, semeda"),
    R("ovenet_sweep.py", "model.name=nope", "unknown name", "unknown model 'nope'; valid model names:"),
    R("ovenet_sweep.py", "dataset.name=nope", "unknown name", "unknown dataset 'nope'"),
    R("ovenet_sweep.py", "loss.criterion=focal", "unknown name", "loss.criterion"),
    R("ovenet_sweep.py", "loss.name=nope", "unknown name", "unknown loss 'nope'"),
    R("ovenet_sweep.py", "model.tau_mode=nope", "unknown name", "model.tau_mode"),
    R("ovenet_sweep.py", "model.resample=nope", "unknown name", "model.resample"),
    R("ovenet_sweep.py", "model.inference_output=nope", "unknown name", "model.inference_output"),
    R("phgmm_sweep.py", "model.decoder_input=nope", "unknown name", "model.decoder_input"),
    R("phgmm_sweep.py", "model.postnet_backbone=resnet7", "unknown name", "model.postnet_backbone"),
    R("phgmm_sweep.py", "loss.kl_z=nope", "unknown name", "loss.kl_z"),
    R("semeda_sweep.py", "loss.reduction=nope", "unknown name", "loss.reduction"),
    R("semeda_sweep.py", "loss=sobel loss.mode=nope", "unknown name", "loss.mode"),
    R("semeda_sweep.py", "model=deeplabv3plus_r50 model.output_stride=7", "unknown name", "model.output_stride"),
    R("ovenet_sweep.py", "sweep.baseline_loss=nope", "unknown name", "unknown loss 'nope'"),
    R("ovenet_sweep.py", "dataset=cityscapes dataset.root=data/cityscapes_bad_label dataset.annotations=nope",
      "unknown name", "dataset.annotations must be one of"),
    R("ovenet_sweep.py", "dataset=cityscapes dataset.root=data/cityscapes_bad_label dataset.cities=[atlantis]",
      "unknown name", "atlantis"),
    R("ovenet_sweep.py", "trainer.optimizer=rmsprop", "unknown name", "trainer.optimizer must be one of sgd, adam, adamw"),
    R("ovenet_sweep.py", "sweep.search=nope", "unknown name", "sweep.search must be one of grid, random, optuna"),
    R("ovenet_sweep.py", "sweep=ovenet_kappa_lambda_tau sweep.scheduler=hyperband", "unknown name",
      "sweep.scheduler must be null or one of asha"),
    R("ovenet_sweep.py", "sweep.baseline_model=nope", "unknown name", "unknown model 'nope'"),
    R("ovenet_sweep.py", "dataset=cityscapes dataset.root=data/cityscapes_bad_label dataset.on_bad_sample=ignore",
      "unknown name",
      "dataset.on_bad_sample must be one of"),
    R("baselines.py", "sweep.models=[hrnet_w18_small_v1,nope]", "unknown name", "unknown model 'nope'"),
    R("phgmm_sweep.py", "model=hrnet_w18_small_v1", "unknown name", "loss=phgmm needs a model with latents"),
    # ---- unknown key / malformed override / bad flag
    R("ovenet_sweep.py", "trainer.no_such_key=1", "unknown key",
      "unknown key trainer.no_such_key; allowed trainer keys: batch_size,"),
    R("ovenet_sweep.py", "model.body_checkpoint=best.pt", "unknown key",
      "unknown key model.body_checkpoint; allowed model keys: branch_stage, cascade_steps, freeze_body,"),
    R("ovenet_sweep.py", "+trainer.no_such_key=1", "unknown key", "unknown key trainer.no_such_key; allowed: batch_size,"),
    R("ovenet_sweep.py", "+model.no_such_option=1", "unknown key",
      "model.no_such_option is not an option of model 'ovenet_hrnet_w18_small_v1'; valid options:"),
    R("ovenet_sweep.py", "+dataset.no_such_option=1", "unknown key", "unknown key dataset.no_such_option for dataset"),
    R("ovenet_sweep.py", "sweep.no_such_key=1", "unknown key", "unknown key sweep.no_such_key; allowed sweep keys:"),
    R("ovenet_sweep.py", "trainer.epochs.x=1", "unknown key", "unknown key trainer.epochs.x (trainer.epochs is a value"),
    R("ovenet_sweep.py", "trainer.epochs=[1", "malformed override", "cannot parse override 'trainer.epochs=[1'"),
    R("ovenet_sweep.py", "trainer", "malformed override", "cannot parse override 'trainer': missing EQUAL"),
    R("ovenet_sweep.py", "trainer.epochs='${nope}'", "malformed override",
      "trainer.epochs: Interpolation key 'nope' not found"),
    R("ovenet_sweep.py", "--cfgg job", "malformed override", "unrecognized arguments: --cfgg"),
    # ---- missing file
    R("ovenet_sweep.py", "model.pretrained=/nonexistent/weights.pth", "missing file",
      "model.pretrained: file not found: /nonexistent/weights.pth"),
    R("ovenet_sweep.py", "+model.body_checkpoint=/nonexistent/best.pt", "missing file",
      "model.body_checkpoint: file not found: /nonexistent/best.pt"),
    R("ovenet_sweep.py", "dataset=cityscapes dataset.root=/nonexistent/cityscapes", "missing file",
      "dataset.root: expected the Cityscapes root"),
    R("semeda_sweep.py", "loss.edge_net=/nonexistent/edge.pt", "missing file",
      "loss.edge_net: no edge-net file at /nonexistent/edge.pt"),
    # ---- unreadable file
    R("ovenet_sweep.py", "model.pretrained=weights", "unreadable file", "model.pretrained: weights is a directory"),
    R("ovenet_sweep.py", "model.pretrained=weights/unreadable.pth", "unreadable file",
      "model.pretrained: cannot read weights/unreadable.pth: permission denied", unless_root=True),
    # ---- empty data set, label out of range
    R("ovenet_sweep.py", "dataset=cityscapes dataset.root=data/cityscapes_empty", "empty data set",
      "the train split under"),
    R("ovenet_sweep.py", "dataset=cityscapes dataset.root=data/cityscapes_bad_label dataset.selection_fraction=null",
      "label out of range",
      "1 of 2 val samples of dataset 'cityscapes' are bad; first: data/cityscapes_bad_label/gtFine/val/"),
    # ---- checkpoint of another architecture, corrupt checkpoint, pickled objects
    R("semeda_sweep.py", "model.pretrained=weights/hrnet_w18_small_v1.pth", "checkpoint of another architecture",
      "model.pretrained: weights/hrnet_w18_small_v1.pth is for a different architecture than DeepLabV3Plus"),
    R("ovenet_sweep.py", "model=ovenet_hrnet_w18 model.pretrained=weights/hrnet_w18_small_v1.pth",
      "checkpoint of another architecture", "is for a different architecture than"),
    R("ovenet_sweep.py", "model=ovenet_hrnet_w18 +model.body_checkpoint=weights/hrnet_w18_small_v1.pth",
      "checkpoint of another architecture", "model.body_checkpoint: weights/hrnet_w18_small_v1.pth: body state dict"),
    R("ovenet_sweep.py", "model.pretrained=weights/random_bytes.pth", "corrupt checkpoint",
      "model.pretrained: cannot read weights/random_bytes.pth as a torch checkpoint"),
    R("ovenet_sweep.py", "+model.body_checkpoint=weights/truncated.pth", "corrupt checkpoint",
      "model.body_checkpoint: cannot read weights/truncated.pth as a torch checkpoint"),
    R("semeda_sweep.py", "loss.edge_net=weights/random_bytes.pth", "corrupt checkpoint",
      "loss.edge_net weights/random_bytes.pth is not a valid SEMEDA edge-net file"),
    R("ovenet_sweep.py", "model.pretrained=weights/pickled_namespace.pth", "pickled object in a checkpoint",
      "model.pretrained: weights/pickled_namespace.pth holds pickled Python objects (argparse.Namespace)"),
    # ---- the seglab command
    R("seglab", "models --size 0x5", "seglab command", "--size must be HxW with positive integers"),
    R("seglab", "models --num-classes 0", "seglab command", "argument --num-classes: must be an integer >= 1"),
    R("seglab", "nope", "seglab command", "invalid choice: 'nope'"),
    R("seglab", "compare", "seglab command", "no MLflow store at"),
    R("seglab", "compare 0123456789abcdef", "seglab command", "no MLflow run '0123456789abcdef' in sqlite:///", store=True),
    R("seglab", "compare --experiment nope", "seglab command", "no MLflow experiment 'nope' in sqlite:///", store=True),
    R("seglab", "data check nope /tmp", "seglab command", "unknown dataset 'nope'; valid dataset names:", process=True),
    R("seglab", "data check cityscapes /nonexistent", "seglab command", "dataset.root: expected the Cityscapes root"),
    R("seglab", "data check cityscapes data/cityscapes_empty", "seglab command", "the train split under"),
    R("seglab", "data check cityscapes data/cityscapes_bad_label --split nope", "seglab command", "dataset.split"),
    R("seglab", "data check cityscapes data/cityscapes_bad_label --workers 0", "seglab command",
      "argument --workers: must be an integer >= 1"),
    R("seglab", "data check cityscapes", "seglab command", "the following arguments are required: root"),
    # ---- seglab predict / export: unreadable image, checkpoint of another architecture, size, format, missing file
    R("seglab", "predict weights/best.pt images/bad.png --out out", "predict: unreadable image",
      "INPUT images/bad.png: image is corrupt or truncated", process=True),
    R("seglab", "predict weights/best.pt images/notes.txt --out out", "predict: unknown input type",
      "INPUT images/notes.txt: unknown file type .txt; images .png"),
    R("seglab", "predict weights/best.pt /nonexistent/street.png --out out", "predict: missing file",
      "INPUT /nonexistent/street.png: no such file or folder"),
    R("seglab", "predict /nonexistent/best.pt images/good.png --out out", "predict: missing file",
      "CHECKPOINT /nonexistent/best.pt: no such file (give a checkpoint file, an MLflow run id or models:/NAME/VERSION)"),
    R("seglab", "predict weights/other_architecture.pt images/good.png --out out", "predict: checkpoint of another architecture",
      "CHECKPOINT weights/other_architecture.pt: its weights do not fit model 'hrnet_w18_small_v2'"),
    R("seglab", "predict weights/hrnet_w18_small_v1.pth images/good.png --out out", "predict: official checkpoint",
      "not a seglab checkpoint (no 'run' config); for an official checkpoint give the architecture with --model NAME"),
    R("seglab", "predict weights/hrnet_w18_small_v1.pth images/good.png --out out --model hrnet_w18_small_v2 "
      "--num-classes 9", "predict: checkpoint of another architecture", "is for a different architecture than"),
    R("seglab", "predict 0123456789abcdef0123456789abcdef images/good.png --out out", "predict: unknown run",
      "CHECKPOINT 0123456789abcdef0123456789abcdef: no such file, and no MLflow run with that id", store=True),
    R("seglab", "predict models:/nope/1 images/good.png --out out", "predict: unknown registered model",
      "CHECKPOINT models:/nope/1: not in the model registry of sqlite:///", store=True),
    R("seglab", "export weights/best.pt --format tflite --out model.tflite", "export: unknown format",
      "--format tflite: unknown; one of onnx, torchscript", process=True),
    R("seglab", "export weights/best.pt --format onnx --out model.onnx --size 0x64", "export: bad size",
      "--size must be HxW with positive integers, e.g. 512x1024 (got '0x64')"),
    R("seglab", "export weights/best.pt --format onnx --out /nonexistent/model.onnx", "export: missing folder",
      "--out /nonexistent/model.onnx: folder /nonexistent does not exist"),
]
del R

# Valid inputs through the same runner: Hydra's own features still work (exit status 0).
GOOD = [
    Row("ovenet_sweep.py", "--cfg job +trainer.extra=1 ~model.tau", "Hydra --cfg, +key, ~key", "extra: 1"),
    Row("ovenet_sweep.py", "--help", "Hydra --help", "Powered by Hydra"),
]


# ------------------------------------------------------------------------------------- fixtures
def write_fixtures(folder: Path) -> None:
    """The files the rows name, relative to ``folder`` (the rows' working directory)."""
    import cv2
    import numpy as np
    import torch

    from seglab.datasets.fixtures.cityscapes import write_cityscapes
    from seglab.models import build_model

    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    model = build_model("hrnet_w18_small_v1", num_classes=9)
    good = weights / "hrnet_w18_small_v1.pth"
    torch.save(model.state_dict(), good)
    data = good.read_bytes()
    (weights / "truncated.pth").write_bytes(data[: len(data) // 2])
    (weights / "random_bytes.pth").write_bytes(random.Random(0).randbytes(4096))
    torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.01)}, weights / "pickled_namespace.pth")
    from seglab.platform.checkpoint import save_atomic

    run = {"model": {"name": "hrnet_w18_small_v1", "pretrained": None}, "dataset": {"name": "synthetic"}}
    save_atomic({"model": model.state_dict(), "num_classes": 9, "run": run}, str(weights / "best.pt"))
    other = {"name": "hrnet_w18_small_v2", "pretrained": None}  # the v1 weights under a v2 model
    save_atomic({"model": model.state_dict(), "num_classes": 9, "run": {**run, "model": other}},
                str(weights / "other_architecture.pt"))
    (folder / "images").mkdir()
    (folder / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(64))
    (folder / "images" / "notes.txt").write_text("not an image\n")
    cv2.imwrite(str(folder / "images" / "good.png"), np.zeros((32, 64, 3), np.uint8))
    unreadable = weights / "unreadable.pth"
    shutil.copyfile(good, unreadable)
    unreadable.chmod(0)
    for split in ("train", "val"):  # the official layout, no image in it
        (folder / "data/cityscapes_empty/leftImg8bit" / split / "aachen").mkdir(parents=True)
        (folder / "data/cityscapes_empty/gtFine" / split / "aachen").mkdir(parents=True)
    written = write_cityscapes(folder / "data/cityscapes_bad_label", splits={"train": 2, "val": 2}, size=(32, 64))
    image = str(written["val"][1])
    label = image.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    bad = cv2.imread(label, cv2.IMREAD_UNCHANGED)
    bad[0, 0] = 200  # not a Cityscapes labelId
    cv2.imwrite(label, bad)


def row_env(folder: Path, home: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HYDRA_FULL_ERROR")}
    env.update(SEGLAB_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               SEGLAB_ARTIFACT_ROOT=(home / "mlartifacts").as_uri(), RAY_TMPDIR=str(folder / "ray_tmp"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def started(home: Path) -> List[str]:
    """What a row left under its SEGLAB_HOME besides Hydra's run folder (outputs/): must be nothing."""
    if not home.exists():
        return []
    return sorted(str(p.relative_to(home)) for p in home.iterdir() if p.name != "outputs")


# ------------------------------------------------------------------------------------- the worker
def _capture(fn) -> Dict[str, Any]:
    """Run ``fn`` with fds 1 and 2 redirected; its exit status as a process would have it."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            try:
                rc = fn()
                code = rc if isinstance(rc, int) else 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if not isinstance(exc.code, (int, type(None))):
                    print(exc.code, file=sys.stderr)
            except BaseException:  # what the interpreter would print
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return {"code": code, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def run_worker(folder: Path, rows: List[Row]) -> List[Dict[str, Any]]:
    """Run ``rows`` in this process (cwd: ``folder``); one result dict per row."""
    import runpy

    import ray

    tripped: List[str] = []

    def tripwire(*args: Any, **kwargs: Any) -> None:
        tripped.append("ray.init")
        raise RuntimeError("ray.init called: a bad input got past validation")

    # ray.init and the module that defines it (ray._private.worker in Ray 2.60), which Ray's own
    # modules call: found by name, so no Ray-private import here
    ray.init = sys.modules[ray.init.__module__].init = tripwire  # type: ignore[assignment]
    from seglab.platform import cli

    os.chdir(folder)
    results = []
    for i, row in enumerate(rows):
        home = folder / "home" / f"row{i:02d}"
        env = row_env(folder, home)
        os.environ.clear()
        os.environ.update(env)
        args = shlex.split(row.args)
        if row.store:
            from seglab.platform import tracking

            home.mkdir(parents=True)
            tracking.ensure_experiment("seglab", env["MLFLOW_TRACKING_URI"])
        before = started(home)
        if row.command == "seglab":
            sys.argv = ["seglab", *args]
            call = (lambda a=args: cli.main(a))
        else:
            script = str(REPO / "experiments" / row.command)
            sys.argv = [script, *args]
            call = (lambda s=script: runpy.run_path(s, run_name="__main__"))
        t0 = time.perf_counter()
        result = _capture(call)
        result.update(seconds=round(time.perf_counter() - t0, 2), started=sorted(set(started(home)) - set(before)),
                      ray=bool(tripped) or ray.is_initialized())
        tripped.clear()
        results.append(result)
    return results


def run_process(folder: Path, row: Row, index: int) -> subprocess.Popen:
    home = folder / "home" / f"process{index:02d}"
    if row.command == "seglab":
        cmd = [str(Path(sys.executable).parent / "seglab")]
    else:
        cmd = [sys.executable, str(REPO / "experiments" / row.command)]
    return subprocess.Popen(cmd + shlex.split(row.args), cwd=folder, env=row_env(folder, home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_matrix(folder: Path) -> Dict[str, Any]:
    """Write the fixtures, run every row in one worker (+ the process rows as processes) -> results."""
    write_fixtures(folder)
    rows = [r for r in ROWS if not (r.unless_root and IS_ROOT)] + GOOD
    (folder / "ray_tmp").mkdir()
    (folder / "rows.json").write_text(json.dumps([r.__dict__ for r in rows]))
    with open(folder / "worker.log", "w") as log:  # a file, not a pipe: nobody reads it while it runs
        worker = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(folder)],
                                  cwd=folder, env=row_env(folder, folder / "home" / "worker"),
                                  stdout=log, stderr=subprocess.STDOUT)
    processes = {}
    for i, row in enumerate(ROWS):
        if row.process:
            proc = run_process(folder, row, i)
            out, err = proc.communicate(timeout=300)
            processes[i] = {"code": proc.returncode, "stdout": out, "stderr": err,
                            "started": started(folder / "home" / f"process{i:02d}")}
    worker.wait(timeout=600)
    assert worker.returncode == 0, (folder / "worker.log").read_text()
    results = json.loads((folder / "results.json").read_text())
    by_row = dict(zip([(r.command, r.args) for r in rows], results))
    return {"rows": by_row, "processes": processes,
            "ray_sessions": sorted(p.name for p in (folder / "ray_tmp").rglob("session_*"))}


# ------------------------------------------------------------------------------------- README
TABLE_HEAD = ["| command | bad input | what it tests | the one line on stderr (exit status 2) |", "|---|---|---|---|"]


def shown(line: str, folder: Path) -> str:
    """A printed line as the README shows it: the fixture folder is the current directory."""
    line = line.replace(str(folder.resolve()) + "/", "").replace(str(folder.resolve()), ".")
    return re.sub(r"\bhome/(row|process)\d+", "$SEGLAB_HOME", line)


def _code(text: str) -> str:
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"  # a double-backtick span may hold backticks


def readme_rows(matrix: Dict[str, Any], folder: Path) -> List[str]:
    """The README table's rows: every row of ROWS with the line it printed."""
    out = []
    for row in ROWS:
        result = matrix["rows"].get((row.command, row.args))
        if result is None or row.unless_root:  # the chmod-000 row is described under the table
            continue
        cells = [_code(row.command), _code(row.args), row.kind, _code(shown(result["stderr"].strip(), folder))]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _table_span(lines: List[str]) -> Tuple[int, int]:
    """[start, end) of the table in README's section (the section must hold one)."""
    first = lines.index(SECTION)
    last = next((i for i in range(first + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rows = [i for i in range(first, last) if lines[i].startswith("|")]
    assert rows, f"README.md's section '{SECTION}' has no table"
    return rows[0], rows[-1] + 1


def readme_table_rows() -> List[str]:
    lines = README.read_text().splitlines()
    start, end = _table_span(lines)
    return lines[start + len(TABLE_HEAD): end]


def write_readme_table(rows: List[str]) -> None:
    text = README.read_text()
    lines = text.splitlines()
    start, end = _table_span(lines)
    lines[start:end] = TABLE_HEAD + rows
    README.write_text("\n".join(lines) + ("\n" if text.endswith("\n") else ""))


# ------------------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder for the whole test session: under xdist, the root all workers' temp folders share."""
    root = tmp_path_factory.getbasetemp()
    return (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "user_errors"


@pytest.fixture(scope="module")
def matrix(folder) -> Dict[str, Any]:
    """The matrix, run once per test session (it costs ~50 s): the first pytest worker that needs it
    runs it under a lock and saves it; a worker that gets some of the rows later reads it back."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    saved = folder.parent / "user_errors.json"
    with open(folder.parent / "user_errors.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not saved.exists():
            folder.mkdir()
            t0 = time.perf_counter()
            out = run_matrix(folder)
            print(f"\nbad-input matrix: {len(out['rows'])} rows in-process + {len(out['processes'])} processes "
                  f"in {time.perf_counter() - t0:.1f} s")
            saved.write_text(json.dumps({**out, "rows": [[list(k), v] for k, v in out["rows"].items()]}))
    out = json.loads(saved.read_text())
    out["rows"] = {tuple(k): v for k, v in out["rows"]}
    out["processes"] = {int(i): v for i, v in out["processes"].items()}
    return out


def _check_one_line(result: Dict[str, Any], row: Row) -> None:
    both = result["stdout"] + result["stderr"]
    assert result["code"] == 2, both
    err = result["stderr"].splitlines()
    assert len(err) == 1 and err[0].startswith("seglab: error: "), result["stderr"]
    assert row.fragment in err[0], err[0]
    assert "Traceback" not in both
    assert result["started"] == [], f"the row left {result['started']} under SEGLAB_HOME"


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.command}:{r.args}" for r in ROWS])
def test_bad_input_is_one_line_and_starts_nothing(row, matrix):
    if row.unless_root and IS_ROOT:
        pytest.skip("running as root, who can read a chmod-000 file")
    result = matrix["rows"][(row.command, row.args)]
    _check_one_line(result, row)
    assert not result["ray"], "Ray was initialised"


@pytest.mark.parametrize("index", [i for i, r in enumerate(ROWS) if r.process],
                         ids=[f"{r.command}:{r.args}" for r in ROWS if r.process])
def test_a_real_process_exits_2(index, matrix):
    result = matrix["processes"][index]
    _check_one_line(result, ROWS[index])
    assert result["stderr"] == matrix["rows"][(ROWS[index].command, ROWS[index].args)]["stderr"]


def test_no_ray_session_was_created(matrix):
    assert matrix["ray_sessions"] == []


@pytest.mark.parametrize("row", GOOD, ids=[r.args for r in GOOD])
def test_hydra_features_still_work(row, matrix):
    result = matrix["rows"][(row.command, row.args)]
    assert result["code"] == 0, result["stdout"] + result["stderr"]
    assert row.fragment in result["stdout"]
    assert result["stderr"] == "" and not result["ray"] and result["started"] == []


def test_the_readme_shows_the_matrix(matrix, folder):
    """README.md lists every row with the line it prints (regenerate: see the module docstring)."""
    have, want = readme_table_rows(), readme_rows(matrix, folder)
    stale = [line for line in have if line not in want] + [line for line in want if line not in have]
    assert have == want, ("README.md's table is out of date (run .venv/bin/python "
                          "tests/integration/test_user_errors.py --readme):\n" + "\n".join(stale[:6]))


def test_every_category_of_the_issue_has_rows():
    kinds = {r.kind.split(" (")[0] for r in ROWS}
    assert kinds >= {"wrong type", "out of range", "unknown name", "unknown key", "missing file", "unreadable file",
                     "empty data set", "label out of range", "checkpoint of another architecture",
                     "corrupt checkpoint", "pickled object in a checkpoint", "seglab command"}
    assert {r.command for r in ROWS} == {*SCRIPTS, "seglab"}


# ------------------------------------------------------------------------------------- as a script
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="the bad-input matrix's worker, or --readme to rewrite README.md")
    parser.add_argument("--worker", metavar="FOLDER", help="run rows.json of FOLDER in-process -> results.json")
    parser.add_argument("--readme", action="store_true", help="run the matrix and rewrite README.md's table")
    parser.add_argument("--show", action="store_true", help="run the matrix and print what each row printed")
    args = parser.parse_args(argv)
    if args.worker:
        folder = Path(args.worker)
        rows = [Row(**r) for r in json.loads((folder / "rows.json").read_text())]
        results = run_worker(folder, rows)
        (folder / "results.json").write_text(json.dumps(results))
        return 0
    if args.readme or args.show:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            matrix = run_matrix(folder)
            if args.readme:
                write_readme_table(readme_rows(matrix, folder))
            for (command, arguments), result in matrix["rows"].items():
                print(f"{result['code']} {result['seconds']:>5}s {command} {arguments}\n    "
                      f"{shown(result['stderr'].strip(), folder)[:300]}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
