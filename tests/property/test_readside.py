"""lowlat._readside.OrderStates against the OrderedDict it replaces (write = set + move_to_end, then evict the
oldest beyond max_orders): same contents in the same recency order after any sequence of writes, including ids
that collide in the index (multiples of a power of two) and evictions that shift probe runs."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat._readside import OrderStates

ids = st.one_of(st.integers(0, 50), st.integers(0, 20).map(lambda k: k << 40), st.integers(0, 2**64 - 1))
state = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=7, max_size=7).map(
    lambda v: [v[0], v[1], v[2], v[3], v[4], abs(v[5]), v[6]])


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 12), st.lists(st.tuples(ids, state), max_size=120), st.lists(ids, max_size=20))
def test_order_states_behave_like_the_ordered_dict(max_orders, writes, probes):
    ref: OrderedDict[int, list[int]] = OrderedDict()
    got = OrderStates(max_orders)
    for oid, s in writes:
        ref[oid] = s
        ref.move_to_end(oid)
        while len(ref) > max_orders:
            ref.popitem(last=False)
        got.put(oid, s)
        assert len(got) == len(ref)
    assert got.items() == list(ref.items())
    for oid in probes + [oid for oid, _ in writes]:
        assert (oid in got) == (oid in ref)
        assert got.get(oid) == ref.get(oid)


def test_out_of_range_ids_are_absent_and_bad_states_refused():
    o = OrderStates(4)
    o.put(2**64 - 1, [1, 2, 3, 4, 5, 6, 7])
    assert o.get(-1) is None and o.get(2**64) is None and -1 not in o
    assert o.get(2**64 - 1) == [1, 2, 3, 4, 5, 6, 7]
    import pytest
    with pytest.raises(ValueError):
        o.put(1, [1, 2])
    with pytest.raises(ValueError):
        OrderStates(-1)
