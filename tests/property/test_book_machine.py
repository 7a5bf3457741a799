"""lowlat.Book vs the pure-Python reference engine (tests/reference/ref_engine.py) under random command
streams, invalid commands included.  Every event of every command and the whole book are compared after
each step; invariants: never crossed, quantity conserved, FIFO (queues equal the reference's arrival
order), id lookups agree."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from reference.ref_engine import ACCEPTED, CANCELED, EXPIRED, FILL, MODIFIED, RefBook

from lowlat._book import EVENT_DTYPE, Book

LO, N, MAX_ORDERS = 100, 12, 6  # a small pool so BOOK_FULL is reached

oids = st.integers(1, 24)
sides = st.sampled_from([0, 1, 0, 1, 0, 1, -1, 2])
prices = st.integers(LO - 2, LO + N + 1)
qtys = st.integers(-1, 25)
accounts = st.integers(1, 3)
otypes = st.sampled_from([0, 0, 0, 1, 1, 2])
tifs = st.sampled_from([0, 0, 0, 1, 2, 3])
stps = st.sampled_from([-1, -1, 0, 1, 2, 3, 4, 5, -2])


class BookMachine(RuleBasedStateMachine):
    @initialize(default_stp=st.integers(0, 4))
    def make(self, default_stp):
        self.fast = Book(LO, N, MAX_ORDERS, default_stp=default_stp)
        self.ref = RefBook(LO, N, MAX_ORDERS, default_stp=default_stp)
        self.submitted = self.filled = self.cancelled = 0

    def _compare(self, got, want):
        r, filled, n = got
        wr, wfilled, wevents = want
        events = self.fast.last_events().tolist()
        assert (r, filled, events) == (wr, wfilled, wevents)
        assert n == len(wevents)
        for e in events:  # quantity bookkeeping, from the compiled engine's events
            kind, qty, aux = e[10], e[6], e[8]
            if kind == ACCEPTED:
                self.submitted += qty
            elif kind == FILL:
                self.filled += 2 * qty  # taker lots + maker lots
            elif kind in (CANCELED, EXPIRED):
                self.cancelled += qty
            elif kind == MODIFIED:
                self.submitted += max(0, qty - aux)
                self.cancelled += max(0, aux - qty)

    @rule(oid=oids, side=sides, price=prices, qty=qtys, account=accounts, otype=otypes, tif=tifs,
          post_only=st.booleans(), stp=stps)
    def submit(self, oid, side, price, qty, account, otype, tif, post_only, stp):
        args = (oid, side, price, qty, account, otype, tif, post_only, stp)
        self._compare(self.fast.submit(*args), self.ref.submit(*args))

    @rule(oid=oids)
    def cancel(self, oid):
        self._compare(self.fast.cancel(oid), self.ref.cancel(oid))

    @rule(oid=oids, price=prices, qty=qtys)
    def modify(self, oid, price, qty):
        self._compare(self.fast.modify(oid, price, qty), self.ref.modify(oid, price, qty))

    @rule(account=accounts)
    def mass_cancel(self, account):
        self._compare(self.fast.mass_cancel(account), self.ref.mass_cancel(account))

    @invariant()
    def same_book(self):
        if not hasattr(self, "fast"):
            return
        f, r = self.fast, self.ref
        assert f.best_bid() == r.best_bid() and f.best_ask() == r.best_ask()
        for side in (0, 1):
            assert f.depth(side, N + 1).tolist() == r.depth(side, N + 1)
            for p in range(LO, LO + N):
                assert f.queue(side, p).tolist() == r.queue(side, p)  # FIFO = arrival order
        for oid in range(1, 25):
            assert f.order(oid) == r.order(oid)
        assert f.n_orders == len(r.orders)
        assert f.seq == r.seq and f.trade_id == r.trade_id
        f.check()  # full C invariant scan on the LOWLAT_DEBUG build

    @invariant()
    def never_crossed(self):
        if not hasattr(self, "fast"):
            return
        bid, ask = self.fast.best_bid(), self.fast.best_ask()
        assert bid is None or ask is None or bid < ask

    @invariant()
    def quantity_conserved(self):
        if not hasattr(self, "fast"):
            return
        resting = sum(int(q) for side in (0, 1) for q in self.fast.depth(side, N)["qty"])
        assert self.submitted == self.filled + resting + self.cancelled


BookMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestBookMachine = BookMachine.TestCase


def test_events_dtype_roundtrips_through_tolist():
    # the comparison above relies on tolist() giving plain tuples in EVENT_DTYPE field order
    assert EVENT_DTYPE.names[:3] == ("seq", "oid", "maker_oid")
    assert isinstance(np.zeros(1, EVENT_DTYPE).tolist()[0], tuple)
