"""Projects shipped with the package: ``reference`` (the Phase B + warehouse configuration
the demo runs) and ``minimal`` (the commented starting point of ``gatecheck init``).

The reference project is the repository's own gate configuration, at its top level
(``gatecheck.yaml``, ``thresholds.yaml``, ``gates/``, ``suites/``): what a team reads, edits
and reviews. The wheel maps those four into ``gatecheck/shipped/reference/`` (hatchling's
``force-include`` in ``pyproject.toml``); a source checkout (an editable install) reads them
where they are. One copy in the repository either way.
"""

from __future__ import annotations

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
