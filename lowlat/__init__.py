"""lowlat: low-latency trading building blocks for Python.

Users import from here; ``lowlat._core``, ``lowlat._book`` and ``lowlat._ring`` are private compiled modules.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: F401
    DecodeError,
    LappedError,
    LowlatError,
    MissingExtraError,
    RingError,
    RingFullError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)

# --- FlatBuffers core + validation (lowlat._core) ---
from ._core import (  # noqa: F401
    DEBUG,
    BookSnapshot,
    Cancel,
    CommandMsg,
    ExecutionReport,
    InstrumentRules,
    L2Update,
    Level,
    MassCancel,
    Modify,
    OrderMsg,
    OrderView,
    Trade,
    ValidationResult,
    Validator,
    command_type,
    count_frames,
    decode_book_snapshot,
    decode_cancel,
    decode_command,
    decode_execution_report,
    decode_l2_update,
    decode_mass_cancel,
    decode_modify,
    decode_order,
    decode_order_msg,
    decode_trade,
    decode_validation_result,
    encode_book_snapshot,
    encode_cancel,
    encode_command,
    encode_execution_report,
    encode_l2_update,
    encode_mass_cancel,
    encode_message,
    encode_modify,
    encode_order,
    encode_order_into,
    encode_trade,
    encode_validation_result,
    frame,
    frame_order_into,
    iter_frames,
    read_order,
)
from .enums import CommandType, OrderType, Reject, Side, StpMode, TimeInForce  # noqa: F401

# --- order book / matching engine (lowlat._book) ---
from ._book import (  # noqa: F401
    COMMAND_DTYPE,
    DEPTH_DTYPE,
    EVENT_DTYPE,
    L3_DTYPE,
    Book,
    Command,
    Engine,
    EventKind,
    to_ticks,
)

# --- ring buffers (lowlat._ring) ---
from ._ring import (  # noqa: F401
    BackoffIdle,
    BroadcastReceiver,
    BroadcastRing,
    BusySpinIdle,
    IdleStrategy,
    MpscRing,
    SpscRing,
    YieldingIdle,
)

# --- transports: lowlat.connect(url) picks the adapter by scheme (clients are optional extras) ---
from .transport import connect  # noqa: E402,F401
