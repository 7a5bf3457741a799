"""Credential redaction for anything lowlat prints: URLs with ``user:password@`` or ``token@``, and known secrets.

Every log line and error message that names a transport URL goes through ``redact_url`` so a token or password
given in the URL never reaches logs, tracebacks or metrics.  Cost: one string scan per call (not on a hot path).
"""

from __future__ import annotations

import re

__all__ = ["redact", "redact_url"]

# scheme://[userinfo@]host...: the userinfo part is everything up to the last '@' before the host part
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s,]*)@")


def redact_url(url: str) -> str:
    """``url`` with the credentials of every ``scheme://userinfo@host`` part (comma-separated lists too)
    replaced by ``***``: ``nats://tok@h:4222`` -> ``nats://***@h:4222``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", str(url))


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URL credentials and every non-empty string of ``secrets`` replaced by ``***``."""
    out = redact_url(text)
    for s in secrets:
        if s:
            out = out.replace(s, "***")
    return out
