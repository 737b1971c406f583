"""What ``gatecheck check-sources`` learns about one source: reachable or not, its version,
how long connecting took, what it checked, and one line per problem."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Probe:
    """The result of probing one source; ``problems`` empty means ready for its suites."""

    version: str | None = None
    latency_ms: float | None = None
    checked: str = ""
    problems: list[str] = field(default_factory=list)
    reachable: bool = True


def counted(number: int, noun: str) -> str:
    """``1 table``, ``4 tables``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
