"""The street-scene renderer behind the ``synthetic`` data set (numpy + OpenCV, no torch).

:func:`render_street_scene` draws one image and its label map from a numpy Generator: a street
canyon seen by a pinhole camera (sizes in metres, projected), with the classes below. The data set
wrapper (splits, seeding, transforms) is :mod:`seglab.datasets.synthetic`.
"""
from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np

from seglab.datasets.canvas import SHIFT, Camera, Canvas, gaussian_noise, jitter, smooth_noise, visible
from seglab.datasets.labels import cityscapes_subset

CITYSCAPES_TRAIN_IDS: Tuple[int, ...] = (0, 1, 2, 5, 7, 8, 10, 11, 13)
"""Cityscapes train id of each synthetic label 0..8."""

CLASS_NAMES, PALETTE = cityscapes_subset(CITYSCAPES_TRAIN_IDS)
NUM_CLASSES = len(CITYSCAPES_TRAIN_IDS)
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR = range(NUM_CLASSES)

# ----------------------------------------------------------------------------------- rendering
# Texture strength per class (relative amplitude of a multi-scale noise field).
_TEXTURE = np.zeros(256, dtype=np.float32)
_TEXTURE[[ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR]] = (
    0.10, 0.09, 0.07, 0.04, 0.03, 0.32, 0.04, 0.05, 0.04)

_CAR_COLOURS = np.array([
    (225, 225, 222), (175, 176, 180), (115, 115, 118), (38, 38, 42), (30, 42, 88), (150, 28, 28),
    (45, 75, 155), (185, 172, 140), (42, 72, 52), (95, 60, 40), (200, 160, 40),
], dtype=np.float32)
_BUILDING_MATERIALS = np.array([
    (135, 135, 135), (190, 172, 138), (150, 82, 62), (212, 207, 198), (78, 74, 74),
    (176, 152, 150), (150, 168, 160), (165, 150, 120),
], dtype=np.float32)
_SKIN = np.array([(224, 184, 150), (190, 140, 100), (140, 95, 65), (95, 62, 45)], dtype=np.float32)
_CLOTHES = np.array([
    (30, 30, 35), (200, 200, 200), (160, 30, 40), (40, 60, 130), (60, 110, 60), (210, 180, 60),
    (120, 80, 50), (130, 130, 140), (220, 120, 40), (90, 40, 110),
], dtype=np.float32)
_SIGN_FACES = np.array([
    (30, 85, 175), (225, 225, 225), (230, 190, 30), (35, 125, 65), (200, 35, 35),
], dtype=np.float32)


def _windows(canvas: Canvas, cam: Camera, rng: np.random.Generator, base: np.ndarray,
             sky_colour: np.ndarray, quads: np.ndarray) -> None:
    """Paint window quads in two shades (dark interior / sky reflection)."""
    quads = quads.reshape(-1, 4, 2)
    quads = quads[visible(quads, canvas.w, canvas.h)]
    if not len(quads):
        return
    dark = base * rng.uniform(0.25, 0.55)
    refl = sky_colour * rng.uniform(0.55, 0.85)
    pick = rng.random(len(quads)) < rng.uniform(0.15, 0.85)
    canvas.paint(quads[pick], dark)
    canvas.paint(quads[~pick], refl)


