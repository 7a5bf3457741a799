"""Shared benchmark fixtures: the peers (official flatbuffers with flatc-generated accessors, msgspec) and
machine info recorded with every saved run (STYLE.md section 9)."""

from __future__ import annotations

import os
import platform
import random

import flatbuffers
import msgspec
import pytest
from flatbuffers import number_types as N

import lowlat

SYMBOLS = ["AAPL", "MSFT", "BTC-USD", "ETH-USD", "EURUSD", "ES-Z6", "CL-F7", "GOOG"]


# --- the official package, exactly as `flatc --python fbs/order.fbs` generates finance/Order.py -------------
class OfficialOrder:
    __slots__ = ["_tab"]

    @classmethod
    def GetRootAs(cls, buf, offset=0):
        n = flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, offset)
        x = OfficialOrder()
        x._tab = flatbuffers.table.Table(buf, n + offset)
        return x

    def Id(self):
        o = N.UOffsetTFlags.py_type(self._tab.Offset(4))
        return self._tab.Get(N.Uint64Flags, o + self._tab.Pos) if o != 0 else 0

    def Symbol(self):
        o = N.UOffsetTFlags.py_type(self._tab.Offset(6))
        return self._tab.String(o + self._tab.Pos) if o != 0 else None

    def Price(self):
        o = N.UOffsetTFlags.py_type(self._tab.Offset(8))
        return self._tab.Get(N.Float64Flags, o + self._tab.Pos) if o != 0 else 0.0

    def Quantity(self):
        o = N.UOffsetTFlags.py_type(self._tab.Offset(10))
        return self._tab.Get(N.Uint32Flags, o + self._tab.Pos) if o != 0 else 0

    def Side(self):
        o = N.UOffsetTFlags.py_type(self._tab.Offset(12))
        return self._tab.Get(N.Int8Flags, o + self._tab.Pos) if o != 0 else 0

    def Timestamp(self):
        o = N.UOffsetTFlags.py_type(self._tab.Offset(14))
        return self._tab.Get(N.Uint64Flags, o + self._tab.Pos) if o != 0 else 0


def official_build(id, symbol, price, quantity, side, timestamp):
    """flatc-generated builder calls (OrderStart / OrderAdd* / OrderEnd) for the six seed fields."""
    b = flatbuffers.Builder(64)
    s = b.CreateString(symbol)
    b.StartObject(12)
    b.PrependUint64Slot(0, id, 0)
    b.PrependUOffsetTRelativeSlot(1, s, 0)
    b.PrependFloat64Slot(2, price, 0.0)
    b.PrependUint32Slot(3, quantity, 0)
    b.PrependInt8Slot(4, side, 0)
    b.PrependUint64Slot(5, timestamp, 0)
    b.Finish(b.EndObject())
    return b.Output()


class MsgspecOrder(msgspec.Struct, array_like=True):
    id: int
    symbol: str
    price: float
    quantity: int
    side: int
    timestamp: int


@pytest.fixture(scope="session")
def order_fields():
    rnd = random.Random(42)
    return [(i + 1, rnd.choice(SYMBOLS), round(100 + rnd.randint(-500, 500) * 0.01, 2), rnd.randint(1, 50) * 10,
             rnd.randint(0, 1), 1_700_000_000_000_000_000 + i) for i in range(4096)]


@pytest.fixture(scope="session")
def one_order():
    return (123456789, "AAPL", 101.25, 300, 1, 1_700_000_000_123_456_789)


@pytest.fixture(scope="session")
def lowlat_buf(one_order):
    return lowlat.encode_order(*one_order)


def pytest_benchmark_update_machine_info(config, machine_info):
    gov = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    if os.path.exists(gov):
        with open(gov) as f:
            machine_info["governor"] = f.read().strip()
    else:
        machine_info["governor"] = "n/a (VM)"
    machine_info["python"] = platform.python_version()
    machine_info["lowlat_debug_build"] = bool(lowlat.DEBUG)
