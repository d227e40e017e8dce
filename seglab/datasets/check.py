"""Check a data set on disk without training: the core of ``seglab data check``.

:func:`check_dataset` builds every split present under a root (or the named ones) and runs
:meth:`~seglab.datasets.folder.SegmentationFolder.verify` on it: images per split and per group
(city, condition, ...), pairing (an image without its label is reported, not fatal: the check runs
with ``on_bad_sample="skip"`` unless told otherwise, so it lists every problem in one pass), every
label decoded, sized like its image and inside the label map, every image checked for corruption,
and the pixels per class. :func:`format_reports` turns the reports into a readable summary.

Layout errors (a missing root, an unknown data set or option) raise ConfigError with one line.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from seglab.datasets import DATASETS, build_dataset
from seglab.datasets.folder import MissingSplitError, VerifyReport
from seglab.errors import ConfigError

__all__ = ["check_dataset", "format_reports", "parse_options", "parse_value"]

SplitProgress = Callable[[str, int, int], None]
DEFAULT_SPLITS = ("train", "val", "test")


def _accepts(factory: Callable[..., Any], key: str) -> bool:
    try:
        return key in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def check_dataset(name: str, root: str, /, splits: Optional[Sequence[str]] = None, *,
                  progress: Optional[SplitProgress] = None, workers: int = 2, count_labels: bool = True,
                  **options: Any) -> List[VerifyReport]:
    """Verify data set ``name`` under ``root``; one :class:`VerifyReport` per split checked.

    ``splits``: the splits to check (default: every split of the official layout that exists under
    ``root``, from the data set's ``splits_to_check(options)``; absent ones are skipped, and when
    none exists the error names the directory expected for the first). ``progress(split, done,
    total)`` is called as samples finish. ``options`` go to the data set's factory (``dataset.*``
    keys); ``on_bad_sample`` defaults to ``"skip"`` so that unpaired images are listed rather than
    fatal, and ``augment`` to ``False`` (no transform is run).
    """
    factory = DATASETS.get(name)
    if not _accepts(factory, "root"):
        raise ConfigError(f"dataset '{name}' is not read from a root directory; nothing to check")
    if "root" in options:
        raise ConfigError("dataset.root: give the root as the ROOT argument, not as an option")
    if "split" in options:
        raise ConfigError("dataset.split: name the splits to check with --split (splits=...), not as an option")
    options = dict(options)
    for key, default in (("on_bad_sample", "skip"), ("augment", False)):
        if _accepts(factory, key):
            options.setdefault(key, default)
    explicit = splits is not None
    if splits is None:
        splits_of = getattr(factory, "splits_to_check", None)
        splits = tuple(splits_of(options)) if callable(splits_of) else DEFAULT_SPLITS
    reports: List[VerifyReport] = []
    missing: List[MissingSplitError] = []
    for split in splits:
        try:
            ds = build_dataset(name, split=split, root=str(root), **options)
        except MissingSplitError as exc:
            if explicit:
                raise
            missing.append(exc)
            continue
        if not callable(getattr(ds, "verify", None)):
            raise ConfigError(f"dataset '{name}' has no verify(); nothing to check")

        def one(done: int, total: int, split: str = split) -> None:
            if progress is not None:
                progress(split, done, total)

        reports.append(ds.verify(progress=one, workers=workers, count_labels=count_labels))
    if not reports and missing:
        raise missing[0]
    return reports


# ----------------------------------------------------------------------------------- formatting
def _pct(count: int, total: int) -> str:
    if count == 0:
        return "-"
    return f"{100.0 * count / total:.2f}%" if total else "?"


def format_reports(reports: Sequence[VerifyReport], root: Optional[str] = None) -> str:
    """A readable summary: images per split and group, the share of pixels per class, bad samples."""
    if not reports:
        return "no split checked"
    name = reports[0].name
    lines = [f"{name}" + (f" at {root}" if root else "")]
    lines.append(f"{'split':<12} {'images':>8} {'labelled':>9} {'bad':>5}")
    for r in reports:
        labelled = "?" if r.num_labelled is None else str(r.num_labelled)
        lines.append(f"{r.split:<12} {r.num_samples:>8} {labelled:>9} {len(r.bad):>5}")
    for r in reports:
        groups = {g: n for g, n in r.per_group.items() if g}
        if groups:
            text = ", ".join(f"{g} {n}" for g, n in groups.items())
            lines.append(f"{r.split}: {len(groups)} groups: {text}")
    counted = [r for r in reports if r.label_counts is not None and int(r.label_counts.sum()) > 0]
    if counted:
        names = list(counted[0].class_names or [])
        width = max(12, max((len(n) for n in names), default=0) + 1)
        lines.append("")
        lines.append("share of labelled pixels per class ('-': none)")
        lines.append(f"{'class':<{width}}" + "".join(f" {r.split:>11}" for r in counted))
        totals = [int(r.label_counts.sum()) for r in counted]
        rows = [(i, n) for i, n in enumerate(names)] + [(counted[0].ignore_index, "(ignore)")]
        for index, label in rows:
            lines.append(f"{label:<{width}}" + "".join(
                f" {_pct(int(r.label_counts[index]), t):>11}" for r, t in zip(counted, totals)))
        for r, t in zip(counted, totals):
            known = set(range(len(names))) | {r.ignore_index}
            stray = [i for i in np.flatnonzero(r.label_counts) if int(i) not in known]
            if stray:
                lines.append(f"{r.split}: unexpected train ids {[int(i) for i in stray]}")
        lines.append(f"{'pixels':<{width}}" + "".join(f" {t:>11}" for t in totals))
    bad = [(r.split, line) for r in reports for line in r.bad]
    lines.append("")
    if bad:
        lines.append(f"{len(bad)} bad sample(s):")
        lines += [f"  [{split}] {line}" for split, line in bad]
    else:
        lines.append("no bad samples")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- options
def parse_value(text: str) -> Any:
    """A command-line value: ``null``/``none``, ``true``/``false``, an int, a float, ``[a, b]`` (a list
    of such values) or else the string itself."""
    text = text.strip()
    lower = text.lower()
    if lower in ("null", "none", "~"):
        return None
    if lower in ("true", "false"):
        return lower == "true"
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(v) for v in inner.split(",")] if inner else []
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_options(pairs: Iterable[str]) -> Dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: parse_value(value)}``; ConfigError for a pair without ``=``."""
    out: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option expects KEY=VALUE, e.g. conditions=[fog,night] (got {pair!r})")
        out[key.strip()] = parse_value(value)
    return out
