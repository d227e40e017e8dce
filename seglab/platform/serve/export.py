"""``seglab export``: a model as an ONNX or TorchScript file, checked against eager PyTorch before it is kept.

The exported graph is :class:`Deployable`: ``images`` ``(B, 3, H, W)`` float32, preprocessed as the
model trained (RGB, ``x / 255``, minus ``mean``, divided by ``std``: :meth:`Loaded.describe_preprocessing`)
-> ``logits`` ``(B, C, H, W)`` at the input size (bilinear, ``align_corners=False``); argmax over C is
the label map. The preprocessing, classes, palette and model name travel in the file: ONNX
``metadata_props`` (key ``seglab``, JSON), TorchScript an extra file ``seglab.json``.

Exporters: ONNX with torch's ``torch.export``-based exporter (``dynamo``, torch's default) or its
TorchScript-based one (``legacy``, faster to export); TorchScript by tracing. ``dynamic``: batch, height
and width are free (checked with a batch of 2 at a second size: a graph that fixed a shape the model's
code depends on fails there); otherwise the file takes ``1 x 3 x size`` only.

Verification (:func:`verify`): the file is run (onnxruntime's CPU provider / ``torch.jit.load``) on a
sample image (with ``dynamic`` also a batch of 2 at a second size) and compared with the eager model:
max |Δlogits|, max |logits| and the share of pixels
whose argmax agrees. The file is written to a temporary name and renamed only when the argmax agrees on
at least :data:`MIN_AGREEMENT` of the pixels and max |Δlogits| <= :data:`REL_TOL` x max(1, max |logits|).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError
from seglab.platform.serve.source import Loaded

FORMATS = ("onnx", "torchscript")
EXPORTERS = ("dynamo", "legacy")
MIN_AGREEMENT = 0.999
REL_TOL = 1e-3
OPSET = 18


class Deployable(nn.Module):
    """``model(images).logits`` resized to the input size: the exported graph's one output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        out = self.model(images)
        logits = out.logits if hasattr(out, "logits") else out
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


@dataclass
class Parity:
    size: Tuple[int, int, int]  # batch, height, width
    max_abs_diff: float
    max_abs_logit: float
    agreement: float

    @property
    def ok(self) -> bool:
        return self.agreement >= MIN_AGREEMENT and self.max_abs_diff <= REL_TOL * max(1.0, self.max_abs_logit)

    def line(self) -> str:
        return (f"{self.size[0]} x {self.size[1]}x{self.size[2]}: max |Δlogits| {self.max_abs_diff:.2e} (max |logits| "
                f"{self.max_abs_logit:.2f}), argmax agreement {100 * self.agreement:.3f} % "
                f"[{'ok' if self.ok else 'FAILED'}]")


def metadata(loaded: Loaded, fmt: str, size: Tuple[int, int], dynamic: bool) -> Dict[str, Any]:
    return {"model": loaded.name, "num_classes": loaded.num_classes, "class_names": loaded.class_names,
            "palette": [list(c) for c in loaded.palette], "format": fmt,
            "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                      "size": [None, 3, None, None] if dynamic else [1, 3, *size],
                      "dynamic": ["batch", "height", "width"] if dynamic else []},
            "output": {"name": "logits", "layout": "NCHW", "size": "the input's height and width"},
            "preprocessing": {"scale": 1 / 255, "mean": list(loaded.mean), "std": list(loaded.std),
                              "resize_long_side": loaded.base_size, "text": loaded.describe_preprocessing()},
            "source": loaded.source}


