"""SEMEDA (paper 002) on the method extension point.

* runs: the ``semeda`` loss and the ``sobel`` baseline loss, on any registered model; sweep
  dimensions ``lambda1..3`` (loss.lambda1..3); the PPCE baseline is the plain ``ce`` run;
* stage :class:`EdgeNetStage`: before the trials, the edge network g is pre-trained on one-hot
  ground-truth masks (eq. 7) once per data set and class set, cached by a content hash under the
  runs folder, logged as its own MLflow run, and handed to every SEMEDA run (``loss.edge_net``);
* every trial of a SEMEDA sweep (baselines included) is evaluated on the trimap (boundary-band
  and non-boundary mIoU vs band width), F1 / precision / recall, the E-measure and, on HELEN, the
  per-part F1; its picture shows input, ground truth, prediction, ground-truth edges, g's edges on
  the ground truth and on the prediction, the prediction's entropy and the boundary-band errors;
* comparison columns λ1 λ2 λ3, trimap mIoU at w = 2 and 10, F1 and E-measure.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError, check
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import EvalContext, Evaluator, ScoresEvaluator, TrimapEvaluator
from seglab.platform.methods import register_method
from seglab.platform.methods.base import Column, Method, SearchKey, Stage, StageContext, fmt

RESOURCE = "semeda.edge_nets"  # resources key: {edge-net key: path}
#: Stage-1 recipe (spec A3 [proposal]: Adam on random crops of the GT masks until edge F1 on
#: the val masks is >= 0.99); ``loss.edge_net`` may be a mapping overriding any of these.
EDGE_NET_RECIPE = {"steps": 600, "lr": 1e-2, "batch_size": 8, "crop": 128, "seed": 0, "target_f1": 0.99,
                   "max_rounds": 3, "val_samples": 64}
RECIPE_VERSION = 1  # bump when the stage's training changes: cached nets are then retrained


def _unresolved(edge_net: Any) -> bool:
    return edge_net is None or edge_net == "auto" or isinstance(edge_net, Mapping)


def edge_net_recipe(run: RunConfig) -> Dict[str, Any]:
    """The stage-1 recipe of a SEMEDA run: :data:`EDGE_NET_RECIPE` updated by a ``loss.edge_net`` mapping."""
    spec = run.loss.kwargs.get("edge_net", "auto")
    given = dict(spec) if isinstance(spec, Mapping) else {}
    unknown = sorted(set(given) - set(EDGE_NET_RECIPE))
    check(not unknown, f"loss.edge_net.{unknown[0] if unknown else ''} is not a pre-training option; allowed: "
                       f"{', '.join(EDGE_NET_RECIPE)}")
    recipe = {**EDGE_NET_RECIPE, **given}
    for key in ("steps", "batch_size", "crop", "max_rounds", "val_samples"):
        value = recipe[key]
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
              f"loss.edge_net.{key} must be an integer >= 1 (got {value!r})")
    check(isinstance(recipe["lr"], (int, float)) and recipe["lr"] > 0, f"loss.edge_net.lr must be > 0 (got {recipe['lr']!r})")
    check(0 < recipe["target_f1"] <= 1, f"loss.edge_net.target_f1 must be in (0, 1] (got {recipe['target_f1']!r})")
    return recipe


def edge_net_key(run: RunConfig) -> str:
    """Content hash of what defines an edge net: the data set's identity and training split
    options (hence its classes and masks), the recipe and :data:`RECIPE_VERSION`."""
    blob = json.dumps({"dataset": run.dataset.name, "common": run.dataset.common, "train": run.dataset.train,
                       "recipe": edge_net_recipe(run), "version": RECIPE_VERSION}, sort_keys=True, default=str)
    return f"{run.dataset.name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def _has_labels(ds: Any) -> bool:
    samples = getattr(ds, "samples", None)
    return samples is None or any(getattr(s, "label", None) is not None for s in samples)


# ------------------------------------------------------------------------------------- stage 1
def _label(ds: Any, index: int) -> Tensor:
    """A ground-truth mask (train ids): read alone from an on-disk data set (no image decoding),
    else the label of ``ds[index]``."""
    load_label = getattr(ds, "load_label", None)
    if load_label is not None:
        return torch.from_numpy(load_label(index).astype(np.int64))
    return torch.as_tensor(ds[index][1], dtype=torch.int64)


def _crop(label: Tensor, size: int, ignore_index: int, generator: torch.Generator) -> Tensor:
    """A random ``size x size`` crop (void-padded when the mask is smaller)."""
    h, w = label.shape
    if h < size or w < size:
        label = F.pad(label, (0, max(0, size - w), 0, max(0, size - h)), value=ignore_index)
        h, w = label.shape
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return label[top:top + size, left:left + size]


def _mask_batches(ds: Any, recipe: Dict[str, Any], ignore_index: int, seed: int):
    """Endless random batches of random crops of the labelled masks of ``ds``."""
    g = torch.Generator().manual_seed(seed)
    samples = getattr(ds, "samples", None)
    labelled = [i for i in range(len(ds)) if samples is None or samples[i].label is not None]
    while True:
        picks = torch.randint(0, len(labelled), (recipe["batch_size"],), generator=g).tolist()
        yield torch.stack([_crop(_label(ds, labelled[i]), recipe["crop"], ignore_index, g) for i in picks])


def train_edge_net(run_dict: Dict[str, Any], key: str, path: str, tracking_uri: str, experiment_id: str,
                   parent_run_id: str) -> Dict[str, Any]:
    """Stage 1 as one job (a Ray task on the cluster): pre-train g on the run's training masks until
    edge F1 on the validation masks reaches the recipe's target (at most ``max_rounds`` x ``steps``
    steps), save it atomically to ``path`` and log it as an MLflow run nested under the sweep.
    Returns the saved file's metadata."""
    from mlflow.entities import Metric

    from seglab.losses.semeda import edge_f1, pretrain_edge_net, save_edge_net
    from seglab.platform import tracking
    from seglab.platform.build import build_datasets
    from seglab.platform.viz.charts import curve
    from seglab.platform.quiet import quiet
    from seglab.platform.viz.panels import save_png

    quiet()
    run = RunConfig.from_dict(run_dict)
    recipe = edge_net_recipe(run)
    train, val = build_datasets(run.dataset)
    ignore_index = int(getattr(train, "ignore_index", 255))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    client = tracking.client(tracking_uri)
    mlrun = client.create_run(experiment_id, run_name=f"semeda edge net · {run.dataset.name}", tags={
        tracking.PARENT_TAG: parent_run_id, "seglab.kind": "stage", "seglab.stage": EdgeNetStage.name,
        "seglab.stage_key": key, "seglab.label": f"edge net {run.dataset.name}"})
    run_id = mlrun.info.run_id
    tracking.log_params(run_id, {**{f"recipe.{k}": v for k, v in recipe.items()}, "dataset": run.dataset.name,
                                 "num_classes": train.num_classes, "path": path}, tracking_uri)
    val_masks = [_label(val, i)[None] for i in range(min(len(val), recipe["val_samples"]))]
    history: List[float] = []
    t0, net, scores = time.perf_counter(), None, {"f1": 0.0}
    for round_ in range(recipe["max_rounds"]):
        seed = recipe["seed"] + round_
        net, losses = pretrain_edge_net(_mask_batches(train, recipe, ignore_index, seed), int(train.num_classes),
                                        ignore_index, steps=recipe["steps"] * (round_ + 1), lr=recipe["lr"],
                                        seed=recipe["seed"], device=device)
        history = losses
        scores = edge_f1(net, val_masks, ignore_index)
        print(f"[semeda edge net {run.dataset.name}] {len(losses)} steps: val edge F1 {scores['f1']:.4f} "
              f"(precision {scores['precision']:.4f}, recall {scores['recall']:.4f})", flush=True)
        if scores["f1"] >= recipe["target_f1"]:
            break
    assert net is not None
    if scores["f1"] < recipe["target_f1"]:
        print(f"warning: the SEMEDA edge net of {run.dataset.name} reached val edge F1 {scores['f1']:.4f} < "
              f"{recipe['target_f1']} after {len(history)} steps; raise loss.edge_net.steps", flush=True)
    meta = save_edge_net(path, net, {
        "num_classes": int(train.num_classes), "class_names": list(train.class_names), "ignore_index": ignore_index,
        "key": key, "dataset": run.dataset.name, "recipe": recipe, "f1": scores["f1"],
        "precision": scores["precision"], "recall": scores["recall"], "steps": len(history),
        "mlflow_run_id": run_id, "trained_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    now = int(time.time() * 1000)
    every = max(1, len(history) // 200)
    metrics = [Metric("edge_loss", v, now, i + 1) for i, v in enumerate(history) if (i + 1) % every == 0]
    metrics += [Metric(f"val_edge_{k}", float(scores[k]), now, len(history)) for k in ("f1", "precision", "recall")]
    metrics.append(Metric("train_time_s", time.perf_counter() - t0, now, 0))
    for i in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[i:i + 500])
    client.log_artifact(run_id, path, "edge_net")
    picture = curve(history, "step", "edge CE (eq. 7)", f"edge net {run.dataset.name}: val F1 {scores['f1']:.4f}",
                    log_y=True)
    curve_png = os.path.join(os.path.dirname(path), "edge_loss.png")
    save_png(curve_png, picture)
    client.log_artifact(run_id, curve_png)
    client.set_terminated(run_id, "FINISHED")
    return meta


class EdgeNetStage(Stage):
    """Pre-train (or reuse from the cache) one edge net per distinct (data set, recipe) of the
    sweep's SEMEDA runs whose ``loss.edge_net`` is ``auto`` or a recipe mapping."""

    name = "semeda.edge_net"

    def run(self, runs: List[RunConfig], ctx: StageContext) -> Dict[str, Any]:
        from seglab.losses.semeda import load_edge_net
        from seglab.platform import tracking

        todo: Dict[str, RunConfig] = {}
        for r in runs:
            if r.loss.name == "semeda" and _unresolved(r.loss.kwargs.get("edge_net", "auto")):
                todo.setdefault(edge_net_key(r), r)
        paths: Dict[str, str] = {}
        for key, r in todo.items():
            path = Path(ctx.cache_dir) / "semeda_edge_net" / key / "edge_net.pt"
            meta = None
            if path.is_file():
                try:
                    meta = load_edge_net(path)[1]
                    print(f"semeda: reusing the cached edge net of {r.dataset.name} ({path}; val edge F1 "
                          f"{meta.get('f1', float('nan')):.4f}, MLflow run {meta.get('mlflow_run_id')})", flush=True)
                except ConfigError as error:
                    print(f"semeda: retraining the edge net of {r.dataset.name}: {error}", flush=True)
            if meta is None:
                print(f"semeda: pre-training the edge net of {r.dataset.name} (stage 1) -> {path}", flush=True)
                args = (r.to_dict(), key, str(path), ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id)
                if ctx.inprocess:
                    meta = train_edge_net(*args)
                else:  # a Ray task: on a GPU node when the trials use GPUs
                    import ray

                    task = ray.remote(num_cpus=1, num_gpus=1 if ctx.use_gpu else 0, max_retries=1)(train_edge_net)
                    meta = ray.get(task.remote(*args))
            paths[key] = str(path)
            client = tracking.client(ctx.tracking_uri)
            client.set_tag(ctx.parent_run_id, f"semeda.edge_net.{key}", str(path))
            client.set_tag(ctx.parent_run_id, f"semeda.edge_net_run.{key}", str(meta.get("mlflow_run_id")))
        return {RESOURCE: paths}


# ------------------------------------------------------------------------------------- pictures
BAND_RIGHT, BAND_WRONG, OUTSIDE_WRONG = (0, 200, 0), (255, 0, 0), (110, 40, 40)


def semeda_panel(image: Tensor, target: Tensor, probs: Tensor, palette, ctx: EvalContext,
                 edges_gt_g: Optional[Tensor] = None, edges_pred_g: Optional[Tensor] = None,
                 band_width: int = 3) -> np.ndarray:
    """The 2 x 4 picture of one validation image: input | ground truth | prediction | GT edges (8-neighbour
    rule) / g's edge probability on the GT | g's on the prediction | entropy of the prediction (viridis,
    0 .. log C) | errors: green = right and red = wrong inside the band of ``band_width`` px around the GT
    edges, dark red = wrong outside it, white = void. ``probs (C, H, W)`` at the image size; g's maps
    ``(H, W)`` in [0, 1] or None (no edge net: grey tiles)."""
    from seglab.datasets.labels import colorize
    from seglab.metrics import band, semantic_edges
    from seglab.platform.viz.flowcolor import confidence_to_color
    from seglab.platform.viz.panels import compose_panel, denormalize

    H, W = target.shape
    pred = probs.argmax(0)
    valid = target != ctx.ignore_index
    edges = semantic_edges(target, ctx.ignore_index)
    in_band = band(edges, band_width) & valid
    gray = lambda m: np.repeat((m.clamp(0, 1).numpy() * 255).round().astype(np.uint8)[..., None], 3, axis=2)  # noqa: E731
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(0) / math.log(max(probs.shape[0], 2))
    errors = np.zeros((H, W, 3), dtype=np.uint8)
    wrong = (pred != target) & valid
    errors[(in_band & ~wrong).numpy()] = BAND_RIGHT
    errors[(in_band & wrong).numpy()] = BAND_WRONG
    errors[(~in_band & wrong).numpy()] = OUTSIDE_WRONG
    errors[(~valid).numpy()] = (255, 255, 255)
    acc = float((pred[valid] == target[valid]).float().mean()) if bool(valid.any()) else float("nan")
    band_acc = float((pred[in_band] == target[in_band]).float().mean()) if bool(in_band.any()) else float("nan")
    tiles = [(denormalize(image, ctx.mean, ctx.std), "input"),
             (colorize(target.numpy(), palette, ctx.ignore_index), "ground truth"),
             (colorize(pred.numpy(), palette, ctx.ignore_index), f"prediction acc {acc:.2f}"),
             (gray(edges.float()), "GT edges (8-neighbour)"),
             (None if edges_gt_g is None else gray(edges_gt_g), "g edges on GT"),
             (None if edges_pred_g is None else gray(edges_pred_g), "g edges on prediction"),
             (confidence_to_color(entropy.numpy()), f"entropy mean {float(entropy.mean()):.2f}"),
             (errors, f"band w={band_width} acc {band_acc:.2f}")]
    present = set(torch.unique(target).tolist()) | set(torch.unique(pred).tolist())
    return compose_panel(tiles, (H, W), 4, palette, list(ctx.class_names) or None, present, ctx.ignore_index)


# ------------------------------------------------------------------------------------- the method
class SEMEDA(Method):
    name = "semeda"
    loss_names = ("semeda", "sobel")
    search_keys = {"lambda1": SearchKey("loss.lambda1"), "lambda2": SearchKey("loss.lambda2"),
                   "lambda3": SearchKey("loss.lambda3")}
    columns = (Column("λ1", "lambda1", param="loss.lambda1"), Column("λ2", "lambda2", param="loss.lambda2"),
               Column("λ3", "lambda3", param="loss.lambda3"),
               Column("trimap w2", "trimap_w2", metric="test_trimap_miou_w2", fmt="miou", where="scores"),
               Column("trimap w10", "trimap_w10", metric="test_trimap_miou_w10", fmt="miou", where="scores"),
               Column("F1", "f1", metric="test_f1", fmt="miou", where="scores"),
               Column("E-meas.", "emeasure", metric="test_emeasure", fmt="miou", where="scores"))
    notes = ("trimap wN = report-split mIoU inside the N-px band around the ground-truth edges; F1, E-meas.: report "
             "split; all of the checkpoint chosen on the selection split, mean over seeds.")

    def __init__(self) -> None:
        self._nets: Dict[str, nn.Module] = {}  # edge nets loaded for pictures, by path

    def tag(self, run: RunConfig) -> str:
        return run.loss.name if self.owns(run) else super().tag(run)

    def describe(self, run: RunConfig) -> str:
        """``deeplabv3plus_r50 SEMEDA λ=(4,2,0)`` / ``deeplabv3plus_r50 Sobel λ1=1``."""
        kw = run.loss.kwargs
        if run.loss.name == "sobel":
            return f"{run.model.name} Sobel λ1={fmt(kw.get('lambda1', 1.0))}"
        lams = ",".join(fmt(kw.get(f"lambda{i}", d)) for i, d in ((1, 4.0), (2, 2.0), (3, 0.0)))
        return f"{run.model.name} SEMEDA λ=({lams})"

    def validate(self, run: RunConfig, summary: Any) -> None:
        from seglab.platform.build import build_datasets

        train, val = build_datasets(run.dataset)
        for role, ds in (("train", train), ("val", val)):
            check(_has_labels(ds), f"dataset.{role}.split={run.dataset.split_name(role)} of dataset "
                                   f"'{run.dataset.name}' has no labels: SEMEDA trains on ground-truth masks")
        if run.loss.name != "semeda":
            return
        spec = run.loss.kwargs.get("edge_net", "auto")
        if _unresolved(spec):
            edge_net_recipe(run)  # checks a recipe mapping
            return
        from seglab.losses.semeda import load_edge_net

        _, meta = load_edge_net(spec)
        trained = meta.get("class_names")
        if trained is not None and list(trained) != list(summary.class_names):
            raise ConfigError(f"loss.edge_net {spec} was trained for classes {list(trained)[:4]}... of "
                              f"'{meta.get('dataset', '?')}' but dataset '{run.dataset.name}' has "
                              f"{list(summary.class_names)[:4]}...; use loss.edge_net=auto")

    def stages(self) -> List[Stage]:
        return [EdgeNetStage()]

    def prepare_run(self, run: RunConfig, resources: Dict[str, Any]) -> RunConfig:
        if run.loss.name != "semeda" or not _unresolved(run.loss.kwargs.get("edge_net", "auto")):
            return run
        path = (resources.get(RESOURCE) or {}).get(edge_net_key(run))
        check(path is not None, f"loss.edge_net=auto: the sweep's SEMEDA stage produced no edge net for dataset "
                                f"'{run.dataset.name}'")
        d = run.to_dict()
        d["loss"]["edge_net"] = path
        return RunConfig.from_dict(d)

    def evaluators(self, ctx: EvalContext) -> List[Evaluator]:
        widths = ctx.run.trainer.trimap_widths if ctx.run is not None else (1, 2, 3, 5, 7, 10, 15, 20)
        return [TrimapEvaluator(ctx, widths), ScoresEvaluator(ctx)]

    def _edge_net(self, ctx: EvalContext) -> Optional[nn.Module]:
        """g of the run's loss, else the sweep's edge net for this data set (PPCE / Sobel rows)."""
        own = getattr(ctx.criterion, "edge_net", None)
        if isinstance(own, nn.Module):
            return own
        if ctx.run is None:
            return None
        path = (ctx.resources.get(RESOURCE) or {}).get(edge_net_key(ctx.run))
        if path is None or not os.path.isfile(path):
            return None
        if path not in self._nets:
            from seglab.losses.semeda import load_edge_net

            self._nets[path] = load_edge_net(path)[0].eval()
        return self._nets[path]

    @torch.no_grad()
    def draw(self, model: nn.Module, image: Tensor, label: Tensor, ctx: EvalContext) -> Optional[np.ndarray]:
        from seglab.losses.semeda import one_hot_masks

        out = model(image.unsqueeze(0).to(ctx.device))
        logits = F.interpolate(out.logits.float(), size=tuple(label.shape), mode="bilinear", align_corners=False)
        probs = logits.softmax(1)[0].cpu()
        label = label.long().cpu()
        g = self._edge_net(ctx)
        edges_gt = edges_pred = None
        if g is not None and getattr(g, "num_classes", probs.shape[0]) == probs.shape[0]:
            g = g.to("cpu")
            valid = (label != ctx.ignore_index).float()
            edges_pred = g(probs[None] * valid)[2][0, 1]
            edges_gt = g(one_hot_masks(label[None], probs.shape[0], ctx.ignore_index))[2][0, 1]
        return semeda_panel(image, label, probs, ctx.palette, ctx, edges_gt, edges_pred)


register_method(SEMEDA())