def _window_grid(rng: np.random.Generator, start: float, end: float, height: float):
    """Window rows/columns of a wall spanning [start, end] (metres along it) and ``height``:
    (column starts, window width, row bottoms, window height), or None when no window fits."""
    floor_h, col_w = rng.uniform(2.8, 3.6), rng.uniform(1.8, 3.5)
    n_f, n_c = int((height - 1.0) // floor_h), int((end - start) // col_w)
    if n_f <= 0 or n_c <= 0:
        return None
    wh, ww = floor_h * rng.uniform(0.35, 0.6), col_w * rng.uniform(0.35, 0.7)
    rows = 1.2 + np.arange(n_f) * floor_h
    cols = start + (end - start - n_c * col_w) / 2 + np.arange(n_c) * col_w + (col_w - ww) / 2
    return cols, ww, rows, wh


def _facade(canvas: Canvas, cam: Camera, rng: np.random.Generator, X: float, Z0: float, Z1: float,
            height: float, sky_colour: np.ndarray) -> None:
    base = jitter(rng, _BUILDING_MATERIALS[rng.integers(len(_BUILDING_MATERIALS))], (0.75, 1.15), 10)
    canvas.fill(cam.quad_x(X, Z0, Z1, 0.0, height), BUILDING, base)
    if rng.random() < 0.2:  # darker ground floor (shops)
        canvas.paint(cam.quad_x(X, Z0, Z1, 0.0, min(height, rng.uniform(2.5, 4.0))), base * 0.7)
    if rng.random() < 0.9:
        grid = _window_grid(rng, Z0, Z1, height)
        if grid is not None:
            za, ww, hb, wh = grid
            quads = cam.quad_x(X, za[None, :], za[None, :] + ww, hb[:, None], hb[:, None] + wh)
            _windows(canvas, cam, rng, base, sky_colour, quads)


def _end_building(canvas: Canvas, cam: Camera, rng: np.random.Generator, Z: float, Xl: float,
                  Xr: float, height: float, sky_colour: np.ndarray) -> None:
    base = jitter(rng, _BUILDING_MATERIALS[rng.integers(len(_BUILDING_MATERIALS))], (0.75, 1.15), 10)
    canvas.fill(cam.quad_z(Z, Xl, Xr, 0.0, height), BUILDING, base)
    grid = _window_grid(rng, Xl, Xr, height)
    if grid is not None:
        xa, ww, hb, wh = grid
        quads = cam.quad_z(Z, xa[None, :], xa[None, :] + ww, hb[:, None], hb[:, None] + wh)
        _windows(canvas, cam, rng, base, sky_colour, quads)


def _tree(canvas: Canvas, cam: Camera, rng: np.random.Generator, X: float, Z: float) -> None:
    ppm = cam.ppm(Z)
    trunk_h = rng.uniform(1.8, 3.2)
    radius = rng.uniform(1.3, 2.6)
    trunk = jitter(rng, (85, 68, 50), (0.7, 1.2), 8)
    canvas.fill(cam.quad_z(Z, X - 0.14, X + 0.14, 0.0, trunk_h + radius * 0.5), VEGETATION, trunk)
    green = jitter(rng, (78, 112, 42), (0.65, 1.3), 12)
    cy = trunk_h + radius * 0.9
    for _ in range(int(rng.integers(3, 6))):
        dx, dy = rng.uniform(-0.5, 0.5, 2) * radius
        r = radius * rng.uniform(0.55, 0.85)
        shade = green * rng.uniform(0.8, 1.15)
        canvas.ellipse(cam.x(X + dx, Z), cam.y(cy + dy, Z), r * ppm * rng.uniform(0.85, 1.15),
                       r * ppm * rng.uniform(0.8, 1.0), VEGETATION, np.clip(shade, 0, 255))


def _hedge(canvas: Canvas, cam: Camera, rng: np.random.Generator, X: float, Z0: float, Z1: float) -> None:
    green = jitter(rng, (70, 105, 40), (0.65, 1.25), 10)
    canvas.fill(cam.quad_x(X, Z0, Z1, 0.0, rng.uniform(0.6, 1.3)), VEGETATION, green)


def _pole(canvas: Canvas, cam: Camera, rng: np.random.Generator, X: float, Z: float, towards: float,
          sign_prob: float) -> None:
    ppm = cam.ppm(Z)
    lamp = rng.random() < 0.3
    height = rng.uniform(5.5, 8.0) if lamp else rng.uniform(2.8, 4.5)
    tone = rng.random()  # dark, grey or light paint
    metal = jitter(rng, (55, 58, 55) if tone < 0.5 else (135, 135, 138) if tone < 0.8 else (205, 205, 200),
                    (0.8, 1.15), 8)
    width = float(np.clip(rng.uniform(0.12, 0.2) * ppm, 1.0, 3.0 * canvas.h / 128.0))
    xc = float(cam.x(X, Z))
    canvas.vbar(xc, width, float(cam.y(height, Z)), float(cam.y(0.0, Z)), POLE, metal)
    if lamp:  # arm over the road and a lamp head
        arm = rng.uniform(0.8, 1.8) * towards
        t = 0.12
        canvas.fill(cam.quad_z(Z, min(X, X + arm), max(X, X + arm), height - t, height), POLE, metal)
        canvas.fill(cam.quad_z(Z, X + arm - 0.3 * towards, X + arm + 0.05 * towards, height - 0.3, height - t + 0.01),
                    POLE, metal * 0.8)
    if rng.random() < sign_prob:
        size = rng.uniform(0.5, 0.85)
        hc = min(height - size * 0.6, rng.uniform(2.0, 3.0)) if not lamp else rng.uniform(2.2, 3.2)
        cx, cy, r = xc, float(cam.y(hc, Z)), size * ppm / 2
        if r < 0.9:  # at least ~2 px across
            r = 0.9
        face = jitter(rng, _SIGN_FACES[rng.integers(len(_SIGN_FACES))], (0.85, 1.1), 8)
        shape = rng.integers(4)
        if shape == 0:  # round sign, red rim
            canvas.ellipse(cx, cy, r, r, SIGN, jitter(rng, (200, 30, 35), (0.85, 1.1), 8))
            canvas.ellipse(cx, cy, r * 0.72, r * 0.72, None, face)
        elif shape == 1:  # rectangle
            aspect = rng.uniform(0.6, 1.6)
            pts = [(cx - r * aspect, cy - r), (cx + r * aspect, cy - r), (cx + r * aspect, cy + r),
                   (cx - r * aspect, cy + r)]
            canvas.fill(np.array(pts), SIGN, face)
        elif shape == 2:  # triangle, red rim
            tri = np.array([(cx, cy - r * 1.1), (cx + r * 1.05, cy + r * 0.75), (cx - r * 1.05, cy + r * 0.75)])
            canvas.fill(tri, SIGN, jitter(rng, (200, 30, 35), (0.85, 1.1), 8))
            inner = (tri - (cx, cy)) * 0.6 + (cx, cy + r * 0.1)
            canvas.paint(inner, (230, 230, 230))
        else:  # diamond
            canvas.fill(np.array([(cx, cy - r * 1.1), (cx + r * 1.1, cy), (cx, cy + r * 1.1), (cx - r * 1.1, cy)]),
                        SIGN, face)


def _person(canvas: Canvas, cam: Camera, rng: np.random.Generator, X: float, Z: float) -> None:
    ppm = cam.ppm(Z)
    height = rng.uniform(1.55, 1.95)
    skin = jitter(rng, _SKIN[rng.integers(len(_SKIN))], (0.9, 1.1), 6)
    shirt = jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))], (0.8, 1.15), 10)
    trousers = jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))], (0.6, 1.0), 8)
    leg_top = height * 0.5
    stride = rng.uniform(0.0, 0.25)
    for side in (-1, 1):  # legs
        foot = X + side * (0.08 + stride)
        hip = X + side * 0.1
        w = 0.075
        pts = [(cam.x(hip - w, Z), cam.y(leg_top, Z)), (cam.x(hip + w, Z), cam.y(leg_top, Z)),
               (cam.x(foot + w, Z), cam.y(0.0, Z)), (cam.x(foot - w, Z), cam.y(0.0, Z))]
        canvas.fill(np.array(pts), PERSON, trousers)
    sh = height * 0.82  # shoulders
    hw = rng.uniform(0.19, 0.25)
    torso = [(cam.x(X - hw, Z), cam.y(sh, Z)), (cam.x(X + hw, Z), cam.y(sh, Z)),
             (cam.x(X + hw * 0.85, Z), cam.y(leg_top - 0.05, Z)), (cam.x(X - hw * 0.85, Z), cam.y(leg_top - 0.05, Z))]
    canvas.fill(np.array(torso), PERSON, shirt)
    for side in (-1, 1):  # arms
        sway = rng.uniform(-0.1, 0.15)
        a0, a1 = X + side * hw, X + side * (hw + 0.05 + sway)
        pts = [(cam.x(a0 - 0.05, Z), cam.y(sh, Z)), (cam.x(a0 + 0.05, Z), cam.y(sh, Z)),
               (cam.x(a1 + 0.05, Z), cam.y(sh - 0.62, Z)), (cam.x(a1 - 0.05, Z), cam.y(sh - 0.62, Z))]
        canvas.fill(np.array(pts), PERSON, shirt * 0.9)
    head_r = 0.11
    canvas.ellipse(cam.x(X, Z), cam.y(height - head_r * 1.15, Z), head_r * ppm, head_r * 1.2 * ppm, PERSON, skin)
    if rng.random() < 0.6:  # hair
        hair = jitter(rng, (45, 35, 28), (0.6, 2.2), 8)
        canvas.ellipse(cam.x(X, Z), cam.y(height - head_r * 0.6, Z), head_r * 1.02 * ppm, head_r * 0.6 * ppm,
                       PERSON, hair)


