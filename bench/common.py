"""What the benchmark scripts share (they run as `python bench/NAME.py`, so this module is
importable as `common`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from gatecheck.shipped import project_path

REPO = Path(__file__).resolve().parents[1]
PROJECT = project_path("reference")  # the reference project: the repository's top level


def copy_config(root: Path, interval: str | None = None) -> Path:
    """Copy the shipped configuration into ``root``; optionally set ``service.interval``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("gatecheck.yaml", "thresholds.yaml"):
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "gates", root / "gates")
    shutil.copytree(PROJECT / "suites", root / "suites")
    if interval is not None:
        project = yaml.safe_load((root / "gatecheck.yaml").read_text())
        project["service"]["interval"] = interval
        (root / "gatecheck.yaml").write_text(yaml.safe_dump(project))
    return root


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank); NaN for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
