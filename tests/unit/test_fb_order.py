"""finance.Order: lowlat reader/encoder vs the official flatbuffers package, verification errors, encode_into."""

import struct

import numpy as np
import pytest
from reference.ref_validator import DEFAULTS, official_build_order, official_read_order

import lowlat
from lowlat import DecodeError, OrderType, Side, StpMode, TimeInForce

FULL = {"id": 2**64 - 1, "symbol": "ÄPL€", "price": 101.25, "quantity": 2**32 - 1, "side": 1,
        "timestamp": 1_700_000_000_123, "order_type": 1, "time_in_force": 2, "post_only": True, "account": 77,
        "client_order_id": "cl-1", "stp": 4}


def _lowlat_encode(d):
    return lowlat.encode_order(d["id"], d["symbol"], d["price"], d["quantity"], d["side"], d["timestamp"],
                               order_type=d["order_type"], time_in_force=d["time_in_force"],
                               post_only=d["post_only"], account=d["account"],
                               client_order_id=d["client_order_id"], stp=d["stp"])


def test_encode_then_read_all_fields():
    b = _lowlat_encode(FULL)
    assert lowlat.read_order(b) == (FULL["id"], FULL["symbol"], 101.25, FULL["quantity"], 1, FULL["timestamp"])
    v = lowlat.decode_order(b)
    assert v.to_dict() == FULL
    assert v.side is Side.SELL and v.order_type is OrderType.MARKET and v.time_in_force is TimeInForce.FOK
    assert v.stp is StpMode.DECREMENT_AND_CANCEL
    assert v.present == frozenset(FULL)


def test_lowlat_bytes_read_by_official_package():
    got, _present = official_read_order(_lowlat_encode(FULL))
    assert got == FULL


def test_official_bytes_read_by_lowlat_with_absent_fields():
    b = official_build_order({"id": 5, "symbol": "X"})      # every other field at its default -> absent
    assert lowlat.read_order(b) == (5, "X", 0.0, 0, 0, 0)
    v = lowlat.decode_order(b)
    assert v.present == {"id", "symbol"}
    assert v.to_dict() == {**DEFAULTS, "id": 5, "symbol": "X"}


def test_seed_schema_buffer_still_reads():
    # a producer built against the seed schema (6 fields) writes a 6-entry vtable; appended fields are defaults
    import flatbuffers
    b = flatbuffers.Builder(64)
    s = b.CreateString("MSFT")
    b.StartObject(6)
    b.PrependUint64Slot(0, 9, 0)
    b.PrependUOffsetTRelativeSlot(1, s, 0)
    b.PrependFloat64Slot(2, 10.5, 0.0)
    b.PrependUint32Slot(3, 3, 0)
    b.PrependInt8Slot(4, 1, 0)
    b.PrependUint64Slot(5, 123, 0)
    b.Finish(b.EndObject())
    buf = bytes(b.Output())
    assert lowlat.read_order(buf) == (9, "MSFT", 10.5, 3, 1, 123)
    assert lowlat.decode_order(buf).client_order_id is None


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)])
def test_any_buffer_protocol_object(kind):
    b = _lowlat_encode(FULL)
    assert lowlat.read_order(kind(b))[0] == FULL["id"]
    assert lowlat.decode_order(kind(b)).account == 77


def test_decode_view_keeps_buffer_alive():
    v = lowlat.decode_order(bytearray(_lowlat_encode(FULL)))
    import gc
    gc.collect()
    assert v.symbol == FULL["symbol"] and v.client_order_id == "cl-1"


def test_every_truncation_raises_decode_error():
    # Only the zero padding after the last string's NUL (< 4 bytes) may be cut; any shorter prefix must fail.
    for b in (_lowlat_encode(FULL), official_build_order(FULL), _lowlat_encode(dict(FULL, client_order_id=None))):
        ok = [n for n in range(len(b) + 1) if _reads(b[:n])]
        assert ok == list(range(ok[0], len(b) + 1)) and ok[0] >= len(b) - 3, (len(b), ok)
        for n in range(ok[0]):
            with pytest.raises(DecodeError):
                lowlat.read_order(b[:n])
            with pytest.raises(DecodeError):
                lowlat.decode_order(b[:n])
        for n in ok:
            assert lowlat.decode_order(b[:n]).to_dict() == lowlat.decode_order(b).to_dict()


