"""Service runtime: batched intake, back-pressure, rate limiting, structured logging, graceful shutdown.

Shutdown order on SIGTERM/SIGINT (``run_services``): every service stops intake (unsubscribes, so the broker or
ring stops delivering to it), finishes its in-flight batch and what is already pending in its subscriptions,
then the transport is flushed and closed.  A message a service has taken in is therefore answered before exit;
messages never delivered stay with the broker (queue-group peers get them).  What the drain timeout cuts off is
counted (``drain_dropped``) and logged at ERROR.

Broker outages: a NATS service keeps reconnecting (``reconnect_attempts``, default forever); the adapter logs
each disconnect/reconnect at WARNING and the state is exported (``lowlat_transport_connected``, ``/healthz``).
When the transport is closed for good (attempts exhausted, credentials refused), ``run_services`` stops the
services and raises ``TransportLostError``: the CLI logs one ERROR line and exits with status 3.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._redact import redact_url
from ..errors import TransportClosedError, TransportError
from ..transport import Message, Subscription, Transport
from ..transport.base import Capability, MessageBatch
from ._loop import loop_name
from .affinity import pin_service_threads
from .config import ServiceConfig
from .gcquiet import gc_pauses, parse_thresholds, quiet_gc, restore_gc
from .metrics import Metrics, enable_otel, register, start_metrics_server

__all__ = ["BatchService", "RateLimiter", "TransportLostError", "log", "next_batch", "run_services", "setup_logging",
           "transport_connected"]

log = logging.getLogger("lowlat.services")


class TransportLostError(TransportClosedError):
    """The services' transport was closed for good while they ran (not by a shutdown request)."""


def transport_connected(t: Any) -> bool:
    """True while ``t`` is usable: NATS reports ``state``; other adapters are connected until closed."""
    state = getattr(t, "state", None)
    if state is not None:
        return state == "connected"
    return not getattr(t, "closed", False)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and any ``extra=`` fields."""

    _std = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname,
                               "logger": record.name, "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in self._std and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", json_lines: bool = True, stream: Any = None) -> None:
    """Configure logging for a program that runs services (the CLI calls it; a library user need not).

    One handler on the root logger (text or one JSON object per line, on stderr), replacing the one an earlier
    call added, and ``level`` on the ``lowlat`` logger.  Importing lowlat adds no handler and changes no
    propagation: an application that configures logging itself receives lowlat's records as usual.
    Services log per batch/event, never per message at INFO.
    """
    logging.getLogger("lowlat").setLevel(level.upper())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_lowlat", False):
            root.removeHandler(h)
    h = logging.StreamHandler(stream or sys.stderr)
    h._lowlat = True  # type: ignore[attr-defined]
    h.setFormatter(_JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(h)


class RateLimiter:
    """Token bucket: at most ``rate`` messages/s on average, bursts up to ``burst``.  ``rate <= 0`` = unlimited.

    ``acquire(n)`` sleeps (asyncio) only when the bucket is empty; it returns the seconds waited.
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, self.rate / 10))
        self.tokens = self.burst
        self.t = time.monotonic()

    async def acquire(self, n: int = 1) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= n
        if self.tokens >= 0:
            return 0.0
        wait = -self.tokens / self.rate
        await asyncio.sleep(wait)
        return wait


async def next_batch(sub: Subscription, max_n: int) -> list[Message]:
    """Wait for one message, then take whatever else is already pending (up to ``max_n``) without waiting.

    This is how services batch under load: when idle a batch has one message (lowest latency); when busy,
    batches grow to ``max_n`` and the per-message cost is amortised over one nogil call.  Raises
    ``StopAsyncIteration`` when the subscription ends.
    """
    first = await sub.__anext__()
    batch = [first]
    get_nowait = getattr(sub, "get_nowait", None)  # QueueSubscription: no await per pending message
    if get_nowait is not None:
        while len(batch) < max_n:
            m = get_nowait()
            if m is None:
                break
            batch.append(m)
    else:
        while len(batch) < max_n and sub.pending > 0:
            batch.append(await sub.__anext__())
    return batch


