"""Framing: [u32 little-endian payload length][payload] repeated, no padding."""

import struct

import numpy as np
import pytest

import lowlat
from lowlat import DecodeError


def test_frame_format_is_u32_le_length_then_payload():
    assert lowlat.frame([b"ab", b"", b"xyz"]) == b"\x02\0\0\0ab" + b"\0\0\0\0" + b"\x03\0\0\0xyz"
    assert lowlat.frame([]) == b""


def test_iter_frames_yields_zero_copy_memoryviews():
    buf = bytearray(lowlat.frame([b"ab", b"", b"xyz"]))
    frames = list(lowlat.iter_frames(buf))
    assert [bytes(f) for f in frames] == [b"ab", b"", b"xyz"]
    assert all(isinstance(f, memoryview) for f in frames)
    buf[4] = ord("Z")
    assert bytes(frames[0]) == b"Zb"                        # a view, not a copy
    del frames


def test_count_and_iter_report_truncated_tail():
    buf = lowlat.frame([b"ab", b"xyz"])
    assert lowlat.count_frames(buf) == 2
    for cut in range(1, 7):          # 7 would drop the whole 7-byte last frame: a valid buffer
        with pytest.raises(DecodeError, match="truncated"):
            lowlat.count_frames(buf[:-cut])
        got = []
        with pytest.raises(DecodeError, match="truncated"):
            for f in lowlat.iter_frames(buf[:-cut]):
                got.append(bytes(f))
        assert got == [b"ab"]                            # frames before the bad tail were delivered


def test_frame_accepts_any_buffer():
    arr = np.arange(5, dtype=np.uint8)
    assert lowlat.frame([arr, memoryview(b"q"), bytearray(b"r")]) == \
        struct.pack("<I", 5) + bytes(range(5)) + b"\x01\0\0\0q\x01\0\0\0r"


def test_frame_order_into_builds_a_frame_buffer_in_place():
    buf = bytearray(4096)
    pos = 0
    for i in range(10):
        pos += lowlat.frame_order_into(buf, pos, i, "AAPL", 1.5 + i, 10, i % 2, i)
    view = memoryview(buf)[:pos]
    assert lowlat.count_frames(view) == 10
    assert [lowlat.read_order(f)[0] for f in lowlat.iter_frames(view)] == list(range(10))
    with pytest.raises(ValueError):
        lowlat.frame_order_into(bytearray(80), 0, 1, "A", 1.0, 1, 0, 0)
