"""`seglab export`: ONNX (run by onnxruntime) and TorchScript files of every model family the issue names
reproduce the eager model's logits and argmax; the preprocessing travels in the file; bad input is one line.

Each file is checked here independently of the command's own check: a fresh input, the eager model's
``logits`` resized to the input (what the file promises), and the file run by onnxruntime /
``torch.jit.load``. Tolerance: max |Δlogits| <= 1e-3 x max(1, max |logits|) (float32 kernels of another
library reorder sums: the random-weight models here have logits up to a few hundred) and argmax
agreement >= 99.9 % of the pixels. One export per family and format, 64x128 inputs; the ONNX file of
OVeNet (its grid_sample) with torch's default exporter (torch.export), the others with the
TorchScript-based one (a third of the time)."""
import json

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from seglab.platform.serve.export import export
from seglab.platform.serve.source import resolve
from tests.platform.serve.test_predict import run_cli, tiny_checkpoint

SIZE = (64, 128)
FAMILIES = {"hrnet": "hrnet_w18_small_v1", "ovenet": "ovenet_hrnet_w18_small_v1", "deeplabv3plus": "deeplabv3plus_r50",
            "phgmm": "phgmm_r18"}


def eager(model, x):
    with torch.no_grad():
        return F.interpolate(model(x).logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def run_file(path, fmt, x):
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        return torch.jit.load(str(path))(x)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_file_reproduces_the_eager_model(tmp_path, family, fmt):
    name = FAMILIES[family]
    model = tiny_checkpoint(tmp_path / "best.pt", name, 5, {"name": "synthetic"})
    loaded = resolve(str(tmp_path / "best.pt"))
    out = tmp_path / f"model.{fmt}"
    exporter = "dynamo" if family == "ovenet" else "legacy"
    meta, parity = export(loaded, fmt, str(out), SIZE, exporter=exporter)
    assert out.exists() and all(p.ok for p in parity)
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(7))
    reference, got = eager(model.eval(), x), run_file(out, fmt, x)
    assert got.shape == reference.shape == (1, 5, *SIZE)
    diff = (got - reference).abs().max().item()
    assert diff <= 1e-3 * max(1.0, reference.abs().max().item()), (family, fmt, diff)
    assert (got.argmax(1) == reference.argmax(1)).float().mean().item() >= 0.999
    print(f"parity {family} {fmt}: max|Δ| {diff:.2e}, max|logits| {reference.abs().max().item():.1f}, "
          f"argmax {100 * (got.argmax(1) == reference.argmax(1)).float().mean().item():.3f} %")
    if fmt == "onnx":  # the preprocessing in the file's metadata
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        stored = json.loads(props["seglab"])
    else:
        files = {"seglab.json": ""}
        torch.jit.load(str(out), _extra_files=files)
        stored = json.loads(files["seglab.json"])
    assert stored["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert stored["preprocessing"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert stored["input"]["layout"] == "NCHW" and stored["num_classes"] == 5 and stored == meta


def test_cli_prints_parity_and_dynamic_files_take_other_sizes(tmp_path, capsys):
    model = tiny_checkpoint(tmp_path / "best.pt", "hrnet_w18_small_v1", 5, {"name": "synthetic"})
    out = tmp_path / "m.onnx"
    code, text, err = run_cli(["export", str(tmp_path / "best.pt"), "--format", "onnx", "--out", str(out),
                               "--size", "64x128", "--dynamic", "--exporter", "legacy"], capsys)
    assert code == 0, err
    assert "minus mean [0.485, 0.456, 0.406]" in text and text.count("argmax agreement 100.000 %") == 2
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(8))  # another batch and size
    reference, got = eager(model.eval(), x), run_file(out, "onnx", x)
    assert (got - reference).abs().max().item() <= 1e-3 * max(1.0, reference.abs().max().item())


@pytest.mark.parametrize("argv, needle", [
    (["--format", "tflite"], "--format tflite: unknown; one of onnx, torchscript"),
    (["--format", "onnx", "--size", "0x128"], "--size must be HxW with positive integers"),
    (["--format", "onnx", "--size", "64"], "--size must be HxW with positive integers"),
    (["--format", "onnx", "--exporter", "fast"], "--exporter fast: unknown"),
])
def test_bad_export_is_one_line_exit_2_and_no_file(tmp_path, capsys, argv, needle):
    tiny_checkpoint(tmp_path / "best.pt", "hrnet_w18_small_v1", 5, {"name": "synthetic"})
    code, _, err = run_cli(["export", str(tmp_path / "best.pt"), "--out", str(tmp_path / "m.onnx"), *argv], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
