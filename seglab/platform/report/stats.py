"""Statistics of the comparison: mean with a t-confidence interval over seeds, and the paired
difference of two configurations over the seeds both have.

scipy computes every interval (``scipy.stats.ttest_1samp`` / ``ttest_rel`` and their
``confidence_interval``); this module only pairs the seeds, handles N = 1 (no interval) and N >= 2
with no variation (no interval either: the t statistic is 0 / 0, so neither an interval nor a
p-value exists, and nothing may be called significant), and formats.

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
    """A mean over ``n`` values with its two-sided ``confidence`` t-interval ``[low, high]``.

    No interval (``low``, ``high``, ``pvalue`` None) when ``n < 2`` (one value) or when the ``n >= 2``
    values do not vary (:attr:`no_variation`: the t-interval is undefined, 0 / 0)."""

    mean: float
    n: int
    low: Optional[float] = None
    high: Optional[float] = None
    confidence: float = CONFIDENCE
    pvalue: Optional[float] = None  # H0: true mean 0 (meaningful for a difference); None without an interval

    @property
    def half_width(self) -> Optional[float]:
        """Half the interval's width (the ``±`` of a symmetric t-interval)."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def no_variation(self) -> bool:
        """``n >= 2`` values without an interval: they are all equal (up to float rounding)."""
        return self.n >= 2 and not self.has_interval

    def contains(self, value: float = 0.0) -> Optional[bool]:
        """Whether ``value`` lies inside the interval (None without one)."""
        return None if not self.has_interval else self.low <= value <= self.high  # type: ignore[operator]

    def format(self, scale: float = 1.0, digits: int = 2, signed: bool = False) -> str:
        """``62.70 ± 0.31`` (n >= 2), ``62.70 (n=1)``, ``62.70 (no variation, n=3)``; values
        multiplied by ``scale``."""
        sign = "+" if signed else ""
        text = f"{self.mean * scale:{sign}.{digits}f}"
        if self.has_interval:
            return f"{text} ± {self.half_width * scale:.{digits}f}"  # type: ignore[operator]
        return f"{text} (no variation, n={self.n})" if self.no_variation else f"{text} (n={self.n})"


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


NO_SPREAD = 1e-12
"""Spread (max - min) at or below which values count as equal, relative to ``max(1, |values|)``:
float rounding of the logged scores and of their differences (0.8 - 0.7 != 0.9 - 0.8 in float64,
a spread of ~1e-16) is no variation, and scipy would turn it into an interval of width ~0 with
p ~ 1e-31."""


def varies(x: np.ndarray) -> bool:
    """Whether the values ``x`` (at least one) spread by more than :data:`NO_SPREAD`."""
    return float(np.ptp(x)) > NO_SPREAD * max(1.0, float(np.abs(x).max()))


def mean_ci(values: Sequence[Optional[float]], confidence: float = CONFIDENCE) -> Optional[Estimate]:
    """Mean of the finite values with their ``confidence`` t-interval (scipy's one-sample t-test
    interval: mean ± t_{n-1} · s / √n); None for no values, no interval for one value or for values
    that do not vary (:attr:`Estimate.no_variation`)."""
    from scipy import stats

    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return None
    mean = float(x.mean())
    if n == 1 or not varies(x):  # one value, or no spread: t = 0 / 0, no interval and no p-value
        return Estimate(mean, n, confidence=confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-identical values: scipy warns, still exact enough
        result = stats.ttest_1samp(x, 0.0)
        ci = result.confidence_interval(confidence)
    return Estimate(mean, n, float(ci.low), float(ci.high), confidence, float(result.pvalue))


def paired_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
                      confidence: float = CONFIDENCE) -> Optional[Paired]:
    """``a - b`` over the seeds (keys) both map to a finite value: mean with scipy's paired t-test
    interval (``ttest_rel``); None when no seed is shared. Seeds only one side has are dropped and
    named in the result. One shared seed, or differences that do not vary across the seeds, give no
    interval and no p-value (:attr:`Estimate.no_variation` for the latter)."""
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
    if n == 1 or not varies(d):  # one seed, or identical differences: t = 0 / 0
        return Paired(mean, n, confidence=confidence, **extra)
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
    """A sentence on a difference: significant, no significant difference, or no interval (one
    seed, or the same difference on every seed)."""
    if diff is None:
        return "no paired seeds: no difference computed"
    value = f"{diff.mean * scale:+.2f} {unit}"
    if diff.no_variation:
        return f"{value} on each of n={diff.n} paired seeds; no variation across seeds: no interval, no claim " \
               f"either way"
    if not diff.has_interval:
        return f"{value} from a single seed: no interval, no claim either way"
    low, high = diff.low * scale, diff.high * scale  # type: ignore[operator]
    ci = f"{100 * diff.confidence:.0f} % CI [{low:+.2f}, {high:+.2f}]"
    if diff.contains(0.0):
        return f"no significant difference ({value}; {ci} contains 0; n={diff.n} paired seeds)"
    return f"{value}, {ci}, n={diff.n} paired seeds: significant at the {100 * (1 - diff.confidence):.0f} % level"
