"""Import a module with some of the modules it imports deferred to their first use.

Great Expectations imports altair (for its renderers) and scipy.stats (for a few distribution
expectations) as it is imported: 0.8 s of CPU of the 2.7 s its import takes, paid by every
process that validates (the CLI, each service's fork server, the demo), although gatecheck's
checks use neither through it. A module imported under :func:`deferring` is in
``sys.modules`` at once and runs on its first attribute access, as with
:class:`importlib.util.LazyLoader`, but safely when threads reach it together: Python 3.11's
LazyLoader marks the module loaded before running it, so a second thread can see it half-run.
Here the first access runs it under a lock that the others wait on.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from typing import Any


class _Deferred(types.ModuleType):
    """A module not run yet: the first attribute access runs it, once."""

    def __getattribute__(self, name: str) -> Any:
        if type(self) is _Deferred:
            _run(self)
        return types.ModuleType.__getattribute__(self, name)


def _run(module: types.ModuleType) -> None:
    spec = types.ModuleType.__getattribute__(module, "__spec__")
    state = spec.loader_state
    with state["lock"]:  # re-entrant: the module's own code, running, reads its attributes
        if type(module) is not _Deferred or state["running"]:
            return
        state["running"] = True
        loader = state["loader"]
        spec.loader = loader
        module.__loader__ = loader
        try:
            loader.exec_module(module)
        finally:
            # run (or failed as an eager import would have): an ordinary module from now on
            module.__class__ = types.ModuleType  # type: ignore[assignment]


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        created: types.ModuleType | None = self.loader.create_module(spec)
        return created

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__.loader_state = {"loader": self.loader, "lock": threading.RLock(), "running": False}  # type: ignore[union-attr]
        module.__class__ = _Deferred


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _DeferringLoader(spec.loader)
        return spec


@contextlib.contextmanager
def deferring(*names: str) -> Iterator[None]:
    """While inside, importing any of ``names`` (full module names) for the first time gives
    a module that runs on its first attribute access. Already imported modules are unchanged."""
    finder = _Finder(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
