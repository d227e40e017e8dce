"""PHGMM (paper 004) on the method extension point.

* runs: models ``phgmm_*`` and the ``phgmm`` loss; sweep dimension ``k`` (model.num_components,
  an integer >= 1) and the loss weights ``lambda_g``, ``lambda_z``, ``lambda_s``;
* every trial of a PHGMM sweep (baselines included) is scored on precision / recall (paper eq.
  9-10) and the trimap pixel error against the band width (paper Fig. 7);
* PHGMM trials also log, per validation, the latent clustering quality (silhouette SSI,
  Calinski-Harabasz CHI, Davies-Bouldin DBI of the component means over the validation images,
  labelled by component, in the 256-d space, scikit-learn's implementations; the images are taken
  in data-set index order, so the points do not depend on the number of workers), the KL terms on
  the validation set (``val_kl_z`` = ℓ_z with the run's estimator, ``loss.kl_z``: the
  matched-component bound or Monte Carlo, as in ``train_kl_z``; ``val_kl_g`` = ℓ_g) and a
  posterior-collapse probe (``val_kl_z_shuffled``: ℓ_z, same estimator, with PostNet given the
  labels of a different image -- the batch rolled by one, or at batch size 1 the previous batch's
  image; equal to ``val_kl_z`` when PostNet ignores the labels; images with no other image to pair
  with are not probed and counted in ``val_kl_z_shuffled_skipped``), with pictures of a 2-D PCA
  embedding of the component means and the mixture weights;
* comparison columns K, g, KL terms and the clustering indices.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from seglab.errors import check
from seglab.platform.config import RunConfig
from seglab.platform.comm import all_reduce_sum, gather_objects
from seglab.platform.evaluation import EvalBatch, EvalContext, Evaluator, ScoresEvaluator, TrimapEvaluator
from seglab.platform.methods import register_method
from seglab.platform.methods.base import Column, Method, SearchKey, fmt


POSTNET_INPUT = "postnet.backbone.conv1.weight"  # (64, in_chans + C, 7, 7): PostNet sees image + one-hot labels

Shard = Tuple[np.ndarray, np.ndarray, np.ndarray]  # data-set indices (N,), component means (N, K, D), pi (N, K)


def merge_by_index(shards: Sequence[Shard]) -> Shard:
    """The rows of every rank's shard ``(indices, means, pis)`` in data-set index order: the same
    arrays whatever the number of workers and whichever rank held which image."""
    shards = [s for s in shards if len(s[0])]
    if not shards:
        return np.zeros(0, np.int64), np.zeros((0, 0, 0), np.float32), np.zeros((0, 0), np.float32)
    indices = np.concatenate([s[0] for s in shards])
    order = np.argsort(indices, kind="stable")
    return (indices[order], np.concatenate([s[1] for s in shards])[order],
            np.concatenate([s[2] for s in shards])[order])


def kl_z_estimator(ctx: EvalContext) -> Tuple[str, int]:
    """The run's l_z estimator and Monte-Carlo draws per component: those of the run's loss
    (``ctx.criterion``) or, without it, of the run config (``loss.kl_z``, ``loss.kl_samples``;
    defaults ``"bound"``, 1)."""
    from seglab.losses import PHGMMLoss

    if isinstance(ctx.criterion, PHGMMLoss):
        return ctx.criterion.kl_z, ctx.criterion.kl_samples
    kwargs = ctx.run.loss.kwargs if ctx.run is not None and ctx.run.loss.name == "phgmm" else {}
    return str(kwargs.get("kl_z", "bound")), int(kwargs.get("kl_samples", 1))


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
    means, mean mixture weights, KL terms and the PostNet probe (see the module docstring).

    ``val_kl_z`` / ``val_kl_z_shuffled`` use the run's estimator (:func:`kl_z_estimator`); with
    ``"mc"`` the draws come from a generator seeded with ``trainer.seed`` at every validation, and
    each batch's probe reuses the draws of its ``val_kl_z`` (common random numbers).
    ``val_kl_z_shuffled`` pairs each image with the labels of a different image: the previous one in
    its batch, or for a batch of one the last image of the previous batch (same size); an image with
    none is not probed and counted in ``val_kl_z_shuffled_skipped`` (the metric is absent when no
    image was probed). The clustering points are ordered by data-set index before subsampling, so
    they do not depend on the number of workers.
    """

    def __init__(self, ctx: EvalContext, max_points: int = 4096) -> None:
        self.ctx, self.max_points = ctx, max_points
        self.estimator, self.samples = kl_z_estimator(ctx)
        self.generator: Optional[torch.Generator] = None
        if self.estimator == "mc":
            seed = int(ctx.run.trainer.seed) if ctx.run is not None else 0
            self.generator = torch.Generator(device=ctx.device).manual_seed(seed)
        self.indices: List[int] = []  # data-set index per image
        self.means: List[np.ndarray] = []  # (K, D) per image
        self.pis: List[np.ndarray] = []  # (K,) per image
        self.previous_labels: Optional[torch.Tensor] = None  # (1, H, W) of the last image seen
        # kl_z, kl_z with shuffled labels, kl_g, images, images with a global latent, images probed, not probed
        self.sums = torch.zeros(7, dtype=torch.float64, device=ctx.device)
        self.gathered_means = np.zeros((0, 0))
        self.gathered_pis = np.zeros((0, 0))

    def _kl_z(self, q, p) -> torch.Tensor:
        from seglab.losses import gmm_kl

        return gmm_kl(*q, *p, estimator=self.estimator, samples=self.samples, generator=self.generator)

    def _other_images_labels(self, labels: torch.Tensor) -> Optional[torch.Tensor]:
        """Labels of other images for the probe: the batch rolled by one, or for a batch of one the
        previous batch's last labels if they have the same size; None when there are none."""
        if labels.shape[0] > 1:
            return labels.roll(1, dims=0)
        previous = self.previous_labels
        return previous if previous is not None and previous.shape == labels.shape else None

    def process(self, batch: EvalBatch) -> None:
        from seglab.losses import gaussian_kl_standard

        latents = getattr(batch.output, "latents", None)
        if not latents:
            return
        q = (latents["pi"].float(), latents["mu"].float(), latents["logvar"].float())
        self.indices.extend(int(i) for i in batch.indices)
        self.means.extend(q[1].cpu().numpy())
        self.pis.extend(q[0].cpu().numpy())
        n = float(q[0].shape[0])
        has_g = "g_mu" in latents
        kl_g = gaussian_kl_standard(latents["g_mu"], latents["g_logvar"]).sum() if has_g else 0.0
        posterior = getattr(batch.model, "posterior", None)
        kl_z = kl_shuffled = torch.zeros(())
        probed = skipped = 0.0
        if posterior is not None:
            state = self.generator.get_state() if self.generator is not None else None
            kl_z = self._kl_z(q, posterior(batch.images, batch.labels)).sum()
            others = self._other_images_labels(batch.labels)
            if others is None:
                skipped = n
            else:
                if state is not None:
                    self.generator.set_state(state)
                kl_shuffled, probed = self._kl_z(q, posterior(batch.images, others)).sum(), n
            self.previous_labels = batch.labels[-1:].clone()
        self.sums += torch.tensor([float(kl_z), float(kl_shuffled), float(kl_g), n, n if has_g else 0.0, probed,
                                   skipped], dtype=torch.float64, device=self.sums.device)

    def all_reduce(self) -> None:
        all_reduce_sum(self.sums)
        means = np.stack(self.means) if self.means else np.zeros((0, 0, 0), np.float32)
        pis = np.stack(self.pis) if self.pis else np.zeros((0, 0), np.float32)
        _, self.gathered_means, self.gathered_pis = merge_by_index(
            gather_objects((np.asarray(self.indices, dtype=np.int64), means, pis)))

    def _points(self):
        """Component means as points labelled by component, at most ``max_points``: the images, in
        data-set index order, subsampled evenly (the same images whatever the number of workers)."""
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
        out = {"val_kl_z": self.sums[0].item() / n, "val_kl_z_shuffled_skipped": self.sums[6].item()}
        if self.sums[5] > 0:
            out["val_kl_z_shuffled"] = self.sums[1].item() / self.sums[5].item()
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
             "reported classes, KL z / KL g = ℓ_z, ℓ_g on the report split (ℓ_z with the run's estimator, loss.kl_z: "
             "bound or mc), all of the checkpoint chosen on the selection split, mean over seeds "
             "(KL z shuf.: PostNet given another image's labels; ≈ KL z means PostNet ignores them; absent when "
             "no image had another to pair with, see test_kl_z_shuffled_skipped); SSI/CHI higher, "
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
