"""FlatBuffers read/build: lowlat vs the official flatbuffers package vs msgspec, in the same run.

    python -m pytest benchmarks/bench_fb.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,rounds
"""

import msgspec
import pytest
from conftest import MsgspecOrder, OfficialOrder, official_build

import lowlat

pytestmark = pytest.mark.benchmark(disable_gc=True, warmup=True)


# ---- fb.read: all six seed fields of one Order, from bytes ----------------------------------------------
@pytest.mark.benchmark(group="fb.read")
def test_read_lowlat_read_order(benchmark, lowlat_buf):
    read = lowlat.read_order
    assert benchmark(read, lowlat_buf)[0] == 123456789


@pytest.mark.benchmark(group="fb.read")
def test_read_lowlat_decode_order_6_attrs(benchmark, lowlat_buf):
    decode = lowlat.decode_order

    def run(b):
        v = decode(b)
        return v.id, v.symbol, v.price, v.quantity, v.side, v.timestamp
    assert benchmark(run, lowlat_buf)[0] == 123456789


@pytest.mark.benchmark(group="fb.read")
def test_read_official_flatbuffers(benchmark, lowlat_buf):
    def run(b):
        o = OfficialOrder.GetRootAs(b, 0)
        return o.Id(), o.Symbol().decode(), o.Price(), o.Quantity(), o.Side(), o.Timestamp()
    assert benchmark(run, lowlat_buf)[0] == 123456789


@pytest.mark.benchmark(group="fb.read")
def test_read_msgspec_msgpack_struct(benchmark, one_order):
    payload = msgspec.msgpack.encode(MsgspecOrder(*one_order))
    dec = msgspec.msgpack.Decoder(MsgspecOrder)

    def run(b):
        o = dec.decode(b)
        return o.id, o.symbol, o.price, o.quantity, o.side, o.timestamp
    assert benchmark(run, payload)[0] == 123456789


# ---- fb.build: one Order from Python arguments ---------------------------------------------------------
@pytest.mark.benchmark(group="fb.build")
def test_build_lowlat_encode_order(benchmark, one_order):
    enc = lowlat.encode_order
    assert lowlat.read_order(benchmark(enc, *one_order)) == one_order


@pytest.mark.benchmark(group="fb.build")
def test_build_lowlat_encode_order_into(benchmark, one_order):
    enc = lowlat.encode_order_into
    buf = bytearray(256)
    assert benchmark(enc, buf, 0, *one_order) > 0
    assert lowlat.read_order(bytes(buf)) == one_order


@pytest.mark.benchmark(group="fb.build")
def test_build_official_flatbuffers(benchmark, one_order):
    out = benchmark(official_build, *one_order)
    assert lowlat.read_order(bytes(out)) == one_order


@pytest.mark.benchmark(group="fb.build")
def test_build_msgspec_msgpack_struct(benchmark, one_order):
    enc = msgspec.msgpack.Encoder()

    def run(*a):
        return enc.encode(MsgspecOrder(*a))
    assert benchmark(run, *one_order)
