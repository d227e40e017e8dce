"""Everything checked before a sweep asks Ray for anything: each run built cheaply (the model on the
``meta`` device, data sets lazily) so that a bad name, value or file fails with one line, and each
distinct data set scanned once; then, with every check passed, each run's size and forward cost
counted (:class:`RunSummary`), each architecture once.

The counts travel to the trials (:func:`flops_key` -> GFLOPs in the sweep's context), so a trial
never counts FLOPs or builds a meta model again: not for its size columns, nor (when the config names
the training size) for the training compute it spent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from seglab.errors import ConfigError
from seglab.platform import methods
from seglab.platform.build import (build_datasets, build_loss, build_model, build_report_dataset, selection_is_report,
                                   verify_datasets)
from seglab.platform.config import RunConfig, flatten
from seglab.platform.sweep.config import SweepConfig
from seglab.platform.sweep.plan import representative_point, run_for_point


@dataclass
class RunSummary:
    """What a validated run looks like: used for logging, the comparison table and the compute budget.

    ``gflops`` is one image's inference forward (the ``gflops`` column); ``train_gflops`` one image's
    training forward (targets given, train mode: training-only parts such as PHGMM's PostNet run),
    what ``sweep.budget=flops`` equalises. Both at ``flops_input_size``, see ``count_flops``.
    ``train_forward_gflops``: one image's training forward by ``"HxW"``, at ``flops_input_size`` and at
    the training batches' size when the config names it (:func:`training_size`): what a trial
    multiplies by the images it trained on (``train_gflops_spent``) without counting again."""

    num_classes: int
    class_names: list
    params: int
    gflops: float
    flops_input_size: Tuple[int, int]
    inference_params: Optional[int] = None  # without training-only parts (PHGMM's PostNet)
    train_gflops: float = float("nan")
    train_forward_gflops: Dict[str, float] = field(default_factory=dict)


def training_size(run: RunConfig) -> Optional[Tuple[int, int]]:
    """The training batches' (h, w) as the config names it: the train role's ``crop_size``, else the
    data set's ``image_size`` (the generated data sets); None when only a drawn batch tells."""
    options = {**run.dataset.common, **run.dataset.train}
    size = options.get("crop_size") or options.get("image_size")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        return None
    return (h, w) if h > 0 and w > 0 else None


def flops_key(run: RunConfig) -> str:
    """What a FLOP count depends on: the architecture (not its weights' files) and the input size."""
    import json

    model = {k: v for k, v in run.model.to_dict().items() if k not in ("pretrained", "body_checkpoint")}
    return json.dumps([model, list(run.trainer.flops_input_size)], sort_keys=True, default=str)


def validate_run(run: RunConfig, count_flops: bool = True) -> RunSummary:
    """Build data sets, loss and model (on the meta device) for ``run``; raise ConfigError if bad.
    With ``count_flops`` its inference and training forwards are counted once every check has passed
    (else NaN)."""
    summary, model = _check_run(run)
    if count_flops:
        summary.gflops, summary.train_gflops = count_run_flops(run, model, summary.num_classes)
        summary.train_forward_gflops = count_training_forwards(run, model, summary)
    return summary


def count_run_flops(run: RunConfig, model: torch.nn.Module, num_classes: int,
                    flops_cache: Optional[Dict[Any, Tuple[float, float]]] = None) -> Tuple[float, float]:
    """(inference, training) GFLOPs of ``run``'s ``model`` at ``trainer.flops_input_size``. ``flops_cache``
    (a dict the caller keeps across runs) holds them by architecture, input size and class count
    (:func:`flops_key` + ``num_classes``): an architecture already counted is not counted again."""
    from seglab.models.complexity import count_flops

    cache = {} if flops_cache is None else flops_cache
    key = (flops_key(run), num_classes)
    if key not in cache:
        size = tuple(run.trainer.flops_input_size)
        cache[key] = count_flops(model, input_size=size), count_flops(model, input_size=size, train=True)
    return cache[key]


def count_training_forwards(run: RunConfig, model: torch.nn.Module, summary: RunSummary,
                            cache: Optional[Dict[Any, float]] = None) -> Dict[str, float]:
    """One image's training-forward GFLOPs by ``"HxW"``: ``summary.train_gflops`` at ``flops_input_size``
    and, counted here (once per architecture in ``cache``), at :func:`training_size` when it differs."""
    from seglab.models.complexity import count_flops

    out = {"x".join(map(str, run.trainer.flops_input_size)): summary.train_gflops}
    size = training_size(run)
    if size is not None and "x".join(map(str, size)) not in out:
        cache = {} if cache is None else cache
        key = (flops_key(run), summary.num_classes, size)
        if key not in cache:
            cache[key] = count_flops(model, input_size=size, train=True)
        out["x".join(map(str, size))] = cache[key]
    return out


def _check_run(run: RunConfig) -> Tuple[RunSummary, torch.nn.Module]:
    """Every check of :func:`validate_run`; its summary (GFLOPs not counted: NaN) and meta model."""
    from seglab.models.complexity import count_inference_parameters, count_parameters

    from seglab.losses.ce import check_class_weights

    _, val = build_datasets(run.dataset)
    if not selection_is_report(run.dataset):
        build_report_dataset(run.dataset)
    num_classes = int(val.num_classes)
    build_loss(run.loss, ignore_index=int(getattr(val, "ignore_index", 255)), num_classes=num_classes)
    weights = check_class_weights(run.loss.kwargs.get("class_weights"))
    if weights is not None and len(weights) != num_classes:
        raise ConfigError(f"loss.class_weights has {len(weights)} values but dataset '{run.dataset.name}' has "
                          f"{num_classes} classes")
    with torch.device("meta"):
        model = build_model(run.model, num_classes, load_weights=False)
    summary = RunSummary(num_classes, list(val.class_names), count_parameters(model), float("nan"),
                         tuple(run.trainer.flops_input_size), count_inference_parameters(model), float("nan"))
    methods.for_run(run).validate(run, summary)
    if run.model.pretrained:  # after the method's own checks, which say more (e.g. PHGMM's PostNet classes)
        from seglab.models.pretrained import check_pretrained

        # a file of another architecture fails here, not in a trial; a baseline inherits the method's
        # model.pretrained, and a file it has no tensor of is left to the trial (as before)
        check_pretrained(model, run.model.pretrained, require_match=not run.baseline)
    return summary, model


def validate_sweep(base: Dict[str, Any], sweep: SweepConfig, runs: List[RunConfig], verify_data: bool = True
                   ) -> List[RunSummary]:
    """Validate every run (and a representative Optuna point), scan each distinct data set once, then
    count FLOPs, each architecture once (runs of a sweep often share one: seeds, loss weights).

    Raises ConfigError with one line on the first problem, before any FLOP is counted; nothing on
    the cluster is touched.
    """
    extra = [run_for_point(base, representative_point(sweep))] if sweep.search == "optuna" else []
    checked = [_check_run(r) for r in runs + extra]
    if verify_data:
        seen = set()
        for r in runs + extra:
            blob = repr(sorted(flatten(r.to_dict()["dataset"]).items()))
            if blob not in seen:
                seen.add(blob)
                verify_datasets(r.dataset)
    flops_cache: Dict[Any, Tuple[float, float]] = {}
    train_cache: Dict[Any, float] = {}
    for r, (summary, model) in zip(runs + extra, checked):
        summary.gflops, summary.train_gflops = count_run_flops(r, model, summary.num_classes, flops_cache)
        summary.train_forward_gflops = count_training_forwards(r, model, summary, train_cache)
    return [summary for summary, _ in checked[: len(runs)]]
