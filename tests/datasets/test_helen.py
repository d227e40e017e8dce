"""HELEN loader on the tiny fixture (32x48; the mask layout is in seglab.datasets.fixtures.helen)."""
import cv2
import numpy as np
import pytest
import torch

from seglab.datasets import build_dataset
from seglab.datasets.fixtures.helen import write_helen
from seglab.datasets.folder import BadSampleError
from seglab.datasets.helen import CLASS_NAMES, HELEN, PALETTE, read_name_list  # (registers it)
from seglab.errors import ConfigError


def _expected_label():
    """The argmax label of the fixture, worked out by hand from its documented rectangles."""
    y = np.zeros((32, 48), np.uint8)
    y[0:6, 4:44] = 10  # hair
    y[6:32, 4:44] = 1  # skin 180 beats background 0
    y[8:10, 8:16], y[8:10, 30:38] = 2, 3  # brows 255 beat skin 180
    y[11:14, 9:15], y[11:14, 31:37] = 4, 5
    y[14:20, 21:27] = 6
    y[22:24, 16:32], y[24:25, 16:32], y[25:27, 16:32] = 7, 8, 9
    y[28:30, 16:32] = 1  # tie skin 180 = lower lip 180: the lower index (skin) wins
    y[30:32, 16:32] = 9  # lower lip 181 > skin 180
    return y  # cols [0, 4): only background 255; cols [44, 48): every mask 0 -> background


@pytest.fixture(scope="module")
def helen_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("helen")
    write_helen(root, splits={"train": 3, "val": 2, "test": 1})
    return root


def _names(ds):
    return [s.image.rsplit("/", 1)[1][:-4] for s in ds.samples]


def test_classes_and_palette():
    assert HELEN.num_classes == 11 and HELEN.SPLITS == ("train", "val", "test") and HELEN.ignore_index == 255
    assert CLASS_NAMES == ("background", "skin", "left eyebrow", "right eyebrow", "left eye", "right eye", "nose",
                           "upper lip", "inner mouth", "lower lip", "hair")
    assert len(PALETTE) == 11 and len(set(PALETTE)) == 11


def test_argmax_of_the_masks_is_exact(helen_root):
    ds = build_dataset("helen", split="val", root=str(helen_root))
    assert ds.layout == "smith2013"
    image, label = ds.load(0)
    assert image.shape == (32, 48, 3)
    np.testing.assert_array_equal(label, _expected_label())
    assert label[29, 20] == 1 and label[30, 20] == 9 and label[5, 46] == 0 and label[5, 1] == 0


def test_splits_from_the_lists(helen_root):
    sizes = {split: len(build_dataset("helen", split=split, root=str(helen_root))) for split in HELEN.SPLITS}
    assert sizes == {"train": 3, "val": 2, "test": 1}
    ds = build_dataset("helen", split="train", root=str(helen_root))
    assert _names(ds) == ["100000_1", "100001_1", "100002_1"]
    assert ds.samples[0].label.endswith("SmithCVPR2013_dataset_resized/labels/100000_1")
    assert _names(build_dataset("helen", split="test", root=str(helen_root))) == ["300000_1"]


def test_list_line_variants(tmp_path):
    path = tmp_path / "exemplars.txt"
    path.write_text("1 , 100032540_1\n2,100040721_1\n\n3 100040721_2  \n  100058540_1\r\n")
    assert read_name_list(path) == ["100032540_1", "100040721_1", "100040721_2", "100058540_1"]
    path.write_text(" \n")
    with pytest.raises(ConfigError, match=r"exemplars.txt is empty"):
        read_name_list(path)


