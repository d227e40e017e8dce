"""ACDC loader on fixtures in the official layout."""
import cv2
import numpy as np
import pytest

from seglab.datasets import build_dataset
from seglab.datasets.acdc import ACDC
from seglab.datasets.fixtures.acdc import write_acdc
from seglab.datasets.folder import MissingSplitError
from seglab.errors import ConfigError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc")
    write_acdc(root, {"train": 3, "val": 2, "test": 1}, sequences=2, seed=5)
    return root


def test_conditions_are_groups_and_ref_folders_are_ignored(root):
    ds = build_dataset("acdc", "train", root=str(root))
    assert len(ds) == 12  # 3 per condition, the train_ref images not counted
    assert ds.group_indices() == {"fog": [0, 1, 2], "night": [3, 4, 5], "rain": [6, 7, 8], "snow": [9, 10, 11]}
    assert all("_ref" not in s.image and s.image.endswith("_rgb_anon.png") for s in ds.samples)
    s = ds.samples[0]
    assert s.image.endswith("rgb_anon/fog/train/GOPR0470/GOPR0470_frame_000100_rgb_anon.png")
    assert s.label.endswith("gt/fog/train/GOPR0470/GOPR0470_frame_000100_gt_labelTrainIds.png")
    two = build_dataset("acdc", "val", root=str(root), conditions=["night", "fog"])
    assert two.groups == ["night", "night", "fog", "fog"]
    assert build_dataset("acdc", "val", root=str(root), conditions="snow").groups == ["snow", "snow"]


def test_label_trainids_and_labelids_give_the_same_targets(root):
    a = build_dataset("acdc", "val", root=str(root))
    b = build_dataset("acdc", "val", root=str(root), label_format="labelIds")
    assert b.samples[0].label.endswith("_gt_labelIds.png")
    for i in range(len(a)):
        la, lb = a.load(i)[1], b.load(i)[1]
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(la, cv2.imread(a.samples[i].label, cv2.IMREAD_UNCHANGED))
        assert set(np.unique(la)) - {255} and set(np.unique(la)) <= set(range(19)) | {255}


def test_test_split_and_defaults(root):
    test = build_dataset("acdc", "test", root=str(root))
    assert len(test) == 4 and all(s.label is None for s in test.samples)
    assert (test[0][1] == 255).all()
    assert ACDC.num_classes == 19 and ACDC.class_weights is None
    train = build_dataset("acdc", "train", root=str(root))
    assert train.transform.compose.transforms[0].max_size == 1920
    image, label = train[0]
    assert tuple(image.shape) == (3, 540, 960) and tuple(label.shape) == (540, 960)
    assert tuple(build_dataset("acdc", "val", root=str(root))[0][0].shape) == (3, 32, 64)


@pytest.mark.parametrize("options, match", [
    ({"conditions": ["fog", "sandstorm"]}, r"dataset\.conditions must be a non-empty list of distinct values "
                                           r"from fog, night, rain, snow"),
    ({"conditions": []}, r"dataset\.conditions must be a non-empty list"),
    ({"label_format": "labelColor"}, r"dataset\.label_format must be one of labelTrainIds, labelIds"),
    ({"split": "trainval"}, r"dataset\.split must be one of train, val, test \(got 'trainval'\)"),
])
def test_bad_options(root, options, match):
    split = options.pop("split", "train")
    with pytest.raises(ConfigError, match=match):
        build_dataset("acdc", split, root=str(root), **options)


def test_layout_errors_name_the_directory(tmp_path):
    write_acdc(tmp_path, {"train": 1}, conditions=("fog", "night"))
    rain = tmp_path / "rgb_anon" / "rain"
    with pytest.raises(ConfigError, match=f"expected the rain images rgb_anon/rain/ at {rain} "):
        build_dataset("acdc", "train", root=str(tmp_path))
    with pytest.raises(MissingSplitError, match=f"rgb_anon/fog/val/<sequence>/ at {tmp_path / 'rgb_anon/fog/val'} "):
        build_dataset("acdc", "val", root=str(tmp_path), conditions=["fog", "night"])
    (tmp_path / "rgb_anon/night/val").mkdir()
    with pytest.raises(ConfigError, match="rgb_anon/fog/val/<sequence>/") as err:
        build_dataset("acdc", "val", root=str(tmp_path), conditions=["fog", "night"])
    assert not isinstance(err.value, MissingSplitError)  # present for one condition: not an absent split
    label = next((tmp_path / "gt/night/train").rglob("*_gt_labelTrainIds.png"))
    label.unlink()
    with pytest.raises(ConfigError, match=f"has no label; expected {label}"):
        build_dataset("acdc", "train", root=str(tmp_path), conditions=["fog", "night"])
    ds = build_dataset("acdc", "train", root=str(tmp_path), conditions=["fog", "night"], on_bad_sample="skip")
    assert ds.groups == ["fog"] and len(ds.verify().bad) == 1
