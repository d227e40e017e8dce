"""VOC 2012 loader on the tiny fixture (32x48; objects at rows [8, 24), A cols [4, 20), B cols [26, 42))."""
import cv2
import numpy as np
import pytest
from PIL import Image

from seglab.datasets import build_dataset
from seglab.datasets.fixtures.voc import write_voc2012
from seglab.datasets.folder import BadSampleError
from seglab.datasets.voc import CLASS_NAMES, PALETTE, VOC2012, read_split_list, voc_colormap  # (registers it)
from seglab.errors import ConfigError


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    write_voc2012(root)  # train 2007_000000/1, val 2008_000000/1, aug-only 2011_000000/1; trainaug.txt
    return root


def _stems(ds):
    return [s.image.rsplit("/", 1)[1][:-4] for s in ds.samples]


def test_classes_and_colour_map():
    assert VOC2012.num_classes == 21 and VOC2012.ignore_index == 255 and VOC2012.SPLITS == ("train", "val")
    assert CLASS_NAMES[0] == "background" and CLASS_NAMES[15] == "person" and CLASS_NAMES[20] == "tvmonitor"
    cmap = voc_colormap()
    assert cmap[0] == (0, 0, 0) and cmap[1] == (128, 0, 0) and cmap[2] == (0, 128, 0) and cmap[7] == (128, 128, 128)
    assert cmap[8] == (64, 0, 0) and cmap[15] == (192, 128, 128) and cmap[20] == (0, 64, 128)
    assert cmap[255] == (224, 224, 192)  # the boundary colour
    assert list(PALETTE) == cmap[:21] and len(set(cmap)) == 256


def test_augmented_train_reads_trainaug_with_aug_labels(voc_root):
    ds = build_dataset("voc2012", split="train", root=str(voc_root))
    assert ds.augmented and ds.split_lists[0].endswith("ImageSets/Segmentation/trainaug.txt")
    assert _stems(ds) == ["2007_000000", "2007_000001", "2011_000000", "2011_000001"]
    assert all("/SegmentationClassAug/" in s.label for s in ds.samples)
    _, label = ds.load(0)
    assert label[8, 4] == 1 and label[12, 10] == 1 and label[12, 30] == 2 and label[0, 0] == 0  # no 255 ring
    assert ds.load(2)[1][12, 10] == 9  # aug-only image n = 4: classes 9, 10
    assert ds.verify().ok


def test_plain_train_reads_paletted_indices(voc_root):
    ds = build_dataset("voc2012", split="train", root=str(voc_root), augmented=False)
    assert not ds.augmented and _stems(ds) == ["2007_000000", "2007_000001"]
    path = ds.samples[1].label
    assert path.endswith("SegmentationClass/2007_000001.png") and Image.open(path).mode == "P"
    assert cv2.imread(path, cv2.IMREAD_UNCHANGED).ndim == 3  # OpenCV alone would give colours
    _, label = ds.load(1)  # image n = 1: classes 3 (bird) and 4 (boat)
    assert label[8, 4] == 255 and label[23, 19] == 255 and label[8, 26] == 255  # boundary rings
    assert label[9, 5] == 3 and label[12, 10] == 3 and label[12, 30] == 4 and label[0, 0] == 0
    counts = ds.verify(count_labels=True).label_counts
    # per image: 14x14 interior of each 16x16 object, 60 ring pixels each, 1024 background
    assert counts[1] == counts[2] == counts[3] == counts[4] == 196
    assert counts[255] == 4 * 60 and counts[0] == 2 * 1024


def test_val_split_and_sizes(voc_root):
    ds = build_dataset("voc2012", split="val", root=str(voc_root))
    assert _stems(ds) == ["2008_000000", "2008_000001"] and not ds.augment
    assert all("/SegmentationClass/" in s.label for s in ds.samples)
    assert ds.load(0)[1][12, 10] == 5  # val image 0 is n = 2: classes 5, 6


@pytest.mark.parametrize("aug_list, stems, sources", [
    ("train_aug.txt", ["2007_000000", "2007_000001", "2011_000000", "2011_000001"], ["SegmentationClassAug"] * 4),
    ("aug.txt", ["2007_000000", "2007_000001", "2011_000000", "2011_000001"],
     ["SegmentationClass", "SegmentationClass", "SegmentationClassAug", "SegmentationClassAug"]),
])
def test_other_aug_list_formats(tmp_path, aug_list, stems, sources):
    write_voc2012(tmp_path, aug_list=aug_list)
    ds = build_dataset("voc2012", split="train", root=str(tmp_path))
    assert _stems(ds) == stems
    assert [s.label.split("/")[-2] for s in ds.samples] == sources
    assert ds.split_lists[-1].endswith(aug_list)


