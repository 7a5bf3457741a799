"""Hostile bytes never crash lowlat or make it read outside the buffer.

Every input is placed so that it ends exactly at a page boundary followed by a PROT_NONE guard page (and, in a
second placement, starts right after one): a read even one byte out of bounds is a SIGSEGV, which fails the run,
on the release build as well as the LOWLAT_DEBUG=1 build that tests/run.sh also runs this on.
"""

import ctypes
import mmap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowlat
from lowlat import DecodeError, Reject

PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class Guarded:
    """Three anonymous pages [guard | data | guard]; the guards are PROT_NONE."""

    def __init__(self):
        self.mm = mmap.mmap(-1, 3 * PAGE)
        self.cbuf = (ctypes.c_char * (3 * PAGE)).from_buffer(self.mm)
        self.addr = ctypes.addressof(self.cbuf)
        self.view = memoryview(self.cbuf).cast("B")
        for page in (0, 2):
            if _libc.mprotect(self.addr + page * PAGE, PAGE, 0) != 0:  # PROT_NONE
                raise OSError(ctypes.get_errno(), "mprotect")

    def at_end(self, data: bytes) -> memoryview:
        start = 2 * PAGE - len(data)
        ctypes.memmove(self.addr + start, data, len(data))
        return self.view[start:2 * PAGE]

    def at_start(self, data: bytes) -> memoryview:
        ctypes.memmove(self.addr + PAGE, data, len(data))
        return self.view[PAGE:PAGE + len(data)]


try:
    G = Guarded()
except OSError as e:  # pragma: no cover - Linux always has mprotect
    G = None
    _why = str(e)

needs_guard = pytest.mark.skipif(G is None, reason="mprotect guard pages unavailable")

VALIDATOR = lowlat.Validator([lowlat.InstrumentRules("AAPL", tick_size=0.01, lot_size=1)])
DECODERS = [lowlat.decode_cancel, lowlat.decode_modify, lowlat.decode_mass_cancel, lowlat.decode_command,
            lowlat.decode_execution_report, lowlat.decode_trade, lowlat.decode_l2_update,
            lowlat.decode_book_snapshot, lowlat.decode_validation_result, lowlat.decode_order_msg]

SEEDS = [
    lowlat.encode_order(1, "AAPL", 10.5, 3, 0, 1, client_order_id="abc", account=3),
    lowlat.encode_command(lowlat.Cancel(5, "AAPL", 1, 2), sequence=9),
    lowlat.encode_command(lowlat.OrderMsg(5, "AAPL", 1.0, 1)),
    lowlat.encode_command(lowlat.Modify(5, "AAPL", 2.0, 3)),
    lowlat.encode_command(lowlat.MassCancel(5, None)),
    lowlat.encode_book_snapshot("AAPL", 3, [lowlat.Level(1.0, 2, 3)] * 3, [lowlat.Level(2.0, 5, 1)], 7),
    lowlat.encode_execution_report(1, "AAPL", 2, 1, 2, 0, 9, 1, 2, True, 1.5, 3, 0, 3, 99, "c"),
    lowlat.encode_trade(1, "AAPL", 1.5, 3, 1, 2, 3, 4, 5),
    lowlat.encode_l2_update("AAPL", 4, 1, 1.5, 300, 2, 6),
]


def _exercise(mv: memoryview) -> None:
    """Call every reader on mv; each must return or raise DecodeError, never anything else."""
    try:
        t = lowlat.read_order(mv)
        assert len(t) == 6
        read_ok = True
    except DecodeError:
        read_ok = False
    try:
        v = lowlat.decode_order(mv)
        v.to_dict()
        repr(v)
    except DecodeError:
        pass
    code = VALIDATOR.validate(mv)
    assert code in {r.value for r in Reject}
    if code == Reject.MALFORMED:
        assert not read_ok
    for dec in DECODERS:
        try:
            dec(mv)
        except DecodeError:
            pass
    try:
        lowlat.command_type(mv)
    except DecodeError:
        pass
    # the same bytes as a frame buffer
    out = np.zeros(len(mv) // 4 + 1, np.uint8)
    try:
        k = VALIDATOR.validate_frames(mv, out)
        assert k == lowlat.count_frames(mv)
    except DecodeError:
        with pytest.raises(DecodeError):
            lowlat.count_frames(mv)
    try:
        for _ in lowlat.iter_frames(mv):
            pass
    except DecodeError:
        pass


def _mutate(data: bytes, edits, cut) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b[:cut]) if cut is not None else bytes(b)


@needs_guard
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_read_out_of_bounds(data):
    _exercise(G.at_end(data))
    _exercise(G.at_start(data))


@needs_guard
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 400), st.sampled_from(
    [0, 1, 0x7F, 0x80, 0xFE, 0xFF]) | st.integers(0, 255)), max_size=6), st.none() | st.integers(0, 400))
def test_mutated_valid_messages_never_read_out_of_bounds(seed, edits, cut):
    data = _mutate(seed, edits, cut)
    _exercise(G.at_end(data))
    _exercise(G.at_start(data))


@needs_guard
def test_every_truncation_of_every_seed_at_a_guard_page():
    for seed in SEEDS:
        for n in range(len(seed) + 1):
            _exercise(G.at_end(seed[:n]))


@needs_guard
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SEEDS) | st.binary(max_size=64), max_size=8), st.integers(0, 8))
def test_frame_buffers_with_hostile_payloads_and_truncated_tails(payloads, chop):
    framed = lowlat.frame(payloads)
    if payloads:        # cut inside the last frame only (cutting it whole leaves a valid shorter buffer)
        chop = min(chop, 4 + len(payloads[-1]) - 1)
        framed = framed[:len(framed) - chop]
    mv = G.at_end(framed)
    out = np.full(len(payloads) + 1, 255, np.uint8)
    if chop and payloads:
        with pytest.raises(DecodeError, match="truncated"):
            VALIDATOR.validate_frames(mv, out)
        assert (out == 255).all()                     # checked before the loop: nothing written
    else:
        assert VALIDATOR.validate_frames(mv, out) == len(payloads)
        assert list(out[:len(payloads)]) == [VALIDATOR.validate(p) for p in payloads]
