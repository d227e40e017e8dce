"""Offset/confidence colour codings, the OVeNet panel and the offset diagnostics, against values
worked out by hand or by independent references (colorsys, matplotlib, torch interpolate)."""
import colorsys
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import colormaps

from seglab.datasets.labels import colorize
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.platform.methods import ovenet_panel as ovenet
from seglab.platform.viz import panels as viz
from seglab.platform.viz.flowcolor import confidence_to_color, flow_to_color, flow_wheel

PALETTE = [(10, 20, 30), (200, 0, 0), (0, 200, 0), (0, 0, 200)]


def _ref_hsv(hue_deg, sat):
    """colorsys reference, value 1, 8-bit round-half-up."""
    return tuple(math.floor(255 * v + 0.5) for v in colorsys.hsv_to_rgb(hue_deg / 360.0, sat, 1.0))


def _field(*vectors):
    """(2, 1, N) field from (dx, dy) pairs."""
    return np.array(vectors, dtype=np.float64).T[:, None, :]


# ---------------------------------------------------------------- flow colours
def test_flow_known_colours():
    c120, s120 = math.cos(math.radians(120)), math.sin(math.radians(120))
    c240, s240 = math.cos(math.radians(240)), math.sin(math.radians(240))
    # right, up (dy < 0), down, left, hue 120 and 240 (y down so dy = -sin), half-length right, zero
    f = _field((1, 0), (0, -1), (0, 1), (-1, 0), (c120, -s120), (c240, -s240), (0.5, 0), (0, 0))
    rgb = flow_to_color(f)
    assert rgb.shape == (1, 8, 3) and rgb.dtype == np.uint8
    expected = [(255, 0, 0), (128, 255, 0), (128, 0, 255), (0, 255, 255),
                (0, 255, 0), (0, 0, 255), (255, 128, 128), (255, 255, 255)]
    assert [tuple(p) for p in rgb[0]] == expected


def test_flow_zero_field_white_nonfinite_black_and_torch_input():
    assert (flow_to_color(np.zeros((2, 3, 4))) == 255).all()
    rgb = flow_to_color(torch.tensor(_field((np.nan, 0), (2, 0), (1, np.inf)), dtype=torch.bfloat16))
    assert [tuple(p) for p in rgb[0]] == [(0, 0, 0), (255, 0, 0), (0, 0, 0)]


def test_flow_max_length_default_and_explicit_clipping():
    f = _field((4, 0), (2, 0), (0, 0))
    assert [tuple(p) for p in flow_to_color(f)[0]] == [(255, 0, 0), (255, 128, 128), (255, 255, 255)]
    # max_length 8: 4 px is half-saturated, 2 px a quarter: 1 - 0.25 -> 191.25 -> 191
    assert [tuple(p) for p in flow_to_color(f, max_length=8)[0]] == [
        (255, 128, 128), (255, 191, 191), (255, 255, 255)]
    # max_length 1: longer vectors clip to full saturation
    assert [tuple(p) for p in flow_to_color(f, max_length=1)[0]] == [
        (255, 0, 0), (255, 0, 0), (255, 255, 255)]
    assert (flow_to_color(f, max_length=0) == 255).all()
    with pytest.raises(ValueError):
        flow_to_color(f, max_length=-1)
    with pytest.raises(ValueError):
        flow_to_color(np.zeros((3, 2, 2)))


def test_flow_matches_colorsys_on_random_vectors():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 7, 9)) * 3
    rgb = flow_to_color(f, max_length=5.0)
    for y in range(7):
        for x in range(9):
            dx, dy = f[:, y, x]
            hue = math.degrees(math.atan2(-dy, dx)) % 360
            assert tuple(rgb[y, x]) == _ref_hsv(hue, min(math.hypot(dx, dy) / 5.0, 1.0))


