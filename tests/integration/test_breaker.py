"""Circuit breakers around request(): a real responder (inproc:// and a real nats-server) that slows down, goes
away and recovers; the breaker opens, fails fast without reaching it, lets one trial through and closes again."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lowlat.breaker import Breaker, Breakers, State
from lowlat.errors import CircuitOpenError, NoRespondersError, TransportTimeoutError
from lowlat.services import metrics
from lowlat.transport import connect


class Responder:
    """A request/reply service on ``subject`` (once ``up``) whose speed the test switches (``delay`` s)."""

    def __init__(self, t, subject: str) -> None:
        self.t, self.subject = t, subject
        self.delay = 0.0
        self.seen = 0
        self.task: asyncio.Task | None = None

    async def _handle(self, msg):
        self.seen += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return b"ok:" + bytes(msg.data)

    async def up(self) -> None:
        self.task = await self.t.serve(self.subject, self._handle)
        await self.t.flush()


def _scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_slow_target_opens_fails_fast_and_recovers_inproc(caplog):
    caplog.set_level(logging.INFO, logger="lowlat.breaker")
    port = metrics.start_metrics_server(0)
    group = f"g{uuid.uuid4().hex[:6]}"
    async with connect(f"inproc://brk-{uuid.uuid4().hex[:8]}") as t:
        risk, ref = Responder(t, "risk.check"), Responder(t, "refdata.lookup")
        await risk.up()
        await ref.up()
        br = Breakers(t, name=group, failures=3, slow_call_s=0.02, reset_s=0.3)
        for i in range(5):
            assert bytes((await br.request("risk.check", b"%d" % i, timeout=2)).data) == b"ok:%d" % i
        assert br.breaker("risk.check").state is State.CLOSED

        risk.delay = 0.05                                  # the dependency slows down: replies still come
        for i in range(3):
            assert (await br.request("risk.check", b"s", timeout=2)).data == b"ok:s"
        b = br.breaker("risk.check")
        assert b.state is State.OPEN and b.failed["slow"] == 3
        seen = risk.seen
        t0 = time.monotonic()
        with pytest.raises(CircuitOpenError) as e:
            await br.request("risk.check", b"x", timeout=2)
        assert time.monotonic() - t0 < 0.5                 # at once, not after the 2 s timeout
        assert e.value.target == "risk.check" and 0 < e.value.retry_in <= 0.3
        assert "3 failed calls in a row" in str(e.value) and "reply took" in str(e.value)
        assert risk.seen == seen                           # the open breaker did not reach the service
        # per target: the other dependency is unaffected
        assert (await br.request("refdata.lookup", b"r", timeout=2)).data == b"ok:r"
        assert br.breaker("refdata.lookup").state is State.CLOSED

        m = _scrape(port)
        assert m[("lowlat_breaker_state", (("group", group), ("target", "risk.check")))] == 2
        assert m[("lowlat_breaker_state", (("group", group), ("target", "refdata.lookup")))] == 0
        assert m[("lowlat_breaker_transitions_total", (("group", group), ("target", "risk.check"),
                                                       ("to", "open")))] == 1
        assert m[("lowlat_breaker_rejected_total", (("group", group), ("target", "risk.check")))] == 1
        assert m[("lowlat_breaker_failures_total", (("group", group), ("kind", "slow"),
                                                    ("target", "risk.check")))] == 3

        await asyncio.sleep(0.35)                          # still slow: the trial fails, open again
        assert (await br.request("risk.check", b"t", timeout=2)).data == b"ok:t"
        assert b.state is State.OPEN and b.transitions["half_open"] == 1 and b.transitions["open"] == 2

        risk.delay = 0.0                                   # recovered: the next trial closes the breaker
        await asyncio.sleep(0.35)
        assert (await br.request("risk.check", b"u", timeout=2)).data == b"ok:u"
        assert b.state is State.CLOSED and b.transitions == {"closed": 1, "half_open": 2, "open": 2}
        assert (await br.request("risk.check", b"v", timeout=2)).data == b"ok:v"
    lines = [r.getMessage() for r in caplog.records if r.name == "lowlat.breaker"]
    assert lines[0].startswith("circuit breaker risk.check: closed -> open (3 failed calls in a row")
    assert [ln.split(": ", 1)[1].split(" (")[0] for ln in lines] == [
        "closed -> open", "open -> half_open", "half_open -> open", "open -> half_open", "half_open -> closed"]
    assert [r.levelname for r in caplog.records if r.name == "lowlat.breaker"][:2] == ["WARNING", "INFO"]


async def test_half_open_lets_one_trial_through_at_a_time():
    async with connect(f"inproc://brk-{uuid.uuid4().hex[:8]}") as t:
        svc = Responder(t, "risk.check")                  # not serving yet
        br = Breakers(t, failures=1, reset_s=0.1)
        with pytest.raises(NoRespondersError):
            await br.request("risk.check", b"a", timeout=1)
        b = br.breaker("risk.check")
        assert b.state is State.OPEN and b.failed["no_responders"] == 1
        await svc.up()
        svc.delay = 0.1
        await asyncio.sleep(0.15)
        trial = asyncio.ensure_future(br.request("risk.check", b"trial", timeout=2))
        await asyncio.sleep(0.01)
        with pytest.raises(CircuitOpenError, match="half-open"):  # the second caller does not pile on
            await br.request("risk.check", b"second", timeout=2)
        assert (await trial).data == b"ok:trial"
        assert b.state is State.CLOSED and svc.seen == 1


async def test_timeouts_and_no_responders_on_a_real_nats_server(nats_server):
    async with connect(nats_server.url) as caller, connect(nats_server.url) as server:
        subject = f"risk.{uuid.uuid4().hex[:8]}"
        svc = Responder(server, subject)
        br = Breakers(caller, failures=2, reset_s=0.3)
        for _ in range(2):                                 # nobody serves the subject: 503 from the server
            with pytest.raises(NoRespondersError):
                await br.request(subject, b"x", timeout=1)
        b = br.breaker(subject)
        assert b.state is State.OPEN and b.failed["no_responders"] == 2
        await svc.up()
        svc.delay = 0.5                                    # up, but slower than the callers' timeout
        await asyncio.sleep(0.35)
        with pytest.raises(TransportTimeoutError):
            await br.request(subject, b"x", timeout=0.1)
        assert b.state is State.OPEN and b.failed["timeout"] == 1
        with pytest.raises(CircuitOpenError):
            await br.request(subject, b"x", timeout=0.1)
        svc.delay = 0.0
        await asyncio.sleep(0.35)
        assert (await br.request(subject, b"y", timeout=2)).data == b"ok:y"
        assert b.state is State.CLOSED


async def test_only_the_targets_failures_count():
    b = Breaker("t", failures=1)

    async def bad_input():
        raise ValueError("caller bug")

    for _ in range(3):
        with pytest.raises(ValueError):
            await b.call(bad_input)
    assert b.state is State.CLOSED and sum(b.failed.values()) == 0

    async def ok():
        return 1

    assert await b.call(ok) == 1 and b.calls == 4


@pytest.mark.parametrize("kw", [{"failures": 0}, {"reset_s": 0}, {"slow_call_s": -1}, {"half_open_calls": 0}])
def test_bad_options_fail_at_construction(kw):
    with pytest.raises(ValueError):
        Breakers(None, **kw)
