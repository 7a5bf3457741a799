"""Reference model for lowlat._core: the official ``flatbuffers`` package for bytes, plain Python for the rules.

``official_build_order`` / ``official_read_order`` are the builder/accessor calls ``flatc --python`` generates for
``fbs/order.fbs`` (written out by hand so the tests need no flatc).  ``ref_validate`` is the obviously-correct
statement of the Validator's check order (see lowlat.Validator's docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

from lowlat.enums import Reject

# field id -> (name, kind); kind: scalar number type, "str", or None for union plumbing
ORDER_FIELDS = [
    ("id", N.Uint64Flags), ("symbol", "str"), ("price", N.Float64Flags), ("quantity", N.Uint32Flags),
    ("side", N.Int8Flags), ("timestamp", N.Uint64Flags), ("order_type", N.Int8Flags),
    ("time_in_force", N.Int8Flags), ("post_only", N.BoolFlags), ("account", N.Uint64Flags),
    ("client_order_id", "str"), ("stp", N.Int8Flags),
]
DEFAULTS = {"id": 0, "symbol": None, "price": 0.0, "quantity": 0, "side": 0, "timestamp": 0, "order_type": 0,
            "time_in_force": 0, "post_only": False, "account": 0, "client_order_id": None, "stp": 0}

_PREPEND = {
    N.Uint64Flags: "PrependUint64Slot", N.Float64Flags: "PrependFloat64Slot", N.Uint32Flags: "PrependUint32Slot",
    N.Int8Flags: "PrependInt8Slot", N.BoolFlags: "PrependBoolSlot", N.Uint8Flags: "PrependUint8Slot",
}


def official_build_table(b: flatbuffers.Builder, fields, values: dict) -> int:
    """Build one table with the official Builder, flatc-style: strings first, then the slots."""
    offs = {}
    for name, kind in fields:
        v = values.get(name)
        if kind == "str" and v is not None:
            offs[name] = b.CreateString(v)
    b.StartObject(len(fields))
    for i, (name, kind) in enumerate(fields):
        v = values.get(name, DEFAULTS.get(name))
        if kind == "str":
            if name in offs:
                b.PrependUOffsetTRelativeSlot(i, offs[name], 0)
        elif v is not None:
            dflt = False if kind is N.BoolFlags else (0.0 if kind is N.Float64Flags else 0)
            getattr(b, _PREPEND[kind])(i, v, dflt)
    return b.EndObject()


def official_build_order(values: dict, *, force_defaults: bool = False) -> bytes:
    """A finance.Order built by the official package.  Without force_defaults, default-valued scalars are
    omitted from the buffer (absent), exactly as flatc-generated code does."""
    b = flatbuffers.Builder(128)
    if force_defaults:
        b.ForceDefaults(True)
    b.Finish(official_build_table(b, ORDER_FIELDS, values))
    return bytes(b.Output())


def official_table(buf, pos=None) -> Table:
    if pos is None:
        pos = flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0)
    return Table(bytearray(buf) if isinstance(buf, memoryview) else buf, pos)


def official_read_table(t: Table, fields) -> tuple[dict, set]:
    """Read every field with the official accessors; also return the set of fields present in the vtable."""
    out, present = {}, set()
    for i, (name, kind) in enumerate(fields):
        o = t.Offset(4 + 2 * i)
        if o:
            present.add(name)
        if kind == "str":
            s = t.String(o + t.Pos) if o else None
            out[name] = s.decode("utf-8") if s is not None else None
        else:
            out[name] = t.Get(kind, o + t.Pos) if o else DEFAULTS.get(name, 0)
    return out, present


def official_read_order(buf) -> tuple[dict, set]:
    return official_read_table(official_table(buf), ORDER_FIELDS)


@dataclass(frozen=True)
class RefRules:
    symbol: str
    tick_size: float = 0.01
    lot_size: int = 1
    min_qty: int = 1
    max_qty: int = 2**32 - 1
    ref_price: float = 0.0
    band: float = 0.1
    max_notional: float = math.inf

    @property
    def band_lo(self) -> float:
        return self.ref_price * (1.0 - self.band) if self.ref_price > 0 else -math.inf

    @property
    def band_hi(self) -> float:
        return self.ref_price * (1.0 + self.band) if self.ref_price > 0 else math.inf


def ref_validate(o: dict, present: set, rules: dict[str, RefRules]) -> Reject:
    """The first failing check wins, in the order lowlat.Validator documents."""
    if not {"id", "symbol", "quantity"} <= present:
        return Reject.MISSING_FIELD
    if o["order_type"] != 1 and "price" not in present:
        return Reject.MISSING_FIELD
    r = rules.get(o["symbol"])
    if r is None:
        return Reject.UNKNOWN_SYMBOL
    if o["side"] not in (0, 1):
        return Reject.BAD_SIDE
    if o["order_type"] not in (0, 1):
        return Reject.BAD_ORDER_TYPE
    if o["time_in_force"] not in (0, 1, 2):
        return Reject.BAD_TIME_IN_FORCE
    q = o["quantity"]
    if q == 0:
        return Reject.BAD_QUANTITY
    if q % r.lot_size:
        return Reject.OFF_LOT
    if q < r.min_qty:
        return Reject.QTY_BELOW_MIN
    if q > r.max_qty:
        return Reject.QTY_ABOVE_MAX
    if o["order_type"] == 1:
        return Reject.ACCEPTED
    px = o["price"]
    if math.isnan(px) or px <= 0 or math.isinf(px):
        return Reject.BAD_PRICE
    ticks = px / r.tick_size                  # the one rule of lowlat/_price.pxd
    if not ticks < 2.0**63:
        return Reject.BAD_PRICE
    if round(ticks) < 1 or abs(ticks - round(ticks)) > 1e-6:
        return Reject.OFF_TICK
    if px < r.band_lo or px > r.band_hi:
        return Reject.PRICE_OUT_OF_BAND
    if px * q > r.max_notional:
        return Reject.NOTIONAL_TOO_LARGE
    return Reject.ACCEPTED