def test_flow_wheel_known_positions():
    w = flow_wheel(101)  # centre (50, 50), radius 50
    assert w.shape == (101, 101, 3) and w.dtype == np.uint8
    assert tuple(w[50, 50]) == (255, 255, 255)  # centre: zero vector
    assert tuple(w[50, 100]) == (255, 0, 0)  # right edge
    assert tuple(w[50, 75]) == (255, 128, 128)  # halfway right
    assert tuple(w[0, 50]) == (128, 255, 0)  # top: up = 90 deg
    assert tuple(w[50, 0]) == (0, 255, 255)  # left = 180 deg
    assert tuple(w[100, 50]) == (128, 0, 255)  # bottom: down = 270 deg
    assert tuple(w[0, 0]) == (0, 0, 0) and tuple(w[100, 100]) == (0, 0, 0)  # outside the disc
    # a pixel at 120 deg, radius 40 (rounded position): compare with colorsys at its exact vector
    y, x = 50 - round(40 * math.sin(math.radians(120))), 50 + round(40 * math.cos(math.radians(120)))
    dx, dy = x - 50, y - 50
    assert tuple(w[y, x]) == _ref_hsv(math.degrees(math.atan2(-dy, dx)) % 360, math.hypot(dx, dy) / 50)
    assert tuple(flow_wheel(1)[0, 0]) == (255, 255, 255)