def _car(canvas: Canvas, cam: Camera, rng: np.random.Generator, X: float, Z: float) -> None:
    """A car whose near (rear or front) face is at depth ``Z``, centred at ``X``."""
    width = rng.uniform(1.65, 2.0)
    length = rng.uniform(3.8, 4.8)
    body_h = rng.uniform(0.75, 0.95)
    roof_h = body_h + rng.uniform(0.5, 0.75)
    paint = jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], (0.85, 1.12), 10)
    glass = jitter(rng, (40, 48, 58), (0.7, 1.6), 8)
    tyre = jitter(rng, (25, 25, 27), (0.8, 1.3), 4)
    xl, xr = X - width / 2, X + width / 2
    clearance = 0.18
    # Side face visible from the camera (the side nearer to X = 0).
    if abs(X) > width / 2:
        xs = xl if X > 0 else xr
        canvas.fill(cam.quad_x(xs, Z, Z + length, clearance, body_h), CAR, paint * 0.85)
        inset = 0.18 if X > 0 else -0.18
        side_cabin = np.array([
            (cam.x(xs, Z + 0.2), cam.y(body_h, Z + 0.2)),
            (cam.x(xs, Z + length - 0.9), cam.y(body_h, Z + length - 0.9)),
            (cam.x(xs + inset, Z + length - 1.5), cam.y(roof_h, Z + length - 1.5)),
            (cam.x(xs + inset, Z + 0.7), cam.y(roof_h, Z + 0.7))])
        canvas.fill(side_cabin, CAR, paint * 0.8)
        canvas.paint(np.array([
            (cam.x(xs, Z + 0.45), cam.y(body_h + 0.05, Z + 0.45)),
            (cam.x(xs, Z + length - 1.05), cam.y(body_h + 0.05, Z + length - 1.05)),
            (cam.x(xs + inset, Z + length - 1.55), cam.y(roof_h - 0.08, Z + length - 1.55)),
            (cam.x(xs + inset, Z + 0.8), cam.y(roof_h - 0.08, Z + 0.8))]), glass)
        for zw in (Z + 0.75, Z + length - 0.8):  # wheels on the side
            ppm = cam.ppm(zw)
            canvas.ellipse(cam.x(xs, zw), cam.y(0.32, zw), 0.33 * ppm * abs(xs) / max(zw, 1.0) + 0.18 * ppm,
                           0.33 * ppm, CAR, tyre)
    # Near face: wheels peeking out below, body with rounded lower corners, cabin, window, lights.
    for xw in (xl + 0.12, xr - 0.37):
        canvas.fill(cam.quad_z(Z + 0.3, xw, xw + 0.25, 0.0, 0.4), CAR, tyre)
    r = 0.12
    body = np.array([
        (cam.x(xl, Z), cam.y(body_h, Z)), (cam.x(xr, Z), cam.y(body_h, Z)),
        (cam.x(xr, Z), cam.y(clearance + r, Z)), (cam.x(xr - r, Z), cam.y(clearance, Z)),
        (cam.x(xl + r, Z), cam.y(clearance, Z)), (cam.x(xl, Z), cam.y(clearance + r, Z))])
    canvas.fill(body, CAR, paint)
    ci = rng.uniform(0.12, 0.22)
    cabin = np.array([
        (cam.x(xl + 0.05, Z + 0.3), cam.y(body_h, Z + 0.3)),
        (cam.x(xr - 0.05, Z + 0.3), cam.y(body_h, Z + 0.3)),
        (cam.x(xr - ci, Z + 0.6), cam.y(roof_h - 0.06, Z + 0.6)),
        (cam.x(xr - ci - 0.08, Z + 0.6), cam.y(roof_h, Z + 0.6)),
        (cam.x(xl + ci + 0.08, Z + 0.6), cam.y(roof_h, Z + 0.6)),
        (cam.x(xl + ci, Z + 0.6), cam.y(roof_h - 0.06, Z + 0.6))])
    canvas.fill(cabin, CAR, paint * 0.95)
    canvas.paint(np.array([
        (cam.x(xl + 0.15, Z + 0.32), cam.y(body_h + 0.06, Z + 0.32)),
        (cam.x(xr - 0.15, Z + 0.32), cam.y(body_h + 0.06, Z + 0.32)),
        (cam.x(xr - ci - 0.06, Z + 0.58), cam.y(roof_h - 0.1, Z + 0.58)),
        (cam.x(xl + ci + 0.06, Z + 0.58), cam.y(roof_h - 0.1, Z + 0.58))]), glass)
    light = (210, 30, 30) if rng.random() < 0.6 else (235, 230, 200)
    for x0 in (xl + 0.06, xr - 0.3):
        canvas.paint(cam.quad_z(Z, x0, x0 + 0.24, body_h - 0.25, body_h - 0.1), light)
    canvas.paint(cam.quad_z(Z, X - 0.26, X + 0.26, clearance + 0.22, clearance + 0.34), (200, 200, 190))  # plate
    canvas.paint(cam.quad_z(Z, xl + 0.02, xr - 0.02, clearance, clearance + 0.12), paint * 0.45)  # bumper shade


