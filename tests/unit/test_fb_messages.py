"""The non-Order messages: round trips, official-package compatibility, the Command union, truncations."""

import flatbuffers
import pytest
from flatbuffers import number_types as N
from reference.ref_validator import ORDER_FIELDS, official_build_table, official_read_table, official_table

import lowlat
from lowlat import CommandType, DecodeError

MSGS = [
    lowlat.ValidationResult(7, True, 0, 123, "AAPL"),
    lowlat.ValidationResult(8, False, 5),
    lowlat.Cancel(1, "AAPL", 2, 3),
    lowlat.Cancel(1),
    lowlat.Modify(1, "BTC-USD", 101.5, 7, 9, 3),
    lowlat.MassCancel(4, None, 5),
    lowlat.MassCancel(4, "ÄÖÜ"),
    lowlat.ExecutionReport(1, "AAPL", 2, 1, 2, 0, 9, 3, 1, True, 10.5, 3, 0, 3, 99, "cl"),
    lowlat.Trade(1, "AAPL", 10.5, 3, 1, 2, 3, 4, 5),
    lowlat.L2Update("AAPL", 10, 0, 10.5, 2**40, 3, 77),
    lowlat.BookSnapshot("AAPL", 11, [lowlat.Level(10.5, 5, 1), lowlat.Level(10.0, 2**40, 7)],
                        [lowlat.Level(11.0, 3, 2)], 88),
    lowlat.BookSnapshot("AAPL", 12, [], None),
    lowlat.OrderMsg(3, "X", 1.25, 4, 1, 5, 0, 1, True, 9, "c", 2),
]
DECODE = {lowlat.ValidationResult: lowlat.decode_validation_result, lowlat.Cancel: lowlat.decode_cancel,
          lowlat.Modify: lowlat.decode_modify, lowlat.MassCancel: lowlat.decode_mass_cancel,
          lowlat.ExecutionReport: lowlat.decode_execution_report, lowlat.Trade: lowlat.decode_trade,
          lowlat.L2Update: lowlat.decode_l2_update, lowlat.BookSnapshot: lowlat.decode_book_snapshot,
          lowlat.OrderMsg: lowlat.decode_order_msg}


def _norm(m):
    if isinstance(m, lowlat.BookSnapshot):
        return m._replace(bids=tuple(m.bids or ()), asks=tuple(m.asks or ()))
    return m


