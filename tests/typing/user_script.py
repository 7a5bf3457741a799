"""What a user writes against lowlat's public API; ``mypy --strict`` must pass on it (tests/typing/test_mypy.py).

Only ``from lowlat import ...``: the compiled modules are private.  ``reveal_type`` is not used so the script
also runs as plain Python (the test runs it too).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lowlat import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    Book,
    Command,
    Engine,
    EventKind,
    InstrumentRules,
    OrderType,
    OrderView,
    Reject,
    Side,
    SpscRing,
    StpMode,
    TimeInForce,
    Validator,
    decode_order,
    encode_order,
    frame,
    to_ticks,
)


def validate(v: Validator, orders: list[bytes]) -> list[Reject]:
    codes: npt.NDArray[np.uint8] = np.zeros(len(orders), dtype=np.uint8)
    n = v.validate_frames(frame(orders), codes)
    first: Reject = Reject(v.validate(orders[0]))
    return [first] + [Reject(int(c)) for c in codes[:n]]


def trade(book: Book) -> int:
    status, filled, _oid = book.submit(1, Side.SELL, 100, 5, account=7, tif=TimeInForce.GTC, stp=StpMode.NONE)
    assert Reject(status) is Reject.ACCEPTED and filled == 0
    status, filled, _ = book.submit(2, Side.BUY, 100, 3, order_type=OrderType.LIMIT, tif=TimeInForce.IOC)
    ask: int | None = book.best_ask()
    depth = book.depth(Side.SELL, 5)
    kinds = [EventKind(int(k)) for k in book.last_events()["kind"]]
    book.cancel(1)
    return filled + (ask or 0) + len(depth) + len(kinds)


def batch(engine: Engine) -> tuple[int, int]:
    b = engine.add_book("AAPL", 9_000, 2_000, 1_024, tick_size=0.01, default_stp=StpMode.CANCEL_NEWEST)
    cmds = np.zeros(2, dtype=COMMAND_DTYPE)
    cmds["op"] = Command.NEW
    cmds["side"] = [Side.BUY, Side.SELL]
    cmds["price"] = 10_000
    cmds["qty"] = 1
    cmds["oid"] = [10, 11]
    events = np.zeros(16, dtype=EVENT_DTYPE)
    return b.apply_batch(cmds, events)


def ring_roundtrip(payload: bytes) -> bytes | None:
    with SpscRing(1 << 12) as ring:
        if not ring.try_push(payload):
            return None
        ring.push(memoryview(payload), timeout=1.0)
        got: bytes | None = ring.try_pop()
        ring.pop(timeout=1.0)
        return got


def main() -> None:
    rules = [InstrumentRules("AAPL", tick_size=0.01, lot_size=1, ref_price=100.0, band=0.1)]
    v = Validator(rules)
    buf = encode_order(1, "AAPL", 100.01, 10, Side.BUY, 0, order_type=OrderType.LIMIT,
                       time_in_force=TimeInForce.GTC, stp=StpMode.NONE)
    view: OrderView = decode_order(buf)
    side: Side = Side(view.side)
    code, ticks = to_ticks(view.price, 0.01)
    results = validate(v, [buf, buf])
    total = trade(Book(0, 1_000, 64, default_stp=StpMode.NONE)) + batch(Engine())[0]
    echoed = ring_roundtrip(buf)
    assert results[0] is Reject.ACCEPTED and side is Side.BUY and ticks == 10_001 and code == 0
    assert total > 0 and echoed == buf


if __name__ == "__main__":
    main()
