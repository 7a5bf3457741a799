"""Security gaps not covered by test_nats_security.py: fail closed at the service level and on TLS mismatches.

- a client certificate signed by another CA is refused by the server (mutual TLS checks the client side too);
- a ``tls://`` client never falls back to plaintext against a server without TLS;
- a service started with a wrong or missing token, or without its client certificate, exits non-zero with a
  clear error instead of running unauthenticated or hanging; with the right token (in the URL) it serves.
"""

from __future__ import annotations

import asyncio

import pytest
from _services_util import service

from lowlat.errors import TransportError
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(90)]

FAST = {"connect_timeout": 2, "allow_reconnect": False, "max_reconnect_attempts": 0}


async def test_tls_rejects_client_cert_from_unknown_ca(nats_server_tls, tmp_path):
    from brokers.nats import make_pki

    rogue = make_pki(tmp_path / "rogue")  # a well-formed client cert, but not from the server's CA
    opts = dict(nats_server_tls.client_options, tls_cert=str(rogue["client"]), tls_key=str(rogue["client-key"]))
    with pytest.raises(TransportError):
        async with connect(nats_server_tls.url, **opts, **FAST) as t:
            await t.flush()


async def test_tls_client_never_downgrades_to_plaintext(nats_server, tmp_path):
    from brokers.nats import make_pki

    pki = make_pki(tmp_path / "pki")
    url = nats_server.url.replace("nats://", "tls://")
    with pytest.raises(TransportError):
        async with connect(url, tls_ca=str(pki["ca"]), **FAST) as t:
            await t.flush()


def _fails_closed(url: str, env: dict[str, str] | None = None) -> str:
    p = service("serve", "validator", "--transport", url, env=env)
    rc = p.wait(60)
    assert rc != 0, p.output[-2000:]
    assert '"ready"' not in p.output
    return p.output


def test_service_with_wrong_token_exits_nonzero_naming_the_cause(nats_server_token):
    host = nats_server_token.url.split("://", 1)[1]
    out = _fails_closed(f"nats://wrong-token@{host}")
    assert "uthoriz" in out, out[-2000:]  # the real cause, not just nats-py's "no servers available"


def test_service_with_right_token_in_url_serves(nats_server_token):
    host = nats_server_token.url.split("://", 1)[1]
    url = f"nats://{nats_server_token.client_options['token']}@{host}"
    p = service("serve", "validator", "--transport", url)
    try:
        p.wait_for('"ready"', timeout=30)

        async def ask() -> bytes:
            from lowlat import _core

            async with connect(nats_server_token.url, **nats_server_token.client_options) as t:
                r = await t.request("orders.in", _core.encode_order(7, "AAPL", 100.0, 1, 0, 1), timeout=5)
                return _core.decode_validation_result(r.data)[0]

        assert asyncio.run(ask()) == 7
    finally:
        p.terminate()
    assert p.wait(30) == 0


async def test_plain_client_to_tls_server_fails_within_its_connect_budget(nats_server_tls):
    # nats-py alone waits forever here (server demands TLS, client has no TLS context); the adapter bounds the
    # initial connect by connect_timeout/attempts and fails closed
    import time

    url = nats_server_tls.url.replace("tls://", "nats://")
    t0 = time.monotonic()
    with pytest.raises(TransportError):
        async with connect(url, connect_timeout=1, max_reconnect_attempts=1, reconnect_time_wait=0.2):
            pass
    assert time.monotonic() - t0 < 10
