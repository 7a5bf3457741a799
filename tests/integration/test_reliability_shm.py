"""``shm://`` faults with real processes: a queue-group member killed with ``kill -9``, and the bus directory's
permissions.

- Two validator processes share one queue group; one is killed with SIGKILL while requests flow at ~500/s.  The
  bus kept routing to the dead member until its ring filled (27,595 requests silently lost in 13.8 s).  Now the
  publisher notices within ``liveness_interval`` (0.1 s), drops it from routing and counts what was left in its
  ring (``dead_member_drops``): every request sent from 0.5 s after the kill is answered, and the requests that
  were lost are at most those counted plus the dead member's in-flight batch.
- The bus directory is created 0700; an existing one of ours that is group/world-accessible is tightened to 0700,
  and one owned by another user is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid

import pytest
from _services_util import service, stop_all

from lowlat import _core
from lowlat.errors import TransportError, TransportTimeoutError
from lowlat.transport import connect
from lowlat.transport.shm._registry import shm_root

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_killed_queue_member_is_dropped_from_routing_and_its_loss_counted():
    url = f"shm://rel-{uuid.uuid4().hex[:8]}"
    procs = [service("serve", "validator", "--transport", url) for _ in range(2)]
    try:
        for p in procs:
            p.wait_for('"ready"')

        async def run() -> dict:
            async with connect(url) as t:
                t0 = time.monotonic()
                sent: dict[int, float] = {}
                answered: set[int] = set()

                async def one(oid: int) -> None:
                    sent[oid] = time.monotonic() - t0
                    try:
                        r = await t.request("orders.in", _core.encode_order(oid, "AAPL", 100.0, 1, 0, 1), timeout=3)
                        answered.add(_core.decode_validation_result(r.data)[0])
                    except TransportTimeoutError:
                        pass

                tasks = []
                kill_at = None
                for oid in range(1, 2001):  # 4 s at ~500/s; the kill lands at 1 s
                    tasks.append(asyncio.ensure_future(one(oid)))
                    if oid == 500:
                        procs[0].kill()
                        kill_at = time.monotonic() - t0
                    await asyncio.sleep(0.002)
                await asyncio.gather(*tasks)
                lost = [o for o in sent if o not in answered]
                return {"sent": len(sent), "answered": len(answered), "lost": len(lost),
                        "lost_after_0.5s": sum(1 for o in lost if sent[o] > kill_at + 0.5),
                        "dead_member_drops": t.dead_member_drops}

        r = asyncio.run(run())
    finally:
        stop_all(procs)
    print(json.dumps(r))
    assert r["lost_after_0.5s"] == 0, r
    assert r["lost"] <= r["dead_member_drops"] + 64, r  # uncounted: at most the batch the dead process held
    assert r["answered"] >= r["sent"] - r["lost"], r


async def test_bus_directory_is_private_and_another_users_is_refused():
    name = f"rel-{uuid.uuid4().hex[:8]}"
    d = os.path.join(shm_root(), f"lowlat-bus-{name}")
    async with connect(f"shm://{name}") as t:
        assert stat.S_IMODE(os.lstat(t.dir).st_mode) == 0o700
    os.chmod(d, 0o755)  # e.g. made by an older version
    async with connect(f"shm://{name}"):
        assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700
    other = f"rel-{uuid.uuid4().hex[:8]}"
    od = os.path.join(shm_root(), f"lowlat-bus-{other}")
    os.mkdir(od, 0o700)
    try:
        if os.geteuid() == 0:
            os.chown(od, 65534, 65534)  # another user's directory
        else:  # cannot give a directory away: a symlink to ours is refused the same way
            os.rmdir(od)
            os.symlink(d, od)
        with pytest.raises(TransportError, match="refusing"):
            async with connect(f"shm://{other}"):
                pass
    finally:
        if os.path.islink(od):
            os.unlink(od)
        else:
            os.rmdir(od)
