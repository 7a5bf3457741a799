"""``lowlat demo``: validator + matching service + market-data consumer + load generator, one process.

Flow: the load generator publishes orders on ``orders.in`` at a constant rate; the validator validates them in
batches, publishes each ``ValidationResult`` (the generator measures latency from the intended send time) and
forwards accepted orders to ``orders.match.<SYMBOL>``; the matching service fills them, publishes execution
reports, trades and L2 updates; a market-data consumer keeps a local book of one symbol from snapshot + deltas.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any, TextIO

from ..transport import connect
from .config import ServiceConfig
from .loadgen import LoadGenerator, LoadResult, print_progress
from .marketdata import MarketDataConsumer
from .metrics import LatencyHistogram, Metrics

__all__ = ["fmt_ns", "format_report", "plot_latency", "run_demo"]

log = logging.getLogger("lowlat.services.demo")


def fmt_ns(ns: float) -> str:
    """Human latency: ns / µs / ms with 3 significant digits."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns / 1e6:.3g} ms"


def format_report(res: LoadResult, metrics: list[Metrics] | None = None, extra: dict[str, Any] | None = None,
                  title: str = "lowlat demo") -> str:
    lines = [f"== {title}: latency from intended send time to validation result (no coordinated omission)"]
    s = res.latency.summary()
    lines.append("   " + "  ".join(f"{k} {fmt_ns(s[k])}" for k in ("p50", "p90", "p99", "p99.9", "max")))
    st = res.service_time.summary()
    lines.append("   (from actual send: " + "  ".join(f"{k} {fmt_ns(st[k])}" for k in ("p50", "p99", "max")) + ")")
    lines.append(f"== throughput: {res.throughput:,.0f} orders/s answered (target {res.target_rate:,.0f}/s); "
                 f"sent {res.sent:,}, answered {res.answered:,}, unanswered {res.unanswered:,}, "
                 f"duplicates {res.duplicates:,}, elapsed {res.elapsed_s:.2f} s")
    if res.cpu_s:
        busy = res.cpu_s / res.elapsed_s * 100 if res.elapsed_s else 0.0
        lines.append(f"== cpu: {fmt_ns(res.cpu_per_order_ns)} per order ({res.cpu_s:.2f} s of this process's CPU, "
                     f"all threads, for {res.sent:,} orders; {busy:.0f} % of one core)")
    total_rej = sum(res.rejects.values())
    lines.append(f"== accepted {res.accepted:,}, rejected {total_rej:,}"
                 + (" by reason:" if total_rej else ""))
    for name, n in sorted(res.rejects.items(), key=lambda kv: -kv[1]):
        from ..enums import Reject

        try:
            why = Reject[name].reason
        except KeyError:
            why = ""
        lines.append(f"   {name:<20} {n:>9,}  {why}")
    for m in metrics or []:
        snap = m.snapshot()
        c = snap["counts"]
        stages = "  ".join(f"{k} p50 {fmt_ns(v['p50'])} p99 {fmt_ns(v['p99'])}" for k, v in snap["stages"].items()
                           if v["count"])
        batches = c.get("batches", 0)
        avg = c.get("in", 0) / batches if batches else 0
        lines.append(f"== {m.service}: in {c.get('in', 0):,} in {batches:,} batches (avg {avg:.1f}/batch); "
                     + ", ".join(f"{k} {v:,}" for k, v in c.items() if k not in ("in", "batches")))
        if stages:
            lines.append(f"   stages (per order): {stages}")
        if snap["dropped"]:
            lines.append(f"   SLOW CONSUMER: {snap['dropped']:,} messages dropped")
    for k, v in (extra or {}).items():
        lines.append(f"== {k}: {v}")
    return "\n".join(lines)


def plot_latency(curves: dict[str, LatencyHistogram], path: str, title: str = "lowlat latency") -> str:
    """Write a latency-by-percentile PNG (log axes, HdrHistogram style) with one line per histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, h in curves.items():
        if not h.count:
            continue
        ps, vs = h.curve()
        xs = [1.0 / (1.0 - p / 100.0) if p < 100 else 1e6 for p in ps]
        ax.plot(xs, [v / 1e3 for v in vs], marker="o", ms=3, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


async def _stop_on(stop: asyncio.Event, lg: LoadGenerator) -> None:
    await stop.wait()
    lg.stop()


async def run_demo(cfg: ServiceConfig, *, plot: str | None = "lowlat-demo-latency.png", out: TextIO | None = None,
                   progress: bool = True, stop: asyncio.Event | None = None,
                   connect_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the demo on ``cfg.transport`` for ``cfg.duration_s`` (or ``cfg.count`` orders) at ``cfg.rate``/s.

    ``stop`` (set it, e.g. on Ctrl-C) ends the load early; the report then covers what was sent.
    ``connect_options`` go to ``connect`` (e.g. ``bind=True`` for the ZeroMQ hub).
    Returns ``{"result": LoadResult, "report": str, "plot": path or None, ...}`` and prints the report.
    """
    from .matcher import MatcherService
    from .validator import ValidatorService

    out = out or sys.stdout
    cfg = cfg.replace(publish_results=True, forward=True, mode="pipeline")
    t = connect(cfg.transport, **(connect_options or {}))
    await t.connect()
    validator = ValidatorService(cfg)
    matcher = MatcherService(cfg)
    try:
        await matcher.start(t)
        await validator.start(t)
        md = MarketDataConsumer(t, cfg.symbols[0], prefix=cfg.md_prefix, query_prefix=cfg.query_prefix)
        await md.start()
        md_task = asyncio.get_running_loop().create_task(md.run(seconds=cfg.duration_s + 60))
        lg = LoadGenerator(t, cfg, progress=print_progress(sys.stderr) if progress else None)
        print(f"lowlat demo: {lg.total:,} orders at {cfg.rate:,.0f}/s on {cfg.transport} "
              f"(validator + matcher + market data in one process; pid {os.getpid()})", file=out, flush=True)
        relay = asyncio.get_running_loop().create_task(_stop_on(stop, lg)) if stop is not None else None
        try:
            res = await lg.run()
        finally:
            if relay is not None:
                relay.cancel()
        if progress and sys.stderr.isatty():
            sys.stderr.write("\n")
        # let the matcher finish what the validator forwarded, then stop intake and drain
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end and matcher.metrics.counts.get("in", 0) < validator.metrics.counts.get(
                "forwarded", 0):
            await asyncio.sleep(0.01)
        await validator.stop()
        await matcher.stop()
        await asyncio.sleep(0.05)
        md_task.cancel()
        await asyncio.gather(md_task, return_exceptions=True)
        await md.close()
    finally:
        await t.close()
    bb, ba = md.book.best_bid(), md.book.best_ask()
    extra = {
        f"market data {md.symbol}": (f"{md.updates:,} L2 deltas applied, seq {md.book.seq:,}, gaps {md.book.gaps}, "
                                     f"resyncs {md.book.resyncs}, best bid {bb} / ask {ba}"),
    }
    report = format_report(res, [validator.metrics, matcher.metrics], extra)
    path = None
    if plot:
        curves = {"order → validation result": res.latency,
                  "validator: receive wait (oldest in batch)": validator.metrics.stage("receive")}
        path = plot_latency(curves, plot, f"lowlat demo on {cfg.transport} at {cfg.rate:,.0f} orders/s")
        report += f"\n== latency plot: {path}"
    print(report, file=out, flush=True)
    return {"result": res, "report": report, "plot": path, "validator": validator.metrics,
            "matcher": matcher.metrics, "md": md}
