"""The 11-class reductions (PHGMM / AdapNet++): cityscapes11 and synthia11, with and without background."""
import cv2
import numpy as np
import pytest

from seglab.datasets import build_dataset
from seglab.datasets.check import check_dataset, format_reports
from seglab.datasets.cityscapes import CITYSCAPES_LABELS
from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.datasets.fixtures.synthia import write_synthia
from seglab.datasets.labels import CITYSCAPES_PALETTE, IGNORE_COLOR
from seglab.datasets.reduced import (BACKGROUND_COLOR, REDUCED11_NAMES, TRAIN_ID_TO_REDUCED11,
                                     TRAIN_ID_TO_REDUCED12, Cityscapes11, Synthia11)
from seglab.errors import ConfigError

NAMES_11 = ["sky", "building", "road", "sidewalk", "fence", "vegetation", "pole", "car/truck/bus", "traffic sign",
            "person", "rider/bicycle/motorcycle"]
# colour of the first member: sky, building, road, sidewalk, fence, vegetation, pole, car, sign, person, rider
PALETTE_11 = [CITYSCAPES_PALETTE[t] for t in (10, 2, 0, 1, 4, 8, 5, 13, 7, 11, 12)]

# Worked out from the paper's list (train ids: 0 road, 1 sidewalk, 2 building, 3 wall, 4 fence, 5 pole,
# 6 traffic light, 7 traffic sign, 8 vegetation, 9 terrain, 10 sky, 11 person, 12 rider, 13 car,
# 14 truck, 15 bus, 16 train, 17 motorcycle, 18 bicycle).
EXPECTED_11 = [2, 3, 1, 255, 4, 6, 255, 8, 5, 255, 0, 9, 10, 7, 7, 7, 255, 10, 10]
# The same with background: wall, traffic light, terrain, train -> 11.
EXPECTED_12 = [2, 3, 1, 11, 4, 6, 11, 8, 5, 11, 0, 9, 10, 7, 7, 7, 11, 10, 10]

# Cityscapes labelId -> 11-class id (background="ignore"), by hand: road 7, sidewalk 8, building 11, fence 13,
# pole 17, traffic sign 20, vegetation 21, sky 23, person 24, rider 25, car 26, truck 27, bus 28,
# motorcycle 32, bicycle 33; every other labelId ignored.
LABEL_ID_TO_11 = {7: 2, 8: 3, 11: 1, 13: 4, 17: 6, 20: 8, 21: 5, 23: 0, 24: 9, 25: 10, 26: 7, 27: 7, 28: 7,
                  32: 10, 33: 10}
# Cityscapes labelId 0..33 -> 12-label id (background="class"), by hand. 11 = background: the void labels
# 0 unlabeled, 1 ego vehicle, 2 rectification border, 3 out of roi, 4 static, 5 dynamic, 6 ground,
# 9 parking, 10 rail track, 14 guard rail, 15 bridge, 16 tunnel, 18 polegroup, 29 caravan, 30 trailer,
# and the leftover classes 12 wall, 19 traffic light, 22 terrain, 31 train.
LABEL_ID_TO_12 = [
    11, 11, 11, 11, 11, 11, 11,  # 0..6 void
    2, 3,                        # 7 road, 8 sidewalk
    11, 11,                      # 9 parking, 10 rail track
    1, 11, 4,                    # 11 building, 12 wall, 13 fence
    11, 11, 11,                  # 14 guard rail, 15 bridge, 16 tunnel
    6, 11, 11, 8,                # 17 pole, 18 polegroup, 19 traffic light, 20 traffic sign
    5, 11, 0,                    # 21 vegetation, 22 terrain, 23 sky
    9, 10,                       # 24 person, 25 rider
    7, 7, 7,                     # 26 car, 27 truck, 28 bus
    11, 11, 11,                  # 29 caravan, 30 trailer, 31 train
    10, 10,                      # 32 motorcycle, 33 bicycle
]
# SYNTHIA id -> 11-class id (background="ignore"), by hand: sky 1, building 2, road 3, sidewalk 4, fence 5,
# vegetation 6, pole 7, car 8, sign 9, pedestrian 10, bicycle 11, motorcycle 12, rider 17, truck 18, bus 19.
SYNTHIA_TO_11 = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 8, 10: 9, 11: 10, 12: 10, 17: 10, 18: 7, 19: 7}
# SYNTHIA id 0..22 -> 12-label id (background="class"), by hand: 0 void, 13 parking-slot, 14 road-work,
# 15 traffic light, 16 terrain, 20 train, 21 wall, 22 lanemarking -> 11.
SYNTHIA_TO_12 = [11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 11, 11, 11, 11, 10, 7, 7, 11, 11, 11]