def _reads(b):
    try:
        lowlat.read_order(b)
        return True
    except DecodeError:
        return False


def test_error_says_what_is_wrong():
    with pytest.raises(DecodeError, match="shorter than the 4-byte root offset"):
        lowlat.read_order(b"\x01")
    with pytest.raises(DecodeError, match="outside the buffer"):
        lowlat.read_order(struct.pack("<I", 1000) + bytes(8))
    bad = bytearray(_lowlat_encode(FULL))
    bad[88:92] = struct.pack("<I", 10_000)              # symbol length beyond the end
    with pytest.raises(DecodeError, match="string"):
        lowlat.read_order(bytes(bad))
    assert issubclass(DecodeError, ValueError)


def test_missing_nul_terminator_rejected():
    b = bytearray(_lowlat_encode(dict(FULL, symbol="ABC", client_order_id=None)))
    assert b[88:92] == struct.pack("<I", 3)
    b[92 + 3] = ord("x")
    with pytest.raises(DecodeError, match="NUL"):
        lowlat.read_order(bytes(b))


def test_invalid_utf8_symbol_raises_decode_error():
    b = bytearray(_lowlat_encode(dict(FULL, symbol="AB", client_order_id=None)))
    b[92] = 0xFF
    with pytest.raises(DecodeError, match="UTF-8"):
        lowlat.read_order(bytes(b))


def test_encode_order_into_writes_at_offset_without_touching_neighbours():
    ref = _lowlat_encode(FULL)
    buf = bytearray(b"\xee" * (len(ref) + 20))
    n = lowlat.encode_order_into(buf, 7, FULL["id"], FULL["symbol"], 101.25, FULL["quantity"], 1,
                                 FULL["timestamp"], order_type=1, time_in_force=2, post_only=True, account=77,
                                 client_order_id="cl-1", stp=4)
    assert n == len(ref)
    assert bytes(buf[7:7 + n]) == ref
    assert buf[:7] == b"\xee" * 7 and buf[7 + n:] == b"\xee" * 13
    arr = np.zeros(200, np.uint8)
    assert lowlat.encode_order_into(arr, 0, 1, "A", 1.0, 1, 0, 0) == len(lowlat.encode_order(1, "A", 1.0, 1, 0, 0))


def test_encode_order_into_rejects_bad_target():
    with pytest.raises(ValueError, match="do not fit"):
        lowlat.encode_order_into(bytearray(50), 0, 1, "A", 1.0, 1, 0, 0)
    with pytest.raises(ValueError, match="do not fit"):
        lowlat.encode_order_into(bytearray(500), -1, 1, "A", 1.0, 1, 0, 0)
    with pytest.raises((TypeError, BufferError)):
        lowlat.encode_order_into(b"x" * 500, 0, 1, "A", 1.0, 1, 0, 0)


def test_encode_order_argument_errors():
    with pytest.raises(OverflowError):
        lowlat.encode_order(1, "A", 1.0, -1, 0, 0)
    with pytest.raises(TypeError):
        lowlat.encode_order(1, 5, 1.0, 1, 0, 0)
    assert lowlat.read_order(lowlat.encode_order(1, b"raw", 1.0, 1, 0, 0))[1] == "raw"
    assert lowlat.read_order(lowlat.encode_order(1, None, 1.0, 1, 0, 0))[1] is None


def test_layout_is_aligned_like_flatc():
    b = _lowlat_encode(FULL)
    root = struct.unpack_from("<I", b)[0]
    assert root % 8 == 0 and (root + 8) % 8 == 0                       # u64 fields at table+8.. are 8-aligned
    assert len(b) % 4 == 0
