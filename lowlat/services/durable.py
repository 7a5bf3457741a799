"""At-least-once services on NATS JetStream, with results deduplicated by order id (nothing lost, nothing twice).

- **Validator** (stateless): N instances bind one durable pull consumer on the orders stream (work-queue style).
  Per fetched batch: ``ValidatorService.handle`` runs unchanged; its results/forwards are published to JetStream
  with a ``Nats-Msg-Id`` derived from the order id (:class:`IdempotentPublisher`), the publisher waits for every
  PubAck, and only then are the inputs acked.  A worker killed with ``kill -9`` leaves its batch unacked: the
  server redelivers it to another member after ``ack_wait``; the re-sent results carry the same ids and the
  results stream drops them.
- **Matcher** (stateful, one instance per symbol shard): a :class:`~lowlat.services.journal.DurableMatcher`
  reading its symbols' intake stream *by position* (no acks): the position of the last journaled batch is
  in the journal, so a restarted instance restores its snapshot, replays the journal tail (re-publishing its
  outputs, which the output stream deduplicates: execution-report ids are (symbol, order, status, trade, cum)),
  and continues at the next position.  Book state is deterministic given the input order, so the outputs are the
  same as an uninterrupted run.

A broker restart is survived by reconnecting (``max_reconnect_attempts=-1``) and retrying publishes with the
same ids; JetStream's file store keeps the streams.  Run as ``python -m lowlat.services.durable validator|matcher``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import _core
from ..errors import DecodeError, LowlatError, TransportError
from .config import ServiceConfig, load_config

__all__ = ["STREAMS", "IdempotentPublisher", "ensure_streams", "msg_id_for", "run_matcher", "run_validator"]

log = logging.getLogger("lowlat.services.durable")

#: stream name -> subjects (for the default ``ServiceConfig`` subjects; ``ensure_streams`` derives them from cfg)
STREAMS = {"ORDERS": ["orders.in"], "MATCH": ["orders.match.>"], "RESULTS": ["orders.validated", "orders.rejected"],
           "EXEC": ["exec.>"]}


def _result_id(payload: Any) -> str | None:
    r = _core.decode_validation_result(payload)
    return f"v:{r[0]}" if r[0] else None  # a MALFORMED order has no id: nothing to dedupe on


def _order_id(payload: Any) -> str | None:
    oid = _core.read_order(payload)[0]
    return f"o:{oid}"


def _exec_id(payload: Any) -> str | None:
    r = _core.decode_execution_report(payload)
    return f"x:{r.symbol}:{r.order_id}:{r.status}:{r.trade_id}:{int(r.is_maker)}:{r.cum_quantity}:{r.reason}"


def _trade_id(payload: Any) -> str | None:
    r = _core.decode_trade(payload)
    return f"t:{r.symbol}:{r.trade_id}"


_KINDS: dict[str, Callable[[Any], str | None]] = {"result": _result_id, "order": _order_id, "exec": _exec_id,
                                                 "trade": _trade_id}


def msg_id_for(kind: str, payload: Any) -> str | None:
    """The ``Nats-Msg-Id`` of an output: ``result`` (ValidationResult), ``order`` (Order), ``exec``
    (ExecutionReport), ``trade`` (Trade).  None when the payload has no stable identity."""
    try:
        return _KINDS[kind](payload)
    except DecodeError:
        return None


class IdempotentPublisher:
    """A transport facade handed to a service's ``handle``: publishes on durable subjects go to JetStream.

    ``routes`` maps a subject (exact) or prefix (ending in ``.``) to a ``msg_id_for`` kind.  Durable publishes
    are started at once (concurrently); :meth:`commit` waits for all their PubAcks, re-sending failed ones with
    the same id until ``retry_s`` passes (broker restart, fail-over).  Other publishes pass through (core NATS).
    """

    def __init__(self, transport: Any, routes: dict[str, str], *, retry_s: float = 60.0) -> None:
        self.t = transport
        self.routes = routes
        self.retry_s = retry_s
        self._pending: list[tuple[str, Any, str | None, asyncio.Task[Any]]] = []
        self.published = 0
        self.duplicates = 0
        self.retries = 0

    def __getattr__(self, name: str) -> Any:  # url, closed, serve, subscribe, flush, ... of the real transport
        return getattr(self.t, name)

    def _kind(self, subject: str) -> str | None:
        k = self.routes.get(subject)
        if k is not None:
            return k
        for p, kind in self.routes.items():
            if p.endswith(".") and subject.startswith(p):
                return kind
        return None

    def _send(self, subject: str, payload: Any, mid: str | None) -> asyncio.Task[Any]:
        return asyncio.ensure_future(self.t.js_publish(subject, payload, msg_id=mid, timeout=2.0))

    async def publish(self, subject: str, payload: Any, **kw: Any) -> None:
        kind = self._kind(subject)
        if kind is None:
            try:
                await self.t.publish(subject, payload, **kw)
            except TransportError:  # core NATS is at-most-once: a publish during a reconnect may be lost
                pass
            return
        payload = bytes(payload)
        mid = msg_id_for(kind, payload)
        self._pending.append((subject, payload, mid, self._send(subject, payload, mid)))

    async def publish_batch(self, subject: str, payloads: Sequence[Any]) -> None:
        for p in payloads:
            await self.publish(subject, p)

    async def publish_batch_to(self, batch: Any, subject: str | None = None) -> int:
        """A compiled stage's output batch: each message to ``subject`` or its own reply subject, routed as
        ``publish`` routes it (not passed through: durable subjects must get their message ids)."""
        sent = 0
        for i in range(batch.n):
            to = subject or batch.reply(i)
            if to:
                await self.publish(to, batch.payload(i))
                sent += 1
        return sent

    async def commit(self) -> None:
        """Wait until every durable publish since the last commit is acked (stored or a known duplicate)."""
        deadline = time.monotonic() + self.retry_s
        todo = self._pending
        self._pending = []
        while todo:
            await asyncio.wait([x[3] for x in todo])
            failed = []
            for subject, payload, mid, task in todo:
                exc = task.exception()
                if exc is None:
                    self.published += 1
                    self.duplicates += bool(getattr(task.result(), "duplicate", False))
                else:
                    failed.append((subject, payload, mid))
            if not failed:
                return
            if time.monotonic() > deadline:
                raise TransportError(f"{len(failed)} durable publishes not acked after {self.retry_s}s")
            self.retries += len(failed)
            await asyncio.sleep(0.2)
            todo = [(s, p, m, self._send(s, p, m)) for s, p, m in failed]


async def ensure_streams(t: Any, cfg: ServiceConfig, *, replicas: int = 1, duplicate_window: float = 600.0) -> None:
    """Create the file-backed streams of the durable pipeline (idempotent)."""
    subjects = {"ORDERS": [cfg.orders_subject], "MATCH": [f"{cfg.match_prefix}.>"],
                "RESULTS": [cfg.validated_subject, cfg.rejected_subject], "EXEC": [f"{cfg.exec_prefix}.>"]}
    for name, subj in subjects.items():
        await t.log_ensure(name, subj, replicas=replicas, duplicate_window=duplicate_window)


def _connect(url: str, **options: Any) -> Any:
    from ..transport import connect

    options.setdefault("max_reconnect_attempts", -1)
    options.setdefault("reconnect_time_wait", 0.25)
    options.setdefault("connect_timeout", 2)
    return connect(url, **options)


async def _wait_stream(t: Any, name: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await t.log_end(name)
            return
        except Exception:  # noqa: BLE001 - broker starting / stream not created yet
            await asyncio.sleep(0.2)


async def run_validator(cfg: ServiceConfig, *, durable: str = "validators", ack_wait: float = 2.0,
                        stop: asyncio.Event | None = None, transport: Any = None, ready: Any = None,
                        **options: Any) -> dict[str, int]:
    """At-least-once validator on the ``ORDERS`` stream until ``stop``; returns counters."""
    from .validator import ValidatorService

    stop = stop or asyncio.Event()
    t = transport or _connect(cfg.transport, **options)
    if transport is None:
        await t.connect()
    svc = ValidatorService(cfg.replace(forward=True))
    pub = IdempotentPublisher(t, {cfg.validated_subject: "result", cfg.rejected_subject: "result",
                                  cfg.match_prefix + ".": "order"})
    svc.transport = pub  # type: ignore[assignment]
    await _wait_stream(t, "ORDERS", stop)
    psub = None
    acked = 0
    if ready is not None:
        ready()
    try:
        while not stop.is_set():
            try:
                if psub is None:
                    psub = await t.js_pull_subscribe(cfg.orders_subject, durable, stream="ORDERS", ack_wait=ack_wait,
                                                     max_ack_pending=4 * cfg.batch_max)
                msgs = await psub.fetch(cfg.batch_max, timeout=0.5)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - timeout, reconnecting broker, consumer leader moving
                if "imeout" not in type(e).__name__:
                    psub = None  # bind the durable again
                    await asyncio.sleep(0.2)
                continue
            if not msgs:  # fetch can come back empty (e.g. a status message while the cluster fails over)
                continue
            from ..transport import Message

            batch = [Message(m.subject, m.data, m.headers, None, t, m.ack) for m in msgs]
            await svc.handle(cfg.orders_subject, batch)
            await pub.commit()  # results + forwards are stored (or known duplicates) ...
            for m in msgs:      # ... before the inputs are acked: a crash in between means redelivery, not loss
                try:
                    await m.ack()
                    acked += 1
                except Exception:  # noqa: BLE001, S110 - not acked: redelivered and deduplicated downstream
                    pass
    finally:
        if transport is None:
            await t.close()
    return {"acked": acked, "published": pub.published, "duplicates": pub.duplicates, "retries": pub.retries}


async def run_matcher(cfg: ServiceConfig, workdir: str | Path, *, shard: str = "0", snapshot_every: int = 2000,
                      stop: asyncio.Event | None = None, transport: Any = None, ready: Any = None,
                      replicas: int = 1, **options: Any) -> dict[str, Any]:
    """Matcher for ``cfg.symbols`` reading ``MATCH`` by position, journal ``JOURNAL_<shard>``, snapshots in
    ``workdir``; restores itself first.  Returns counters and the recovery report."""
    from .journal import DurableMatcher, JetStreamJournal
    from .snapshot import SnapshotStore

    stop = stop or asyncio.Event()
    t = transport or _connect(cfg.transport, **options)
    if transport is None:
        await t.connect()
    pub = IdempotentPublisher(t, {cfg.exec_prefix + ".": "exec"})
    journal = JetStreamJournal(t, f"JOURNAL_{shard}", replicas=replicas)
    m = DurableMatcher(cfg.replace(snapshot_interval_s=0), journal=journal,
                       store=SnapshotStore(Path(workdir) / f"snapshots-{shard}"),
                       snapshot_every=snapshot_every, republish=True)
    m.transport = pub  # type: ignore[assignment]
    await _wait_stream(t, "MATCH", stop)
    while True:
        try:
            rec = await m.recover()
            break
        except (LowlatError, ValueError) as e:
            if isinstance(e, TransportError):  # broker not reachable yet / journal stream leader moving
                log.warning("recover: journal not readable yet; retrying", extra={"error": str(e)[:300]})
                await asyncio.sleep(0.5)
                continue
            raise  # a snapshot made for other books, a journal that does not decode: waiting does not fix it
        except Exception as e:  # noqa: BLE001 - nats-py's own errors while the broker restarts
            log.warning("recover: journal not readable yet; retrying", extra={"error": repr(e)[:300]})
            await asyncio.sleep(0.5)
    await pub.commit()
    m.journal = m
    filters = [f"{cfg.match_prefix}.{s}" for s in cfg.symbols]
    psub = None
    n = idle = 0
    if ready is not None:
        ready(rec)
    try:
        while not stop.is_set():
            try:
                if idle >= 4 and psub is not None:
                    # quiet for 2 s: the ephemeral consumer may have died with a broker restart (fetch then just
                    # times out); re-create it at our position, which costs one request
                    try:
                        await psub.close()
                    except Exception:  # noqa: BLE001, S110
                        pass
                    psub, idle = None, 0
                if psub is None:
                    psub = await t.log_reader("MATCH", m.input_pos, subjects=filters)
                msgs = await psub.fetch(cfg.batch_max, timeout=0.5)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                idle += 1
                if "imeout" not in type(e).__name__:
                    # the ephemeral consumer may be gone after a broker restart: recreate it at our position
                    psub = None
                    await asyncio.sleep(0.2)
                continue
            msgs = [x for x in msgs if x.pos > m.input_pos]
            if not msgs:
                idle += 1
                continue
            idle = 0
            from ..transport import Message

            m.input_pos = msgs[-1].pos
            await m.handle(msgs[0].msg.subject, [Message(x.msg.subject, x.msg.data, None, None, t) for x in msgs])
            await pub.commit()
            n += len(msgs)
    finally:
        m.save_snapshot()
        if transport is None:
            await t.close()
    return {"processed": n, "published": pub.published, "duplicates": pub.duplicates, "retries": pub.retries,
            "recovered": rec}


def main(argv: list[str] | None = None) -> int:
    import json
    import sys

    from .runtime import setup_logging

    p = argparse.ArgumentParser(prog="python -m lowlat.services.durable", description=__doc__.split("\n")[0])
    p.add_argument("service", choices=["validator", "matcher", "streams"])
    p.add_argument("--transport", "--url", dest="transport", required=True)
    p.add_argument("--symbols")
    p.add_argument("--workdir", default=".")
    p.add_argument("--shard", default="0")
    p.add_argument("--snapshot-every", type=int, default=2000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--batch-max", type=int)
    a = p.parse_args(argv)
    cfg = load_config(a.service, overrides={"transport": a.transport, "symbols": a.symbols,
                                            "batch_max": a.batch_max})
    setup_logging(cfg.log_level, cfg.log_json)

    async def run() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(*_: Any) -> None:
            print(json.dumps({"msg": "ready", "service": a.service, "recovered": _[0] if _ else None}), flush=True)

        if a.service == "streams":
            async with _connect(cfg.transport) as t:
                await ensure_streams(t, cfg, replicas=a.replicas)
            return {}
        if a.service == "validator":
            return await run_validator(cfg, stop=stop, ready=ready)
        return await run_matcher(cfg, a.workdir, shard=a.shard, snapshot_every=a.snapshot_every, stop=stop,
                                 ready=ready, replicas=a.replicas)

    try:
        out = asyncio.run(run())
    except (LowlatError, ValueError) as e:  # a snapshot for other books, an undecodable journal: one line, exit 2
        log.error("cannot recover: %s", e)
        return 2
    print(json.dumps({"msg": "stopped", "service": a.service, **out}, default=str), flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
