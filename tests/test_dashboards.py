"""Alert rules (promtool), dashboards (every PromQL parses on a real Prometheus and uses only
known metrics) and the deployment files in service/ (only endpoints and flags that exist)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

DASHBOARDS = REPO / "dashboards"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed: apt-get install prometheus (Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_alert_rules_check_and_unit_tests_pass() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", "alert_rules.yml"], cwd=DASHBOARDS, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([tool, "test", "rules", "alert_rules.test.yml"], cwd=DASHBOARDS, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_quiet_test_and_full_annotations() -> None:
    rules = [r for g in yaml.safe_load((DASHBOARDS / "alert_rules.yml").read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((DASHBOARDS / "alert_rules.test.yml").read_text())["tests"]
    runbook = (REPO / "service" / "RUNBOOK.md").read_text().lower()
    for rule in rules:
        name = rule["alert"]
        outcomes = [bool(t["alert_rule_test"][0]["exp_alerts"]) for t in tests if t["alert_rule_test"][0]["alertname"] == name]
        assert sorted(outcomes) == [False, True], name
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert anchor == name.lower() and f"### {name.lower()}" in runbook, name