class BatchService:
    """Base class: subscribe to subjects, process messages in batches, stop intake and drain on ``stop``.

    Subclasses implement ``subjects()`` → ``[(subject, queue)]`` and ``async handle(subject, batch)``.
    """

    name = "service"

    def __init__(self, cfg: ServiceConfig, *, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics(self.name)
        self.transport: Transport | None = None
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: dict[asyncio.Task[None], bool] = {}
        self._stopping = False
        self._limiter = RateLimiter(cfg.rate_limit) if cfg.rate_limit > 0 else None
        self._overloaded = False
        self._slow_logged = (-1e9, 0)  # (monotonic s, dropped) at the last slow-consumer line
        self._inflight: dict[asyncio.Task[None], int] = {}  # per intake loop: the batch taken in, not yet done
        self.processed = 0
        self._stage_thread: Any = None  # a StageThread while the stage runs in one (start)
        self._inline: list[Any] = []    # inline subscriptions (cfg.inline on inproc://)

    # --- subclass API ---
    def subjects(self) -> Sequence[tuple[str, str | None]]:
        raise NotImplementedError

    async def handle(self, subject: str, batch: list[Message]) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        """Hook: extra tasks (read side, snapshots) after subscriptions exist."""

    async def on_stop(self) -> None:
        """Hook: after intake stopped and pending work drained, before the transport is flushed."""

    # --- lifecycle ---
    def sync_stage_handler(self) -> Callable[[MessageBatch, Any], None] | None:
        """``handle(batch, transport)``: the service's stage over one batch, published with the transport's
        ``publish_batch_sync`` (no coroutine), for a stage thread (``cfg.stage_thread`` on ``shm://``,
        ``services._stage_thread``) or an inline subscription (``cfg.inline`` on ``inproc://``); None (the
        default): the service has no such path."""
        return None

    async def start(self, transport: Transport) -> None:
        """Subscribe to ``subjects()`` and serve each from an intake task; or, where ``sync_stage_handler`` gives
        one, inline (``cfg.inline`` on ``inproc://``) or from one stage thread subscribed to all of them
        (``cfg.stage_thread`` on ``shm://``)."""
        handler = self.sync_stage_handler()
        if handler is not None and self.cfg.inline and hasattr(transport, "subscribe_inline"):
            if self._limiter is None:
                await self._start_inline(transport, handler)
                return
            log.warning("inline is off with rate_limit: the stage runs from its intake task",
                        extra={"service": self.name})
        if handler is not None:
            from ._stage_thread import stage_thread_wanted, start_stage_thread

            if stage_thread_wanted(self, transport):
                subs = self.subjects()
                self._stage_thread = await start_stage_thread(self, transport, [s for s, _ in subs],
                                                              subs[0][1] if subs else None, handler)
                return
        self.transport = transport
        self.metrics.transport = transport
        for subject, queue in self.subjects():
            opts: dict[str, Any] = {}
            if self.cfg.max_pending:
                opts["max_pending"] = self.cfg.max_pending
            if queue and Capability.QUEUE_GROUPS not in transport.capabilities:
                # e.g. ZeroMQ has no queue groups: serve alone on the subject, and say so
                log.warning("transport has no queue groups; subscribing without one",
                            extra={"service": self.name, "subject": subject, "queue": queue})
                queue = None
            sub = await transport.subscribe(subject, queue=queue, **opts)
            self._subs.append(sub)
            task = asyncio.get_running_loop().create_task(self._loop(subject, sub), name=f"{self.name}:{subject}")
            self._tasks.append(task)
        await self.on_start()
        log.info("service started", extra={"service": self.name, "transport": redact_url(transport.url),
                                           "subjects": [s for s, _ in self.subjects()]})

    async def _start_inline(self, transport: Any, handler: Callable[[MessageBatch, Any], None]) -> None:
        # cfg.inline: every subject served by an inline subscription, the stage run inside the publisher's call
        self.transport = transport
        self.metrics.transport = transport
        m = self.metrics

        def run(batch: MessageBatch) -> None:
            try:
                handler(batch, transport)
            except Exception:  # one bad batch must not reach the publisher; logged and counted as on the loop
                log.exception("batch failed", extra={"service": self.name, "n": batch.n})
                m.inc("batch_errors")

        for subject, queue in self.subjects():
            self._inline.append(transport.subscribe_inline(subject, run, queue=queue))
        await self.on_start()
        log.info("service started", extra={"service": self.name, "transport": redact_url(transport.url),
                                           "subjects": [s for s, _ in self.subjects()], "inline": True})

    async def _loop(self, subject: str, sub: Subscription) -> None:
        me = asyncio.current_task()
        assert me is not None
        m = self.metrics
        # compiled stages take a MessageBatch; at-least-once intake (Kafka commits) keeps the Message path,
        # whose messages carry the ack the batch does not
        t = self.transport
        assert t is not None
        handle_batch = getattr(self, "handle_batch", None)
        if t.url.startswith("kafka"):
            handle_batch = None
        while True:
            if self._stopping and sub.pending <= 0 and sub.__dict__.get("_held") is None:
                return
            self._waiting[me] = True
            batch: MessageBatch | list[Message]
            try:
                if handle_batch is not None:  # compiled stage: one MessageBatch, no Message object per message
                    batch = await sub.next_batch(self.cfg.batch_max)
                else:
                    batch = await next_batch(sub, self.cfg.batch_max)
            except (StopAsyncIteration, TransportClosedError):
                return
            finally:
                self._waiting[me] = False
            n = len(batch)
            if n == 0:
                continue
            self._inflight[me] = n  # taken in: from here a cut-off drain counts it as dropped
            pend = sub.pending
            dropped = sub.dropped
            self._check_overload(subject, pend, dropped, m.observe_pending(pend, self.cfg.max_pending, dropped))
            if self._limiter is not None and await self._limiter.acquire(n):
                m.throttled += 1
            try:
                if isinstance(batch, list):
                    await self.handle(subject, batch)
                    if batch[-1]._ack is not None:
                        await self._ack_answered(batch)
                else:
                    assert handle_batch is not None
                    await handle_batch(subject, batch)
            except Exception:  # one bad batch must not kill the worker; the error is logged, not hidden
                log.exception("batch failed", extra={"service": self.name, "subject": subject, "n": n})
                m.inc("batch_errors")
            self._inflight[me] = 0
            self.processed += n

    async def _ack_answered(self, batch: list[Message]) -> None:
        """At-least-once intake (Kafka consumer groups): once a batch is handled, flush what it published (its
        answers are with the broker) and then ack (commit) its messages.  A crash before the commit means the
        batch is handled again after a restart: the duplicate window is the batches handled since the last commit
        (Kafka: one consumer poll interval, ≤ 50 ms, plus the batch in flight)."""
        t = self.transport
        assert t is not None
        try:
            await t.flush()
        except TransportError as e:  # an answer the broker refused (e.g. a reply topic that does not exist)
            self.metrics.inc("publish_errors")
            log.error("publish failed before commit", extra={"service": self.name, "error": str(e)[:300]})
        for msg in batch:
            await msg.ack()
        self.metrics.inc("acked", len(batch))

    def _check_overload(self, subject: str, pending: int, dropped: int, dropped_grew: bool) -> None:
        limit = self.cfg.max_pending
        high = limit and pending >= limit * 0.8
        if high and not self._overloaded:
            self._overloaded = True
            log.warning("overloaded: pending near limit", extra={"service": self.name, "subject": subject,
                                                                  "pending": pending, "limit": limit})
        elif self._overloaded and not high and pending < limit * 0.2:
            self._overloaded = False
            log.info("overload cleared", extra={"service": self.name, "subject": subject, "pending": pending})
        if dropped_grew:
            # one line per 5 s at most, with the counts since the previous one (drops come in bursts)
            now = time.monotonic()
            if now - self._slow_logged[0] >= 5.0:
                log.error("slow consumer: transport dropped messages",
                          extra={"service": self.name, "subject": subject, "dropped": dropped,
                                 "dropped_since_last": dropped - self._slow_logged[1], "pending": pending})
                self._slow_logged = (now, dropped)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop intake, finish in-flight and pending work (bounded by ``timeout`` s), then run ``on_stop``."""
        if self._stopping:
            return
        if self._stage_thread is not None:
            from ._stage_thread import stop_stage_thread

            await stop_stage_thread(self, self._stage_thread, timeout)
        for sink in self._inline:  # nothing is pending in an inline subscription: stopping it is the drain
            sink.close()
        self._stopping = True
        timeout = self.cfg.drain_timeout_s if timeout is None else timeout
        connected = self.transport is None or transport_connected(self.transport)
        for sub in self._subs:
            if not connected:  # nothing can be drained from a broker we are not connected to
                sub.close_nowait()
                continue
            # stop intake: nothing new is delivered to us.  drain() keeps what is already pending (we answer it);
            # plain unsubscribe() would discard it.
            try:
                await asyncio.wait_for(sub.drain(), timeout)
            except Exception as e:  # noqa: BLE001 - still stop intake, keeping what is pending
                log.warning("subscription drain failed", extra={"service": self.name, "error": repr(e)})
                sub.close_nowait()
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            live = [t for t in self._tasks if not t.done()]
            if not live:
                break
            # a loop parked in next_batch with nothing pending has nothing left to do: wake it
            for t, sub in zip(self._tasks, self._subs):
                if not t.done() and self._waiting.get(t) and sub.pending <= 0:
                    t.cancel()
            await asyncio.wait(live, timeout=0.02)
        leftover = [t for t in self._tasks if not t.done()]
        # what the timeout cuts off: the batch being handled (its answers may be partial) + what is still pending
        in_flight = sum(self._inflight.values())
        cut = in_flight + sum(max(0, s.pending) for s in self._subs) if leftover else 0
        for t in leftover:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if cut:
            self.metrics.inc("drain_dropped", cut)
            log.error("drain timed out: messages taken in were not answered",
                      extra={"service": self.name, "dropped": cut, "in_flight": in_flight,
                             "drain_timeout_s": timeout})
        await self.on_stop()
        log.info("service stopped", extra={"service": self.name, "processed": self.processed,
                                           "drain_timed_out": bool(leftover), "drain_dropped": cut})


async def run_services(cfg: ServiceConfig, services: Iterable[BatchService], *,
                       transport: Transport | None = None, stop_event: asyncio.Event | None = None,
                       install_signals: bool = True, on_ready: Any = None, registry: Any = None) -> None:
    """Run services on one transport until SIGTERM/SIGINT (or ``stop_event``), then shut down gracefully.

    Order: stop intake + drain each service, flush the transport, close it.  Starts ``/metrics`` when
    ``cfg.metrics_port`` is set, serving ``registry`` (the application's own ``prometheus_client``
    ``CollectorRegistry``, lowlat's metrics added to it) or by default a private registry with lowlat's metrics
    and the process/platform collectors.  ``on_ready()`` is called once every service is subscribed.
    """
    from ..transport import connect

    services = list(services)
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop_event.set)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
    if cfg.otel:
        enable_otel(",".join(s.name for s in services))
    for s in services:
        register(s.metrics)
    if cfg.metrics_port:
        port = start_metrics_server(cfg.metrics_port, cfg.metrics_host, registry=registry)
        log.info("metrics endpoint", extra={"url": f"http://{cfg.metrics_host}:{port}/metrics"})
    gc_pauses().install()
    gc_state: dict[str, Any] | None = None
    own = transport is None
    t = transport or connect(cfg.transport, **({"bind": True} if cfg.bind else {}), **cfg.connect_options())
    if own:
        await t.connect()
    try:
        for s in services:
            await s.start(t)
        await t.flush()  # our subscriptions are known to the broker/bus before anyone is told we are ready
        if cfg.cpus or cfg.hot_cpus or cfg.rt_priority:
            # after start: the helper threads the services and the transport started exist now and are re-pinned
            placement = pin_service_threads(cfg.cpus, cfg.hot_cpus, cfg.rt_priority)
            log.info("cpu placement", extra={"threads": placement, "rt_priority": cfg.rt_priority})
        if cfg.gc_quiet:  # start-up allocated what the service keeps: freeze it, collect rarely from here on
            gc_state = quiet_gc(parse_thresholds(cfg.gc_thresholds))
            log.info("gc quiet", extra={"frozen_objects": gc_state["frozen"], "thresholds": cfg.gc_thresholds})
        log.info("ready", extra={"services": [s.name for s in services], "event_loop": loop_name()})
        if on_ready is not None:
            on_ready()
        lost: asyncio.Event | None = getattr(t, "lost", None)
        waits = [asyncio.ensure_future(stop_event.wait())]
        if isinstance(lost, asyncio.Event):
            waits.append(asyncio.ensure_future(lost.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if lost is not None and lost.is_set() and not stop_event.is_set():
            for s in services:
                await s.stop(timeout=0)
            why = getattr(t, "lost_reason", None) or "closed"
            raise TransportLostError(f"transport {redact_url(t.url)} closed for good ({why}); "
                                     f"{sum(s.processed for s in services)} messages were processed")
        log.info("shutdown requested: stopping intake and draining")
        for s in services:
            await s.stop()
        if transport_connected(t):
            try:
                await t.flush()
            except TransportError as e:  # the broker went away during the drain: what we sent is lost with it
                log.error("final flush failed", extra={"error": str(e)})
    finally:
        if gc_state is not None:
            restore_gc(gc_state)
        if own:
            await t.close()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
    log.info("shutdown complete", extra={"processed": {s.name: s.processed for s in services}})
