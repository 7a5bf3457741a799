"""Type stubs for lowlat._core (compiled).  Users import these names from ``lowlat``."""

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, Literal, NamedTuple, TypeAlias, final

import numpy as np
import numpy.typing as npt

from lowlat.enums import CommandType, OrderType, Side, StpMode, TimeInForce

_Buffer: TypeAlias = bytes | bytearray | memoryview | Any
_Str: TypeAlias = str | bytes | None

DEBUG: Final[bool]
FRAME_HEADER_SIZE: Final[int]
ORDER_FIELDS: Final[tuple[str, ...]]
# generated schema spec (fbs/gen_slots.py): table -> ((field, kind, vtable offset, default), ...)
_FB_TABLES: Final[dict[str, tuple[tuple[str, str, int, Any], ...]]]

def read_order(buf: _Buffer, /) -> tuple[int, str | None, float, int, int, int]: ...
def decode_order(buf: _Buffer, /) -> OrderView: ...
@final
class OrderView:
    id: Final[int]
    symbol: Final[str | None]
    price: Final[float]
    quantity: Final[int]
    side: Final[Side | int]
    timestamp: Final[int]
    order_type: Final[OrderType | int]
    time_in_force: Final[TimeInForce | int]
    post_only: Final[bool]
    account: Final[int]
    client_order_id: Final[str | None]
    stp: Final[StpMode | int]
    present: Final[frozenset[str]]
    def to_tuple(self) -> tuple[int, str | None, float, int, int, int]: ...
    def to_dict(self) -> dict[str, Any]: ...

# enum parameters: the enum, or the raw default (see _book.pyi)
def encode_order(
    id: int, symbol: _Str, price: float, quantity: int, side: Side, timestamp: int, *,
    order_type: OrderType | Literal[0] = 0, time_in_force: TimeInForce | Literal[0] = 0, post_only: bool = False,
    account: int = 0, client_order_id: _Str = None, stp: StpMode | Literal[0] = 0,
) -> bytes: ...
def encode_order_into(
    buf: _Buffer, offset: int, id: int, symbol: _Str, price: float, quantity: int, side: Side, timestamp: int, *,
    order_type: OrderType | Literal[0] = 0, time_in_force: TimeInForce | Literal[0] = 0, post_only: bool = False,
    account: int = 0, client_order_id: _Str = None, stp: StpMode | Literal[0] = 0,
) -> int: ...
def frame_order_into(
    buf: _Buffer, offset: int, id: int, symbol: _Str, price: float, quantity: int, side: Side, timestamp: int, *,
    order_type: OrderType | Literal[0] = 0, time_in_force: TimeInForce | Literal[0] = 0, post_only: bool = False,
    account: int = 0, client_order_id: _Str = None, stp: StpMode | Literal[0] = 0,
) -> int: ...
def frame(buffers: Iterable[_Buffer]) -> bytes: ...
def count_frames(buf: _Buffer) -> int: ...
def iter_frames(buf: _Buffer) -> Iterator[memoryview]: ...

@final
class InstrumentRules:
    def __init__(
        self, symbol: str, *, tick_size: float = 0.01, lot_size: int = 1, min_qty: int = 1,
        max_qty: int = 0xFFFF_FFFF, ref_price: float = 0.0, band: float = 0.1, max_notional: float = ...,
    ) -> None: ...
    symbol: Final[str]
    tick_size: Final[float]
    lot_size: Final[int]
    min_qty: Final[int]
    max_qty: Final[int]
    ref_price: Final[float]
    band: Final[float]
    max_notional: Final[float]
    band_lo: Final[float]
    band_hi: Final[float]

@final
class Validator:
    def __init__(self, rules: Iterable[InstrumentRules]) -> None: ...
    @property
    def rules(self) -> tuple[InstrumentRules, ...]: ...
    def validate(self, buf: _Buffer) -> int: ...
    def validate_frames(self, buf: _Buffer, out_codes: npt.NDArray[np.uint8]) -> int: ...
    def validate_many(self, buffers: Sequence[_Buffer], out_codes: npt.NDArray[np.uint8]) -> int: ...

class Level(NamedTuple):
    price: float
    quantity: int
    order_count: int

