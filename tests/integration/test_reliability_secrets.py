"""Secrets and publish checks on a real nats-server (service processes where the CLI is involved).

- A token or password in the URL is never printed: not in the ``service started`` line, not in connect errors.
- Credentials can come from files so they stay out of ``ps``: ``--token-file``, ``--nkey-file``; the TLS options
  (``--tls-ca``, ``--tls-cert``, ``--tls-key``) let a CLI service join a mutual-TLS server.
- ``publish`` over the server's ``max_payload`` raises ``lowlat.errors.MaxPayloadError``; invalid subjects
  (wildcards, empty tokens, NUL, whitespace) raise ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import asyncio

import pytest
from _services_util import service

from lowlat import _core
from lowlat.errors import MaxPayloadError, TransportError
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(90)]


def _answers(url: str, **opts) -> int:
    async def ask() -> int:
        async with connect(url, **opts) as t:
            r = await t.request("orders.in", _core.encode_order(7, "AAPL", 100.0, 1, 0, 1), timeout=5)
            return _core.decode_validation_result(r.data)[0]

    return asyncio.run(ask())


def _serve_and_ask(srv, *args: str, env: dict[str, str] | None = None) -> str:
    p = service("serve", "validator", *args, env=env)
    try:
        p.wait_for('"ready"', timeout=30)
        assert _answers(srv.url, **srv.client_options) == 7
    finally:
        p.terminate()
    assert p.wait(30) == 0, p.output[-3000:]
    return p.output


def test_token_in_url_is_redacted_in_logs(nats_server_token):
    host = nats_server_token.url.split("://", 1)[1]
    token = nats_server_token.client_options["token"]
    out = _serve_and_ask(nats_server_token, "--transport", f"nats://{token}@{host}")
    assert '"service started"' in out and "***@" in out
    assert token not in out, out[-3000:]


def test_wrong_password_in_url_is_redacted_in_the_connect_error(nats_server_userpass):
    host = nats_server_userpass.url.split("://", 1)[1]
    p = service("serve", "validator", "--transport", f"nats://trader:wr0ng-s3cret@{host}",
                env={"LOWLAT_CONNECT_ATTEMPTS": "1"})
    assert p.wait(60) != 0
    assert "wr0ng-s3cret" not in p.output and "Traceback" not in p.output, p.output[-3000:]
    assert "uthoriz" in p.output


async def test_connect_error_message_has_no_credentials(nats_server_userpass):
    host = nats_server_userpass.url.split("://", 1)[1]
    with pytest.raises(TransportError) as ei:
        async with connect(f"nats://trader:wr0ng-s3cret@{host}", allow_reconnect=False, max_reconnect_attempts=0,
                           connect_timeout=2):
            pass
    assert "wr0ng-s3cret" not in str(ei.value) and "***@" in str(ei.value)


def test_token_file(nats_server_token, tmp_path):
    f = tmp_path / "token"
    f.write_text(nats_server_token.client_options["token"] + "\n")
    f.chmod(0o600)
    out = _serve_and_ask(nats_server_token, "--transport", nats_server_token.url, "--token-file", str(f))
    assert nats_server_token.client_options["token"] not in out


def test_nkey_seed_file(nats_server_nkey):
    _serve_and_ask(nats_server_nkey, "--transport", nats_server_nkey.url, "--nkey-file",
                   nats_server_nkey.client_options["nkeys_seed"])


def test_mutual_tls_from_cli_flags(nats_server_tls):
    o = nats_server_tls.client_options
    host = nats_server_tls.url.split("://", 1)[1]
    # the password comes from the environment (not in ps), the TLS files from flags
    out = _serve_and_ask(nats_server_tls, "--tls-ca", o["tls_ca"], "--tls-cert", o["tls_cert"], "--tls-key",
                         o["tls_key"], env={"LOWLAT_TRANSPORT": f"tls://{o['user']}:{o['password']}@{host}"})
    assert o["password"] not in out


def test_unreadable_credential_file_is_a_one_line_config_error(nats_server_token, tmp_path):
    p = service("serve", "validator", "--transport", nats_server_token.url, "--token-file",
                str(tmp_path / "missing"))
    assert p.wait(30) == 2
    assert "token_file" in p.output and "Traceback" not in p.output


async def test_publish_checks_subject_and_max_payload(nats_server):
    async with connect(nats_server.url) as t:
        for bad in ("orders.*", "orders.>", "orders..in", "orders.in.", "a\x00b", "a b", ""):
            with pytest.raises(ValueError):
                await t.publish(bad, b"x")
            with pytest.raises(ValueError):
                await t.publish_batch(bad, [b"x"])
        with pytest.raises(ValueError):
            await t.publish("orders.in", b"x", reply="bad..reply")
        big = b"x" * (t.client.max_payload + 1)
        with pytest.raises(MaxPayloadError):
            await t.publish("orders.in", big)
        with pytest.raises(MaxPayloadError):
            await t.publish_batch("orders.in", [b"ok", big])
        await t.publish("orders.in", b"still usable")
        await t.flush()
