"""Hostile input to the matching service (a real ``lowlat serve matcher`` process on a real nats-server).

- Resubmitting a resting order's id: the engine rejects the duplicate, and the read side (``query.order``) must
  still describe the resting order (it used to report it REJECTED while it rested in the book).
- ``query.order`` with an id of 2**64 or more: an UNKNOWN_ORDER answer (it used to get no reply and log a
  traceback per request).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from _services_util import service

from lowlat import _core
from lowlat.enums import Reject
from lowlat.services.matcher import ExecStatus
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(90)]


def test_duplicate_id_keeps_read_model_and_huge_query_id_is_unknown(nats_server):
    tag = uuid.uuid4().hex[:8]
    env = {"LOWLAT_MATCH_PREFIX": f"r{tag}.match", "LOWLAT_EXEC_PREFIX": f"r{tag}.exec",
           "LOWLAT_QUERY_PREFIX": f"r{tag}.query", "LOWLAT_MD_PREFIX": f"r{tag}.md"}
    m = service("serve", "matcher", "--transport", nats_server.url, "--symbols", "AAPL", env=env)
    try:
        m.wait_for('"ready"')

        async def run() -> tuple:
            async with connect(nats_server.url) as t:
                execs = await t.subscribe(f"r{tag}.exec.AAPL")
                buy = _core.encode_order(7, "AAPL", 100.0, 5, 0, 1, account=2)
                await t.publish(f"r{tag}.match.AAPL", buy)
                first = _core.decode_execution_report((await execs.next_msg(10)).data)
                await t.publish(f"r{tag}.match.AAPL", _core.encode_order(7, "AAPL", 99.0, 3, 0, 2, account=3))
                dup = _core.decode_execution_report((await execs.next_msg(10)).data)
                q = await t.request(f"r{tag}.query.order.AAPL", b"7", timeout=5)
                huge = await t.request(f"r{tag}.query.order.AAPL", str(2**64).encode(), timeout=5)
                huger = await t.request(f"r{tag}.query.order.AAPL", b"9" * 30, timeout=5)
                return (first, dup, _core.decode_execution_report(q.data), _core.decode_execution_report(huge.data),
                        _core.decode_execution_report(huger.data))

        first, dup, q, huge, huger = asyncio.run(run())
    finally:
        m.terminate()
    assert m.wait(30) == 0, m.output[-3000:]
    assert first.status == ExecStatus.NEW and first.order_id == 7
    assert dup.status == ExecStatus.REJECTED and dup.reason == Reject.DUPLICATE_ORDER_ID
    # the read side still describes what the book holds: order 7 resting, 5 lots at 100.00, account 2
    assert (q.order_id, q.status, q.leaves_quantity, q.account) == (7, ExecStatus.NEW, 5, 2), q
    for r in (huge, huger):
        assert r.status == ExecStatus.REJECTED and r.reason == Reject.UNKNOWN_ORDER, r
    assert "Traceback" not in m.output
