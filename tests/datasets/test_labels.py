import numpy as np
import pytest
import torch

from seglab.datasets.labels import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
    cityscapes_subset,
    colorize,
)


def test_cityscapes_classes_and_colours():
    assert IGNORE_INDEX == 255
    assert len(CITYSCAPES_CLASS_NAMES) == len(CITYSCAPES_PALETTE) == 19
    assert CITYSCAPES_CLASS_NAMES[0] == "road" and CITYSCAPES_CLASS_NAMES[18] == "bicycle"
    assert CITYSCAPES_CLASS_NAMES[7] == "traffic sign" and CITYSCAPES_CLASS_NAMES[13] == "car"
    assert CITYSCAPES_PALETTE[0] == (128, 64, 128)
    assert CITYSCAPES_PALETTE[10] == (70, 130, 180)
    assert CITYSCAPES_PALETTE[13] == (0, 0, 142)
    assert len(set(CITYSCAPES_PALETTE)) == 19
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in CITYSCAPES_PALETTE)


def test_cityscapes_subset():
    names, palette = cityscapes_subset((0, 13, 10))
    assert names == ["road", "car", "sky"]
    assert palette == [(128, 64, 128), (0, 0, 142), (70, 130, 180)]
    with pytest.raises(ValueError):
        cityscapes_subset((19,))


def test_colorize_maps_labels_and_ignore():
    lab = np.array([[0, 1, 255], [2, 0, 1]], dtype=np.int64)
    pal = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
    out = colorize(lab, pal)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[0, 1]) == (40, 50, 60)
    assert tuple(out[1, 0]) == (70, 80, 90)
    assert tuple(out[0, 2]) == (0, 0, 0)  # ignore -> black
    # torch tensors and uint8 maps are accepted too
    np.testing.assert_array_equal(colorize(torch.from_numpy(lab), pal), out)
    np.testing.assert_array_equal(colorize(lab.astype(np.uint8), pal), out)


def test_colorize_default_palette_is_cityscapes():
    lab = np.arange(19).reshape(1, 19)
    out = colorize(lab)
    assert [tuple(c) for c in out[0]] == list(CITYSCAPES_PALETTE)


def test_colorize_rejects_bad_input():
    with pytest.raises(ValueError):
        colorize(np.array([[0, 3]]), [(0, 0, 0), (1, 1, 1)])  # 3 is neither a class nor ignore
    with pytest.raises(ValueError):
        colorize(np.array([[-1, 0]]), [(0, 0, 0)])
    with pytest.raises(ValueError):
        colorize(np.zeros((2, 2, 3), dtype=np.int64), [(0, 0, 0)])
    with pytest.raises(ValueError):
        colorize(np.zeros((2, 2), dtype=np.float32), [(0, 0, 0)])