def test_root_conventions_and_split_folders_layout(helen_root, tmp_path):
    inner = build_dataset("helen", split="val", root=str(helen_root / "SmithCVPR2013_dataset_resized"))
    assert _names(inner) == ["200000_1", "200001_1"]
    write_helen(tmp_path, splits={"train": 2, "val": 1}, layout="split_folders")
    ds = build_dataset("helen", split="val", root=str(tmp_path))
    assert ds.layout == "split_folders" and _names(ds) == ["200000_1"]
    assert ds.samples[0].label.endswith("val/labels/200000_1.png")
    np.testing.assert_array_equal(ds.load(0)[1], _expected_label())
    with pytest.raises(ConfigError, match=r"test/images"):
        build_dataset("helen", split="test", root=str(tmp_path))
    with pytest.raises(ConfigError, match=r"dataset.layout must be one of auto, smith2013, split_folders"):
        build_dataset("helen", split="val", root=str(tmp_path), layout="flat")


def test_bad_root_missing_image_and_missing_label(tmp_path):
    with pytest.raises(ConfigError, match=r"SmithCVPR2013_dataset_resized/") as info:
        build_dataset("helen", split="train", root=str(tmp_path / "nowhere"))
    assert "\n" not in str(info.value)
    base = write_helen(tmp_path, splits={"train": 2, "val": 1})
    with pytest.raises(ConfigError, match=r"testing.txt not found"):
        build_dataset("helen", split="test", root=str(tmp_path))
    (base / "images" / "200000_1.jpg").unlink()
    with pytest.raises(ConfigError) as info:
        build_dataset("helen", split="val", root=str(tmp_path))
    assert "tuning.txt lists 200000_1" in str(info.value) and "images/200000_1.jpg" in str(info.value)
    for mask in (base / "labels" / "100001_1").iterdir():
        mask.unlink()
    (base / "labels" / "100001_1").rmdir()
    with pytest.raises(ConfigError) as info:
        build_dataset("helen", split="train", root=str(tmp_path))
    assert "images/100001_1.jpg has no label" in str(info.value) and "labels/100001_1/" in str(info.value)


def test_bad_masks_found_by_verify(tmp_path):
    base = write_helen(tmp_path, splits={"val": 2})
    missing = base / "labels" / "200000_1" / "200000_1_lbl07.png"
    missing.unlink()
    small = base / "labels" / "200001_1" / "200001_1_lbl03.png"
    cv2.imwrite(str(small), np.zeros((16, 48), np.uint8))
    ds = build_dataset("helen", split="val", root=str(tmp_path))
    bad = ds.verify().bad
    assert len(bad) == 2
    assert bad[0] == f"{missing}: label mask is missing"
    assert str(small) in bad[1] and "48x16 differs" in bad[1]
    with pytest.raises(BadSampleError, match="lbl07.png: label mask is missing"):
        ds[0]


def test_value_outside_the_map(tmp_path):
    write_helen(tmp_path, splits={"train": 3}, layout="split_folders")
    bad = tmp_path / "train" / "labels" / "100001_1.png"
    label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 11
    cv2.imwrite(str(bad), label)
    ds = build_dataset("helen", split="train", root=str(tmp_path), augment=False)
    report = ds.verify()
    assert len(report.bad) == 1 and str(bad) in report.bad[0] and "[11]" in report.bad[0]
    with pytest.raises(BadSampleError, match=r"\[11\]"):
        ds[1]
    skipping = build_dataset("helen", split="train", root=str(tmp_path), augment=False, on_bad_sample="skip")
    _, got = skipping[1]
    np.testing.assert_array_equal(got.numpy(), _expected_label())  # sample 2 instead
    assert len(skipping.skipped) == 1 and str(bad) in skipping.skipped[0]


