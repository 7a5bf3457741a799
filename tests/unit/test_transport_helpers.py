"""Transport pure helpers, no network: URL schemes, missing extras, subjects, zmq codec, pending limits."""

from __future__ import annotations

import asyncio
import builtins
import importlib
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowlat.transport as lt
from lowlat.errors import MissingExtraError
from lowlat.transport.base import (
    Message,
    QueueSubscription,
    decode_meta,
    encode_meta,
    subject_matches,
    validate_subject,
)

# --- schemes ---

@pytest.mark.parametrize("url,scheme", [
    ("inproc://md", "inproc"), ("shm://md", "shm"), ("zmq+tcp://127.0.0.1:5555", "zmq+tcp"),
    ("zmq+ipc:///tmp/x", "zmq+ipc"), ("NATS://127.0.0.1:4222", "nats"), ("tls://h:1", "tls"),
    ("kafka://127.0.0.1:9092", "kafka"), ("aeron:udp?endpoint=127.0.0.1:40123", "aeron"), ("aeron:ipc", "aeron"),
])
def test_scheme_of(url, scheme):
    assert lt.scheme_of(url) == scheme


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(ValueError, match="unknown transport scheme 'mqtt'.*inproc"):
        lt.connect("mqtt://127.0.0.1:1883")


def test_url_without_scheme_is_rejected():
    with pytest.raises(ValueError, match="scheme://"):
        lt.connect("127.0.0.1:4222")


def test_inproc_url_needs_a_name():
    with pytest.raises(ValueError, match="bus name"):
        lt.connect("inproc://")


@pytest.mark.parametrize("url,client,extra", [("nats+py://127.0.0.1:4222", "nats", "nats"),
                                              ("zmq+tcp://127.0.0.1:5555", "zmq", "zmq")])
def test_missing_client_names_the_extra(monkeypatch, url, client, extra):
    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == client or name.startswith(client + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **kw)

    mod = {"nats": "lowlat.transport.nats", "zmq": "lowlat.transport.zmq"}[client]
    monkeypatch.delitem(sys.modules, mod, raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingExtraError, match=rf"pip install 'lowlat\[{extra}\]'") as ei:
        lt.connect(url)
    assert isinstance(ei.value, ImportError)
    monkeypatch.setattr(builtins, "__import__", real_import)
    importlib.import_module(mod)  # restore for later tests


