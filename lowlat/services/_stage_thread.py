"""``stage_thread=True``: a service's stage loop in a dedicated thread on ``shm://``, off the event loop.

The thread joins the bus as a member of its own (``ShmTransport.connect_sync``, same bus and ring options as the
service's transport) and runs ``serve_batch_sync``: each turn one compiled intake of everything pending
(``lowlat._shmbus.ShmIntake``), the service's compiled stage over it, and ``publish_batch_sync`` of the outputs
(one compiled push per destination ring).  While nothing is pending it waits in ``wait_readable`` with the GIL
released (the ring's idle strategy), so the event loop of the process keeps running: metrics, snapshots, the
read side.  Metrics are recorded per batch from the thread, as the loop would.

Stop (SIGTERM drain): the thread's subscription leaves the bus, what is already in its ring is still answered,
then its member closes; ``stop`` waits for that up to the drain timeout and logs (and counts in
``drain_dropped``) what was left when it had to give up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .._batch import MessageBatch
from .runtime import log

__all__ = ["StageThread", "stage_thread_wanted"]


def stage_thread_wanted(service: Any, transport: Any) -> bool:
    """True when ``service`` should run its stage in a thread on ``transport``: ``cfg.stage_thread`` is on and the
    transport is ``shm://`` (elsewhere the option is ignored, with a warning)."""
    if not service.cfg.stage_thread:
        return False
    from ..transport.shm import ShmTransport

    if isinstance(transport, ShmTransport):
        return True
    log.warning("stage_thread needs an shm:// transport; the stage runs on the event loop",
                extra={"service": service.name, "transport": transport.url.split("://")[0]})
    return False


class StageThread:
    """One stage loop (``handle(batch, transport)``, called per intake batch) serving ``subjects`` (one
    subscription for all of them) in queue group ``queue`` in a daemon thread over its own sync member of
    ``transport``'s bus."""

    # wait on the member's doorbell after a short poll (ShmTransport.connect_sync(doorbell=True)); False: the
    # idle strategy alone (sync_idle(): poll, then sleep 50 µs-1 ms), the benchmarks' peer
    doorbell = True

    def __init__(self, name: str, transport: Any, subjects: Sequence[str], queue: str | None,
                 handle: Callable[[MessageBatch, Any], None], *, max_batch: int, idle: Any = None) -> None:
        self.name = name
        self.subjects, self.queue = list(subjects), queue
        self._handle = handle
        self._max_batch = max_batch
        self._idle = idle
        self._opts = {"ring_capacity": transport.ring_capacity, "publish_timeout": transport.publish_timeout,
                      "liveness_interval": transport.liveness_interval}
        self._url = transport.url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transport: Any = None  # the thread's own member, while it runs
        self.error: BaseException | None = None
        self.handled = 0

    async def start(self, timeout: float = 30.0) -> None:
        """Start the thread and return once its subscription is on the bus; raises what made it fail."""
        loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._thread = threading.Thread(target=self._run, args=(loop,), name=f"lowlat-stage:{self.name}",
                                        daemon=True)
        self._thread.start()
        ready = asyncio.ensure_future(self._ready.wait())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait([ready, done], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            done.cancel()
        if self.error is not None:
            raise self.error
        if not self._ready.is_set():
            self._stop.set()
            raise TimeoutError(f"{self.name}: the stage thread did not start within {timeout}s")

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        from ..transport.shm import ShmTransport

        try:
            with ShmTransport(self._url, **self._opts).connect_sync(doorbell=self.doorbell) as t:
                self.transport = t
                self.handled = t.serve_batch_sync(
                    self.subjects, lambda b: self._handle(b, t), queue=self.queue, idle=self._idle,
                    stop=self._stop, max_batch=self._max_batch,
                    ready=lambda: loop.call_soon_threadsafe(self._ready.set))
        except BaseException as e:  # noqa: BLE001 - reported to start() on the loop, never lost with the thread
            self.error = e
            log.exception("stage thread failed", extra={"service": self.name})
        finally:
            self.transport = None
            try:
                loop.call_soon_threadsafe(self._done.set)
            except RuntimeError:  # the loop is gone (interpreter shutdown): nobody waits any more
                pass

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def stop(self, timeout: float) -> int:
        """Stop intake, answer what the thread's ring already holds, join the thread (up to ``timeout`` s).

        Returns the number of messages left unanswered when the timeout cut the drain off (0 after a clean
        stop); they are logged at ERROR."""
        if self._thread is None:
            return 0
        self._stop.set()
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            t = self.transport
            left = len(t._ring) if t is not None and t._ring is not None else 0
            log.error("drain timed out: the stage thread did not stop", extra={
                "service": self.name, "drain_timeout_s": timeout, "left_in_ring": left})
            return max(left, 1)
        self._thread.join(1.0)
        return 0


async def start_stage_thread(service: Any, transport: Any, subjects: Sequence[str], queue: str | None,
                             handle: Callable[[MessageBatch, Any], None]) -> StageThread:
    """``BatchService.start`` for a service whose stage runs in a thread: the thread instead of an intake task
    per subject, then the service's ``on_start`` hook."""
    from .._redact import redact_url

    service.transport = transport
    service.metrics.transport = transport
    st = StageThread(service.name, transport, subjects, queue, handle, max_batch=service.cfg.batch_max)
    await st.start()
    await service.on_start()
    log.info("service started", extra={"service": service.name, "transport": redact_url(transport.url),
                                       "subjects": list(subjects), "stage_thread": True})
    return st


async def stop_stage_thread(service: Any, st: StageThread, timeout: float | None) -> None:
    """The thread's part of ``BatchService.stop``: drain and join it; what a timeout cut off is counted in
    ``drain_dropped``."""
    cut = await st.stop(service.cfg.drain_timeout_s if timeout is None else timeout)
    if cut:
        service.metrics.inc("drain_dropped", cut)