def sample_images(loaded: Loaded, size: Tuple[int, int], batch: int = 1, seed: int = 0) -> Tensor:
    """Preprocessed random RGB images ``(batch, 3, H, W)``: smooth blobs, so that classes form regions."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.integers(0, 256, size=(batch, 3, max(1, h // 8), max(1, w // 8))).astype(np.float32)
    images = F.interpolate(torch.from_numpy(coarse), size=(h, w), mode="bilinear", align_corners=False)
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    return ((images / 255.0 - mean) / std).float()


def eager_logits(net: nn.Module, images: Tensor, what: str) -> Tensor:
    try:
        with torch.no_grad():
            return net(images)
    except (RuntimeError, ValueError) as error:
        raise ConfigError(f"{what}: the model cannot take a {images.shape[-2]}x{images.shape[-1]} input "
                          f"({str(error).splitlines()[0][:140]})") from None


def export_onnx(net: nn.Module, sample: Tensor, path: str, dynamic: bool, exporter: str, meta: Dict[str, Any]) -> None:
    import onnx

    kwargs: Dict[str, Any] = {"input_names": ["images"], "output_names": ["logits"], "opset_version": OPSET}
    if exporter == "dynamo":
        kwargs["dynamo"] = True
        if dynamic:
            from torch.export import Dim

            # AUTO: a dimension the model's code fixes (e.g. a batch-dependent reshape) stays fixed, the others
            # free; which ones are is read back from the file into the metadata
            kwargs["dynamic_shapes"] = {"images": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}}
    else:
        kwargs["dynamo"] = False
        if dynamic:
            axes = {0: "batch", 2: "height", 3: "width"}
            kwargs["dynamic_axes"] = {"images": axes, "logits": axes}
    torch.onnx.export(net, (sample,), path, **kwargs)
    graph = onnx.load(path)
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    free = [name for name, d in zip(("batch", "channels", "height", "width"), dims) if not d.HasField("dim_value")]
    meta["input"].update(dynamic=free, size=[int(d.dim_value) if d.HasField("dim_value") else None for d in dims])
    entry = graph.metadata_props.add()
    entry.key, entry.value = "seglab", json.dumps(meta)
    onnx.save(graph, path)


def export_torchscript(net: nn.Module, sample: Tensor, path: str, meta: Dict[str, Any]) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(net, sample, check_trace=False)
    torch.jit.save(traced, path, _extra_files={"seglab.json": json.dumps(meta)})


def runner(path: str, fmt: str) -> Callable[[Tensor], Tensor]:
    """A function running the exported file on a batch (onnxruntime's CPU provider / torch.jit.load)."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing run raises; its log line would be a second line on stderr
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    module = torch.jit.load(path, map_location="cpu")
    module.eval()

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return module(x)
    return run


def compare(reference: Tensor, got: Tensor) -> Tuple[float, float, float]:
    """(max |Δ|, max |reference|, argmax agreement) of two ``(B, C, H, W)`` logit maps."""
    if got.shape != reference.shape:
        return float("inf"), float(reference.abs().max()), 0.0
    diff = float((got.float() - reference.float()).abs().max())
    agree = float((got.argmax(1) == reference.argmax(1)).float().mean())
    return diff, float(reference.abs().max()), agree


def verify(path: str, fmt: str, net: nn.Module, loaded: Loaded, sizes: List[Tuple[int, int, int]]) -> List[Parity]:
    """The file against the eager model for each ``(batch, height, width)`` of ``sizes`` (a fresh sample each)."""
    run = runner(path, fmt)
    out = []
    for k, (batch, h, w) in enumerate(sizes):
        images = sample_images(loaded, (h, w), batch=batch, seed=k + 1)
        reference = eager_logits(net, images, "--size")
        try:
            got = run(images)
        except Exception as error:  # onnxruntime / TorchScript runtime errors
            text = " ".join(str(error).split())
            raise ConfigError(f"the exported {fmt} file fails on a batch of {batch} {h}x{w} images (its graph fixed a "
                              f"shape the model's code depends on): {text[:200]}; export without --dynamic, or "
                              f"try --exporter legacy") from None
        out.append(Parity((batch, h, w), *compare(reference, got)))
    return out


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (torch.export wraps the one that says what went wrong)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def second_size(size: Tuple[int, int]) -> Tuple[int, int]:
    return size[0] + 32, size[1] + 64


def export(loaded: Loaded, fmt: str, out: str, size: Tuple[int, int], dynamic: bool = False,
           exporter: str = "dynamo") -> Tuple[Dict[str, Any], List[Parity]]:
    """Export ``loaded`` to ``out`` and verify it; ``(metadata, parity per checked size)``. The file is
    renamed into place only when every check passes (otherwise nothing is left at ``out``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown; one of {', '.join(FORMATS)}")
    net = Deployable(loaded.model.cpu().eval()).eval()
    sample = sample_images(loaded, size)
    eager_logits(net, sample, "--size")  # a size the model cannot take: one line before exporting
    meta = metadata(loaded, fmt, size, dynamic)
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        try:
            if fmt == "onnx":
                export_onnx(net, sample, tmp, dynamic, exporter, meta)
            else:
                export_torchscript(net, sample, tmp, meta)
        except ConfigError:
            raise
        except Exception as error:  # the exporter's own errors: an op it lacks, a shape it cannot trace
            cause = root_cause(error)
            raise ConfigError(f"{loaded.name} does not export to {fmt} ({exporter if fmt == 'onnx' else 'trace'}): "
                              f"{type(cause).__name__}: {' '.join(str(cause).split())[:240]}"
                              + ("; try --exporter legacy" if fmt == "onnx" and exporter == "dynamo" else "")) from None
        checks = [(1, *size), (2, *second_size(size))] if dynamic else [(1, *size)]  # dynamic: batch too
        parity = verify(tmp, fmt, net, loaded, checks)
        if all(p.ok for p in parity):
            os.replace(tmp, out)
        return meta, parity
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
