"""Order book / matching engine throughput and latency vs pure-Python peers, in the same run.

Workloads (fixed seed, generated once per process against a lowlat Book so that every cancel/move names a
live order):
  touch    1,000,000 commands: ~70% passive limit adds 1-10 ticks from the touch, ~25% cancels of live
           orders, ~5% marketable IOC limits sweeping one or more levels (sweep size steers the book to
           ~20,000 resting orders).
  exchcore 1,000,000 commands, exchange-core-like: ~55% moves (price +-1..3 ticks), ~10% reduces, ~20% new
           GTC, ~5% IOC, ~10% cancels, after 10,000 resting orders.

Engines: lowlat batch (``Book.apply_batch``, nogil), lowlat per-call (one ``submit/cancel/modify`` Python
call per command), a SortedDict + deque pure-Python engine (sortedcontainers), the reference engine of
tests/reference (obviously correct, slow: measured on a prefix), NautilusTrader's L3 ``OrderBook`` (no
matching: fed the pre-built add/update/delete deltas that lowlat's events imply, counted per delta).

Run:  python benchmarks/bench_book.py            (prints the table recorded in BENCHMARKS.md)
      python -m pytest benchmarks/bench_book.py --benchmark-only   (pytest-benchmark groups)
Env:  LOWLAT_BENCH_N (default 1000000) commands per workload.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections import deque

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no idle BLAS threads competing for the 2 cores
import numpy as np

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests")]  # the checkout (in-place build) and tests/reference

from lowlat._book import COMMAND_DTYPE, EVENT_DTYPE, Book, EventKind

N_CMDS = int(os.environ.get("LOWLAT_BENCH_N", "1000000"))
LO, N_TICKS, MID = 0, 1 << 16, 1 << 15
MAX_ORDERS = 1 << 17  # capacity per book (the workloads keep ~20k orders resting)
FRAMES_PREFIX = 200_000  # encoding frames in Python is slow: measure the FlatBuffer path on a prefix
REF_PREFIX = 20_000  # the reference engine is O(levels) per command: measure it on a prefix
EV_CHUNK = 1 << 20
TARGET_LIVE = 20_000

_cache: dict[str, np.ndarray] = {}


def new_book() -> Book:
    return Book(LO, N_TICKS, MAX_ORDERS, event_capacity=1 << 16)


def _gen(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, side_r, off_r = rng.random(n).tolist(), rng.integers(0, 2, n).tolist(), rng.geometric(0.35, n).tolist()
    qty_r, pick_r, acct_r = rng.integers(1, 100, n).tolist(), rng.random(n).tolist(), rng.integers(1, 500, n).tolist()
    mv_r = (rng.integers(1, 4, n) * rng.choice([-1, 1], n)).tolist()
    cols = {k: [0] * n for k in ("op", "oid", "side", "price", "qty", "tif", "account")}
    op_c, oid_c, side_c, px_c, qty_c, tif_c, acct_c = (cols[k] for k in
                                                      ("op", "oid", "side", "price", "qty", "tif", "account"))
    book = new_book()  # drives generation: knows which orders are live and where the touch is
    live: list[int] = []
    where: dict[int, int] = {}  # oid -> index in live
    next_oid = 1
    prefill = 10_000 if kind == "exchcore" else 0

    def drop(oid):
        k = where.pop(oid, None)
        if k is None:
            return
        last = live.pop()
        if last != oid:
            live[k] = last
            where[last] = k

    for i in range(n):
        r = u[i]
        if kind == "touch":
            op = "new" if (r < 0.70 or not live) else ("cancel" if r < 0.95 else "sweep")
        elif i < prefill or not live:
            op = "new"
        else:
            op = ("move" if r < 0.55 else "reduce" if r < 0.65 else "new" if r < 0.85 else
                  "sweep" if r < 0.90 else "cancel")
        side = side_r[i]
        if op == "new" or op == "sweep":
            bb, ba = book.best_bid(), book.best_ask()
            bb = MID - 1 if bb is None else bb
            ba = MID + 1 if ba is None else ba
            if op == "new":
                price = ba - off_r[i] if side == 0 else bb + off_r[i]
                qty, tif = qty_r[i], 0
            else:
                price = ba + off_r[i] + 1 if side == 0 else bb - off_r[i] - 1
                # sweep size steers the book towards TARGET_LIVE resting orders (a steady, deep book)
                qty, tif = ((100 + 10 * qty_r[i]) if len(live) > TARGET_LIVE else (30 + 3 * qty_r[i])), 1
            oid = next_oid
            next_oid += 1
            book.submit(oid, side, price, qty, acct_r[i], 0, tif)
            op_c[i], side_c[i], px_c[i], qty_c[i], tif_c[i], acct_c[i] = 0, side, price, qty, tif, acct_r[i]
        else:
            oid = live[int(pick_r[i] * len(live))]
            _s, p, q, _ = book.order(oid)
            if op == "cancel":
                book.cancel(oid)
                op_c[i] = 1
            else:
                price, qty = (p, max(1, q // 2)) if (op == "reduce" and q > 1) else (p + mv_r[i], q)
                book.modify(oid, price, qty)
                op_c[i], px_c[i], qty_c[i] = 2, price, qty
        oid_c[i] = oid
        ev = book.last_events()
        if len(ev) > 2:  # trades / STP: makers may have left the book
            for e in ev[ev["kind"] == EventKind.FILL][["maker_oid", "aux"]].tolist():
                if e[1] == 0:
                    drop(e[0])
        if book.order(oid) is not None:
            if oid not in where:
                where[oid] = len(live)
                live.append(oid)
        else:
            drop(oid)
    cmds = np.zeros(n, COMMAND_DTYPE)
    cmds["stp"] = -1
    for k, v in cols.items():
        cmds[k] = v
    return cmds


def workload(kind: str) -> np.ndarray:
    # generation replays every command through a Book from Python (~40 s per million): cache it on disk
    if kind not in _cache:
        seed = 12345 if kind == "touch" else 54321
        cache_dir = os.path.join(os.environ.get("LOWLAT_CACHE", os.path.expanduser("~/.cache/lowlat")), "bench")
        path = os.path.join(cache_dir, f"book_{kind}_{N_CMDS}_{seed}_v5.npy")
        if os.path.exists(path):
            _cache[kind] = np.load(path)
        else:
            _cache[kind] = _gen(kind, N_CMDS, seed)
            os.makedirs(cache_dir, exist_ok=True)
            np.save(path, _cache[kind])
    return _cache[kind]


# ---------------------------------------------------------------------------------------------- engines

_OUT: list[np.ndarray] = []


def _events_out() -> np.ndarray:
    # one preallocated, pre-faulted output buffer reused by every run (as a service would)
    if not _OUT:
        out = np.zeros(EV_CHUNK, EVENT_DTYPE)
        out.view(np.uint8)[:] = 1
        _OUT.append(out)
    return _OUT[0]


def run_batch(cmds, latency=None, book=None):
    """All commands through Book.apply_batch; the caller drains events_out between calls."""
    book = new_book() if book is None else book
    out = _events_out()
    done = total_ev = 0
    t0 = time.perf_counter()
    while done < len(cmds):
        n, n_ev = book.apply_batch(cmds[done:], out, None if latency is None else latency[done:])
        done += n
        total_ev += n_ev
    return time.perf_counter() - t0, total_ev, book


def encode_frames(cmds) -> bytes:
    """The commands as framed finance.CommandMsg FlatBuffers (tick size 1.0: price in ticks as a double)."""
    import lowlat._core as core

    msgs = []
    for c in cmds.tolist():
        oid, acct, price, qty, _, op, side, ot, tif, stp, po = c[:11]
        if op == 0:
            m = core.OrderMsg(id=oid, symbol="B", price=float(price), quantity=qty, side=side, timestamp=0,
                              order_type=ot, time_in_force=tif, post_only=bool(po), account=acct,
                              client_order_id=None, stp=max(stp, 0))
        elif op == 1:
            m = core.Cancel(order_id=oid, symbol="B")
        else:
            m = core.Modify(order_id=oid, symbol="B", price=float(price), quantity=qty)
        msgs.append(core.encode_command(m))
    return core.frame(msgs)


def run_frames(frames):
    book = new_book()
    out = _events_out()
    mv = memoryview(frames)
    used = 0
    t0 = time.perf_counter()
    while used < len(frames):
        _, u, _ = book.apply_frames(mv[used:], out)
        used += u
    return time.perf_counter() - t0


def per_call_args(cmds):
    book = new_book()
    calls = []
    sub, can, mod = book.submit, book.cancel, book.modify
    for c in cmds.tolist():
        oid, acct, price, qty, _, op, side, ot, tif, stp, po = c[:11]
        if op == 0:
            calls.append((sub, (oid, side, price, qty, acct, ot, tif, bool(po), stp)))
        elif op == 1:
            calls.append((can, (oid,)))
        else:
            calls.append((mod, (oid, price, qty)))
    return book, calls


def run_per_call(calls):
    t0 = time.perf_counter()
    for f, a in calls:
        f(*a)
    return time.perf_counter() - t0


class SortedDictBook:
    """What a Python team writes today: SortedDict of price -> [deque of [oid, qty, account, alive], live count]
    plus an id dict; a cancel marks the entry dead (O(1)) and matching drops dead entries it meets."""

    def __init__(self):
        from sortedcontainers import SortedDict

        self.sides = (SortedDict(), SortedDict())  # bids keyed by -price, asks by price
        self.orders = {}
        self.trade_id = 0
        self.events = []

    def submit(self, oid, side, price, qty, account=0, order_type=0, tif=0, post_only=False, stp=-1):
        ev = self.events
        ev.clear()
        if side not in (0, 1) or qty <= 0 or oid in self.orders:
            ev.append(("rej", oid))
            return 1, 0, 1
        ev.append(("acc", oid, qty))
        opp = self.sides[1 - side]
        filled = 0
        while qty and opp:
            key, lvl = opp.peekitem(0)
            lp = key if side == 0 else -key
            if (side == 0 and lp > price) or (side == 1 and lp < price):
                break
            q = lvl[0]
            while q and qty:
                m = q[0]
                if not m[3]:
                    q.popleft()
                    continue
                f = min(qty, m[1])
                m[1] -= f
                qty -= f
                filled += f
                self.trade_id += 1
                ev.append(("fill", oid, m[0], lp, f, self.trade_id))
                if not m[1]:
                    m[3] = False
                    q.popleft()
                    lvl[1] -= 1
                    del self.orders[m[0]]
            ev.append(("l2", 1 - side, lp))
            if not lvl[1]:
                del opp[key]
        if qty:
            if tif == 0:
                e = [oid, qty, account, True, side, price]
                self.orders[oid] = e
                book = self.sides[side]
                k = -price if side == 0 else price
                lvl = book.get(k)
                if lvl is None:
                    lvl = book[k] = [deque(), 0]
                lvl[0].append(e)
                lvl[1] += 1
                ev.append(("l2", side, price))
            else:
                ev.append(("exp", oid, qty))
        return 0, filled, len(ev)

    def cancel(self, oid):
        e = self.orders.pop(oid, None)
        if e is None:
            return 66, 0, 1
        e[3] = False
        side, price = e[4], e[5]
        k = -price if side == 0 else price
        lvl = self.sides[side][k]
        lvl[1] -= 1
        if not lvl[1]:
            del self.sides[side][k]
        return 0, 0, 2

    def modify(self, oid, price, qty):
        e = self.orders.get(oid)
        if e is None or qty <= 0:
            return 66, 0, 1
        if price == e[5] and qty <= e[1]:
            e[1] = qty
            return 0, 0, 2
        self.cancel(oid)
        return self.submit(oid, e[4], price, qty, e[2])


def python_calls(engine, cmds):
    calls = []
    for c in cmds.tolist():
        oid, acct, price, qty, _, op, side, ot, tif, stp, po = c[:11]
        if op == 0:
            calls.append((engine.submit, (oid, side, price, qty, acct, ot, tif, bool(po), stp)))
        elif op == 1:
            calls.append((engine.cancel, (oid,)))
        else:
            calls.append((engine.modify, (oid, price, qty)))
    return calls


def run_python_engine(engine, cmds):
    return run_per_call(python_calls(engine, cmds))


def nautilus_deltas(cmds):
    """The L3 add/update/delete stream lowlat's events imply, as pre-built NautilusTrader objects."""
    from nautilus_trader.model.data import BookOrder
    from nautilus_trader.model.enums import OrderSide
    from nautilus_trader.model.objects import Price, Quantity

    book = new_book()
    out = np.zeros(EV_CHUNK, EVENT_DTYPE)
    rest: dict[int, tuple[int, int, int]] = {}
    ops = []
    sides = (OrderSide.BUY, OrderSide.SELL)

    def bo(oid, s, p, q):
        return BookOrder(sides[s], Price(p, 0), Quantity(q, 0), oid)

    done = 0
    while done < len(cmds):
        n, n_ev = book.apply_batch(cmds[done:], out)
        done += n
        for e in out[:n_ev].tolist():
            _seq, oid, maker, _tid, _acct, price, qty, leaves, aux, _bk, kind, side, _reason, _ = e
            if kind == EventKind.FILL:
                s, p, _ = rest[maker]
                if aux:
                    rest[maker] = (s, p, aux)
                    ops.append(("update", bo(maker, s, p, aux)))
                else:
                    del rest[maker]
                    ops.append(("delete", bo(maker, s, p, 1)))
            elif kind == EventKind.CANCELED and oid in rest:
                s, p, _ = rest[oid]
                if leaves:
                    rest[oid] = (s, p, leaves)
                    ops.append(("update", bo(oid, s, p, leaves)))
                else:
                    del rest[oid]
                    ops.append(("delete", bo(oid, s, p, 1)))
            elif kind == EventKind.MODIFIED:
                s, p, q = rest.pop(oid)
                ops.append(("delete", bo(oid, s, p, q)))
                rest[oid] = (s, price, qty)  # provisional; fixed by the L2/fill events that follow
                ops.append(("add", bo(oid, s, price, qty)))
            elif kind == EventKind.ACCEPTED:
                rest[oid] = (side, price, qty)
                ops.append(None)  # placeholder: added only if it rests (see below)
                ops[-1] = ("pending", oid)
        # resolve pending adds: orders that rested after the batch chunk
    final = []
    for op in ops:
        if op[0] == "pending":
            oid = op[1]
            if oid in rest:
                s, p, q = rest[oid]
                final.append(("add", bo(oid, s, p, q)))
        else:
            final.append(op)
    return final


