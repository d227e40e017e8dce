"""The 11-class reductions (PHGMM / AdapNet++): cityscapes11 and synthia11."""
import cv2
import numpy as np
import pytest

from seglab.datasets import build_dataset
from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.datasets.fixtures.synthia import write_synthia
from seglab.datasets.labels import CITYSCAPES_PALETTE
from seglab.datasets.reduced import REDUCED11_NAMES, TRAIN_ID_TO_REDUCED11, Cityscapes11, Synthia11

# Worked out from the paper's list (train ids: 0 road, 1 sidewalk, 2 building, 3 wall, 4 fence, 5 pole,
# 6 traffic light, 7 traffic sign, 8 vegetation, 9 terrain, 10 sky, 11 person, 12 rider, 13 car,
# 14 truck, 15 bus, 16 train, 17 motorcycle, 18 bicycle).
EXPECTED_11 = [2, 3, 1, 255, 4, 6, 255, 8, 5, 255, 0, 9, 10, 7, 7, 7, 255, 10, 10]
# Cityscapes labelId -> 11-class id, by hand: road 7, sidewalk 8, building 11, fence 13, pole 17,
# traffic sign 20, vegetation 21, sky 23, person 24, rider 25, car 26, truck 27, bus 28, motorcycle 32, bicycle 33.
LABEL_ID_TO_11 = {7: 2, 8: 3, 11: 1, 13: 4, 17: 6, 20: 8, 21: 5, 23: 0, 24: 9, 25: 10, 26: 7, 27: 7, 28: 7,
                  32: 10, 33: 10}
# SYNTHIA id -> 11-class id, by hand: sky 1, building 2, road 3, sidewalk 4, fence 5, vegetation 6, pole 7,
# car 8, sign 9, pedestrian 10, bicycle 11, motorcycle 12, rider 17, truck 18, bus 19.
SYNTHIA_TO_11 = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 8, 10: 9, 11: 10, 12: 10, 17: 10, 18: 7, 19: 7}


def test_class_table():
    assert [TRAIN_ID_TO_REDUCED11.get(t, 255) for t in range(19)] == EXPECTED_11
    assert REDUCED11_NAMES == ["sky", "building", "road", "sidewalk", "fence", "vegetation", "pole",
                               "car/truck/bus", "traffic sign", "person", "rider/bicycle/motorcycle"]
    for cls in (Cityscapes11, Synthia11):
        assert cls.num_classes == 11 and cls.class_names == REDUCED11_NAMES and cls.class_weights is None
        # colour of the first member: sky, building, road, sidewalk, fence, vegetation, pole, car, sign, person, rider
        assert cls.palette == [CITYSCAPES_PALETTE[t] for t in (10, 2, 0, 1, 4, 8, 5, 13, 7, 11, 12)]


def test_cityscapes11_labels_and_resolution(tmp_path):
    write_cityscapes(tmp_path, {"train": 1, "val": 1}, size=(64, 128), seed=4)
    ds = build_dataset("cityscapes11", "val", root=str(tmp_path))
    raw = cv2.imread(ds.samples[0].label, cv2.IMREAD_UNCHANGED)
    lut = np.full(256, 255, np.uint8)
    for k, v in LABEL_ID_TO_11.items():
        lut[k] = v
    np.testing.assert_array_equal(ds.load(0)[1], lut[raw])
    image, label = ds[0]  # evaluated at 384x768 (long side resized to 768)
    assert tuple(image.shape) == (3, 384, 768) and tuple(label.shape) == (384, 768)
    # nearest: a 64x128 -> 384x768 resize is exactly 6x6 blocks
    np.testing.assert_array_equal(label.numpy(), np.kron(lut[raw], np.ones((6, 6), np.uint8)))
    train = build_dataset("cityscapes11", "train", root=str(tmp_path))
    assert tuple(train[0][0].shape) == (3, 384, 768)
    assert train.transform.compose.transforms[0].max_size == 768


def test_synthia11_labels_and_resolution(tmp_path):
    write_synthia(tmp_path, num_images=2, size=(38, 64), seed=1)  # the aspect of 760x1280
    ds = build_dataset("synthia11", "all", root=str(tmp_path), image_size=[38, 64])
    raw = cv2.imread(ds.samples[1].label, cv2.IMREAD_UNCHANGED)[..., 2]
    lut = np.full(23, 255, np.uint8)
    for k, v in SYNTHIA_TO_11.items():
        lut[k] = v
    np.testing.assert_array_equal(ds.load(1)[1], lut[raw])
    full = build_dataset("synthia11", "val", root=str(tmp_path))  # default: resized to exactly 384x768
    image, label = full[0]
    assert tuple(image.shape) == (3, 384, 768) and tuple(label.shape) == (384, 768)
    assert set(np.unique(label.numpy())) <= set(range(11)) | {255}


@pytest.mark.parametrize("name", ["cityscapes11", "synthia11"])
def test_reductions_accept_the_platform_splits(tmp_path, name):
    write_cityscapes(tmp_path, {"train": 1, "val": 1})
    write_synthia(tmp_path, num_images=3)
    for split in ("train", "val"):
        assert len(build_dataset(name, split, root=str(tmp_path))) >= 1
