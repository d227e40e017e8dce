"""The Hydra dataset configs build the data sets for the platform's train / val splits (on fixtures)."""
import importlib
from pathlib import Path

import pytest
import yaml

from seglab.datasets import build_dataset
from seglab.datasets.fixtures.acdc import write_acdc
from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.datasets.fixtures.synthia import write_synthia
from seglab.platform.config import DatasetConfig

for _module in ("cityscapes", "acdc", "synthia", "reduced"):
    importlib.import_module(f"seglab.datasets.{_module}")  # registers the data sets

CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "dataset"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("all")
    write_cityscapes(root, {"train": 1, "val": 1})
    write_acdc(root, {"train": 1, "val": 1})
    write_synthia(root, num_images=3)
    return root


@pytest.mark.parametrize("name, train_shape, val_shape", [
    ("cityscapes", (512, 1024), (32, 64)),  # crop; full resolution
    ("acdc", (540, 960), (32, 64)),
    ("synthia", (512, 1024), (32, 64)),
    ("cityscapes11", (384, 768), (384, 768)),  # the paper's 768x384 for both
    ("synthia11", (384, 768), (384, 768)),
])
def test_config_builds_both_splits(root, name, train_shape, val_shape):
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["root"].startswith("data/")
    cfg["root"] = str(root)
    dc = DatasetConfig.from_dict(cfg)
    for split, shape in (("train", train_shape), ("val", val_shape)):
        ds = build_dataset(dc.name, split=split, **dc.split_kwargs(split))
        assert ds.augment == (split == "train")
        image, label = ds[0]
        assert tuple(image.shape) == (3, *shape) and tuple(label.shape) == shape


REAL = ["acdc", "ade20k", "cityscapes", "cityscapes11", "helen", "synthia", "synthia11", "voc2012"]


@pytest.mark.parametrize("name", REAL)
def test_real_presets_select_on_held_out_train_files(name):
    """Every real data set's preset selects on 10 % of train held out by file name (never on the
    report split); ``selection_fraction=null`` turns it off, and then selection is the report split."""
    from seglab.platform.build import report_split_name, selection_is_report, selection_split_name

    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert cfg["selection_fraction"] == 0.1 and "test" not in cfg
    on = DatasetConfig.from_dict(cfg)
    assert not selection_is_report(on) and selection_split_name(on) != report_split_name(on)
    off = DatasetConfig.from_dict({**cfg, "selection_fraction": None})
    assert selection_is_report(off) and selection_split_name(off) == report_split_name(off)


def test_a_held_out_fraction_takes_about_its_share_of_files():
    """The held-out rule (a hash of the file's path) takes ~10 % of 2000 names (binomial: within 4 sigma)."""
    import math

    from seglab.platform.build import held_out

    n = 2000
    taken = sum(held_out(f"leftImg8bit/train/city/img_{i:05d}.png", 0.1) for i in range(n))
    assert abs(taken - 0.1 * n) <= 4 * math.sqrt(n * 0.1 * 0.9)


def test_a_root_too_small_to_hold_files_out_names_the_way_out(root):
    from seglab.errors import ConfigError
    from seglab.platform.build import build_datasets

    cfg = {**yaml.safe_load((CONF / "cityscapes.yaml").read_text()), "root": str(root)}  # 1 train image
    with pytest.raises(ConfigError, match=r"both must be non-empty \(a small root: dataset.selection_fraction=null"):
        build_datasets(DatasetConfig.from_dict(cfg))
    train, val = build_datasets(DatasetConfig.from_dict({**cfg, "selection_fraction": None}))
    assert len(train) == 1 and len(val) == 1
