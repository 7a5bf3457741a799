"""Service metrics: HDR latency histograms per stage, counters, and a Prometheus ``/metrics`` endpoint.

Cost model: nothing here runs per message.  Services count per *batch* (``inc(n)``) and record latencies either
per batch (``record(stage, ns, count)``) or in bulk from a numpy array (``record_array``), which collapses values
to the histogram's own precision before touching the pure-Python ``hdrhistogram`` package.

Prometheus export (``prometheus_client``) is opt-in (``metrics_port``); it binds 127.0.0.1 by default.  Latency
quantiles are exported from the HDR histograms by a custom collector at scrape time.  OpenTelemetry spans are
optional (``lowlat[otel]``), off by default and wrapped around batches only.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as _Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..enums import Reject
from ..errors import MissingExtraError

__all__ = ["QUANTILES", "LatencyHistogram", "Metrics", "otel_span", "start_metrics_server"]

#: quantiles reported everywhere (report, Prometheus, bench tables)
QUANTILES = (50.0, 90.0, 99.0, 99.9)
_HIGHEST_NS = 60 * 1_000_000_000  # 60 s; larger values are clamped (and counted in .clamped)
_INDEX_VALUES: dict[tuple[int, int, int], np.ndarray] = {}


def _hdr() -> Any:
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        raise MissingExtraError("latency histograms need hdrhistogram: pip install 'lowlat[metrics]'") from None
    return HdrHistogram


class LatencyHistogram:
    """An HDR histogram of nanosecond latencies (1 ns .. 60 s, 3 significant digits).

    ``record`` costs ~1 µs (pure Python); ``record_array`` costs ~1 µs per *distinct bucket*, so a batch of a
    million samples costs a few ms.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.h = _hdr()(1, _HIGHEST_NS, 3)
        self.clamped = 0

    def record(self, value_ns: int, count: int = 1) -> None:
        v = int(value_ns)
        if v < 1:
            v = 1
        elif v > _HIGHEST_NS:
            v = _HIGHEST_NS
            self.clamped += count
        self.h.record_value(v, count)

    def record_array(self, values_ns: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Record many latencies at once (any integer/float array of ns), each ``counts[i]`` times (default 1)."""
        v = np.asarray(values_ns).astype(np.int64, copy=False).ravel()
        if v.size == 0:
            return
        w = None if counts is None else np.asarray(counts, dtype=np.int64).ravel()
        big = v > _HIGHEST_NS
        self.clamped += int(big.sum() if w is None else w[big].sum())
        v = np.clip(v, 1, _HIGHEST_NS)
        # quantise to 11 significant bits (finer than the histogram's 3 decimal digits) so np.unique collapses
        # the samples to at most a few thousand (value, count) pairs
        shift = np.maximum(np.floor(np.log2(v)).astype(np.int64) - 10, 0)
        q = (v >> shift) << shift
        if w is None:
            keys, cnts = np.unique(q, return_counts=True)
        else:
            keys, inv = np.unique(q, return_inverse=True)
            cnts = np.bincount(inv, weights=w).astype(np.int64)
        rv = self.h.record_value
        for k, c in zip(keys.tolist(), cnts.tolist()):
            if c:
                rv(k, c)

    def merge(self, other: LatencyHistogram) -> None:
        self.h.add(other.h)
        self.clamped += other.clamped

    @property
    def count(self) -> int:
        return int(self.h.get_total_count())

    def _values(self) -> np.ndarray:
        # highest equivalent value of every counts index; the same for every histogram of this shape, so cached
        key = (self.h.counts_len, self.h.sub_bucket_count, self.h.unit_magnitude)
        v = _INDEX_VALUES.get(key)
        if v is None:
            h = self.h
            v = np.array([h.get_highest_equivalent_value(h.get_value_from_index(i)) for i in range(h.counts_len)],
                         dtype=np.int64)
            _INDEX_VALUES[key] = v
        return v

    def percentiles(self, qs: tuple[float, ...] | list[float]) -> list[int]:
        """Values (ns) at the given percentiles, vectorised over the counts array (HdrHistogram's definition:
        the highest value equivalent to the first bucket whose cumulative count reaches q% of the total)."""
        total = self.count
        if not total:
            return [0 for _ in qs]
        counts = np.ctypeslib.as_array(self.h.counts)[: self.h.counts_len].astype(np.int64)
        cum = np.cumsum(counts)
        vals = self._values()
        out = []
        for q in qs:
            target = max(1, int(np.ceil(min(q, 100.0) / 100.0 * total)))
            i = int(np.searchsorted(cum, target))
            out.append(int(vals[min(i, len(vals) - 1)]))
        return out

    def percentile(self, q: float) -> int:
        return self.percentiles([q])[0]

    def summary(self) -> dict[str, float]:
        """``{"count", "mean", "p50", "p90", "p99", "p99.9", "max"}`` in ns (0 when empty)."""
        if not self.count:
            return {"count": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "max": 0}
        counts = np.ctypeslib.as_array(self.h.counts)[: self.h.counts_len].astype(np.float64)
        out: dict[str, float] = {"count": self.count,
                                 "mean": float((counts * self._values()).sum() / max(1.0, counts.sum()))}
        for q, v in zip(QUANTILES, self.percentiles(QUANTILES)):
            out[f"p{q:g}"] = v
        out["max"] = int(self.h.get_max_value())
        return out

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
        self._buf: dict[str, tuple[list[int], list[int]]] = {}  # stage -> (values, counts) not yet folded in
        self.counts: _Counter[str] = _Counter()
        self.rejects: _Counter[int] = _Counter()
        self.pending = 0            # messages received but not yet processed (max over subscriptions)
        self.pending_limit = 0
        self.dropped = 0            # messages the transport dropped because we were a slow consumer
        self.slow_consumer_events = 0
        self.throttled = 0          # times the rate limiter made intake wait

    def stage(self, name: str) -> LatencyHistogram:
        """The stage's histogram, with everything recorded so far folded in."""
        with self.lock:
            self._flush(name)
            return self._stage(name)

    def _stage(self, name: str) -> LatencyHistogram:
        h = self.stages.get(name)
        if h is None:
            h = self.stages[name] = LatencyHistogram(name)
        return h

    def record(self, stage: str, value_ns: int, count: int = 1) -> None:
        """Record ``count`` occurrences of a latency; ~0.1 µs (buffered, folded into the HDR histogram in bulk)."""
        buf = self._buf.get(stage)
        if buf is None:
            buf = self._buf[stage] = ([], [])
        buf[0].append(value_ns)
        buf[1].append(count)
        if len(buf[0]) >= 2048:
            with self.lock:
                self._flush(stage)

    def _flush(self, stage: str) -> None:
        buf = self._buf.get(stage)
        if buf and buf[0]:
            vals, cnts = buf
            self._buf[stage] = ([], [])
            self._stage(stage).record_array(np.array(vals, dtype=np.int64), np.array(cnts, dtype=np.int64))

    def record_array(self, stage: str, values_ns: np.ndarray) -> None:
        with self.lock:
            self._stage(stage).record_array(values_ns)

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

    def observe_pending(self, pending: int, limit: int, dropped: int) -> None:
        self.pending = pending
        self.pending_limit = limit
        if dropped > self.dropped:
            self.slow_consumer_events += 1
        self.dropped = max(self.dropped, dropped)

    def rejects_by_reason(self) -> dict[str, int]:
        out = {}
        for code, n in sorted(self.rejects.items()):
            try:
                out[Reject(code).name] = n
            except ValueError:
                out[f"CODE_{code}"] = n
        return out

    def snapshot(self) -> dict[str, Any]:
        """A plain dict for logs/reports: counts, rejects by reason, pending, dropped, stage summaries (ns)."""
        with self.lock:
            for name in list(self._buf):
                self._flush(name)
            return {
                "service": self.service,
                "counts": dict(self.counts),
                "rejects": self.rejects_by_reason(),
                "pending": self.pending,
                "dropped": self.dropped,
                "slow_consumer_events": self.slow_consumer_events,
                "throttled": self.throttled,
                "stages": {k: h.summary() for k, h in self.stages.items()},
            }


# ---------------------------------------------------------------- Prometheus
_REGISTERED: list[Metrics] = []
_REG_LOCK = threading.Lock()
_SERVERS: dict[tuple[str, int], Any] = {}


class _Collector:
    """Builds Prometheus metric families from every registered ``Metrics`` at scrape time."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        msgs = CounterMetricFamily("lowlat_messages", "Messages handled, by service and kind",
                                   labels=["service", "kind"])
        rej = CounterMetricFamily("lowlat_rejects", "Rejected orders by reason", labels=["service", "reason"])
        pend = GaugeMetricFamily("lowlat_pending", "Messages received but not yet processed", labels=["service"])
        plim = GaugeMetricFamily("lowlat_pending_limit", "Bound on pending messages", labels=["service"])
        drop = CounterMetricFamily("lowlat_slow_consumer_dropped",
                                   "Messages dropped because the service was a slow consumer", labels=["service"])
        slow = CounterMetricFamily("lowlat_slow_consumer_events", "Times the dropped count grew",
                                   labels=["service"])
        thr = CounterMetricFamily("lowlat_throttled", "Times the intake rate limit made the service wait",
                                  labels=["service"])
        lat = GaugeMetricFamily("lowlat_latency_seconds", "Latency quantiles per stage (HDR histogram)",
                                labels=["service", "stage", "quantile"])
        lat_sum = SummaryMetricFamily("lowlat_stage_latency_seconds", "Count and sum of stage latencies",
                                      labels=["service", "stage"])
        with _REG_LOCK:
            regs = list(_REGISTERED)
        for m in regs:
            s = m.snapshot()
            for kind, n in s["counts"].items():
                msgs.add_metric([m.service, kind], n)
            for reason, n in s["rejects"].items():
                rej.add_metric([m.service, reason], n)
            pend.add_metric([m.service], s["pending"])
            plim.add_metric([m.service], m.pending_limit)
            drop.add_metric([m.service], s["dropped"])
            slow.add_metric([m.service], s["slow_consumer_events"])
            thr.add_metric([m.service], s["throttled"])
            for stage, summ in s["stages"].items():
                for q in QUANTILES:
                    lat.add_metric([m.service, stage, f"{q / 100:g}"], summ[f"p{q:g}"] / 1e9)
                lat_sum.add_metric([m.service, stage], summ["count"], summ["mean"] * summ["count"] / 1e9)
        yield from (msgs, rej, pend, plim, drop, slow, thr, lat, lat_sum)

    def describe(self) -> list[Any]:
        return []  # dynamic: no registration-time description (prometheus_client then skips collect at register)


_COLLECTOR: _Collector | None = None


def register(m: Metrics) -> None:
    """Export ``m`` on the process's Prometheus registry (idempotent)."""
    with _REG_LOCK:
        if m not in _REGISTERED:
            _REGISTERED.append(m)


def unregister(m: Metrics) -> None:
    with _REG_LOCK:
        if m in _REGISTERED:
            _REGISTERED.remove(m)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` on ``host:port`` (port 0 = pick a free one) from a daemon thread; returns the port.

    Uses a private ``CollectorRegistry`` holding only lowlat's collector.  Raises ``MissingExtraError`` when
    ``prometheus_client`` is absent.
    """
    global _COLLECTOR
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise MissingExtraError("/metrics needs prometheus_client: pip install 'lowlat[metrics]'") from None
    key = (host, port)
    if port and key in _SERVERS:
        return port
    reg = CollectorRegistry(auto_describe=False)
    if _COLLECTOR is None:
        _COLLECTOR = _Collector()
    reg.register(_COLLECTOR)  # type: ignore[arg-type]
    server, _thread = start_http_server(port, addr=host, registry=reg)
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
