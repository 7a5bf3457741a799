# Included by _core.pyx.  Framing: [u32 little-endian payload length][payload], repeated, no padding, no
# trailer.

def frame(buffers) -> bytes:
    """Concatenate bytes-like messages into one frame buffer: each is prefixed by its u32 LE length."""
    parts = []
    for b in buffers:
        mv = memoryview(b).cast("B")
        if mv.nbytes > 0xFFFF_FFFF:
            raise ValueError("frame: a message is longer than 2**32 - 1 bytes")
        parts.append(_struct.pack("<I", mv.nbytes))
        parts.append(mv)
    return b"".join(parts)


def count_frames(buf) -> int:
    """Number of frames in a frame buffer.  Raises DecodeError if the last frame is truncated."""
    cdef Py_buffer view
    cdef const char* p
    cdef Py_ssize_t n, bad = 0, count
    cdef int held = _acquire(buf, &view, &p, &n)
    try:
        count = fb_scan_frames(p, n, &bad)
    finally:
        if held:
            PyBuffer_Release(&view)
    if count < 0:
        raise DecodeError(f"truncated frame at byte offset {bad} of a {n}-byte frame buffer")
    return count


def iter_frames(buf):
    """Yield each frame's payload as a zero-copy ``memoryview`` slice of ``buf``.

    Frames before a truncated tail are yielded; then :class:`DecodeError` is raised (nothing is skipped silently).
    """
    mv = memoryview(buf).cast("B")
    cdef Py_ssize_t n = mv.nbytes, pos = 0, ln
    while pos < n:
        if pos > n - 4:
            raise DecodeError(f"truncated frame header at byte offset {pos} of a {n}-byte frame buffer")
        ln = mv[pos] | (mv[pos + 1] << 8) | (mv[pos + 2] << 16) | (<Py_ssize_t>mv[pos + 3] << 24)
        if ln > n - pos - 4:
            raise DecodeError(f"truncated frame at byte offset {pos}: {ln}-byte payload, "
                              f"{n - pos - 4} bytes left")
        yield mv[pos + 4:pos + 4 + ln]
        pos += 4 + ln