def nautilus_calls(deltas):
    from nautilus_trader.model.book import OrderBook
    from nautilus_trader.model.enums import BookType
    from nautilus_trader.model.identifiers import InstrumentId

    nb = OrderBook(InstrumentId.from_str("BENCH.SIM"), BookType.L3_MBO)
    fns = {"add": nb.add, "update": nb.update, "delete": nb.delete}
    return [(fns[k], o) for k, o in deltas]


def run_nautilus(calls):
    t0 = time.perf_counter()
    for i, (f, o) in enumerate(calls):
        f(o, 0, 0, i)  # (order, ts_event, flags, sequence)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------- report

def _hdr(lat):
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 10_000_000, 3)
    for v in lat.tolist():
        h.record_value(max(1, v))
    return {q: h.get_value_at_percentile(q) for q in (50, 90, 99, 99.9)}


def _best(fn, rounds, setup=lambda: None):
    """min wall and min CPU (thread_time) seconds over rounds of fn(setup()) (setup not timed); on a
    shared VM the process is often descheduled, so CPU time is the steadier measure of the engine itself."""
    walls, cpus = [], []
    for _ in range(rounds):
        x = setup()
        c0 = time.thread_time()
        w = fn(x)
        cpus.append(time.thread_time() - c0)
        walls.append(w)
    return min(walls), min(cpus)


