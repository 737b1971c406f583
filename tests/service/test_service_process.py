"""The service as users run it: `gatecheck demo --serve` in a subprocess, stopped hard and softly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gatecheck._values import document_time
from gatecheck.ledger import SqliteLedger

from ..conftest import local_http, served_bases


def gatecheck() -> str:
    found = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
    assert found
    return found


#: The phases the served demo here evaluates: staging's chain and the warehouse's (production's
#: five, on the demo's three-node cluster, would double its work and judge nothing these tests read).
SERVED = ("staging-predeploy", "staging-deploy", "staging-soak", "warehouse-release")


def launch_demo(root: Path, log_format: str = "text") -> subprocess.Popen[str]:
    """Start `gatecheck demo --serve` on ``root``, every phase of ``SERVED`` each second (not yet
    ready), on a port it picks. Its log goes to ``root/service.log`` (a pipe nobody reads would
    fill and stall it)."""
    for gate in (root / "gates").glob("*.yaml"):
        if gate.stem not in SERVED:
            gate.unlink()
    thresholds = yaml.safe_load((root / "thresholds.yaml").read_text())
    thresholds["phases"] = {p: t for p, t in thresholds.get("phases", {}).items() if p in SERVED}
    (root / "thresholds.yaml").write_text(yaml.safe_dump(thresholds))
    path = root / "gatecheck.yaml"
    project = yaml.safe_load(path.read_text())
    project["service"]["interval"] = "1s"
    path.write_text(yaml.safe_dump(project))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    env["GATECHECK_LOG_FORMAT"] = log_format
    with open(root / "service.log", "w") as log:
        return subprocess.Popen(
            [gatecheck(), "demo", "--config", str(root), "--serve", "--listen", "127.0.0.1:0"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True,
        )  # fmt: skip


def service_log(root: Path) -> str:
    return (root / "service.log").read_text()


def wait_ready(process: subprocess.Popen[str], root: Path) -> str:
    """The demo service's address, once it is ready."""
    deadline = time.monotonic() + 90
    (base,) = served_bases(root / "service.log", process, timeout=90)
    while time.monotonic() < deadline:
        assert process.poll() is None, service_log(root)
        try:
            if local_http.get(f"{base}/readyz", timeout=1).status_code == 200:
                return base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("the demo service did not become ready")


def stop_demo(process: subprocess.Popen[str], root: Path) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    # killed, the demo could not stop its servers: they are stopped here
    for server in ("nats", "postgres"):
        subprocess.run(["pkill", "-f", str(root / ".gatecheck" / server)], check=False)


def _served(root: Path, log_format: str) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    process = launch_demo(root, log_format)
    try:
        base = wait_ready(process, root)
        yield process, base, root
    finally:
        stop_demo(process, root)


@pytest.fixture
def demo_service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """The service the killing test kills: its own, alive only for that test (a service
    evaluating every phase each second costs a core the other tests need)."""
    from ..conftest import copy_config

    yield from _served(copy_config(tmp_path / "config"), "text")


@pytest.fixture(scope="module")
def shared_demo_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """The service the readers' test loads and the SIGTERM test then stops (in this file's
    order; a test that finds it stopped fails, it does not pass). It logs JSON lines: the
    SIGTERM test reads them."""
    from ..conftest import copy_config

    yield from _served(copy_config(tmp_path_factory.mktemp("demo-serve") / "config"), "json")


def wait_for_records(ledger_path: Path, phase: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ledger_path.exists() and len(SqliteLedger(ledger_path).history(phase)) >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"fewer than {count} evaluations of {phase} recorded")


def test_killed_during_evaluations_the_ledger_holds_only_complete_records(demo_service) -> None:
    process, _, root = demo_service
    assert process.poll() is None, "the demo service stopped before its test"
    ledger_path = root / ".gatecheck" / "served.db"
    wait_for_records(ledger_path, "staging-soak", 2)
    os.kill(process.pid, signal.SIGKILL)  # every phase evaluates each second: some are in flight
    process.wait(timeout=10)
    # The kernel stops the demo's nats-server with it (PR_SET_PDEATHSIG).
    nats_dir = str(root / ".gatecheck" / "nats")
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", nats_dir], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the killed demo left its nats-server running"
        time.sleep(0.1)
    ledger = SqliteLedger(ledger_path)
    for phase in ("staging-predeploy", "staging-soak", "warehouse-release"):
        records = ledger.history(phase)
        assert records
        assert all(r.to_verdict().phase == phase for r in records)  # every record parses whole


