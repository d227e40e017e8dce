"""Offset resampling ``x(p + o(p))`` with bilinear interpolation (OVeNet eq. 2)."""
from __future__ import annotations

import torch
from torch import Tensor


def resample(x: Tensor, offsets: Tensor) -> Tensor:
    """Sample ``x`` at ``p + o(p)`` for every pixel ``p``, bilinearly, clamped to the border.

    Convention (identical to ``F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
    align_corners=True)`` with ``grid = identity + offsets``): offsets are in normalised image
    coordinates where the centres of the first/last column (row) are at -1/+1, so ``o_x`` moves
    ``o_x * (W - 1) / 2`` pixels right and ``o_y`` moves ``o_y * (H - 1) / 2`` pixels down.
    Sample positions outside the image are clamped to the border pixels.

    Unlike ``grid_sample`` with a float identity grid, the sampling is done in pixel coordinates
    (integer base grid + offset in pixels, floor, 4-neighbour gather on the flattened ``H*W``),
    so a zero offset gives back ``x`` exactly, and an offset of a whole number of pixels
    (exactly representable) is an exact shift. Differentiable w.r.t. ``x`` and ``offsets``
    (w.r.t. ``offsets`` the gradient is zero where the position is clamped, as in grid_sample).

    Args:
        x: ``(B, C, H, W)`` maps to sample (e.g. the initial logits S_i).
        offsets: ``(B, 2, H, W)`` offset field; channel 0 = x (width), channel 1 = y (height).
    Returns:
        ``(B, C, H, W)`` with ``out[b, c, i, j] = x[b, c, i + o_y (H-1)/2, j + o_x (W-1)/2]``.
    """
    if x.dim() != 4 or offsets.dim() != 4 or offsets.shape[1] != 2:
        raise ValueError(f"resample expects x (B, C, H, W) and offsets (B, 2, H, W); got {tuple(x.shape)} "
                         f"and {tuple(offsets.shape)}")
    b, c, h, w = x.shape
    if offsets.shape[0] != b or offsets.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"offsets {tuple(offsets.shape)} do not match x {tuple(x.shape)} in batch or size")
    # Positions in pixels, at least float32 even for half-precision inputs.
    coord_dtype = torch.promote_types(offsets.dtype, torch.float32)
    offsets = offsets.to(coord_dtype)
    cols = torch.arange(w, device=x.device, dtype=coord_dtype).view(1, 1, w)
    rows = torch.arange(h, device=x.device, dtype=coord_dtype).view(1, h, 1)
    px = (cols + offsets[:, 0] * ((w - 1) / 2)).clamp(0, w - 1)  # (B, H, W)
    py = (rows + offsets[:, 1] * ((h - 1) / 2)).clamp(0, h - 1)
    x0 = px.detach().floor()
    y0 = py.detach().floor()
    wx = (px - x0).to(x.dtype).reshape(b, 1, h * w)  # in [0, 1)
    wy = (py - y0).to(x.dtype).reshape(b, 1, h * w)
    # Indices are clamped too so that a NaN offset gives NaN values instead of an index error.
    x0i = x0.long().clamp(0, w - 1)
    y0i = y0.long().clamp(0, h - 1)
    x1i = (x0i + 1).clamp(max=w - 1)
    y1i = (y0i + 1).clamp(max=h - 1)

    flat = x.reshape(b, c, h * w)

    def gather(yi: Tensor, xi: Tensor) -> Tensor:
        index = (yi * w + xi).reshape(b, 1, h * w).expand(b, c, h * w)
        return flat.gather(2, index)

    # lerp(a, b, t) = a + t * (b - a) for t < 0.5: exactly a at t = 0.
    top = torch.lerp(gather(y0i, x0i), gather(y0i, x1i), wx)
    bottom = torch.lerp(gather(y1i, x0i), gather(y1i, x1i), wx)
    return torch.lerp(top, bottom, wy).reshape(b, c, h, w)