# ---------------------------------------------------------------- confidence
def test_confidence_viridis_endpoints_and_matplotlib_reference():
    rgb = confidence_to_color(np.array([[0.0, 1.0]]))
    assert tuple(rgb[0, 0]) == (68, 1, 84) and tuple(rgb[0, 1]) == (253, 231, 37)
    conf = np.random.default_rng(1).uniform(size=(1, 6, 5))
    ref = np.round(colormaps["viridis"](conf[0])[..., :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(confidence_to_color(torch.from_numpy(conf)), ref)
    clipped = confidence_to_color(np.array([[-0.5, 1.5, np.nan]]))
    assert [tuple(p) for p in clipped[0]] == [(68, 1, 84), (253, 231, 37), (68, 1, 84)]


# ---------------------------------------------------------------- fix/break, denormalize
def test_fix_break_map_hand_made():
    target = np.array([[0, 1, 2], [0, 1, 255], [2, 2, 1]])
    s_i = np.array([[0, 0, 2], [1, 1, 0], [0, 2, 2]])
    s_f = np.array([[0, 1, 1], [2, 0, 0], [2, 2, 0]])
    # (0,0) both right; (0,1) fixed; (0,2) broke; (1,0) both wrong; (1,1) broke; (1,2) ignore;
    # (2,0) fixed; (2,1) both right; (2,2) both wrong
    K, G, R, D, Wh = (0, 0, 0), (0, 255, 0), (255, 0, 0), (64, 64, 64), (255, 255, 255)
    expected = np.array([[K, G, R], [D, R, Wh], [G, K, D]], dtype=np.uint8)
    np.testing.assert_array_equal(ovenet.fix_break_map(s_i, s_f, target), expected)
    with pytest.raises(ValueError):
        ovenet.fix_break_map(s_i, s_f, target[:2])


def test_denormalize_hand_values_and_round_trip():
    zero = viz.denormalize(torch.zeros(3, 2, 2))  # = the mean colour 0.485*255 = 123.675 ...
    assert zero.shape == (2, 2, 3) and tuple(zero[0, 0]) == (124, 116, 104)
    assert viz.denormalize.__defaults__ == (IMAGENET_MEAN, IMAGENET_STD)
    u8 = np.random.default_rng(2).integers(0, 256, size=(4, 5, 3)).astype(np.uint8)
    normed = ((u8 / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
    np.testing.assert_array_equal(viz.denormalize(normed.astype(np.float32)), u8)
    assert tuple(viz.denormalize(np.full((3, 1, 1), 10.0))[0, 0]) == (255, 255, 255)  # clipped


# ---------------------------------------------------------------- panel
def _panel_inputs(H=16, W=32, C=4):
    rng = np.random.default_rng(3)
    h, w = H // 4, W // 4
    image = rng.normal(size=(3, H, W)).astype(np.float32)
    target = rng.integers(0, C, size=(H, W))
    target[0, :5] = 255
    li, ls, lf = (rng.normal(size=(C, h, w)) for _ in range(3))
    offsets = np.zeros((2, h, w))
    offsets[0], offsets[1] = 0.2, 0.2  # uniform: bilinear upsampling keeps it exact
    confidence = np.ones((1, h, w))
    return image, target, li, ls, lf, offsets, confidence


def test_panel_layout_and_tiles():
    H, W = 16, 32
    image, target, li, ls, lf, offsets, confidence = _panel_inputs(H, W)
    out = ovenet.ovenet_panel(image, target, li, ls, lf, offsets, confidence, PALETTE)
    T = viz.TITLE_HEIGHT
    assert out.shape == (2 * (T + H), 4 * W, 3) and out.dtype == np.uint8

    def tile(r, c):
        return out[r * (T + H) + T:(r + 1) * (T + H), c * W:(c + 1) * W]

    for r in range(2):
        for c in range(4):
            rows, cols = viz.panel_tile(r, c, (H, W))
            np.testing.assert_array_equal(out[rows, cols], tile(r, c))
    np.testing.assert_array_equal(tile(0, 0), viz.denormalize(image))
    np.testing.assert_array_equal(tile(0, 1), colorize(target, PALETTE))
    up = [np.repeat(np.repeat(lg.argmax(0), 4, 0), 4, 1) for lg in (li, ls, lf)]  # stride 4 -> nearest
    for (r, c), pred in zip(((0, 2), (0, 3), (1, 0)), up):
        np.testing.assert_array_equal(tile(r, c), colorize(pred, PALETTE))
    # offsets (0.2, 0.2) normalised -> (0.2*31/2, 0.2*15/2) = (3.1, 1.5) px: anisotropic direction
    hue = math.degrees(math.atan2(-1.5, 3.1)) % 360
    assert (tile(1, 1) == np.array(_ref_hsv(hue, 1.0), dtype=np.uint8)).all()
    assert (tile(1, 2) == np.array((253, 231, 37), dtype=np.uint8)).all()  # confidence 1
    np.testing.assert_array_equal(tile(1, 3), ovenet.fix_break_map(up[0], up[2], target))
    strip = out[:T, :W]
    assert (strip == np.array((32, 32, 32), dtype=np.uint8)).all(axis=-1).mean() < 1.0  # has text


def test_panel_bilinear_against_torch_and_wheel_inset():
    H = W = 64
    rng = np.random.default_rng(4)
    image, target, li, ls, lf, _, _ = _panel_inputs(H, W)
    offsets = rng.uniform(-0.3, 0.3, size=(1, 2, 16, 16)).astype(np.float32)
    conf = rng.uniform(size=(1, 1, 16, 16)).astype(np.float32)
    out = ovenet.ovenet_panel(torch.from_numpy(image)[None], target, li, ls, lf, torch.from_numpy(offsets),
                           torch.from_numpy(conf), PALETTE)
    rows, cols = viz.panel_tile(1, 1, (H, W))
    off_tile = out[rows, cols].astype(int)
    ref_off = F.interpolate(torch.from_numpy(offsets), size=(H, W), mode="bilinear", align_corners=False)[0]
    ref_px = ref_off.double().numpy() * np.array([(W - 1) / 2, (H - 1) / 2]).reshape(2, 1, 1)
    ref_flow = flow_to_color(ref_px).astype(int)
    inset = np.zeros((H, W), dtype=bool)
    inset[H - 18:H - 2, W - 18:W - 2] = True  # min(H, W)//4 = 16, 2 px margin
    assert np.abs(off_tile - ref_flow)[~inset].max() <= 1
    np.testing.assert_array_equal(off_tile[inset].reshape(16, 16, 3), flow_wheel(16))
    rows, cols = viz.panel_tile(1, 2, (H, W))
    ref_conf = F.interpolate(torch.from_numpy(conf), size=(H, W), mode="bilinear", align_corners=False)
    assert np.abs(out[rows, cols].astype(int) - confidence_to_color(ref_conf[0, 0]).astype(int)).max() <= 1


def test_panel_missing_maps_legend_and_errors():
    H, W = 16, 32
    image, target, li, ls, lf, offsets, confidence = _panel_inputs(H, W)
    target[:] = 1  # only class 1 in the ground truth
    lf = np.zeros_like(lf)
    lf[1] = 1.0  # S_f predicts class 1 everywhere
    names = ["a", "b", "c", "d"]
    out = ovenet.ovenet_panel(image, target, None, None, lf, None, None, PALETTE, class_names=names)
    T, L = viz.TITLE_HEIGHT, viz.LEGEND_HEIGHT
    assert out.shape == (2 * (T + H) + L, 4 * W, 3)
    for r, c in ((0, 2), (0, 3), (1, 1), (1, 2), (1, 3)):
        rows, cols = viz.panel_tile(r, c, (H, W))
        assert (out[rows, cols] == np.array(viz.MISSING_COLOR, dtype=np.uint8)).all()
    legend = out[2 * (T + H):]
    has = [(legend == np.array(p, dtype=np.uint8)).all(axis=-1).any() for p in PALETTE]
    assert has == [False, True, False, False]
    with pytest.raises(ValueError):
        ovenet.ovenet_panel(image, target[:8], li, ls, lf, offsets, confidence, PALETTE)
    with pytest.raises(ValueError):
        ovenet.ovenet_panel(image, target, li[:, :2], ls, lf, offsets, confidence, PALETTE)


# ---------------------------------------------------------------- io, scalars, sampling
def test_save_png_round_trip_and_atomic(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 256, size=(7, 11, 3)).astype(np.uint8)
    path = tmp_path / "sub" / "panel.png"
    assert viz.save_png(path, rgb) == path
    viz.save_png(path, rgb)  # overwrite in place
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back[:, :, ::-1], rgb)
    assert sorted(p.name for p in path.parent.iterdir()) == ["panel.png"]
    with pytest.raises(ValueError):
        viz.save_png(tmp_path / "x.png", rgb.astype(np.float32))


def test_offset_diagnostics_hand_computed():
    # image (H, W) = (5, 9): o_x -> o_x * 4 px, o_y -> o_y * 2 px
    offsets = np.zeros((2, 2, 1, 2))
    offsets[0, :, 0, 0] = (0.75, 0.0)  # 3 px
    offsets[0, :, 0, 1] = (0.0, 1.5)  # 3 px
    offsets[1, :, 0, 0] = (0.75, 2.0)  # hypot(3, 4) = 5 px
    conf = np.array([0.0, 0.5, 1.0, 0.3]).reshape(2, 1, 1, 2)
    li = np.zeros((2, 3, 1, 2))
    lf = np.zeros((2, 3, 1, 2))
    li[:, 0], lf[0, 0, 0, 0], lf[0, 2, 0, 1], lf[1, 0] = 1, 1, 2, 1  # S_i all class 0; one pixel changes
    d = ovenet.offset_diagnostics(torch.from_numpy(offsets), conf, li, lf, image_size=(5, 9))
    assert d == pytest.approx({"mean_offset_px": 11 / 4, "max_offset_px": 5.0,
                               "mean_confidence": 0.45, "frac_changed": 0.25})
    assert all(isinstance(v, float) for v in d.values())
    single = ovenet.offset_diagnostics(offsets[1], None, None, None, image_size=(5, 9))
    assert single == pytest.approx({"mean_offset_px": 2.5, "max_offset_px": 5.0})


def test_select_samples():
    assert viz.select_samples(10) == [0, 3, 6, 9]
    assert viz.select_samples(100, k=4) == [0, 33, 66, 99]
    assert viz.select_samples(5, k=5) == [0, 1, 2, 3, 4]
    assert viz.select_samples(3, k=4) == [0, 1, 2]
    assert viz.select_samples(7, k=1) == [0]
    assert viz.select_samples(0) == []
    many = viz.select_samples(1000, k=37)
    assert len(set(many)) == 37 and many == sorted(many) and many[-1] == 999
    with pytest.raises(ValueError):
        viz.select_samples(-1)
