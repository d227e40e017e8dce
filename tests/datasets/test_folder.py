"""The additions to the base class (seglab.datasets.folder) on a hand-made two-image folder."""
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from seglab.datasets.folder import (LabelMap, MissingSplitError, Sample, SegmentationFolder, pair_by_suffix,
                                    require_dir, require_split_dir)
from seglab.errors import ConfigError


class Tiny(SegmentationFolder):
    name = "tiny"
    num_classes = 2
    class_names = ["a", "b"]
    palette = [(0, 0, 0), (255, 255, 255)]


@pytest.fixture
def folder(tmp_path):
    for i, group in enumerate(("x", "y", "x")):
        cv2.imwrite(str(tmp_path / f"{i}_img.png"), np.full((4, 6, 3), 10 * i, np.uint8))
        if i != 1:
            cv2.imwrite(str(tmp_path / f"{i}_lbl.png"), np.array([[0, 1, 255, 0, 1, 1]] * 4, np.uint8))
    cv2.imwrite(str(tmp_path / "0_inst.png"), np.full((4, 6), 26001, np.uint16))
    return tmp_path


def test_sample_instance_is_optional():
    assert Sample("a.png", None).instance is None and Sample("a.png", "b.png", "g").group == "g"
    assert Sample("a.png", "b.png", "g", "c.png").instance == "c.png"


def test_pair_by_suffix_skips_into_a_list(folder):
    images = sorted(folder.glob("*_img.png"))
    message = f"image {folder / '1_img.png'} has no label; expected {folder / '1_lbl.png'}"
    with pytest.raises(ConfigError, match=message):
        pair_by_suffix(images, "_img.png", lambda p: p.parent, "_lbl.png")
    skipped = []
    pairs = pair_by_suffix(images, "_img.png", lambda p: p.parent, "_lbl.png", skipped=skipped)
    assert [p[1].name for p in pairs] == ["0_lbl.png", "2_lbl.png"]
    assert skipped == [f"dataset: image {folder / '1_img.png'} has no label; expected {folder / '1_lbl.png'}"]


def test_split_dirs():
    with pytest.raises(MissingSplitError, match="expected the val images at /no/where "):
        require_split_dir(Path("/no/where"), "the val images")
    assert issubclass(MissingSplitError, ConfigError)
    with pytest.raises(ConfigError) as err:
        require_dir(Path("/no/where"), "the root")
    assert not isinstance(err.value, MissingSplitError)


def test_unpaired_groups_instances_and_report(folder, caplog):
    skipped = []
    pairs = pair_by_suffix(sorted(folder.glob("*_img.png")), "_img.png", lambda p: p.parent, "_lbl.png",
                           skipped=skipped)
    samples = [Sample(str(i), str(lab), g, str(folder / "0_inst.png") if i.name == "0_img.png" else None)
               for (i, lab), g in zip(pairs, ("x", "y"))]
    with caplog.at_level(logging.WARNING, logger="seglab.datasets.folder"):
        ds = Tiny(samples, "val", LabelMap.identity(2, "0, 1 and 255"), root=str(folder), unpaired=skipped,
                  on_bad_sample="skip")
    assert "1_img.png has no label" in caplog.text
    assert ds.skipped == skipped and len(ds) == 2
    assert ds.group_indices() == {"x": [0], "y": [1]}
    assert ds.load_instance(0).dtype == np.int32 and int(ds.load_instance(0)[0, 0]) == 26001
    assert ds.load_instance(1) is None
    report = ds.verify(count_labels=True)
    assert report.bad == skipped and report.num_labelled == 2 and report.class_names == ["a", "b"]
    # per image: 8 zeros, 12 ones, 4 ignore
    assert report.label_counts[0] == 16 and report.label_counts[1] == 24 and report.label_counts[255] == 8
    assert Tiny.splits_to_check({}) == ("train", "val", "test")
