"""`gatecheck demo --serve --replicas 2`: the served demo's two replicas (a module of its own:
the replicas of tests/service/test_replicas.py run meanwhile on another test worker)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from ..conftest import local_http, served_bases
from .test_replicas import wait_for


def test_the_served_demo_runs_two_replicas_on_its_postgresql_ledger(tmp_path: Path) -> None:
    """`gatecheck demo --serve --replicas 2`: two services on the demo's PostgreSQL ledger,
    one scheduling, both answering with the same verdicts; a stop stops both and the demo's
    servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    gatecheck = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
    assert gatecheck
    with (tmp_path / "demo.log").open("w") as log:
        demo = subprocess.Popen(
            # 8 hours: warehouse-release's longest window (rollup_reconcile: 6h, settled 1h) and a
            # spare hour. With 3, the complete hours inside it were one or two, by the minute of
            # the hour the test ran: too few rollup keys at xx:59, and the phase inconclusive.
            [gatecheck, "demo", "--serve", "--replicas", "2", "--hours", "8", "--listen", "127.0.0.1:0"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    children: list[str] = []

    def phases(base: str) -> dict[str, str] | None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            listed = local_http.get(f"{base}/api/v1/phases", timeout=2).json()
            if all(p["verdict"] for p in listed):
                return {p["phase"]: p["verdict"] for p in listed}
        return None

    try:
        # each replica on a port it picks (--listen's port 0), as its log line says
        bases = served_bases(tmp_path / "demo.log", demo, count=2, timeout=120)
        children = subprocess.run(["pgrep", "-P", str(demo.pid)], capture_output=True, text=True).stdout.split()
        leader_view = wait_for("the scheduling replica's verdicts", lambda: phases(bases[0]), timeout=120, every=0.3)
        follower_view = wait_for("the other replica's", lambda: phases(bases[1]), timeout=30, every=0.3)
        assert follower_view == leader_view
        # the healthy chain: every check of every phase passes (production's streams hold 3
        # current replicas on the demo's cluster); a phase is GO, or INCONCLUSIVE only because a
        # real soak is needed (its own, or one that a phase it requires needs) — and says so
        for phase, state in leader_view.items():
            document = local_http.get(f"{bases[1]}/api/v1/phases/{phase}/verdict").json()
            assert [c["suite"] for c in document["checks"] if c["outcome"] != "pass"] == [], (phase, [c for c in document["checks"] if c["outcome"] != "pass"])
            assert state == "go" or all(
                r.startswith(("soak not covered", "requires ")) for r in document["reasons"]
            ), (phase, document["reasons"])
        assert leader_view["staging-soak"] == "inconclusive" and leader_view["prod-predeploy"] == "inconclusive"
        assert [p for p, v in leader_view.items() if v == "go"] == [
            "staging-predeploy", "staging-deploy", "warehouse-release"
        ]  # fmt: skip
        ready = [local_http.get(f"{b}/readyz").json() for b in bases]
        assert sorted(r["scheduling"] for r in ready) == [False, True]
        assert ready[0]["leader"] == ready[1]["leader"] is not None
        assert "2 replicas on the demo's PostgreSQL ledger" in (tmp_path / "demo.log").read_text()
        # Each replica judges on its own copy of the warehouse (chDB opens a path in one process):
        # an evaluation asked of each, whichever schedules, reads every warehouse table. (The
        # second replica's copy once had no table at all: its checks failed only when it led.)
        for base in bases:
            asked = local_http.post(f"{base}/api/v1/phases/warehouse-release/evaluate", timeout=60)
            assert asked.status_code == 200, asked.text
            assert [(c["suite"], c["outcome"]) for c in asked.json()["checks"] if c["outcome"] != "pass"] == []
            assert asked.json()["verdict"] == "go"
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / ".gatecheck")], capture_output=True)
    assert left.returncode == 1, left.stdout
    # the other replica too, and every helper (a forkserver exits once it sees its parent gone)
    wait_for("the demo's processes to stop", lambda: not any(running(pid) for pid in children), timeout=10)


def running(pid: str) -> bool:
    """Whether the process runs (a zombie nobody has reaped yet has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
