"""NATS auth and TLS against a real nats-server that rejects wrong credentials, on both clients (lowlat's compiled
one, the default for ``nats://`` / ``tls://``, without its JetStream side connection; and nats-py)."""

from __future__ import annotations

import asyncio

import pytest

from lowlat.errors import TransportError
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(60)]

FAST = {"connect_timeout": 2, "allow_reconnect": False, "max_reconnect_attempts": 0}


@pytest.fixture
def cl(nats_client) -> dict:
    """``connect`` options selecting the client under test (ours alone: no nats-py side connection)."""
    return {"client": nats_client, "jetstream": False} if nats_client == "lowlat" else {"client": nats_client}


def is_tls(t) -> bool:
    if t.client is not None and hasattr(t.client, "_transport"):   # nats-py wraps TLS in its TcpTransport
        return t.client._transport._io_writer.get_extra_info("ssl_object") is not None
    return t._wt.get_extra_info("ssl_object") is not None


async def roundtrip(t) -> bytes:
    sub = await t.subscribe("sec.ping")
    await t.publish("sec.ping", b"pong")
    m = await asyncio.wait_for(sub.__anext__(), 5)
    return bytes(m.data)


async def test_token_auth_accepts_right_token(cl, nats_server_token):
    async with connect(nats_server_token.url, **cl, **nats_server_token.client_options, **FAST) as t:
        assert await roundtrip(t) == b"pong"


@pytest.mark.parametrize("opts", [{}, {"token": "wrong"}], ids=["no-token", "wrong-token"])
async def test_token_auth_rejects(cl, nats_server_token, opts):
    with pytest.raises(TransportError, match="(?i)authoriz"):
        async with connect(nats_server_token.url, **cl, **opts, **FAST):
            pass


async def test_user_password_auth(cl, nats_server_userpass):
    async with connect(nats_server_userpass.url, **cl, **nats_server_userpass.client_options, **FAST) as t:
        assert await roundtrip(t) == b"pong"


@pytest.mark.parametrize("opts", [{}, {"user": "trader", "password": "nope"}, {"user": "x", "password": "pa55-w0rd"}],
                         ids=["none", "wrong-password", "wrong-user"])
async def test_user_password_rejects(cl, nats_server_userpass, opts):
    with pytest.raises(TransportError, match="(?i)authoriz"):
        async with connect(nats_server_userpass.url, **cl, **opts, **FAST):
            pass


async def test_nkey_auth(cl, nats_server_nkey):
    async with connect(nats_server_nkey.url, **cl, **nats_server_nkey.client_options, **FAST) as t:
        assert await roundtrip(t) == b"pong"


async def test_nkey_auth_rejects_other_key(cl, nats_server_nkey, tmp_path):
    import os

    import nkeys

    other = tmp_path / "other.nk"
    other.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    with pytest.raises(TransportError, match="(?i)authoriz"):
        async with connect(nats_server_nkey.url, **cl, nkeys_seed=str(other), **FAST):
            pass


async def test_mutual_tls_with_generated_ca(cl, nats_server_tls):
    assert nats_server_tls.url.startswith("tls://")
    async with connect(nats_server_tls.url, **cl, **nats_server_tls.client_options, **FAST) as t:
        assert await roundtrip(t) == b"pong"
        assert is_tls(t)   # the connection really is TLS


async def test_tls_rejects_client_without_certificate(cl, nats_server_tls):
    opts = dict(nats_server_tls.client_options)
    opts.pop("tls_cert")
    opts.pop("tls_key")
    with pytest.raises(TransportError):
        async with connect(nats_server_tls.url, **cl, **opts, **FAST):
            pass


async def test_tls_rejects_server_from_unknown_ca(cl, nats_server_tls, tmp_path):
    from brokers.nats import make_pki

    other = make_pki(tmp_path / "other")
    opts = dict(nats_server_tls.client_options, tls_ca=str(other["ca"]))
    with pytest.raises(TransportError, match="(?i)certificate"):
        async with connect(nats_server_tls.url, **cl, **opts, **FAST):
            pass


async def test_plain_client_cannot_talk_to_tls_server(cl, nats_server_tls):
    url = nats_server_tls.url.replace("tls://", "nats://")
    opts = {k: v for k, v in nats_server_tls.client_options.items() if not k.startswith("tls")}
    with pytest.raises(TransportError):
        async with connect(url, **cl, **opts, **FAST):
            pass
