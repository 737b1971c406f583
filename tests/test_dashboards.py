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

from .conftest import PROJECT, REPO, local_http

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
    checked = subprocess.run(
        [tool, "check", "rules", "alert_rules.yml"], cwd=DASHBOARDS, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", "alert_rules.test.yml"], cwd=DASHBOARDS, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_quiet_test_and_full_annotations() -> None:
    rules = [
        r for g in yaml.safe_load((DASHBOARDS / "alert_rules.yml").read_text())["groups"] for r in g["rules"]
    ]
    tests = yaml.safe_load((DASHBOARDS / "alert_rules.test.yml").read_text())["tests"]
    runbook = (REPO / "service" / "RUNBOOK.md").read_text().lower()
    for rule in rules:
        name = rule["alert"]
        outcomes = [
            bool(t["alert_rule_test"][0]["exp_alerts"])
            for t in tests
            if t["alert_rule_test"][0]["alertname"] == name
        ]
        assert sorted(outcomes) == [False, True], name
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert anchor == name.lower() and f"### {name.lower()}" in runbook, name


#: Every metric gatecheck exports (service.VerdictCollector) and every one the README names.
KNOWN_METRICS = {
    "gatecheck_phase_verdict", "gatecheck_check_outcome", "gatecheck_check_observed_value",
    "gatecheck_check_threshold", "gatecheck_soak_coverage_seconds", "gatecheck_soak_duration_seconds",
    "gatecheck_evaluation_timestamp_seconds", "gatecheck_evaluation_duration_seconds",
    "gatecheck_evaluation_interval_seconds", "gatecheck_evaluation_error", "gatecheck_source_up",
    "gatecheck_notifications_total", "gatecheck_waivers_active", "gatecheck_comparison_side_value",
    "gatecheck_leader", "gatecheck_slo_budget_remaining", "gatecheck_slo_burn_rate", "gatecheck_slo_rule_firing",
    "normalize_hrv_messages_total", "dlq_messages_total", "normalize_hrv_processing_seconds_bucket",
    "normalize_hrv_processing_seconds_count", "normalize_hrv_processing_seconds_sum",
    "event_bus_stream_fallback_total",
    # the remaining rollback triggers: kube-state-metrics, the ingest service, the normalize
    # service's consumer-lookup counter (service_triggers)
    "kube_pod_container_status_waiting_reason", "kube_pod_container_status_restarts_total",
    "ingest_http_requests_total", "normalize_consumer_lookup_failures_total",
}  # fmt: skip
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "time", "vector",
    "label_values", "inf", "nan",
}  # fmt: skip


def metrics_in(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {n for n in names if n.lower() not in _PROMQL_WORDS}


def expressions() -> list[tuple[str, str]]:
    import json

    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard["schemaVersion"] >= 36 and dashboard["uid"]
        names = [v["name"] for v in dashboard["templating"]["list"]]
        assert "datasource" in names
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
            for target in panel["targets"]:
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def test_dashboard_expressions_use_only_known_metrics() -> None:
    exprs = expressions()
    assert len(exprs) >= 14
    for where, expr in exprs:
        unknown = metrics_in(expr) - KNOWN_METRICS
        assert not unknown, f"{where}: unknown metric(s) {unknown} in {expr}"


def test_dashboard_expressions_parse_on_a_real_prometheus(prometheus: str) -> None:

    for where, expr in expressions():
        concrete = expr.replace("$__rate_interval", "5m").replace("$phase", ".*")
        response = local_http.get(f"{prometheus}/api/v1/query", params={"query": concrete, "time": "1767225600"})
        body = response.json()
        assert body["status"] == "success", f"{where}: {body.get('error')}"


def test_the_exported_metrics_are_the_known_ones() -> None:
    text = (REPO / "src" / "gatecheck" / "service" / "collector.py").read_text()
    exported = set(re.findall(r'GaugeMetricFamily\(\s*"(gatecheck_[a-z_]+)"', text))
    exported |= {f"{name}_total" for name in re.findall(r'CounterMetricFamily\(\s*"(gatecheck_[a-z_]+)"', text)}
    assert exported == {m for m in KNOWN_METRICS if m.startswith("gatecheck_")}


def test_service_files_reference_only_real_flags_ports_and_endpoints() -> None:
    from typer.testing import CliRunner

    from gatecheck.cli import app
    from gatecheck.config import ServiceConfig

    documents = list(yaml.safe_load_all((REPO / "service" / "kubernetes" / "gatecheck.yaml").read_text()))
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "ServiceMonitor", "Secret", "PersistentVolumeClaim"} <= kinds
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    unit = (REPO / "service" / "gatecheck.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    serve_help = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).stdout
    for args in (container["args"], exec_start.split()[1:]):
        assert args[0] == "serve"
        for flag in (a for a in args if a.startswith("--")):
            assert flag in serve_help, f"gatecheck serve has no {flag}"
    default_port = int(ServiceConfig().listen.rsplit(":", 1)[1])
    assert container["ports"][0]["containerPort"] == default_port
    assert "127.0.0.1:9464" in exec_start and f":{default_port}" in " ".join(container["args"])

    app_routes = _routes()
    probes = [container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]]
    monitor = next(d for d in documents if d["kind"] == "ServiceMonitor")
    paths = [*probes, *(e["path"] for e in monitor["spec"]["endpoints"])]
    assert probes == ["/healthz", "/readyz"]
    for path in paths:
        assert path in app_routes, path
    runbook = (REPO / "service" / "RUNBOOK.md").read_text()
    assert "gatecheck run --phase staging-soak --url" in runbook


