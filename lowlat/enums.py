"""IntEnum mirrors of the C enums in ``lowlat/_types.pxd`` and the FlatBuffers schema (``fbs/order.fbs``).

A test checks that every value here equals its C constant.  Reject codes are data, not exceptions:
0 means accepted; 1-63 come from the validator, 64-127 from the matching engine.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CommandType", "ExecStatus", "OrderType", "Reject", "Side", "StpMode", "TimeInForce"]


class Side(IntEnum):
    """Order side, as the schema's ``enum Side : byte``.  BUY rests on the bid, SELL on the ask."""

    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1


class TimeInForce(IntEnum):
    GTC = 0  # rests until filled or cancelled
    IOC = 1  # fill what crosses now, cancel the rest
    FOK = 2  # fill entirely now or do nothing


class StpMode(IntEnum):
    """Self-trade prevention when an incoming order would match a resting order of the same account."""

    NONE = 0  # allow the self-trade
    CANCEL_NEWEST = 1  # cancel the incoming (taker) remainder
    CANCEL_OLDEST = 2  # cancel the resting (maker) order and keep matching
    CANCEL_BOTH = 3  # cancel both
    DECREMENT_AND_CANCEL = 4  # reduce both by the smaller qty; cancel whichever reaches zero


class CommandType(IntEnum):
    """Type byte of the ``Command`` union in ``finance.CommandMsg`` (the matching engine's input frames)."""

    NONE = 0
    ORDER = 1
    CANCEL = 2
    MODIFY = 3
    MASS_CANCEL = 4



class ExecStatus(IntEnum):
    """``ExecutionReport.status``: what happened to an order (``fbs/order.fbs`` documents the same values)."""

    NEW = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    CANCELED = 3
    REJECTED = 4
    REPLACED = 5
    EXPIRED = 6

class Reject(IntEnum):
    """Why an order or command was rejected.  ``Reject(code).reason`` is a human-readable sentence."""

    ACCEPTED = 0
    # --- validator (1..63) ---
    MALFORMED = 1
    MISSING_FIELD = 2
    UNKNOWN_SYMBOL = 3
    BAD_SIDE = 4
    BAD_PRICE = 5
    BAD_QUANTITY = 6
    OFF_TICK = 7
    OFF_LOT = 8
    QTY_BELOW_MIN = 9
    QTY_ABOVE_MAX = 10
    PRICE_OUT_OF_BAND = 11
    NOTIONAL_TOO_LARGE = 12
    BAD_ORDER_TYPE = 13
    BAD_TIME_IN_FORCE = 14
    # --- matching engine (64..127) ---
    BOOK_FULL = 64
    DUPLICATE_ORDER_ID = 65
    UNKNOWN_ORDER = 66
    POST_ONLY_WOULD_CROSS = 67
    FOK_NOT_FILLABLE = 68
    NO_LIQUIDITY = 69
    SELF_TRADE_PREVENTED = 70
    BAD_STP_MODE = 71
    OUT_OF_RANGE = 72
    MARKET_POST_ONLY = 73

    @property
    def reason(self) -> str:
        return _REASONS[self]


_REASONS = {
    Reject.ACCEPTED: "accepted",
    Reject.MALFORMED: "buffer is not a valid FlatBuffer Order",
    Reject.MISSING_FIELD: "a required field (id, symbol, price, quantity) is absent",
    Reject.UNKNOWN_SYMBOL: "symbol is not in the allow-list",
    Reject.BAD_SIDE: "side is neither BUY nor SELL",
    Reject.BAD_PRICE: "price must be finite and > 0",
    Reject.BAD_QUANTITY: "quantity must be > 0",
    Reject.OFF_TICK: "price is not a multiple of the tick size",
    Reject.OFF_LOT: "quantity is not a multiple of the lot size",
    Reject.QTY_BELOW_MIN: "quantity below the instrument minimum",
    Reject.QTY_ABOVE_MAX: "quantity above the instrument maximum",
    Reject.PRICE_OUT_OF_BAND: "price outside the collar around the reference price",
    Reject.NOTIONAL_TOO_LARGE: "price * quantity above the instrument maximum notional",
    Reject.BAD_ORDER_TYPE: "order type is neither LIMIT nor MARKET",
    Reject.BAD_TIME_IN_FORCE: "time in force is not GTC, IOC or FOK",
    Reject.BOOK_FULL: "the book has no free order or level slot (capacity reached)",
    Reject.DUPLICATE_ORDER_ID: "an order with this id is already live",
    Reject.UNKNOWN_ORDER: "no live order with this id",
    Reject.POST_ONLY_WOULD_CROSS: "post-only order would take liquidity",
    Reject.FOK_NOT_FILLABLE: "fill-or-kill order cannot be filled entirely now",
    Reject.NO_LIQUIDITY: "market order found nothing to match",
    Reject.SELF_TRADE_PREVENTED: "order cancelled by self-trade prevention",
    Reject.BAD_STP_MODE: "unknown self-trade prevention mode",
    Reject.OUT_OF_RANGE: "price outside the book's preallocated tick range",
    Reject.MARKET_POST_ONLY: "a market order cannot be post-only",
}
