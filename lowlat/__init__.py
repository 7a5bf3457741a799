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
# (filled by the foundation work)

# --- order book / matching engine (lowlat._book) ---
# (filled by the matching-engine work)

# --- ring buffers (lowlat._ring) ---
# (filled by the ring-buffer work)
