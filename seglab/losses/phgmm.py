"""PHGMM loss (paper 004, spec B2): L = lambda_g l_g + lambda_z l_z + lambda_s l_s (eq. 3, P:151).

Citations ``P:n`` are lines of ``004_533486a5ce90015b.txt``.

* l_g = KL(q(g|x) || N(0, I)) (eq. 4, P:157), closed form :func:`gaussian_kl_standard`.
* l_z = KL(q(z|x) || p_gamma(z|x, y)) between two K-component diagonal GMMs (eq. 6, P:167). It has no
  closed form and the paper does not say how it is computed; :func:`gmm_kl` gives the
  matched-component upper bound (``"bound"``, default) or a stratified Monte-Carlo estimate (``"mc"``).
* l_s = CE + soft IoU (eq. 7, P:171): pixel CE (times the paper's literal 1/C with
  ``ce_class_mean``) plus 1 - mean_c soft IoU_c per image (:func:`soft_iou_loss`).

Numerical safety: log-variances are clamped to ``[-LOGVAR_LIMIT, LOGVAR_LIMIT]`` (variances
e^-15..e^15; no gradient flows through a clamped value) and mixture weights to ``>= PI_MIN`` before
their logarithm; inside these ranges every function is exact.
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError, check
from seglab.losses import LossOutput, register_loss
from seglab.losses.ce import check_ignore_index, check_loss_weight, prepare_logits

if TYPE_CHECKING:
    from seglab.models.outputs import SegOutput

LOGVAR_LIMIT = 15.0
PI_MIN = 1e-8
KL_ESTIMATORS = ("bound", "mc")
_LOG_2PI = math.log(2.0 * math.pi)
_POSTERIOR_KEYS = ("post_pi", "post_mu", "post_logvar")


def _as_float(x: Tensor) -> Tensor:
    """Half / bfloat16 -> float32 (the KL terms are sums over hundreds of dimensions)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _clamp_logvar(logvar: Tensor) -> Tensor:
    return _as_float(logvar).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)


def _log_pi(pi: Tensor) -> Tensor:
    return _as_float(pi).clamp_min(PI_MIN).log()


def gaussian_kl_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) = 1/2 sum_d (mu^2 + sigma^2 - 1 - log sigma^2) (eq. 4, P:157).

    Args: ``mu``, ``logvar`` ``(B, D)``. Returns ``(B,)``.
    """
    mu, logvar = _as_float(mu), _clamp_logvar(logvar)
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, diag s_q^2) || N(mu_p, diag s_p^2)) summed over the last axis:
    1/2 sum_d [log(s_p^2 / s_q^2) + (s_q^2 + (mu_q - mu_p)^2) / s_p^2 - 1]. ``(..., D) -> (...)``."""
    logvar_q, logvar_p = _clamp_logvar(logvar_q), _clamp_logvar(logvar_p)
    diff2 = (_as_float(mu_q) - _as_float(mu_p)).square()
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + diff2) * torch.exp(-logvar_p) - 1.0).sum(dim=-1)


def _check_mixture_shapes(pi_q: Tensor, mu_q: Tensor, logvar_q: Tensor, pi_p: Tensor, mu_p: Tensor,
                          logvar_p: Tensor) -> None:
    if pi_q.dim() != 2 or mu_q.dim() != 3 or mu_q.shape[:2] != pi_q.shape or logvar_q.shape != mu_q.shape:
        raise ValueError(f"gmm_kl needs pi (B, K) and mu, logvar (B, K, D); got {tuple(pi_q.shape)}, "
                         f"{tuple(mu_q.shape)}, {tuple(logvar_q.shape)}")
    if pi_p.shape != pi_q.shape or mu_p.shape != mu_q.shape or logvar_p.shape != mu_q.shape:
        raise ValueError(f"gmm_kl: q and p must have the same shapes; got q {tuple(mu_q.shape)}, "
                         f"p pi {tuple(pi_p.shape)} mu {tuple(mu_p.shape)} logvar {tuple(logvar_p.shape)}")


