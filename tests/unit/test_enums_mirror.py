"""lowlat/enums.py == the C constants in lowlat/_types.pxd == the FlatBuffers schema enums (fbs/order.fbs)."""

import re
import subprocess
import sys
from pathlib import Path

import lowlat._core as core
from lowlat.enums import CommandType, ExecStatus, OrderType, Reject, Side, StpMode, TimeInForce

ROOT = Path(__file__).resolve().parents[2]
PREFIX = {OrderType: "OT_", TimeInForce: "TIF_", StpMode: "STP_", Reject: "REJ_"}


def test_python_enums_equal_c_constants():
    c = core._c_constants()
    for enum, prefix in PREFIX.items():
        for m in enum:
            assert c[prefix + m.name] == m.value, (enum.__name__, m.name)
        assert {k for k in c if k.startswith(prefix)} == {prefix + m.name for m in enum}
    assert (c["BID"], c["ASK"]) == (Side.BUY, Side.SELL)
    for m in CommandType:
        assert c["FB_COMMAND_" + m.name] == m.value


def test_every_c_constant_is_checked():
    pxd = (ROOT / "lowlat" / "_types.pxd").read_text()
    names = set(re.findall(r"^\s+((?:REJ|OT|TIF|STP)_\w+|BID|ASK)\s*=", pxd, re.MULTILINE))
    assert names <= set(core._c_constants()), "rebuild _core / extend _core._c_constants()"


def test_schema_enums_equal_python_enums():
    sys.path.insert(0, str(ROOT / "fbs"))
    try:
        import gen_slots
    finally:
        sys.path.pop(0)
    enums, _, _, unions = gen_slots.parse((ROOT / "fbs" / "order.fbs").read_text())
    for enum in (Side, OrderType, TimeInForce, StpMode):
        assert enums[enum.__name__][1] == {m.name: m.value for m in enum}
    members = ["NONE"] + [gen_slots._snake_upper(m) for m in unions["Command"]]
    assert members == [m.name for m in CommandType]


def test_exec_status_equals_the_schema_comment():
    # ExecutionReport.status is a ubyte in the schema; its values are listed in the comment above the table
    text = (ROOT / "fbs" / "order.fbs").read_text()
    line = re.search(r"^//\s+status: (.*)$", text, re.MULTILINE)
    assert line, "fbs/order.fbs no longer documents ExecutionReport.status"
    pairs = re.findall(r"(\d+) (\w+)", line.group(1))
    assert {name: int(v) for v, name in pairs} == {m.name: m.value for m in ExecStatus}
    from lowlat.services.matcher import ExecStatus as matcher_status
    assert matcher_status is ExecStatus


def test_reject_reasons_complete():
    for r in Reject:
        assert isinstance(r.reason, str) and r.reason


def test_generated_slot_files_are_up_to_date():
    r = subprocess.run(check=False, args=[sys.executable, str(ROOT / "fbs" / "gen_slots.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_seed_fields_keep_their_ids():
    # the seed's six Order fields keep ids 0..5 (vtable offsets 4..14) and their types, forever
    assert core.ORDER_FIELDS[:6] == ("id", "symbol", "price", "quantity", "side", "timestamp")
    text = (ROOT / "fbs" / "order.fbs").read_text()
    assert "enum Side : byte { BUY = 0, SELL = 1 }" in text
    assert re.search(r"table Order \{\s*id: ulong;\s*symbol: string;\s*price: double;\s*quantity: uint;\s*"
                     r"side: Side;\s*timestamp: ulong;", text)
