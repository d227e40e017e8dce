"""Image / label alignment through the real pipelines of the on-disk data sets.

The fixtures' images encode their labels (``decode_ids``), so after base-size resize, random scale,
pad, crop and flip every pixel of the image must still decode to the class its label says; labels
must be resized with nearest neighbour (no new values) and padded with the ignore value.
"""
import importlib

import cv2
import numpy as np
import pytest

from seglab.datasets import build_dataset
from seglab.datasets.cityscapes import LABEL_ID_TO_TRAIN_ID
from seglab.datasets.fixtures.acdc import write_acdc
from seglab.datasets.fixtures.cityscapes import decode_ids, write_cityscapes
from seglab.datasets.fixtures.synthia import write_synthia
from seglab.datasets.synthia import SYNTHIA_TO_TRAIN_ID

for _module in ("cityscapes", "acdc", "synthia", "reduced"):
    importlib.import_module(f"seglab.datasets.{_module}")  # registers the data sets

SIZE = (64, 128)
PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # image tensor = pixel / 255


def _lut(mapping):
    lut = np.full(256, 255, np.int64)
    for raw, value in mapping.items():
        lut[raw] = value
    return lut


CITYSCAPES_LUT = _lut(LABEL_ID_TO_TRAIN_ID)
SYNTHIA_LUT = _lut(SYNTHIA_TO_TRAIN_ID)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("align")
    write_cityscapes(base / "cityscapes", {"train": 2, "val": 1}, size=SIZE, seed=11)
    write_acdc(base / "acdc", {"train": 1}, conditions=("night", "snow"), size=SIZE, seed=12)
    write_synthia(base / "synthia", num_images=2, size=SIZE, seed=13)
    return base


