"""/metrics with lowlat's own registry (process and platform collectors on by default) and with the
application's registry passed to run_services (the application's metrics next to lowlat's, one endpoint)."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

from brokers._util import free_port

from lowlat.services import ServiceConfig, ValidatorService, run_services
from lowlat.services.metrics import start_metrics_server, stop_metrics_servers


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_default_registry_has_process_and_platform_collectors():
    try:
        body = _scrape(start_metrics_server(0))
    finally:
        stop_metrics_servers()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert f"\n{name}" in body, name


async def test_run_services_serves_the_applications_registry():
    from prometheus_client import CollectorRegistry, Counter

    reg = CollectorRegistry()
    Counter("app_orders_routed", "the application's own metric", registry=reg).inc(3)
    port = free_port()
    cfg = ServiceConfig(transport=f"inproc://reg-{uuid.uuid4().hex[:8]}", metrics_port=port)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_services(cfg, [ValidatorService(cfg)], stop_event=stop, install_signals=False,
                                            on_ready=ready.set, registry=reg))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        body = await asyncio.to_thread(_scrape, port)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        stop_metrics_servers()
    assert "app_orders_routed_total 3.0" in body
    assert 'lowlat_pending{service="validator"}' in body, body  # and lowlat's own, on the same endpoint
    assert "process_cpu_seconds_total" not in body  # the application's registry gets only what it asked for
