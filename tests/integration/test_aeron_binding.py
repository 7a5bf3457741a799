"""lowlat._aeron against a real Aeron 1.11.3 media driver: offer results, fragmentation, ordering, no loss."""

from __future__ import annotations

import os
import struct

import pytest
from brokers.aeron import require_aeron_ext

from lowlat import BackoffIdle, idle_strategy
from lowlat.errors import TransportClosedError, TransportError, TransportTimeoutError

pytestmark = [pytest.mark.integration, pytest.mark.aeron, pytest.mark.timeout(120)]



@pytest.fixture
def A():  # the binding, or skip/fail per the broker-missing rule
    return require_aeron_ext()


@pytest.fixture(params=["ipc", "udp"])
def channel(request, aeron_udp_channel) -> str:
    return "aeron:ipc" if request.param == "ipc" else aeron_udp_channel


def pair(client, channel, stream):
    sub = client.add_subscription(channel, stream)
    pub = client.add_publication(channel, stream)
    pub.wait_connected(5)
    sub.wait_connected(5)
    return pub, sub


def drain_into(sub, out: list, n: int, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        sub.poll_wait(lambda mv: out.append(bytes(mv)), 256, "backoff", 0.5)


def test_offer_and_poll_round_trip(A, aeron_client, aeron_stream, channel):
    pub, sub = pair(aeron_client, channel, aeron_stream)
    assert pub.offer(b"hello") > 0
    assert pub.offer(b"world", b"hdr:") > 0          # gathered header + payload
    assert pub.offer(bytearray(b"")) > 0             # empty message
    got: list = []
    drain_into(sub, got, 3)
    assert got == [b"hello", b"hdr:world", b""]
    assert sub.image_count >= 1 and pub.session_id != 0


@pytest.mark.parametrize("size", [1377, 64 << 10, 300_000])
def test_large_message_is_fragmented_and_reassembled(A, aeron_client, aeron_stream, channel, size):
    pub, sub = pair(aeron_client, channel, aeron_stream)
    assert size > pub.max_payload_length            # needs more than one frame
    big = os.urandom(size)
    pub.offer_wait(big, timeout=5)
    pub.offer_wait(b"after", timeout=5)
    got: list = []
    drain_into(sub, got, 2)
    assert len(got) == 2 and got[0] == big and got[1] == b"after"


def test_message_at_max_message_length(A, aeron_client, aeron_stream):
    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    n = pub.max_message_length
    big = os.urandom(n)
    pub.offer_wait(big, timeout=5)
    got: list = []
    drain_into(sub, got, 1)
    assert got == [big]
    assert pub.offer(b"x" * (n + 1)) == A.MESSAGE_TOO_LONG
    assert pub.offer(b"x" * (n - 3), b"head") == A.MESSAGE_TOO_LONG   # header counts
    with pytest.raises(ValueError, match="max_message_length"):
        pub.offer_wait(b"x" * (n + 1))


@pytest.mark.parametrize("n", [50_000])
def test_ordering_and_no_loss_over_many_messages(A, aeron_client, aeron_stream, channel, n):
    pub, sub = pair(aeron_client, channel, aeron_stream)
    seqs: list[int] = []
    unpack = struct.Struct("<q").unpack_from

    def on(mv):
        seqs.append(unpack(mv)[0])

    pad = b"\x00" * 56            # 64-byte messages
    for i in range(n):
        payload = struct.pack("<q", i) + pad
        while True:
            rc = pub.offer(payload)
            if rc >= 0:
                break
            assert rc in (A.BACK_PRESSURED, A.ADMIN_ACTION), A.offer_result_name(rc)
            sub.poll(on, 256)     # we are the subscriber too: consume to relieve back-pressure
    import time

    deadline = time.monotonic() + 20
    while len(seqs) < n and time.monotonic() < deadline:
        sub.poll_wait(on, 1024, "backoff", 0.5)
    assert len(seqs) == n
    assert seqs == list(range(n))


def test_back_pressure_is_surfaced_then_relieved(A, aeron_client, aeron_stream):
    # the publisher may run at most a term window (term length / 2) ahead of its slowest subscriber
    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    msg = b"m" * 16000
    # one message through first: the driver has then set the publication limit (it runs on its own schedule)
    pub.offer_wait(msg, timeout=5)
    first: list = []
    drain_into(sub, first, 1)
    assert first == [msg]
    results = []
    for _ in range(5000):
        rc = pub.offer(msg)
        results.append(rc)
        if rc == A.BACK_PRESSURED:
            break
    assert results[-1] == A.BACK_PRESSURED, [A.offer_result_name(r) for r in results[-5:]]
    assert A.offer_result_name(A.BACK_PRESSURED) == "BACK_PRESSURED"
    accepted = sum(1 for r in results if r >= 0)
    assert 0 < accepted < 5000
    with pytest.raises(TransportTimeoutError, match="BACK_PRESSURED"):
        pub.offer_wait(msg, timeout=0.05)
    got: list = []
    drain_into(sub, got, accepted)
    assert len(got) == accepted and all(g == msg for g in got)
    assert pub.offer_wait(msg, timeout=5) >= 0     # consumer caught up: accepted again (after ADMIN_ACTION)


def test_not_connected_and_closed_results(A, aeron_client, aeron_stream):
    pub = aeron_client.add_publication("aeron:ipc", aeron_stream)   # nobody subscribes to this stream
    assert not pub.is_connected
    assert pub.offer(b"x") == A.NOT_CONNECTED
    assert A.offer_result_name(pub.offer(b"x")) == "NOT_CONNECTED"
    with pytest.raises(TransportTimeoutError, match="NOT_CONNECTED"):
        pub.offer_wait(b"x", timeout=0.05)
    with pytest.raises(TransportTimeoutError):
        pub.wait_connected(0.05)
    pub.close()
    pub.close()                                     # idempotent
    assert pub.is_closed
    assert pub.offer(b"x") == A.PUBLICATION_CLOSED
    with pytest.raises(TransportClosedError):
        pub.offer_wait(b"x")


def test_offer_result_enum_mirrors_the_binding(A):
    from lowlat.transport.aeron import OfferResult

    for r in OfferResult:
        assert r == getattr(A, r.name) and A.offer_result_name(r) == r.name
    assert [r.name for r in OfferResult if r.retryable] == ["NOT_CONNECTED", "BACK_PRESSURED", "ADMIN_ACTION"]
    assert A.offer_result_name(0) == A.offer_result_name(12345) == "POSITION"


def test_handler_exception_does_not_lose_the_message(A, aeron_client, aeron_stream):
    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    pub.offer(b"one")
    pub.offer(b"two")
    calls = []

    def boom(mv):
        calls.append(bytes(mv))
        raise KeyError("handler failed")

    import time

    deadline = time.monotonic() + 5
    with pytest.raises(KeyError):
        while time.monotonic() < deadline:
            sub.poll(boom)
    assert calls == [b"one"]                       # aborted at the failing message
    got: list = []
    drain_into(sub, got, 2)
    assert got == [b"one", b"two"]                 # redelivered, then the rest, in order


def test_memoryview_is_zero_copy_and_released_after_the_handler(A, aeron_client, aeron_stream):
    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    pub.offer(b"abcdef")
    kept = []

    def on(mv):
        assert isinstance(mv, memoryview) and mv.readonly and mv.nbytes == 6 and mv[2] == ord("c")
        kept.append(mv)

    assert sub.poll_wait(on, 10, "backoff", 5) == 1
    with pytest.raises(ValueError, match="released"):
        kept[0][0]


def test_poll_with_header_reports_session_and_position(A, aeron_client, aeron_stream):
    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    pos = pub.offer(b"xyz")
    seen = []
    import time

    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        sub.poll_with_header(lambda mv, sid, p: seen.append((bytes(mv), sid, p)))
    assert seen == [(b"xyz", pub.session_id, pos)]


@pytest.mark.parametrize("kind", ["busy_spin", "yield", "sleep", "backoff"])
def test_poll_wait_times_out_with_each_idle_strategy(A, aeron_client, aeron_stream, kind):
    sub = aeron_client.add_subscription("aeron:ipc", aeron_stream)
    idle = (BackoffIdle(max_spins=10, max_yields=10, min_park_ns=10_000, max_park_ns=100_000)
            if kind == "backoff" else idle_strategy(kind))
    assert idle.name == kind
    import time

    t0 = time.monotonic()
    assert sub.poll_wait(lambda mv: None, 10, idle, 0.05) == 0
    assert 0.04 <= time.monotonic() - t0 < 2
    idle.idle(1)
    idle.reset()


def test_poll_wait_rejects_bad_idle_arguments(A, aeron_client, aeron_stream):
    sub = aeron_client.add_subscription("aeron:ipc", aeron_stream)
    with pytest.raises(ValueError):
        sub.poll_wait(lambda mv: None, 10, "spin-forever", 0.01)
    with pytest.raises(TypeError):
        sub.poll_wait(lambda mv: None, 10, 3, 0.01)


def test_client_close_closes_children(A, aeron_driver, aeron_stream):
    c = A.Client(aeron_driver.aeron_dir)
    pub, sub = pair(c, "aeron:ipc", aeron_stream)
    with c:
        assert c.last_error() == (0, "")
    assert c.closed and pub.is_closed and sub.closed
    assert pub.offer(b"x") == A.PUBLICATION_CLOSED
    with pytest.raises(TransportClosedError):
        sub.poll(lambda mv: None)
    with pytest.raises(TransportClosedError):
        c.add_publication("aeron:ipc", aeron_stream)
    with pytest.raises(TypeError, match=r"use Client\.add_publication\(\)"):
        A.Publication()
    with pytest.raises(TypeError, match=r"use Client\.add_subscription\(\)"):
        A.Subscription()


def test_endpoints_share_wait_connected_and_identity(A, aeron_client, aeron_stream):
    # Publication and Subscription get channel/stream_id/client, is_connected and wait_connected from one base.
    pub = aeron_client.add_publication("aeron:ipc", aeron_stream)
    sub = aeron_client.add_subscription("aeron:ipc", aeron_stream + 1)
    for ep, peer in ((pub, "subscriber"), (sub, "publisher")):
        assert isinstance(ep, A._Endpoint)
        assert (ep.client, ep.channel, ep.stream_id) == (aeron_client, "aeron:ipc", aeron_stream + (ep is sub))
        assert not ep.is_connected
        with pytest.raises(TransportTimeoutError, match=f"no {peer} connected to aeron:ipc stream"):
            ep.wait_connected(0.05)
        ep.close()
        assert not ep.is_connected
        with pytest.raises(TransportClosedError, match=f"Aeron {type(ep).__name__.lower()} is closed"):
            ep.wait_connected(0.05)


def test_connect_without_driver_is_a_clear_error(A, tmp_path):
    with pytest.raises(TransportError, match="media driver"):
        A.Client(str(tmp_path / "no-driver-here"), driver_timeout=0.2)


def test_invalid_channel_is_a_clear_error(A, aeron_client, aeron_stream):
    with pytest.raises(TransportError):
        aeron_client.add_publication("aeron:udp?endpoint=not-a-host-name:x", aeron_stream)



def _frame(subject: bytes, meta: bytes = b"") -> bytes:
    return struct.pack("<HH", len(subject), len(meta)) + subject + meta


def test_poll_frames_decodes_the_in_band_frame_and_counts_hostile_ones(A, aeron_client, aeron_stream):
    import time

    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    pub.offer(b"payload", _frame(b"md.AAPL"))
    pub.offer(b"p2", _frame(b"req.x", b"_INBOX.ab.1"))
    pub.offer(b"", _frame("é.x".encode(), b"_INBOX.ab.2\nk:v\nk2:v:2"))
    for junk in (b"", b"\x01", b"\x00\x00\x00\x00", b"\x09\x00\x00\x00abc", _frame(b"\xff\xfe"),
                 _frame(b"ok", b"\xff")):
        pub.offer(junk)
    pos = pub.offer(b"last", _frame(b"end"))
    seen: list = []
    deadline = time.monotonic() + 5
    while len(seen) < 4 and time.monotonic() < deadline:
        sub.poll_frames(lambda *a: seen.append(a), 64)
    sid = pub.session_id
    assert [a[:4] for a in seen] == [("md.AAPL", None, None, b"payload"), ("req.x", "_INBOX.ab.1", None, b"p2"),
                                     ("é.x", "_INBOX.ab.2", b"k:v\nk2:v:2", b""), ("end", None, None, b"last")]
    assert all(a[4] == sid for a in seen) and seen[-1][5] == pos
    assert sub.frame_errors == 6


def test_poll_frames_none_handler_consumes_and_handler_errors_redeliver(A, aeron_client, aeron_stream):
    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    pub.offer(b"a", _frame(b"s"))
    idle = idle_strategy("busy_spin")
    assert sub.poll_frames_until(None, 10, idle, 1_000_000_000) == 1   # consumed, nothing called
    pub.offer(b"b", _frame(b"s"))

    def boom(*a):
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        while not sub.poll_frames(boom, 10):
            pass
    got: list = []
    assert sub.poll_frames_until(lambda *a: got.append(a[3]), 10, idle, 1_000_000_000) == 1
    assert got == [b"b"]   # not lost: delivered again after the failing poll


def test_poll_frames_until_budget_and_long_parks(A, aeron_client, aeron_stream):
    import time

    pub, sub = pair(aeron_client, "aeron:ipc", aeron_stream)
    other = aeron_client.add_subscription("aeron:ipc", aeron_stream + 1)
    t0 = time.perf_counter()
    assert sub.poll_frames_until(None, 10, idle_strategy("yield"), 20_000_000) == 0   # budget spent: 0
    assert 0.015 < time.perf_counter() - t0 < 2
    idle = BackoffIdle(max_spins=2, max_yields=2, min_park_ns=1_000, max_park_ns=1_000_000)
    r = A.poll_streams(sub, None, other, None, 10, idle, 10_000_000_000, 100_000)
    assert r == -128_000   # parks 1, 2, ... 64 µs inline, then asks the caller to park 128 µs itself
    pub.offer(b"x", _frame(b"s"))
    assert A.poll_streams(sub, lambda *a: None, other, None, 10, idle, 1_000_000_000, 100_000) == 1
