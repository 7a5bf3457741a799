"""Obviously-correct pure-Python model of ``lowlat._book.Book`` (slow on purpose: lists, dicts, sorting).

Each command returns ``(reject_code, filled_qty, events)`` where events are tuples in the field order of
``lowlat._book.EVENT_DTYPE`` (so ``book.last_events().tolist()`` compares equal).  The semantics are the
ones documented in lowlat/_book.pyx and its _book_*.pxi pieces; this file restates them in the plainest possible way.
"""

from __future__ import annotations

from dataclasses import dataclass

BID, ASK = 0, 1
LIMIT, MARKET = 0, 1
GTC, IOC, FOK = 0, 1, 2
NONE, CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH, DECREMENT_AND_CANCEL = 0, 1, 2, 3, 4
ACCEPTED, REJECTED, FILL, CANCELED, EXPIRED, MODIFIED, L2, MASS_CANCELED = 1, 2, 3, 4, 5, 6, 7, 8

R_MALFORMED = 1
R_BAD_SIDE, R_BAD_QUANTITY = 4, 6
MAX_QTY = 2**32 - 1  # the book's quantity bound (lowlat._book.MAX_QTY)
R_BAD_ORDER_TYPE, R_BAD_TIF = 13, 14
R_BOOK_FULL, R_DUPLICATE, R_UNKNOWN, R_POST_ONLY, R_FOK, R_NO_LIQ, R_STP, R_BAD_STP, R_RANGE, R_MKT_PO = (
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73)


@dataclass
class RefOrder:
    oid: int
    account: int
    side: int
    price: int
    qty: int
    stp: int
    post_only: bool


