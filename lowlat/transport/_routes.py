"""``RouteTable``: subject -> subscribers, the routing every embedded or hub-side adapter shares (inproc, shm,
the zmq hub).  Pure Python, no shared memory: importing it costs nothing."""

from __future__ import annotations

import threading
from typing import Any

from .base import subject_matches, validate_subject

__all__ = ["RouteTable"]


class RouteTable:
    """Subject -> subscribers, with a per-subject cache invalidated on every (un)subscribe.

    ``route(subject)`` returns ``(plain, groups)``: the list of non-queue subscribers and a list of queue-group
    member lists; the publisher delivers to every plain one and to one member per group (round robin).  Entries
    are any objects with ``subject`` and ``queue`` attributes.  Cost: a dict hit per publish once warm.
    """

    def __init__(self) -> None:
        self._subs: list[Any] = []
        self._cache: dict[str, tuple[list[Any], list[list[Any]]]] = {}
        # round-robin position: a plain int (a lost increment under thread races only skews the rotation)
        self._rr = 0
        self.lock = threading.Lock()

    def add(self, sub: Any) -> None:
        with self.lock:
            self._subs.append(sub)
            self._cache = {}

    def remove(self, sub: Any) -> None:
        with self.lock:
            try:
                self._subs.remove(sub)
            except ValueError:
                return
            self._cache = {}

    def __len__(self) -> int:
        return len(self._subs)

    def route(self, subject: str) -> tuple[list[Any], list[list[Any]]]:
        hit = self._cache.get(subject)
        if hit is not None:
            return hit
        with self.lock:
            plain: list[Any] = []
            groups: dict[str, list[Any]] = {}
            for s in self._subs:
                if subject_matches(s.subject, subject):
                    if s.queue:
                        groups.setdefault(s.queue, []).append(s)
                    else:
                        plain.append(s)
            out = (plain, list(groups.values()))
            if len(self._cache) > 4096:  # bound the cache under subject churn
                self._cache = {}
            self._cache[subject] = out
            return out

    def route_valid(self, subject: str) -> tuple[list[Any], list[list[Any]]]:
        """``route`` for a publisher that must refuse invalid subjects: one that no subscription matches is
        checked (``validate_subject``, ``ValueError``) when it enters the cache and is not cached if invalid, so
        a warm publish costs one dict hit with or without subscribers.  A subject some subscription matches is
        taken as valid without the check (a unique reply subject per request would otherwise pay it on every
        reply).  Use it for every lookup of a table, or none: an empty route cached by ``route`` is taken as
        valid."""
        hit = self._cache.get(subject)
        if hit is None:
            hit = self.route(subject)
            if not hit[0] and not hit[1]:
                try:
                    validate_subject(subject)
                except ValueError:
                    self._cache.pop(subject, None)
                    raise
        return hit

    def pick(self, members: list[Any]) -> Any:
        """One member of a queue group (round robin over the table's counter)."""
        i = self._rr
        self._rr = i + 1
        return members[i % len(members)]

    def advance(self, n: int) -> int:
        """Reserve ``n`` consecutive round-robin positions (one per message of a batch) and return the first:
        the k-th message goes to ``members[(first + k) % len(members)]``, as ``n`` calls of ``pick`` would."""
        i = self._rr
        self._rr = i + n
        return i
