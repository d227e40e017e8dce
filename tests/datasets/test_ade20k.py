"""ADE20K loader on the tiny official-layout fixture (32x48 images; see seglab.datasets.fixtures.ade20k)."""
import cv2
import numpy as np
import pytest

from seglab.datasets import build_dataset
from seglab.datasets.ade20k import ADE20K, CLASS_NAMES, PALETTE  # (registers it)
from seglab.datasets.fixtures.ade20k import write_ade20k
from seglab.datasets.folder import BadSampleError
from seglab.errors import ConfigError


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade")
    write_ade20k(root, splits={"train": 3, "val": 2})
    return root


def test_class_list_and_palette():
    assert ADE20K.num_classes == 150 and len(CLASS_NAMES) == 150 and len(PALETTE) == 150
    assert CLASS_NAMES[:8] == ("wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed")
    assert CLASS_NAMES[12] == "person" and CLASS_NAMES[20] == "car" and CLASS_NAMES[136] == "traffic light"
    assert CLASS_NAMES[-3:] == ("glass", "clock", "flag")
    assert len(set(CLASS_NAMES)) == 150
    assert PALETTE[0] == (120, 120, 120) and PALETTE[2] == (6, 230, 230) and PALETTE[149] == (92, 0, 255)
    # the standard palette repeats one grey: road (6) and skyscraper (48)
    assert len(set(PALETTE)) == 149 and PALETTE[6] == PALETTE[48] == (140, 140, 140)
    assert ADE20K.ignore_index == 255 and ADE20K.SPLITS == ("train", "val")


def test_mapping_is_exact(ade_root):
    ds = build_dataset("ade20k", split="train", root=str(ade_root))
    image, label = ds.load(0)
    assert image.shape == (32, 48, 3) and image.dtype == np.uint8 and label.dtype == np.uint8
    assert label[0, 0] == 0  # raw 1 (wall)
    assert label[5, 20] == 149  # raw 150 (flag)
    assert label[15, 47] == 2  # raw 3 (sky)
    assert label[16, 0] == 1 and label[31, 23] == 1  # raw k = 2 for image 0
    assert label[16, 24] == 255 and label[31, 47] == 255  # raw 0 (unlabelled) -> ignore
    assert ds.load(1)[1][20, 5] == 8  # image 1: raw k = 2 + 7 = 9 -> 8
    assert ds.load(2)[1][20, 5] == 15  # image 2: raw 16 -> 15
    report = ds.verify(count_labels=True)
    assert report.ok and report.num_samples == 3
    counts = report.label_counts
    # per image: 16x16 px of each top block, 16x24 of the k block, 16x24 unlabelled
    assert counts[0] == counts[149] == counts[2] == 3 * 256
    assert counts[1] == counts[8] == counts[15] == 384
    assert counts[255] == 3 * 384 and counts.sum() == 3 * 32 * 48


def test_split_sizes_and_names(ade_root):
    train = build_dataset("ade20k", split="train", root=str(ade_root))
    val = build_dataset("ade20k", split="val", root=str(ade_root))
    assert (len(train), len(val)) == (3, 2)
    assert train.samples[0].image.endswith("images/training/ADE_train_00000001.jpg")
    assert train.samples[0].label.endswith("annotations/training/ADE_train_00000001.png")
    assert val.samples[1].image.endswith("images/validation/ADE_val_00000002.jpg")
    assert len(build_dataset("ade20k", split="train", root=str(ade_root), limit=2)) == 2


def test_both_root_conventions(ade_root):
    outer = build_dataset("ade20k", split="val", root=str(ade_root))
    inner = build_dataset("ade20k", split="val", root=str(ade_root / "ADEChallengeData2016"))
    assert [s.image for s in outer.samples] == [s.image for s in inner.samples]


def test_train_transform_shapes_with_defaults(ade_root):
    ds = build_dataset("ade20k", split="train", root=str(ade_root))
    assert ds.augment and ds.base_size == 520
    image, label = ds[0]
    assert tuple(image.shape) == (3, 520, 520) and tuple(label.shape) == (520, 520)
    assert set(label.unique().tolist()) <= {0, 1, 2, 149, 255}
    image, label = build_dataset("ade20k", split="val", root=str(ade_root))[0]
    assert tuple(image.shape) == (3, 32, 48) and tuple(label.shape) == (32, 48)


def test_bad_root_and_layout(tmp_path, ade_root):
    with pytest.raises(ConfigError, match="ADEChallengeData2016") as info:
        build_dataset("ade20k", split="train", root=str(tmp_path / "nowhere"))
    assert "\n" not in str(info.value)
    (tmp_path / "ADEChallengeData2016" / "images").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"images/training"):
        build_dataset("ade20k", split="train", root=str(tmp_path))
    with pytest.raises(ConfigError, match=r"dataset.split must be one of train, val"):
        build_dataset("ade20k", split="test", root=str(ade_root))
    with pytest.raises(ConfigError, match=r"dataset.colour"):
        build_dataset("ade20k", split="train", root=str(ade_root), colour=1)


def test_image_without_label_and_empty_split(tmp_path):
    base = write_ade20k(tmp_path, splits={"train": 2, "val": 1})
    missing = base / "annotations" / "training" / "ADE_train_00000002.png"
    missing.unlink()
    with pytest.raises(ConfigError) as info:
        build_dataset("ade20k", split="train", root=str(tmp_path))
    assert "ADE_train_00000002.jpg" in str(info.value) and str(missing) in str(info.value)
    (base / "images" / "validation" / "ADE_val_00000001.jpg").unlink()
    with pytest.raises(ConfigError, match=r"val split is empty.*images/validation"):
        build_dataset("ade20k", split="val", root=str(tmp_path))


def test_value_outside_the_map(tmp_path):
    base = write_ade20k(tmp_path, splits={"train": 3})
    bad_file = base / "annotations" / "training" / "ADE_train_00000002.png"
    raw = cv2.imread(str(bad_file), cv2.IMREAD_UNCHANGED)
    raw[0, 0] = 151
    cv2.imwrite(str(bad_file), raw)

    ds = build_dataset("ade20k", split="train", root=str(tmp_path), augment=False)
    report = ds.verify()
    assert not report.ok and len(report.bad) == 1
    assert str(bad_file) in report.bad[0] and "[151]" in report.bad[0] and "0..150" in report.bad[0]
    with pytest.raises(BadSampleError, match="151"):
        ds[1]

    skipping = build_dataset("ade20k", split="train", root=str(tmp_path), augment=False, on_bad_sample="skip")
    _, label = skipping[1]  # the bad sample 1 is replaced by sample 2 (raw k = 16 -> 15)
    assert label[20, 5].item() == 15
    assert len(skipping.skipped) == 1 and str(bad_file) in skipping.skipped[0]
    skipping[1]
    assert len(skipping.skipped) == 1  # counted once
