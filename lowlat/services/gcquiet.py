"""A quiet garbage collector for long-running services, and its pauses as metrics.

The hot paths allocate (almost) nothing per message, so the cyclic collector has little to find; what it costs is
the pause of walking objects that will never be garbage: the modules, the compiled stages, the books and the
buffers created at start-up.  After start-up ``quiet_gc`` collects once, then ``gc.freeze()`` moves every live
object into the permanent generation (no later collection walks them again) and raises the generational thresholds
so young collections run rarely (a gen-0 pass over 10 000 surviving objects takes ~0.2 ms here, and most objects
of a low-allocation service die by reference counting before the threshold is reached).  ``restore_gc`` undoes it.

``GcPauses`` times every collection through ``gc.callbacks`` (two calls of a few hundred ns per collection, never
per message) and exports ``lowlat_gc_pause_seconds`` (a histogram per generation: ``_count`` is the number of
pauses, ``_sum`` their total time), ``lowlat_gc_collected`` (objects freed) and ``lowlat_gc_frozen_objects``.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

from .metrics import LatencyHistogram

__all__ = ["DEFAULT_THRESHOLDS", "GcPauses", "gc_pauses", "parse_thresholds", "quiet_gc", "restore_gc"]

#: gen0, gen1, gen2 thresholds for a long-running, low-allocation service (CPython's default is 700, 10, 10)
DEFAULT_THRESHOLDS = (10_000, 20, 100)


def parse_thresholds(text: str) -> tuple[int, int, int]:
    """``"10000,20,100"`` -> ``(10000, 20, 100)``; ``ValueError`` unless three integers, gen0 in 1..10^9 and the
    others in 0..10^6 (``gc.set_threshold(0)`` would turn the collector off: that is not "quiet")."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"{text!r} is not three integers gen0,gen1,gen2 (e.g. 10000,20,100)") from None
    if len(vals) != 3:
        raise ValueError(f"{text!r} is not three integers gen0,gen1,gen2 (e.g. 10000,20,100)")
    if not 1 <= vals[0] <= 10**9 or not all(0 <= v <= 10**6 for v in vals[1:]):
        raise ValueError(f"{text!r} is out of range (gen0 1..1000000000, gen1 and gen2 0..1000000)")
    return vals[0], vals[1], vals[2]


class GcPauses:
    """Pause time and count of every collection of this process, per generation (0, 1, 2)."""

    def __init__(self) -> None:
        self.hist = [LatencyHistogram(f"gc{g}") for g in range(3)]
        self.collected = [0, 0, 0]
        self.uncollectable = [0, 0, 0]
        self._t0 = 0
        self._lock = threading.Lock()

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
            return
        dt = time.perf_counter_ns() - self._t0
        g = info.get("generation", 2)
        if 0 <= g < 3:
            self.hist[g].record(dt)
            self.collected[g] += info.get("collected", 0)
            self.uncollectable[g] += info.get("uncollectable", 0)

    def install(self) -> GcPauses:
        """Start timing collections (idempotent)."""
        with self._lock:
            if self._callback not in gc.callbacks:
                gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        with self._lock:
            while self._callback in gc.callbacks:
                gc.callbacks.remove(self._callback)

    @property
    def installed(self) -> bool:
        return self._callback in gc.callbacks

    def pauses(self, generation: int | None = None) -> int:
        """Collections timed (of one generation, or all)."""
        gens = range(3) if generation is None else (generation,)
        return sum(self.hist[g].count for g in gens)

    def pause_ns(self, generation: int | None = None) -> float:
        """Total pause time (ns) of the collections timed."""
        gens = range(3) if generation is None else (generation,)
        return sum(self.hist[g].sum_ns for g in gens)

    def snapshot(self) -> dict[str, Any]:
        return {"pauses": [h.count for h in self.hist], "pause_ns": [h.sum_ns for h in self.hist],
                "max_ns": [int(h.h.max) for h in self.hist], "collected": list(self.collected),
                "frozen": gc.get_freeze_count(), "thresholds": list(gc.get_threshold())}

    def families(self) -> Iterator[Any]:
        """Prometheus metric families (nothing until ``install``)."""
        if not self.installed:
            return
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        pause = HistogramMetricFamily("lowlat_gc_pause_seconds", "Garbage-collector pauses of this process, by "
                                      "generation (_count: pauses, _sum: total time)", labels=["generation"])
        coll = CounterMetricFamily("lowlat_gc_collected", "Objects the garbage collector freed",
                                   labels=["generation"])
        for g in range(3):
            h = self.hist[g]
            pause.add_metric([str(g)], h.prometheus_buckets(), h.sum_ns / 1e9)
            coll.add_metric([str(g)], self.collected[g])
        frozen = GaugeMetricFamily("lowlat_gc_frozen_objects", "Objects in the permanent generation (gc.freeze)")
        frozen.add_metric([], gc.get_freeze_count())
        thr = GaugeMetricFamily("lowlat_gc_threshold", "Generational thresholds", labels=["generation"])
        for g, v in enumerate(gc.get_threshold()):
            thr.add_metric([str(g)], v)
        yield from (pause, coll, frozen, thr)


_PAUSES = GcPauses()


def gc_pauses() -> GcPauses:
    """The process-wide ``GcPauses`` (what ``/metrics`` exports once it is installed)."""
    return _PAUSES


def quiet_gc(thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS, *, freeze: bool = True) -> dict[str, Any]:
    """Collect once, freeze what survives (``freeze``) and set ``thresholds``; returns the previous state for
    ``restore_gc`` plus what was done (``frozen`` objects)."""
    before = {"thresholds": gc.get_threshold(), "enabled": gc.isenabled(), "frozen_before": gc.get_freeze_count()}
    gc.collect()
    if freeze:
        gc.freeze()
    gc.set_threshold(*thresholds)
    gc.enable()
    before["frozen"] = gc.get_freeze_count()
    before["froze"] = freeze
    return before


def restore_gc(state: dict[str, Any]) -> None:
    """Undo ``quiet_gc``: previous thresholds; objects frozen by it go back to the collected generations."""
    gc.set_threshold(*state["thresholds"])
    if state.get("froze") and not state.get("frozen_before"):
        gc.unfreeze()
    if not state.get("enabled", True):
        gc.disable()
