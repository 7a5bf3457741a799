"""Byte compatibility with the official flatbuffers package, both directions, for random orders (hypothesis):
absent/default fields, extreme integers, unicode symbols (incl. NUL characters), every enum byte value."""

import math

from _helpers import encode_order_dict as _encode
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.ref_validator import DEFAULTS, ORDER_FIELDS, official_build_order, official_read_order

import lowlat

u64 = st.integers(0, 2**64 - 1)
i8 = st.integers(-128, 127)
text = st.text(max_size=40)

orders = st.fixed_dictionaries({
    "id": u64, "symbol": st.one_of(st.none(), text), "price": st.floats(width=64),
    "quantity": st.integers(0, 2**32 - 1), "side": i8, "timestamp": u64, "order_type": i8, "time_in_force": i8,
    "post_only": st.booleans(), "account": u64, "client_order_id": st.one_of(st.none(), text), "stp": i8,
})
# official builds may also leave any subset of fields out entirely
partial_orders = orders.flatmap(lambda d: st.sets(st.sampled_from(list(d))).map(
    lambda drop: {k: v for k, v in d.items() if k not in drop}))


def _same(a: dict, b: dict) -> bool:
    for k, x in a.items():
        y = b[k]
        if isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif x != y:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(orders)
def test_lowlat_encoded_reads_identically_with_official(d):
    b = _encode(d)
    got, present = official_read_order(b)
    assert _same(d, got)
    # lowlat always writes scalars; strings only when given
    assert present == {name for name, _ in ORDER_FIELDS if d[name] is not None}


@settings(max_examples=300, deadline=None)
@given(partial_orders, st.booleans())
def test_official_built_reads_identically_with_lowlat(d, force_defaults):
    b = official_build_order(d, force_defaults=force_defaults)
    want = {**DEFAULTS, **d}
    v = lowlat.decode_order(b)
    assert _same(want, {k: (int(x) if isinstance(x, int) and not isinstance(x, bool) else x)
                        for k, x in v.to_dict().items()})
    t = lowlat.read_order(memoryview(b))
    assert _same({k: want[k] for k in ("id", "symbol", "price", "quantity", "side", "timestamp")},
                 dict(zip(("id", "symbol", "price", "quantity", "side", "timestamp"), t)))
    # and the official reader agrees on presence with lowlat
    _, present = official_read_order(b)
    assert set(v.present) == present


@settings(max_examples=100, deadline=None)
@given(orders, st.integers(0, 64))
def test_encode_into_equals_encode(d, offset):
    ref = _encode(d)
    buf = bytearray(offset + len(ref))
    n = lowlat.encode_order_into(buf, offset, d["id"], d["symbol"], d["price"], d["quantity"], d["side"],
                                 d["timestamp"], order_type=d["order_type"], time_in_force=d["time_in_force"],
                                 post_only=d["post_only"], account=d["account"],
                                 client_order_id=d["client_order_id"], stp=d["stp"])
    assert n == len(ref) and bytes(buf[offset:]) == ref
