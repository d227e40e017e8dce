"""``check_dataset`` and ``seglab data check`` on the Cityscapes, ACDC and SYNTHIA fixtures."""
import importlib

import cv2
import numpy as np
import pytest
from PIL import Image

from seglab.datasets.check import check_dataset, format_reports, parse_options, parse_value
from seglab.datasets.fixtures.acdc import write_acdc
from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.datasets.fixtures.synthia import write_synthia
from seglab.errors import ConfigError
from seglab.platform.cli import main

for _module in ("cityscapes", "acdc", "synthia", "reduced"):
    importlib.import_module(f"seglab.datasets.{_module}")  # registers the data sets

cs_labels = pytest.importorskip("cityscapesscripts.helpers.labels")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("check")
    write_cityscapes(base / "cityscapes", {"train": 3, "val": 2, "test": 2, "train_extra": 1}, coarse=True)
    write_acdc(base / "acdc", {"train": 2, "val": 1, "test": 1}, conditions=("fog", "night", "snow"))
    write_synthia(base / "synthia", num_images=9)
    return base


def _reference_counts(label_files):
    lut = np.full(256, 255, np.int64)
    for lab in cs_labels.labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    return sum(np.bincount(lut[np.asarray(Image.open(f))].ravel(), minlength=256) for f in label_files)


def test_check_cityscapes_walks_every_split(roots):
    root = roots / "cityscapes"
    calls = []
    reports = check_dataset("cityscapes", str(root), progress=lambda *a: calls.append(a))
    assert [(r.split, r.num_samples, r.num_labelled) for r in reports] == [("train", 3, 3), ("val", 2, 2),
                                                                           ("test", 2, 0)]
    assert reports[0].per_group == {"aachen": 2, "bochum": 1}
    assert all(r.ok for r in reports)
    expected = _reference_counts(sorted((root / "gtFine/train").rglob("*_labelIds.png")))
    np.testing.assert_array_equal(reports[0].label_counts, expected)
    assert reports[0].label_counts.sum() == 3 * 32 * 64
    assert ("train", 3, 3) in calls and ("test", 2, 2) in calls
    coarse = check_dataset("cityscapes", str(root), annotations="coarse")
    assert [(r.split, r.num_samples) for r in coarse] == [("train", 3), ("train_extra", 1), ("val", 2)]


def test_check_acdc_and_synthia(roots):
    acdc = check_dataset("acdc", str(roots / "acdc"), conditions=["fog", "night", "snow"])
    assert [(r.split, r.per_group) for r in acdc] == [
        ("train", {"fog": 2, "night": 2, "snow": 2}), ("val", {"fog": 1, "night": 1, "snow": 1}),
        ("test", {"fog": 1, "night": 1, "snow": 1})]
    synthia = check_dataset("synthia", str(roots / "synthia"))
    assert [(r.split, r.num_samples) for r in synthia] == [("train", 7), ("val", 2)]
    raw = sum(np.bincount(cv2.imread(str(f), cv2.IMREAD_UNCHANGED)[..., 2].ravel(), minlength=23)
              for f in sorted((roots / "synthia/GT/LABELS").glob("*.png"))[7:])
    assert synthia[1].label_counts[10] == raw[1]  # sky: SYNTHIA id 1 -> train id 10
    assert synthia[1].label_counts[255] == raw[[0, 13, 14, 22]].sum()


def test_absent_splits_are_skipped_and_no_split_is_an_error(tmp_path):
    write_cityscapes(tmp_path / "only_val", {"val": 1})
    assert [r.split for r in check_dataset("cityscapes", str(tmp_path / "only_val"))] == ["val"]
    (tmp_path / "empty" / "leftImg8bit").mkdir(parents=True)
    with pytest.raises(ConfigError, match="expected the train images leftImg8bit/train/<city>/"):
        check_dataset("cityscapes", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="leftImg8bit/test"):  # a named split must exist
        check_dataset("cityscapes", str(tmp_path / "only_val"), splits=["test"])
    with pytest.raises(ConfigError, match="not read from a root directory"):
        check_dataset("synthetic", str(tmp_path))