def report() -> None:
    import platform

    print(f"# python {platform.python_version()}, {os.cpu_count()} CPUs, N={N_CMDS}, "
          f"load average {os.getloadavg()[0]:.1f}")
    gc.disable()
    for kind in ("touch", "exchcore"):
        t = time.perf_counter()
        cmds = workload(kind)
        ops = np.bincount(cmds["op"], minlength=3)
        print(f"\n## {kind}: {len(cmds)} commands (new {ops[0]}, of which IOC {int((cmds['tif'] == 1).sum())}; "
              f"cancel {ops[1]}; modify {ops[2]}); loaded/generated in {time.perf_counter() - t:.1f}s")
        rows = []
        _, n_ev, _ = run_batch(cmds)
        rows.append(("lowlat batch (Book.apply_batch, nogil)", len(cmds), *_best(lambda _: run_batch(cmds)[0], 7)))  # noqa: B023
        lat = np.zeros(len(cmds), np.int64)
        run_batch(cmds, lat)
        pct = _hdr(lat)
        fr_n = min(len(cmds), FRAMES_PREFIX)
        frames = encode_frames(cmds[:fr_n])
        rows.append((f"lowlat FlatBuffer frames (Book.apply_frames: verify+decode+match, first {fr_n})", fr_n,
                     *_best(lambda _: run_frames(frames), 5)))  # noqa: B023
        rows.append(("lowlat per-call (one submit/cancel/modify call each)", len(cmds),
                     *_best(run_per_call, 3, lambda: per_call_args(cmds)[1])))  # noqa: B023
        rows.append(("SortedDict+deque pure-Python engine", len(cmds),
                     *_best(run_per_call, 2, lambda: python_calls(SortedDictBook(), cmds))))  # noqa: B023
        from reference.ref_engine import RefBook

        rows.append((f"reference engine, tests/reference (first {REF_PREFIX} cmds)", REF_PREFIX,
                     *_best(run_per_call, 1, lambda: python_calls(RefBook(LO, N_TICKS, MAX_ORDERS),
                                                                 cmds[:REF_PREFIX]))))  # noqa: B023
        try:
            import nautilus_trader

            deltas = nautilus_deltas(cmds)
            w, c = _best(run_nautilus, 2, lambda: nautilus_calls(deltas))  # noqa: B023
            rows.append(((f"NautilusTrader {nautilus_trader.__version__} L3 OrderBook: {len(deltas)} pre-built "
                         "deltas, no matching (rate per delta)"), len(deltas), w, c))
        except ImportError as exc:
            print(f"(NautilusTrader not measured: {exc})")
        print(f"events written by lowlat: {n_ev}")
        print("| engine | M/s (best wall) | M/s (best thread CPU) | batch is x faster (wall) | (CPU) |")
        print("|---|---:|---:|---:|---:|")
        base_w, base_c = rows[0][1] / rows[0][2], rows[0][1] / max(rows[0][3], 1e-9)
        for name, n, w, c in rows:
            c = max(c, 1e-9)
            print(f"| {name} | {n / w / 1e6:.2f} | {n / c / 1e6:.2f} | {base_w / (n / w):.1f} | "
                  f"{base_c / (n / c):.1f} |")
        print(f"per-command latency inside the batch (HDR histogram of clock_gettime pairs, ~20-30 ns of it is "
              f"the clock): p50 {pct[50]} ns, p90 {pct[90]} ns, p99 {pct[99]} ns, p99.9 {pct[99.9]} ns")
    gc.enable()


