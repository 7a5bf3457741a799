"""Every code block of README.md runs here as a user would run it: Python blocks as scripts in a fresh process,
shell blocks line by line, against real servers started by the fixtures in tests/brokers/.

Addresses in the blocks (``nats://127.0.0.1:4222``, ``kafka://127.0.0.1:9092``, ``/dev/shm/aeron-me``, fixed ports)
are replaced by the fixtures' servers and free ports; nothing else in a block is changed, except the load of the one
load-generator line (see ``LOADGEN_LOAD``).  A block that is an ``await`` fragment runs inside an asyncio wrapper.
Every block must have an entry in ``PLAN`` and every shell line that cannot run here is listed, with the reason, in
``NOT_RUN`` (each is reported as a skip), so a new or changed block fails until it is classified.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from _services_util import ROOT, Proc
from brokers._util import free_port, free_udp_port

README = ROOT / "README.md"

# one-file runner for Python blocks: a script as is, or an await fragment inside asyncio.run
_RUNNER = """\
import ast, asyncio, sys
src = open(sys.argv[1]).read()
try:
    code = compile(src, "README block", "exec")
except SyntaxError:
    code = compile(src, "README block", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    asyncio.run(eval(code, {"__name__": "__main__"}))
else:
    exec(code, {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def key(self) -> str:
        """The block's first line that is not blank and not a comment (shell: its first command): what PLAN is
        keyed by."""
        if self.lang == "bash":
            return self.commands()[0]
        return next(ln.strip() for ln in self.code.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))

    def commands(self) -> list[str]:
        """Shell lines without comments, continuation lines joined."""
        out: list[str] = []
        cur = ""
        for ln in self.code.splitlines():
            s = ln.strip()
            if not s or (s.startswith("#") and not cur):
                continue
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            cur += s
            out.append(re.sub(r"\s+#.*$", "", cur).strip())
            cur = ""
        return out


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w+)\s*$", lines[i])
        if m:
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            blocks.append(Block(m.group(1), i + 1, "\n".join(lines[i + 1:j]) + "\n"))
            i = j
        i += 1
    return blocks


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    e["PYTHONUNBUFFERED"] = "1"
    e.pop("LOWLAT_DEBUG_TRACEBACK", None)
    return e


def run_python(code: str, tmp: Path, subs: dict[str, str] | None = None, timeout: float = 90) -> str:
    """Run a block as a script in a fresh interpreter; fail with its output unless it exits 0."""
    for old, new in (subs or {}).items():
        assert old in code, f"{old!r} is no longer in the block: update the substitution"
        code = code.replace(old, new)
    script = tmp / "block.py"
    script.write_text(code)
    runner = tmp / "run_block.py"
    runner.write_text(_RUNNER)
    r = subprocess.run([sys.executable, str(runner), str(script)], capture_output=True, text=True,
                       timeout=timeout, cwd=str(tmp), env=_env(), stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, f"README block failed (rc {r.returncode}):\n{code}\n--- stdout\n{r.stdout}\n" \
                              f"--- stderr\n{r.stderr}"
    return r.stdout


def cli_args(command: str) -> list[str]:
    """A README ``lowlat ...`` line as the argv of this checkout's CLI (``python -m lowlat``)."""
    words = command.split()
    assert words[0] == "lowlat", command
    return [sys.executable, "-m", "lowlat", *words[1:]]


def run_cli_line(command: str, tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cli_args(command), capture_output=True, text=True, timeout=timeout, cwd=str(tmp),
                       env=_env(), stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, f"{command!r} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


BLOCKS = readme_blocks()


def block(key_prefix: str) -> Block:
    found = [b for b in BLOCKS if b.key.startswith(key_prefix)]
    assert len(found) == 1, f"{len(found)} README blocks start with {key_prefix!r}"
    return found[0]


# ------------------------------------------------------------------------------------------ what cannot run here
NOT_RUN = {
    "pip install . && lowlat demo":
        "installs into the interpreter running the tests; tests/packaging/test_new_user.py does it in a fresh "
        "venv from the wheel and runs `lowlat demo` there",
    "bash tests/run.sh": "runs this whole test suite (what CI runs); it cannot run inside itself",
    "bash tests/setup/30-aeron.sh":
        "machine setup (downloads and builds Aeron once); tests/run.sh runs it before the suite, the Aeron "
        "fixtures use what it installed",
    "AERON_HOME=~/.cache/lowlat/aeron-1.11.3 pip install -e .":
        "rebuilds and reinstalls the package under test; the suite's build already has lowlat._aeron when "
        "AERON_HOME is set (the Aeron blocks below use it)",
    "lowlat bench":
        "a benchmark (every transport found here, 50,000 pipelined orders each, minutes of both cores); "
        "performance is measured in benchmarks/, never in tests, and test_services_demo.py runs `bench` on two "
        "transports with a small count",
}

# the load-generator line at a load this shared 2-core CI machine can take next to other jobs; the rate is the
# user's choice, not a claim the test checks
LOADGEN_LOAD = {"--rate 20000 --duration 10": "--rate 2000 --duration 2"}


# ------------------------------------------------------------------------------------------ python blocks
def _flatbuffers(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    # the values the block's comments promise
    run_python(b.code + "assert v.validate(buf) == 0 and list(codes) == [0, 0, Reject.MALFORMED]\n"
               "assert lowlat.read_order(buf) == (1, 'AAPL', 101.25, 100, 0, 1700000000000000000)\n", tmp)


def _matching(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    run_python(b.code + "assert (rc, filled, n) == (0, 8, 5) and n_done == 2 and n_frames == 2\n"
               "assert book.best_bid() is None and book.best_ask() is None  # emptied by the cancels\n"
               "assert list(events[:4]['kind']) == [EventKind.ACCEPTED, EventKind.L2, EventKind.CANCELED, "
               "EventKind.L2]\n", tmp)


def _rings(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    name = f"readme-{uuid.uuid4().hex[:8]}"
    run_python(b.code + "assert rx.lapped_count == 0\n", tmp, {'"orders"': repr(name)})


def _transports(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    nats = request.getfixturevalue("nats_server")
    out = run_python(b.code, tmp, {"nats://127.0.0.1:4222": nats.url})
    assert out.strip() == "md.AAPL.trades b'...' b'OK'", out


def _shm_sync(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    out = run_python(b.code, tmp, {"shm://orders": f"shm://readme-{uuid.uuid4().hex[:8]}"}, timeout=30)
    assert out.strip() == "b'0'", out


def _aeron_async(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    from brokers.aeron import require_aeron_ext

    require_aeron_ext()
    drv = request.getfixturevalue("aeron_driver")
    out = run_python(b.code, tmp, {"/dev/shm/aeron-me": drv.aeron_dir,
                                   "127.0.0.1:40123": f"127.0.0.1:{free_udp_port()}"})
    assert out.strip() == "b'OK'", out


def _aeron_binding(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    from brokers.aeron import require_aeron_ext

    require_aeron_ext()
    drv = request.getfixturevalue("aeron_driver")
    stream = str(20_000 + os.getpid() % 10_000)  # a stream no other test of the session uses
    out = run_python(b.code, tmp, {"/dev/shm/aeron-me": drv.aeron_dir, '"aeron:ipc", 10)': f'"aeron:ipc", {stream})'})
    assert out.strip() == "[b'an order', b'hdr:an order']", out


def _kafka(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("kafka_url")
    # topics are the block's own names: a broker of its own, so a previous test's messages cannot be read here
    out = run_python(b.code, tmp, {"kafka://127.0.0.1:9092": url}, timeout=120)
    assert out.strip() == "order b'an order'", out


def _services_python(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    """Runs until SIGTERM/SIGINT, as the block says: drive orders through it, then Ctrl-C it."""
    nats = request.getfixturevalue("nats_server_own")  # orders.in: no other test's stream or worker on it
    code = b.code.replace("nats://127.0.0.1:4222", nats.url)
    script = tmp / "services_block.py"
    script.write_text(code)
    p = Proc([sys.executable, str(script)])
    try:
        reports = asyncio.run(_cross_two_orders(nats.url))
        assert {r.status for r in reports} >= {0, 2}, reports   # NEW and FILLED: the matcher matched
        p.p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0, p.output
        assert "Traceback" not in p.output, p.output
    finally:
        p.kill()


async def _cross_two_orders(url: str) -> list:
    """Wait until the validator answers, then send a buy and a sell that cross; return the execution reports."""
    import lowlat
    from lowlat.errors import TransportError
    from lowlat.transport import connect

    async with connect(url) as t:
        sub = await t.subscribe("exec.AAPL")
        deadline = time.monotonic() + 30
        while True:
            try:
                await t.request("orders.in", lowlat.encode_order(1, "AAPL", 100.0, 5, lowlat.Side.BUY, 1), timeout=1)
                break
            except TransportError:
                assert time.monotonic() < deadline, "the services block never answered"
                await asyncio.sleep(0.2)
        r = await t.request("orders.in", lowlat.encode_order(2, "AAPL", 100.0, 5, lowlat.Side.SELL, 1), timeout=5)
        assert lowlat.decode_validation_result(r.data).accepted
        reports: list = []
        while not any(x.status == 2 for x in reports):
            m = await asyncio.wait_for(sub.__anext__(), 10)
            reports.append(lowlat.decode_execution_report(m.data))
        return reports


# ------------------------------------------------------------------------------------------ shell blocks
def _install(b: Block, tmp: Path, request: pytest.FixtureRequest) -> list[str]:
    return []  # both lines are in NOT_RUN


def _aeron_setup(b: Block, tmp: Path, request: pytest.FixtureRequest) -> list[str]:
    """The driver line runs (with its own AERON_DIR): it must come up and create its CnC file."""
    from brokers.aeron import find_aeronmd

    line = next(c for c in b.commands() if c.endswith("/bin/aeronmd"))
    if not find_aeronmd():
        pytest.skip("aeronmd is not installed here (bash tests/setup/30-aeron.sh)")
    aeron_dir = f"/dev/shm/lowlat-readme-{uuid.uuid4().hex[:8]}"
    cmd = line.replace("/dev/shm/aeron-$USER", aeron_dir)
    p = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, cwd=str(tmp))
    try:
        deadline = time.monotonic() + 15
        while not (Path(aeron_dir) / "cnc.dat").exists():
            assert p.poll() is None, f"{cmd!r} exited {p.returncode}: {p.stdout.read() if p.stdout else ''}"
            assert time.monotonic() < deadline, f"{cmd!r} made no {aeron_dir}/cnc.dat in 15 s"
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        subprocess.run(["rm", "-rf", aeron_dir], check=False)
    return [line]


def _cli(b: Block, tmp: Path, request: pytest.FixtureRequest) -> list[str]:
    nats = request.getfixturevalue("nats_server_own")  # orders.in: no other test's stream or worker on it
    cmds = b.commands()
    ran: list[str] = []

    def sub(c: str) -> str:
        c = c.replace("nats://127.0.0.1:4222", nats.url).replace("--metrics-port 9464",
                                                                 f"--metrics-port {metrics_port}")
        for old, new in LOADGEN_LOAD.items():
            c = c.replace(old, new)
        return c

    metrics_port = free_port()
    demo_lines = [c for c in cmds if c.startswith("lowlat demo")]
    for c in demo_lines:
        r = run_cli_line(sub(c), tmp)
        assert "unanswered 0" in r.stdout and "== matcher" in r.stdout, r.stdout
        ran.append(c)
    serve = [c for c in cmds if c.startswith("lowlat serve")]
    loadgen = [c for c in cmds if c.startswith("lowlat loadgen")]
    assert len(serve) == 2 and len(loadgen) == 1, cmds
    procs = [Proc(cli_args(sub(c))) for c in serve]
    try:
        for p in procs:
            p.wait_for('"ready"', timeout=60)
        exec_reports = asyncio.run(_count_exec_during(loadgen[0], sub, tmp))
        assert exec_reports > 0, "the matcher got nothing to match: the validator must --forward"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            assert "lowlat_messages_total" in resp.read().decode()
        ran += [*serve, *loadgen]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(30) == 0, p.output
    assert (tmp / "lat.png").stat().st_size > 0
    return ran


async def _count_exec_during(loadgen: str, sub: Callable[[str], str], tmp: Path) -> int:
    from lowlat.transport import connect

    url = re.search(r"--transport (\S+)", sub(loadgen)).group(1)  # type: ignore[union-attr]
    async with connect(url) as t:
        s = await t.subscribe("exec.>", max_pending=1_000_000)
        await t.flush()
        proc = await asyncio.create_subprocess_exec(*cli_args(sub(loadgen)), cwd=str(tmp), env=_env(),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, f"{loadgen!r}: {out.decode()}\n{err.decode()}"
        await asyncio.sleep(0.5)
        n = 0
        while s.get_nowait() is not None:
            n += 1
        return n


def _breaker_block(b: Block, tmp: Path, request: pytest.FixtureRequest) -> None:
    out = run_python(b.code, tmp, {'"inproc://ops"': f'"inproc://readme-{uuid.uuid4().hex[:8]}"'}, timeout=60)
    assert out.splitlines() == ["fast failure: risk.check OPEN", "after recovery: CLOSED"], out


def _bash(command: str, tmp: Path) -> str:
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=str(ROOT),
                       env=_env(), stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, f"{command!r} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _operations(b: Block, tmp: Path, request: pytest.FixtureRequest) -> list[str]:
    """doctor; a pinned validator whose threads' CPU sets and GC metrics are read while it runs; SIGTERM; the
    Prometheus rules checked and unit-tested by promtool."""
    from brokers._util import require_binary

    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the block pins to CPUs 0 and 1")
    cmds = b.commands()
    doctor, serve, grep, curl, kill, *prom = cmds
    assert doctor == "lowlat doctor" and serve.endswith(" &") and kill == "kill $!", cmds
    r = run_cli_line(doctor, tmp)
    assert r.stdout.startswith("lowlat doctor: what affects latency on this host"), r.stdout
    url, port = f"shm://readme-{uuid.uuid4().hex[:8]}", free_port()

    def sub(c: str) -> str:
        return c.replace("shm://ops", url).replace("9464", str(port))

    p = Proc(cli_args(sub(serve[:-2])))
    try:
        p.wait_for('"ready"', timeout=60)
        lines = _bash(sub(grep).replace("$!", str(p.p.pid)), tmp).splitlines()
        sets = {ln.split("/task/")[1].split("/")[0]: ln.rsplit("\t", 1)[1] for ln in lines}
        assert sets.pop(str(p.p.pid)) == "1" and sets and set(sets.values()) == {"0"}, lines
        out = _bash(sub(curl), tmp)
        assert "lowlat_gc_frozen_objects" in out and 'lowlat_gc_pause_seconds_count{generation="2"}' in out, out
    finally:
        p.terminate()
    assert p.wait(30) == 0, p.output
    require_binary("promtool", "bash tests/setup/40-promtool.sh")
    assert len(prom) == 2
    for c in prom:
        assert "SUCCESS" in _bash(c, tmp)
    return cmds


PLAN: dict[str, Callable[[Block, Path, pytest.FixtureRequest], object]] = {
    "import numpy as np": _flatbuffers,   # refined below by the second line
    "import lowlat": _rings,
    "import asyncio": _transports,
    "import threading": _shm_sync,
    "from lowlat import _aeron as A": _aeron_binding,
    "pip install . && lowlat demo": _install,
    "bash tests/setup/30-aeron.sh": _aeron_setup,
    "lowlat demo": _cli,
    "lowlat doctor": _operations,
}


def plan_for(b: Block) -> tuple[str, Callable[[Block, Path, pytest.FixtureRequest], object]]:
    """The runner of a block: by its first line, and by what it uses where blocks start alike."""
    if b.lang == "python":
        if "Book(" in b.code:
            return "matching engine", _matching
        if "Validator([InstrumentRules" in b.code:
            return "flatbuffers", _flatbuffers
        if "aeron:udp" in b.code:
            return "aeron transport", _aeron_async
        if "kafka://" in b.code:
            return "kafka transport", _kafka
        if "run_services(" in b.code:
            return "services from python", _services_python
        if "Breakers(" in b.code:
            return "circuit breaker", _breaker_block
    return b.key, PLAN[b.key]


CODE_BLOCKS = [b for b in BLOCKS if b.lang in ("python", "bash")]


def test_every_block_is_classified():
    unplanned = [f"line {b.line}: {b.key}" for b in CODE_BLOCKS
                 if b.lang == "bash" and b.key not in PLAN
                 or b.lang == "python" and plan_for(b)[1] in (_install, _aeron_setup, _cli)]
    assert not unplanned, f"README blocks with no runner in PLAN: {unplanned}"
    names = [plan_for(b)[0] for b in CODE_BLOCKS]
    assert len(names) == len(set(names)), names   # one runner per block
    other = {b.lang for b in BLOCKS} - {"python", "bash", "text"}
    assert not other, f"README blocks in languages this test does not run: {other}"
    assert len(CODE_BLOCKS) >= 12  # the parser found the blocks


def _marks(b: Block) -> list[pytest.MarkDecorator]:
    """Markers by what a block's runner starts, so ``-m "not integration"`` or ``-m nats`` select as elsewhere."""
    runner = plan_for(b)[1]
    if runner in (_transports, _services_python, _cli):
        return [pytest.mark.integration, pytest.mark.nats]
    if runner is _kafka:
        return [pytest.mark.integration, pytest.mark.kafka]
    if runner in (_aeron_async, _aeron_binding, _aeron_setup):
        return [pytest.mark.integration, pytest.mark.aeron]
    return []


def _params(lang: str) -> list:
    return [pytest.param(b, marks=_marks(b), id=f"L{b.line}-{plan_for(b)[0].replace(' ', '_')[:40]}")
            for b in CODE_BLOCKS if b.lang == lang]


@pytest.mark.parametrize("b", _params("python"))
def test_python_block(b: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    plan_for(b)[1](b, tmp_path, request)


@pytest.mark.parametrize("b", _params("bash"))
def test_shell_block(b: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ran = plan_for(b)[1](b, tmp_path, request)
    assert isinstance(ran, list)
    unaccounted = [c for c in b.commands() if c not in ran and c not in NOT_RUN]
    assert not unaccounted, f"README line {b.line}: commands neither run nor listed in NOT_RUN: {unaccounted}"


@pytest.mark.parametrize("command", list(NOT_RUN))
def test_commands_not_run_here(command: str) -> None:
    assert any(command in b.commands() for b in CODE_BLOCKS), f"{command!r} is no longer in README.md"
    pytest.skip(f"README command not run by the suite: {command!r}: {NOT_RUN[command]}")