def _lut(table, size):
    lut = np.full(size, 255, np.uint8)
    for k, v in (table.items() if isinstance(table, dict) else enumerate(table)):
        lut[k] = v
    return lut


def test_class_tables():
    assert len(LABEL_ID_TO_12) == 34 and len(SYNTHIA_TO_12) == 23
    assert [TRAIN_ID_TO_REDUCED11.get(t, 255) for t in range(19)] == EXPECTED_11
    assert [TRAIN_ID_TO_REDUCED12[t] for t in range(19)] == EXPECTED_12
    assert TRAIN_ID_TO_REDUCED12[255] == 11  # void -> background
    assert REDUCED11_NAMES == NAMES_11
    for cls in (Cityscapes11, Synthia11):  # the class attributes describe the default, background="class"
        assert cls.num_classes == 12 and cls.class_names == NAMES_11 + ["background"]
        assert cls.palette == PALETTE_11 + [BACKGROUND_COLOR] and cls.class_weights is None
        assert cls.miou_classes == list(range(11))


def test_background_colour_is_distinct():
    assert BACKGROUND_COLOR == (40, 40, 40)
    assert BACKGROUND_COLOR != IGNORE_COLOR
    assert BACKGROUND_COLOR not in {lab.color for lab in CITYSCAPES_LABELS}  # includes all 19 train colours


@pytest.mark.parametrize("background, num, names, palette, miou", [
    ("class", 12, NAMES_11 + ["background"], PALETTE_11 + [(40, 40, 40)], list(range(11))),
    ("ignore", 11, NAMES_11, PALETTE_11, None),
])
def test_instance_attributes_follow_the_option(tmp_path, background, num, names, palette, miou):
    write_cityscapes(tmp_path, {"train": 1, "val": 1})
    write_synthia(tmp_path, num_images=2)
    for name in ("cityscapes11", "synthia11"):
        ds = build_dataset(name, "val", root=str(tmp_path), background=background)
        assert ds.background == background
        assert ds.num_classes == num and ds.class_names == names and ds.palette == palette
        assert ds.miou_classes == miou


@pytest.mark.parametrize("background, table", [("class", LABEL_ID_TO_12), ("ignore", LABEL_ID_TO_11)])
def test_cityscapes11_labels_and_resolution(tmp_path, background, table):
    write_cityscapes(tmp_path, {"train": 1, "val": 1}, size=(64, 128), seed=4)
    ds = build_dataset("cityscapes11", "val", root=str(tmp_path), background=background)
    lut = _lut(table, 256)
    np.testing.assert_array_equal(ds.label_map.lut[:34], lut[:34])  # every labelId 0..33
    assert len(ds.label_map.lut) == 34  # nothing else is allowed in a labelIds file
    raw = cv2.imread(ds.samples[0].label, cv2.IMREAD_UNCHANGED)
    assert {0, 31}.issubset(np.unique(raw))  # the fixture holds void (unlabeled) and a leftover class (train)
    loaded = ds.load(0)[1]
    np.testing.assert_array_equal(loaded, lut[raw])
    assert (255 in loaded) == (background == "ignore") and (11 in loaded) == (background == "class")
    image, label = ds[0]  # evaluated at 384x768 (long side resized to 768)
    assert tuple(image.shape) == (3, 384, 768) and tuple(label.shape) == (384, 768)
    # nearest: a 64x128 -> 384x768 resize is exactly 6x6 blocks
    np.testing.assert_array_equal(label.numpy(), np.kron(lut[raw], np.ones((6, 6), np.uint8)))
    train = build_dataset("cityscapes11", "train", root=str(tmp_path), background=background)
    assert tuple(train[0][0].shape) == (3, 384, 768)
    assert train.transform.compose.transforms[0].max_size == 768


