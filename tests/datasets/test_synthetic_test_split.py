"""The embedded data set's ``test`` split (issue 14): a third seed stream, distinct from ``train`` and
``val`` and deterministic; the configs' ``test`` role and the demo's random-scale range."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seglab.datasets import build_dataset
from seglab.datasets.synthetic import SPLITS
from seglab.datasets.synthetic11 import SYNTHETIC_TO_REDUCED11
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError
from seglab.platform.config import DatasetConfig

SMALL = dict(image_size=(48, 96))
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "dataset"


def _digests(ds, n):
    return [hashlib.sha256(b"".join(a.tobytes() for a in ds.generate(i))).hexdigest() for i in range(n)]


@pytest.mark.parametrize("seed", [0, 5])
def test_test_images_differ_from_train_and_val_images(seed):
    n = 12
    test = _digests(build_dataset("synthetic", split="test", num_samples=n, seed=seed, **SMALL), n)
    train = _digests(build_dataset("synthetic", split="train", num_samples=n, seed=seed, **SMALL), n)
    val = _digests(build_dataset("synthetic", split="val", num_samples=n, seed=seed, **SMALL), n)
    assert len(set(test)) == n  # no image twice within the split
    assert not set(test) & set(train) and not set(test) & set(val)  # no test image anywhere in train / val
    # and not merely shifted indices of the same stream: pixel-level difference to the same index
    a = build_dataset("synthetic", split="test", num_samples=2, seed=seed, **SMALL).generate(0)[0]
    b = build_dataset("synthetic", split="val", num_samples=2, seed=seed, **SMALL).generate(0)[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5


def test_test_split_is_deterministic_across_constructions():
    first = build_dataset("synthetic", split="test", num_samples=5, seed=3, **SMALL)
    second = build_dataset("synthetic", split="test", num_samples=5, seed=3, **SMALL)
    for i in (4, 0, 2):  # any order
        img1, lbl1 = first[i]
        img2, lbl2 = second[i]
        assert torch.equal(img1, img2) and torch.equal(lbl1, lbl2)
    assert _digests(first, 5) == _digests(second, 5)
    assert _digests(first, 5) != _digests(build_dataset("synthetic", split="test", num_samples=5, seed=4, **SMALL), 5)


def test_test_split_is_never_augmented_and_has_500_images_by_default():
    assert SPLITS == ("train", "val", "test")
    ds = build_dataset("synthetic", split="test", augment=True, **SMALL)
    assert len(ds) == 500 and ds.augment is False
    raw_img, raw_lbl = ds.generate(7)
    img, lbl = ds[7]
    expected = (raw_img.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD,
                                                                                                        np.float32)
    assert torch.allclose(img, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-5)
    assert torch.equal(lbl, torch.from_numpy(raw_lbl.astype(np.int64)))


def test_unknown_split_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"^dataset\.split must be one of train, val, test, got 'testing'$"):
        build_dataset("synthetic", split="testing")


def test_synthetic11_test_split_is_synthetic_test_relabelled():
    a = build_dataset("synthetic", split="test", num_samples=3, seed=2, **SMALL)
    b = build_dataset("synthetic11", split="test", num_samples=3, seed=2, **SMALL)
    for i in range(3):
        (ia, la), (ib, lb) = a.generate(i), b.generate(i)
        assert np.array_equal(ia, ib)
        assert np.array_equal(lb, np.asarray(SYNTHETIC_TO_REDUCED11, np.uint8)[la])


@pytest.mark.parametrize("name", ["synthetic", "synthetic11"])
def test_configs_have_a_test_role_and_the_train_scale_range(name):
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    cfg["image_size"] = list(SMALL["image_size"])
    cfg["train"]["crop_size"] = list(SMALL["image_size"])
    dc = DatasetConfig.from_dict(cfg)
    assert dc.split_kwargs("train")["scale_range"] == [0.75, 1.25]
    test = build_dataset(dc.name, split=dc.split_name("test"), **dc.split_kwargs("test"))
    val = build_dataset(dc.name, split=dc.split_name("val"), **dc.split_kwargs("val"))
    assert (test.split, len(test), test.augment) == ("test", 500, False)
    assert (val.split, len(val)) == ("val", 50)
    assert not set(_digests(test, 4)) & set(_digests(val, 50))


def test_train_scale_range_is_honoured():
    """scale (s, s) with a crop the image's size and no flip: s = 1 reproduces the raw sample; s = 0.75
    shrinks it, so a quarter of the rows and columns are padding (label 255) -- by hand for 48x96."""
    kw = dict(num_samples=2, crop_size=(48, 96), hflip=False, **SMALL)
    same = build_dataset("synthetic", split="train", scale_range=(1.0, 1.0), **kw)
    _, lbl = same[0]
    assert torch.equal(lbl, torch.from_numpy(same.generate(0)[1].astype(np.int64)))
    small = build_dataset("synthetic", split="train", scale_range=(0.75, 0.75), **kw)
    _, lbl = small[0]
    assert int((lbl != 255).sum()) == 36 * 72  # the 0.75x image (36x72) inside the 48x96 crop
