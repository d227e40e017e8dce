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


# R5 (reliability issue): a process killed while it writes a checkpoint leaves the previous one intact.
_WRITER = r"""
import sys, torch
from seglab.models import build_model
from seglab.platform import checkpoint as ckpt

path = sys.argv[1]
torch.manual_seed(0)
model = build_model("hrnet_w18_small_v1", num_classes=5)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.randn(2, 3, 64, 64)).logits.mean().backward()
opt.step()
run = {"model": {"name": "hrnet_w18_small_v1", "pretrained": None}}
state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1, "num_classes": 5, "run": run}
ckpt.save_atomic(state, path)
print("first", flush=True)
# then keep rewriting a large checkpoint (about 400 MB: each write takes long enough to be killed in it)
state["epoch"], state["padding"] = 2, torch.ones(100_000_000)
while True:
    ckpt.save_atomic(state, path)
"""


def test_r5_a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one_resumable(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "first"
        deadline = time.monotonic() + 60
        torn = []
        while time.monotonic() < deadline and not torn:  # the second write has started and is half done
            torn = [p for p in tmp_path.glob(".checkpoint.pt.*.tmp") if p.stat().st_size > 50_000_000]
            time.sleep(0.005)
        assert torn, "the writer never got into its second write"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert torn[0].exists() and torn[0].stat().st_size < 400_000_000  # really torn: killed mid-write
    with pytest.raises(Exception):
        torch.load(str(torn[0]), weights_only=True)  # the torn file is not a checkpoint
    state = ckpt.load(str(path))  # the checkpoint itself is the previous, complete one
    assert state["epoch"] == 1 and "padding" not in state
    model = ckpt.load_model(str(path))  # and it resumes: rebuild, load the optimizer, take a step
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(state["optimizer"])
    assert all("momentum_buffer" in s for s in opt.state_dict()["state"].values())
    loss = model(torch.randn(2, 3, 64, 64)).logits.mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