@pytest.mark.parametrize("background, table", [("class", SYNTHIA_TO_12), ("ignore", SYNTHIA_TO_11)])
def test_synthia11_labels_and_resolution(tmp_path, background, table):
    write_synthia(tmp_path, num_images=2, size=(38, 64), seed=1)  # the aspect of 760x1280
    ds = build_dataset("synthia11", "all", root=str(tmp_path), image_size=[38, 64], background=background)
    lut = _lut(table, 23)
    np.testing.assert_array_equal(ds.label_map.lut, lut)  # every SYNTHIA id 0..22
    raw = cv2.imread(ds.samples[1].label, cv2.IMREAD_UNCHANGED)[..., 2]
    assert 0 in raw  # void occurs in the fixture
    np.testing.assert_array_equal(ds.load(1)[1], lut[raw])
    full = build_dataset("synthia11", "val", root=str(tmp_path), background=background)  # default: 384x768
    image, label = full[0]
    assert tuple(image.shape) == (3, 384, 768) and tuple(label.shape) == (384, 768)
    allowed = set(range(12)) if background == "class" else set(range(11)) | {255}
    assert set(np.unique(label.numpy())) <= allowed


@pytest.mark.parametrize("name", ["cityscapes11", "synthia11"])
def test_augmentation_padding_stays_ignore(tmp_path, name):
    write_cityscapes(tmp_path, {"train": 1, "val": 1}, size=(64, 128))
    write_synthia(tmp_path, num_images=3, size=(38, 64))
    # scale 0.5 of 384x768 -> a 192x384 image padded to the 384x768 crop: all padding, no labelled pixel, is 255
    ds = build_dataset(name, "train", root=str(tmp_path), scale_range=(0.5, 0.5))
    assert ds.augment
    _, label = ds[0]
    label = label.numpy()
    assert tuple(label.shape) == (384, 768)
    assert int((label != 255).sum()) == 192 * 384
    assert set(np.unique(label[label != 255])) <= set(range(12)) and 11 in label  # background is a class


@pytest.mark.parametrize("name", ["cityscapes11", "synthia11"])
@pytest.mark.parametrize("value", ["none", "Class", None, True])
def test_bad_background_option(tmp_path, name, value):
    # checked before the root is read: the message names the option, not a missing directory
    with pytest.raises(ConfigError, match=r"^dataset\.background must be one of class, ignore \(got ") as info:
        build_dataset(name, "val", root=str(tmp_path / "missing"), background=value)
    assert repr(value) in str(info.value) and "\n" not in str(info.value)


def test_data_check_reports_background(tmp_path):
    write_cityscapes(tmp_path, {"val": 2}, seed=3)
    (report,) = check_dataset("cityscapes11", str(tmp_path), ["val"])
    assert report.ok and report.class_names[11] == "background"
    assert report.label_counts[11] > 0 and report.label_counts[255] == 0
    assert int(report.label_counts.sum()) == 2 * 32 * 64
    assert any(line.startswith("background ") for line in format_reports([report]).splitlines())
    (old,) = check_dataset("cityscapes11", str(tmp_path), ["val"], background="ignore")
    assert old.label_counts[11] == 0 and old.label_counts[255] == report.label_counts[11]


@pytest.mark.parametrize("name", ["cityscapes11", "synthia11"])
def test_reductions_accept_the_platform_splits(tmp_path, name):
    write_cityscapes(tmp_path, {"train": 1, "val": 1})
    write_synthia(tmp_path, num_images=3)
    for split in ("train", "val"):
        assert len(build_dataset(name, split, root=str(tmp_path))) >= 1
