"""The installed console script, end to end: the README's demo command on a fresh copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def gatecheck() -> str:
    found = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
    assert found, "the gatecheck console script is not installed next to this Python"
    return found


def test_demo_healthy_is_go_and_defect_is_no_go(config_copy: Path, tmp_path: Path) -> None:
    from .conftest import copy_config

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    # A defect scenario in a second directory, side by side with the healthy run (two cores).
    drift_copy = copy_config(tmp_path / "drift")
    drifting = subprocess.Popen(
        [gatecheck(), "demo", "--scenario", "rollup-drift", "--format", "json"],
        cwd=drift_copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    healthy = subprocess.run(
        [gatecheck(), "demo"], cwd=config_copy, env=env, capture_output=True, text=True, timeout=120
    )
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("GO  phase staging-soak")
    assert "gatecheck run --phase staging-deploy  → go" in healthy.stderr
    assert "gatecheck run --phase staging-soak --assume-soaked" in healthy.stderr
    assert (config_copy / ".gatecheck" / "warehouse").is_dir()
    stdout, stderr = drifting.communicate(timeout=120)
    drift = subprocess.CompletedProcess(drifting.args, drifting.returncode, stdout, stderr)
    assert drift.returncode == 1, drift.stderr
    assert '"verdict": "no-go"' in drift.stdout
    assert "Traceback" not in drift.stderr
    # Scenarios do not leak: the healthy run's GO of staging-deploy is in the ledger, but a
    # nats-down run judges `requires` only on what it recorded itself (staging-deploy
    # inconclusive: no GO).
    down = subprocess.run(
        [gatecheck(), "demo", "--scenario", "nats-down", "--format", "json"],
        cwd=config_copy, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert down.returncode == 3, down.stderr
    document = json.loads(down.stdout)
    assert document["requires"] == [
        {"phase": "staging-deploy", "satisfied": False, "reason": "no recorded GO of staging-deploy"}
    ]
    # Great Expectations runs in memory: nothing but the demo's own state was written.
    assert sorted(p.name for p in config_copy.iterdir()) == [
        ".gatecheck", "gatecheck.yaml", "gates", "suites", "thresholds.yaml"
    ]  # fmt: skip
    assert {p.name for p in (config_copy / ".gatecheck").iterdir()} <= {
        "nats", "warehouse", "history.db", "history.db-wal", "history.db-shm"
    }  # fmt: skip
    # The demo stopped the nats-server it started.
    running = subprocess.run(["pgrep", "-f", str(config_copy / ".gatecheck" / "nats")], capture_output=True)
    assert running.returncode == 1, running.stdout
    assert config_copy != REPO
