"""OVeNet (paper 001) on the method extension point.

* runs: models ``ovenet_*`` and the ``ovenet`` loss; sweep dimensions ``kappa`` (loss.kappa),
  ``lam`` (loss.lam) and ``tau`` (model.tau);
* every validation also scores the initial head S_i (``val_miou_initial``), the seed prediction
  S_s (``val_miou_seed``), S_f when it is not the deployed map (``val_miou_final``), what the
  fusion adds (``val_miou_gain_over_initial`` = mIoU(S_f) − mIoU(S_i)) and the offset
  diagnostics ``val_offset_px``, ``val_confidence``, ``val_frac_changed``;
* picture: :func:`seglab.platform.methods.ovenet_panel.ovenet_panel`;
* comparison: κ, λ, τ columns, and for an ablation sweep a table shaped like paper Table 5.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor, nn

from seglab.platform.config import RunConfig
from seglab.platform.comm import all_reduce_sum
from seglab.platform.evaluation import EvalBatch, EvalContext, Evaluator, MeanEvaluator, PredictionEvaluator
from seglab.platform.methods import register_method
from seglab.platform.methods.base import Column, Method, SearchKey, Table, fmt, number


class OVeNetHeads(PredictionEvaluator):
    """S_i, S_s and S_f scored separately; S_f is logged as ``val_miou_final`` only when the model
    deploys another map (``model.inference_output``), since otherwise it is ``val_miou``."""

    def __init__(self, ctx: EvalContext) -> None:
        super().__init__(ctx, {"initial_logits": "val_miou_initial", "seed_logits": "val_miou_seed",
                               "final_logits": "val_miou_final"})
        self.final_is_main = torch.zeros(1, dtype=torch.float64, device=ctx.device)

    def process(self, batch: EvalBatch) -> None:
        super().process(batch)
        if batch.output.final_logits is not None and batch.output.final_logits is batch.output.logits:
            self.final_is_main += 1

    def all_reduce(self) -> None:
        super().all_reduce()
        all_reduce_sum(self.final_is_main)

    def metrics(self) -> Dict[str, float]:
        scores = self.scores()
        out = {self.maps[a]: v for a, v in scores.items()
               if not (a == "final_logits" and self.final_is_main.item() > 0)}
        if "initial_logits" in scores and "final_logits" in scores:
            out["val_miou_gain_over_initial"] = scores["final_logits"] - scores["initial_logits"]
        return out


def _offset_means(batch: EvalBatch):
    """Offset length (input px), confidence and fraction of pixels S_f changed, weighted by pixels."""
    from seglab.platform.methods.ovenet_panel import offset_diagnostics

    out = batch.output
    if out.offsets is None or out.confidence is None or out.initial_logits is None:
        return None
    final = out.final_logits if out.final_logits is not None else out.logits
    d = offset_diagnostics(out.offsets, out.confidence, out.initial_logits, final, tuple(batch.images.shape[-2:]))
    n = float(out.offsets.shape[0] * out.offsets.shape[-2] * out.offsets.shape[-1])
    return {"val_offset_px": d["mean_offset_px"], "val_confidence": d["mean_confidence"],
            "val_frac_changed": d["frac_changed"]}, n


class OVeNet(Method):
    name = "ovenet"
    model_prefixes = ("ovenet_",)
    loss_names = ("ovenet",)
    warm_start_key = "model.body_checkpoint"  # the body and main head; the offset branch starts fresh
    search_keys = {"kappa": SearchKey("loss.kappa", 0.0, True), "lam": SearchKey("loss.lam", 0.0, True),
                   "tau": SearchKey("model.tau", 0.0, False)}
    columns = (Column("κ", "kappa", param="loss.kappa"), Column("λ", "lam", param="loss.lam"),
               Column("τ", "tau", param="model.tau"))

    def tag(self, run: RunConfig) -> str:
        return self.name if self.owns(run) else super().tag(run)

    def describe(self, run: RunConfig) -> str:
        """``ovenet_hrnet_w18_small_v1 κ=0.5 λ=0.5 τ=0.5``."""
        parts = [run.model.name]
        for key, sym in (("kappa", "κ"), ("lam", "λ")):
            if key in run.loss.kwargs:
                parts.append(f"{sym}={fmt(run.loss.kwargs[key])}")
        if "tau" in run.model.kwargs:
            parts.append(f"τ={fmt(run.model.kwargs['tau'])}")
        return " ".join(parts)

    def evaluators(self, ctx: EvalContext) -> List[Evaluator]:
        if ctx.run is not None and not self.owns(ctx.run):
            return []
        return [OVeNetHeads(ctx), MeanEvaluator(ctx, ["val_offset_px", "val_confidence", "val_frac_changed"],
                                                _offset_means)]

    def draw(self, model: nn.Module, image: Tensor, label: Tensor, ctx: EvalContext) -> Optional[np.ndarray]:
        """Input, GT, S_i, S_s, S_f, offsets, confidence, fix/break (:func:`~seglab.platform.methods.ovenet_panel.ovenet_panel`)."""
        from seglab.platform.methods.ovenet_panel import ovenet_panel

        out = model(image.unsqueeze(0).to(ctx.device))
        if out.offsets is None:
            return None  # not an offset model (the sweep's baseline): nothing to draw
        final = out.final_logits if out.final_logits is not None else out.logits
        return ovenet_panel(image, label, out.initial_logits[0].cpu(), out.seed_logits[0].cpu(), final[0].cpu(),
                            out.offsets[0].cpu(), out.confidence[0].cpu(), ctx.palette,
                            ignore_index=ctx.ignore_index, mean=ctx.mean, std=ctx.std,
                            class_names=list(ctx.class_names) or None)

    def prediction_maps(self, out: Any, image_size: Any) -> Dict[str, np.ndarray]:
        """The offset field (:func:`~seglab.platform.viz.flowcolor.flow_to_color`, lengths in input
        pixels) and the fusion confidence F (viridis) of an offset model's output; none for others."""
        from seglab.platform.viz.flowcolor import confidence_to_color, flow_to_color

        if getattr(out, "offsets", None) is None:
            return {}
        H, W = (int(v) for v in image_size)
        o = out.offsets[0].detach().float().cpu().numpy()
        pixels = np.stack([o[0] * (W - 1) / 2.0, o[1] * (H - 1) / 2.0])
        maps = {"offsets": flow_to_color(pixels)}
        if out.confidence is not None:
            maps["confidence"] = confidence_to_color(out.confidence[0].detach().float().cpu().numpy())
        return maps

    def row_fields(self, params: Dict[str, str], metrics: Dict[str, float], tags: Dict[str, str]) -> Dict[str, Any]:
        """κ/λ/τ plus what the Table-5 ablation shows: the report-split scores of S_i and S_s of the
        same checkpoint as the row's S_f (``test_miou_initial`` / ``test_miou_seed``) and the switches."""
        out = super().row_fields(params, metrics, tags)
        out.update({
            "miou_initial": metrics.get("test_miou_initial"), "miou_seed": metrics.get("test_miou_seed"),
            "frozen": params.get("model.freeze_body") == "True", "branch": number(params.get("model.branch_stage")),
            "cascade": number(params.get("model.cascade_steps")), "loss_name": params.get("loss.name"),
            "criterion": params.get("loss.criterion") or params.get("loss.criterion.name"),
        })
        return out

    def tables(self, rows: List[Dict[str, Any]], sweep: Any) -> List[Table]:
        """The Table-5 ablation for a sweep of variants (``sweep`` None: the rows say whether it was one)."""
        ablation = getattr(sweep, "variants", None) is not None if sweep is not None else \
            any(r.get("sweep_variants") for r in rows)
        return [format_ablation_table(rows)] if ablation else []