def _uniform_interior(label, radius=1):
    """Pixels whose (2r+1)^2 neighbourhood has one label value, away from the crop's edges."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    lab = label.astype(np.uint8)
    out = cv2.erode(lab, k, borderType=cv2.BORDER_REPLICATE) == cv2.dilate(lab, k, borderType=cv2.BORDER_REPLICATE)
    out[:radius], out[-radius:], out[:, :radius], out[:, -radius:] = False, False, False, False
    return out


def _check_aligned(ds, lut, iterations, shape, radius):
    """Draw ``iterations`` samples and check them; return (pixels checked, padded pixels seen).

    ``radius``: pixels this close to a label boundary are not checked. Bilinear resizing blends the
    two sides of a boundary over about ``scale`` output pixels, so the image there decodes to a
    mixture; 1 is enough up to x2 (it also catches a half-pixel shift of the label, which
    ``cv2.INTER_NEAREST`` would cause), 0 checks every pixel (no resize)."""
    checked = padded = 0
    for it in range(iterations):
        i = it % len(ds)
        _, source = ds.load(i)
        image_t, label_t = ds[i]
        assert tuple(image_t.shape) == (3, *shape) and tuple(label_t.shape) == shape
        label = label_t.numpy()
        pixels = np.rint(image_t.numpy().transpose(1, 2, 0) * 255.0)
        # nearest neighbour: no label value that the file did not have (padding adds only 255)
        assert set(np.unique(label)) <= set(np.unique(source)) | {255}
        classes = (_uniform_interior(label, radius) if radius else np.ones(shape, bool)) & (label != 255)
        np.testing.assert_array_equal(lut[decode_ids(pixels)][classes], label[classes])
        checked += int(classes.sum())
        pad = (pixels == 0).all(axis=-1)  # padding is the mean colour, 0 here; no fixture pixel is black
        assert (label[pad] == 255).all()
        padded += int(pad.sum())
    return checked, padded


@pytest.mark.parametrize("name, lut, options", [
    ("cityscapes", CITYSCAPES_LUT, {}),
    ("acdc", CITYSCAPES_LUT, {"conditions": ["night", "snow"]}),
    ("acdc", CITYSCAPES_LUT, {"conditions": ["snow"], "label_format": "labelIds"}),
    ("synthia", SYNTHIA_LUT, {}),
])
def test_train_pipeline_keeps_image_and_label_aligned(roots, name, lut, options):
    root = roots / name
    # HRNet protocol scaled down: long side to 96 (x0.75), random scale 0.5-2.0, pad, crop 64x112, flip
    ds = build_dataset(name, "train", root=str(root), base_size=96, crop_size=(64, 112), seed=3, **PLAIN,
                       **options)
    steps = {type(t).__name__: t for t in ds.transform.compose.transforms}
    assert list(steps)[:5] == ["LongestMaxSize", "RandomScale", "PadIfNeeded", "RandomCrop", "HorizontalFlip"]
    assert steps["LongestMaxSize"].mask_interpolation == cv2.INTER_NEAREST_EXACT
    assert steps["RandomScale"].mask_interpolation == cv2.INTER_NEAREST_EXACT
    assert steps["PadIfNeeded"].fill_mask == 255
    checked, padded = _check_aligned(ds, lut, 40, (64, 112), radius=1)
    assert checked > 40 * 64 * 112 * 0.2  # not vacuous
    assert padded > 0  # scales < 4/3 needed padding (48x96 * s < 64x112)


@pytest.mark.parametrize("name, lut", [("cityscapes", CITYSCAPES_LUT), ("synthia", SYNTHIA_LUT)])
def test_without_resizing_every_pixel_matches(roots, name, lut):
    # file size kept (base_size = the long side), no random scale: pad to 80x160, crop, flip
    ds = build_dataset(name, "train", root=str(roots / name), base_size=128, scale_range=(1.0, 1.0),
                       crop_size=(80, 160), seed=5, **PLAIN)
    flipped = set()
    for it in range(12):
        image_t, label_t = ds[it % len(ds)]
        label = label_t.numpy()
        ids = decode_ids(np.rint(image_t.numpy().transpose(1, 2, 0) * 255.0))
        pad = (image_t.numpy() == 0).all(axis=0)
        assert pad.sum() == 80 * 160 - 64 * 128 and (label[pad] == 255).all()
        np.testing.assert_array_equal(np.where(pad, 255, lut[np.clip(ids, 0, 255)]), label)
        # the content is the file's label, mirrored or not
        _, source = ds.load(it % len(ds))
        rows, cols = np.nonzero(~pad)
        window = label[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        flipped.add(bool(np.array_equal(window, source[:, ::-1])) and not np.array_equal(window, source))
        assert np.array_equal(window, source) or np.array_equal(window, source[:, ::-1])
    assert flipped == {True, False}


def test_eval_resize_keeps_alignment(roots):
    ds = build_dataset("cityscapes", "val", root=str(roots / "cityscapes"), base_size=200, eval_resize=True,
                       **PLAIN)
    checked, padded = _check_aligned(ds, CITYSCAPES_LUT, 1, (100, 200), radius=1)  # x1.5625: blends within 1 px
    assert checked > 100 * 200 * 0.3 and padded == 0


def test_synthia11_resize_then_augment(roots):
    # image_size resize (to a different aspect) in the loader, then the train pipeline
    ds = build_dataset("synthia11", "train", root=str(roots / "synthia"), image_size=[48, 144], crop_size=(48, 96),
                       seed=1, val_fraction=0.0, **PLAIN)
    reduced = {raw: ds.label_map.lut[raw] for raw in range(23)}
    _, label = ds.load(0)
    raw = cv2.imread(ds.samples[0].label, cv2.IMREAD_UNCHANGED)[..., 2]
    expected = cv2.resize(raw.astype(np.uint8), (144, 48), interpolation=cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(label, _lut(reduced)[expected])
    checked = 0
    for _ in range(10):
        image_t, label_t = ds[0]
        lbl = label_t.numpy()
        ids = decode_ids(np.rint(image_t.numpy().transpose(1, 2, 0) * 255.0))
        # merged classes (car/truck/bus) make label-uniform regions of several ids: check where both agree
        both = _uniform_interior(lbl) & _uniform_interior(np.clip(ids, 0, 255)) & (lbl != 255)
        np.testing.assert_array_equal(_lut(reduced)[np.clip(ids, 0, 255)][both], lbl[both])
        checked += int(both.sum())
    assert checked > 10 * 48 * 96 * 0.2