def test_format_reports(roots):
    reports = check_dataset("cityscapes", str(roots / "cityscapes"), splits=["val"])
    lines = format_reports(reports, root="R").splitlines()
    assert lines[0] == "cityscapes at R"
    assert lines[2].split() == ["val", "2", "2", "0"]
    assert "val: 2 groups: frankfurt 1, lindau 1" in lines
    assert lines[-1] == "no bad samples"
    counts = _reference_counts(sorted((roots / "cityscapes/gtFine/val").rglob("*_labelIds.png")))
    rows = {line[:13].strip(): line[13:].split() for line in lines if line[:13].strip()}
    for train_id, name in ((0, "road"), (10, "sky"), (255, "(ignore)")):
        share = f"{100 * counts[train_id] / 4096:.2f}%" if counts[train_id] else "-"
        assert rows[name] == [share], name
    assert rows["pixels"] == ["4096"]


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0.5", 0.5), ("true", True), ("False", False), ("null", None), ("fine", "fine"),
    ("[fog,night]", ["fog", "night"]), ("[512, 1024]", [512, 1024]), ("[]", []), ("'3'", "3"),
])
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_parse_options():
    assert parse_options(["a=1", "b = [x, y]"]) == {"a": 1, "b": ["x", "y"]}
    with pytest.raises(ConfigError, match="--option expects KEY=VALUE"):
        parse_options(["annotations"])


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("name, extra, rows", [
    ("cityscapes", [], [["train", "3", "3", "0"], ["val", "2", "2", "0"], ["test", "2", "0", "0"]]),
    ("cityscapes11", ["--split", "val"], [["val", "2", "2", "0"]]),
    ("acdc", ["-o", "conditions=[fog,night]"], [["train", "4", "4", "0"], ["val", "2", "2", "0"],
                                                ["test", "2", "0", "0"]]),
    ("synthia", [], [["train", "7", "7", "0"], ["val", "2", "2", "0"]]),
    ("synthia11", ["--option", "val_fraction=0.5"], [["train", "4", "4", "0"], ["val", "5", "5", "0"]]),
])
def test_cli_clean(roots, capsys, name, extra, rows):
    root = roots / name.rstrip("1")
    assert main(["data", "check", name, str(root), *extra]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"{name} at {root}"
    assert [line.split() for line in lines[2:2 + len(rows)]] == rows
    assert lines[-1] == "no bad samples"
    assert f"check {rows[0][0]}" in err  # the progress bar


def test_cli_bad_samples_exit_1(tmp_path, capsys):
    write_cityscapes(tmp_path, {"train": 2, "val": 1})
    labels = sorted((tmp_path / "gtFine/train").rglob("*_labelIds.png"))
    cv2.imwrite(str(labels[0]), np.full((32, 64), 40, np.uint8))
    labels[1].unlink()
    assert main(["data", "check", "cityscapes", str(tmp_path), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    assert "2 bad sample(s):" in out
    assert "  [train] dataset: image " in out and f"has no label; expected {labels[1]}" in out
    assert f"  [train] {labels[0]}: label values [40] are outside the label map" in out
    assert out.splitlines()[2].split() == ["train", "1", "1", "2"]


@pytest.mark.parametrize("argv, message", [
    (["data", "check", "cityscapes", "{missing}"], "seglab: error: dataset.root: expected the Cityscapes root"),
    (["data", "check", "atlantis", "{missing}"], "seglab: error: unknown dataset 'atlantis'; valid dataset names:"),
    (["data", "check", "acdc", "{acdc}", "-o", "conditions=[haze]"], "seglab: error: dataset.conditions must be"),
    (["data", "check", "acdc", "{acdc}", "-o", "weather=fog"], "seglab: error: unknown key dataset.weather"),
    (["data", "check", "acdc", "{acdc}", "-o", "root=x"], "seglab: error: dataset.root: give the root as the ROOT"),
    (["data", "check", "acdc", "{acdc}", "-o", "split=val"], "seglab: error: dataset.split: name the splits"),
    (["data", "check", "acdc", "{acdc}", "-o", "workers=3"], "seglab: error: --option workers: not a dataset option"),
])
def test_cli_config_errors_exit_2(roots, tmp_path, capsys, argv, message):
    argv = [a.format(missing=tmp_path / "missing", acdc=roots / "acdc") for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(message) and err.count("\n") == 1