def _sky(cv: Canvas, cam: Camera, rng: np.random.Generator, H: int) -> np.ndarray:
    """A vertical gradient (clear / overcast / dusk); returns the sky's mean colour (for reflections)."""
    kind = rng.random()
    if kind < 0.5:
        top, bot = (62, 112, 185), (160, 188, 220)
    elif kind < 0.85:
        top, bot = (165, 170, 180), (205, 208, 212)
    else:
        top, bot = (85, 95, 150), (225, 175, 140)
    top, bot = jitter(rng, top, (0.85, 1.1), 8), jitter(rng, bot, (0.9, 1.1), 8)
    t = np.clip(np.arange(H, dtype=np.float32) / max(cam.yv, 1.0), 0, 1)[:, None]
    cv.img[:] = (top[None, :] * (1 - t) + bot[None, :] * t)[:, None, :]
    return (top + bot) / 2


def _street(cv: Canvas, cam: Camera, rng: np.random.Generator, W: int, H: int, z_near: float, z_far: float
            ) -> Tuple[float, float, float, float]:
    """Road and sidewalks, kerbs, paving joints, lane markings, a zebra crossing (image only: they keep
    their class). Returns the cross-section ``(a, b, sw_l, sw_r)`` in metres (camera at X = 0)."""
    a = rng.uniform(1.5, 5.0)  # road left of the camera
    b = rng.uniform(2.5, 7.0)  # road right of the camera
    sw_l, sw_r = rng.uniform(1.8, 5.0), rng.uniform(1.8, 5.0)
    XL, XR = -a - sw_l, b + sw_r  # facade planes
    road = jitter(rng, (95, 94, 100), (0.65, 1.3), 6)
    side_base = (150, 148, 145) if rng.random() < 0.7 else (165, 130, 115)
    sidewalk = jitter(rng, side_base, (0.7, 1.15), 8)
    cv.fill(cam.ground(XL - 50.0, XR + 50.0, z_near, z_far), SIDEWALK, sidewalk)
    cv.fill(cam.ground(-a, b, z_near, z_far), ROAD, road)
    kerb = np.clip(sidewalk * rng.uniform(1.05, 1.3), 0, 255)
    cv.paint(np.concatenate([cam.ground(-a - 0.18, -a, z_near, z_far), cam.ground(b, b + 0.18, z_near, z_far)]), kerb)
    if rng.random() < 0.6:
        step = rng.uniform(1.0, 2.0)
        zs = np.arange(z_near + rng.uniform(0, step), 60.0, step)
        joints = np.concatenate([cam.ground(XL, -a - 0.18, zs, zs + 0.06), cam.ground(b + 0.18, XR, zs, zs + 0.06)])
        cv.paint(joints[visible(joints, W, H, 0.3)], sidewalk * rng.uniform(0.7, 0.85))
    paint_white = jitter(rng, (215, 215, 205) if rng.random() < 0.8 else (215, 185, 70), (0.85, 1.05), 6)
    if a + b > 5.0 and rng.random() < 0.8:
        xm = rng.uniform(-a + 2.2, b - 2.2)
        period, dash = rng.uniform(6.0, 12.0), rng.uniform(2.0, 4.0)
        zs = np.arange(z_near + rng.uniform(0, period), 150.0, period)
        cv.paint(cam.ground(xm - 0.07, xm + 0.07, zs, zs + dash), paint_white)
    if rng.random() < 0.4:
        cv.paint(np.concatenate([cam.ground(-a + 0.25, -a + 0.4, z_near, z_far),
                                 cam.ground(b - 0.4, b - 0.25, z_near, z_far)]), paint_white)
    if rng.random() < 0.25:
        zc = rng.uniform(6.0, 22.0)
        xs = np.arange(-a + 0.3, b - 0.3, 1.0)
        cv.paint(cam.ground(xs, xs + 0.5, zc, zc + 3.0), paint_white)
    return a, b, sw_l, sw_r


