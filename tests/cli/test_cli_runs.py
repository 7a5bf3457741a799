"""The real ``lowlat`` CLI as a subprocess: --json, Ctrl-C with a partial report, --bind, log formats, help text."""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from _services_util import Proc
from brokers._util import free_port_pair
from test_cli_errors import run_cli

from lowlat import cli


def test_demo_json_is_one_object_on_stdout(tmp_path):
    r = run_cli("demo", "--duration", "0.5", "--rate", "1000", "--no-progress", "--json", "--plot",
                str(tmp_path / "p.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert isinstance(obj, dict) and obj["sent"] == obj["answered"] == 500
    assert "== throughput" in r.stderr and "== latency plot" in r.stderr  # the human report went to stderr
    # the demo's own CPU accounting: the whole process (generator + services) per order, in JSON and in the report
    assert 0 < obj["cpu_s"] and obj["cpu_per_order_ns"] == pytest.approx(obj["cpu_s"] * 1e9 / 500, rel=0.01)
    assert "== cpu:" in r.stderr and "per order" in r.stderr


def test_demo_spin_answers_every_order_and_keeps_a_core_busy(tmp_path):
    r = run_cli("demo", "--duration", "0.5", "--rate", "1000", "--no-progress", "--json", "--spin", "--plot",
                str(tmp_path / "p.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["sent"] == obj["answered"] == 500 and obj["duplicates"] == 0
    # it waits by yielding to the loop, so the process is busy for most of the run (the timer path idles)
    assert obj["cpu_s"] > 0.3 * obj["elapsed_s"], obj


def _interrupt_after(p: Proc, needle: str) -> int:
    p.wait_for(needle, timeout=60)
    time.sleep(0.5)
    p.p.send_signal(signal.SIGINT)
    return p.wait(60)


def test_ctrl_c_during_demo_prints_the_partial_report():
    p = Proc([sys.executable, "-m", "lowlat", "demo", "--duration", "60", "--rate", "1000", "--no-plot",
              "--no-progress"])
    try:
        assert _interrupt_after(p, "lowlat demo:") == 130, p.output
    finally:
        p.kill()
    out = p.output
    assert "Traceback" not in out, out
    assert "interrupted" in out and "== throughput" in out and "== validator" in out, out
    sent = int(re.search(r"; sent ([\d,]+), answered", out).group(1).replace(",", ""))
    assert 0 < sent < 60_000


def test_ctrl_c_during_loadgen_prints_the_partial_report():
    url = f"shm://cli-{uuid.uuid4().hex[:8]}"
    v = Proc([sys.executable, "-m", "lowlat", "serve", "validator", "--transport", url])
    try:
        v.wait_for('"ready"')
        lg = Proc([sys.executable, "-m", "lowlat", "loadgen", "--transport", url, "--duration", "60", "--rate",
                   "500", "--no-progress"])
        try:
            time.sleep(3)
            lg.p.send_signal(signal.SIGINT)
            assert lg.wait(60) == 130, lg.output
        finally:
            lg.kill()
        assert "Traceback" not in lg.output and "== throughput" in lg.output, lg.output
        assert "unanswered 0" in lg.output, lg.output  # what was sent before Ctrl-C was answered
    finally:
        v.terminate()
        assert v.wait(30) == 0, v.output
        v.kill()


@pytest.mark.zmq
def test_demo_bind_is_the_zmq_hub(tmp_path):
    url = f"zmq+tcp://127.0.0.1:{free_port_pair()}"
    r = run_cli("demo", "--transport", url, "--bind", "--duration", "0.5", "--rate", "500", "--no-plot",
                "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "answered 250, unanswered 0" in r.stdout, r.stdout


@pytest.mark.zmq
def test_loadgen_bind_is_the_zmq_hub():
    """loadgen is the hub; a validator connects to it (and says how long it tries) before orders flow."""
    url = f"zmq+tcp://127.0.0.1:{free_port_pair()}"
    lg = Proc([sys.executable, "-m", "lowlat", "loadgen", "--transport", url, "--bind", "--count", "300", "--rate",
               "100", "--no-progress"])
    v = None
    try:
        time.sleep(1.0)  # the hub binds first; the validator then connects (it would fail without a hub)
        v = Proc([sys.executable, "-m", "lowlat", "serve", "validator", "--transport", url])
        v.wait_for("connecting to " + url)
        v.wait_for('"ready"')
        assert lg.wait(60) in (0, 1), lg.output
        assert "== throughput" in lg.output, lg.output
        answered = int(re.search(r", answered ([\d,]+),", lg.output).group(1).replace(",", ""))
        assert answered > 100, lg.output  # the orders sent once the validator was up were answered
    finally:
        lg.kill()
        if v is not None:
            v.terminate()
            v.wait(30)
            v.kill()


def test_log_format_text_and_json():
    url = f"shm://cli-{uuid.uuid4().hex[:8]}"
    for fmt, needle in (("text", "INFO lowlat.services: ready"), ("json", '"msg": "ready"')):
        p = Proc([sys.executable, "-m", "lowlat", "serve", "validator", "--transport", url, "--log-format", fmt])
        try:
            line = p.wait_for("ready")
            assert needle in line, p.output
            if fmt == "json":
                json.loads(line)
            p.terminate()
            assert p.wait(30) == 0
        finally:
            p.kill()


def test_library_logging_adds_no_handler():
    code = ("import logging, lowlat, lowlat.services, lowlat.transport, lowlat.services.demo, "
            "lowlat.services.durable, lowlat.services.validator, lowlat.services.matcher\n"
            "lg = logging.getLogger('lowlat')\n"
            "assert lg.handlers == [] and lg.propagate, (lg.handlers, lg.propagate)\n"
            "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.stdout.strip() == "ok", r.stderr


def test_setup_logging_keeps_propagation(capsys):
    from lowlat.services import setup_logging

    root = logging.getLogger()
    before = list(root.handlers)
    try:
        setup_logging("INFO", json_lines=False)
        setup_logging("INFO", json_lines=False)  # idempotent: one handler
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
        assert logging.getLogger("lowlat").propagate and logging.getLogger("lowlat").handlers == []
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
        logging.getLogger("lowlat").setLevel(logging.NOTSET)


def _parsers(p: argparse.ArgumentParser, path: str = "lowlat"):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _parsers(sp, f"{path} {name}")


def test_every_command_and_flag_has_help():
    seen = 0
    for path, p in _parsers(cli.build_parser()):
        assert p.description or path == "lowlat", f"{path}: no description"
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for ca in a._choices_actions:
                    assert ca.help, f"{path} {ca.dest}: no help"
                continue
            assert a.help and a.help is not argparse.SUPPRESS, f"{path} {a.option_strings or a.dest}: no help"
            seen += 1
    assert seen > 80


def test_serve_validator_and_matcher_show_only_their_flags():
    flags = {path: {o for a in p._actions for o in a.option_strings} for path, p in _parsers(cli.build_parser())}
    assert "--forward" in flags["lowlat serve validator"] and "--snapshot-interval" not in flags["lowlat serve validator"]
    assert "--snapshot-interval" in flags["lowlat serve matcher"] and "--forward" not in flags["lowlat serve matcher"]
    assert {"--forward", "--snapshot-interval"} <= flags["lowlat serve all"]
    # flags and config keys share names: every flag that is a config field is spelled like its key
    from lowlat.services.config import ALIASES, ServiceConfig

    keys = {f.replace("_", "-") for f in ServiceConfig.__dataclass_fields__} | {k.replace("_", "-") for k in ALIASES}
    for path in ("lowlat demo", "lowlat serve all", "lowlat loadgen"):
        p = dict(_parsers(cli.build_parser()))[path]
        for a in p._actions:
            if a.dest in ServiceConfig.__dataclass_fields__:
                assert any(o[2:] in keys for o in a.option_strings), (path, a.option_strings)


def test_validate_demo_help_is_not_the_module_docstring():
    r = run_cli("validate-demo", "--help")
    assert r.returncode == 0 and "Sub-commands:" not in r.stdout and "--reject-ratio" in r.stdout


def test_log_level_default_per_command():
    helps = {path: p.format_help() for path, p in _parsers(cli.build_parser())}
    assert "(default ERROR)" in helps["lowlat demo"] and "(default INFO)" in helps["lowlat serve validator"]


def test_durable_services_are_reachable_from_the_cli():
    r = run_cli("durable", "validator", "--help")
    assert r.returncode == 0 and "--snapshot-every" in r.stdout, r.stderr