def test_flip_swaps_left_and_right(helen_root):
    ds = build_dataset("helen", split="train", root=str(helen_root), base_size=None, scale_range=(1.0, 1.0),
                       crop_size=(32, 48), seed=3)
    original = _expected_label()
    mirrored = original[:, ::-1].copy()
    for a, b in ((2, 3), (4, 5)):
        mirrored[original[:, ::-1] == a], mirrored[original[:, ::-1] == b] = b, a
    assert mirrored[8, 47 - 8] == 3 and mirrored[8, 47 - 30] == 2 and mirrored[12, 47 - 9] == 5
    seen = set()
    for _ in range(12):
        label = ds[0][1].numpy()
        if np.array_equal(label, original):
            seen.add("plain")
        elif np.array_equal(label, mirrored):
            seen.add("mirrored")
        else:
            pytest.fail("a flipped label must have its left/right parts swapped")
    assert seen == {"plain", "mirrored"}
    no_flip = build_dataset("helen", split="train", root=str(helen_root), base_size=None, scale_range=(1.0, 1.0),
                            crop_size=(32, 48), hflip=False)
    assert all(np.array_equal(no_flip[0][1].numpy(), original) for _ in range(6))


def test_train_transform_shapes_with_defaults(helen_root):
    ds = build_dataset("helen", split="train", root=str(helen_root))
    assert ds.base_size == 512
    image, label = ds[0]
    assert tuple(image.shape) == (3, 473, 473) and tuple(label.shape) == (473, 473)
    assert set(label.unique().tolist()) <= set(range(11)) | {255}
    image, label = build_dataset("helen", split="test", root=str(helen_root))[0]
    assert tuple(image.shape) == (3, 32, 48) and tuple(label.shape) == (32, 48)


def test_one_flip_permutation_for_training_and_inference(helen_root):
    """HELEN declares its mirror permutation once; the training flip is built from that object
    (``seglab eval --flip`` reads the same attribute: tests/platform/test_eval_cli.py)."""
    from seglab.datasets import DATASETS, list_datasets
    from seglab.datasets.transforms import MirrorFlip

    assert HELEN.flip_permutation == (0, 1, 3, 2, 5, 4, 6, 7, 8, 9, 10)  # brows 2<->3, eyes 4<->5
    ds = build_dataset("helen", split="train", root=str(helen_root), crop_size=(32, 48))
    flips = [t for t in ds.transform.compose.transforms if isinstance(t, MirrorFlip)]
    assert len(flips) == 1 and flips[0].permutation is HELEN.flip_permutation and flips[0].p == 0.5
    assert ds.flip_permutation is HELEN.flip_permutation
    # the other data sets have no left/right classes: no permutation, a plain flip
    others = {name: DATASETS.get(name).flip_permutation for name in list_datasets() if name != "helen"}
    assert others and all(p is None for p in others.values()), others


def test_evaluation_item_leaves_a_bad_sample_out(tmp_path):
    """For evaluation a bad sample is ``None`` (counted by the caller), not the next good sample;
    ``ds[i]`` (training) still substitutes; ``on_bad_sample=error`` raises either way."""
    from seglab.datasets.eval_items import evaluation_item
    from seglab.datasets.fixtures.helen import helen_fixture_names

    write_helen(tmp_path, splits={"val": 3}, layout="split_folders")
    bad = tmp_path / "val" / "images" / f"{helen_fixture_names('val', 3)[1]}.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    ds = build_dataset("helen", split="val", root=str(tmp_path), on_bad_sample="skip")
    assert ds.evaluation_item(1) is None and evaluation_item(ds, 1) is None
    assert len(ds.skipped) == 1 and str(bad) in ds.skipped[0]
    for i in (0, 2):
        image, label = ds.evaluation_item(i)
        assert tuple(image.shape) == (3, 32, 48)
        np.testing.assert_array_equal(label.numpy(), _expected_label())
    _, label = ds[1]  # training's substitute: sample 2
    np.testing.assert_array_equal(label.numpy(), _expected_label())
    assert len(ds.skipped) == 1  # the same file is listed once
    strict = build_dataset("helen", split="val", root=str(tmp_path))
    with pytest.raises(BadSampleError, match="does not decode"):
        strict.evaluation_item(1)
    # a data set without the method (generated): its items as they are
    synthetic = build_dataset("synthetic", split="val", num_samples=1, image_size=[32, 32])
    assert torch.equal(evaluation_item(synthetic, 0)[1], synthetic[0][1])
