"""Progress where a person waits: a spinner on stderr naming the sources still being waited
on, shown only on a terminal (never in a pipe, a file or a JSON run)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from gatecheck.sources.base import QueryParameters, Source


class Waiting:
    """What is in flight, by label, and for how long; renders itself for rich's status line."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.pending: dict[str, float] = {}

    def start(self, label: str) -> None:
        self.pending.setdefault(label, time.monotonic())

    def done(self, label: str) -> None:
        self.pending.pop(label, None)

    def text(self) -> str:
        if not self.pending:
            return self.what
        now = time.monotonic()
        waited = ", ".join(f"{label} {now - since:.0f}s" for label, since in sorted(self.pending.items()))
        return f"{self.what}: waiting on {waited}"

    def __rich__(self) -> str:
        return self.text()

    def watching(self, factory: Callable[..., Source]) -> Callable[..., Source]:
        """``factory`` whose sources report each query in flight under the source's name."""

        def build(name: str, config: Any, root: Any) -> Source:
            return _Watched(factory(name, config, root), self)

        return build

    @contextlib.contextmanager
    def shown(self, enabled: bool = True) -> Iterator[Waiting]:
        """The spinner while the block runs, if ``enabled`` and stderr is a terminal."""
        if not enabled or not sys.stderr.isatty():
            yield self
            return
        from rich.console import Console

        with Console(stderr=True).status(self, spinner="dots"):
            yield self


class _Watched(Source):
    """A source whose requests are reported to a :class:`Waiting` while they run; anything
    else is the wrapped source's own (a probe's ``send``, a backtest's ``query_steps``…)."""

    def __init__(self, inner: Source, waiting: Waiting) -> None:
        super().__init__(inner.name, inner.config)
        self.inner = inner
        self.waiting = waiting
        self.running = 0

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        self.running += 1
        self.waiting.start(self.name)
        try:
            yield
        finally:
            self.running -= 1
            if not self.running:
                self.waiting.done(self.name)

    def __getattr__(self, name: str) -> Any:  # only what this class does not define
        return getattr(self.inner, name)

    async def query(self, text: Any, parameters: QueryParameters) -> Any:
        with self._in_flight():
            return await self.inner.query(text, parameters)

    async def records(self, text: Any, parameters: QueryParameters, columns: list[str]) -> list[list[Any]]:
        with self._in_flight():
            return await self.inner.records(text, parameters, columns)

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        """A probe's synthetic request (an http source's)."""
        with self._in_flight():
            return await self.inner.send(*args, **kwargs)  # type: ignore[attr-defined]

    async def query_steps(self, text: Any, parameter_sets: list[QueryParameters]) -> Any:
        with self._in_flight():
            return await self.inner.query_steps(text, parameter_sets)

    def steps_per_request(self, text: Any, parameter_sets: list[QueryParameters]) -> int:
        return self.inner.steps_per_request(text, parameter_sets)

    async def estimate(self, text: Any, parameters: QueryParameters) -> dict[str, Any] | None:
        with self._in_flight():
            return await self.inner.estimate(text, parameters)

    async def unpruned(self, requests: Any) -> list[str]:
        with self._in_flight():
            return await self.inner.unpruned(requests)

    async def close(self) -> None:
        await self.inner.close()
