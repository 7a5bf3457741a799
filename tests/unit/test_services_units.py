"""Unit tests of the services' pure parts and of services run in-process on the embedded transport."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat import _core
from lowlat.enums import Reject
from lowlat.services import (
    GapError,
    LatencyHistogram,
    LocalBook,
    Metrics,
    RateLimiter,
    ServiceConfig,
    _wire,
    load_config,
)
from lowlat.services.metrics import register, start_metrics_server, stop_metrics_servers, unregister


# ------------------------------------------------------------------ config
def test_config_precedence_flags_over_env_over_file(tmp_path):
    f = tmp_path / "lowlat.toml"
    f.write_text('transport = "nats://127.0.0.1:1"\nbatch_max = 7\nsymbols = ["X"]\n'
                 '[validator]\nqueue = "vq"\nbatch_max = 9\n')
    env = {"LOWLAT_BATCH_MAX": "11", "LOWLAT_PUBLISH_RESULTS": "yes"}
    c = load_config("validator", path=str(f), env=env, overrides={"transport": "inproc://x", "queue": None})
    assert c.transport == "inproc://x"      # flag
    assert c.batch_max == 11                # env over file
    assert c.queue == "vq"                  # per-service table
    assert c.symbols == ("X",) and c.publish_results is True
    assert load_config("matcher", path=str(f), env={}).batch_max == 7


def test_command_defaults_are_the_lowest_precedence():
    c = load_config("demo", env={"LOWLAT_LOG_LEVEL": "DEBUG"}, defaults={"log_level": "ERROR", "rate": 5000.0})
    assert c.log_level == "DEBUG" and c.rate == 5000.0
    assert load_config(env={}, overrides={"rate": 7.0}, defaults={"rate": 5000.0}).rate == 7.0


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("batchmax = 3\n")
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(path=str(f), env={})
    with pytest.raises(ValueError, match="batch_max"):
        load_config(env={"LOWLAT_BATCH_MAX": "many"})
    with pytest.raises(ValueError, match="publish_results"):
        load_config(env={"LOWLAT_PUBLISH_RESULTS": "maybe"})
    with pytest.raises(ValueError, match="queue"):
        load_config(env={"LOWLAT_QUEUE": "a b"})


def test_empty_queue_means_no_queue_group():
    from lowlat.services import ValidatorService

    cfg = load_config(env={"LOWLAT_QUEUE": ""})
    assert cfg.queue == ""
    assert ValidatorService(cfg).subjects() == [(cfg.orders_subject, None)]


# ------------------------------------------------------------------ local book (gap detection)
class RefBook:
    """Obviously-correct model: apply every delta in sequence order, no gaps allowed."""

    def __init__(self) -> None:
        self.levels: dict[tuple[int, float], int] = {}

    def apply(self, side: int, price: float, qty: int) -> None:
        if qty:
            self.levels[(side, price)] = qty
        else:
            self.levels.pop((side, price), None)


deltas = st.lists(st.tuples(st.integers(0, 1), st.sampled_from([99.0, 99.5, 100.0, 100.5]), st.integers(0, 5)),
                  max_size=60)


@given(deltas, st.sets(st.integers(1, 60), max_size=5), st.integers(0, 60))
@settings(max_examples=150, deadline=None)
def test_local_book_detects_every_gap_and_resync_converges(ds, lost, snap_at):
    ref, book = RefBook(), LocalBook("X")
    snap_at = min(snap_at, len(ds))
    for side, price, qty in ds[:snap_at]:
        ref.apply(side, price, qty)
    # snapshot at sequence snap_at from the reference, then deltas snap_at+1.. with some lost
    bids = [(p, q, 1) for (s, p), q in ref.levels.items() if s == 0]
    asks = [(p, q, 1) for (s, p), q in ref.levels.items() if s == 1]
    book.apply_snapshot(snap_at, bids, asks)
    assert book.apply_update(snap_at, 0, 1.0, 1, 1) is False or snap_at == 0  # stale delta ignored
    gap_seen = False
    for seq, (side, price, qty) in enumerate(ds, start=1):
        if seq <= snap_at:
            continue
        ref.apply(side, price, qty)
        if seq in lost:
            continue
        try:
            book.apply_update(seq, side, price, qty, 1)
        except GapError as e:
            gap_seen = True
            assert e.got == seq and e.expected < seq
            # resync: a fresh snapshot at this sequence from the reference
            book.apply_snapshot(seq, [(p, q, 1) for (s, p), q in ref.levels.items() if s == 0],
                                [(p, q, 1) for (s, p), q in ref.levels.items() if s == 1])
    n = len(ds)
    arrived = [q for q in range(snap_at + 1, n + 1) if q not in lost]
    expect_gap = any(snap_at < s_ and any(q > s_ for q in arrived) for s_ in lost)
    assert gap_seen == expect_gap
    if not (n in lost and n > snap_at):  # the last delta arrived: the local book equals the reference
        assert {(0, p): q for p, (q, _c) in book.bids.items()} | {(1, p): q for p, (q, _c) in book.asks.items()} \
            == ref.levels


def test_local_book_unsynced_raises_until_snapshot():
    b = LocalBook("X")
    with pytest.raises(GapError):
        b.apply_update(1, 0, 1.0, 1, 1)
    b.apply_snapshot(3, [(1.0, 2, 1)], [])
    assert b.apply_update(4, 0, 1.0, 0, 0) and b.bids == {}


# ------------------------------------------------------------------ template encoders vs _core
u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)
f64 = st.floats(allow_nan=False)
sym = st.text(min_size=0, max_size=12)


@given(u64, st.booleans(), u8, u64, st.one_of(st.none(), sym))
@settings(max_examples=200, deadline=None)
def test_stamped_validation_result_equals_core_encoding(oid, acc, reason, ts, s):
    b = _wire._stamper("ValidationResult", s)(oid, acc, reason, ts)
    assert _core.decode_validation_result(b) == _core.decode_validation_result(
        _core.encode_validation_result(oid, acc, reason, ts, s))
    assert _wire.result_fields(b) == (oid, acc, reason)


@given(u64, sym, u64, st.integers(-128, 127), u8, u8, u64, u64, u64, st.booleans(), f64, u32, u32, u32, u64)
@settings(max_examples=200, deadline=None)
def test_stamped_execution_report_equals_core_encoding(oid, s, acct, side, status, reason, tid, mk, tk, im, px, lq,
                                                       lv, cq, ts):
    kw = dict(order_id=oid, symbol=s, account=acct, side=side, status=status, reason=reason, trade_id=tid,
              maker_order_id=mk, taker_order_id=tk, is_maker=im, last_price=px, last_quantity=lq,
              leaves_quantity=lv, cum_quantity=cq, timestamp=ts)
    assert _core.decode_execution_report(_wire.encode_exec(**kw)) == _core.decode_execution_report(
        _core.encode_execution_report(**kw))


@given(sym, u64, st.integers(-128, 127), f64, u64, u32, u64)
@settings(max_examples=100, deadline=None)
def test_stamped_l2_update_round_trips(s, seq, side, px, qty, cnt, ts):
    d = _core.decode_l2_update(_wire.encode_l2(s, seq, side, px, qty, cnt, ts))
    assert (d.symbol, d.sequence, d.side, d.quantity, d.order_count, d.timestamp) == (s, seq, side, qty, cnt, ts)
    assert d.price == px
    assert _wire.decode_l2(_wire.encode_l2(s, seq, side, px, qty, cnt, ts))[0] == seq


def test_encode_results_marks_malformed_without_trusting_it():
    good = _core.encode_order(7, "AAPL", 100.0, 5, 0, 1)
    codes = np.array([0, Reject.MALFORMED], dtype=np.uint8)
    out = _wire.encode_results([good, b"\x01\x02"], codes.tolist(), 5)
    assert _core.decode_validation_result(out[0])[:3] == (7, True, 0)
    r = _core.decode_validation_result(out[1])
    assert (r.order_id, r.accepted, r.reason, r.symbol) == (0, False, Reject.MALFORMED, None)


# ------------------------------------------------------------------ metrics
def test_latency_histogram_percentiles_match_numpy():
    rng = np.random.default_rng(7)
    v = rng.lognormal(9, 1.2, 50_000).astype(np.int64) + 1
    h = LatencyHistogram()
    h.record_array(v)
    s = h.summary()
    assert s["count"] == v.size
    for q in (50, 90, 99, 99.9):
        exact = np.percentile(v, q, method="inverted_cdf")
        assert abs(s[f"p{q:g}"] - exact) <= 0.002 * exact + 1, (q, s, exact)
    assert abs(s["max"] - v.max()) <= 0.002 * v.max()
    h2 = LatencyHistogram()
    for x in v[:2000].tolist():
        h2.record(x)
    assert h2.count == 2000


def test_metrics_rejects_by_reason_and_prometheus_endpoint():
    m = Metrics(f"unit-{uuid.uuid4().hex[:6]}")
    m.inc("in", 10)
    m.count_rejects(np.array([0, 3, 3, 6, 0], dtype=np.uint8))
    m.record("validate", 120, 10)
    m.observe_pending(5, 100, 0)
    assert m.rejects_by_reason() == {"UNKNOWN_SYMBOL": 2, "BAD_QUANTITY": 1}
    register(m)
    try:
        port = start_metrics_server(0)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        unregister(m)
        stop_metrics_servers()
    assert f'lowlat_messages_total{{kind="in",service="{m.service}"}} 10.0' in body
    assert f'lowlat_rejects_total{{reason="UNKNOWN_SYMBOL",service="{m.service}"}} 2.0' in body
    assert f'lowlat_pending{{service="{m.service}"}} 5.0' in body
    assert 'lowlat_latency_seconds{quantile="0.5",service="' in body


async def test_rate_limiter_holds_the_average_rate():
    rl = RateLimiter(2000, burst=10)
    t0 = time.monotonic()
    for _ in range(100):
        await rl.acquire(4)  # 400 messages at 2000/s -> ~0.2 s minus the burst
    dt = time.monotonic() - t0
    assert 0.17 <= dt < 1.0
    assert await RateLimiter(0).acquire(10**6) == 0.0


# ------------------------------------------------------------------ services in-process (inproc://)
async def test_validator_service_batches_and_answers_each_request_once():
    from lowlat.services import LoadGenerator, ValidatorService
    from lowlat.transport import connect

    url = f"inproc://unit-{uuid.uuid4().hex[:8]}"
    cfg = ServiceConfig(transport=url, rate=20_000, count=3000, reject_ratio=0.2, batch_max=256)
    async with connect(url) as t:
        v = ValidatorService(cfg)
        await v.start(t)
        res = await LoadGenerator(t, cfg).run()
        await v.stop()
    assert res.answered == 3000 and res.duplicates == 0 and res.errors == 0
    c = v.metrics.counts
    assert c["in"] == 3000 and c["replies"] == 3000 and c["accepted"] + c["rejected"] == 3000
    assert c["rejected"] == sum(res.rejects.values()) == sum(v.metrics.rejects.values())
    assert c["batches"] < 3000  # batched under load, not one task per message
    assert v.metrics.stage("validate").count == 3000


async def test_validator_service_rejects_garbage_without_dying():
    from lowlat.services import ValidatorService
    from lowlat.transport import connect

    url = f"inproc://unit-{uuid.uuid4().hex[:8]}"
    async with connect(url) as t:
        v = ValidatorService(ServiceConfig(transport=url))
        await v.start(t)
        for junk in (b"", b"\xff" * 3, b"\x10\x00\x00\x00" + b"\x00" * 4, bytes(range(256))):
            r = _core.decode_validation_result((await t.request("orders.in", junk, timeout=2)).data)
            assert (r.accepted, r.reason) == (False, Reject.MALFORMED)
        ok = _core.encode_order(1, "AAPL", 100.0, 1, 0, 1)
        assert _core.decode_validation_result((await t.request("orders.in", ok, timeout=2)).data).accepted
        await v.stop()


async def test_pipeline_forward_to_matcher_and_rate_limit():
    from lowlat.services import LoadGenerator, MatcherService, ValidatorService
    from lowlat.transport import connect

    url = f"inproc://unit-{uuid.uuid4().hex[:8]}"
    cfg = ServiceConfig(transport=url, rate=10_000, count=3000, mode="pipeline", forward=True, reject_ratio=0.1,
                        symbols=("AAPL", "MSFT"), rate_limit=4000)
    async with connect(url) as t:
        mt, v = MatcherService(cfg, max_orders=5000), ValidatorService(cfg)
        await mt.start(t)
        await v.start(t)
        res = await LoadGenerator(t, cfg).run()
        await asyncio.sleep(0.2)
        await v.stop()
        await mt.stop()
    assert res.answered == 3000
    assert mt.metrics.counts["in"] == v.metrics.counts["forwarded"] == res.accepted
    assert mt.metrics.counts["exec_reports"] >= res.accepted
    # 10000/s offered, 4000/s allowed (burst 400): intake waited and the run took >= (3000 - 400) / 4000 s
    assert v.metrics.throttled > 0 and res.elapsed_s >= 0.6


async def test_pipelined_frames_send_what_the_per_order_encoder_builds():
    # inproc copies published batches, so the pipelined generator encodes into its reused frame buffer: every
    # order must arrive as OrderFactory.order would have built it (same fields, its intended send time)
    from lowlat.services import LoadGenerator
    from lowlat.services.loadgen import OrderFactory
    from lowlat.transport import connect

    url = f"inproc://unit-{uuid.uuid4().hex[:8]}"
    cfg = ServiceConfig(transport=url, rate=200_000, count=2500, mode="pipeline", reject_ratio=0.1, payload=7,
                        symbols=("AAPL", "BTC-USD"))
    async with connect(url) as t:
        spy = await t.subscribe(cfg.orders_subject, max_pending=1 << 16)
        gen = LoadGenerator(t, cfg)
        gen.answer_timeout = 0.2  # nobody validates: the run ends after the sends
        await gen.run()
        got = [bytes(m.data) for m in [await spy.next_msg(timeout=2) for _ in range(cfg.count)]]
    ref = OrderFactory(cfg)
    wall = [_core.decode_order(b).timestamp for b in got]
    for i, b in enumerate(got):
        assert b == ref.order(i, wall[i])  # byte for byte: same layout, fields and padding
    assert wall == sorted(wall) and len(set(wall)) > 1  # stamped per order from its intended time


def test_prometheus_latency_is_a_real_histogram_on_a_user_registry():
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    from lowlat.services.metrics import collector

    reg = CollectorRegistry(auto_describe=False)
    app_counter = Counter("app_things", "the application's own metric", registry=reg)
    app_counter.inc()
    reg.register(collector())
    a, b = Metrics(f"unit-a-{uuid.uuid4().hex[:6]}"), Metrics(f"unit-b-{uuid.uuid4().hex[:6]}")
    a.record("validate", 1_500, 3)       # 1.5 µs x3
    a.record("validate", 3_000_000)      # 3 ms
    b.record("validate", 40_000, 2)      # 40 µs x2
    register(a)
    register(b)
    try:
        body = generate_latest(reg).decode()
    finally:
        unregister(a)
        unregister(b)
    assert "app_things_total 1.0" in body
    sa = f'service="{a.service}",stage="validate"'
    assert f'lowlat_stage_latency_seconds_bucket{{le="1e-06",{sa}}} 0.0' in body
    assert f'lowlat_stage_latency_seconds_bucket{{le="2e-06",{sa}}} 3.0' in body
    assert f'lowlat_stage_latency_seconds_bucket{{le="0.002",{sa}}} 3.0' in body
    assert f'lowlat_stage_latency_seconds_bucket{{le="0.005",{sa}}} 4.0' in body
    assert f'lowlat_stage_latency_seconds_bucket{{le="+Inf",{sa}}} 4.0' in body
    assert f'lowlat_stage_latency_seconds_count{{{sa}}} 4.0' in body
    m = re.search(rf'lowlat_stage_latency_seconds_sum\{{{re.escape(sa)}\}} (\S+)', body)
    assert m and abs(float(m.group(1)) - (4.5e-6 + 3e-3)) < 1e-8, body
    sb = f'service="{b.service}",stage="validate"'
    assert f'lowlat_stage_latency_seconds_bucket{{le="5e-05",{sb}}} 2.0' in body
