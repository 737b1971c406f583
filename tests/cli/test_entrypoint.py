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


def test_a_demo_scenario_judges_only_its_own_records_and_writes_only_under_its_workdir(
    tmp_path: Path, warehouse: Path
) -> None:
    """`gatecheck demo --scenario nats-down` from the checkout's console script, in a directory
    where an earlier demo left a GO of staging-deploy: the scenario judges `requires` only on
    what it recorded itself (staging-deploy inconclusive: no GO); it runs the reference project
    (in a checkout: the repository's top level) and writes only under the directory's
    .gatecheck/ — never beside the project, where the README's own demo command (run in the
    checkout) keeps its state. (The healthy demo, GO, runs from the wheel: test_package.py.)"""
    from datetime import UTC, datetime, timedelta

    from gatecheck._values import timestamp
    from gatecheck.ledger import SqliteLedger
    from gatecheck.results import VerdictState
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    from ..conftest import database_for
    from ..service.test_notify import verdict

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
    workdir = tmp_path / "demo"
    (workdir / ".gatecheck").mkdir(parents=True)
    earlier = SqliteLedger(workdir / ".gatecheck" / "history.db")  # an earlier healthy demo's GO
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    earlier.clock = lambda: moment + timedelta(seconds=1)  # type: ignore[method-assign]
    earlier.record(verdict(VerdictState.GO).model_copy(update={"phase": "staging-deploy", "as_of": moment}), 0.1)
    assert earlier.latest_verdict("staging-deploy").verdict is VerdictState.GO  # type: ignore[union-attr]
    earlier.close()
    # an earlier run's production cluster left its JetStream state: this run's cluster is new
    left = workdir / ".gatecheck" / "nats-cluster" / "gatecheck-n1" / "jetstream" / "$SYS" / "_js_" / "earlier"
    left.mkdir(parents=True)
    down = subprocess.run(  # with 3 hours of history (--hours) instead of 50
        [gatecheck(), "demo", "--scenario", "nats-down", "--format", "json", "--hours", "3"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert down.returncode == 3, down.stderr
    rows = int(re.search(r"warehouse as of \S+ \((\d+) rows\)", down.stderr).group(1))  # type: ignore[union-attr]
    with ClickHouse() as clickhouse:  # the default demo's 50 hours, as the session's warehouse holds them
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        database = database_for("healthy")
        tables = connection.query_df(f"SELECT name FROM system.tables WHERE database = '{database}'")["name"]
        fifty = sum(
            int(connection.query_df(f"SELECT count() AS n FROM `{database}`.`{t}`")["n"][0]) for t in tables
        )
    assert 0 < rows * 10 < fifty  # 3 hours of history, not 50
    document = json.loads(down.stdout)
    (requirement,) = document["requires"]
    assert requirement["phase"] == "staging-deploy" and not requirement["satisfied"]
    # the earlier demo's GO is not this run's: only this run's own record of staging-deploy is read
    reason = requirement["reason"]
    assert reason.startswith("no recorded GO of staging-deploy (only INCONCLUSIVE): "), reason
    assert timestamp(moment) not in reason and "cannot reach NATS" in reason
    assert not left.exists()
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


def test_output_in_a_locale_that_cannot_write_every_character_escapes_them(tmp_path: Path) -> None:
    """A CI agent whose locale writes ISO-8859-1: `gatecheck explain` prints `→` and `—`. It
    ended in a UnicodeEncodeError traceback, "internal error" and exit 2 (and `gatecheck run`
    so, after its verdict was recorded, instead of the verdict and its exit code); now those
    characters are written as escapes and the command ends as it would anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    env |= {"PYTHONIOENCODING": "latin-1", "GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'h.db'}"}
    done = subprocess.run(
        [gatecheck(), "explain", "--phase", "warehouse-release", "--config", str(PROJECT)],
        capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    text = done.stdout.decode("latin-1")
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode("latin-1")
    assert "unmatched_edges \\u2014 required check on warehouse" in text
    assert re.search(r"window +\S+ \\u2192 \S+", text), text[:500]


def test_json_and_junit_on_stdout_are_utf8_whatever_the_locale(config_copy: Path, tmp_path: Path) -> None:
    """Under an ISO-8859-1 locale a `×` or `é` of the verdict (here the gate's description) was
    written as one byte that is no UTF-8: jq and a CI's JUnit reporter (the XML says UTF-8)
    refused the whole document. JSON and JUnit go to stdout in UTF-8 whatever the locale, with
    the verdict's exit code (inconclusive: its warehouse does not answer)."""
    import xml.etree.ElementTree as ET

    import yaml

    gate_file = config_copy / "gates" / "warehouse-release.yaml"
    gate = yaml.safe_load(gate_file.read_text())
    gate["description"] = "Release gate × 2: café edges"
    gate_file.write_text(yaml.safe_dump(gate, allow_unicode=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    env |= {
        "PYTHONIOENCODING": "latin-1",
        "GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'h.db'}",
        "GATECHECK_CLICKHOUSE_URL": "clickhouse://reader:pw@127.0.0.1:1/db",
    }
    found = {}
    for fmt in ("json", "junit"):
        done = subprocess.run(
            [gatecheck(), "run", "--phase", "warehouse-release", "--config", str(config_copy), "--format", fmt],
            capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr.decode("latin-1")
        found[fmt] = done.stdout.decode("utf-8")  # not UTF-8: UnicodeDecodeError
    assert json.loads(found["json"])["description"] == "Release gate × 2: café edges"
    suite = ET.fromstring(found["junit"].encode("utf-8"))
    assert " → " in ET.tostring(suite, encoding="unicode"), found["junit"][:400]  # not an escape
