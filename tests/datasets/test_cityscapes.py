"""Cityscapes loader on fixtures in the official layout; label table against cityscapesScripts."""
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from seglab.datasets import build_dataset
from seglab.datasets.cityscapes import CITYSCAPES_LABELS, LABEL_ID_TO_TRAIN_ID, Cityscapes, cityscapes_label_map
from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.datasets.folder import BadSampleError, MissingSplitError
from seglab.datasets.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_PALETTE
from seglab.errors import ConfigError
from seglab.losses.ce import CLASS_WEIGHT_PRESETS

cs_labels = pytest.importorskip("cityscapesscripts.helpers.labels")


# ----------------------------------------------------------------------------- the official table
def test_label_table_matches_cityscapesscripts():
    ours = [(lab.name, lab.id, lab.train_id, lab.category, lab.has_instances, tuple(lab.color))
            for lab in CITYSCAPES_LABELS]
    ref = [(lab.name, lab.id, lab.trainId, lab.category, lab.hasInstances, tuple(lab.color))
           for lab in cs_labels.labels]
    assert ours == ref


def test_label_id_to_train_id_matches_cityscapesscripts():
    # The reference: createTrainIdLabelImgs writes label.trainId, where 255 and -1 mean ignore.
    expected = {}
    for lab in cs_labels.labels:
        if lab.id >= 0:
            expected[lab.id] = lab.trainId if lab.trainId not in (255, -1) else 255
    assert LABEL_ID_TO_TRAIN_ID == expected
    mapped = cityscapes_label_map()(np.arange(34, dtype=np.uint8).reshape(1, 34))
    assert mapped.ravel().tolist() == [expected[i] for i in range(34)]
    with pytest.raises(BadSampleError, match=r"\[34\].*Cityscapes labelIds 0\.\.33"):
        cityscapes_label_map()(np.array([[7, 34]], np.uint8), "x.png")


def test_train_class_names_and_colours_match_cityscapesscripts():
    train = sorted((lab.trainId, lab.name, tuple(lab.color)) for lab in cs_labels.labels
                   if 0 <= lab.trainId < 255)
    assert [t for t, _, _ in train] == list(range(19))
    assert list(CITYSCAPES_CLASS_NAMES) == [n for _, n, _ in train]
    assert [tuple(c) for c in CITYSCAPES_PALETTE] == [c for _, _, c in train]
    assert Cityscapes.class_names == [n for _, n, _ in train]
    assert [tuple(c) for c in Cityscapes.palette] == [c for _, _, c in train]


def test_attributes_and_class_weights():
    assert Cityscapes.num_classes == 19 and Cityscapes.ignore_index == 255
    assert Cityscapes.class_weights == list(CLASS_WEIGHT_PRESETS["cityscapes"])
    assert len(Cityscapes.class_weights) == 19


# ----------------------------------------------------------------------------- loading
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes(root, {"train": 3, "val": 2, "test": 2, "train_extra": 2}, coarse=True, seed=3)
    return root


def _reference_train_ids(label_path):
    """labelIds file -> train ids, read with Pillow and mapped with cityscapesScripts' table."""
    raw = np.asarray(Image.open(label_path))
    lut = np.full(256, 255, np.uint8)
    for lab in cs_labels.labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    return lut[raw]


