"""The build this suite runs against is the one tests/run.sh asked for."""

import os

import lowlat._core as core


def test_debug_flag_matches_build():
    expect = os.environ.get("LOWLAT_EXPECT_DEBUG") == "1"
    assert bool(core.DEBUG) is expect
