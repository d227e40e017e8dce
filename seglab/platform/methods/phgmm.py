"""PHGMM (paper 004) on the method extension point.

* runs: models ``phgmm_*`` and the ``phgmm`` loss; sweep dimension ``k`` (model.num_components,
  an integer >= 1) and the loss weights ``lambda_g``, ``lambda_z``, ``lambda_s``;
* every trial of a PHGMM sweep (baselines included) is scored on precision / recall (paper eq.
  9-10) and the trimap pixel error against the band width (paper Fig. 7);
* PHGMM trials also log, per validation, the latent clustering quality (silhouette SSI,
  Calinski-Harabasz CHI, Davies-Bouldin DBI of the component means over the validation images,
  labelled by component, in the 256-d space, scikit-learn's implementations), the KL terms on the
  validation set and a posterior-collapse probe (``val_kl_z_shuffled``: ℓ_z with the labels
  given to PostNet shuffled across the batch; equal to ``val_kl_z`` when PostNet ignores the
  labels), with pictures of a 2-D PCA embedding of the component means and the mixture weights;
* comparison columns K, g, KL terms and the clustering indices.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch

from seglab.errors import check
from seglab.platform.config import RunConfig
from seglab.platform.comm import all_reduce_sum, gather_objects
from seglab.platform.evaluation import EvalBatch, EvalContext, Evaluator, ScoresEvaluator, TrimapEvaluator
from seglab.platform.methods import register_method
from seglab.platform.methods.base import Column, Method, SearchKey, fmt


POSTNET_INPUT = "postnet.backbone.conv1.weight"  # (64, in_chans + C, 7, 7): PostNet sees image + one-hot labels


def _gather(array: np.ndarray) -> np.ndarray:
    """Concatenate ``array`` (rows) over the DDP ranks, in rank order (every rank gets all rows)."""
    parts = [p for p in gather_objects(array) if len(p)]
    return np.concatenate(parts, axis=0) if parts else array


def pca_2d(points: np.ndarray) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)``: projection on the two leading principal axes (centred, float64)."""
    x = points.astype(np.float64) - points.astype(np.float64).mean(0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


class LatentEvaluator(Evaluator):
    """The local latent space z over the validation set: clustering indices of the component
    means, mean mixture weights, KL terms and the PostNet probe (see the module docstring)."""

    def __init__(self, ctx: EvalContext, max_points: int = 4096) -> None:
        self.ctx, self.max_points = ctx, max_points
        self.means: List[np.ndarray] = []  # (K, D) per image
        self.pis: List[np.ndarray] = []  # (K,) per image
        # kl_z, kl_z with shuffled labels, kl_g, images, images with a global latent
        self.sums = torch.zeros(5, dtype=torch.float64, device=ctx.device)
        self.gathered_means = np.zeros((0, 0))
        self.gathered_pis = np.zeros((0, 0))

    def process(self, batch: EvalBatch) -> None:
        from seglab.losses import gaussian_kl_standard, gmm_kl

        latents = getattr(batch.output, "latents", None)
        if not latents:
            return
        pi, mu, logvar = latents["pi"].float(), latents["mu"].float(), latents["logvar"].float()
        self.means.extend(mu.cpu().numpy())
        self.pis.extend(pi.cpu().numpy())
        n = float(pi.shape[0])
        has_g = "g_mu" in latents
        kl_g = gaussian_kl_standard(latents["g_mu"], latents["g_logvar"]).sum() if has_g else 0.0
        posterior = getattr(batch.model, "posterior", None)
        kl_z = kl_shuffled = torch.zeros(())
        if posterior is not None:
            kl_z = gmm_kl(pi, mu, logvar, *posterior(batch.images, batch.labels)).sum()
            shuffled = batch.labels.roll(1, dims=0) if pi.shape[0] > 1 else batch.labels.flip(-1)
            kl_shuffled = gmm_kl(pi, mu, logvar, *posterior(batch.images, shuffled)).sum()
        self.sums += torch.tensor([float(kl_z), float(kl_shuffled), float(kl_g), n, n if has_g else 0.0],
                                  dtype=torch.float64, device=self.sums.device)

    def all_reduce(self) -> None:
        all_reduce_sum(self.sums)
        means = np.stack(self.means) if self.means else np.zeros((0, 0, 0), np.float32)
        pis = np.stack(self.pis) if self.pis else np.zeros((0, 0), np.float32)
        self.gathered_means, self.gathered_pis = _gather(means), _gather(pis)

    def _points(self):
        """Component means as points labelled by component, at most ``max_points`` (images subsampled)."""
        means = self.gathered_means
        if means.ndim != 3 or means.shape[0] == 0:
            return np.zeros((0, 1)), np.zeros(0, dtype=int)
        images, k, d = means.shape
        keep = np.linspace(0, images - 1, min(images, max(1, self.max_points // k))).round().astype(int)
        return means[keep].reshape(-1, d), np.tile(np.arange(k), len(keep))

    def metrics(self) -> Dict[str, float]:
        from seglab.metrics import clustering_indices

        if self.sums[3] <= 0:
            return {}
        n = self.sums[3].item()
        out = {"val_kl_z": self.sums[0].item() / n, "val_kl_z_shuffled": self.sums[1].item() / n}
        if self.sums[4] > 0:
            out["val_kl_g"] = self.sums[2].item() / self.sums[4].item()
        points, labels = self._points()
        scores = clustering_indices(points, labels)
        out.update({"val_ssi": scores["silhouette"], "val_chi": scores["calinski_harabasz"],
                    "val_dbi": scores["davies_bouldin"]})
        if self.gathered_pis.size:
            pi = self.gathered_pis.mean(0)
            out["val_pi_entropy"] = float(-(pi * np.log(np.clip(pi, 1e-12, None))).sum())
        return out

    def pictures(self) -> Dict[str, np.ndarray]:
        from seglab.platform.viz.charts import bar_chart, embedding_scatter

        points, labels = self._points()
        if len(points) < 2:
            return {}
        k = self.gathered_means.shape[1]
        names = [f"k={i}" for i in range(k)]
        return {
            "latents_pca": embedding_scatter(pca_2d(points), labels, names,
                                             "component means μ_z^k over val images (PCA), by component k"),
            "mixture_weights": bar_chart(self.gathered_pis.mean(0), names, "mean π^k over val images",
                                         "mixture weights", errors=self.gathered_pis.std(0)),
        }


class PHGMM(Method):
    name = "phgmm"
    model_prefixes = ("phgmm_",)
    loss_names = ("phgmm",)
    search_keys = {"k": SearchKey("model.num_components", 1.0, True, integer=True),
                   "lambda_g": SearchKey("loss.lambda_g"), "lambda_z": SearchKey("loss.lambda_z"),
                   "lambda_s": SearchKey("loss.lambda_s")}
    columns = (Column("K", "k", param="model.num_components"), Column("g", "use_global", param="model.use_global",
                                                                         fmt="text"),
               Column("prec.", "precision", metric="test_precision", fmt="miou", where="scores"),
               Column("recall", "recall", metric="test_recall", fmt="miou", where="scores"),
               Column("KL z", "kl_z", metric="test_kl_z", fmt="3g", where="scores"),
               Column("KL z shuf.", "kl_z_shuffled", metric="test_kl_z_shuffled", fmt="3g", where="scores"),
               Column("KL g", "kl_g", metric="test_kl_g", fmt="3g", where="scores"),
               Column("SSI", "ssi", metric="test_ssi", fmt="3g", where="scores"),
               Column("CHI", "chi", metric="test_chi", fmt="3g", where="scores"),
               Column("DBI", "dbi", metric="test_dbi", fmt="3g", where="scores"),
               Column("infer. params (M)", "params_inference", metric="params_inference_m", fmt="3g", where="scores"))
    notes = ("params (M) count PostNet, infer. params do not; prec./recall = report-split mean over the data set's "
             "reported classes, KL z / KL g = ℓ_z, ℓ_g on the report split, all of the checkpoint chosen on the "
             "selection split, mean over seeds "
             "(KL z shuf.: PostNet given shuffled labels; ≈ KL z means PostNet ignores them); SSI/CHI higher, "
             "DBI lower = better-separated components.")

    def tag(self, run: RunConfig) -> str:
        return self.name if self.owns(run) else super().tag(run)

    def describe(self, run: RunConfig) -> str:
        """``phgmm_r18 K=12 g=on``."""
        kw = run.model.kwargs
        return f"{run.model.name} K={fmt(kw.get('num_components', 12))} g={'on' if kw.get('use_global', True) else 'off'}"

    def validate(self, run: RunConfig, summary: Any) -> None:
        is_model = run.model.name.startswith(self.model_prefixes)
        check(run.loss.name != "phgmm" or is_model,
              f"loss=phgmm needs a model with latents (model=phgmm_r101, phgmm_r50 or phgmm_r18); "
              f"model.name={run.model.name} has none")
        check(run.loss.name == "phgmm" or not is_model,
              f"model={run.model.name} trains its PostNet through loss=phgmm only (loss.name={run.loss.name} "
              f"would leave it without gradient); set loss=phgmm")
        if is_model and run.model.pretrained:
            from seglab.models.pretrained import read_state_dict

            first = read_state_dict(run.model.pretrained).get(POSTNET_INPUT)
            seen = None if first is None else int(first.shape[1]) - int(run.model.kwargs.get("in_chans", 3))
            check(seen is None or seen == summary.num_classes,
                  f"model.pretrained {run.model.pretrained} is a PHGMM whose PostNet saw {seen} classes but dataset "
                  f"'{run.dataset.name}' has {summary.num_classes}; train it on this data set's classes")

    def evaluators(self, ctx: EvalContext) -> List[Evaluator]:
        widths = ctx.run.trainer.trimap_widths if ctx.run is not None else (1, 2, 3, 5, 10, 15, 20, 30, 40)
        out: List[Evaluator] = [TrimapEvaluator(ctx, widths), ScoresEvaluator(ctx, emeasure=False)]
        if ctx.run is None or self.owns(ctx.run):
            out.append(LatentEvaluator(ctx))
        return out

    def row_fields(self, params: Dict[str, str], metrics: Dict[str, float], tags: Dict[str, str]) -> Dict[str, Any]:
        out = super().row_fields(params, metrics, tags)
        if not tags.get("seglab.model", "").startswith(self.model_prefixes):
            out["k"] = out["use_global"] = None  # a baseline row: no latent space
        elif out.get("use_global") is not None:
            out["use_global"] = "on" if out["use_global"] == "True" else "off"
        return out


register_method(PHGMM())
