"""AeronTransport specifics beyond the conformance suite: framing, reply stream, back-pressure, hostile frames."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from brokers.aeron import require_aeron_ext
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat.errors import DecodeError, TransportError, TransportTimeoutError

pytestmark = [pytest.mark.integration, pytest.mark.aeron, pytest.mark.timeout(120)]


@pytest.fixture
def mod():
    require_aeron_ext()
    from lowlat.transport import aeron

    return aeron


def _opts(driver, stream, **kw):
    return dict(aeron_dir=driver.aeron_dir, stream_id=stream, **kw)


# --- the in-band frame (pure functions) ---

subjects = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(subject=subjects, meta=st.binary(max_size=64), payload=st.binary(max_size=64))
def test_frame_round_trip(subject, meta, payload):
    require_aeron_ext()
    from lowlat.transport.aeron import decode_frame, encode_frame

    buf = encode_frame(subject, meta) + payload
    s, m, off = decode_frame(buf)
    assert (s, m, buf[off:]) == (subject, meta, payload)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=40))
def test_truncated_or_hostile_frames_raise_decode_error(data):
    require_aeron_ext()
    from lowlat.transport.aeron import decode_frame, encode_frame

    try:
        s, m, off = decode_frame(data)
    except DecodeError:
        return
    assert off <= len(data) and encode_frame(s, m) == bytes(data[:off])   # accepted only if consistent
    full = encode_frame("a.b", b"meta") + b"payload"
    for cut in range(len(full) - len(b"payload")):
        with pytest.raises(DecodeError):
            decode_frame(full[:cut])


# --- against the driver ---

@pytest.fixture(params=["ipc", "udp"])
def url(request, aeron_udp_channel) -> str:
    return "aeron:ipc" if request.param == "ipc" else aeron_udp_channel


async def test_request_reply_uses_the_reply_stream_with_a_correlation_id(mod, aeron_driver, aeron_client,
                                                                        aeron_stream, url):
    from lowlat.transport import connect

    spy = aeron_client.add_subscription(url, aeron_stream + 1)   # watches the reply stream
    async with connect(url, **_opts(aeron_driver, aeron_stream)) as server, \
            connect(url, **_opts(aeron_driver, aeron_stream)) as client:
        seen_reply_subjects = []

        def handler(msg):
            seen_reply_subjects.append(msg.reply)
            return b"re:" + bytes(msg.data)

        task = await server.serve("svc.echo", handler)
        try:
            reps = await asyncio.gather(*(client.request("svc.echo", b"%d" % i, timeout=5) for i in range(20)))
            assert [bytes(r.data) for r in reps] == [b"re:%d" % i for i in range(20)]
        finally:
            task.cancel()
    assert all(r.startswith("_INBOX.") for r in seen_reply_subjects)
    corr_ids = [int(r.rsplit(".", 1)[1]) for r in seen_reply_subjects]
    assert len(set(corr_ids)) == 20
    on_reply_stream = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(on_reply_stream) < 20 and asyncio.get_running_loop().time() < deadline:
        spy.poll(lambda mv: on_reply_stream.append(mod.decode_frame(mv)[0]), 100)
        await asyncio.sleep(0.001)
    assert sorted(on_reply_stream) == sorted(seen_reply_subjects)


async def test_many_messages_between_transports_in_order(mod, aeron_driver, aeron_stream, url):
    from lowlat.transport import connect

    n = 5000
    async with connect(url, **_opts(aeron_driver, aeron_stream)) as a, \
            connect(url, **_opts(aeron_driver, aeron_stream)) as b:
        sub = await b.subscribe("md.>")
        for i in range(n):
            await a.publish(f"md.{i % 7}", i.to_bytes(4, "little"))
        got = []
        async with asyncio.timeout(30):
            async for m in sub:
                got.append(int.from_bytes(m.data, "little"))
                if len(got) == n:
                    break
        assert got == list(range(n)) and sub.dropped == 0


@pytest.mark.parametrize("spin_us", [0.0, 200.0, 5_000.0])
async def test_request_inline_wait_and_fallback(mod, aeron_driver, aeron_stream, spin_us):
    """request_spin_us=0 always awaits the poller; > 0 first waits inline (no suspension when the reply comes in
    time).  Both give the same answers, concurrent requests included, with headers, and to itself."""
    from lowlat.transport import connect

    async with connect("aeron:ipc", **_opts(aeron_driver, aeron_stream, request_spin_us=spin_us)) as client, \
            connect("aeron:ipc", **_opts(aeron_driver, aeron_stream)) as server:
        calls = []

        def hdr(m):
            calls.append(bytes(m.data))
            return (m.headers or {}).get("k", "-").encode() + bytes(m.data)

        task = await server.serve("svc.hdr", hdr)
        own = await client.serve("svc.self", lambda m: b"self:" + bytes(m.data))
        try:
            for i in range(50):
                r = await client.request("svc.hdr", b"%d" % i, headers={"k": "v"} if i % 2 else None, timeout=5)
                assert bytes(r.data) == (b"v" if i % 2 else b"-") + b"%d" % i
            reps = await asyncio.gather(*(client.request("svc.hdr", b"c%d" % i, timeout=5) for i in range(10)))
            assert [bytes(r.data) for r in reps] == [b"-c%d" % i for i in range(10)]
            assert len(calls) == 60   # each request offered once, whichever path waited for it
            r = await client.request("svc.self", b"x", timeout=5)   # served by this transport's own poller
            assert bytes(r.data) == b"self:x"
            with pytest.raises(TransportTimeoutError):
                await client.request("svc.nobody", b"x", timeout=0.05)
        finally:
            task.cancel()
            own.cancel()


async def test_aeron_poll_options_are_checked(mod):
    from lowlat.transport.aeron import AeronTransport

    for bad in ({"poll_block_us": -1}, {"poll_park_us": -1}, {"request_spin_us": -1}):
        with pytest.raises(ValueError):
            AeronTransport("aeron:ipc", **bad)


async def test_hostile_frame_on_the_bus_is_dropped_and_counted(mod, aeron_driver, aeron_client, aeron_stream):
    from lowlat.transport import connect

    async with connect("aeron:ipc", **_opts(aeron_driver, aeron_stream)) as t:
        sub = await t.subscribe("x.y")
        raw = aeron_client.add_publication("aeron:ipc", aeron_stream)
        raw.wait_connected(5)
        for junk in (b"", b"\x01", b"\xff\xff\x00\x00abc", b"\x02\x00\x00\x00\xff\xfe",
                     mod.encode_frame("x.y", b"\nbad-header-line")):
            raw.offer_wait(junk, timeout=5)
        raw.offer_wait(b"ok", mod.encode_frame("x.y"), timeout=5)
        m = await asyncio.wait_for(sub.__anext__(), 10)
        assert bytes(m.data) == b"ok" and m.subject == "x.y"
        assert t.decode_errors == 5


async def test_slow_raw_subscriber_back_pressures_publish(mod, aeron_driver, aeron_client, aeron_stream):
    from lowlat.transport import connect

    stalled = aeron_client.add_subscription("aeron:ipc", aeron_stream)   # never polled
    async with connect("aeron:ipc", **_opts(aeron_driver, aeron_stream, publish_timeout=0.2)) as t:
        big = b"z" * 60_000
        with pytest.raises(TransportTimeoutError, match="BACK_PRESSURED"):
            for _ in range(1000):   # a term window is 4 MiB here
                await t.publish("bp.x", big)
    stalled.close()


async def test_adapter_errors_are_clear(mod, aeron_driver, aeron_stream, tmp_path):
    from lowlat.transport import connect

    async with connect("aeron:ipc", **_opts(aeron_driver, aeron_stream)) as t:
        with pytest.raises(TransportError, match="queue groups"):
            await t.subscribe("a.b", queue="workers")
        with pytest.raises(ValueError, match="max_message_length"):
            await t.publish("a.b", b"x" * (2 << 20))
        with pytest.raises(ValueError):
            await t.publish("a.*", b"wildcards only in subscriptions")
    with pytest.raises(ValueError, match="Aeron channel"):
        connect("aeron:tcp?endpoint=x", aeron_dir=aeron_driver.aeron_dir)
    with pytest.raises(TransportError, match="media driver"):
        async with connect("aeron:ipc", aeron_dir=str(tmp_path / "none"), connect_timeout=0.2):
            pass


def test_missing_extension_names_aeron_home():
    code = ("import sys; sys.modules['lowlat._aeron'] = None\n"
            "from lowlat.transport import connect\n"
            "from lowlat.errors import MissingExtraError\n"
            "try:\n    connect('aeron:ipc')\nexcept MissingExtraError as e:\n    print('OK', e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.startswith("OK") and "AERON_HOME" in out.stdout, out.stderr
