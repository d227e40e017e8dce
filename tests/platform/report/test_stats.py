"""Means with t-intervals and paired differences: equal to scipy's numbers and to hand arithmetic."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from seglab.platform.report import stats

T_975_DF2 = 4.302652729749464  # t-table: 97.5 % quantile with 2 degrees of freedom


def test_mean_ci_equals_scipy_and_the_hand_formula():
    values = [0.61, 0.63, 0.62]
    est = stats.mean_ci(values)
    # by hand: mean 0.62, s = 0.01, half-width = t_{.975,2} * s / sqrt(3)
    assert est.n == 3 and est.mean == pytest.approx(0.62, abs=1e-12)
    assert est.half_width == pytest.approx(T_975_DF2 * 0.01 / math.sqrt(3), rel=1e-9)
    low, high = sps.t.interval(0.95, df=2, loc=np.mean(values), scale=sps.sem(values))  # another scipy path
    assert (est.low, est.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert est.format(scale=100) == "62.00 ± 2.48"
    assert est.contains(0.6) and not est.contains(0.0)


def test_one_value_has_no_interval_and_none_is_ignored():
    est = stats.mean_ci([0.5, None, float("nan")])
    assert est.n == 1 and est.mean == 0.5 and est.low is None and not est.has_interval
    assert est.format(scale=100) == "50.00 (n=1)" and est.contains(0.0) is None
    assert stats.mean_ci([]) is None and stats.mean_ci([None]) is None
    same = stats.mean_ci([0.4, 0.4])  # no spread: the t-interval is undefined (0/0), so none is given
    assert (same.low, same.high, same.half_width, same.pvalue) == (None, None, None, None)
    assert same.n == 2 and same.mean == 0.4 and not same.has_interval and same.no_variation
    assert same.format(scale=100) == "40.00 (no variation, n=2)"


def test_paired_difference_pairs_by_seed_drops_the_rest_and_equals_ttest_rel():
    method = {0: 0.63, 1: 0.64, 2: 0.60, 5: 0.70}
    base = {0: 0.62, 1: 0.62, 2: 0.61, 3: 0.50}
    d = stats.paired_difference(method, base)
    assert d.seeds == (0, 1, 2) and d.dropped_a == (5,) and d.dropped_b == (3,) and d.n == 3
    diffs = [0.01, 0.02, -0.01]
    assert d.mean == pytest.approx(np.mean(diffs), abs=1e-12)
    sd = math.sqrt(sum((x - np.mean(diffs)) ** 2 for x in diffs) / 2)  # 0.015275...
    assert d.half_width == pytest.approx(T_975_DF2 * sd / math.sqrt(3), rel=1e-9)
    ref = sps.ttest_rel([0.63, 0.64, 0.60], [0.62, 0.62, 0.61])
    ci = ref.confidence_interval(0.95)
    assert (d.low, d.high, d.pvalue) == (pytest.approx(ci.low), pytest.approx(ci.high), pytest.approx(ref.pvalue))
    assert d.contains(0.0)
    assert stats.verdict(d) == ("no significant difference (+0.67 points; 95 % CI [-3.13, +4.46] contains 0; "
                                "n=3 paired seeds)")


def test_paired_difference_edge_cases():
    assert stats.paired_difference({0: 0.5}, {1: 0.4}) is None  # no shared seed
    one = stats.paired_difference({"0": 0.5, "1": None}, {"0": 0.4, "1": 0.3})
    assert one.n == 1 and one.mean == pytest.approx(0.1) and not one.has_interval and one.dropped_a == ("1",)
    assert "single seed" in stats.verdict(one)
    sig = stats.paired_difference({0: 0.70, 1: 0.72, 2: 0.71}, {0: 0.60, 1: 0.61, 2: 0.62})
    assert not sig.contains(0.0) and "significant at the 5 % level" in stats.verdict(sig)
    # seeds as strings sort numerically: "10" after "9"
    assert stats.paired_difference({"10": 1.0, "9": 2.0}, {"10": 0.0, "9": 0.0}).seeds == ("9", "10")


def test_identical_differences_over_seeds_give_no_interval_and_no_claim():
    # 0.61 - 0.60 = 0.62 - 0.61 = 0.63 - 0.62: three identical paired differences. The t statistic is
    # 0 / 0, so there is no interval and no p-value, and no claim may be made either way.
    d = stats.paired_difference({0: 0.61, 1: 0.62, 2: 0.63}, {0: 0.60, 1: 0.61, 2: 0.62})
    assert d.n == 3 and d.seeds == (0, 1, 2) and d.mean == pytest.approx(0.01, abs=1e-15)
    assert (d.low, d.high, d.pvalue, d.half_width) == (None, None, None, None)
    assert not d.has_interval and d.no_variation and d.contains(0.0) is None
    text = stats.verdict(d)
    assert "no variation across seeds: no interval" in text and "significant" not in text
    assert text.startswith("+1.00 points") and "n=3 paired seeds" in text
    assert d.format(scale=100, signed=True) == "+1.00 (no variation, n=3)"
    # equal up to binary rounding only (0.7 - 0.6 != 0.8 - 0.7 in float64): no variation either, not
    # a "significant" interval [+10.00, +10.00] with p ~ 1e-31
    diffs = np.subtract([0.7, 0.8, 0.9], [0.6, 0.7, 0.8])
    assert 0 < np.ptp(diffs) < 1e-15
    r = stats.paired_difference({0: 0.7, 1: 0.8, 2: 0.9}, {0: 0.6, 1: 0.7, 2: 0.8})
    assert not r.has_interval and r.pvalue is None and "significant" not in stats.verdict(r)
    assert r.format(scale=100, signed=True) == "+10.00 (no variation, n=3)"
    m = stats.mean_ci([0.55, 0.55, 0.55])
    assert m.n == 3 and not m.has_interval and m.format(scale=100) == "55.00 (no variation, n=3)"
    # a real spread, however small next to the mean, still gets scipy's interval
    small = stats.paired_difference({0: 0.61, 1: 0.6201, 2: 0.63}, {0: 0.60, 1: 0.61, 2: 0.62})
    assert small.has_interval and not small.no_variation and small.pvalue < 0.05
    assert "significant at the 5 % level" in stats.verdict(small)
