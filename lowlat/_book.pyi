from enum import IntEnum
from typing import Final, Literal, Protocol, final

import numpy as np
import numpy.typing as npt

from lowlat.enums import OrderType, Side, StpMode, TimeInForce

# Enum parameters take the enum; a defaulted one also admits its raw C default (what the compiled signature
# reports, checked by stubtest), and no other int.  stp=-1: the book's default_stp.

DEBUG: Final[bool]
MAX_QTY: Final[int]
COMMAND_DTYPE: Final[np.dtype]
EVENT_DTYPE: Final[np.dtype]
LEVEL_DTYPE: Final[np.dtype]
MAP_DTYPE: Final[np.dtype]
ORDER_DTYPE: Final[np.dtype]
DEPTH_DTYPE: Final[np.dtype]
L3_DTYPE: Final[np.dtype]
RESTING_DTYPE: Final[np.dtype]

class EventKind(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    FILL = 3
    CANCELED = 4
    EXPIRED = 5
    MODIFIED = 6
    L2 = 7
    MASS_CANCELED = 8

class Command(IntEnum):
    NEW = 0
    CANCEL = 1
    MODIFY = 2
    MASS_CANCEL = 3

def to_ticks(price: float, tick_size: float) -> tuple[int, int]: ...  # (reject code, ticks)

# Book and Engine take command batches under one contract (Engine routes each command by its symbol); the
# protocol is stub-only: at runtime both are final classes of their own.
class _BatchApply(Protocol):
    def apply_batch(
        self,
        commands: npt.NDArray[np.void],
        events_out: npt.NDArray[np.void],
        latency_ns: npt.NDArray[np.int64] | None = None,
    ) -> tuple[int, int]: ...
    def apply_frames(
        self,
        frames: bytes | bytearray | memoryview,
        events_out: npt.NDArray[np.void],
        latency_ns: npt.NDArray[np.int64] | None = None,
    ) -> tuple[int, int, int]: ...

@final
class Book(_BatchApply):
    symbol: Final[str | None]
    def __init__(
        self,
        lo: int,
        n_ticks: int,
        max_orders: int,
        default_stp: StpMode | Literal[0] = 0,
        tick_size: float = 1.0,
        event_capacity: int = -1,
        symbol: str | None = None,
        book_index: int = 0,
    ) -> None: ...
    def submit(
        self,
        oid: int,
        side: Side,
        price: int,
        qty: int,
        account: int = 0,
        order_type: OrderType | Literal[0] = 0,
        tif: TimeInForce | Literal[0] = 0,
        post_only: bool = False,
        stp: StpMode | Literal[-1] = -1,
    ) -> tuple[int, int, int]: ...
    def cancel(self, oid: int) -> tuple[int, int, int]: ...
    def modify(self, oid: int, price: int, qty: int) -> tuple[int, int, int]: ...
    def mass_cancel(self, account: int) -> tuple[int, int, int]: ...
    @property
    def nbytes(self) -> int: ...
    @staticmethod
    def memory_bytes(n_ticks: int, max_orders: int, event_capacity: int = -1) -> int: ...
    events: Final[npt.NDArray[np.void]]
    def last_events(self) -> npt.NDArray[np.void]: ...
    lo: Final[int]
    n_ticks: Final[int]
    max_orders: Final[int]
    tick_size: Final[float]
    default_stp: Final[int]
    @property
    def n_orders(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def trade_id(self) -> int: ...
    def best_bid(self) -> int | None: ...
    def best_ask(self) -> int | None: ...
    def levels(self, side: Side) -> npt.NDArray[np.void]: ...
    def depth(self, side: Side, n: int) -> npt.NDArray[np.void]: ...
    def queue(self, side: Side, price: int) -> npt.NDArray[np.void]: ...
    def order(self, oid: int) -> tuple[int, int, int, int] | None: ...
    def check(self) -> None: ...
    def resting_orders(self) -> npt.NDArray[np.void]: ...
    def restore(self, orders: bytes | bytearray | memoryview | npt.NDArray[np.uint8], seq: int,
                trade_id: int) -> None: ...
    def _reset_arrays(self) -> None: ...

@final
class Engine(_BatchApply):
    default_stp: Final[int]
    def __init__(self, default_stp: StpMode | Literal[0] = 0) -> None: ...
    def add_book(
        self,
        symbol: str,
        lo: int,
        n_ticks: int,
        max_orders: int,
        tick_size: float = 1.0,
        default_stp: StpMode | None = None,
        event_capacity: int = -1,
    ) -> Book: ...
    def __getitem__(self, symbol: str, /) -> Book: ...
    def __contains__(self, symbol: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def index(self, symbol: str) -> int: ...
    @property
    def books(self) -> list[Book]: ...
