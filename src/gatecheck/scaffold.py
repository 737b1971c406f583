"""``gatecheck init``: write a starting project from one shipped with the package, never
overwriting a file that is already there."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gatecheck.errors import ConfigError
from gatecheck.shipped import PROJECTS, project_files, project_path


@dataclass
class Scaffold:
    """What ``init`` did: files written and files skipped because they exist (relative paths)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def init_project(target: Path, template: str) -> Scaffold:
    """Copy the shipped project ``template`` into ``target`` (created if missing), file by
    file; a file that exists is left as it is and listed as skipped."""
    if template not in PROJECTS:
        raise ConfigError(f"--from: unknown project {template!r} (known: {', '.join(PROJECTS)})")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a directory")
    source = project_path(template)
    done = Scaffold()
    for relative in project_files(template):
        destination = target / relative
        if destination.exists() or destination.is_symlink():
            done.skipped.append(relative)
            continue
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            with (source / relative).open("rb") as reader, destination.open("xb") as writer:
                shutil.copyfileobj(reader, writer)  # "x": never overwrite, even in a race
        except FileExistsError:
            done.skipped.append(relative)
        except OSError as exc:
            raise ConfigError(f"{destination}: cannot write ({exc.strerror})") from exc
        else:
            done.written.append(relative)
    return done
