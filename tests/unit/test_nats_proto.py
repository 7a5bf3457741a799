"""lowlat._nats_proto: the compiled core-NATS parser, sinks and writer, without a server (pure codec tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lowlat._nats_proto import MsgSink, NatsParser, NatsWriter
from lowlat.errors import DecodeError, MaxPayloadError

ROOT = Path(__file__).resolve().parents[2]
HDR = b"NATS/1.0\r\nX-Trace: abc\r\n\r\n"


def parser_with(*sids: int, **kw) -> tuple[NatsParser, dict[int, MsgSink]]:
    p = NatsParser(**kw)
    sinks = {sid: MsgSink(sid) for sid in sids}
    for s in sinks.values():
        p.add_sink(s)
    return p, sinks


def drain(sink: MsgSink) -> list[tuple]:
    out = []
    while (m := sink.pop()) is not None:
        out.append(m)
    return out


def test_every_server_verb_is_parsed():
    p, s = parser_with(1, 2)
    data = (b'INFO {"server_id":"x","max_payload":1048576}\r\n' b"PING\r\n" b"MSG a.b 1 5\r\nhello\r\n"
            b"MSG a.c 2 _INBOX.r.1 2\r\nhi\r\n" + b"HMSG h.x 1 %d %d\r\n" % (len(HDR), len(HDR) + 2) + HDR
            + b"zz\r\n" b"PONG\r\n+OK\r\n-ERR 'Slow Consumer'\r\nmsg lower 1 1\r\nx\r\n")
    assert p.feed(data) == 9
    assert p.events == [("INFO", b'{"server_id":"x","max_payload":1048576}'), ("-ERR", "Slow Consumer")]
    assert (p.pings, p.pongs, p.oks, p.msgs) == (1, 1, 1, 4)
    assert drain(s[1]) == [("a.b", b"hello", None, None), ("h.x", b"zz", None, HDR), ("lower", b"x", None, None)]
    assert drain(s[2]) == [("a.c", b"hi", "_INBOX.r.1", None)]
    assert {x.sid for x in p.ready} == {1, 2}


def test_messages_for_unknown_sids_are_counted_not_delivered():
    p, s = parser_with(1)
    p.feed(b"MSG a 7 1\r\nx\r\nMSG a 1 1\r\ny\r\n")
    assert p.unknown_sid == 1 and drain(s[1]) == [("a", b"y", None, None)]


def test_take_batch_hands_over_a_chunk_and_keeps_the_lifetime_rule():
    p, sinks = parser_with(1)
    s = sinks[1]
    for i in range(10):
        p.feed(b"MSG t.%d 1 r.%d 3\r\n%03d\r\n" % (i, i, i))
    b = s.take_batch(100)
    assert b.n == 10 and s.pending == 0 and s.pending_bytes == 0
    assert [(b.subject(i), bytes(b.payload(i)), b.reply(i)) for i in range(10)] == [
        (f"t.{i}", b"%03d" % i, f"r.{i}") for i in range(10)]
    assert s.take_batch(100).n == 0


def test_take_batch_respects_max_msgs_and_mixes_with_pop():
    p, sinks = parser_with(1)
    s = sinks[1]
    for i in range(10):
        p.feed(b"MSG t 1 1\r\n%d\r\n" % i)
    assert s.pop()[1] == b"0"
    b = s.take_batch(4)
    assert [bytes(b.payload(i)) for i in range(b.n)] == [b"1", b"2", b"3", b"4"]
    b = s.take_batch(100)
    assert [bytes(b.payload(i)) for i in range(b.n)] == [b"%d" % i for i in range(5, 10)]
    assert s.pending == 0


def test_batch_headers_are_available_per_slot():
    p, sinks = parser_with(1)
    s = sinks[1]
    p.feed(b"MSG a 1 1\r\nx\r\n" + b"HMSG a 1 %d %d\r\n" % (len(HDR), len(HDR) + 1) + HDR + b"y\r\n")
    b = s.take_batch()
    assert b.n == 2 and s.batch_header(0) is None and s.batch_header(1) == HDR


def test_pending_limits_drop_and_count_the_newest():
    p = NatsParser()
    s = MsgSink(1, max_pending=3, max_pending_bytes=1000)
    p.add_sink(s)
    p.feed(b"".join(b"MSG a 1 1\r\n%d\r\n" % (i % 10) for i in range(10)))
    assert (s.pending, s.dropped, s.slow) == (3, 7, True)
    assert [m[1] for m in drain(s)] == [b"0", b"1", b"2"]
    s2 = MsgSink(2, max_pending=100, max_pending_bytes=10)
    p.add_sink(s2)
    p.feed(b"MSG a 2 6\r\n123456\r\nMSG a 2 6\r\n123456\r\n")
    assert (s2.pending, s2.dropped) == (1, 1)


def test_closed_sink_drops_silently_and_clear_discards():
    p, sinks = parser_with(1)
    s = sinks[1]
    p.feed(b"MSG a 1 1\r\nx\r\n")
    s.clear()
    assert s.pending == 0 and s.pop() is None
    s.closed = True
    p.feed(b"MSG a 1 1\r\nx\r\n")
    assert s.pending == 0 and s.dropped == 0


def test_large_message_gets_its_own_chunk_and_the_buffer_shrinks_back():
    p, s = parser_with(1, max_payload=4 << 20, buffer_bytes=64 << 10)
    big = os.urandom(3 << 20)
    p.feed(b"MSG big 1 %d\r\n" % len(big) + big + b"\r\nMSG small 1 1\r\nx\r\n")
    got = drain(s[1])
    assert got[0][1] == big and got[1][1] == b"x"
    p.feed(b"PING\r\n")
    p.get_buffer()
    assert p.capacity == 64 << 10


def test_get_buffer_and_buffer_updated_are_the_read_path():
    p, s = parser_with(1)
    frame = b"MSG a 1 5\r\nhello\r\n"
    for i in range(0, len(frame), 3):
        v = p.get_buffer()
        piece = frame[i:i + 3]
        v[:len(piece)] = piece
        p.buffer_updated(len(piece))
    assert drain(s[1]) == [("a", b"hello", None, None)]
    with pytest.raises(Exception, match="outside"):
        p.buffer_updated(1 << 30)


@pytest.mark.parametrize("bad, why", [
    (b"FOO bar\r\n", "unknown"),
    (b"MSG\r\n", "malformed"),
    (b"MSG a 1\r\n", "argument count"),
    (b"MSG a 1 b c d e f\r\n", "too many"),
    (b"MSG a x 1\r\n", "not a decimal"),
    (b"MSG a 1 -5\r\n", "not a decimal"),
    (b"MSG a 1 99999999999\r\n", "digits"),
    (b"MSG a 1 2000000\r\n", "exceeds max_payload"),
    (b"MSG a 1 3\r\nabcXY", "CRLF"),
    (b"HMSG a 1 10 5\r\n", "header size"),
    (b"HMSG a 1 12 14\r\nXXXX/1.0\r\n\r\nab\r\n", "NATS/"),
    (b"I" * 70000, "longer than"),
    (b"\r\n", "unknown"),
])
def test_hostile_bytes_raise_decode_error(bad, why):
    p, _ = parser_with(1)
    with pytest.raises(DecodeError, match=why):
        p.feed(bad)


def test_hostile_size_never_grows_the_buffer_past_the_bound():
    p, _ = parser_with(1, max_payload=1 << 20)
    # a legal-looking size just under max_payload, then a trickle: the buffer grows to one frame, no more
    p.feed(b"MSG a 1 1048000\r\n")
    for _ in range(64):
        p.feed(b"x" * 4096)
    assert p.capacity <= (1 << 20) + 64 * 1024 + 64 + 16 * 1024
    assert p.buffered < (1 << 20) + 100


def test_ping_flood_is_counted_in_bounded_memory():
    p, _ = parser_with()
    for _ in range(50):
        p.feed(b"PING\r\n" * 10000)
    assert p.pings == 500000 and p.capacity == 256 * 1024


def test_writer_formats_every_command():
    w = NatsWriter(max_payload=100)
    w.pub("a.b", b"hi")
    w.pub(b"a.b", memoryview(b"abcd")[1:3], reply="_INBOX.1")
    w.pub("a.h", b"p", hdr=HDR)
    w.sub("a.*", 7)
    w.sub("a.>", 8, queue="workers")
    w.unsub(7)
    w.unsub(8, 5)
    w.ping()
    w.pong()
    w.raw(b'CONNECT {"verbose":false}\r\n')
    assert w.take() == (b"PUB a.b 2\r\nhi\r\nPUB a.b _INBOX.1 2\r\nbc\r\n"
                        + b"HPUB a.h %d %d\r\n" % (len(HDR), len(HDR) + 1) + HDR + b"p\r\n"
                        b"SUB a.* 7\r\nSUB a.> workers 8\r\nUNSUB 7\r\nUNSUB 8 5\r\nPING\r\nPONG\r\n"
                        b'CONNECT {"verbose":false}\r\n')
    assert w.pending == 0 and w.take() == b""


def test_writer_refuses_before_writing():
    w = NatsWriter(max_payload=10)
    with pytest.raises(MaxPayloadError, match="max_payload"):
        w.pub("a", b"x" * 11)
    with pytest.raises(MaxPayloadError):
        w.pub("a", b"x" * 5, hdr=b"NATS/1.0\r\n\r\n")
    for bad in ("", "a b", "a\r\nPUB x 1", "a\tb"):
        with pytest.raises(ValueError):
            w.pub(bad, b"x")
    with pytest.raises(ValueError):
        w.pub("ok", b"x", reply="bad reply")
    with pytest.raises(TypeError):
        w.pub(5, b"x")
    assert w.pending == 0


def test_writer_output_parses_back():
    # what the writer emits for PUB/HPUB is what the server turns into MSG/HMSG: check the framing round trip
    w = NatsWriter(max_payload=1 << 20)
    payloads = [os.urandom(n) for n in (0, 1, 100, 5000)]
    for i, pl in enumerate(payloads):
        w.pub(f"s.{i}", pl, reply=f"r.{i}", hdr=HDR if i % 2 else None)
    out = _as_server_frames(w.take(), sid=9)
    p, s = parser_with(9)
    p.feed(out)
    assert drain(s[9]) == [(f"s.{i}", pl, f"r.{i}", HDR if i % 2 else None) for i, pl in enumerate(payloads)]


def _as_server_frames(data: bytes, sid: int) -> bytes:
    # what a server does with PUB/HPUB: "PUB subj reply size" -> "MSG subj sid reply size", body unchanged
    out, i = [], 0
    while i < len(data):
        nl = data.index(b"\r\n", i)
        verb, *args = data[i:nl].split(b" ")
        size = int(args[-1])
        head = [b"MSG" if verb == b"PUB" else b"HMSG", args[0], b"%d" % sid, *args[1:]]
        out.append(b" ".join(head) + b"\r\n" + data[nl + 2:nl + 2 + size + 2])
        i = nl + 2 + size + 2
    return b"".join(out)


def test_pub_batch_to_subject_and_to_reply_subjects():
    from lowlat._batch import MessageBatch

    b = MessageBatch(8, 1024)
    b.append(b"one", "x", "r.1")
    b.append(b"two", "x", None)
    b.append(b"three", "x", "bad reply")
    b.append(b"x" * 50, "x", "r.4")
    w = NatsWriter(max_payload=20)
    assert w.pub_batch(b, "out") == (3, 1)
    assert w.take() == b"PUB out 3\r\none\r\nPUB out 3\r\ntwo\r\nPUB out 5\r\nthree\r\n"
    assert w.pub_batch(b) == (1, 2)
    assert w.take() == b"PUB r.1 3\r\none\r\n"


def test_pub_many_is_pub_in_a_loop():
    w = NatsWriter(max_payload=8)
    assert w.pub_many("out", (b"one", memoryview(b"two"), bytearray(b"33"))) == 3
    assert w.take() == b"PUB out 3\r\none\r\nPUB out 3\r\ntwo\r\nPUB out 2\r\n33\r\n"
    assert w.pub_many("out", iter([b"a"])) == 1          # any iterable
    assert w.take() == b"PUB out 1\r\na\r\n"
    with pytest.raises(MaxPayloadError):
        w.pub_many("out", [b"ok", b"x" * 9, b"never"])
    assert w.take() == b"PUB out 2\r\nok\r\n"         # the ones before the refused payload stay queued
    with pytest.raises(ValueError):
        w.pub_many("bad subject", [b"a"])
    with pytest.raises(TypeError):
        w.pub_many("out", [b"a", 7])
    assert w.take() == b"PUB out 1\r\na\r\n"


def test_stub_matches_module():
    pytest.importorskip("mypy")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "lowlat._nats_proto", "--allowlist",
                        str(ROOT / "tests" / "stubtest-allowlist-nats.txt"), "--ignore-unused-allowlist"],
                       check=False, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