@pytest.mark.parametrize("msg", MSGS, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    b = lowlat.encode_message(msg)
    assert _norm(DECODE[type(msg)](b)) == _norm(msg)
    assert _norm(DECODE[type(msg)](memoryview(b))) == _norm(msg)


@pytest.mark.parametrize("msg", MSGS, ids=lambda m: type(m).__name__)
def test_truncations_raise(msg):
    b = lowlat.encode_message(msg)
    dec = DECODE[type(msg)]
    for n in range(len(b) - 3):
        try:
            got = dec(b[:n])
        except DecodeError:
            continue
        assert _norm(got) == _norm(msg), n      # only trailing padding may be cut


def test_typed_encoders_equal_encode_message():
    assert lowlat.encode_cancel(1, "A", 2, 3) == lowlat.encode_message(lowlat.Cancel(1, "A", 2, 3))
    assert lowlat.encode_modify(1, "A", 2.5, 3) == lowlat.encode_message(lowlat.Modify(1, "A", 2.5, 3))
    assert lowlat.encode_mass_cancel(1) == lowlat.encode_message(lowlat.MassCancel(1))
    assert lowlat.encode_validation_result(1, False, 7) == lowlat.encode_message(lowlat.ValidationResult(1, False, 7))
    assert lowlat.decode_trade(lowlat.encode_trade(1, "A", price=2.0)).price == 2.0
    assert lowlat.decode_l2_update(lowlat.encode_l2_update("A", sequence=5)).sequence == 5
    assert lowlat.decode_execution_report(lowlat.encode_execution_report(1, status=2)).status == 2
    assert lowlat.decode_book_snapshot(lowlat.encode_book_snapshot("A", bids=[(1.0, 2, 3)])).bids == \
        (lowlat.Level(1.0, 2, 3),)
    with pytest.raises(TypeError):
        lowlat.encode_message((1, 2))


CANCEL_FIELDS = [("order_id", N.Uint64Flags), ("symbol", "str"), ("account", N.Uint64Flags),
                 ("timestamp", N.Uint64Flags)]


def test_cancel_read_by_official_and_back():
    b = lowlat.encode_cancel(5, "AAPL", 6, 7)
    got, _ = official_read_table(official_table(b), CANCEL_FIELDS)
    assert got == {"order_id": 5, "symbol": "AAPL", "account": 6, "timestamp": 7}
    fb = flatbuffers.Builder(64)
    fb.Finish(official_build_table(fb, CANCEL_FIELDS, got))
    assert lowlat.decode_cancel(bytes(fb.Output())) == lowlat.Cancel(5, "AAPL", 6, 7)


def test_book_snapshot_levels_read_by_official():
    snap = lowlat.BookSnapshot("X", 3, [lowlat.Level(1.5, 10, 2), lowlat.Level(1.25, 20, 1)], [], 4)
    t = official_table(lowlat.encode_message(snap))
    o = t.Offset(8)                                          # bids
    vec, n = t.Vector(o), t.VectorLen(o)
    levels = [(t.Get(N.Float64Flags, vec + 24 * i), t.Get(N.Uint64Flags, vec + 24 * i + 8),
               t.Get(N.Uint32Flags, vec + 24 * i + 16)) for i in range(n)]
    assert levels == [(1.5, 10, 2), (1.25, 20, 1)]
    assert vec % 8 == 0                                      # struct elements aligned like flatc's builder


def _official_command(ctype, build_member):
    b = flatbuffers.Builder(128)
    member = build_member(b)
    b.StartObject(3)
    b.PrependUint8Slot(0, ctype, 0)
    b.PrependUOffsetTRelativeSlot(1, member, 0)
    b.PrependUint64Slot(2, 42, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def test_command_union_from_official_builder():
    buf = _official_command(CommandType.CANCEL, lambda b: official_build_table(
        b, CANCEL_FIELDS, {"order_id": 9, "symbol": "AAPL", "account": 1, "timestamp": 2}))
    assert lowlat.command_type(buf) == CommandType.CANCEL
    assert lowlat.decode_command(buf) == lowlat.CommandMsg(CommandType.CANCEL, lowlat.Cancel(9, "AAPL", 1, 2), 42)
    buf = _official_command(CommandType.ORDER, lambda b: official_build_table(
        b, ORDER_FIELDS, {"id": 3, "symbol": "X", "price": 2.5, "quantity": 4}))
    cm = lowlat.decode_command(buf)
    assert cm.cmd_type is CommandType.ORDER and cm.cmd.id == 3 and cm.cmd.price == 2.5


@pytest.mark.parametrize("cmd", [lowlat.OrderMsg(1, "A", 1.0, 1), lowlat.Cancel(2, "A"),
                                 lowlat.Modify(3, "A", 2.0, 5), lowlat.MassCancel(4, "A")],
                         ids=lambda c: type(c).__name__)
def test_command_round_trip_and_official_read(cmd):
    b = lowlat.encode_command(cmd, sequence=17)
    cm = lowlat.decode_command(b)
    assert cm.cmd == cmd and cm.sequence == 17 and cm.cmd_type == lowlat.command_type(b)
    t = official_table(b)
    assert t.Get(N.Uint8Flags, t.Offset(4) + t.Pos) == cm.cmd_type
    sub = flatbuffers.table.Table(bytearray(), 0)
    t.Union(sub, t.Offset(6))
    first = sub.Get(N.Uint64Flags, sub.Offset(4) + sub.Pos)       # field id 0 of every command table
    assert first == cmd[0]


def test_command_unknown_union_type_and_missing_member():
    b = bytearray(lowlat.encode_command(lowlat.Cancel(2, "A")))
    t = official_table(bytes(b))
    b[t.Offset(4) + t.Pos] = 9
    with pytest.raises(DecodeError, match="union"):
        lowlat.decode_command(bytes(b))
    with pytest.raises(DecodeError, match="union"):
        lowlat.command_type(bytes(b))
    fb = flatbuffers.Builder(32)
    fb.StartObject(3)
    fb.PrependUint8Slot(0, 2, 0)                          # says CANCEL, but no member table
    fb.Finish(fb.EndObject())
    with pytest.raises(DecodeError, match="union"):
        lowlat.decode_command(bytes(fb.Output()))
    with pytest.raises(TypeError):
        lowlat.encode_command(lowlat.Trade(1))