def _uses_ohem(row: Dict[str, Any]) -> bool:
    return row.get("loss_name") == "ohem" or row.get("criterion") == "ohem"


def format_ablation_table(rows: List[Dict[str, Any]]) -> Table:
    """The ablation shaped like OVeNet's Table 5 (paper) / 5.11 (thesis): one row per variant with
    its switches (Fr = frozen body from the baseline's weights, Br = branch stage, τ, Ref = cascade
    steps, OHEM), the report-split mIoU of S_f with its interval, S_i and S_s of the same checkpoint,
    and the paired Δ vs the baseline, in the sweep's order (baseline first)."""
    header = ["variant", "Fr", "Br", "τ", "Ref", "OHEM", "mIoU", "S_i", "S_s", "Δ vs base", "seeds"]
    ordered = sorted(rows, key=lambda r: (not r["baseline"], r["label"]))
    body = []
    for r in ordered:
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        ovenet = not r["baseline"]
        est, delta = r.get("test_miou_est"), r.get("delta_est")
        body.append([
            r["label"] + (" (baseline)" if r["baseline"] else "")
            + (" (stopped early)" if r.get("stopped_early") else ""),
            "✓" if r.get("frozen") else "",
            f"{r['branch']:g}" if ovenet and r.get("branch") is not None else "",
            f"{r['tau']:g}" if ovenet and r.get("tau") is not None else "",
            f"{r['cascade']:g}" if ovenet and r.get("cascade") else "",
            "✓" if _uses_ohem(r) else "",
            "-" if est is None else est.format(scale=100), pct(r.get("miou_initial")), pct(r.get("miou_seed")),
            "-" if delta is None else delta.format(scale=100, signed=True), str(r.get("seeds", "-")),
        ])
    return Table(header, body, "mIoU = report-split mIoU of S_f at the checkpoint chosen on the selection split "
                               "(x100, mean ± 95 % t-interval over seeds; none for one seed or no variation across "
                               "seeds); S_i / S_s = the initial "
                               "and seed heads of that same checkpoint (mean over seeds); Δ vs base = "
                               "paired difference over shared seeds (points); Fr = body and first head "
                               "frozen at the baseline's trained weights.")


register_method(OVeNet())
