"""The shm bus record, one codec for the async transport and the synchronous fast path.

A record is ``u32 sid, u16 subject length, u32 meta length`` (little endian, ``HEADER`` bytes), then the subject,
the meta (``base.encode_meta``: reply subject and headers; a bare reply subject when there are no headers) and the
payload.  ``sid`` addresses the receiving member's subscriptions: ``SID_ALL`` every plain subscription that
matches the subject, ``SID_INBOX`` its request inbox, anything else one subscription (a queue-group pick).
"""

from __future__ import annotations

import struct
from typing import Any

from ..base import Buffer, decode_meta

__all__ = ["HEADER", "SID_ALL", "SID_INBOX", "SMALL_RECORD", "decode", "encode_small", "record_size",
           "split_meta", "unpack_header", "write_record"]

_REC = struct.Struct("<IHI")  # sid, subject length, meta length
HEADER = _REC.size
unpack_header = _REC.unpack_from  # (rec, 0) -> (sid, subject length, meta length)
SID_ALL = 0
SID_INBOX = 1
SMALL_RECORD = 2048  # records up to this size are concatenated and pushed in one call, larger ones claimed


def record_size(subj: bytes, meta: bytes, nbytes: int) -> int:
    return HEADER + len(subj) + len(meta) + nbytes


def encode_small(sid: int, subj: bytes, meta: bytes, payload: Buffer) -> bytes:
    """The whole record as one ``bytes`` (one concatenation: ≈0.25 µs, cheaper than claim + 4 slice writes for
    records up to ``SMALL_RECORD``)."""
    return _REC.pack(sid, len(subj), len(meta)) + subj + meta + payload


def write_record(buf: Any, sid: int, subj: bytes, meta: bytes, payload: Buffer, nbytes: int) -> None:
    """Write the record into ``buf`` (a claimed ring slot of exactly ``record_size`` bytes)."""
    _REC.pack_into(buf, 0, sid, len(subj), len(meta))
    o = HEADER
    buf[o:o + len(subj)] = subj
    o += len(subj)
    if meta:
        buf[o:o + len(meta)] = meta
        o += len(meta)
    if nbytes:
        buf[o:] = memoryview(payload).cast("B")


def split_meta(meta: bytes) -> tuple[str | None, dict[str, str] | None]:
    """(reply, headers) of a record's meta; a bare reply subject (the request case) skips header parsing."""
    if not meta:
        return None, None
    if b"\n" not in meta:
        return meta.decode(), None
    return decode_meta(meta)


def decode(rec: bytes) -> tuple[int, str, str | None, dict[str, str] | None, memoryview]:
    """``(sid, subject, reply, headers, payload view)``; ``ValueError``/``UnicodeDecodeError``/``struct.error``
    for a malformed record (callers drop and log it)."""
    sid, ls, lm = _REC.unpack_from(rec, 0)
    o = HEADER
    if o + ls + lm > len(rec):
        raise ValueError(f"record of {len(rec)} bytes shorter than its header says")
    subject = rec[o:o + ls].decode()
    o += ls
    reply, headers = split_meta(rec[o:o + lm]) if lm else (None, None)
    return sid, subject, reply, headers, memoryview(rec)[o + lm:]
