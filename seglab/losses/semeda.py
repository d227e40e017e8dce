"""SEMEDA (Chen, Dapogny & Cord, Pattern Recognition 2020): the edge network g and the ``semeda`` /
``sobel`` losses.

Citations ``S:n`` are lines of the paper's text copy (see ``shared/specs/semeda_phgmm.md`` part A).
Every choice the paper leaves open is marked **[proposal]** and is a keyword switch.

Stage 1 (eq. 7, S:140-142, Alg. 1 S:162-179): g is pre-trained to predict the semantic edges
E* of one-hot ground-truth masks S* (:func:`pretrain_edge_net`, checked with :func:`edge_f1`, stored
with :func:`save_edge_net` / :func:`load_edge_net`). Stage 2 (S:144, S:181-195): the segmentation
net f is trained with ``L = CE + sum_l lambda_l * ||psi_l(g(S_hat)) - psi_l(g(S*))||_1`` (eqs. 4-6)
while g stays frozen (:class:`SemedaLoss`). :class:`SobelLoss` is the paper's baseline that replaces
g by fixed Sobel kernels (S:242, S:248).

Only torch / numpy are imported here (no ray, mlflow, hydra or omegaconf): everything is usable
from a notebook with plain arguments.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import math
import os
import tempfile
from collections import abc
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple,
                    Union)

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError, check
from seglab.losses import LossOutput, register_loss
from seglab.losses.ce import (ClassWeights, check_class_weights, check_ignore_index, check_target,
                              pixel_cross_entropy, prepare_logits)

if TYPE_CHECKING:
    from seglab.models.outputs import SegOutput

__all__ = [
    "EDGE_NET_FORMAT",
    "EMBEDDINGS",
    "REDUCTIONS",
    "SOBEL_MODES",
    "SemedaEdgeNet",
    "SemedaLoss",
    "SobelLoss",
    "edge_f1",
    "edge_net_hash",
    "edge_targets",
    "load_edge_net",
    "masked_l1",
    "one_hot_masks",
    "pretrain_edge_net",
    "save_edge_net",
    "sobel_responses",
]

#: ``embedding`` switch of g: psi_1, psi_2 after the ReLU (default, as Johnson et al.'s perceptual
#: loss, ref [5]) or before it [proposal, spec A1].
EMBEDDINGS = ("post_relu", "pre_relu")
#: ``reduction`` switch of the L1 terms [proposal, spec A2]: ``mean`` = sum over non-void pixels
#: and channels / (channels * non-void pixels) (the perceptual-loss normalisation, S:115); ``sum``
#: = the plain sum of eq. 5 (S:128) over the batch.
REDUCTIONS = ("mean", "sum")
#: ``mode`` switch of the Sobel baseline [proposal, spec A1]: the 2C components (G_x, G_y per class)
#: or the C gradient magnitudes sqrt(G_x^2 + G_y^2 + eps).
SOBEL_MODES = ("components", "magnitude")
#: Version tag stored in a saved edge-net file.
EDGE_NET_FORMAT = "seglab.semeda_edge_net/1"
#: ``eps`` under the square root of the Sobel gradient magnitude (keeps its gradient finite at 0).
SOBEL_EPS = 1e-8

_EDGE_NET_KEY = "loss.edge_net"


# ============================================================================ the edge network g
class SemedaEdgeNet(nn.Module):
    """The SEMEDA edge network g_phi (S:197): three 3x3 convs C -> 16 -> 32 -> 2.

    ReLU after layers 1 and 2, softmax over the two channels after layer 3 (channel 1 = edge,
    channel 0 = non-edge). Kernel 3x3, stride 1, zero padding 1, bias, no BN, no pooling
    [proposal, spec A1]: the map keeps its H x W and the 7x7 receptive field covers the 3x3
    neighbourhood that defines the edges.

    The convolutions cast their weights to the input's dtype, so a float64 input is computed in
    float64 (the weights stay float32 parameters).

    Args:
        num_classes: C, the number of classes of the one-hot / softmax input (with background).
        embedding: which activations are psi_1, psi_2: ``"post_relu"`` (default) or ``"pre_relu"``
            [proposal, spec A1]. psi_3 is always the softmax output (S:254-258).

    Attributes:
        num_classes: C.
        recipe: set by :func:`pretrain_edge_net` (a plain dict of its settings), else ``None``.
    """

    widths = (16, 32, 2)
    #: Run the convolutions in NHWC on CPU: oneDNN runs these thin convolutions about twice as fast
    #: in that layout (2x21x161x161, 2 threads: forward 13 -> 7 ms); values equal up to float rounding.
    channels_last_on_cpu = True

    def __init__(self, num_classes: int, embedding: str = "post_relu") -> None:
        check(isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 2,
              f"the edge net's num_classes must be an integer >= 2 (got {num_classes!r})")
        check(embedding in EMBEDDINGS, f"loss.embedding must be one of {', '.join(EMBEDDINGS)} (got {embedding!r})")
        super().__init__()
        self.num_classes = int(num_classes)
        self.embedding = embedding
        self.conv1 = nn.Conv2d(num_classes, 16, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=True)
        self.conv3 = nn.Conv2d(32, 2, 3, padding=1, bias=True)
        self.recipe: Optional[Dict[str, Any]] = None

    @staticmethod
    def _conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
        weight, bias = conv.weight, conv.bias
        if weight.dtype != x.dtype:
            weight = weight.to(x.dtype)
            bias = None if bias is None else bias.to(x.dtype)
        return F.conv2d(x, weight, bias, stride=1, padding=1)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.num_classes:
            raise ValueError(f"the SEMEDA edge net expects (B, {self.num_classes}, H, W) class maps; "
                             f"got shape {tuple(x.shape)}")

    def layers(self, x: Tensor, embedding: Optional[str] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """``(B, C, H, W)`` -> ``(psi1 (B,16,H,W), psi2 (B,32,H,W), edge_logits (B,2,H,W))``.

        ``embedding`` (``None`` = ``self.embedding``) picks whether psi1 / psi2 are taken after
        (``post_relu``) or before (``pre_relu``) the ReLU; the next layer always sees the ReLU.
        """
        self._check_input(x)
        embedding = self.embedding if embedding is None else embedding
        if self.channels_last_on_cpu and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        # post_relu keeps no pre-activation, so the ReLU can overwrite the conv output (autograd needs
        # only the ReLU's output and the conv's input)
        inplace = embedding == "post_relu"
        a1 = self._conv(x, self.conv1)
        h1 = F.relu(a1, inplace=inplace)
        a2 = self._conv(h1, self.conv2)
        h2 = F.relu(a2, inplace=inplace)
        edge_logits = self._conv(h2, self.conv3)
        if embedding == "pre_relu":
            return a1, a2, edge_logits
        return h1, h2, edge_logits

    def edge_logits(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` class maps -> ``(B, 2, H, W)`` pre-softmax edge scores (used for eq. 7)."""
        return self.layers(x)[2]

    def forward(self, probs: Tensor, embedding: Optional[str] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """``probs (B, C, H, W)`` (softmax or one-hot) -> ``(psi1, psi2, psi3)``.

        psi1 ``(B, 16, H, W)``, psi2 ``(B, 32, H, W)`` (see ``embedding``), psi3 ``(B, 2, H, W)``
        the softmax edge map E_hat (eq. 3, S:119; channel 1 = edge).
        """
        psi1, psi2, edge_logits = self.layers(probs, embedding)
        return psi1, psi2, torch.softmax(edge_logits, dim=1)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding={self.embedding}"


# ============================================================================ ground truth
def _as_labels(labels: Union[Tensor, np.ndarray]) -> Tensor:
    """``(H, W)`` or ``(B, H, W)`` integer labels -> a ``(B, H, W)`` long tensor."""
    t = torch.as_tensor(labels)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"labels must be an integer label map; got dtype {t.dtype}")
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f"labels must be a (B, H, W) or (H, W) label map; got shape {tuple(t.shape)}")
    return t.long()


