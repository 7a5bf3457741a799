"""The services' view of the wire format: thin calls into ``lowlat._core`` (zero-copy readers) and
``lowlat._encode`` (fixed-layout encoders).

Services never parse FlatBuffers themselves; this module only adapts ``_core``'s functions to the shapes the
services use (per-batch lists, engine command rows).  Cost notes are per message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core, _encode
from ..enums import Reject
from ..errors import DecodeError
from .config import ServiceConfig

_read_order = _core.read_order


def _stamper(tname: str, symbol: str | None) -> Any:
    """A positional encoder of (table, symbol) over the compiled fixed-layout encoders (no cache, no per-symbol
    state: any number of symbols costs nothing).  Argument order: the table's scalar fields in schema order."""
    if tname == "ValidationResult":
        return lambda oid, accepted, reason, ts: _encode.encode_validation_result(oid, accepted, reason, ts, symbol)
    if tname == "ExecutionReport":
        return lambda *a: _encode.encode_execution_report(a[0], symbol, *a[1:])
    if tname == "Trade":
        return lambda *a: _encode.encode_trade(a[0], symbol, *a[1:])
    if tname == "L2Update":
        return lambda *a: _encode.encode_l2_update(symbol, *a)
    raise KeyError(tname)


_decode_order = _core.decode_order
encode_order = _core.encode_order
encode_order_into = _core.encode_order_into


def make_validator(cfg: ServiceConfig) -> Any:
    """A ``Validator`` with the same ``InstrumentRules`` for every symbol in ``cfg.symbols``."""
    ts = cfg.tick_size
    rules = [_core.InstrumentRules(sym, tick_size=ts, lot_size=cfg.lot, min_qty=cfg.min_qty, max_qty=cfg.max_qty,
                                   ref_price=cfg.ref_price * ts, band=cfg.band_bps / 10_000,
                                   max_notional=float(cfg.max_notional))
             for sym in cfg.symbols]
    return _core.Validator(rules)


def order_timestamp(buf: Any) -> int:
    """The order's ``timestamp`` (ns) or 0 when the buffer does not verify.  ~100 ns."""
    try:
        return _read_order(buf)[5]
    except DecodeError:
        return 0


def order_symbol(buf: Any) -> str:
    """The order's symbol (the caller validated the buffer already, so it is present)."""
    return _read_order(buf)[1] or ""


def encode_results(bufs: list[Any], codes: list[int], ts_ns: int) -> list[bytes]:
    """One ``ValidationResult`` per order buffer: order id, accepted, reason, timestamp, symbol.

    A MALFORMED order gets order id 0 and no symbol (nothing in it can be trusted).  ~0.6 µs per order (the
    compiled stage in ``lowlat._stage`` does the same with no Python per order).
    """
    read = _read_order
    enc = _encode.encode_validation_result
    out = []
    for b, c in zip(bufs, codes):
        if c == Reject.MALFORMED:
            out.append(enc(0, False, c, ts_ns, None))
            continue
        oid, sym = read(b)[:2]
        out.append(enc(oid, c == 0, c, ts_ns, sym))
    return out


def result_fields(buf: Any) -> tuple[int, bool, int]:
    """(order_id, accepted, reason) of a ``ValidationResult``; raises DecodeError for bad bytes."""
    r = _core.decode_validation_result(buf)
    return r[0], r[1], r[2]


def encode_exec(*, order_id: int, symbol: str, account: int = 0, side: int = 0, status: int = 0, reason: int = 0,
                trade_id: int = 0, maker_order_id: int = 0, taker_order_id: int = 0, is_maker: bool = False,
                last_price: float = 0.0, last_quantity: int = 0, leaves_quantity: int = 0, cum_quantity: int = 0,
                timestamp: int = 0, client_order_id: str | None = None) -> bytes:
    return _encode.encode_execution_report(order_id, symbol, account, side, status, reason, trade_id,
                                           maker_order_id, taker_order_id, is_maker, last_price, last_quantity,
                                           leaves_quantity, cum_quantity, timestamp, client_order_id)


def encode_trade(trade_id: int, symbol: str, price: float, qty: int, aggressor_side: int, maker: int, taker: int,
                 ts_ns: int, seq: int) -> bytes:
    return _encode.encode_trade(trade_id, symbol, price, qty, aggressor_side, maker, taker, ts_ns, seq)


def encode_l2(symbol: str, seq: int, side: int, price: float, qty: int, count: int, ts_ns: int) -> bytes:
    return _encode.encode_l2_update(symbol, seq, side, price, qty, count, ts_ns)


def decode_l2(buf: Any) -> tuple[int, int, float, int, int]:
    """(sequence, side, price, quantity, order_count) of an ``L2Update``."""
    d = _core.decode_l2_update(buf)
    return d.sequence, d.side, d.price, d.quantity, d.order_count


def encode_snapshot(symbol: str, seq: int, bids: list[tuple[float, int, int]], asks: list[tuple[float, int, int]],
                    ts_ns: int) -> bytes:
    return _core.encode_book_snapshot(symbol=symbol, sequence=seq, bids=bids, asks=asks, timestamp=ts_ns)


def decode_snapshot(buf: Any) -> dict[str, Any]:
    """``{"symbol", "sequence", "bids": [(price, qty, count)], "asks": [...], "timestamp"}``."""
    return _core.decode_book_snapshot(buf)._asdict()


def order_to_command(buf: Any, cmds: np.ndarray, k: int, index: dict[str, int], tick_size: float,
                     early: list[tuple[int, str, int, int]]) -> int:
    """Fill ``cmds[k]`` (``COMMAND_DTYPE``) from an Order buffer; return 1, or 0 after appending an early reject
    ``(oid, symbol, account, reason)`` (malformed, unknown symbol, off-tick price)."""
    from .._book import to_ticks

    try:
        o = _decode_order(buf)
    except DecodeError:
        early.append((0, "", 0, int(Reject.MALFORMED)))
        return 0
    try:
        sym = o.symbol or ""
    except DecodeError:  # not UTF-8: names no book
        early.append((o.id, "", o.account, int(Reject.UNKNOWN_SYMBOL)))
        return 0
    bi = index.get(sym)
    if bi is None:
        early.append((o.id, sym, o.account, int(Reject.UNKNOWN_SYMBOL)))
        return 0
    # the row's order_type/tif are uint8: a hostile negative value wraps (the engine rejects it) as in C
    otype = int(o.order_type) & 0xFF
    if otype == 0:
        rc, ticks = to_ticks(o.price, tick_size)
        if rc:
            early.append((o.id, sym, o.account, rc))
            return 0
    else:
        ticks = 0
    stp = int(o.stp)
    # one tuple assignment per row (field-by-field assignment on a numpy record costs ~10x more)
    cmds[k] = (o.id, o.account, ticks, o.quantity, bi, 0, int(o.side), otype, int(o.time_in_force) & 0xFF,
               -1 if stp == 0 else stp, 1 if o.post_only else 0, 0, 0)
    return 1
