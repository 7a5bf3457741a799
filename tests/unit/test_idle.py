"""The one idle-strategy family (lowlat._idle): parameters, the state machine seen through ``step``, kind names,
and that the rings, the Aeron transport and ``lowlat`` all use these same classes."""

import importlib.util
import time

import pytest
from brokers._util import in_ci

import lowlat
from lowlat import (
    BackoffIdle,
    BusySpinIdle,
    IdleStrategy,
    SleepingIdle,
    YieldingIdle,
    _idle,
    _ring,
    idle_strategy,
)


def test_one_family_everywhere():
    for cls in (BackoffIdle, BusySpinIdle, SleepingIdle, YieldingIdle):
        assert issubclass(cls, IdleStrategy)
        assert cls.__module__ == "lowlat._idle"
        assert cls.__name__ in lowlat.__all__
    assert _ring.BackoffIdle is BackoffIdle and _ring.IdleStrategy is IdleStrategy
    assert "idle_strategy" in lowlat.__all__


def test_one_set_of_defaults():
    b = BackoffIdle()
    assert (b.max_spins, b.max_yields, b.min_park_ns, b.max_park_ns) == (
        _idle.DEFAULT_MAX_SPINS, _idle.DEFAULT_MAX_YIELDS, _idle.DEFAULT_MIN_PARK_NS, _idle.DEFAULT_MAX_PARK_NS)
    assert (b.max_spins, b.max_yields, b.min_park_ns, b.max_park_ns) == (10, 5, 1000, 1_000_000)
    assert repr(idle_strategy(None)) == repr(b) == repr(idle_strategy("backoff"))
    assert SleepingIdle().park_ns == _idle.DEFAULT_MIN_PARK_NS


def test_backoff_steps_spin_then_yield_then_park_doubling_to_the_cap():
    b = BackoffIdle(max_spins=3, max_yields=2, min_park_ns=100, max_park_ns=500)
    got = [b.step() for _ in range(10)]
    assert got == [_idle.SPIN] * 3 + [_idle.YIELD] * 2 + [100, 200, 400, 500, 500]
    assert b.step(1) == _idle.SPIN            # work resets the backoff
    assert [b.step() for _ in range(4)] == [_idle.SPIN] * 3 + [_idle.YIELD]
    b.reset()
    assert b.step() == _idle.SPIN


@pytest.mark.parametrize(("idle", "action"), [(BusySpinIdle(), 0), (YieldingIdle(), -1),
                                              (SleepingIdle(park_ns=7000), 7000)])
def test_single_phase_strategies_always_ask_the_same(idle, action):
    assert [idle.step() for _ in range(50)] == [action] * 50


@pytest.mark.parametrize("kind", ["busy_spin", "yield", "sleep", "backoff"])
def test_kind_names_make_fresh_strategies(kind):
    a, b = idle_strategy(kind), idle_strategy(kind)
    assert a.name == kind and a is not b
    s = BackoffIdle()
    assert idle_strategy(s) is s


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown idle strategy"):
        idle_strategy("spin-forever")
    with pytest.raises(TypeError):
        idle_strategy(1.5)
    with pytest.raises(ValueError):
        BackoffIdle(min_park_ns=10, max_park_ns=5)
    with pytest.raises(ValueError):
        BackoffIdle(min_park_ns=0)
    with pytest.raises(ValueError):
        SleepingIdle(park_ns=0)


def test_idle_parks_with_the_strategy():
    s = SleepingIdle(park_ns=2_000_000)
    t0 = time.perf_counter()
    for _ in range(5):
        s.idle()
    assert time.perf_counter() - t0 >= 0.009
    t0 = time.perf_counter()
    s.idle(1)                                  # work: returns at once
    BusySpinIdle().idle()
    assert time.perf_counter() - t0 < 0.5


def test_ring_blocking_call_uses_its_own_copy_of_the_state():
    b = BackoffIdle(max_spins=1, max_yields=0, min_park_ns=1000, max_park_ns=1000)
    b.step()
    b.step()                                   # the object's own state is past its spin phase
    with pytest.raises(TimeoutError):
        _ring.SpscRing(64).pop(timeout=0.01, idle=b)
    assert b.step() == 1000                    # the ring call neither reset nor advanced it


def test_aeron_transport_takes_the_same_strategies():
    if importlib.util.find_spec("lowlat._aeron") is None:
        if in_ci():
            pytest.fail("lowlat._aeron was not built (tests/run.sh sets AERON_HOME for the build)", pytrace=False)
        pytest.skip("lowlat._aeron was not built (AERON_HOME unset at build time)")
    from lowlat.transport.aeron import AeronTransport

    b = BackoffIdle(max_spins=2)
    assert AeronTransport("aeron:ipc", poll_idle=b)._idle is b
    assert AeronTransport("aeron:ipc", poll_idle="yield")._idle.name == "yield"
    assert AeronTransport("aeron:ipc")._idle.name == "backoff"
    with pytest.raises(ValueError, match="unknown idle strategy"):
        AeronTransport("aeron:ipc", poll_idle="spin")
