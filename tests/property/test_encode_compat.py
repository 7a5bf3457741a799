"""The compiled fixed-layout encoders (lowlat._encode) against the official flatbuffers package and _core's
verified decoders: every field reads back identically with both, the layout is aligned as flatc's verifier
wants (8-byte scalars 8-aligned, strings 4-aligned), and ``*_into`` writes exactly the bytes of the ``bytes`` form."""

import math

import numpy as np
import pytest
from flatbuffers import number_types as N
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.ref_validator import official_read_table, official_table

from lowlat import _core, _encode

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)
i8 = st.integers(-128, 127)
text = st.one_of(st.none(), st.text(max_size=30))
f64 = st.floats(width=64)

TABLES = {
    "validation_result": ([("order_id", N.Uint64Flags), ("accepted", N.BoolFlags), ("reason", N.Uint8Flags),
                           ("timestamp", N.Uint64Flags), ("symbol", "str")],
                          {"order_id": u64, "accepted": st.booleans(), "reason": u8, "timestamp": u64,
                           "symbol": text}),
    "execution_report": ([("order_id", N.Uint64Flags), ("symbol", "str"), ("account", N.Uint64Flags),
                          ("side", N.Int8Flags), ("status", N.Uint8Flags), ("reason", N.Uint8Flags),
                          ("trade_id", N.Uint64Flags), ("maker_order_id", N.Uint64Flags),
                          ("taker_order_id", N.Uint64Flags), ("is_maker", N.BoolFlags),
                          ("last_price", N.Float64Flags), ("last_quantity", N.Uint32Flags),
                          ("leaves_quantity", N.Uint32Flags), ("cum_quantity", N.Uint32Flags),
                          ("timestamp", N.Uint64Flags), ("client_order_id", "str")],
                         {"order_id": u64, "symbol": text, "account": u64, "side": i8, "status": u8, "reason": u8,
                          "trade_id": u64, "maker_order_id": u64, "taker_order_id": u64, "is_maker": st.booleans(),
                          "last_price": f64, "last_quantity": u32, "leaves_quantity": u32, "cum_quantity": u32,
                          "timestamp": u64, "client_order_id": text}),
    "trade": ([("trade_id", N.Uint64Flags), ("symbol", "str"), ("price", N.Float64Flags),
               ("quantity", N.Uint32Flags), ("aggressor_side", N.Int8Flags), ("maker_order_id", N.Uint64Flags),
               ("taker_order_id", N.Uint64Flags), ("timestamp", N.Uint64Flags), ("sequence", N.Uint64Flags)],
              {"trade_id": u64, "symbol": text, "price": f64, "quantity": u32, "aggressor_side": i8,
               "maker_order_id": u64, "taker_order_id": u64, "timestamp": u64, "sequence": u64}),
    "l2_update": ([("symbol", "str"), ("sequence", N.Uint64Flags), ("side", N.Int8Flags),
                   ("price", N.Float64Flags), ("quantity", N.Uint64Flags), ("order_count", N.Uint32Flags),
                   ("timestamp", N.Uint64Flags)],
                  {"symbol": text, "sequence": u64, "side": i8, "price": f64, "quantity": u64, "order_count": u32,
                   "timestamp": u64}),
}


def _eq(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _check_alignment(buf: bytes, fields) -> None:
    t = official_table(buf)
    assert t.Pos % 8 == 0
    for i, (_name, kind) in enumerate(fields):
        o = t.Offset(4 + 2 * i)
        if not o:
            continue
        size = 4 if kind == "str" else kind.bytewidth
        assert (t.Pos + o) % size == 0, (_name, t.Pos + o)
        if kind == "str":
            s = t.Pos + o + int.from_bytes(buf[t.Pos + o:t.Pos + o + 4], "little")
            assert s % 4 == 0


@pytest.mark.parametrize("name", list(TABLES))
def test_encoders_read_identically_with_official_and_core(name):
    fields, strat = TABLES[name]

    @settings(max_examples=200, deadline=None)
    @given(st.fixed_dictionaries(strat), st.integers(0, 40))
    def check(d, offset):
        b = getattr(_encode, "encode_" + name)(**d)
        got, present = official_read_table(official_table(b), fields)
        for k, v in d.items():
            assert _eq(v, got[k]), (k, v, got[k])
        assert present == {k for k, v in d.items() if v is not None}
        dec = getattr(_core, "decode_" + name)(b)
        for k, v in d.items():
            assert _eq(v, getattr(dec, k)), (k, v, getattr(dec, k))
        _check_alignment(b, fields)
        buf = bytearray(b"\xaa" * (offset + len(b) + 3))
        n = getattr(_encode, f"encode_{name}_into")(buf, offset, **d)
        assert n == len(b) and bytes(buf[offset:offset + n]) == b
        assert buf[:offset] == b"\xaa" * offset and buf[offset + n:] == b"\xaa\xaa\xaa"

    check()


def test_into_refuses_a_buffer_too_small():
    buf = bytearray(60)
    with pytest.raises(ValueError):
        _encode.encode_validation_result_into(buf, 10, 1, True, 0, 5, "AAPL")
    with pytest.raises(ValueError):
        _encode.encode_validation_result_into(buf, -1, 1, True, 0, 5, None)
    with pytest.raises(BufferError):
        _encode.encode_trade_into(b"read-only bytes" * 20, 0, 1, "X")
    assert _encode.encode_validation_result_into(buf, 8, 1, True, 0, 5, None) == 52
    assert _encode.validation_result_size("AAPL") == 52 + 12


@settings(max_examples=150, deadline=None)
@given(st.lists(text, max_size=4), st.data(), st.integers(0, 9), u64)
def test_batch_validation_results_equal_the_framed_scalar_results(symbols, data, offset, ts):
    n = data.draw(st.integers(0, 20))
    ids = np.array(data.draw(st.lists(u64, min_size=n, max_size=n)), dtype=np.uint64)
    codes = np.array(data.draw(st.lists(u8, min_size=n, max_size=n)), dtype=np.uint8)
    idx = np.array(data.draw(st.lists(st.integers(-1, len(symbols) - 1), min_size=n, max_size=n)), dtype=np.int32)
    want = _core.frame([_encode.encode_validation_result(int(i), c == 0, int(c), ts, None if k < 0 else symbols[k])
                        for i, c, k in zip(ids, codes, idx)])
    buf = bytearray(b"\xaa" * (offset + len(want) + 2))
    assert _encode.encode_validation_results_into(buf, offset, ids, codes, idx, symbols, ts) == len(want)
    assert bytes(buf[offset:offset + len(want)]) == want
    assert buf[:offset] == b"\xaa" * offset and buf[offset + len(want):] == b"\xaa\xaa"
    if n:  # one byte short, or an index outside symbols: refused before anything is written
        short = bytearray(b"\xaa" * (len(want) - 1))
        with pytest.raises(ValueError):
            _encode.encode_validation_results_into(short, 0, ids, codes, idx, symbols, ts)
        bad = idx.copy()
        bad[-1] = len(symbols)
        with pytest.raises(ValueError):
            _encode.encode_validation_results_into(buf, 0, ids, codes, bad, symbols, ts)
        assert short == b"\xaa" * (len(want) - 1)
        with pytest.raises(ValueError):
            _encode.encode_validation_results_into(buf, 0, ids, codes[:-1], idx, symbols)
