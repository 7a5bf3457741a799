"""Hypothesis: the compiled NATS parser gives the same messages for every split of a valid byte stream."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat._nats_proto import MsgSink, NatsParser

token = st.text(alphabet="abcxyz0189_-", min_size=1, max_size=8)
subject = st.lists(token, min_size=1, max_size=4).map(".".join)
header = st.dictionaries(st.text(alphabet="ABCXYZ-", min_size=1, max_size=6),
                         st.text(alphabet="abc 123", max_size=8), min_size=1, max_size=3)


@st.composite
def frames(draw):
    kind = draw(st.sampled_from(["msg", "hmsg", "ping", "pong", "ok", "info", "err"]))
    if kind in ("msg", "hmsg"):
        subj = draw(subject)
        sid = draw(st.sampled_from([1, 2, 3]))
        reply = draw(st.none() | subject)
        payload = draw(st.binary(max_size=300))
        r = f" {reply}" if reply else ""
        if kind == "msg":
            raw = f"MSG {subj} {sid}{r} {len(payload)}\r\n".encode() + payload + b"\r\n"
            return raw, (sid, (subj, payload, reply, None))
        hdr = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in draw(header).items()) + "\r\n").encode()
        raw = (f"HMSG {subj} {sid}{r} {len(hdr)} {len(hdr) + len(payload)}\r\n".encode() + hdr + payload
               + b"\r\n")
        return raw, (sid, (subj, payload, reply, hdr))
    line = {"ping": b"PING\r\n", "pong": b"PONG\r\n", "ok": b"+OK\r\n", "info": b'INFO {"a":1}\r\n',
            "err": b"-ERR 'Slow Consumer'\r\n"}[kind]
    return line, (kind, None)


def run(chunks):
    p = NatsParser(max_payload=4096, buffer_bytes=1024)
    sinks = {sid: MsgSink(sid) for sid in (1, 2, 3)}
    for s in sinks.values():
        p.add_sink(s)
    for c in chunks:
        # alternate the two read paths: get_buffer/buffer_updated (the event loop's) and feed
        if len(c) % 2:
            p.feed(c)
        else:
            v = p.get_buffer()
            while len(c) > len(v):
                v[:] = c[:len(v)]
                n = len(v)
                c = c[n:]
                p.buffer_updated(n)
                v = p.get_buffer()
            v[:len(c)] = c
            p.buffer_updated(len(c))
    got = {}
    for sid, s in sinks.items():
        out = []
        while (m := s.pop()) is not None:
            out.append(m)
        got[sid] = out
    return got, (p.pings, p.pongs, p.oks, len(p.events)), p.buffered


@settings(max_examples=300, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=30), st.data())
def test_every_split_gives_the_same_messages(fs, data):
    stream = b"".join(raw for raw, _ in fs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    want = {sid: [m for raw, (k, m) in fs if k == sid] for sid in (1, 2, 3)}
    counts = tuple(sum(1 for _, (k, _) in fs if k == name) for name in ("ping", "pong", "ok"))
    counts += (sum(1 for _, (k, _) in fs if k in ("info", "err")),)
    whole = run([stream])
    split = run(chunks)
    assert whole == split
    assert split[0] == want and split[1] == counts and split[2] == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=20))
def test_random_bytes_never_crash(junk, sizes):
    # arbitrary input: parsed frames or a DecodeError, nothing else, and the buffer stays bounded
    from lowlat.errors import DecodeError

    p = NatsParser(max_payload=4096, buffer_bytes=1024)
    p.add_sink(MsgSink(1))
    off = 0
    try:
        for n in sizes or [len(junk)]:
            p.feed(junk[off:off + n])
            off += n
        p.feed(junk[off:])
    except DecodeError:
        pass
    assert p.capacity <= 4096 + 65536 + 64 + 16384
