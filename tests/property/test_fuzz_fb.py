"""Fuzzing the FlatBuffer verifier/readers and the frame parser with structure-aware hostile inputs.

Random bytes rarely get past the root offset, so these strategies ASSEMBLE buffers from hostile parts: root and
table offsets anywhere (incl. 2**32 - 1 and into the vtable), vtables of odd/zero/huge size or overlapping the
table, soffsets that make the table its own vtable (cycles), string/vector offsets back into the header, zero-length
and giant lengths, unions of unknown type or pointing back at the root, oversized messages and messages of the
wrong schema.  Every input sits against a PROT_NONE guard page (see test_fb_hostile.py), so an out-of-bounds read
is a SIGSEGV; every call must return or raise lowlat.DecodeError.  Runs on the release and the LOWLAT_DEBUG=1 build
(tests/run.sh).  LOWLAT_FUZZ_EXAMPLES scales the budget (default 1500 per strategy); benchmarks/fuzz/ has the
coverage-guided atheris run for longer sessions.
"""

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fb_hostile import SEEDS, G, _exercise, needs_guard

import lowlat

BUDGET = int(os.environ.get("LOWLAT_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(max_examples=BUDGET, deadline=None, suppress_health_check=list(HealthCheck))

EDGE_U32 = [0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000,
            0xFFFF_FFF0, 0xFFFF_FFFF]
u32 = st.sampled_from(EDGE_U32) | st.integers(0, 2**32 - 1) | st.integers(0, 256)
i32 = u32.map(lambda v: struct.unpack("<i", struct.pack("<I", v))[0])
u16 = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 28, 29, 53, 0x7FFF, 0xFFFF]) | st.integers(0, 300)


@st.composite
def assembled(draw):
    """[root][vtable][table][tail] with every offset and size drawn from hostile values (or near-valid ones)."""
    nfields = draw(st.integers(0, 14))
    vt_entries = draw(st.lists(u16, min_size=nfields, max_size=nfields))
    vsize = draw(st.sampled_from([4 + 2 * nfields, 0, 1, 2, 3, 5, 0xFFFF]) | u16)
    tsize = draw(u16)
    vtable = struct.pack("<HH", vsize & 0xFFFF, tsize & 0xFFFF) + b"".join(struct.pack("<H", e) for e in vt_entries)
    vt_pos = 4
    table_pos = vt_pos + len(vtable)
    table_pos += draw(st.integers(0, 7))                            # misalign on purpose
    soff_kind = draw(st.sampled_from(["valid", "self", "random", "forward"]))
    soffset = {"valid": table_pos - vt_pos, "self": 0, "forward": -16}.get(soff_kind) \
        if soff_kind != "random" else draw(i32)
    body = bytearray(draw(st.binary(min_size=0, max_size=64)))
    # sprinkle offsets (as u32) into the table body: strings/vectors/unions pointing anywhere
    for _ in range(draw(st.integers(0, 4))):
        if len(body) >= 4:
            at = draw(st.integers(0, len(body) - 4))
            body[at:at + 4] = struct.pack("<I", draw(u32))
    tail = bytearray()
    for _ in range(draw(st.integers(0, 3))):                        # strings/vectors with hostile lengths
        ln = draw(st.sampled_from([0, 1, 3, 0xFFFF_FFFF, 0x7FFF_FFFF]) | st.integers(0, 40))
        payload = draw(st.binary(max_size=min(ln, 40) if ln < 41 else 8))
        tail += struct.pack("<I", ln) + payload + draw(st.sampled_from([b"\0", b"", b"x"]))
    root = draw(st.sampled_from([table_pos, 0, 1, 4, 0xFFFF_FFFF]) | u32)
    buf = bytearray(struct.pack("<I", root & 0xFFFF_FFFF)) + vtable
    buf += bytes(table_pos - len(buf)) + struct.pack("<i", soffset) + body + tail
    cut = draw(st.none() | st.integers(0, len(buf)))
    return bytes(buf[:cut] if cut is not None else buf)


@needs_guard
@FUZZ
@given(assembled())
def test_fuzz_assembled_buffers(data):
    _exercise(G.at_end(data))
    _exercise(G.at_start(data))


@st.composite
def spliced(draw):
    """Valid messages of every schema with one offset-sized word overwritten by a hostile value (deep offsets,
    offsets into the vtable/header: overlapping structures), or two messages spliced together."""
    a = bytearray(draw(st.sampled_from(SEEDS)))
    kind = draw(st.sampled_from(["word", "splice", "extend", "shrink-len"]))
    if kind == "word" and len(a) >= 4:
        at = draw(st.integers(0, (len(a) - 4) // 2)) * 2
        a[at:at + 4] = struct.pack("<I", draw(u32))
    elif kind == "splice":
        b = draw(st.sampled_from(SEEDS))
        at = draw(st.integers(0, len(a)))
        a = a[:at] + b[draw(st.integers(0, len(b))):]
    elif kind == "extend":                                          # oversized: valid message + lots of junk
        a += draw(st.binary(min_size=0, max_size=2000))
    elif len(a) >= 92:                                              # string length just past the end
        a[88:92] = struct.pack("<I", len(a) - 92 + draw(st.integers(-2, 2)) & 0xFFFF_FFFF)
    return bytes(a)


@needs_guard
@FUZZ
@given(spliced())
def test_fuzz_spliced_valid_messages(data):
    _exercise(G.at_end(data[-mmap_page():]))


def mmap_page():
    import mmap
    return mmap.PAGESIZE


@needs_guard
@settings(max_examples=max(50, BUDGET // 10), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(SEEDS), st.integers(0, 2**32 - 1))
def test_fuzz_frame_headers(payload, bogus_len):
    """Frame buffers whose last header claims any length (incl. 2**32 - 1): DecodeError, never a read past the end."""
    framed = lowlat.frame([payload, payload]) + struct.pack("<I", bogus_len) + payload[: bogus_len % 64]
    mv = G.at_end(framed)
    import numpy as np
    out = np.zeros(8, np.uint8)
    if bogus_len <= len(payload[: bogus_len % 64]):
        assert lowlat.count_frames(mv) == 3
    else:
        with pytest.raises(lowlat.DecodeError):
            lowlat.Validator([]).validate_frames(mv, out)
        with pytest.raises(lowlat.DecodeError):
            list(lowlat.iter_frames(mv))


def test_giant_and_empty_strings_round_trip():
    # zero-length strings are legal; a 1 MiB symbol round-trips and is an unknown symbol for the validator
    for s in ("", "x" * (1 << 20), "\0\0", "ü" * 1000):
        b = lowlat.encode_order(1, s, 1.0, 1, 0, 0, client_order_id=s)
        assert lowlat.read_order(b)[1] == s
        assert lowlat.decode_order(b).client_order_id == s
        assert lowlat.Validator([lowlat.InstrumentRules("AAPL")]).validate(b) == lowlat.Reject.UNKNOWN_SYMBOL


def test_wrong_schema_is_rejected_or_read_as_defaults_never_crashes():
    # A Cancel read as an Order: valid FlatBuffer, other field types -> values, not a crash; validator rejects
    c = lowlat.encode_cancel(5, "AAPL", 6, 7)
    try:
        lowlat.read_order(c)
    except lowlat.DecodeError:
        pass
    assert lowlat.Validator([lowlat.InstrumentRules("AAPL")]).validate(c) != lowlat.Reject.ACCEPTED
