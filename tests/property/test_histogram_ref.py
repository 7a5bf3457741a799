"""The compiled Histogram against a sorted-list reference: every percentile is the bucket-highest value of the
exact order statistic (HdrHistogram's definition), merge equals recording both, and counts/sum/min/max match."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat._histogram import Histogram

values_st = st.lists(st.one_of(st.integers(0, 5000), st.integers(0, 10**12), st.integers(-10, 10**15)),
                     min_size=1, max_size=400)
q_st = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=8)


def ref_percentile(h: Histogram, values: list[int], q: float) -> int:
    s = sorted(min(max(v, 0), h.highest) for v in values)
    rank = max(1, math.ceil(q / 100.0 * len(s)))
    return min(h.highest_equivalent(s[rank - 1]), s[-1])


@settings(max_examples=300, deadline=None)
@given(values_st, q_st, st.sampled_from([4, 7, 11, 14]), st.sampled_from([10**6, 60 * 10**9]))
def test_percentiles_match_sorted_reference(values, qs, sub_bits, highest):
    h = Histogram(highest, sub_bits)
    for v in values:
        h.record(v)
    assert h.count == len(values)
    clamped = [min(max(v, 0), highest) for v in values]
    assert h.clamped == sum(v > highest for v in values)
    assert h.min == min(clamped) and h.max == max(clamped)
    assert h.sum == float(sum(clamped)) or abs(h.sum - sum(clamped)) <= 1e-9 * sum(clamped)
    for q in qs:
        assert h.percentile(q) == ref_percentile(h, values, q), q
    # bucket resolution: relative width at most 2**-(sub_bits-1)
    for v in clamped:
        lo, hi = h.lowest_equivalent(v), h.highest_equivalent(v)
        assert lo <= v <= hi and hi - lo <= max(0, lo) * 2.0 ** -(sub_bits - 1)


@settings(max_examples=100, deadline=None)
@given(values_st, values_st, q_st)
def test_merge_and_record_array_equal_scalar_records(a, b, qs):
    ha, hb, hab, harr = Histogram(), Histogram(), Histogram(), Histogram()
    for v in a:
        ha.record(v)
        hab.record(v)
    for v in b:
        hb.record(v)
        hab.record(v)
    harr.record_array(np.array(a + b, dtype=np.int64))
    ha.merge(hb)
    for h in (ha, harr):
        assert h.count == hab.count and h.min == hab.min and h.max == hab.max
        assert (h.counts() == hab.counts()).all()
        assert h.percentiles(qs) == hab.percentiles(qs)


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=200), st.lists(st.integers(1, 5), min_size=200,
                                                                            max_size=200))
def test_weighted_record_array_and_prometheus_buckets(values, weights):
    w = weights[:len(values)]
    h = Histogram()
    h.record_array(values, w)
    assert h.count == sum(w)
    bounds = [1_000, 10_000, 1_000_000, 10**9]
    cum = h.cumulative_at(bounds)
    for b, c in zip(bounds, cum):
        # a bucket counts when it starts at or below the bound: exact up to the bucket containing b
        lo_next = h.highest_equivalent(b)
        assert sum(x for v, x in zip(values, w) if v <= b) <= c <= sum(x for v, x in zip(values, w) if v <= lo_next)
    assert cum == sorted(cum)


def test_bad_arguments_raise():
    import pytest

    with pytest.raises(ValueError):
        Histogram(sub_bits=1)
    with pytest.raises(ValueError):
        Histogram(highest=0)
    with pytest.raises(ValueError):
        Histogram().merge(Histogram(sub_bits=5))
    with pytest.raises(ValueError):
        Histogram().record_array([1, 2], [1])
    with pytest.raises(ValueError):
        Histogram().record(5, -1)
    h = Histogram()
    assert h.percentile(50) == 0 and h.min == 0 and h.max == 0 and h.mean == 0.0
