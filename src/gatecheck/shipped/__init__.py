"""Projects shipped inside the package: ``reference`` (the Phase B + warehouse configuration
the demo runs) and ``minimal`` (the commented starting point of ``gatecheck init``)."""

from __future__ import annotations

from pathlib import Path

PROJECTS = ("reference", "minimal")


def project_path(name: str = "reference") -> Path:
    """The directory of a shipped project (package data, a real directory once installed)."""
    if name not in PROJECTS:
        raise ValueError(f"unknown shipped project {name!r} (known: {', '.join(PROJECTS)})")
    return Path(__file__).resolve().parent / name


def project_files(name: str) -> list[Path]:
    """Every file of a shipped project, relative to its directory, in a stable order."""
    root = project_path(name)
    return sorted(
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.name != ".gitignore"
    )
