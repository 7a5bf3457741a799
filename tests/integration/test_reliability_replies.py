"""One bad reply address must not lose the answers of the rest of its batch (real service process / real broker).

The validator answered a batch in one loop; a reply subject the transport refused raised out of it, and every
answer after it in the batch (plus results, forwards and counters) was dropped as "batch failed".  Now the
refusal is counted (``lowlat_messages_total{kind="reply_errors"}``) and the rest is answered.

- ZeroMQ: the validator process is the hub; one order published with reply ``bad..reply`` in a burst with 9
  requests: the 9 get their answers.
- Kafka (Tansu): one order whose ``lowlat-reply`` names an invalid inbox topic among 9 requests: the 9 are answered.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import pytest
from _services_util import service
from brokers._util import free_port

from lowlat import _core
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def counter(port: int, kind: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf'^lowlat_messages_total\{{kind="{kind}",service="validator"\}} (\S+)$', body, re.MULTILINE)
    if m is None:
        m = re.search(rf'^lowlat_messages_total\{{service="validator",kind="{kind}"\}} (\S+)$', body, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def order(oid: int) -> bytes:
    return _core.encode_order(oid, "AAPL", 100.0, 1, 0, time.time_ns())


async def burst(t, bad_reply: str, headers_for_bad=None) -> list[int]:
    """Publish the bad order, then 9 requests at once; the ids of the answers that came back."""
    if headers_for_bad is not None:
        await t.publish("orders.in", order(1000), headers=headers_for_bad)
    else:
        await t.publish("orders.in", order(1000), reply=bad_reply)
    reqs = [t.request("orders.in", order(i), timeout=20) for i in range(1, 10)]
    out = await asyncio.gather(*reqs, return_exceptions=True)
    return sorted(_core.decode_validation_result(r.data)[0] for r in out if not isinstance(r, BaseException))


@pytest.mark.zmq
def test_zmq_bad_reply_subject_among_ten_loses_no_other_answer():
    port = free_port()
    url = f"zmq+tcp://127.0.0.1:{port}"
    mport = free_port()
    v = service("serve", "validator", "--transport", url, "--bind", "--metrics-port", str(mport))
    try:
        v.wait_for('"ready"')

        async def run() -> list[int]:
            async with connect(url) as t:
                return await burst(t, "bad..reply")

        got = asyncio.run(run())
        assert got == list(range(1, 10)), got
        deadline = time.monotonic() + 5
        while counter(mport, "reply_errors") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counter(mport, "reply_errors") == 1
        assert counter(mport, "replies") == 9
    finally:
        v.terminate()
    assert v.wait(30) == 0
    assert "batch failed" not in v.output, v.output[-3000:]
