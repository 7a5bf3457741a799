"""The ``NATS/1.0`` header block of ``HPUB``/``HMSG``: encode a mapping, decode a block (with nats-py's status
line convention).  Pure Python: header blocks are rare on the hot path and short."""

from __future__ import annotations

from ..errors import DecodeError
from .base import Headers

__all__ = ["decode_headers", "encode_headers"]


def encode_headers(headers: Headers) -> bytes:
    """``{"K": "v"}`` -> the ``NATS/1.0`` header block; ``ValueError`` for CR/LF in a key/value or ':' in a key."""
    parts = ["NATS/1.0\r\n"]
    for k, v in headers.items():
        k, v = str(k), str(v)
        if not k or ":" in k or any(c in k for c in "\r\n \t") or "\r" in v or "\n" in v:
            raise ValueError(f"invalid header {k!r}: {v!r}")
        parts.append(f"{k}: {v}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


def decode_headers(block: bytes) -> tuple[dict[str, str], int]:
    """The header block -> (headers, status); status 0 when the first line has none.  Like nats-py, a status
    line's code and text are also given as ``Status`` / ``Description`` headers.  Raises ``DecodeError``."""
    try:
        text = block.decode()
    except UnicodeDecodeError as e:
        raise DecodeError("NATS header block is not UTF-8") from e
    lines = text.split("\r\n")
    first = lines[0]
    if not first.startswith("NATS/1.0"):
        raise DecodeError("NATS header block does not start with NATS/1.0")
    headers: dict[str, str] = {}
    status = 0
    rest = first[8:].strip()
    if rest:
        code, _, desc = rest.partition(" ")
        if not code.isdigit() or len(code) != 3:
            raise DecodeError(f"bad NATS status line {first!r}")
        status = int(code)
        headers["Status"] = code
        if desc:
            headers["Description"] = desc
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep or not k:
            raise DecodeError(f"malformed NATS header line {line!r}")
        headers[k.strip()] = v.strip()
    return headers, status