def _buildings(cv: Canvas, cam: Camera, rng: np.random.Generator, H: int, XL: float, XR: float, z_near: float,
               z_far: float, sky_colour: np.ndarray) -> None:
    """Facades along both sides (far to near), maybe a building closing the street."""
    z_end = rng.uniform(45.0, 160.0) if rng.random() < 0.5 else z_far
    if z_end < z_far:
        max_h = (cam.yv - 0.12 * H) * z_end / cam.f + cam.cam_h  # leave sky above it
        _end_building(cv, cam, rng, z_end, XL, XR, float(np.clip(rng.uniform(6.0, 30.0), 3.0, max(max_h, 3.0))),
                      sky_colour)
    for X in (XL, XR):
        segments = []
        z = z_near
        while z < z_end:
            length = rng.uniform(6.0, 22.0) * (1.0 + z / 60.0)
            z1 = min(z + length, z_end)
            hgt = rng.uniform(4.0, 16.0) if rng.random() < 0.75 else rng.uniform(16.0, 30.0)
            segments.append((z, z1, hgt))
            z = z1
        for z0, z1, hgt in reversed(segments):  # far to near
            _facade(cv, cam, rng, X, z0, z1, hgt, sky_colour)


def _place_objects(rng: np.random.Generator, z_bottom: float, a: float, b: float, sw_l: float, sw_r: float,
                   XL: float, XR: float) -> List[Tuple[float, int, float]]:
    """Where the objects stand: ``(depth of the near face, kind, X)``; kinds 0 car, 1 person, 2 pole,
    3 the first pole (a sign likely), 4 tree, 5 hedge."""
    objects: List[Tuple[float, int, float]] = []
    z_lo = max(z_bottom * 1.1, 2.0)
    for X in (XL, XR):
        if rng.random() < 0.3:  # a hedge along the facade
            objects.append((rng.uniform(z_bottom, max(z_bottom, 20.0)), 5, X + (0.5 if X < 0 else -0.5)))

    def depth(lo: float, hi: float) -> float:
        # Uniform in 1/Z, i.e. the object's foot is uniform over the image rows of that depth range.
        return 1.0 / rng.uniform(1.0 / max(hi, lo + 1e-3), 1.0 / lo)

    n_cars = int(rng.choice([0, 1, 2, 3, 4, 5, 6], p=[0.04, 0.16, 0.22, 0.22, 0.16, 0.12, 0.08]))
    for _ in range(n_cars):
        if rng.random() < 0.5:  # parked at a kerb
            X = (-a + rng.uniform(0.95, 1.15)) if rng.random() < 0.5 else (b - rng.uniform(0.95, 1.15))
        else:
            X = rng.uniform(-a + 1.0, b - 1.0)
        objects.append((depth(z_lo + 3.0, 50.0), 0, X))
    n_people = int(rng.choice([0, 1, 2, 3, 4, 5, 6], p=[0.05, 0.15, 0.22, 0.22, 0.16, 0.12, 0.08]))
    for _ in range(n_people):
        if rng.random() < 0.8:
            X = rng.uniform(XL + 0.4, -a - 0.3) if rng.random() < 0.5 else rng.uniform(b + 0.3, XR - 0.4)
        else:
            X = rng.uniform(-a, b)
        objects.append((depth(z_lo + 1.0, 30.0), 1, X))
    n_poles = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.03, 0.2, 0.3, 0.25, 0.14, 0.08]))
    for i in range(n_poles):
        X = (-a - rng.uniform(0.3, 0.7)) if rng.random() < 0.5 else (b + rng.uniform(0.3, 0.7))
        objects.append((depth(z_lo + 1.0, 32.0), 2 if i else 3, X))  # kind 3: the first pole, sign likely
    n_trees = int(rng.choice([0, 1, 2, 3, 4], p=[0.15, 0.25, 0.3, 0.2, 0.1]))
    for _ in range(n_trees):
        X = (XL + rng.uniform(0.6, sw_l * 0.6)) if rng.random() < 0.5 else (XR - rng.uniform(0.6, sw_r * 0.6))
        objects.append((depth(z_lo + 2.0, 60.0), 4, X))
    return objects


