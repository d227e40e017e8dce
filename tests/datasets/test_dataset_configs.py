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
