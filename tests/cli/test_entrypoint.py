"""The installed console script, end to end: the README's demo command on a fresh copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..conftest import PROJECT


def gatecheck() -> str:
    found = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
    assert found, "the gatecheck console script is not installed next to this Python"
    return found


def test_demo_healthy_is_go_and_defect_is_no_go(tmp_path: Path) -> None:
    """The demo runs the reference project (in a checkout: the repository's top level) from an
    empty directory and writes only under that directory's .gatecheck/ — never beside the
    project, where the README's own demo command (run in the checkout) keeps its state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}

    def project_state() -> list[tuple[str, int, int]]:
        """What is under the project's .gatecheck/ (a demo run in the checkout), as it is."""
        state = PROJECT / ".gatecheck"
        return sorted(
            (str(f.relative_to(state)), f.stat().st_mtime_ns, f.stat().st_size)
            for f in (state.rglob("*") if state.is_dir() else [])
            if f.is_file()
        )

    before = project_state()
    workdir = tmp_path / "healthy"
    workdir.mkdir()
    healthy = subprocess.run(
        [gatecheck(), "demo"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("GO  phase staging-soak")
    assert "gatecheck run --phase staging-deploy  → go" in healthy.stderr
    assert "gatecheck run --phase staging-soak --assume-soaked" in healthy.stderr
    assert (workdir / ".gatecheck" / "warehouse").is_dir()
    # Scenarios do not leak: the healthy run's GO of staging-deploy is in the ledger, but a
    # nats-down run judges `requires` only on what it recorded itself (staging-deploy
    # inconclusive: no GO).
    down = subprocess.run(  # with 3 hours of history (--hours) instead of 50
        [gatecheck(), "demo", "--scenario", "nats-down", "--format", "json", "--hours", "3"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert down.returncode == 3, down.stderr

    def rows(stderr: str) -> int:
        return int(re.search(r"warehouse as of \S+ \((\d+) rows\)", stderr).group(1))  # type: ignore[union-attr]

    assert rows(down.stderr) * 10 < rows(healthy.stderr)  # 3 hours of history, not 50
    document = json.loads(down.stdout)
    assert document["requires"] == [
        {"phase": "staging-deploy", "satisfied": False, "reason": "no recorded GO of staging-deploy"}
    ]
    # Great Expectations runs in memory: nothing but the demo's own state was written.
    assert [p.name for p in workdir.iterdir()] == [".gatecheck"]
    assert {p.name for p in (workdir / ".gatecheck").iterdir()} <= {
        "nats", "nats-cluster", "warehouse", "postgres", "e2e", "history.db", "history.db-wal", "history.db-shm"
    }  # fmt: skip
    # The demo stopped the nats-servers and the PostgreSQL server it started.
    for server in ("nats", "nats-cluster", "postgres"):
        running = subprocess.run(["pgrep", "-f", str(workdir / ".gatecheck" / server)], capture_output=True)
        assert running.returncode == 1, (server, running.stdout)
    # The project was only read: nothing beside it was created or changed.
    assert project_state() == before