def _draw_objects(cv: Canvas, cam: Camera, rng: np.random.Generator, objects: List[Tuple[float, int, float]]) -> None:
    """Draw the objects far to near."""
    for Z, kind_id, X in sorted(objects, key=lambda o: -o[0]):
        if kind_id == 0:
            _car(cv, cam, rng, X, Z)
        elif kind_id == 1:
            _person(cv, cam, rng, X, Z)
        elif kind_id in (2, 3):
            _pole(cv, cam, rng, X, Z, towards=1.0 if X < 0 else -1.0, sign_prob=0.85 if kind_id == 3 else 0.5)
        elif kind_id == 4:
            _tree(cv, cam, rng, X, Z)
        else:
            _hedge(cv, cam, rng, X, Z, Z + rng.uniform(3.0, 15.0))


def _appearance(cv: Canvas, cam: Camera, rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """Texture, a cast shadow, illumination, blur, noise and gamma -> the uint8 RGB image."""
    img = cv.img
    field = 0.65 * smooth_noise(rng, H, W, 8) + 0.35 * smooth_noise(rng, H, W, 2)
    factor = 1.0 + _TEXTURE[cv.label] * field
    if rng.random() < 0.5:  # a building's shadow cast across the road and a sidewalk
        x_far = cam.xv + rng.uniform(-0.3, 0.3) * W
        x_near = rng.uniform(-0.2, 1.2) * W
        edge_x = -10.0 * W if rng.random() < 0.5 else 11.0 * W
        poly = np.array([(x_far, cam.yv), (x_near, H + 1.0), (edge_x, H + 1.0), (edge_x, cam.yv)])
        shade = np.zeros((H, W), dtype=np.float32)
        cv2.fillPoly(shade, cv._fix(poly)[None], float(rng.uniform(0.2, 0.45)), cv2.LINE_8, SHIFT)
        shade *= cv.label <= SIDEWALK  # only the ground (ROAD = 0, SIDEWALK = 1) receives it
        factor *= 1.0 - shade
    gain = (rng.uniform(0.65, 1.25) * rng.uniform(0.92, 1.08, 3)).astype(np.float32)
    img *= factor[:, :, None] * gain
    sigma = rng.uniform(0.5, 0.95)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)
    img += gaussian_noise(rng, img.shape, rng.uniform(2.0, 7.0))
    out = np.clip(img, 0, 255).astype(np.uint8)
    gamma = rng.uniform(0.8, 1.25)
    lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
    return cv2.LUT(out, lut)


def render_street_scene(rng: np.random.Generator, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Render one street scene: ``(image uint8 (H, W, 3) RGB, label uint8 (H, W) in 0..8)``."""
    H, W = int(height), int(width)
    cv = Canvas(H, W, background=SKY)
    cam = Camera(f=W * rng.uniform(0.42, 0.58), xv=W * rng.uniform(0.35, 0.65),
                 yv=H * rng.uniform(0.36, 0.5), cam_h=rng.uniform(1.3, 1.8))
    z_bottom = cam.f * cam.cam_h / max(H - cam.yv, 1.0)  # depth seen at the bottom row
    sky_colour = _sky(cv, cam, rng, H)
    z_near, z_far = 0.5, 400.0
    a, b, sw_l, sw_r = _street(cv, cam, rng, W, H, z_near, z_far)
    XL, XR = -a - sw_l, b + sw_r  # facade planes
    _buildings(cv, cam, rng, H, XL, XR, z_near, z_far, sky_colour)
    _draw_objects(cv, cam, rng, _place_objects(rng, z_bottom, a, b, sw_l, sw_r, XL, XR))
    return _appearance(cv, cam, rng, H, W), cv.label