def edge_targets(labels: Union[Tensor, np.ndarray], ignore_index: int = 255) -> Tensor:
    """Semantic-edge ground truth E* (S:138) of ``(B, H, W)`` labels -> long ``(B, H, W)``.

    1 on edge pixels (some 8-neighbour has another label; void counts as a label of its own), 0
    elsewhere, ``ignore_index`` on void pixels (they are ignored by the edge losses [proposal, spec
    A2]). Uses :func:`seglab.metrics.boundary.semantic_edges` (replicate padding: the image border
    is not an edge). A ``(H, W)`` map is treated as a batch of one.
    """
    # Imported here so that importing seglab.losses does not import the whole metrics package.
    from seglab.metrics.boundary import semantic_edges

    t = _as_labels(labels)
    edges = semantic_edges(t, ignore_index).long()
    return torch.where(t == ignore_index, torch.full_like(edges, ignore_index), edges)


def one_hot_masks(labels: Tensor, num_classes: int, ignore_index: int = 255, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, H, W)`` labels -> one-hot ``(B, C, H, W)`` masks S*, all-zero at ``ignore_index`` pixels.

    Labels other than ``ignore_index`` must lie in ``[0, num_classes)`` (not checked here; the
    callers check with :func:`seglab.losses.ce.check_target`).
    """
    t = _as_labels(labels)
    valid = t != ignore_index
    index = torch.where(valid, t, torch.zeros_like(t))
    out = torch.zeros((t.shape[0], num_classes, t.shape[1], t.shape[2]), dtype=dtype, device=t.device)
    out.scatter_(1, index[:, None], valid[:, None].to(dtype))
    return out


# ============================================================================ stage 1: pre-training
def _batch_stream(batches: Iterable[Any]) -> Iterator[Any]:
    """Endless stream of ``batches``: re-iterates a re-iterable (e.g. a DataLoader, reshuffled each
    pass); caches the items of a one-shot iterator and replays them. ``ValueError`` if empty."""
    if isinstance(batches, abc.Iterator):  # one-shot (a generator): itertools.cycle caches its items
        source: Iterable[Any] = itertools.cycle(batches)
        for item in source:
            yield item
        raise ValueError("pretrain_edge_net got no batches")
    while True:
        empty = True
        for item in batches:
            empty = False
            yield item
        if empty:
            raise ValueError("pretrain_edge_net got no batches")


def pretrain_edge_net(
    batches: Iterable[Union[Tensor, np.ndarray]],
    num_classes: int,
    ignore_index: int = 255,
    steps: int = 2000,
    lr: float = 1e-3,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    on_step: Optional[Callable[[int, float], None]] = None,
) -> Tuple[SemedaEdgeNet, List[float]]:
    """Stage 1 of SEMEDA: train g on one-hot GT masks to predict their semantic edges (eq. 7).

    Loss (eq. 7 with the printed typo fixed, S:140-142): plain 2-class cross-entropy between
    ``g.edge_logits(S*)`` and E* = :func:`edge_targets`, mean over the non-void pixels of the batch
    (Alg. 1 averages over the masks of a batch, S:173), no class weighting. The input is the one-hot
    GT S* (S:94, S:140), all-zero at void pixels. Optimiser: Adam [proposal, spec A3].

    Args:
        batches: iterable of ``(B, H, W)`` (or ``(H, W)``) integer label maps (tensors or arrays);
            cycled when shorter than ``steps`` (a re-iterable is re-iterated, a one-shot iterator
            is cached and replayed).
        num_classes: C (must match the data set the loss will be used on: one g per data set).
        ignore_index: void label id.
        steps: optimiser steps (>= 1).
        lr: Adam learning rate.
        seed: seeds g's initialisation (the global RNG is left as it was).
        device: where to train.
        on_step: optional ``on_step(step, loss)`` callback after each step (``step`` from 1).

    Returns:
        ``(net, history)``: g in eval mode on ``device`` (``net.recipe`` holds these settings as a
        plain dict for :func:`save_edge_net`) and the per-step loss values.
    """
    ignore_index = check_ignore_index(ignore_index)
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SemedaEdgeNet(num_classes)
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    history: List[float] = []
    stream = _batch_stream(batches)
    for step in range(1, steps + 1):
        labels = _as_labels(next(stream)).to(device)
        check_target(labels, num_classes, ignore_index)
        masks = one_hot_masks(labels, num_classes, ignore_index)
        targets = edge_targets(labels, ignore_index)
        logits = net.edge_logits(masks)
        summed = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")
        loss = summed / (targets != ignore_index).sum().clamp_min(1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        history.append(value)
        if on_step is not None:
            on_step(step, value)
    net.eval()
    net.recipe = {"stage": "semeda_edge_pretraining", "loss": "eq7_2class_ce_mean_over_nonvoid",
                  "optimizer": "adam", "lr": float(lr), "steps": int(steps), "seed": int(seed),
                  "input": "one_hot_gt", "ignore_index": ignore_index}
    return net, history


@torch.no_grad()
def edge_f1(net: nn.Module, batches: Iterable[Union[Tensor, np.ndarray]], ignore_index: int = 255) -> Dict[str, float]:
    """Edge F1 of g on GT masks: predicted edge map ``argmax g(S*) == 1`` vs :func:`edge_targets`.

    Counts true / false positives and false negatives over all non-void pixels of all batches
    (dataset-level), then precision = tp / (tp + fp), recall = tp / (tp + fn),
    f1 = 2 tp / (2 tp + fp + fn); a ratio whose denominator is 0 is 1.0 (nothing to find, nothing
    found). ``net`` is put in eval mode; the batches are consumed once.

    Returns ``{"f1", "precision", "recall"}`` (plus the integer counts ``tp``, ``fp``, ``fn``).
    """
    num_classes = int(getattr(net, "num_classes"))
    net.eval()
    device = next(net.parameters()).device
    tp = fp = fn = 0
    for batch in batches:
        labels = _as_labels(batch).to(device)
        check_target(labels, num_classes, ignore_index)
        targets = edge_targets(labels, ignore_index)
        logits = net.edge_logits(one_hot_masks(labels, num_classes, ignore_index))  # type: ignore[operator]
        pred = logits.argmax(1) == 1
        valid = targets != ignore_index
        truth = targets == 1
        tp += int((pred & truth & valid).sum())
        fp += int((pred & ~truth & valid).sum())
        fn += int((~pred & truth & valid).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 1.0
    return {"f1": f1, "precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn}


# ============================================================================ save / load
def edge_net_hash(net: nn.Module) -> str:
    """``"sha256:<hex>"`` over the state dict (sorted names, dtypes, shapes and bytes, on CPU)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Meta must be plain Python values (loadable with ``weights_only=True``)."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"edge-net meta keys must be strings; {where} has key {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    raise ValueError(f"edge-net meta must hold plain Python values (str, int, float, bool, None, list, dict); "
                     f"{where} is a {type(value).__name__}")


def save_edge_net(path: Union[str, os.PathLike], net: SemedaEdgeNet, meta: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Write g and its ``meta`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    ``meta`` holds plain Python values; the written meta always has ``num_classes`` (from ``net``),
    ``content_hash`` (:func:`edge_net_hash`), ``format`` and ``embedding``, plus ``class_names``,
    ``ignore_index``, ``recipe`` (default: ``net.recipe``) and ``f1`` (``None`` when not given).
    A ``num_classes`` in ``meta`` that disagrees with ``net`` is a ``ValueError``.

    Returns the meta as written.
    """
    meta = dict(meta or {})
    if "num_classes" in meta and meta["num_classes"] != net.num_classes:
        raise ValueError(f"meta num_classes={meta['num_classes']!r} but the edge net has {net.num_classes} classes")
    net_cpu = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    meta.setdefault("class_names", None)
    meta.setdefault("ignore_index", None)
    meta.setdefault("recipe", getattr(net, "recipe", None))
    meta.setdefault("f1", None)
    meta.update(num_classes=int(net.num_classes), content_hash=edge_net_hash(net), format=EDGE_NET_FORMAT,
                embedding=getattr(net, "embedding", "post_relu"))
    _check_plain(meta, "meta")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".edge_net.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": EDGE_NET_FORMAT, "state_dict": net_cpu, "meta": meta}, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return meta


def _one_line(error: BaseException, limit: int = 160) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_edge_net(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> Tuple[SemedaEdgeNet, Dict[str, Any]]:
    """Read a file written by :func:`save_edge_net` -> ``(net (eval mode), meta)``.

    Uses ``torch.load(..., weights_only=True)`` (tensors and plain Python values only; no code
    runs). The stored content hash is checked against the loaded weights.

    Raises:
        ConfigError: one line naming ``loss.edge_net`` and the path when the file is missing,
            unreadable, not an edge-net file, or its weights do not match their hash.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{_EDGE_NET_KEY}: no edge-net file at {path} (run the SEMEDA pre-training stage "
                          f"or set {_EDGE_NET_KEY}=auto)")
    bad = f"{_EDGE_NET_KEY} {path} is not a valid SEMEDA edge-net file"
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise ConfigError(f"{bad} ({_one_line(error)})") from None
    if not isinstance(blob, dict) or blob.get("format") != EDGE_NET_FORMAT:
        raise ConfigError(f"{bad} (expected format {EDGE_NET_FORMAT})")
    meta, state = blob.get("meta"), blob.get("state_dict")
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise ConfigError(f"{bad} (no meta / state_dict)")
    try:
        net = SemedaEdgeNet(int(meta["num_classes"]), embedding=meta.get("embedding", "post_relu"))
        net.load_state_dict(state)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"{bad} ({_one_line(error)})") from None
    if edge_net_hash(net) != meta.get("content_hash"):
        raise ConfigError(f"{bad} (weights do not match their content hash; the file is corrupt)")
    net.recipe = meta.get("recipe")
    return net.eval(), meta


# ============================================================================ shared loss helpers
def _check_weight(name: str, value: object, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    check(ok, f"loss.{name} must be a number >= 0 (got {value!r}; default {default})")
    return float(value)  # type: ignore[arg-type]


def _check_reduction(reduction: object) -> str:
    check(reduction in REDUCTIONS, f"loss.reduction must be one of {', '.join(REDUCTIONS)} (got {reduction!r})")
    return str(reduction)


def masked_l1(pred: Tensor, ref: Tensor, valid: Tensor, reduction: str = "mean") -> Tensor:
    """L1 distance of two ``(B, K, H, W)`` maps over the pixels where ``valid`` ``(B, H, W)`` is True.

    ``sum``: sum over valid pixels and all K channels. ``mean``: that sum / (K * valid pixels)
    (0 when no pixel is valid) [proposal, spec A2].
    """
    # Sum the K channels first and mask the (B, H, W) map by a multiplication: masking the full
    # (B, K, H, W) tensor, or torch.where on the channels-last result, cost more than the edge
    # net's convolutions on CPU (2x32x161x161: where 3.7 ms, mul 0.4 ms).
    per_pixel = (pred - ref).abs().sum(1)
    summed = (per_pixel * valid.to(per_pixel.dtype)).sum()
    if reduction == "sum":
        return summed
    count = valid.sum().clamp_min(1) * pred.shape[1]
    return summed / count.to(summed.dtype)


def _prepared_maps(output: "SegOutput", target: Tensor, ignore_index: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> ``(logits (B,C,H,W) at label size, target, valid (B,H,W), probs)`` with void pixels of
    ``probs`` set to all-zero [proposal, spec A2: upsample the logits, then softmax]."""
    check_target(target, output.logits.shape[1], ignore_index)
    logits, target = prepare_logits(output.logits, target, ignore_index, check_labels=False)
    valid = target != ignore_index
    probs = torch.softmax(logits, dim=1) * valid[:, None].to(logits.dtype)
    return logits, target, valid, probs


def _class_weights_buffer(module: nn.Module, class_weights: ClassWeights) -> None:
    weights = check_class_weights(class_weights)
    module.register_buffer("class_weights", None if weights is None else torch.tensor(weights), persistent=False)


# ============================================================================ the semeda loss
EdgeNetSpec = Union[str, "os.PathLike[str]", nn.Module, Mapping[str, Any]]


@register_loss("semeda")
class SemedaLoss(nn.Module):
    """``L = CE + sum_{l=1..3} lambda_l * L_l`` with ``L_l = ||psi_l(g(S_hat)) - psi_l(g(S*))||_1``
    (eqs. 4-6, S:124-132), g frozen (S:115, S:144).

    ``S_hat`` = softmax of ``output.logits`` bilinearly upsampled (``align_corners=False``) to the
    label size; ``S*`` = one-hot labels. Void pixels are all-zero in both before g, and excluded
    from the L1 sums [proposal, spec A2]. The CE is :func:`~seglab.losses.ce.pixel_cross_entropy`
    (mean over non-void pixels, optional ``class_weights``). Gradients flow through g into S_hat;
    the S* branch runs under ``no_grad``. Works with any model (reads ``output.logits`` only).

    Args:
        edge_net: the frozen g: a path to a file from :func:`save_edge_net`, an ``nn.Module``
            (e.g. from :func:`pretrain_edge_net`; the loss keeps its own frozen copy), or
            ``"auto"`` = the platform's SEMEDA pre-training stage fills in the path (the loss can be
            built, but calling it before :meth:`set_edge_net` raises ``RuntimeError``). A mapping
            is ``"auto"`` with overrides of the platform's pre-training recipe: the loss only keeps
            it (``edge_net_recipe``); the platform reads and checks it.
        lambda1, lambda2, lambda3: weights of L_1, L_2, L_3 (>= 0). Defaults (4, 2, 0) are the best
            Cityscapes setting of Table 1; VOC's is (2, 4, 0) (spec A5, trap 5).
        reduction: ``"mean"`` (default; sum over non-void pixels and channels / (C_l * non-void
            pixels)) or ``"sum"`` (the literal sums of eq. 5) [proposal, spec A2]. The CE is a mean
            either way.
        num_classes: the data set's class count; when given, an edge net trained for another count
            is a ``ConfigError`` at construction.
        ignore_index: void label id.
        class_weights: ``None``, a preset name or one weight per class (CE part only).
        embedding: ``"post_relu"`` (default) or ``"pre_relu"`` psi_1 / psi_2 [proposal, spec A1].

    Terms (detached): ``loss`` (total), ``ce``, ``edge_l1``, ``edge_l2``, ``edge_l3`` (the unweighted
    L_l; a level whose lambda is 0 is computed under ``no_grad`` for logging only).

    Device: g is a registered submodule (``self.edge_net``) so ``loss.to(device)`` moves it; if the
    logits arrive on another device g is moved there on first use.
    """

    def __init__(
        self,
        edge_net: EdgeNetSpec = "auto",
        lambda1: float = 4.0,
        lambda2: float = 2.0,
        lambda3: float = 0.0,
        reduction: str = "mean",
        num_classes: Optional[int] = None,
        ignore_index: int = 255,
        class_weights: ClassWeights = None,
        embedding: str = "post_relu",
    ) -> None:
        super().__init__()
        self.lambdas = (_check_weight("lambda1", lambda1, 4.0), _check_weight("lambda2", lambda2, 2.0),
                        _check_weight("lambda3", lambda3, 0.0))
        self.reduction = _check_reduction(reduction)
        self.ignore_index = check_ignore_index(ignore_index)
        check(num_classes is None or (isinstance(num_classes, int) and not isinstance(num_classes, bool)
                                      and num_classes >= 2),
              f"loss.num_classes must be null or an integer >= 2 (got {num_classes!r})")
        self.num_classes = num_classes
        check(embedding in EMBEDDINGS, f"loss.embedding must be one of {', '.join(EMBEDDINGS)} (got {embedding!r})")
        self.embedding = embedding
        _class_weights_buffer(self, class_weights)
        self.edge_net_source: str = "auto"
        self.edge_net_meta: Dict[str, Any] = {}
        #: the mapping given as ``edge_net`` (auto with the platform's pre-training recipe), else None
        self.edge_net_recipe: Optional[Dict[str, Any]] = None
        self.register_module("edge_net", None)
        if isinstance(edge_net, Mapping):
            self.edge_net_recipe = dict(edge_net)
        elif not (isinstance(edge_net, str) and edge_net == "auto"):
            self.set_edge_net(edge_net)

    # -- g -----------------------------------------------------------------------------------
    def set_edge_net(self, edge_net: EdgeNetSpec) -> None:
        """Resolve ``edge_net`` (a path or module, see the class doc), freeze it and hold it.

        The platform calls this after its pre-training stage when the loss was built with
        ``"auto"``. g is moved to the device of the loss's current buffers/parameters, if any.
        """
        if isinstance(edge_net, nn.Module):
            net = copy.deepcopy(edge_net)
            source, meta = f"<{type(edge_net).__name__} module>", {}
        elif isinstance(edge_net, (str, os.PathLike)):
            check(os.fspath(edge_net) != "auto" and os.fspath(edge_net) != "",
                  f"{_EDGE_NET_KEY} must be a path, a module or auto (got {edge_net!r})")
            net, meta = load_edge_net(edge_net)
            source = os.fspath(edge_net)
        else:
            raise ConfigError(f"{_EDGE_NET_KEY} must be a path to a saved edge net, an nn.Module, auto or a "
                              f"pre-training recipe mapping (got {type(edge_net).__name__})")
        trained_for = getattr(net, "num_classes", None)
        if self.num_classes is not None and trained_for is not None and trained_for != self.num_classes:
            names = meta.get("class_names")
            shown = f" ({', '.join(map(str, names[:6]))}{', ...' if len(names) > 6 else ''})" if names else ""
            raise ConfigError(
                f"{_EDGE_NET_KEY} {source} was trained for {trained_for} classes{shown} but the data set has "
                f"{self.num_classes}; pre-train an edge net on this data set's masks (or set {_EDGE_NET_KEY}=auto)")
        check(self.embedding == "post_relu" or isinstance(net, SemedaEdgeNet),
              f"loss.embedding={self.embedding} needs a SemedaEdgeNet edge net (got {type(net).__name__})")
        for p in net.parameters():
            p.requires_grad_(False)
        device = _module_device(self)
        if device is not None:
            net.to(device)
        self.edge_net = net.eval()
        self.edge_net_source, self.edge_net_meta = source, dict(meta)

    def train(self, mode: bool = True) -> "SemedaLoss":
        """Keep g in eval mode whatever ``mode`` is."""
        super().train(mode)
        if self.edge_net is not None:
            self.edge_net.eval()
        return self

    def _run_edge_net(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        net = self.edge_net
        assert net is not None
        if isinstance(net, SemedaEdgeNet):
            return net(x, embedding=self.embedding)
        return tuple(net(x))  # type: ignore[return-value]

    # -- the loss --------------------------------------------------------------------------------
    def forward(self, output: "SegOutput", target: Tensor) -> LossOutput:
        if self.edge_net is None:
            raise RuntimeError(
                "the semeda loss has loss.edge_net=auto but no edge net was filled in: the platform's SEMEDA pre-training "
                "stage must run first and call loss.set_edge_net(path), or pass loss.edge_net=<path to a saved edge net>")
        logits, target, valid, probs = _prepared_maps(output, target, self.ignore_index)
        trained_for = getattr(self.edge_net, "num_classes", logits.shape[1])
        if trained_for != logits.shape[1]:
            raise ConfigError(f"{_EDGE_NET_KEY} {self.edge_net_source} was trained for {trained_for} classes but the "
                              f"model predicts {logits.shape[1]}; pre-train an edge net for this data set")
        _follow(self.edge_net, logits.device)
        ce = pixel_cross_entropy(logits, target, self.ignore_index, check_labels=False, class_weights=self.class_weights)
        total = ce
        terms: Dict[str, Tensor] = {"ce": ce.detach()}
        grad = torch.is_grad_enabled()
        # g and the L1 run in the logits' float32/64 even under autocast: the psi differences are small
        # next to the psi themselves, and bf16 keeps ~3 significant digits.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            with torch.no_grad():
                psi_gt = self._run_edge_net(one_hot_masks(target, logits.shape[1], self.ignore_index, dtype=logits.dtype))
            with torch.set_grad_enabled(grad and any(lam > 0 for lam in self.lambdas)):
                psi_pred = self._run_edge_net(probs)  # no no_grad here: the gradient flows through g into S_hat
            for level, (lam, pred, ref) in enumerate(zip(self.lambdas, psi_pred, psi_gt), start=1):
                with torch.set_grad_enabled(grad and lam > 0):  # a level with lambda 0 is only logged
                    value = masked_l1(pred, ref, valid, self.reduction)
                terms[f"edge_l{level}"] = value.detach()
                if lam > 0:
                    total = total + lam * value
        return LossOutput(total=total, terms={"loss": total.detach(), **terms})

    def extra_repr(self) -> str:
        l1, l2, l3 = self.lambdas
        return (f"edge_net={self.edge_net_source}, lambda1={l1}, lambda2={l2}, lambda3={l3}, reduction={self.reduction}, "
                f"num_classes={self.num_classes}, ignore_index={self.ignore_index}, embedding={self.embedding}")


def _module_device(module: nn.Module) -> Optional[torch.device]:
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return None


def _follow(net: nn.Module, device: torch.device) -> None:
    """Move ``net`` to ``device`` if its parameters are elsewhere (once; later calls are no-ops)."""
    current = _module_device(net)
    if current is not None and current != device:
        net.to(device)


# ============================================================================ the sobel baseline
def _sobel_kernels(channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Depthwise ``(2*channels, 1, 3, 3)`` weights: per channel G_x then G_y = G_x^T."""
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype, device=device)
    pair = torch.stack([gx, gx.t()])[:, None]  # (2, 1, 3, 3)
    return pair.repeat(channels, 1, 1, 1)


def sobel_responses(maps: Tensor, mode: str = "components") -> Tensor:
    """Per-channel Sobel responses of ``(B, C, H, W)`` maps (cross-correlation, as ``conv2d``).

    Replicate padding, so a map that is constant up to the image border gives 0 there (the border is
    no edge, as in :func:`seglab.metrics.boundary.semantic_edges`) [proposal].

    Returns ``(B, 2C, H, W)`` (channel ``2c`` = G_x of class c, ``2c+1`` = G_y) for
    ``mode="components"``, or ``(B, C, H, W)`` magnitudes ``sqrt(G_x^2 + G_y^2 + SOBEL_EPS)`` for
    ``mode="magnitude"``.
    """
    c = maps.shape[1]
    padded = F.pad(maps, (1, 1, 1, 1), mode="replicate")
    out = F.conv2d(padded, _sobel_kernels(c, maps.dtype, maps.device), groups=c)
    if mode == "components":
        return out
    b, _, h, w = out.shape
    pairs = out.view(b, c, 2, h, w)
    return torch.sqrt(pairs.pow(2).sum(2) + SOBEL_EPS)


@register_loss("sobel")
class SobelLoss(nn.Module):
    """The Sobel baseline of SEMEDA (S:242, S:248): ``L = CE + lambda1 * |Sob(S_hat) - Sob(S*)|_1``.

    Sobel kernels G_x = [[-1,0,1],[-2,0,2],[-1,0,1]] and G_y = G_x^T applied to each class channel
    separately (depthwise; :func:`sobel_responses`, replicate padding) [proposal, spec A1]. Input
    preparation, void handling and reduction as :class:`SemedaLoss`: logits upsampled to the label
    size, softmax, void pixels all-zero in S_hat and S*, void pixels excluded from the L1.

    Args:
        lambda1: weight of the Sobel term (>= 0; Table 1 grid 0.5 ... 4).
        mode: ``"components"`` (2C channels G_x, G_y; default) or ``"magnitude"`` (C channels
            sqrt(G_x^2 + G_y^2 + eps)) [proposal].
        reduction: ``"mean"`` (sum / (channels * non-void pixels)) or ``"sum"``.
        ignore_index: void label id.
        class_weights: ``None``, a preset name or one weight per class (CE part only).

    Terms (detached): ``loss``, ``ce``, ``sobel`` (the unweighted L1 term).
    """

    def __init__(self, lambda1: float = 1.0, mode: str = "components", reduction: str = "mean",
                 ignore_index: int = 255, class_weights: ClassWeights = None) -> None:
        super().__init__()
        self.lambda1 = _check_weight("lambda1", lambda1, 1.0)
        check(mode in SOBEL_MODES, f"loss.mode must be one of {', '.join(SOBEL_MODES)} (got {mode!r})")
        self.mode = mode
        self.reduction = _check_reduction(reduction)
        self.ignore_index = check_ignore_index(ignore_index)
        _class_weights_buffer(self, class_weights)

    def forward(self, output: "SegOutput", target: Tensor) -> LossOutput:
        logits, target, valid, probs = _prepared_maps(output, target, self.ignore_index)
        ce = pixel_cross_entropy(logits, target, self.ignore_index, check_labels=False, class_weights=self.class_weights)
        gt = one_hot_masks(target, logits.shape[1], self.ignore_index, dtype=logits.dtype)
        grad = self.lambda1 > 0 and torch.is_grad_enabled()
        with torch.autocast(device_type=logits.device.type, enabled=False), torch.set_grad_enabled(grad):
            value = masked_l1(sobel_responses(probs, self.mode), sobel_responses(gt, self.mode), valid, self.reduction)
        total = ce + self.lambda1 * value if self.lambda1 > 0 else ce
        return LossOutput(total=total, terms={"loss": total.detach(), "ce": ce.detach(), "sobel": value.detach()})

    def extra_repr(self) -> str:
        return (f"lambda1={self.lambda1}, mode={self.mode}, reduction={self.reduction}, "
                f"ignore_index={self.ignore_index}")