def test_splits_groups_and_pairing(root):
    train = build_dataset("cityscapes", "train", root=str(root))
    assert len(train) == 3
    # round-robin over aachen, bochum; sorted by city then name
    assert train.groups == ["aachen", "aachen", "bochum"]
    assert train.group_indices() == {"aachen": [0, 1], "bochum": [2]}
    s = train.samples[0]
    assert s.image.endswith("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png")
    assert s.label.endswith("gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    assert s.instance.endswith("gtFine/train/aachen/aachen_000000_000019_gtFine_instanceIds.png")
    val = build_dataset("cityscapes", "val", root=str(root))
    assert val.groups == ["frankfurt", "lindau"] and not val.augment and train.augment
    trainval = build_dataset("cityscapes", "trainval", root=str(root))
    assert [x.image for x in trainval.samples] == [x.image for x in train.samples + val.samples]
    assert len(build_dataset("cityscapes", "train", root=str(root), cities=["bochum"])) == 1
    assert build_dataset("cityscapes", "trainval", root=str(root), cities="bochum,lindau").groups == ["bochum", "lindau"]
    assert len(build_dataset("cityscapes", "train", root=str(root), limit=2)) == 2


def test_labels_are_mapped_like_the_official_tools(root):
    ds = build_dataset("cityscapes", "val", root=str(root))
    for i in range(len(ds)):
        image, label = ds.load(i)
        assert image.shape == (32, 64, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(label, _reference_train_ids(ds.samples[i].label))
    instance = ds.load_instance(0)
    np.testing.assert_array_equal(instance, cv2.imread(ds.samples[0].instance, cv2.IMREAD_UNCHANGED))
    assert instance.max() >= 24000  # objects: labelId * 1000 + k


def test_eval_is_full_resolution_and_train_uses_the_hrnet_protocol(root):
    val = build_dataset("cityscapes", "val", root=str(root))
    image, label = val[1]
    assert tuple(image.shape) == (3, 32, 64) and tuple(label.shape) == (32, 64)
    np.testing.assert_array_equal(label.numpy(), _reference_train_ids(val.samples[1].label))
    train = build_dataset("cityscapes", "train", root=str(root))
    names = [type(t).__name__ for t in train.transform.compose.transforms]
    assert names[:4] == ["LongestMaxSize", "RandomScale", "PadIfNeeded", "RandomCrop"]
    assert train.transform.compose.transforms[0].max_size == 2048
    image, label = train[0]
    assert tuple(image.shape) == (3, 512, 1024) and tuple(label.shape) == (512, 1024)


def test_test_split_has_no_labels(root):
    test = build_dataset("cityscapes", "test", root=str(root))
    assert len(test) == 2 and all(s.label is None for s in test.samples)
    assert test.groups == ["berlin", "bielefeld"]
    _, label = test[0]
    assert (label == 255).all()
    assert test.verify().num_labelled == 0


def test_coarse_annotations(root):
    extra = build_dataset("cityscapes", "train_extra", root=str(root), annotations="coarse")
    assert len(extra) == 2 and extra.augment
    assert extra.samples[0].image.endswith("leftImg8bit/train_extra/augsburg/augsburg_000000_000019_leftImg8bit.png")
    assert extra.samples[0].label.endswith("gtCoarse/train_extra/augsburg/augsburg_000000_000019_gtCoarse_labelIds.png")
    val = build_dataset("cityscapes", "val", root=str(root), annotations="coarse")
    _, coarse = val.load(0)
    np.testing.assert_array_equal(coarse, _reference_train_ids(val.samples[0].label))
    _, fine = build_dataset("cityscapes", "val", root=str(root)).load(0)
    # coarse = fine with some blocks unlabeled (labelId 0 -> ignore)
    assert ((coarse == fine) | (coarse == 255)).all() and (coarse == 255).sum() > (fine == 255).sum()


@pytest.mark.parametrize("options, match", [
    ({"annotations": "medium"}, r"dataset\.annotations must be one of fine, coarse \(got 'medium'\)"),
    ({"split": "test", "annotations": "coarse"}, r"dataset\.split must be one of train, train_extra, val, trainval"),
    ({"split": "train_extra"}, r"dataset\.split must be one of train, val, test, trainval for fine"),
    ({"cities": ["atlantis"]}, r"dataset\.cities: no city 'atlantis'.*cities there: aachen, bochum"),
    ({"on_bad_sample": "ignore"}, r"dataset\.on_bad_sample must be one of error, skip"),
    ({"bogus": 1}, r"unknown key dataset\.bogus for dataset 'cityscapes'"),
])
def test_bad_options_name_the_key(root, options, match):
    options = {"split": "train", **options}
    split = options.pop("split")
    with pytest.raises(ConfigError, match=match):
        build_dataset("cityscapes", split, root=str(root), **options)


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def fresh(tmp_path):
    write_cityscapes(tmp_path, {"train": 3, "val": 2}, seed=1)
    return tmp_path


def _label(root, split="train", city="aachen", index=0):
    return sorted((root / "gtFine" / split / city).glob("*_gtFine_labelIds.png"))[index]


def test_missing_root_or_wrong_layout_names_the_directory(tmp_path):
    with pytest.raises(ConfigError, match=f"expected the Cityscapes root .* at {tmp_path / 'nope'} "):
        build_dataset("cityscapes", "train", root=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=f"expected the Cityscapes image directory leftImg8bit/ at "
                                          f"{tmp_path / 'leftImg8bit'} "):
        build_dataset("cityscapes", "train", root=str(tmp_path))
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(MissingSplitError, match=f"leftImg8bit/train/<city>/ at {tmp_path / 'leftImg8bit' / 'train'} "):
        build_dataset("cityscapes", "train", root=str(tmp_path))
    with pytest.raises(ConfigError, match=f"label directory gtFine/ at {tmp_path / 'gtFine'} "):
        build_dataset("cityscapes", "val", root=str(tmp_path))


def test_empty_split(tmp_path):
    (tmp_path / "leftImg8bit" / "val" / "lindau").mkdir(parents=True)
    (tmp_path / "gtFine" / "val" / "lindau").mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"the val split under {tmp_path} is empty"):
        build_dataset("cityscapes", "val", root=str(tmp_path))


def test_image_without_label(fresh, caplog):
    missing = _label(fresh, index=1)
    missing.unlink()
    image = fresh / "leftImg8bit/train/aachen/aachen_000001_000021_leftImg8bit.png"
    with pytest.raises(ConfigError) as err:
        build_dataset("cityscapes", "train", root=str(fresh))
    assert str(err.value) == f"dataset: image {image} has no label; expected {missing}"
    with caplog.at_level(logging.WARNING, logger="seglab.datasets.folder"):
        ds = build_dataset("cityscapes", "train", root=str(fresh), on_bad_sample="skip")
    assert len(ds) == 2 and ds.skipped == [str(err.value)]
    assert str(image) in caplog.text
    report = ds.verify()
    assert report.bad == [str(err.value)] and report.num_samples == 2 and not report.ok


def _write_raw(path, array):
    assert cv2.imwrite(str(path), array)


def test_label_values_outside_the_map(fresh, caplog):
    bad = _label(fresh, index=0)
    raw = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    raw[0, 0], raw[5, 5] = 200, 34
    _write_raw(bad, raw)
    ds = build_dataset("cityscapes", "train", root=str(fresh), base_size=None, crop_size=(32, 64))
    report = ds.verify()
    assert report.bad == [f"{bad}: label values [34, 200] are outside the label map "
                          f"(allowed: Cityscapes labelIds 0..33)"]
    with pytest.raises(BadSampleError, match=r"label values \[34, 200\]"):
        ds[0]
    ds[1]  # the others still load
    skip = build_dataset("cityscapes", "train", root=str(fresh), base_size=None, crop_size=(32, 64),
                         on_bad_sample="skip", augment=False)
    with caplog.at_level(logging.WARNING, logger="seglab.datasets.folder"):
        image, label = skip[0]
    # sample 0 is skipped: sample 1 comes back instead
    np.testing.assert_array_equal(label.numpy(), _reference_train_ids(skip.samples[1].label))
    assert len(skip.skipped) == 1 and str(bad) in skip.skipped[0] and str(bad) in caplog.text
    skip[0]
    assert len(skip.skipped) == 1  # counted once


def test_label_of_a_different_size(fresh):
    bad = _label(fresh, "val", "lindau")
    _write_raw(bad, np.full((16, 64), 7, np.uint8))
    ds = build_dataset("cityscapes", "val", root=str(fresh))
    report = ds.verify()
    assert len(report.bad) == 1
    assert report.bad[0].startswith(f"{bad}: label size 64x16 differs from its image ")
    assert report.bad[0].endswith("(64x32)")
    with pytest.raises(BadSampleError, match="label size 64x16 differs"):
        ds[1]
    skip = build_dataset("cityscapes", "val", root=str(fresh), on_bad_sample="skip")
    assert tuple(skip[1][1].shape) == (32, 64) and len(skip.skipped) == 1  # wrapped round to sample 0


def _truncate(path: Path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_corrupt_or_truncated_png(fresh):
    image = sorted((fresh / "leftImg8bit/train/bochum").glob("*.png"))[0]
    _truncate(image)
    label = _label(fresh, index=1)
    data = bytearray(label.read_bytes())
    data[60:70] = b"\x00" * 10  # corrupt the pixel data (the CRC no longer matches)
    label.write_bytes(bytes(data))
    ds = build_dataset("cityscapes", "train", root=str(fresh), base_size=None, crop_size=(32, 64))
    report = ds.verify()
    assert len(report.bad) == 2
    assert report.bad[0].startswith(f"{label}: label does not decode")
    assert report.bad[1].startswith(f"{image}: image is corrupt or truncated")
    with pytest.raises(BadSampleError, match=f"{image}: image does not decode"):
        ds[2]
    with pytest.raises(BadSampleError, match=f"{label}: label does not decode"):
        ds[1]
    skip = build_dataset("cityscapes", "train", root=str(fresh), base_size=None, crop_size=(32, 64),
                         on_bad_sample="skip")
    skip[1]  # 1 and 2 are bad: wraps round to 0
    assert len(skip.skipped) == 2


def test_every_sample_bad_in_skip_mode(fresh):
    for label in (fresh / "gtFine/val").rglob("*_labelIds.png"):
        _write_raw(label, np.full((32, 64), 99, np.uint8))
    ds = build_dataset("cityscapes", "val", root=str(fresh), on_bad_sample="skip")
    with pytest.raises(BadSampleError, match="every sample of the val split is bad"):
        ds[0]
    assert len(ds.skipped) == 2