def test_augmented_auto_true_false_without_aug(tmp_path):
    write_voc2012(tmp_path, augmented=False)
    ds = build_dataset("voc2012", split="train", root=str(tmp_path), augmented="auto")
    assert not ds.augmented and len(ds) == 2
    with pytest.raises(ConfigError, match=r"dataset.augmented=true: .*SegmentationClassAug"):
        build_dataset("voc2012", split="train", root=str(tmp_path), augmented=True)
    (tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClassAug").mkdir()
    with pytest.raises(ConfigError, match=r"trainaug.txt, train_aug.txt, aug.txt"):
        build_dataset("voc2012", split="train", root=str(tmp_path), augmented=True)
    with pytest.raises(ConfigError, match=r"dataset.augmented must be auto, true or false"):
        build_dataset("voc2012", split="train", root=str(tmp_path), augmented="yes")


def test_root_conventions(voc_root):
    expected = _stems(build_dataset("voc2012", split="val", root=str(voc_root)))
    for root in (voc_root / "VOCdevkit", voc_root / "VOCdevkit" / "VOC2012"):
        assert _stems(build_dataset("voc2012", split="val", root=str(root))) == expected
    with pytest.raises(ConfigError, match=r"VOCdevkit/VOC2012") as info:
        build_dataset("voc2012", split="val", root=str(voc_root / "missing"))
    assert "\n" not in str(info.value)


def test_split_list_formats(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("2007_000001\n\n  2007_000002  \n"
                    "/JPEGImages/2007_000003.jpg /SegmentationClassAug/2007_000003.png\n2007_000001\n")
    assert read_split_list(path) == ["2007_000001", "2007_000002", "2007_000003"]
    path.write_text("\n\n")
    with pytest.raises(ConfigError, match=r"split list .*list.txt is empty"):
        read_split_list(path)


def test_list_names_missing_image_and_image_without_label(tmp_path):
    voc = write_voc2012(tmp_path, augmented=False)
    (voc / "JPEGImages" / "2008_000001.jpg").unlink()
    with pytest.raises(ConfigError) as info:
        build_dataset("voc2012", split="val", root=str(tmp_path))
    assert "val.txt lists 2008_000001" in str(info.value) and "JPEGImages/2008_000001.jpg" in str(info.value)
    label = voc / "SegmentationClass" / "2007_000001.png"
    label.unlink()
    with pytest.raises(ConfigError) as info:
        build_dataset("voc2012", split="train", root=str(tmp_path))
    assert "JPEGImages/2007_000001.jpg has no label" in str(info.value) and str(label) in str(info.value)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("")
    with pytest.raises(ConfigError, match=r"train.txt is empty"):
        build_dataset("voc2012", split="train", root=str(tmp_path))


def test_value_outside_the_map_and_colour_labels(tmp_path):
    voc = write_voc2012(tmp_path, splits={"train": 3, "val": 1}, augmented=False)
    bad = voc / "SegmentationClass" / "2007_000001.png"
    im = Image.open(bad)
    values = np.array(im)
    values[0, 0] = 30
    fixed = Image.fromarray(values)
    fixed.putpalette(im.getpalette())
    fixed.save(bad)

    ds = build_dataset("voc2012", split="train", root=str(tmp_path), augment=False)
    report = ds.verify()
    assert len(report.bad) == 1 and str(bad) in report.bad[0] and "[30]" in report.bad[0]
    with pytest.raises(BadSampleError, match=r"\[30\]"):
        ds[1]
    skipping = build_dataset("voc2012", split="train", root=str(tmp_path), augment=False, on_bad_sample="skip")
    _, label = skipping[1]  # sample 2 (n = 2: classes 5, 6) instead
    assert label[12, 10].item() == 5 and len(skipping.skipped) == 1

    rgb = voc / "SegmentationClass" / "2007_000002.png"
    Image.open(rgb).convert("RGB").save(rgb)
    with pytest.raises(BadSampleError, match=r"2007_000002.png: expected a paletted .* got mode RGB"):
        ds.load(2)


def test_train_transform_shapes_with_defaults(voc_root):
    ds = build_dataset("voc2012", split="train", root=str(voc_root))
    assert ds.base_size is None
    image, label = ds[0]
    assert tuple(image.shape) == (3, 512, 512) and tuple(label.shape) == (512, 512)
    assert set(label.unique().tolist()) <= {0, 1, 2, 255}
    small = build_dataset("voc2012", split="train", root=str(voc_root), crop_size=[321, 321])
    assert tuple(small[0][0].shape) == (3, 321, 321)
