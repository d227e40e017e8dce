"""The typed output every model returns."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, Optional, Union

from torch import Tensor


@dataclass
class SegOutput:
    """What ``model(images)`` returns. All maps are at ``1/output_stride`` of the input size.

    Attributes:
        logits: ``(B, C, H/s, W/s)`` the model's class logits, the map to predict from. For OVeNet:
            the fused S_f in training mode; in eval mode the map its ``inference_output`` names
            (S_f by default, or S_i / S_s).
        initial_logits: ``(B, C, H/s, W/s)`` OVeNet's first-head logits S_i.
        seed_logits: ``(B, C, H/s, W/s)`` OVeNet's seed-based logits S_s = S_i(p + o(p)).
        offsets: ``(B, 2, H/s, W/s)`` offset field o(p) in normalised image coordinates,
            channel 0 = x (width), channel 1 = y (height), in the convention of
            ``grid_sample(align_corners=True)``: -1 and +1 are the centres of the first and last
            pixel, so o(p) moves by ``o_x * (W/s - 1) / 2`` pixels right and ``o_y * (H/s - 1) / 2``
            pixels down. For OVeNet this is the field that resampled S_i (after any cascaded
            refinement), whatever its ``tau_mode``.
        confidence: ``(B, 1, H/s, W/s)`` fusion confidence F(p) in [0, 1].
        aux_logits: ``(B, C, H/s, W/s)`` auxiliary logits (e.g. OCR's soft object regions; for
            OVeNet on HRNet+OCR the fused ones, ``(1 - F) * initial_aux + F * seed_aux``).
        output_stride: s, the ratio of input size to map size.
        final_logits: ``(B, C, H/s, W/s)`` OVeNet's fused S_f, in every mode (the loss reads it).
        initial_aux_logits: ``(B, C, H/s, W/s)`` OVeNet on HRNet+OCR: the first head's soft
            object-region logits.
        seed_aux_logits: ``(B, C, H/s, W/s)`` OVeNet on HRNet+OCR: ``initial_aux_logits``
            resampled with the same offsets as S_s.
        latents: a dict of image-level latent tensors (not maps) for models with latent variables.
            PHGMM (:mod:`seglab.models.phgmm`): ``pi`` ``(B, K)`` mixture weights of q(z|x),
            ``mu`` / ``logvar`` ``(B, K, D)`` component means / log-variances; with the global
            latent also ``g_mu`` / ``g_logvar`` ``(B, D)``; when its PostNet ran (training mode with
            targets) also ``post_pi`` ``(B, K)``, ``post_mu`` / ``post_logvar`` ``(B, K, D)`` of
            p(z|x, y). ``None`` for models without latents.

    For OVeNet with ``resample="probs"`` every class map above holds log-probabilities
    ``log(max(P, eps))`` instead of logits (see :mod:`seglab.models.ovenet`).
    """

    logits: Tensor
    initial_logits: Optional[Tensor] = None
    seed_logits: Optional[Tensor] = None
    offsets: Optional[Tensor] = None
    confidence: Optional[Tensor] = None
    aux_logits: Optional[Tensor] = None
    output_stride: int = 4
    final_logits: Optional[Tensor] = None
    initial_aux_logits: Optional[Tensor] = None
    seed_aux_logits: Optional[Tensor] = None
    latents: Optional[Dict[str, Tensor]] = None

    def extras(self) -> Dict[str, Union[Tensor, Dict[str, Tensor]]]:
        """The named outputs that are set, besides ``logits``: tensors, and ``latents`` as its dict."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("logits", "output_stride") and getattr(self, f.name) is not None
        }
