"""Argo Rollouts' Job provider: the shipped AnalysisTemplate (service/kubernetes/argo-rollouts/
analysistemplate-job.yaml) and the image it runs (service/Dockerfile), checked against the
provider's documented contract:

    "When a Job is used, the metric is considered successful if the Job completes and had an
    exit code of zero, otherwise it is failed."  (Argo Rollouts, docs/analysis/job.md)

The container's command is run here as the image runs it (its entrypoint is `gatecheck`), on
a project of one check per verdict, and its exit code is read through that contract."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app

from ..conftest import REPO

TEMPLATE = REPO / "service/kubernetes/argo-rollouts/analysistemplate-job.yaml"
DOCKERFILE = REPO / "service/Dockerfile"


def job_outcome(exit_code: int) -> str:
    """The contract: a Job that completes with exit code 0 is Successful, any other Failed."""
    return "Successful" if exit_code == 0 else "Failed"


def container(template: dict[str, Any]) -> dict[str, Any]:
    (metric,) = template["spec"]["metrics"]
    job = metric["provider"]["job"]
    (found,) = job["spec"]["template"]["spec"]["containers"]
    return found


def test_the_template_runs_one_evaluation_per_measurement_as_the_service_is_configured() -> None:
    template = yaml.safe_load(TEMPLATE.read_text())
    (metric,) = template["spec"]["metrics"]
    spec = metric["provider"]["job"]["spec"]
    assert spec["backoffLimit"] == 0  # a failed pod is not retried: the verdict is the verdict
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert [a["name"] for a in template["spec"]["args"]] == ["phase"]
    found = container(template)
    assert found["args"] == ["run", "--phase", "{{args.phase}}", "--config", "/etc/gatecheck"]
    # the same image, Secret, ConfigMaps and mounts as the service's Deployment
    deployment = next(d for d in yaml.safe_load_all((REPO / "service/kubernetes/gatecheck.yaml").read_text())
                      if d and d["kind"] == "Deployment")  # fmt: skip
    (served,) = deployment["spec"]["template"]["spec"]["containers"]
    assert found["image"] == served["image"]
    assert found["envFrom"] == served["envFrom"]
    config_mounts = [m for m in served["volumeMounts"] if m["mountPath"].startswith("/etc/gatecheck")]
    assert found["volumeMounts"] == config_mounts
    job_volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    served_volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert all(job_volumes[m["name"]] == served_volumes[m["name"]] for m in found["volumeMounts"])
    security = spec["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == 10001


def test_the_image_runs_gatecheck_as_the_manifests_user_and_holds_what_the_wheel_ships() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["gatecheck"\]$', text, re.M)
    assert re.search(r"^USER 10001$", text, re.M)  # runAsUser of the manifests
    copied = {part for line in re.findall(r"^COPY (.+)$", text, re.M) for part in line.split()[:-1]}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        "pyproject.toml",
        "README.md",
        *wheel["force-include"],
        *(p.split("/")[0] for p in wheel["packages"]),
    }
    assert needed <= copied, needed - copied
    assert "embedded" not in text.split("RUN pip install", 1)[1].splitlines()[0]  # servers in a cluster


@pytest.fixture
def job_project(tmp_path: Path, warehouse: Path) -> Path:
    """A project at the template's --config with one gate per verdict, on chDB."""
    root = tmp_path / "etc-gatecheck"
    (root / "gates").mkdir(parents=True)
    (root / "suites").mkdir()
    source = {"type": "clickhouse", "url": f"chdb://{warehouse}?database=default"}
    (root / "gatecheck.yaml").write_text(
        yaml.safe_dump({"environments": {"staging": {"sources": {"warehouse": source}}}})
    )
    (root / "thresholds.yaml").write_text("defaults: {}\n")
    queries = {
        "job-go": "SELECT 1 AS ok",
        "job-nogo": "SELECT 0 AS ok",
        "job-inconclusive": "SELECT 1 AS ok WHERE 0",
    }
    for phase, query in queries.items():
        suite = {
            "name": phase.replace("-", "_"), "source": "warehouse", "window": {"length": "1h"}, "query": query,
            "evidence": "none",  # constants: the verdict's way through the Job contract is under test
            "expectations": [{"type": "expect_column_values_to_be_between", "column": "ok", "min_value": 1}],
        }  # fmt: skip
        (root / "suites" / f"{suite['name']}.yaml").write_text(yaml.safe_dump(suite))
        gate = {"phase": phase, "environment": "staging", "checks": [{"suite": suite["name"]}]}
        (root / "gates" / f"{phase}.yaml").write_text(yaml.safe_dump(gate))
    return root


@pytest.mark.parametrize(
    ("phase", "exit_code", "outcome"),
    [
        ("job-go", 0, "Successful"),
        ("job-nogo", 1, "Failed"),
        ("job-inconclusive", 3, "Failed"),  # a Job cannot pause the rollout: never a pass
        ("job-unknown", 2, "Failed"),  # a configuration error
    ],
)
def test_each_verdict_through_the_job_contract(
    job_project: Path, phase: str, exit_code: int, outcome: str
) -> None:
    args = [
        a.replace("{{args.phase}}", phase) for a in container(yaml.safe_load(TEMPLATE.read_text()))["args"]
    ]
    args = [str(job_project) if a == "/etc/gatecheck" else a for a in args]
    result = CliRunner().invoke(app, args)  # exactly what the container runs (no ledger here)
    assert (result.exit_code, job_outcome(result.exit_code)) == (exit_code, outcome), result.output