def test_nats_urls_need_no_nats_py(monkeypatch):
    # nats:// and tls:// are the compiled client: core NATS works without nats-py (only JetStream needs it)
    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "nats" or name.startswith("nats."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **kw)

    monkeypatch.delitem(sys.modules, "lowlat.transport.nats", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    from lowlat.transport.natscore import NatsCoreTransport

    for url in ("nats://127.0.0.1:4222", "tls://127.0.0.1:4222"):
        assert isinstance(lt.connect(url), NatsCoreTransport)
    with pytest.raises(MissingExtraError):
        lt.connect("nats://127.0.0.1:4222", client="nats-py")
    monkeypatch.setattr(builtins, "__import__", real_import)
    importlib.import_module("lowlat.transport.nats")  # restore for later tests


def test_connect_returns_unconnected_transport_with_options():
    t = lt.connect("inproc://opts", max_pending=5)
    assert t.closed and t.options == {"max_pending": 5} and t.url == "inproc://opts"


# --- subjects ---

@pytest.mark.parametrize("pattern,subject,ok", [
    ("a.b", "a.b", True), ("a.*", "a.b", True), ("a.*", "a.b.c", False), ("a.>", "a.b.c", True),
    ("a.>", "a", False), ("*.b", "a.b", True), ("*", "a", True), (">", "a.b", True), ("a.*.c", "a.x.c", True),
    ("a.*.c", "a.x.d", False), ("a.b", "a.bc", False), ("a.b.c", "a.b", False),
])
def test_subject_matches_table(pattern, subject, ok):
    assert subject_matches(pattern, subject) is ok


def _ref_match(p: list[str], s: list[str]) -> bool:
    # obviously-correct recursive reference
    if not p:
        return not s
    if p[0] == ">":
        return len(s) >= 1
    if not s:
        return False
    return (p[0] == "*" or p[0] == s[0]) and _ref_match(p[1:], s[1:])


tok = st.sampled_from(["a", "b", "c"])
pat_tok = st.sampled_from(["a", "b", "c", "*"])


@given(st.lists(pat_tok, min_size=1, max_size=4), st.booleans(), st.lists(tok, min_size=1, max_size=5))
def test_subject_matches_equals_reference(ptoks, gt, stoks):
    p = ptoks + [">"] if gt else ptoks
    assert subject_matches(".".join(p), ".".join(stoks)) == _ref_match(p, stoks)


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a.", "a b", "a.>.b", "a.b*", "a\t.b"])
def test_invalid_subjects_rejected(bad):
    with pytest.raises(ValueError):
        validate_subject(bad, wildcards=True)


def test_wildcards_not_allowed_when_publishing():
    assert validate_subject("a.*", wildcards=True) == "a.*"
    with pytest.raises(ValueError, match="only allowed in subscriptions"):
        validate_subject("a.*")


# --- zmq codec: the meta frame codec is pure (base.py, no pyzmq); endpoints/prefix live in the adapter ---

class TestMetaCodec:
    @given(st.one_of(st.none(), st.text(alphabet="abc._-0", min_size=1, max_size=8)),
           st.one_of(st.none(), st.dictionaries(st.text(alphabet="abcXY-", min_size=1, max_size=5),
                                                st.text(alphabet="ab: =v", max_size=6), max_size=3)))
    def test_meta_roundtrip(self, reply, headers):
        meta = encode_meta(reply, headers)
        r, h = decode_meta(meta)
        assert r == (reply or None)
        assert (h or None) == (headers or None)

    @pytest.mark.parametrize("headers", [{"a\nb": "1"}, {"a": "1\n2"}, {"a:b": "1"}, {"": "x"}])
    def test_meta_rejects_bad_headers(self, headers):
        with pytest.raises(ValueError):
            encode_meta(None, headers)

    @given(st.binary(max_size=64))
    def test_decode_meta_hostile_bytes_raise_valueerror_or_decode(self, raw):
        try:
            decode_meta(raw)
        except ValueError:
            pass


class TestZmqAddressing:
    def test_endpoints(self):
        from lowlat.transport.zmq import zmq_endpoints
        assert zmq_endpoints("zmq+tcp://127.0.0.1:5555") == ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")
        assert zmq_endpoints("zmq+tcp://127.0.0.1:5555", rr_port=7000)[1] == "tcp://127.0.0.1:7000"
        assert zmq_endpoints("zmq+ipc:///tmp/s") == ("ipc:///tmp/s", "ipc:///tmp/s.rr")
        assert zmq_endpoints("zmq+inproc://bus") == ("inproc://bus", "inproc://bus.rr")
        for bad in ("zmq+tcp://127.0.0.1", "zmq+udp://x:1", "zmq+tcp://", "tcp://x:1"):
            with pytest.raises(ValueError):
                zmq_endpoints(bad)

    def test_prefix(self):
        from lowlat.transport.zmq import zmq_prefix
        assert zmq_prefix("md.aapl") == b"md.aapl"
        assert zmq_prefix("md.*.px") == b"md."
        assert zmq_prefix("md.>") == b"md."
        assert zmq_prefix(">") == b""


# --- QueueSubscription limits (pure, in an event loop) ---

async def test_queue_subscription_drops_and_reports_past_limits():
    seen = []
    sub = QueueSubscription("s", max_pending=3, max_pending_bytes=10, on_slow_consumer=seen.append)
    assert [sub._deliver(Message("s", b"1234")) for _ in range(4)] == [True, True, False, False]
    assert sub.pending == 2 and sub.pending_bytes == 8 and sub.dropped == 2 and len(seen) == 2
    assert bytes((await sub.__anext__()).data) == b"1234"
    assert sub._deliver(Message("s", b"12"))
    assert sub.pending == 2 and sub.pending_bytes == 6
    await sub.drain()
    assert [bytes(m.data) async for m in sub] == [b"1234", b"12"]


async def test_queue_subscription_unsubscribe_discards_and_wakes_reader():
    sub = QueueSubscription("s")
    reader = asyncio.ensure_future(sub.__anext__())
    await asyncio.sleep(0)
    await sub.unsubscribe()
    with pytest.raises(StopAsyncIteration):
        await reader
    assert not sub._deliver(Message("s", b"x"))


def test_queue_subscription_rejects_bad_limits():
    with pytest.raises(ValueError):
        asyncio.run(_mk(max_pending=0))


async def _mk(**kw):
    return QueueSubscription("s", **kw)
