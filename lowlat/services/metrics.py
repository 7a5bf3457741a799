"""Service metrics: HDR-style latency histograms per stage, counters, and a Prometheus ``/metrics`` endpoint.

Cost model: nothing here runs per message.  Services count per *batch* (``inc(n)``) and record latencies per
batch (``record(stage, ns, count)``, ~0.1 µs) or in bulk from a numpy array (``record_array``, a few ns per
sample); compiled stages record into a ``lowlat._histogram.Histogram`` inside their own nogil loops.

Prometheus export (``prometheus_client``) is opt-in (``metrics_port``); it binds 127.0.0.1 by default.  At scrape
time a collector exports every stage as a real histogram (``lowlat_stage_latency_seconds_bucket{le=...}``,
``_count``, ``_sum``: sum it across validator instances) plus quantile gauges (``lowlat_latency_seconds``) for
humans; ``collector()`` can be registered on a registry the application owns.  OpenTelemetry spans are optional
(``lowlat[otel]``), off by default and wrapped around batches only.  The metrics port also serves ``/healthz``:
200 while every registered service's transport is connected, else 503 (JSON body: each service's transport
state and disconnect/reconnect counts).  The process's garbage-collector pauses are exported next to them once
``lowlat.services.gcquiet.gc_pauses().install()`` ran (``run_services`` does it).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as _Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._histogram import Histogram
from ..enums import Reject
from ..errors import MissingExtraError

__all__ = ["PROMETHEUS_BUCKETS_S", "QUANTILES", "LatencyHistogram", "Metrics", "collector", "otel_span",
           "start_metrics_server"]

#: quantiles reported everywhere (report, Prometheus, bench tables)
QUANTILES = (50.0, 90.0, 99.0, 99.9)
#: Prometheus ``le`` bounds of the latency histograms, seconds (1-2-5 steps from 1 µs to 10 s)
PROMETHEUS_BUCKETS_S = tuple(m * 10.0 ** e for e in range(-6, 1) for m in (1, 2, 5)) + (10.0,)
_HIGHEST_NS = 60 * 1_000_000_000  # 60 s; larger values are clamped (and counted in .clamped)


class LatencyHistogram:
    """A named latency histogram of nanoseconds (0 .. 60 s, 0.1 % resolution) over the compiled ``Histogram``.

    ``record`` costs ~0.1 µs (one compiled call), ``record_array`` a few ns per sample; ``h`` is the compiled
    histogram itself (for stages that record into it from nogil code, and for ``merge``).
    """

    def __init__(self, name: str = "", h: Histogram | None = None) -> None:
        self.name = name
        self.h = h if h is not None else Histogram(_HIGHEST_NS, 11)

    def record(self, value_ns: int, count: int = 1) -> None:
        self.h.record(int(value_ns), int(count))

    def record_array(self, values_ns: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Record many latencies at once (any integer/float array of ns), each ``counts[i]`` times (default 1)."""
        self.h.record_array(np.asarray(values_ns).astype(np.int64, copy=False), counts)

    def merge(self, other: LatencyHistogram) -> None:
        self.h.merge(other.h)

    @property
    def clamped(self) -> int:
        return int(self.h.clamped)

    @property
    def count(self) -> int:
        return int(self.h.count)

    @property
    def sum_ns(self) -> float:
        return float(self.h.sum)

    def percentiles(self, qs: tuple[float, ...] | list[float]) -> list[int]:
        """Values (ns) at the given percentiles (HdrHistogram's definition: the highest value equivalent to the
        first bucket whose cumulative count reaches q% of the total)."""
        return [int(v) for v in self.h.percentiles(qs)]

    def percentile(self, q: float) -> int:
        return int(self.h.percentile(q))

    def summary(self) -> dict[str, float]:
        """``{"count", "mean", "p50", "p90", "p99", "p99.9", "max"}`` in ns (0 when empty)."""
        h = self.h
        out: dict[str, float] = {"count": int(h.count), "mean": float(h.mean)}
        for q, v in zip(QUANTILES, h.percentiles(QUANTILES)):
            out[f"p{q:g}"] = int(v)
        out["max"] = int(h.max)
        return out

    def prometheus_buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs in seconds for ``PROMETHEUS_BUCKETS_S`` plus ``+Inf``."""
        cum = self.h.cumulative_at([round(b * 1e9) for b in PROMETHEUS_BUCKETS_S])
        return [(f"{b:g}", float(c)) for b, c in zip(PROMETHEUS_BUCKETS_S, cum)] + [("+Inf", float(self.h.count))]

    def curve(self) -> tuple[list[float], list[int]]:
        """(percentile, value_ns) points for a latency-by-percentile plot (HdrHistogram's classic plot)."""
        ps = [0.0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100]
        return ps, self.percentiles(ps)


class Metrics:
    """Counters, gauges and per-stage latency histograms of one service instance.

    Stages (ns): ``receive`` (order timestamp → dequeued by the service), ``decode``/``validate``/``match``
    (per order, amortised over the batch), ``reply`` (publishing the replies of a batch, per order).
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.lock = threading.Lock()  # the scrape thread reads while the loop writes
        self.stages: dict[str, LatencyHistogram] = {}
        self.counts: _Counter[str] = _Counter()
        self.rejects: _Counter[int] = _Counter()
        self.pending = 0            # messages received but not yet processed (max over subscriptions)
        self.pending_limit = 0
        self.dropped = 0            # messages the transport dropped because we were a slow consumer
        self.slow_consumer_events = 0
        self.throttled = 0          # times the rate limiter made intake wait
        self.intake_age_ns = 0      # age (sender timestamp -> taken in) of the oldest message of the last batch
        self.transport: Any = None  # the service's transport: connection state for /metrics and /healthz

    def stage(self, name: str) -> LatencyHistogram:
        """The stage's histogram (created on first use)."""
        h = self.stages.get(name)
        if h is None:
            with self.lock:  # the scrape thread iterates self.stages
                h = self.stages.setdefault(name, LatencyHistogram(name))
        return h

    def record(self, stage: str, value_ns: int, count: int = 1) -> None:
        """Record ``count`` occurrences of a latency; ~0.1 µs (one compiled call, atomic under the GIL)."""
        h = self.stages.get(stage)
        if h is None:
            h = self.stage(stage)
        try:
            h.h.record(value_ns, count)
        except OverflowError:  # a hostile timestamp 2**63 ns away: clamp (the histogram counts it)
            h.h.record(-1 if value_ns < 0 else (1 << 63) - 1, count)

    def record_array(self, stage: str, values_ns: np.ndarray) -> None:
        self.stage(stage).record_array(values_ns)

    def inc(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def count_rejects(self, codes: np.ndarray) -> int:
        """Count non-zero reject codes of a batch; returns how many were rejected."""
        if not codes.any():
            return 0
        nz = codes[codes != 0]
        if nz.size:
            vals, cnt = np.unique(nz, return_counts=True)
            for v, c in zip(vals.tolist(), cnt.tolist()):
                self.rejects[v] += c
        return int(nz.size)

    def observe_pending(self, pending: int, limit: int, dropped: int) -> bool:
        """Record a subscription's pending count and its (cumulative) dropped count; True when ``dropped`` grew,
        i.e. a new slow-consumer event."""
        self.pending = pending
        self.pending_limit = limit
        grew = dropped > self.dropped
        if grew:
            self.slow_consumer_events += 1
            self.dropped = dropped
        return grew

    def rejects_by_reason(self) -> dict[str, int]:
        out = {}
        for code, n in sorted(self.rejects.items()):
            try:
                out[Reject(code).name] = n
            except ValueError:
                out[f"CODE_{code}"] = n
        return out

    def transport_state(self) -> dict[str, Any]:
        """``{"state", "connected", "disconnects", "reconnects"}`` of the service's transport (connected while
        it has none yet, so an in-process service without a transport is healthy)."""
        t = self.transport
        if t is None:
            return {"state": "connected", "connected": True, "disconnects": 0, "reconnects": 0}
        state = getattr(t, "state", None) or ("closed" if getattr(t, "closed", False) else "connected")
        return {"state": state, "connected": state == "connected",
                "disconnects": int(getattr(t, "disconnects", 0)), "reconnects": int(getattr(t, "reconnects", 0))}

    def snapshot(self) -> dict[str, Any]:
        """A plain dict for logs/reports: counts, rejects by reason, pending, dropped, stage summaries (ns)."""
        with self.lock:
            stages = {k: h.summary() for k, h in self.stages.items()}
            return {
                "service": self.service,
                "counts": dict(self.counts),
                "rejects": self.rejects_by_reason(),
                "pending": self.pending,
                "dropped": self.dropped,
                "slow_consumer_events": self.slow_consumer_events,
                "throttled": self.throttled,
                "transport": self.transport_state(),
                "stages": stages,
            }


# ---------------------------------------------------------------- Prometheus
_REGISTERED: list[Metrics] = []
_REG_LOCK = threading.Lock()
_SERVERS: dict[tuple[str, int], Any] = {}


class _Collector:
    """Builds Prometheus metric families from every registered ``Metrics`` at scrape time."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        msgs = CounterMetricFamily("lowlat_messages", "Messages handled, by service and kind",
                                   labels=["service", "kind"])
        rej = CounterMetricFamily("lowlat_rejects", "Rejected orders by reason", labels=["service", "reason"])
        pend = GaugeMetricFamily("lowlat_pending", "Messages received but not yet processed", labels=["service"])
        plim = GaugeMetricFamily("lowlat_pending_limit", "Bound on pending messages", labels=["service"])
        drop = CounterMetricFamily("lowlat_slow_consumer_dropped",
                                   "Messages dropped because the service was a slow consumer", labels=["service"])
        slow = CounterMetricFamily("lowlat_slow_consumer_events", "Times the dropped count grew",
                                   labels=["service"])
        age = GaugeMetricFamily("lowlat_intake_age_seconds", "Age of the oldest message of the last batch taken "
                                "in (sender clock): grows while a backlog waits in the broker", labels=["service"])
        thr = CounterMetricFamily("lowlat_throttled", "Times the intake rate limit made the service wait",
                                  labels=["service"])
        conn = GaugeMetricFamily("lowlat_transport_connected", "1 while the transport is connected, 0 while "
                                 "reconnecting or closed", labels=["service"])
        disc = CounterMetricFamily("lowlat_transport_disconnects", "Broker disconnects seen", labels=["service"])
        reco = CounterMetricFamily("lowlat_transport_reconnects", "Successful reconnects", labels=["service"])
        lat = GaugeMetricFamily("lowlat_latency_seconds", "Latency quantiles per stage (HDR histogram)",
                                labels=["service", "stage", "quantile"])
        lat_hist = HistogramMetricFamily("lowlat_stage_latency_seconds",
                                         "Stage latency histogram (aggregatable across instances)",
                                         labels=["service", "stage"])
        with _REG_LOCK:
            regs = list(_REGISTERED)
        for m in regs:
            s = m.snapshot()
            with m.lock:
                hists = {k: (h.prometheus_buckets(), h.sum_ns / 1e9) for k, h in m.stages.items()}
            for kind, n in s["counts"].items():
                msgs.add_metric([m.service, kind], n)
            for reason, n in s["rejects"].items():
                rej.add_metric([m.service, reason], n)
            pend.add_metric([m.service], s["pending"])
            plim.add_metric([m.service], m.pending_limit)
            drop.add_metric([m.service], s["dropped"])
            slow.add_metric([m.service], s["slow_consumer_events"])
            thr.add_metric([m.service], s["throttled"])
            age.add_metric([m.service], m.intake_age_ns / 1e9)
            ts = s["transport"]
            conn.add_metric([m.service], int(ts["connected"]))
            disc.add_metric([m.service], ts["disconnects"])
            reco.add_metric([m.service], ts["reconnects"])
            for stage, summ in s["stages"].items():
                for q in QUANTILES:
                    lat.add_metric([m.service, stage, f"{q / 100:g}"], summ[f"p{q:g}"] / 1e9)
            for stage, (buckets, total_s) in hists.items():
                lat_hist.add_metric([m.service, stage], buckets, total_s)
        yield from (msgs, rej, pend, plim, drop, slow, thr, age, conn, disc, reco, lat, lat_hist)
        from ..breaker import breaker_families
        from .gcquiet import gc_pauses  # (imports this module: not at the top)

        yield from gc_pauses().families()
        yield from breaker_families()

    def describe(self) -> list[Any]:
        return []  # dynamic: no registration-time description (prometheus_client then skips collect at register)


_COLLECTOR = _Collector()


def collector() -> _Collector:
    """The collector exporting every registered ``Metrics``; register it on your own registry with
    ``registry.register(collector())`` (or pass ``registry=`` to ``start_metrics_server``)."""
    return _COLLECTOR


def register(m: Metrics) -> None:
    """Export ``m`` through ``collector()`` (idempotent)."""
    with _REG_LOCK:
        if m not in _REGISTERED:
            _REGISTERED.append(m)


def unregister(m: Metrics) -> None:
    with _REG_LOCK:
        if m in _REGISTERED:
            _REGISTERED.remove(m)


def health() -> tuple[bool, dict[str, Any]]:
    """(healthy, body) for ``/healthz``: healthy while every registered service's transport is connected."""
    with _REG_LOCK:
        regs = list(_REGISTERED)
    services = {m.service: m.transport_state() for m in regs}
    ok = all(v["connected"] for v in services.values())
    return ok, {"status": "ok" if ok else "unavailable", "services": services}


def _app(registry: Any) -> Any:
    """WSGI app: ``/healthz`` (see ``health``), everything else prometheus_client's exposition."""
    import json

    from prometheus_client import make_wsgi_app

    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") in ("/healthz", "/health"):
            ok, body = health()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        return metrics_app(environ, start_response)

    return app


def start_metrics_server(port: int, host: str = "127.0.0.1", registry: Any = None) -> int:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` (port 0 = pick a free one) from a daemon thread;
    returns the port.

    ``registry``: a ``prometheus_client.CollectorRegistry`` of the application (lowlat's collector is added to
    it once, next to the application's own metrics); default a private registry holding lowlat's collector and
    prometheus_client's process (CPU, memory, file descriptors) and platform (``python_info``) collectors.
    Raises ``MissingExtraError`` when ``prometheus_client`` is absent.
    """
    try:
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
        from prometheus_client.exposition import ThreadingWSGIServer
    except ImportError:
        raise MissingExtraError("/metrics needs prometheus_client: pip install 'lowlat[metrics]'") from None
    key = (host, port)
    if port and key in _SERVERS:
        return port
    if registry is None:
        # a private registry, so an application's default REGISTRY is never written to behind its back; with the
        # process (CPU, RSS, open fds) and platform (python_info) collectors the default REGISTRY also has
        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    if not getattr(registry, "_lowlat_registered", False):
        registry.register(_COLLECTOR)  # type: ignore[arg-type]
        registry._lowlat_registered = True

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
            return

    server = make_server(host, port, _app(registry), ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="lowlat-metrics", daemon=True).start()
    actual = server.server_address[1]
    _SERVERS[(host, actual)] = server
    return actual


def stop_metrics_servers() -> None:
    for srv in list(_SERVERS.values()):
        srv.shutdown()
        srv.server_close()
    _SERVERS.clear()


# ---------------------------------------------------------------- OpenTelemetry (optional, per batch)
_TRACER: Any = None


def enable_otel(service: str) -> None:
    """Turn on OpenTelemetry spans around batches; needs ``lowlat[otel]``.  Exporter setup is the app's job."""
    global _TRACER
    try:
        from opentelemetry import trace
    except ImportError:
        raise MissingExtraError("OpenTelemetry spans need: pip install 'lowlat[otel]'") from None
    _TRACER = trace.get_tracer(f"lowlat.services.{service}")


@contextlib.contextmanager
def _span(name: str, n: int) -> Iterator[None]:
    with _TRACER.start_as_current_span(name) as sp:
        sp.set_attribute("lowlat.batch_size", n)
        yield


def otel_span(name: str, n: int) -> contextlib.AbstractContextManager[None]:
    """A span around one batch when OpenTelemetry is enabled, else a no-op context (one global check)."""
    if _TRACER is None:
        return contextlib.nullcontext()
    return _span(name, n)
