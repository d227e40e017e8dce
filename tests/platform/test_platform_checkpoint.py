import os

import pytest
import torch

from seglab.platform import checkpoint as ckpt


def test_save_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save_atomic({"epoch": 1, "w": torch.ones(3)}, str(path))
    ckpt.save_atomic({"epoch": 2, "w": torch.zeros(3)}, str(path))
    state = ckpt.load(str(path))
    assert state["epoch"] == 2 and torch.equal(state["w"], torch.zeros(3))
    assert os.listdir(tmp_path) == ["c.pt"]


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save_atomic({"epoch": 1}, str(path))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ckpt.save_atomic({"epoch": 2, "bad": Unpicklable()}, str(path))
    assert ckpt.load(str(path))["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


def test_load_model_rebuilds_the_recorded_model(tmp_path):
    from seglab.models import build_model

    model = build_model("hrnet_w18_small_v1", num_classes=5)
    run = {"model": {"name": "hrnet_w18_small_v1", "pretrained": None}}
    ckpt.save_atomic({"model": model.state_dict(), "num_classes": 5, "run": run}, str(tmp_path / "b.pt"))
    loaded = ckpt.load_model(str(tmp_path / "b.pt"))
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    assert torch.equal(loaded(x).logits, model(x).logits)
