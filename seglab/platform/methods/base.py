"""The method extension point: one small object per method says what the generic machinery cannot know.

The train loop, the sweep and the report ask a :class:`Method`; they never test a model or loss
name. A method declares

* which runs are its own (:attr:`Method.model_prefixes`, :attr:`Method.loss_names`);
* the sweep dimensions it adds (:attr:`Method.search_keys`: ``kappa -> loss.kappa`` ...);
* extra checks before anything starts (:meth:`Method.validate`);
* what each validation evaluates besides the main confusion matrix (:meth:`Method.evaluators`:
  extra predictions of the model's typed output, diagnostics summed over batches, metrics);
* the picture drawn for fixed validation images (:meth:`Method.draw`);
* stages run by the sweep before its trials (:meth:`Method.stages`, e.g. SEMEDA's edge net) and
  how their results reach the runs (:meth:`Method.prepare_run`);
* the columns and extra tables it adds to the comparison (:attr:`Method.columns`, :meth:`Method.tables`).

A sweep has one method (the one owning its base run); its evaluators and pictures apply to every
trial of the sweep, the baseline included, so every row of the comparison is measured alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from torch import Tensor, nn

from seglab.platform.config import RunConfig
from seglab.platform.evaluation import EvalContext, Evaluator


@dataclass(frozen=True)
class SearchKey:
    """A sweep dimension: ``sweep.<name>`` sets run-config key ``key``; values must be ``>= low``
    (``> low`` unless ``inclusive``) and integers when ``integer``."""

    key: str
    low: float = 0.0
    inclusive: bool = True
    integer: bool = False


@dataclass(frozen=True)
class Column:
    """A comparison-table column: ``header``, the row key, where its value comes from in the trial's
    MLflow run (``param`` or ``metric`` name), its format, and its place (``knobs`` after the method
    column, ``scores`` after the main score)."""

    header: str
    key: str
    param: Optional[str] = None
    metric: Optional[str] = None
    fmt: str = "g"  # "g" | "3g" (3 significant digits) | "miou" (0.xxxx) | "pct" (x100, 2 decimals) | "text"
    where: str = "knobs"


@dataclass(frozen=True)
class Table:
    """A table a method adds to the comparison, as data (cells already formatted as text); the report
    renders it (:func:`seglab.platform.report.table.markdown_table`)."""

    header: List[str]
    body: List[List[str]]
    footnote: str = ""


@dataclass
class StageContext:
    """What a sweep stage may use: the tracking store and parent run, a cache folder shared by
    every node, the sweep's resources (whether trials use GPUs) and whether there is a Ray cluster."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    cache_dir: str
    use_gpu: bool = False
    inprocess: bool = False  # cluster=inprocess: no Ray, a stage runs its work in this process


class Stage:
    """Work a method needs done once before a sweep's trials start (returns resources for the runs)."""

    name = "stage"

    def run(self, runs: List[RunConfig], ctx: StageContext) -> Dict[str, Any]:
        raise NotImplementedError


class Method:
    """Defaults describe a plain segmentation network (no extras); subclasses override."""

    name = "generic"
    model_prefixes: Tuple[str, ...] = ()
    loss_names: Tuple[str, ...] = ()
    search_keys: Dict[str, SearchKey] = {}
    columns: Sequence[Column] = ()
    notes: str = ""  # a line under the comparison table explaining the method's columns
    #: The run-config key a sweep's warm start sets to the warm-start checkpoint: ``model.pretrained``
    #: loads every tensor whose name and shape match; a method with a body of its own may name another key.
    warm_start_key: str = "model.pretrained"

    # ---------------------------------------------------------------- which runs, and their names
    def owns(self, run: RunConfig) -> bool:
        return run.loss.name in self.loss_names or any(run.model.name.startswith(p) for p in self.model_prefixes)

    def tag(self, run: RunConfig) -> str:
        """The trial's ``seglab.method`` tag (the ``method`` column): the model family by default."""
        return run.model.name.split("_")[0]

    def describe(self, run: RunConfig) -> str:
        """A short human label for a run of this method (the ``trial`` column)."""
        return run.model.name

    # ---------------------------------------------------------------- before anything starts
    def validate(self, run: RunConfig, summary: Any) -> None:
        """Raise ConfigError (one line naming the key) for a run this method cannot train."""

    def stages(self) -> List[Stage]:
        return []

    def prepare_run(self, run: RunConfig, resources: Dict[str, Any]) -> RunConfig:
        """The run as its trial will train it, once the stages produced ``resources``."""
        return run

    # ---------------------------------------------------------------- during training
    def evaluators(self, ctx: EvalContext) -> List[Evaluator]:
        """Evaluators added to every validation of ``ctx.run`` (besides the main confusion matrix)."""
        return []

    def draw(self, model: nn.Module, image: Tensor, label: Tensor, ctx: EvalContext) -> Optional[np.ndarray]:
        """The picture of one fixed validation image (``(H, W, 3)`` uint8), or None for none.
        Default: input | ground truth | prediction | errors (:func:`~seglab.platform.viz.panels.prediction_panel`)."""
        from seglab.platform.viz.panels import prediction_panel

        out = model(image.unsqueeze(0).to(ctx.device))
        return prediction_panel(image, label, out.logits[0].float().cpu(), ctx.palette, ctx.ignore_index,
                                ctx.mean, ctx.std, list(ctx.class_names) or None)

    def prediction_maps(self, out: Any, image_size: Sequence[int]) -> Dict[str, np.ndarray]:
        """Pictures of a model output's method-specific maps for ``seglab predict``, by file suffix
        (``(H, W, 3)`` uint8 at the output's stride; ``out`` is one image's ``SegOutput``, batch 1).
        Default: none."""
        return {}

    # ---------------------------------------------------------------- the comparison
    def row_fields(self, params: Dict[str, str], metrics: Dict[str, float], tags: Dict[str, str]) -> Dict[str, Any]:
        """This method's values of one comparison row, read from a trial's MLflow run."""
        out: Dict[str, Any] = {}
        for c in self.columns:
            if c.metric is not None:
                out[c.key] = metrics.get(c.metric)
            elif c.param is not None:
                out[c.key] = params.get(c.param) if c.fmt == "text" else number(params.get(c.param))
        return out

    def tables(self, rows: List[Dict[str, Any]], sweep: Any) -> List[Table]:
        """Extra tables shown before the main comparison (e.g. OVeNet's Table 5 for an ablation)."""
        return []

    def __repr__(self) -> str:
        return f"<method {self.name}>"


def fmt(value: Any) -> str:
    """A config value in a label: ``0.5`` -> ``0.5``, ``4.0`` -> ``4``; anything else as text
    (labels are made before validation, which then names a bad value)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def number(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


@dataclass
class MethodSet:
    """The methods that apply to one trial: its own and its sweep's (deduplicated, own first)."""

    methods: List[Method] = field(default_factory=list)

    def evaluators(self, ctx: EvalContext) -> List[Evaluator]:
        return [ev for m in self.methods for ev in m.evaluators(ctx)]

    def draw(self, model: nn.Module, image: Tensor, label: Tensor, ctx: EvalContext) -> Optional[np.ndarray]:
        """The first picture a method draws, a plain network's (the generic one) last."""
        for m in sorted(self.methods, key=lambda m: type(m) is Method):
            picture = m.draw(model, image, label, ctx)
            if picture is not None:
                return picture
        return None
