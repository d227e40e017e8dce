"""``synthetic11``: the generated street scenes relabelled to PHGMM's 11 classes (+ background)."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seglab.datasets import build_dataset, list_datasets
from seglab.datasets.synthetic11 import SYNTHETIC_TO_REDUCED11, Synthetic11
from seglab.errors import ConfigError
from seglab.metrics.confusion import ConfusionMatrix
from seglab.platform.config import DatasetConfig

SMALL = dict(num_samples=4, image_size=(64, 128), seed=3)
NAMES_11 = ["sky", "building", "road", "sidewalk", "fence", "vegetation", "pole", "car/truck/bus", "traffic sign",
            "person", "rider/bicycle/motorcycle"]
# synthetic label -> 11-class id, by hand: 0 road -> 2, 1 sidewalk -> 3, 2 building -> 1, 3 pole -> 6,
# 4 traffic sign -> 8, 5 vegetation -> 5, 6 sky -> 0, 7 person -> 9, 8 car -> 7; padding 255 stays 255.
HAND = {0: 2, 1: 3, 2: 1, 3: 6, 4: 8, 5: 5, 6: 0, 7: 9, 8: 7, 255: 255}
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "dataset"


def _hand(label):
    label = np.asarray(label)
    out = np.full(label.shape, -1, np.int64)
    for k, v in HAND.items():
        out[label == k] = v
    assert (out >= 0).all(), "a label the hand table does not know"
    return out


def test_registered_with_the_synthetic_options_plus_background():
    assert "synthetic11" in list_datasets()
    assert SYNTHETIC_TO_REDUCED11 == tuple(HAND[k] for k in range(9))
    with pytest.raises(ConfigError, match=r"dataset\.colour_mode"):
        build_dataset("synthetic11", colour_mode=1)


@pytest.mark.parametrize("background, num, names, miou", [
    ("class", 12, NAMES_11 + ["background"], list(range(11))),
    ("ignore", 11, NAMES_11, None),
])
def test_class_metadata(background, num, names, miou):
    ds = build_dataset("synthetic11", "val", background=background, **SMALL)
    assert ds.num_classes == num and ds.class_names == names and ds.miou_classes == miou
    assert len(ds.palette) == num and ds.palette[2] == (128, 64, 128)  # road keeps its Cityscapes colour
    if background == "class":
        assert ds.palette[11] == (40, 40, 40)


def test_bad_background_option():
    with pytest.raises(ConfigError, match=r"^dataset\.background must be one of class, ignore \(got 'none'\)$"):
        build_dataset("synthetic11", "val", background="none")


@pytest.mark.parametrize("background", ["class", "ignore"])
def test_val_samples_are_synthetic_relabelled(background):
    base = build_dataset("synthetic", "val", **SMALL)
    ds = build_dataset("synthetic11", "val", background=background, **SMALL)
    seen = set()
    for i in range(len(ds)):
        base_image, base_label = base.generate(i)
        image, label = ds.generate(i)
        np.testing.assert_array_equal(image, base_image)
        np.testing.assert_array_equal(label, _hand(base_label))
        x, y = ds[i]
        bx, by = base[i]
        assert torch.equal(x, bx) and y.dtype == torch.int64
        np.testing.assert_array_equal(y.numpy(), _hand(by.numpy()))
        seen |= set(np.unique(label).tolist())
    # fence, rider and background never occur; the rest do in these few samples
    assert seen == {0, 1, 2, 3, 5, 6, 7, 8, 9}


def test_augmented_train_samples_match_synthetic_and_pad_with_ignore():
    options = dict(SMALL, scale_range=(0.5, 0.9))  # always smaller than the crop: always padded
    base = build_dataset("synthetic", "train", **options)
    ds = build_dataset("synthetic11", "train", **options)
    assert ds.augment
    for i in range(len(ds)):  # the same order: the same augmentation stream
        x, y = ds[i]
        bx, by = base[i]
        assert torch.equal(x, bx)
        np.testing.assert_array_equal(y.numpy(), _hand(by.numpy()))
        assert (y == 255).any() and not (y == 11).any()


def test_miou_leaves_background_out():
    ds = build_dataset("synthetic11", "val", **SMALL)
    cm = ConfusionMatrix(12)
    # by hand: class 0: TP 2 -> IoU 1; class 2: TP 1, FN 1 -> 1/2; background 11: TP 2, FP 1 -> 2/3;
    # the other classes are absent (NaN, skipped). Mean over 0..10: (1 + 1/2) / 2 = 0.75;
    # over all 12 it would be (1 + 1/2 + 2/3) / 3 = 13/18.
    target = torch.tensor([[[0, 0, 11, 11, 2, 2]]])
    pred = torch.tensor([[[0, 0, 11, 11, 2, 11]]])
    cm.update(pred, target)
    scores = cm.compute(classes=ds.miou_classes)
    assert scores["miou"] == pytest.approx(0.75)
    assert scores["per_class_iou"][11] == pytest.approx(2 / 3)
    assert cm.compute()["miou"] == pytest.approx(13 / 18)


def test_config_mirrors_synthetic_and_builds_both_splits():
    cfg = yaml.safe_load((CONF / "synthetic11.yaml").read_text())
    base = yaml.safe_load((CONF / "synthetic.yaml").read_text())
    assert cfg.pop("name") == "synthetic11" and base.pop("name") == "synthetic"
    assert cfg.pop("background") == "class" and cfg == base
    dc = DatasetConfig.from_dict({**cfg, "name": "synthetic11", "background": "class"})
    for split in ("train", "val"):
        kwargs = {**dc.split_kwargs(split), "num_samples": 2}
        ds = build_dataset(dc.name, split=split, **kwargs)
        assert isinstance(ds, Synthetic11) and ds.augment == (split == "train") and ds.num_classes == 12
        image, label = ds[0]
        assert tuple(image.shape) == (3, 128, 256) and tuple(label.shape) == (128, 256)