# ------------------------------------------------------------------------------------ pytest-benchmark

try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module", params=["touch", "exchcore"])
    def cmds(request):
        return workload(request.param)

    @pytest.mark.benchmark(group="book.workload", disable_gc=True)
    def test_lowlat_batch(benchmark, cmds):
        benchmark.pedantic(lambda b: run_batch(cmds, book=b), setup=lambda: ((new_book(),), {}), rounds=5)
        benchmark.extra_info["commands"] = len(cmds)

    @pytest.mark.benchmark(group="book.workload", disable_gc=True)
    def test_lowlat_per_call(benchmark, cmds):
        benchmark.pedantic(lambda c: run_per_call(c[1]), setup=lambda: ((per_call_args(cmds),), {}), rounds=2)
        benchmark.extra_info["commands"] = len(cmds)

    @pytest.mark.benchmark(group="book.workload", disable_gc=True)
    def test_sorteddict_engine(benchmark, cmds):
        benchmark.pedantic(lambda: run_python_engine(SortedDictBook(), cmds), rounds=1)
        benchmark.extra_info["commands"] = len(cmds)

    @pytest.mark.benchmark(group="book.workload", disable_gc=True)
    def test_reference_engine_prefix(benchmark, cmds):
        from reference.ref_engine import RefBook

        benchmark.pedantic(lambda: run_python_engine(RefBook(LO, N_TICKS, MAX_ORDERS), cmds[:REF_PREFIX]),
                           rounds=1)
        benchmark.extra_info["commands"] = REF_PREFIX

    @pytest.mark.benchmark(group="book.workload", disable_gc=True)
    def test_nautilus_l3_book(benchmark, cmds):
        pytest.importorskip("nautilus_trader")
        deltas = nautilus_deltas(cmds)
        benchmark.pedantic(run_nautilus, setup=lambda: ((nautilus_calls(deltas),), {}), rounds=1)
        benchmark.extra_info["deltas"] = len(deltas)


if __name__ == "__main__":
    report()
