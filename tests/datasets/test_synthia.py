"""SYNTHIA-RAND-CITYSCAPES loader on fixtures in the official layout (16-bit, 3-channel labels)."""
import cv2
import numpy as np
import pytest

from seglab.datasets import build_dataset
from seglab.datasets.fixtures.synthia import synthia_label_png, write_synthia
from seglab.datasets.folder import BadSampleError
from seglab.datasets.labels import CITYSCAPES_CLASS_NAMES
from seglab.datasets.synthia import ABSENT_TRAIN_IDS, SYNTHIA_CLASSES, Synthia
from seglab.errors import ConfigError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthia")
    write_synthia(root, num_images=9, seed=2)
    return root


def test_class_table_by_name():
    # every SYNTHIA class with a Cityscapes counterpart maps to the train id of the same class
    same = {"pedestrian": "person"}
    for raw, (name, train_id) in SYNTHIA_CLASSES.items():
        if name in ("void", "parking-slot", "road-work", "lanemarking"):
            assert train_id == 255, name
        else:
            assert CITYSCAPES_CLASS_NAMES[train_id] == same.get(name, name), (raw, name)
    mapped = sorted(t for _, t in SYNTHIA_CLASSES.values() if t != 255)
    assert mapped == list(range(19))  # each train id exactly once
    assert [CITYSCAPES_CLASS_NAMES[t] for t in ABSENT_TRAIN_IDS] == ["terrain", "truck", "train"]


def test_reads_the_class_id_from_the_red_channel(root):
    ds = build_dataset("synthia", "all", root=str(root))
    raw = cv2.imread(ds.samples[0].label, cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (32, 64, 3)
    assert raw[..., 1].min() > 255  # the green channel (instances) is not a class id
    _, label = ds.load(0)
    # hand-written expectations for a few ids, then the whole image
    lut = np.full(23, 255, np.uint8)
    lut[[3, 4, 2, 21, 5, 7, 15, 9, 6, 16, 1, 10, 17, 8, 18, 19, 20, 12, 11]] = np.arange(19)
    np.testing.assert_array_equal(label, lut[raw[..., 2]])
    assert lut[3] == 0 and lut[1] == 10 and lut[10] == 11 and lut[22] == 255


def test_deterministic_split(root):
    names = [f"{i:07d}.png" for i in range(9)]
    train = build_dataset("synthia", "train", root=str(root))
    val = build_dataset("synthia", "val", root=str(root))
    assert [s.image.rsplit("/", 1)[1] for s in train.samples] == names[:7]
    assert [s.image.rsplit("/", 1)[1] for s in val.samples] == names[7:]
    assert all(s.label.endswith(f"GT/LABELS/{s.image.rsplit('/', 1)[1]}") for s in val.samples)
    assert len(build_dataset("synthia", "val", root=str(root), val_fraction=1 / 3)) == 3
    assert len(build_dataset("synthia", "all", root=str(root))) == 9
    assert train.augment and not val.augment


def test_explicit_file_lists(root, tmp_path):
    ds = build_dataset("synthia", "val", root=str(root), files=["0000004.png", "0000001.png"])
    assert [s.image.rsplit("/", 1)[1] for s in ds.samples] == ["0000004.png", "0000001.png"]
    listing = tmp_path / "val.txt"
    listing.write_text("0000002.png\n\n0000003.png\n")
    assert len(build_dataset("synthia", "val", root=str(root), files=str(listing))) == 2
    with pytest.raises(ConfigError, match=r"dataset\.files: .*RGB/0000099\.png not found \(1 of 2"):
        build_dataset("synthia", "val", root=str(root), files=["0000001.png", "0000099.png"])
    with pytest.raises(ConfigError, match=r"dataset\.files: .*nope\.txt not found"):
        build_dataset("synthia", "val", root=str(root), files=str(tmp_path / "nope.txt"))


def test_image_size_and_defaults(root):
    assert Synthia.num_classes == 19 and Synthia.class_weights is None
    ds = build_dataset("synthia", "val", root=str(root), image_size=[16, 48])
    image, label = ds.load(0)
    assert image.shape == (16, 48, 3) and label.shape == (16, 48)
    assert tuple(build_dataset("synthia", "train", root=str(root))[0][0].shape) == (3, 512, 1024)
    with pytest.raises(ConfigError, match=r"dataset\.image_size must be null or two positive ints"):
        build_dataset("synthia", "val", root=str(root), image_size=384)
    with pytest.raises(ConfigError, match=r"dataset\.split must be one of train, val, all"):
        build_dataset("synthia", "test", root=str(root))


def test_bad_labels(tmp_path):
    write_synthia(tmp_path, num_images=3)
    labels = sorted((tmp_path / "GT/LABELS").glob("*.png"))
    cv2.imwrite(str(labels[0]), np.full((32, 64), 3, np.uint16))  # single channel
    ids = np.full((32, 64), 3, np.int64)
    ids[0, 0] = 23
    cv2.imwrite(str(labels[1]), synthia_label_png(ids))
    ds = build_dataset("synthia", "all", root=str(tmp_path))
    report = ds.verify()
    assert report.bad == [
        f"{labels[0]}: expected a 3-channel SYNTHIA label (class id in the red channel), got shape (32, 64)",
        f"{labels[1]}: label values [23] are outside the label map (allowed: SYNTHIA class ids 0..22 in the "
        f"first (red) channel)",
    ]
    with pytest.raises(BadSampleError, match="3-channel"):
        ds[0]
    (tmp_path / "GT/LABELS").rename(tmp_path / "GT/labels")
    with pytest.raises(ConfigError, match=f"expected the SYNTHIA labels GT/LABELS/ at {tmp_path / 'GT/LABELS'} "):
        build_dataset("synthia", "all", root=str(tmp_path))
