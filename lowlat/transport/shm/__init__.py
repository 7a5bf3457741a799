"""``shm://name``: a cross-process message bus on one host, over ``lowlat._ring`` shared-memory rings.

No broker: every member (transport) owns one inbound ``MpscRing``; publishers copy each message once into the
ring of every member with a matching subscription.  Same semantics as NATS core (wildcards, queue groups,
request/reply with an immediate ``NoRespondersError``, headers, bounded subscriptions with counted drops).

- ``_registry``: the bus directory (members, their rings and subscriptions, reaping of dead pids);
- ``_codec``: the one record format, shared by the async transport and the synchronous fast path;
- ``_bell``: the doorbell FIFOs that wake a sleeping member (its event loop or its stage thread);
- ``_transport``: ``ShmTransport`` (async API: event-loop doorbell or spin);
- ``_sync``: ``request_sync``/``serve_sync`` polling the ring in the caller's thread (the latency path);
- ``_batchsync``: ``serve_batch_sync``/``publish_batch_sync``, the same for whole ``MessageBatch``es (compiled
  intake and push, ``lowlat._shmbus``: the stage-thread path of the services).
"""

from __future__ import annotations

from ._registry import shm_available, shm_root
from ._sync import sync_idle
from ._transport import ShmTransport

__all__ = ["ShmTransport", "shm_available", "shm_root", "sync_idle"]