def gmm_log_density(z: Tensor, log_pi: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log sum_j pi^j N(z; mu^j, diag e^logvar^j) for points ``z (B, ..., D)`` under a per-sample
    mixture ``log_pi (B, J)``, ``mu / logvar (B, J, D)``. Returns ``z.shape[:-1]``."""
    extra = z.dim() - 2  # axes between B and D
    view = (mu.shape[0],) + (1,) * extra + mu.shape[1:]
    diff2 = (z.unsqueeze(-2) - mu.view(view)).square()  # (B, ..., J, D)
    log_normal = -0.5 * (diff2 * torch.exp(-logvar.view(view)) + logvar.view(view) + _LOG_2PI).sum(dim=-1)
    return torch.logsumexp(log_pi.view((mu.shape[0],) + (1,) * extra + log_pi.shape[1:]) + log_normal, dim=-1)


def _gmm_kl_bound(pi_q: Tensor, mu_q: Tensor, logvar_q: Tensor, pi_p: Tensor, mu_p: Tensor,
                  logvar_p: Tensor) -> Tensor:
    """KL(pi || pi*) + sum_k pi^k KL(N_k || N*_k) (spec B2 (6a)): an upper bound of the GMM KL by the
    log-sum inequality (chain rule of KL on the joint of component and z)."""
    pi = _as_float(pi_q)
    kl_weights = (pi * (_log_pi(pi_q) - _log_pi(pi_p))).sum(dim=-1)
    return kl_weights + (pi * gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)).sum(dim=-1)


def _gmm_kl_mc(pi_q: Tensor, mu_q: Tensor, logvar_q: Tensor, pi_p: Tensor, mu_p: Tensor, logvar_p: Tensor,
               samples: int, generator: Optional[torch.Generator]) -> Tensor:
    """Stratified reparameterised Monte Carlo (spec B2 (6b)): z_{k,s} = mu^k + sigma^k eps,
    KL ~ sum_k pi^k (1/S) sum_s [log q(z_{k,s}) - log p(z_{k,s})]. Unbiased; pi gets exact gradients."""
    mu_q, mu_p = _as_float(mu_q), _as_float(mu_p)
    logvar_q, logvar_p = _clamp_logvar(logvar_q), _clamp_logvar(logvar_p)
    b, k, d = mu_q.shape
    eps = torch.randn((b, k, samples, d), generator=generator, device=mu_q.device, dtype=mu_q.dtype)
    z = mu_q.unsqueeze(2) + torch.exp(0.5 * logvar_q).unsqueeze(2) * eps  # (B, K, S, D)
    log_ratio = gmm_log_density(z, _log_pi(pi_q), mu_q, logvar_q) - gmm_log_density(z, _log_pi(pi_p), mu_p, logvar_p)
    return (_as_float(pi_q) * log_ratio.mean(dim=2)).sum(dim=-1)


def gmm_kl(pi_q: Tensor, mu_q: Tensor, logvar_q: Tensor, pi_p: Tensor, mu_p: Tensor, logvar_p: Tensor,
           estimator: str = "bound", samples: int = 1, generator: Optional[torch.Generator] = None) -> Tensor:
    """KL(q || p) between two diagonal GMMs, one per sample (l_z, eq. 6, P:167).

    Args:
        pi_q, pi_p: ``(B, K)`` mixture weights (probabilities, rows sum to 1).
        mu_q, logvar_q, mu_p, logvar_p: ``(B, K, D)`` component means and log-variances.
        estimator: ``"bound"`` (matched-component upper bound, deterministic; component k of q is
            paired with component k of p) or ``"mc"`` (stratified Monte Carlo, unbiased, stochastic).
        samples: S, draws per component for ``"mc"``.
        generator: optional ``torch.Generator`` for the ``"mc"`` draws.

    Returns: ``(B,)``. Both are exact for K = 1 and identical q, p (0); "bound" >= true KL.
    """
    _check_mixture_shapes(pi_q, mu_q, logvar_q, pi_p, mu_p, logvar_p)
    if estimator == "bound":
        return _gmm_kl_bound(pi_q, mu_q, logvar_q, pi_p, mu_p, logvar_p)
    if estimator == "mc":
        if not (isinstance(samples, int) and samples >= 1):
            raise ValueError(f"gmm_kl: samples must be an integer >= 1 (got {samples!r})")
        return _gmm_kl_mc(pi_q, mu_q, logvar_q, pi_p, mu_p, logvar_p, samples, generator)
    raise ValueError(f"gmm_kl: estimator must be one of {', '.join(KL_ESTIMATORS)} (got {estimator!r})")


def soft_iou_loss(probs: Tensor, one_hot: Tensor, valid_mask: Tensor, eps: float = 1.0) -> Tensor:
    """1 - mean_c soft IoU_c per image (eq. 7's second part, P:171; spec B2 (7) soft sets).

    I_c = sum_p y'_cp y_cp, U_c = sum_p (y'_cp + y_cp - y'_cp y_cp) over the valid pixels,
    IoU_c = (I_c + eps) / (U_c + eps), mean over all C classes.

    Args:
        probs: ``(B, C, H, W)`` predicted probabilities y'.
        one_hot: ``(B, C, H, W)`` one-hot labels y.
        valid_mask: ``(B, H, W)`` bool, False for void pixels (they count in no set).
        eps: smoothing of numerator and denominator (> 0).

    Returns: ``(B,)``.
    """
    mask = valid_mask.unsqueeze(1).to(probs.dtype)
    pred, target = probs * mask, one_hot.to(probs.dtype) * mask
    inter = (pred * target).sum(dim=(2, 3))
    union = (pred + target - pred * target).sum(dim=(2, 3))
    return 1.0 - ((inter + eps) / (union + eps)).mean(dim=1)


def _one_hot(target: Tensor, valid: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """``(B, H, W)`` ids -> ``(B, C, H, W)``; pixels where ``valid`` is False are all zero."""
    safe = torch.where(valid, target, torch.zeros_like(target))
    return F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(dtype) * valid.unsqueeze(1).to(dtype)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@register_loss("phgmm")
class PHGMMLoss(nn.Module):
    """The PHGMM objective L = lambda_g l_g + lambda_z l_z + lambda_s l_s (eq. 3, P:151; weights 1.1,
    0.4, 0.4 from P:207), computed per sample and **averaged** over the batch (the paper sums, P:153;
    the mean keeps the scale independent of the batch size; multiply by B to get the sum).

    Reads ``output.logits`` ``(B, C, h, w)`` (upsampled to the labels if needed) and
    ``output.latents`` (see :class:`~seglab.models.phgmm.PHGMM`): l_g from ``g_mu`` / ``g_logvar``
    (0 when the model has no global latent), l_z from q = (``pi``, ``mu``, ``logvar``) and the
    PostNet posterior p = (``post_pi``, ``post_mu``, ``post_logvar``), so the model must be called
    as ``model(images, targets)`` in training mode. With the loss in eval mode (``loss.eval()``) and
    no posterior, l_z is left out (validation loss) and ``kl_z`` is not reported.

    Args:
        lambda_g, lambda_z, lambda_s: weights (numbers >= 0).
        kl_z: ``"bound"`` (matched-component upper bound) or ``"mc"`` (Monte Carlo), see :func:`gmm_kl`.
        kl_samples: draws per component for ``"mc"``.
        ce_class_mean: multiply the pixel CE by the literal 1/C of eq. 7 (True, paper) or not.
        soft_iou_eps: smoothing eps of the soft IoU.
        ignore_index: void label id.

    Terms (batch means, unweighted): ``loss``, ``kl_g`` (l_g), ``kl_z`` (l_z), ``seg`` (l_s = ce +
    soft_iou), ``ce`` (the CE part of l_s, including 1/C when ``ce_class_mean``), ``soft_iou``.
    """

    def __init__(self, lambda_g: float = 1.1, lambda_z: float = 0.4, lambda_s: float = 0.4, kl_z: str = "bound",
                 kl_samples: int = 1, ce_class_mean: bool = True, soft_iou_eps: float = 1.0,
                 ignore_index: int = 255) -> None:
        super().__init__()
        self.lambda_g = check_loss_weight("lambda_g", lambda_g, 1.1)
        self.lambda_z = check_loss_weight("lambda_z", lambda_z, 0.4)
        self.lambda_s = check_loss_weight("lambda_s", lambda_s, 0.4)
        check(kl_z in KL_ESTIMATORS, f"loss.kl_z must be one of {', '.join(KL_ESTIMATORS)} (got {kl_z!r})")
        check(isinstance(kl_samples, int) and not isinstance(kl_samples, bool) and kl_samples >= 1,
              f"loss.kl_samples must be an integer >= 1 (got {kl_samples!r})")
        check(isinstance(ce_class_mean, bool), f"loss.ce_class_mean must be true or false (got {ce_class_mean!r})")
        check(_is_real(soft_iou_eps) and soft_iou_eps > 0,
              f"loss.soft_iou_eps must be a finite number > 0 (got {soft_iou_eps!r})")
        self.kl_z, self.kl_samples, self.ce_class_mean = kl_z, kl_samples, ce_class_mean
        self.soft_iou_eps = float(soft_iou_eps)
        self.ignore_index = check_ignore_index(ignore_index)

    def segmentation_terms(self, logits: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-sample ``(ce (B,), soft_iou (B,))`` of l_s (eq. 7); CE is the mean over the sample's
        valid pixels (times 1/C with ``ce_class_mean``)."""
        valid = target != self.ignore_index
        pixel_ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        ce = pixel_ce.sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1).to(pixel_ce.dtype)
        if self.ce_class_mean:
            ce = ce / logits.shape[1]
        one_hot = _one_hot(target, valid, logits.shape[1], logits.dtype)
        return ce, soft_iou_loss(torch.softmax(logits, dim=1), one_hot, valid, self.soft_iou_eps)

    def _kl_z(self, latents: Dict[str, Tensor]) -> Optional[Tensor]:
        if not all(k in latents for k in _POSTERIOR_KEYS):
            if self.training:
                raise ValueError("loss=phgmm needs PostNet latents (post_pi, post_mu, post_logvar): call "
                                 "model(images, targets) with the model in training mode")
            return None
        return gmm_kl(latents["pi"], latents["mu"], latents["logvar"], latents["post_pi"], latents["post_mu"],
                      latents["post_logvar"], estimator=self.kl_z, samples=self.kl_samples)

    def forward(self, output: "SegOutput", target: Tensor) -> LossOutput:
        latents = getattr(output, "latents", None)
        if not latents:
            raise ConfigError("loss=phgmm needs a model with latents (model=phgmm_*); model output has none")
        missing = [k for k in ("pi", "mu", "logvar") if k not in latents]
        check(not missing, f"loss=phgmm needs latents pi, mu, logvar (model=phgmm_*); missing {', '.join(missing)}")
        logits, target = prepare_logits(output.logits, target, self.ignore_index, check_labels=True)
        ce, soft_iou = self.segmentation_terms(logits, target)
        seg = ce + soft_iou
        kl_g = (gaussian_kl_standard(latents["g_mu"], latents["g_logvar"]) if "g_mu" in latents
                else torch.zeros_like(seg))
        kl_z = self._kl_z(latents)
        per_sample = self.lambda_g * kl_g + self.lambda_s * seg
        if kl_z is not None:
            per_sample = per_sample + self.lambda_z * kl_z
        total = per_sample.mean()
        terms = {"loss": total, "kl_g": kl_g.mean(), "seg": seg.mean(), "ce": ce.mean(), "soft_iou": soft_iou.mean()}
        if kl_z is not None:
            terms["kl_z"] = kl_z.mean()
        return LossOutput(total=total, terms={k: v.detach() for k, v in terms.items()})

    def extra_repr(self) -> str:
        return (f"lambda_g={self.lambda_g}, lambda_z={self.lambda_z}, lambda_s={self.lambda_s}, kl_z={self.kl_z}, "
                f"kl_samples={self.kl_samples}, ce_class_mean={self.ce_class_mean}, "
                f"soft_iou_eps={self.soft_iou_eps}, ignore_index={self.ignore_index}")
