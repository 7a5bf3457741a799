"""The real ``lowlat`` CLI as a subprocess: every mistake is one line on stderr and a non-zero exit, no traceback.

All the error cases start at once (module fixture) so the file costs about one interpreter start-up, not one per
case.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from brokers._util import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None,
            python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    e.pop("LOWLAT_DEBUG_TRACEBACK", None)
    e.update(env or {})
    return subprocess.run([python, "-m", "lowlat", *args], capture_output=True, text=True, timeout=timeout,
                          env=e, cwd=str(cwd or ROOT), stdin=subprocess.DEVNULL, check=False)


def _write(tmp: Path, name: str, text: str) -> str:
    p = tmp / name
    if tmp.is_dir():  # (collection lists the case names with a placeholder directory)
        p.write_text(text)
    return str(p)


@pytest.fixture(scope="module")
def busy_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


# name -> (argv, env, exit status, text the one error line must contain)
def _cases(tmp: Path, busy: int) -> dict[str, tuple[list[str], dict[str, str], int, str]]:
    dead = free_port()
    bad_toml = _write(tmp, "bad.toml", 'transport = "inproc://x"\nbatch_max = [\n')
    unknown = _write(tmp, "unknown.toml", "batchmax = 3\n")
    out_of_range = _write(tmp, "range.toml", "[demo]\nreject_ratio = 1.5\n")
    return {
        "unknown scheme": (["demo", "--transport", "nat://127.0.0.1:4222"], {}, 2, "did you mean nats://"),
        "url without scheme": (["loadgen", "--transport", "127.0.0.1:4222"], {}, 2, "expected scheme://"),
        "broker not running": (["demo", "--transport", f"nats://127.0.0.1:{dead}", "--connect-timeout", "1"], {}, 1,
                               f"cannot connect to nats://127.0.0.1:{dead}"),
        "kafka not running": (["loadgen", "--transport", f"kafka://127.0.0.1:{dead}", "--connect-timeout", "1"], {}, 1,
                              f"cannot reach Kafka at 127.0.0.1:{dead}"),
        "zmq hub missing": (["loadgen", "--transport", f"zmq+tcp://127.0.0.1:{dead}", "--connect-timeout", "1"], {},
                            1, "no ZeroMQ hub answered"),
        "metrics port in use": (["serve", "validator", "--transport", f"shm://cli-{dead}", "--metrics-port", str(busy)],
                                {}, 1, f"127.0.0.1:{busy} is already in use"),
        "metrics port out of range": (["serve", "validator", "--metrics-port", "70000"], {}, 2, "<= 65535"),
        "toml syntax error": (["demo", "--config", bad_toml], {}, 2, f"{bad_toml}: TOML syntax error"),
        "missing config file": (["demo", "--config", str(tmp / "nope.toml")], {}, 2, "config file not found"),
        "config from env var": (["demo"], {"LOWLAT_CONFIG": str(tmp / "nope.toml")}, 2, "nope.toml"),
        "unknown config key": (["demo", "--config", unknown], {}, 2, "did you mean 'batch_max'?"),
        "config value out of range": (["demo", "--config", out_of_range], {}, 2, "key 'reject_ratio': 1.5 is out"),
        "bad env var": (["demo"], {"LOWLAT_BATCH_MAX": "many"}, 2, "LOWLAT_BATCH_MAX='many'"),
        "env var out of range": (["demo"], {"LOWLAT_DURATION": "0"}, 2, "LOWLAT_DURATION='0'"),
        "batch-max 0": (["serve", "validator", "--batch-max", "0"], {}, 2, ">= 1 and <= 1048576"),
        "reject-ratio 2": (["demo", "--reject-ratio", "2"], {}, 2, ">= 0 and <= 1"),
        "duration 0": (["demo", "--duration", "0"], {}, 2, "> 0 and <= 604800"),
        "rate 0": (["loadgen", "--rate", "0"], {}, 2, "> 0 and <= 100000000"),
        "empty symbols": (["demo", "--symbols", ""], {}, 2, "needs at least one symbol"),
        "bad log level": (["demo", "--log-level", "LOUD"], {}, 2, "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        "matcher has no --forward": (["serve", "matcher", "--forward"], {}, 2, "unrecognized arguments: --forward"),
        "validate-demo count 0": (["validate-demo", "--count", "0"], {}, 2, "1 .. 100000000"),
        "bench bad transport": (["bench", "--transports", "inproc://a,nope"], {}, 2, "--transports"),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory, busy_port):
    tmp = tmp_path_factory.mktemp("cli")
    cases = _cases(tmp, busy_port)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futs = {k: pool.submit(run_cli, *argv, env=env) for k, (argv, env, _, _) in cases.items()}
        return {k: (cases[k], f.result()) for k, f in futs.items()}


CASE_NAMES = list(_cases(Path("/nonexistent"), 0))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_mistake_is_one_line_and_nonzero(results, name):
    (argv, _env, status, needle), r = results[name]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert r.returncode == status, (argv, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and needle in errors[0], r.stderr
    # at most the "connecting to ... (trying for N s)" line besides the error
    others = [ln for ln in lines if ln not in errors]
    assert all(ln.startswith("connecting to ") and "(trying for 1 s)" in ln for ln in others), r.stderr
    assert r.stdout == ""


def test_debug_and_env_show_the_traceback():
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(run_cli, "--debug", "demo", "--config", "/nonexistent/x.toml")
        b = pool.submit(run_cli, "demo", "--config", "/nonexistent/x.toml", env={"LOWLAT_DEBUG_TRACEBACK": "1"})
    for r in (a.result(), b.result()):
        assert r.returncode != 0 and "Traceback" in r.stderr and "config file not found" in r.stderr, r.stderr
