import cv2
import numpy as np
import pytest
import torch

from seglab.datasets.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_eval_transform,
    build_train_transform,
)
from seglab.errors import ConfigError

STEP = 20  # image value = label * STEP + channel, so every pixel decodes back to its label


def _block_scene(h=96, w=128, block=16, seed=0):
    """Large constant blocks of labels 0..9 (a few ignore blocks); image encodes the label."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 10, size=(h // block, w // block))
    blocks[rng.random(blocks.shape) < 0.1] = 255
    label = np.kron(blocks, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
    code = np.where(label == 255, 230, label.astype(np.int64) * STEP)  # ignore blocks get their own code
    image = np.stack([code + c for c in range(3)], axis=-1).astype(np.uint8)
    return image, label


def _decode(image_t):
    """Un-normalise (mean 0, std 1 -> x / 255) and return per-channel codes (3, H, W)."""
    return np.rint(image_t.numpy() * 255.0).astype(np.int64)


def _uniform_interior(label, radius):
    """Pixels whose (2r+1)^2 neighbourhood carries one label value, ``radius`` away from the edges
    (a crop edge may lie right next to a block boundary that is no longer visible)."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    lo = cv2.erode(label, k, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(label, k, borderType=cv2.BORDER_REPLICATE)
    out = lo == hi
    out[:radius], out[-radius:], out[:, :radius], out[:, -radius:] = False, False, False, False
    return out


def test_train_transform_keeps_image_and_label_aligned():
    image, label = _block_scene()
    t = build_train_transform(crop_size=(80, 112), scale_range=(0.5, 2.0), hflip=True,
                              mean=(0, 0, 0), std=(1, 1, 1), seed=123)
    checked = padded = 0
    for _ in range(60):
        img_t, lbl_t = t(image, label)
        assert img_t.shape == (3, 80, 112) and img_t.dtype == torch.float32
        assert lbl_t.shape == (80, 112) and lbl_t.dtype == torch.int64
        lbl = lbl_t.numpy()
        codes = _decode(img_t)
        values = set(np.unique(lbl).tolist())
        assert values <= set(range(10)) | {255}
        # Every channel keeps its own offset (channel order and alignment are preserved).
        # Radius 1 is tight enough to catch a half-pixel shift between image and label (which
        # cv2.INTER_NEAREST for the label would cause); only pixels next to a boundary are skipped.
        interior = _uniform_interior(lbl.astype(np.uint8), 1)
        cls = interior & (lbl != 255)
        for c in range(3):
            np.testing.assert_array_equal(codes[c][cls], lbl[cls] * STEP + c)
        checked += int(cls.sum())
        # Ignore pixels are either ignore blocks of the input (code 230) or padding (image 0).
        ign = interior & (lbl == 255)
        ok = (codes[0][ign] == 230) | (codes[0][ign] == 0)
        assert ok.all()
        padded += int((codes[0][ign] == 0).sum())
    assert checked > 60 * 80 * 112 * 0.3  # the check is not vacuous
    assert padded > 0  # scales < 1 needed padding, which went to the label as 255


def test_without_resize_every_pixel_matches_and_flip_happens():
    image, label = _block_scene(seed=1)
    t = build_train_transform(crop_size=(96, 128), scale_range=(1.0, 1.0), hflip=True,
                              mean=(0, 0, 0), std=(1, 1, 1), seed=7)
    seen = set()
    for _ in range(30):
        img_t, lbl_t = t(image, label)
        lbl = lbl_t.numpy()
        codes = _decode(img_t)
        for c in range(3):
            expected = np.where(lbl == 255, 230, lbl * STEP) + c
            np.testing.assert_array_equal(codes[c], expected)
        if np.array_equal(lbl, label):
            seen.add("same")
        elif np.array_equal(lbl, label[:, ::-1]):
            seen.add("flipped")
        else:
            pytest.fail("full-size crop without scaling must be the input or its mirror")
    assert seen == {"same", "flipped"}


def test_padding_uses_mean_colour_and_ignore_label():
    image, label = _block_scene(h=32, w=48, block=8)
    label[label == 255] = 0
    t = build_train_transform(crop_size=(64, 96), scale_range=(1.0, 1.0), hflip=False)  # ImageNet mean/std
    img_t, lbl_t = t(image, label)
    lbl = lbl_t.numpy()
    pad = lbl == 255
    assert pad.sum() == 64 * 96 - 32 * 48
    # padded with the mean colour, i.e. (almost exactly) zero after normalisation
    assert np.abs(img_t.numpy()[:, pad]).max() < 0.01


def test_transform_seed_is_reproducible():
    image, label = _block_scene()
    a = build_train_transform(crop_size=(64, 64), seed=5)
    b = build_train_transform(crop_size=(64, 64), seed=5)
    for _ in range(5):
        (ia, la), (ib, lb) = a(image, label), b(image, label)
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    a.set_random_seed(11)
    b.set_random_seed(11)
    assert torch.equal(a(image, label)[0], b(image, label)[0])


def test_eval_transform_normalises_only():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    label = rng.integers(0, 5, size=(20, 30)).astype(np.int64)
    img_t, lbl_t = build_eval_transform()(image, label)
    expected = (image.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(
        IMAGENET_STD, np.float32)
    np.testing.assert_allclose(img_t.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert img_t.dtype == torch.float32 and img_t.is_contiguous()
    assert lbl_t.dtype == torch.int64 and np.array_equal(lbl_t.numpy(), label)
    img_only, none = build_eval_transform()(image)
    assert none is None and torch.equal(img_only, img_t)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"crop_size": (0, 64)}, "transform.crop_size"),
        ({"crop_size": (64,)}, "transform.crop_size"),
        ({"crop_size": (64, 64), "scale_range": (2.0, 1.0)}, "transform.scale_range"),
        ({"crop_size": (64, 64), "scale_range": (0.0, 1.0)}, "transform.scale_range"),
        ({"crop_size": (64, 64), "mean": (0.5, 0.5)}, "transform.mean"),
        ({"crop_size": (64, 64), "std": (0.2, 0.0, 0.2)}, "transform.std"),
        ({"crop_size": (64, 64), "ignore_index": 300}, "transform.ignore_index"),
        ({"crop_size": (64, 64), "hflip": "yes"}, "transform.hflip"),
    ],
)
def test_bad_transform_values_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        build_train_transform(**kwargs)
    assert "\n" not in str(info.value)


def test_mismatched_shapes_are_rejected():
    t = build_eval_transform()
    with pytest.raises(ValueError):
        t(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), np.uint8))
