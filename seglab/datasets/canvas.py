"""Drawing primitives of the street-scene renderer: a label+image canvas with sub-pixel polygons,
a pinhole camera, and fast noise fields (numpy + OpenCV)."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import cv2
import numpy as np

SHIFT = 4  # cv2 sub-pixel bits for polygon/ellipse vertices
ONE = float(1 << SHIFT)

def col(c: Any) -> Tuple[float, float, float]:
    return (float(c[0]), float(c[1]), float(c[2]))


def jitter(rng: np.random.Generator, base: Any, scale: Tuple[float, float], noise: float) -> np.ndarray:
    """``base`` colour times a random brightness plus independent per-channel noise."""
    c = np.asarray(base, dtype=np.float32) * rng.uniform(*scale) + rng.normal(0.0, noise, 3)
    return np.clip(c, 0, 255).astype(np.float32)


class Canvas:
    """The label map and the (float) image, drawn with the same geometry."""

    def __init__(self, h: int, w: int, background: int) -> None:
        self.h, self.w = h, w
        self.label = np.full((h, w), background, dtype=np.uint8)
        self.img = np.zeros((h, w, 3), dtype=np.float32)

    @staticmethod
    def _fix(pts: Any) -> np.ndarray:
        # Depths are >= 0.5 m and sizes < 100 m, so coordinates stay far inside int32 after the shift.
        return np.rint(np.asarray(pts, dtype=np.float64) * ONE).astype(np.int32)

    def fill(self, polys: Any, cls: int, colour: Any) -> None:
        """Fill polygons (``(N, k, 2)`` or ``(k, 2)`` image coordinates) in label and image."""
        p = self._fix(polys)
        if p.ndim == 2:
            p = p[None]
        cv2.fillPoly(self.label, p, int(cls), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.img, p, col(colour), cv2.LINE_8, SHIFT)

    def paint(self, polys: Any, colour: Any) -> None:
        """Fill polygons in the image only (markings, windows, details inside one class)."""
        p = self._fix(polys)
        if p.ndim == 2:
            p = p[None]
        if len(p):
            cv2.fillPoly(self.img, p, col(colour), cv2.LINE_8, SHIFT)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, cls: Optional[int], colour: Any) -> None:
        c = (int(round(cx * ONE)), int(round(cy * ONE)))
        ax = (max(int(round(rx * ONE)), 1), max(int(round(ry * ONE)), 1))
        if cls is not None:
            cv2.ellipse(self.label, c, ax, 0, 0, 360, int(cls), -1, cv2.LINE_8, SHIFT)
        cv2.ellipse(self.img, c, ax, 0, 0, 360, col(colour), -1, cv2.LINE_8, SHIFT)

    def vbar(self, xc: float, width: float, y0: float, y1: float, cls: int, colour: Any) -> None:
        """A vertical bar at least one pixel wide (thin poles would vanish as polygons)."""
        wpx = max(1, int(round(width)))
        x0 = int(np.floor(xc - wpx / 2.0 + 0.5))
        xa, xb = max(x0, 0), min(x0 + wpx, self.w)
        ya, yb = max(int(round(y0)), 0), min(int(round(y1)), self.h)
        if xa < xb and ya < yb:
            self.label[ya:yb, xa:xb] = cls
            self.img[ya:yb, xa:xb] = colour


class Camera:
    """Pinhole camera looking along the street: world (X right, height above road, Z forward)."""

    def __init__(self, f: float, xv: float, yv: float, cam_h: float) -> None:
        self.f, self.xv, self.yv, self.cam_h = f, xv, yv, cam_h

    def x(self, X: Any, Z: Any) -> Any:
        return self.xv + self.f * X / Z

    def y(self, height: Any, Z: Any) -> Any:
        return self.yv + self.f * (self.cam_h - height) / Z

    def ppm(self, Z: float) -> float:
        """Pixels per metre at depth ``Z``."""
        return self.f / Z

    @staticmethod
    def _quads(xs: Sequence[Any], ys: Sequence[Any]) -> np.ndarray:
        """Stack 4 corner x's and y's (scalars or broadcastable arrays) into ``(..., 4, 2)``."""
        if all(isinstance(v, float) for v in (*xs, *ys)):  # one quad: the common, fast case
            return np.array([[xs[0], ys[0]], [xs[1], ys[1]], [xs[2], ys[2]], [xs[3], ys[3]]])
        shape = np.broadcast_shapes(*(np.shape(v) for v in (*xs, *ys)))
        q = np.empty(shape + (4, 2), dtype=np.float64)
        for k in range(4):
            q[..., k, 0] = xs[k]
            q[..., k, 1] = ys[k]
        return q

    def quad_x(self, X: float, Za: Any, Zb: Any, ha: Any, hb: Any) -> np.ndarray:
        """Quads on the plane ``X = const`` spanning depth [Za, Zb] and height [ha, hb]."""
        xa, xb = self.x(X, Za), self.x(X, Zb)
        return self._quads((xa, xb, xb, xa), (self.y(ha, Za), self.y(ha, Zb), self.y(hb, Zb), self.y(hb, Za)))

    def quad_z(self, Z: float, Xa: Any, Xb: Any, ha: Any, hb: Any) -> np.ndarray:
        """Quads on the plane ``Z = const`` (facing the camera)."""
        xa, xb, ya, yb = self.x(Xa, Z), self.x(Xb, Z), self.y(ha, Z), self.y(hb, Z)
        return self._quads((xa, xb, xb, xa), (ya, ya, yb, yb))

    def ground(self, Xa: Any, Xb: Any, Za: Any, Zb: Any) -> np.ndarray:
        """Quads on the road plane spanning [Xa, Xb] x [Za, Zb]."""
        ya, yb = self.y(0.0, Za), self.y(0.0, Zb)
        return self._quads((self.x(Xa, Za), self.x(Xb, Za), self.x(Xb, Zb), self.x(Xa, Zb)), (ya, ya, yb, yb))


def visible(quads: np.ndarray, w: int, h: int, min_px: float = 0.7) -> np.ndarray:
    """Mask of quads that are at least ``min_px`` wide and high and overlap the image."""
    xs, ys = quads[..., 0], quads[..., 1]
    x0, x1, y0, y1 = xs.min(-1), xs.max(-1), ys.min(-1), ys.max(-1)
    return (x1 - x0 >= min_px) & (y1 - y0 >= min_px) & (x1 > 0) & (x0 < w) & (y1 > 0) & (y0 < h)


def gaussian_noise(rng: np.random.Generator, shape: Tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean noise of standard deviation ``sigma``, float32.

    Irwin-Hall approximation of a Gaussian (sum of 4 uniform bytes, standardised): drawing the raw
    bits is ~5x faster than ``Generator.standard_normal`` and indistinguishable for image noise.
    """
    n = int(np.prod(shape))
    raw = rng.bit_generator.random_raw((n + 1) // 2).view(np.uint8)[: 4 * n].reshape(4, n)
    s = raw[0].astype(np.uint16)
    s += raw[1]
    s += raw[2]
    s += raw[3]
    out = s.astype(np.float32)
    out -= np.float32(510.0)  # mean of the sum of 4 uniform 0..255
    out *= np.float32(sigma / 147.8)  # its standard deviation is sqrt(4 * (256**2 - 1) / 12)
    return out.reshape(shape)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    g = rng.standard_normal((max(2, h // cell + 2), max(2, w // cell + 2)), dtype=np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)
