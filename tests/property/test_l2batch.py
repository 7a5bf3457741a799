"""The market-data consumer's batch path against its per-delta reference: the compiled column reader
(lowlat._l2batch.read_l2_updates) against ``decode_l2_update`` frame by frame (well-formed, truncated, mutated
and garbage frames), and ``LocalBook.apply_updates`` against ``apply_update`` one delta at a time for random
streams with gaps, duplicates and stale deltas (same book, same gap, applied up to it); and a consumer on the
embedded transport that resyncs from a served snapshot ends with the reference book."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from _helpers import damaged
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat import _core, _encode
from lowlat._batch import MessageBatch
from lowlat._l2batch import read_l2_updates
from lowlat.errors import DecodeError
from lowlat.services import GapError, LocalBook, MarketDataConsumer
from lowlat.transport import connect

PRICES = [99.0, 99.5, 100.0, 100.5]


def _cols(n: int) -> tuple[np.ndarray, ...]:
    return (np.zeros(n, np.uint64), np.zeros(n, np.int8), np.zeros(n, np.float64), np.zeros(n, np.uint64),
            np.zeros(n, np.uint32))


@st.composite
def frame_st(draw):
    b = _encode.encode_l2_update(draw(st.one_of(st.none(), st.text(max_size=6))), draw(st.integers(0, 2**64 - 1)),
                                 draw(st.integers(-128, 127)), draw(st.floats(allow_nan=False)),
                                 draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**32 - 1)),
                                 draw(st.integers(0, 2**64 - 1)))
    return damaged(draw, b, draw(st.sampled_from(["ok", "ok", "truncated", "mutated", "garbage"])))


@settings(max_examples=200, deadline=None)
@given(st.lists(frame_st(), max_size=30))
def test_column_reader_equals_decode_per_frame(frames):
    want = []
    for f in frames:
        try:
            d = _core.decode_l2_update(f)
        except DecodeError:
            continue
        want.append((d.sequence, d.side, struct.pack("<d", d.price), d.quantity, d.order_count))
    b = MessageBatch(max(1, len(frames)), 1 << 16)
    for f in frames:
        assert b.append(f, "md.X.l2")
    cols = _cols(len(frames))
    k = read_l2_updates(b, *cols)
    got = [(s, sd, struct.pack("<d", p), q, c) for s, sd, p, q, c in zip(*(c[:k].tolist() for c in cols))]
    assert got == want  # prices compared as bits: a mutated frame can hold a NaN
    with pytest.raises(ValueError):
        if frames:
            read_l2_updates(b, *_cols(len(frames) - 1))
        else:
            raise ValueError


delta_st = st.tuples(st.integers(0, 1), st.sampled_from(PRICES), st.integers(0, 5), st.integers(0, 3))


@st.composite
def stream_st(draw):
    """Deltas with sequence numbers in order but with holes, duplicates and stale repeats."""
    out, seq = [], draw(st.integers(0, 3))
    for side, price, qty, cnt in draw(st.lists(delta_st, max_size=60)):
        step = draw(st.sampled_from([1, 1, 1, 1, 0, 2, -1]))
        seq = max(0, seq + step)
        out.append((seq, side, price, qty, cnt))
    return out


@settings(max_examples=300, deadline=None)
@given(stream_st(), st.integers(0, 4), st.booleans())
def test_apply_updates_equals_apply_update_per_delta(stream, snap_seq, synced):
    ref, got = LocalBook("X"), LocalBook("X")
    for b in (ref, got):
        if synced:
            b.apply_snapshot(snap_seq, [(99.0, 1, 1)], [(100.5, 2, 1)])
    applied, gap = 0, None
    for k, d in enumerate(stream):
        try:
            applied += ref.apply_update(*d)
        except GapError as e:
            gap = (e.expected, e.got, k)
            break
    cols = [np.array(c) for c in zip(*stream)] if stream else [[]] * 5
    try:
        n = got.apply_updates(*cols)
        assert gap is None and n == applied
    except GapError as e:
        assert (e.expected, e.got, e.at) == gap
    assert (got.seq, got.synced, got.gaps, got.bids, got.asks) == (ref.seq, ref.synced, ref.gaps, ref.bids,
                                                                    ref.asks)


def test_consumer_batches_resync_on_a_gap_mid_batch_and_skip_malformed_frames():
    """Deltas 1..40 with 13 lost, 20 duplicated and two malformed frames, all pending as one batch: the consumer
    applies 1..12, resyncs from the snapshot the responder serves (at 25), drops the buffered deltas it holds,
    applies 26..40, and ends with the reference book."""

    async def go():
        ref = LocalBook("X")
        ref.apply_snapshot(0, [], [])
        deltas = []
        for s in range(1, 41):
            d = (s, s % 2, PRICES[s % 4], s % 3, 1)
            deltas.append(d)
        snaps: dict[int, bytes] = {}
        for d in deltas:
            ref.apply_update(*d)
            snaps[d[0]] = _core.encode_book_snapshot(
                symbol="X", sequence=d[0], bids=sorted((p, q, c) for p, (q, c) in ref.bids.items()),
                asks=sorted((p, q, c) for p, (q, c) in ref.asks.items()), timestamp=0)
        async with connect("inproc://l2batch-test") as t:
            await t.serve("query.book.X", lambda msg: snaps[25])
            c = MarketDataConsumer(t, "X", batch_max=64)
            # the first snapshot (at 0, empty book) comes before any delta
            first = _core.encode_book_snapshot(symbol="X", sequence=0, bids=[], asks=[], timestamp=0)
            real = snaps[25]
            snaps[25] = first
            await c.start()
            snaps[25] = real
            for s, side, price, qty, cnt in deltas:
                if s == 13:
                    continue
                frame = _encode.encode_l2_update("X", s, side, price, qty, cnt, 0)
                await t.publish("md.X.l2", frame)
                if s in (5, 30):
                    await t.publish("md.X.l2", frame[:10])   # malformed: counted, skipped
                if s == 20:
                    await t.publish("md.X.l2", frame)        # duplicate: dropped
            await c.run(count=39 - 13 + 12, seconds=5)
            assert c.malformed == 2 and c.book.gaps == 1 and c.book.resyncs == 2
            assert (c.book.seq, c.book.bids, c.book.asks) == (40, ref.bids, ref.asks)
            await c.close()

    asyncio.run(go())
