"""Everything checked before a sweep asks Ray for anything: each run built cheaply (the model on the
``meta`` device, data sets lazily) so that a bad name, value or file fails with one line, its size
and forward cost counted (:class:`RunSummary`), and each distinct data set scanned once.

The counts travel to the trials (:func:`flops_key` -> GFLOPs in the sweep's context), so a trial
never counts FLOPs or builds a meta model again.
"""
from __future__ import annotations

from dataclasses import dataclass
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
    what ``sweep.budget=flops`` equalises. Both at ``flops_input_size``, see ``count_flops``."""

    num_classes: int
    class_names: list
    params: int
    gflops: float
    flops_input_size: Tuple[int, int]
    inference_params: Optional[int] = None  # without training-only parts (PHGMM's PostNet)
    train_gflops: float = float("nan")


def flops_key(run: RunConfig) -> str:
    """What a FLOP count depends on: the architecture (not its weights' files) and the input size."""
    import json

    model = {k: v for k, v in run.model.to_dict().items() if k not in ("pretrained", "body_checkpoint")}
    return json.dumps([model, list(run.trainer.flops_input_size)], sort_keys=True, default=str)


def validate_run(run: RunConfig, count_flops: bool = True) -> RunSummary:
    """Build data sets, loss and model (on the meta device) for ``run``; raise ConfigError if bad.
    With ``count_flops`` its inference and training forwards are counted (else NaN)."""
    from seglab.models.complexity import count_flops as _flops
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
    gflops = train_gflops = float("nan")
    if count_flops:
        size = tuple(run.trainer.flops_input_size)
        gflops, train_gflops = _flops(model, input_size=size), _flops(model, input_size=size, train=True)
    summary = RunSummary(num_classes, list(val.class_names), count_parameters(model), gflops,
                         tuple(run.trainer.flops_input_size), count_inference_parameters(model), train_gflops)
    methods.for_run(run).validate(run, summary)
    if run.model.pretrained:  # after the method's own checks, which say more (e.g. PHGMM's PostNet classes)
        from seglab.models.pretrained import check_pretrained

        # a file of another architecture fails here, not in a trial; a baseline inherits the method's
        # model.pretrained, and a file it has no tensor of is left to the trial (as before)
        check_pretrained(model, run.model.pretrained, require_match=not run.baseline)
    return summary


def validate_sweep(base: Dict[str, Any], sweep: SweepConfig, runs: List[RunConfig], verify_data: bool = True
                   ) -> List[RunSummary]:
    """Validate every run (and a representative Optuna point) and scan each distinct data set once.

    Raises ConfigError with one line on the first problem; nothing on the cluster is touched.
    """
    extra = [run_for_point(base, representative_point(sweep))] if sweep.search == "optuna" else []
    summaries = [validate_run(r) for r in runs + extra]
    if verify_data:
        seen = set()
        for r in runs + extra:
            blob = repr(sorted(flatten(r.to_dict()["dataset"]).items()))
            if blob not in seen:
                seen.add(blob)
                verify_datasets(r.dataset)
    return summaries[: len(runs)]