def test_concurrent_readers_get_no_errors_while_evaluations_run(shared_demo_service) -> None:
    """bench/load.py, short: 20 clients from a second process (this one runs the script as a
    third) for 4 s against the demo service evaluating every phase every second, and on until
    the service has recorded an evaluation since they started (a loaded machine can take longer
    than 4 s over one)."""
    import re

    _, base, _ = shared_demo_service
    script = Path(__file__).resolve().parents[2] / "bench" / "load.py"
    result = subprocess.run(
        [sys.executable, str(script), "--url", base, "--clients", "20", "--seconds", "4", "--until-evaluated", "120"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    served = re.search(r"requests served: (\d+) \(\d+/s\), errors: (\d+)", result.stdout)
    assert served is not None, result.stdout
    # How many requests 4 s allows depends on the machine; that every client was answered, on
    # every endpoint, without an error while evaluations ran does not (each of the 20 clients
    # asks at least once, starting at its own endpoint).
    assert int(served.group(2)) == 0 and int(served.group(1)) >= 20, result.stdout
    for label in ("/metrics", "/api/v1/phases", "/api/v1/phases/{p}/verdict", "/api/v1/phases/{p}/history",
                  "/healthz", "/readyz"):  # fmt: skip
        asked = re.search(rf"^{re.escape(label)}\s+(\d+)\s", result.stdout, re.MULTILINE)
        assert asked is not None and int(asked.group(1)) >= 1, (label, result.stdout)
    evaluated = re.search(r"evaluations recorded during the run: (\d+)", result.stdout)
    assert evaluated is not None and int(evaluated.group(1)) > 0, result.stdout


def test_sigterm_stops_cleanly_and_stops_the_bus(shared_demo_service) -> None:
    process, base, root = shared_demo_service
    assert process.poll() is None, "the shared demo service stopped before its SIGTERM test"
    wait_for_records(root / ".gatecheck" / "served.db", "staging-soak", 2)
    nats_dir = str(root / ".gatecheck" / "nats")
    assert subprocess.run(["pgrep", "-f", nats_dir], capture_output=True).returncode == 0  # it runs
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # faulthandler: dump every thread's stack
        time.sleep(1)
        process.kill()
        pytest.fail(f"no exit 30s after SIGTERM: {service_log(root)[-6000:]}")
    assert code == 0, service_log(root)
    # Its log (GATECHECK_LOG_FORMAT=json): one JSON object per line, from start-up through
    # one line per evaluation to the shutdown lines.
    import json

    text = [line for line in service_log(root).splitlines() if line.strip()]
    # `demo` itself says what it built, as the demo's own text; every other line is the
    # service's log.
    assert all(line.startswith(("{", "demo: ")) for line in text), text[:5]
    lines = [json.loads(line) for line in text if line.startswith("{")]
    messages = [line["message"] for line in lines]
    # The evaluation worker (a process of its own, logging the same way) is ready, then the
    # service starts serving.
    assert messages[0].startswith("evaluation worker ") and lines[0]["logger"] == "gatecheck.worker", messages[:3]
    assert messages[1].startswith("gatecheck ") and "serving" in messages[1], messages[:3]
    # Stopping cancels the schedule; an evaluation in flight ends unrecorded or whole, and one
    # that ended whole is logged after "stopping" — and is in the ledger.
    stopping = [i for i, m in enumerate(messages) if m.startswith("stopping")]
    assert len(stopping) == 1 and messages[-1] == "stopped", messages[-3:]
    ended, after = lines[stopping[0] + 1 : -1], messages[stopping[0] :]
    assert all(line["message"].startswith(("evaluated ", "verdict of ")) for line in ended), after
    ledger = SqliteLedger(root / ".gatecheck" / "served.db")
    for line in ended:
        if line["message"].startswith("evaluated "):
            recorded = {document_time(r.as_of) for r in ledger.history(line["phase"])}
            assert line["as_of"] in recorded, line
    evaluated = [line for line in lines if line["message"].startswith("evaluated staging-soak")]
    assert len(evaluated) >= 2
    assert {"phase", "verdict", "duration_s", "failing", "time", "level", "logger"} <= set(evaluated[0])
    assert evaluated[0]["level"] == "info" and evaluated[0]["verdict"] in ("go", "no-go", "inconclusive", "rollback")
    changed = [line for line in lines if line["message"].startswith("verdict of staging-soak changed")]
    assert changed and changed[0]["previous"] is None
    running = subprocess.run(["pgrep", "-f", nats_dir], capture_output=True)
    assert running.returncode == 1, "the demo's nats-server is still running"
    with pytest.raises(httpx.HTTPError):
        local_http.get(f"{base}/healthz", timeout=1)