class OrderMsg(NamedTuple):
    id: int
    symbol: str | None = None
    price: float = 0.0
    quantity: int = 0
    side: int = 0
    timestamp: int = 0
    order_type: int = 0
    time_in_force: int = 0
    post_only: bool = False
    account: int = 0
    client_order_id: str | None = None
    stp: int = 0

class ValidationResult(NamedTuple):
    order_id: int
    accepted: bool = False
    reason: int = 0
    timestamp: int = 0
    symbol: str | None = None

class Cancel(NamedTuple):
    order_id: int
    symbol: str | None = None
    account: int = 0
    timestamp: int = 0

class Modify(NamedTuple):
    order_id: int
    symbol: str | None = None
    price: float = 0.0
    quantity: int = 0
    timestamp: int = 0
    account: int = 0

class MassCancel(NamedTuple):
    account: int
    symbol: str | None = None
    timestamp: int = 0

class CommandMsg(NamedTuple):
    cmd_type: CommandType | int
    cmd: OrderMsg | Cancel | Modify | MassCancel | None
    sequence: int

class ExecutionReport(NamedTuple):
    order_id: int
    symbol: str | None = None
    account: int = 0
    side: int = 0
    status: int = 0
    reason: int = 0
    trade_id: int = 0
    maker_order_id: int = 0
    taker_order_id: int = 0
    is_maker: bool = False
    last_price: float = 0.0
    last_quantity: int = 0
    leaves_quantity: int = 0
    cum_quantity: int = 0
    timestamp: int = 0
    client_order_id: str | None = None

class Trade(NamedTuple):
    trade_id: int
    symbol: str | None = None
    price: float = 0.0
    quantity: int = 0
    aggressor_side: int = 0
    maker_order_id: int = 0
    taker_order_id: int = 0
    timestamp: int = 0
    sequence: int = 0

class L2Update(NamedTuple):
    symbol: str | None
    sequence: int = 0
    side: int = 0
    price: float = 0.0
    quantity: int = 0
    order_count: int = 0
    timestamp: int = 0

class BookSnapshot(NamedTuple):
    symbol: str | None
    sequence: int = 0
    bids: Sequence[Level] | None = None
    asks: Sequence[Level] | None = None
    timestamp: int = 0

_Msg: TypeAlias = OrderMsg | ValidationResult | Cancel | Modify | MassCancel | ExecutionReport | Trade | L2Update | BookSnapshot

def encode_message(msg: _Msg) -> bytes: ...
def encode_command(cmd: OrderMsg | Cancel | Modify | MassCancel, *, sequence: int = 0) -> bytes: ...
def decode_command(buf: _Buffer) -> CommandMsg: ...
def command_type(buf: _Buffer) -> int: ...
def encode_validation_result(order_id: int, accepted: bool, reason: int, timestamp: int = 0,
                             symbol: _Str = None) -> bytes: ...
def encode_cancel(order_id: int, symbol: _Str = None, account: int = 0, timestamp: int = 0) -> bytes: ...
def encode_modify(order_id: int, symbol: _Str = None, price: float = 0.0, quantity: int = 0, timestamp: int = 0,
                  account: int = 0) -> bytes: ...
def encode_mass_cancel(account: int, symbol: _Str = None, timestamp: int = 0) -> bytes: ...
def encode_execution_report(*args: Any, **kwargs: Any) -> bytes: ...
def encode_trade(*args: Any, **kwargs: Any) -> bytes: ...
def encode_l2_update(*args: Any, **kwargs: Any) -> bytes: ...
def encode_book_snapshot(*args: Any, **kwargs: Any) -> bytes: ...
def decode_validation_result(buf: _Buffer) -> ValidationResult: ...
def decode_cancel(buf: _Buffer) -> Cancel: ...
def decode_modify(buf: _Buffer) -> Modify: ...
def decode_mass_cancel(buf: _Buffer) -> MassCancel: ...
def decode_execution_report(buf: _Buffer) -> ExecutionReport: ...
def decode_trade(buf: _Buffer) -> Trade: ...
def decode_l2_update(buf: _Buffer) -> L2Update: ...
def decode_book_snapshot(buf: _Buffer) -> BookSnapshot: ...
def decode_order_msg(buf: _Buffer) -> OrderMsg: ...
