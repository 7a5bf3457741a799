"""``lowlat demo`` / ``lowlat bench`` / ``lowlat loadgen`` as real processes (same code as the console script)."""

from __future__ import annotations

import sys
import uuid

import pytest
from _services_util import Proc, service

pytestmark = pytest.mark.integration


def _check_report(out: str) -> None:
    for key in ("p50", "p90", "p99", "p99.9", "max", "orders/s answered", "rejected", "by reason:",
                "validator: in", "matcher: in", "market data AAPL"):
        assert key in out, (key, out)
    assert "unanswered 0" in out and "duplicates 0" in out


def _check_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_demo_on_embedded_transport(tmp_path):
    png = tmp_path / "lat.png"
    p = service("demo", "--duration", "1.5", "--rate", "2000", "--plot", str(png), "--no-progress")
    assert p.wait(90) == 0, p.output
    _check_report(p.output)
    assert "inproc://" in p.output
    _check_png(png)


@pytest.mark.nats
def test_demo_over_nats(nats_server, tmp_path):
    png = tmp_path / "lat.png"
    p = service("demo", "--transport", nats_server.url, "--duration", "1", "--rate", "1000", "--plot", str(png),
                "--no-progress")
    assert p.wait(90) == 0, p.output
    _check_report(p.output)
    _check_png(png)


def test_python_dash_m_lowlat_runs_the_demo(tmp_path):
    """`python -m lowlat demo` (the console script's module)."""
    p = Proc([sys.executable, "-m", "lowlat", "demo", "--duration", "0.5", "--rate", "1000", "--no-plot",
              "--no-progress"])
    assert p.wait(90) == 0, p.output
    assert "p99.9" in p.output


def test_bench_table_on_embedded_transports(tmp_path):
    png = tmp_path / "bench.png"
    name = f"bench-{uuid.uuid4().hex[:8]}"
    p = service("bench", "--transports", f"inproc://{name},shm://{name}", "--round-trips", "200", "--count",
                "2000", "--plot", str(png))
    assert p.wait(120) == 0, p.output
    lines = [ln for ln in p.output.splitlines() if ln.startswith(("inproc://", "shm://"))]
    assert len(lines) == 2 and not any("unavailable" in ln for ln in lines), p.output
    _check_png(png)
