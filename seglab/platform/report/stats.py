"""Statistics of the comparison: mean with a t-confidence interval over seeds, and the paired
difference of two configurations over the seeds both have.

scipy computes every interval (``scipy.stats.ttest_1samp`` / ``ttest_rel`` and their
``confidence_interval``); this module only pairs the seeds, handles N = 1 (no interval) and N >= 2
with zero spread (an interval of width 0, where scipy would divide 0 by 0), and formats.

>>> est = mean_ci([0.61, 0.63, 0.62])
>>> round(est.mean, 4), est.n, est.low < est.mean < est.high
(0.62, 3, True)
>>> d = paired_difference({0: 0.63, 1: 0.64, 2: 0.60}, {0: 0.62, 1: 0.62, 3: 0.70})
>>> d.n, d.seeds, d.dropped_a, d.dropped_b
(2, (0, 1), (2,), (3,))
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Hashable, Mapping, Optional, Sequence, Tuple

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values with its two-sided ``confidence`` t-interval ``[low, high]``
    (None when ``n < 2``: one value gives no interval)."""

    mean: float
    n: int
    low: Optional[float] = None
    high: Optional[float] = None
    confidence: float = CONFIDENCE
    pvalue: Optional[float] = None  # H0: true mean 0 (meaningful for a difference); None when n < 2

    @property
    def half_width(self) -> Optional[float]:
        """Half the interval's width (the ``±`` of a symmetric t-interval)."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def contains(self, value: float = 0.0) -> Optional[bool]:
        """Whether ``value`` lies inside the interval (None without one)."""
        return None if not self.has_interval else self.low <= value <= self.high  # type: ignore[operator]

    def format(self, scale: float = 1.0, digits: int = 2, signed: bool = False) -> str:
        """``62.70 ± 0.31`` (n >= 2), ``62.70 (n=1)``; values multiplied by ``scale``."""
        sign = "+" if signed else ""
        text = f"{self.mean * scale:{sign}.{digits}f}"
        if self.has_interval:
            return f"{text} ± {self.half_width * scale:.{digits}f}"  # type: ignore[operator]
        return f"{text} (n=1)" if self.n == 1 else text


@dataclass(frozen=True)
class Paired(Estimate):
    """:class:`Estimate` of ``a - b`` over the seeds both have (``seeds``), with the seeds only ``a``
    (``dropped_a``) or only ``b`` (``dropped_b``) has, which the difference leaves out."""

    seeds: Tuple[Hashable, ...] = ()
    dropped_a: Tuple[Hashable, ...] = ()
    dropped_b: Tuple[Hashable, ...] = ()


def _finite(values: Sequence[Optional[float]]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def mean_ci(values: Sequence[Optional[float]], confidence: float = CONFIDENCE) -> Optional[Estimate]:
    """Mean of the finite values with their ``confidence`` t-interval (scipy's one-sample t-test
    interval: mean ± t_{n-1} · s / √n); None for no values, no interval for one value."""
    from scipy import stats

    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return None
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, 1, confidence=confidence)
    if float(np.ptp(x)) == 0.0:  # no spread: the interval is the point (scipy would give 0/0)
        return Estimate(mean, n, mean, mean, confidence, 0.0 if mean != 0 else 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-identical values: scipy warns, still exact enough
        result = stats.ttest_1samp(x, 0.0)
        ci = result.confidence_interval(confidence)
    return Estimate(mean, n, float(ci.low), float(ci.high), confidence, float(result.pvalue))


def paired_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
                      confidence: float = CONFIDENCE) -> Optional[Paired]:
    """``a - b`` over the seeds (keys) both map to a finite value: mean with scipy's paired t-test
    interval (``ttest_rel``); None when no seed is shared. Seeds only one side has are dropped and
    named in the result."""
    from scipy import stats

    ok = lambda m: {k for k, v in m.items() if v is not None and math.isfinite(v)}  # noqa: E731
    in_a, in_b = ok(a), ok(b)
    seeds = tuple(sorted(in_a & in_b, key=seed_order))
    dropped_a = tuple(sorted(set(a) - set(seeds), key=seed_order))
    dropped_b = tuple(sorted(set(b) - set(seeds), key=seed_order))
    if not seeds:
        return None
    x = np.asarray([a[s] for s in seeds], dtype=np.float64)
    y = np.asarray([b[s] for s in seeds], dtype=np.float64)
    d = x - y
    n, mean = len(seeds), float(d.mean())
    extra = dict(seeds=seeds, dropped_a=dropped_a, dropped_b=dropped_b)
    if n == 1:
        return Paired(mean, 1, confidence=confidence, **extra)
    if float(np.ptp(d)) == 0.0:
        return Paired(mean, n, mean, mean, confidence, 0.0 if mean != 0 else 1.0, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(x, y)
        ci = result.confidence_interval(confidence)
    return Paired(mean, n, float(ci.low), float(ci.high), confidence, float(result.pvalue), **extra)


def seed_order(key: Hashable):
    """Seeds sort numerically when they are numbers (or numeric strings), else as text."""
    try:
        return (0, float(key), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(key))


def verdict(diff: Optional[Estimate], scale: float = 100.0, unit: str = "points") -> str:
    """A sentence on a difference: significant, no significant difference, or no interval."""
    if diff is None:
        return "no paired seeds: no difference computed"
    value = f"{diff.mean * scale:+.2f} {unit}"
    if not diff.has_interval:
        return f"{value} from a single seed: no interval, no claim either way"
    low, high = diff.low * scale, diff.high * scale  # type: ignore[operator]
    ci = f"{100 * diff.confidence:.0f} % CI [{low:+.2f}, {high:+.2f}]"
    if diff.contains(0.0):
        return f"no significant difference ({value}; {ci} contains 0; n={diff.n} paired seeds)"
    return f"{value}, {ci}, n={diff.n} paired seeds: significant at the {100 * (1 - diff.confidence):.0f} % level"
