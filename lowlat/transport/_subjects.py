"""Subjects and the small meta frame: pure helpers every adapter shares (no I/O, no state but a counter).

Subjects follow NATS rules on every adapter: dot-separated tokens, ``*`` matches exactly one token and ``>``
matches one or more trailing tokens (only in subscriptions).  ``subject_matches`` is the reference.  The meta
frame carries a reply subject and headers for transports without native headers (zmq, aeron, shm).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

from ..errors import DecodeError

__all__ = ["decode_meta", "encode_meta", "new_inbox", "subject_matches", "validate_subject"]

Headers = Mapping[str, str]


def validate_subject(subject: str, *, wildcards: bool = False) -> str:
    """Return ``subject`` if it is a valid NATS-style subject, else raise ``ValueError``.

    Tokens are separated by ``.`` and must be non-empty and free of whitespace.  With ``wildcards=True``
    (subscriptions) ``*`` may stand for a whole token and ``>`` may be the last token.  Cost: O(len).
    """
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"invalid subject {subject!r}: must be a non-empty str")
    toks = subject.split(".")
    last = len(toks) - 1
    for i, t in enumerate(toks):
        if not t or any(c.isspace() for c in t):
            raise ValueError(f"invalid subject {subject!r}: empty token or whitespace")
        if t == "*" or t == ">":
            if not wildcards:
                raise ValueError(f"invalid subject {subject!r}: wildcards are only allowed in subscriptions")
            if t == ">" and i != last:
                raise ValueError(f"invalid subject {subject!r}: '>' must be the last token")
        elif "*" in t or ">" in t:
            raise ValueError(f"invalid subject {subject!r}: a wildcard must be a whole token")
    return subject


def subject_matches(pattern: str, subject: str) -> bool:
    """True if the literal ``subject`` matches subscription ``pattern`` (``*`` one token, ``>`` the rest)."""
    if pattern == subject:
        return True
    p = pattern.split(".")
    s = subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if tok != "*" and tok != s[i]:
            return False
    return len(p) == len(s)


def encode_meta(reply: str | None, headers: Headers | None) -> bytes:
    """``b""`` or ``reply\\nk:v\\nk:v``; raises ``ValueError`` for a newline in a key/value or ':' in a key."""
    if not reply and not headers:
        return b""
    parts = [reply or ""]
    if headers:
        for k, v in headers.items():
            k, v = str(k), str(v)
            if "\n" in k or "\n" in v or ":" in k or not k:
                raise ValueError(f"invalid header {k!r}: {v!r}")
            parts.append(f"{k}:{v}")
    return "\n".join(parts).encode()


def decode_meta(meta: bytes | memoryview) -> tuple[str | None, dict[str, str] | None]:
    """Inverse of ``encode_meta``; raises ``lowlat.DecodeError`` (a ``ValueError``) on malformed input."""
    if not meta:
        return None, None
    try:
        text = bytes(meta).decode()
    except UnicodeDecodeError as e:
        raise DecodeError("zmq meta frame is not UTF-8") from e
    lines = text.split("\n")
    headers: dict[str, str] | None = None
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if not sep or not k:
            raise DecodeError(f"malformed zmq header line {line!r}")
        if headers is None:
            headers = {}
        headers[k] = v
    return lines[0] or None, headers


_inbox_ids = itertools.count(1)


def new_inbox(prefix: str = "_INBOX") -> str:
    """A process-unique inbox subject, ``<prefix>.<random hex>.<n>``."""
    return f"{prefix}.{os.urandom(8).hex()}.{next(_inbox_ids)}"