def test_the_replicas_manifest_runs_two_on_a_postgresql_ledger_through_drains() -> None:
    """Two replicas (the lease decides which schedules): a PostgreSQL ledger from the Secret,
    no volume, readiness on /readyz, a PodDisruptionBudget that keeps one through a drain and
    selects the Deployment's pods, rolling one at a time."""
    from typer.testing import CliRunner

    from gatecheck.cli import app

    documents = list(yaml.safe_load_all((REPO / "service/kubernetes/gatecheck-replicas.yaml").read_text()))
    by_kind = {d["kind"]: d for d in documents}
    assert set(by_kind) == {"Secret", "Deployment", "PodDisruptionBudget", "Service", "ServiceMonitor"}
    deployment, budget = by_kind["Deployment"], by_kind["PodDisruptionBudget"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in _routes()
    assert "volumes" in pod["spec"] and not any("persistentVolumeClaim" in v for v in pod["spec"]["volumes"])
    secret = by_kind["Secret"]["stringData"]
    assert secret["GATECHECK_HISTORY_URL"].startswith("postgresql://") and "GATECHECK_API_TOKEN" in secret
    assert {e["secretRef"]["name"] for e in container["envFrom"]} == {by_kind["Secret"]["metadata"]["name"]}
    serve_help = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).stdout
    assert container["args"][0] == "serve"
    assert all(flag in serve_help for flag in container["args"] if flag.startswith("--"))
    single = next(
        d for d in yaml.safe_load_all((REPO / "service/kubernetes/gatecheck.yaml").read_text())
        if d["kind"] == "Deployment"
    )  # fmt: skip
    assert single["spec"]["template"]["spec"]["containers"][0]["args"] == container["args"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [
        m["mountPath"] for m in single["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["name"] != "history"
    ]


def _routes() -> set[str]:
    import tempfile

    from gatecheck.config import load_project
    from gatecheck.ledger import SqliteLedger
    from gatecheck.service.app import create_app
    from gatecheck.service.core import Service

    with tempfile.TemporaryDirectory() as tmp:
        project = load_project(PROJECT, environ={})
        app = create_app(Service(project, SqliteLedger(Path(tmp) / "l.db"), []))

        def paths(routes: list) -> set[str]:  # an included router keeps its own routes
            found: set[str] = set()
            for route in routes:
                if hasattr(route, "path"):
                    found.add(route.path)
                else:
                    found |= paths(route.original_router.routes)
            return found

        return paths(app.routes)


def _openapi() -> dict:
    import tempfile

    from gatecheck.config import load_project
    from gatecheck.ledger import SqliteLedger
    from gatecheck.service.app import create_app
    from gatecheck.service.core import Service

    with tempfile.TemporaryDirectory() as tmp:
        project = load_project(PROJECT, environ={})
        return create_app(Service(project, SqliteLedger(Path(tmp) / "l.db"), [])).openapi()


def test_the_argo_rollouts_files_use_only_real_endpoints_parameters_and_phases() -> None:
    from urllib.parse import parse_qsl, urlsplit

    from gatecheck.config import load_project

    root = REPO / "service" / "kubernetes" / "argo-rollouts"
    template = yaml.safe_load((root / "analysistemplate.yaml").read_text())
    rollout = yaml.safe_load((root / "rollout.yaml").read_text())
    assert (template["apiVersion"], template["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    declared = {a["name"] for a in template["spec"]["args"]}
    needed = {a["name"] for a in template["spec"]["args"] if "value" not in a and "valueFrom" not in a}
    (metric,) = template["spec"]["metrics"]
    # Both conditions set: an inconclusive verdict is an Inconclusive measurement (a pause).
    assert metric["successCondition"] == 'result.verdict == "go"'
    assert metric["failureCondition"] == 'result.verdict in ["no-go", "rollback"]'
    web = metric["provider"]["web"]
    assert web["jsonPath"] == "{$}" and web["timeoutSeconds"] <= 10
    used = set(re.findall(r"\{\{args\.([a-z-]+)\}\}", yaml.safe_dump(template)))
    assert used <= declared, used - declared
    url = urlsplit(web["url"].replace("{{args.phase}}", "{phase}"))
    openapi = _openapi()
    operation = openapi["paths"][url.path]["get"]
    parameters = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    query = dict(parse_qsl(url.query))
    assert set(query) <= parameters, set(query) - parameters
    assert float(query["timeout"]) < web["timeoutSeconds"]  # gatecheck answers before Argo gives up
    phases = load_project(PROJECT, environ={}).gates
    steps = [s["analysis"] for s in rollout["spec"]["strategy"]["canary"]["steps"] if "analysis" in s]
    assert [next(a["value"] for a in s["args"] if a["name"] == "phase") for s in steps] == [
        "canary-10", "canary-50", "canary-100"
    ]  # fmt: skip
    for step in steps:
        assert step["templates"] == [{"templateName": template["metadata"]["name"]}]
        given = {a["name"] for a in step["args"]}
        assert needed <= given, needed - given
        assert next(a["value"] for a in step["args"] if a["name"] == "phase") in phases


def test_the_flagger_canary_wires_each_hook_to_its_role_and_a_real_phase() -> None:
    from urllib.parse import urlsplit

    from gatecheck.config import load_project
    from gatecheck.durations import parse_duration
    from gatecheck.service.helpers import FLAGGER_ROLES

    canary = yaml.safe_load((REPO / "service" / "kubernetes" / "flagger" / "canary.yaml").read_text())
    assert (canary["apiVersion"], canary["kind"]) == ("flagger.app/v1beta1", "Canary")
    phases = load_project(PROJECT, environ={}).gates
    openapi = _openapi()
    hooks = canary["spec"]["analysis"]["webhooks"]
    assert {h["type"] for h in hooks} == {"pre-rollout", "rollout", "confirm-promotion", "rollback"}
    for hook in hooks:
        path = urlsplit(hook["url"]).path
        assert path == f"/api/v1/flagger/{hook['type']}" and hook["type"] in FLAGGER_ROLES
        assert "post" in openapi["paths"]["/api/v1/flagger/{role}"]
        assert hook["metadata"]["phase"] in phases
        assert float(hook["metadata"]["timeout"]) < parse_duration(hook["timeout"]).total_seconds()
        if "max_age" in hook["metadata"]:
            parse_duration(hook["metadata"]["max_age"])


def test_alert_rules_come_with_runbook_links_anyone_can_click(tmp_path: Path) -> None:
    """`runbook_url: service/RUNBOOK.md#…` is a path no alert receiver can open: `gatecheck
    alert-rules --runbook-url URL` gives the rules with URL#anchor, and promtool accepts them."""
    from typer.testing import CliRunner

    from gatecheck.cli import app

    base = "https://git.example.com/team/gatecheck/blob/main/service/RUNBOOK.md"
    result = CliRunner().invoke(app, ["alert-rules", "--runbook-url", base])
    assert result.exit_code == 0, result.output
    rules = [r for g in yaml.safe_load(result.stdout)["groups"] for r in g["rules"]]
    assert rules and all(r["annotations"]["runbook_url"] == f"{base}#{r['alert'].lower()}" for r in rules)
    original = yaml.safe_load((DASHBOARDS / "alert_rules.yml").read_text())
    assert [r["expr"] for g in original["groups"] for r in g["rules"]] == [r["expr"] for r in rules]  # only links
    (tmp_path / "rules.yml").write_text(result.stdout)
    checked = subprocess.run([promtool(), "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for bad in ("service/RUNBOOK.md", "ftp://x/RUNBOOK.md", f"{base}#anchor"):
        refused = CliRunner().invoke(app, ["alert-rules", "--runbook-url", bad])
        assert refused.exit_code == 2 and refused.stderr.startswith("gatecheck: error: --runbook-url: ")


def test_each_shipped_deployment_leaves_the_worker_room_to_be_replaced_before_the_kernel_kills_it() -> None:
    """A container limit below the worker's default memory ceiling plus what runs beside it
    means the ceiling never takes effect: the kernel kills the worker mid-evaluation."""
    from gatecheck.config.models import WorkerConfig
    from gatecheck.service.worker import BESIDE_THE_WORKER, memory_limit_warning

    units = {"Mi": 2**20, "Gi": 2**30}
    ceiling = WorkerConfig().memory_limit_mib * 2**20
    for name in ("gatecheck.yaml", "gatecheck-replicas.yaml"):
        documents = yaml.safe_load_all((REPO / "service" / "kubernetes" / name).read_text())
        deployment = next(d for d in documents if d["kind"] == "Deployment")
        limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        limit_bytes = int(limit[:-2]) * units[limit[-2:]]
        assert limit_bytes >= ceiling + BESIDE_THE_WORKER, (name, limit)
        assert memory_limit_warning(ceiling, limit_bytes) is None
