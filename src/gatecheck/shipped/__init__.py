"""Projects shipped with the package: ``reference`` (the Phase B + warehouse configuration
the demo runs) and ``minimal`` (the commented starting point of ``gatecheck init``).

The reference project is the repository's own gate configuration, at its top level
(``gatecheck.yaml``, ``thresholds.yaml``, ``gates/``, ``suites/``): what a team reads, edits
and reviews. The wheel maps those four into ``gatecheck/shipped/reference/`` (hatchling's
``force-include`` in ``pyproject.toml``); a source checkout (an editable install) reads them
where they are. One copy in the repository either way.
"""

from __future__ import annotations

import re
from pathlib import Path

PROJECTS = ("reference", "minimal")
#: What a shipped project is made of (anything else beside it is not part of it).
PROJECT_FILES = ("gatecheck.yaml", "thresholds.yaml", "gates", "suites")

_HERE = Path(__file__).resolve().parent


def project_path(name: str = "reference") -> Path:
    """The directory of a shipped project: package data once installed; for ``reference`` in a
    source checkout, the repository's top level."""
    if name not in PROJECTS:
        raise ValueError(f"unknown shipped project {name!r} (known: {', '.join(PROJECTS)})")
    packaged = _HERE / name
    if name == "reference" and not (packaged / "gatecheck.yaml").is_file():
        checkout = _HERE.parents[2]  # src/gatecheck/shipped → the repository
        if (checkout / "gatecheck.yaml").is_file() and (checkout / "pyproject.toml").is_file():
            return checkout
    return packaged


def alert_rules_path() -> Path:
    """The Prometheus alert rules (``dashboards/alert_rules.yml``): package data once
    installed; in a source checkout, the repository's own file."""
    packaged = _HERE / "dashboards" / "alert_rules.yml"
    if packaged.is_file():
        return packaged
    return _HERE.parents[2] / "dashboards" / "alert_rules.yml"


#: A rule's runbook link as the repository writes it: relative to the repository.
_RUNBOOK_LINK = re.compile(r"(runbook_url:\s*)service/RUNBOOK\.md(#[\w-]+)")


def alert_rules(runbook_url: str) -> str:
    """The alert rules with every ``runbook_url`` made absolute: ``runbook_url`` (where the
    team keeps ``service/RUNBOOK.md``, e.g. its repository's web view) plus the rule's
    anchor — a link anyone can click from an alert."""
    from urllib.parse import urlsplit

    parts = urlsplit(runbook_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError(
            f"--runbook-url: {runbook_url!r}: give the RUNBOOK.md's absolute http(s) URL, without #anchor"
        )
    text = alert_rules_path().read_text()
    return _RUNBOOK_LINK.sub(lambda m: f"{m.group(1)}{runbook_url}{m.group(2)}", text)


def project_files(name: str) -> list[Path]:
    """Every file of a shipped project, relative to its directory, in a stable order."""
    root = project_path(name)
    found: list[Path] = []
    for part in PROJECT_FILES:
        path = root / part
        if path.is_file():
            found.append(Path(part))
        elif path.is_dir():
            found += [f.relative_to(root) for f in path.rglob("*.yaml") if f.is_file()]
    return sorted(found)