class RefBook:
    def __init__(self, lo: int, n_ticks: int, max_orders: int, default_stp: int = NONE, book: int = 0):
        self.lo, self.n_ticks, self.max_orders, self.default_stp, self.book = (
            lo, n_ticks, max_orders, default_stp, book)
        self.levels: list[dict[int, list[RefOrder]]] = [{}, {}]  # side -> price -> FIFO list (oldest first)
        self.orders: dict[int, RefOrder] = {}
        self.seq = 0
        self.trade_id = 0
        self.events: list[tuple] = []

    # --- helpers ---
    def _ev(self, kind, side=0, reason=0, oid=0, maker=0, trade=0, account=0, price=0, qty=0, leaves=0, aux=0):
        self.seq += 1
        self.events.append((self.seq, oid, maker, trade, account, price, qty, leaves, aux, self.book, kind,
                            side, reason, 0))

    def _l2(self, side, price):
        q = self.levels[side].get(price, [])
        self._ev(L2, side=side, price=price, qty=sum(o.qty for o in q), aux=len(q))

    def _prices(self, side):
        """Resting prices of a side, best first."""
        return sorted(self.levels[side], reverse=(side == BID))

    def _remove(self, o: RefOrder):
        q = self.levels[o.side][o.price]
        q.remove(o)
        if not q:
            del self.levels[o.side][o.price]
        del self.orders[o.oid]

    def _in_band(self, price):
        return self.lo <= price < self.lo + self.n_ticks

    def _crossing(self, side, market, price):
        """Opposite prices the order may trade at, best first."""
        opp = 1 - side
        return [p for p in self._prices(opp)
                if market or (p <= price if side == BID else p >= price)]

    def _mode(self, stp):
        return self.default_stp if stp < 0 else stp

    def _fok_ok(self, account, side, market, price, qty, mode):
        avail = 0
        for p in self._crossing(side, market, price):
            for m in self.levels[1 - side][p]:
                if mode != NONE and m.account == account:
                    if mode == CANCEL_OLDEST:
                        continue  # would be cancelled, not traded
                    return avail >= qty  # the taker stops / is decremented here
                avail += m.qty
        return avail >= qty

    def _match(self, oid, account, side, market, price, leaves, mode):
        """Returns (leaves, filled)."""
        filled = 0
        opp = 1 - side
        while leaves > 0:
            crossing = self._crossing(side, market, price)
            if not crossing:
                break
            lp = crossing[0]
            changed = False
            stop = False
            for m in list(self.levels[opp][lp]):
                if leaves == 0:
                    break
                if mode != NONE and m.account == account:
                    if mode == DECREMENT_AND_CANCEL:
                        d = min(m.qty, leaves)
                        m.qty -= d
                        leaves -= d
                        changed = True
                        self._ev(CANCELED, m.side, R_STP, m.oid, account=m.account, price=lp, qty=d,
                                 leaves=m.qty)
                        self._ev(CANCELED, side, R_STP, oid, account=account, price=price, qty=d,
                                 leaves=leaves)
                        if m.qty == 0:
                            self._remove(m)
                        continue
                    if mode == CANCEL_NEWEST:
                        stop = True
                        break
                    changed = True
                    self._ev(CANCELED, m.side, R_STP, m.oid, account=m.account, price=lp, qty=m.qty)
                    self._remove(m)
                    if mode == CANCEL_BOTH:
                        stop = True
                        break
                    continue
                f = min(m.qty, leaves)
                m.qty -= f
                leaves -= f
                filled += f
                self.trade_id += 1
                changed = True
                self._ev(FILL, side, 0, oid, m.oid, self.trade_id, account, lp, f, leaves, m.qty)
                if m.qty == 0:
                    self._remove(m)
            if changed:
                self._l2(opp, lp)
            if stop:
                self._ev(CANCELED, side, R_STP, oid, account=account, price=price, qty=leaves)
                return 0, filled
        return leaves, filled

    # --- commands ---
    def submit(self, oid, side, price, qty, account=0, order_type=LIMIT, tif=GTC, post_only=False, stp=-1):
        self.events = []
        market = order_type == MARKET
        r = 0
        if side not in (BID, ASK):
            r = R_BAD_SIDE
        elif order_type not in (LIMIT, MARKET):
            r = R_BAD_ORDER_TYPE
        elif tif not in (GTC, IOC, FOK):
            r = R_BAD_TIF
        elif not -1 <= stp <= DECREMENT_AND_CANCEL:
            r = R_BAD_STP
        elif not 0 < qty <= MAX_QTY:
            r = R_BAD_QUANTITY
        elif not market and not self._in_band(price):
            r = R_RANGE
        elif market and post_only:
            r = R_MKT_PO
        elif oid in self.orders:
            r = R_DUPLICATE
        mode = self._mode(stp)
        if r == 0:
            if market:
                price = 0
            crosses = bool(self._crossing(side, market, price))
            if post_only and crosses:
                r = R_POST_ONLY
            elif market and not crosses:
                r = R_NO_LIQ
            elif tif == FOK and not self._fok_ok(account, side, market, price, qty, mode):
                r = R_FOK
            elif not market and tif == GTC and not crosses and len(self.orders) >= self.max_orders:
                r = R_BOOK_FULL
        if r:
            self._ev(REJECTED, side, r, oid, account=account, price=price, qty=qty)
            return r, 0, self.events
        self._ev(ACCEPTED, side, 0, oid, account=account, price=price, qty=qty, leaves=qty)
        leaves, filled = self._match(oid, account, side, market, price, qty, mode)
        if leaves > 0:
            if not market and tif == GTC:
                o = RefOrder(oid, account, side, price, leaves, stp, bool(post_only))
                self.orders[oid] = o
                self.levels[side].setdefault(price, []).append(o)
                self._l2(side, price)
            else:
                self._ev(EXPIRED, side, 0, oid, account=account, price=price, qty=leaves)
        return 0, filled, self.events

    def cancel(self, oid):
        self.events = []
        o = self.orders.get(oid)
        if o is None:
            self._ev(REJECTED, -1, R_UNKNOWN, oid)
            return R_UNKNOWN, 0, self.events
        self._ev(CANCELED, o.side, 0, oid, account=o.account, price=o.price, qty=o.qty)
        self._remove(o)
        self._l2(o.side, o.price)
        return 0, 0, self.events

    def modify(self, oid, price, qty):
        self.events = []
        r = 0
        o = None
        if not 0 < qty <= MAX_QTY:
            r = R_BAD_QUANTITY
        elif not self._in_band(price):
            r = R_RANGE
        else:
            o = self.orders.get(oid)
            if o is None:
                r = R_UNKNOWN
        if r == 0 and price == o.price and qty <= o.qty:
            old = o.qty
            self._ev(MODIFIED, o.side, 0, oid, account=o.account, price=price, qty=qty, leaves=qty, aux=old)
            if qty < old:
                o.qty = qty
                self._l2(o.side, price)
            return 0, 0, self.events
        if r == 0:
            crosses = price != o.price and bool(self._crossing(o.side, False, price))
            if crosses and o.post_only:
                r = R_POST_ONLY
        if r:
            self._ev(REJECTED, -1, r, oid, price=price, qty=qty)
            return r, 0, self.events
        old_price, old = o.price, o.qty
        self._ev(MODIFIED, o.side, 0, oid, account=o.account, price=price, qty=qty, leaves=qty, aux=old)
        self._remove(o)
        if old_price != price:
            self._l2(o.side, old_price)
        leaves, filled = 0, 0
        leaves, filled = (self._match(oid, o.account, o.side, False, price, qty, self._mode(o.stp))
                          if crosses else (qty, 0))
        if leaves > 0:
            o.price, o.qty = price, leaves
            self.orders[oid] = o
            self.levels[o.side].setdefault(price, []).append(o)
            self._l2(o.side, price)
        return 0, filled, self.events

    def mass_cancel(self, account):
        self.events = []
        n = lots = 0
        for side in (BID, ASK):
            for p in self._prices(side):
                mine = [o for o in self.levels[side][p] if o.account == account]
                for o in mine:
                    self._ev(CANCELED, side, 0, o.oid, account=account, price=p, qty=o.qty)
                    lots += o.qty
                    n += 1
                    self._remove(o)
                if mine:
                    self._l2(side, p)
        self._ev(MASS_CANCELED, -1, 0, 0, account=account, qty=lots, aux=n)
        return 0, n, self.events

    # --- reads ---
    def best_bid(self):
        return max(self.levels[BID]) if self.levels[BID] else None

    def best_ask(self):
        return min(self.levels[ASK]) if self.levels[ASK] else None

    def depth(self, side, n):
        return [(p, sum(o.qty for o in self.levels[side][p]), len(self.levels[side][p]))
                for p in self._prices(side)[:n]]

    def queue(self, side, price):
        return [(o.oid, o.account, o.qty) for o in self.levels[side].get(price, [])]

    def order(self, oid):
        o = self.orders.get(oid)
        return None if o is None else (o.side, o.price, o.qty, o.account)
