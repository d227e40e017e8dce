"""SEMEDA's edge network g and its stage 1 (Chen, Dapogny & Cord, Pattern Recognition 2020).

g (S:197) maps a class map (one-hot ground truth or softmax prediction) to the activations psi_1,
psi_2 and the semantic-edge softmax psi_3. Stage 1 (eq. 7, S:140-142, Alg. 1 S:162-179) pre-trains
it to predict the semantic edges E* of one-hot ground-truth masks S* (:func:`pretrain_edge_net`,
checked with :func:`edge_f1`, stored with :func:`save_edge_net` / :func:`load_edge_net`); the
``semeda`` loss (:mod:`seglab.losses.semeda`) then uses it frozen.

Citations ``S:n`` are lines of the paper's text copy (see ``shared/specs/semeda_phgmm.md`` part A).
Only torch / numpy are imported here (no ray, mlflow, hydra or omegaconf).
"""
from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from collections import abc
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError, check
from seglab.losses.ce import check_ignore_index, check_target

__all__ = ["EDGE_NET_FORMAT", "EDGE_NET_KEY", "EMBEDDINGS", "SemedaEdgeNet", "edge_f1", "edge_net_hash",
           "edge_targets", "load_edge_net", "one_hot_masks", "pretrain_edge_net", "save_edge_net"]

#: ``embedding`` switch of g: psi_1, psi_2 after the ReLU (default, as Johnson et al.'s perceptual
#: loss, ref [5]) or before it [proposal, spec A1].
EMBEDDINGS = ("post_relu", "pre_relu")
#: Version tag stored in a saved edge-net file.
EDGE_NET_FORMAT = "seglab.semeda_edge_net/1"
#: The config key an edge-net file is given under (named in error messages).
EDGE_NET_KEY = "loss.edge_net"


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
        raise ConfigError(f"{EDGE_NET_KEY}: no edge-net file at {path} (run the SEMEDA pre-training stage "
                          f"or set {EDGE_NET_KEY}=auto)")
    bad = f"{EDGE_NET_KEY} {path} is not a valid SEMEDA edge-net file"
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
