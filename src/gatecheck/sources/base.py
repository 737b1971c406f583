"""The source contract: what every source's configuration has (:class:`SourceSettings`) and
what every source does (:class:`Source`). It imports no implementation: each backend module
(a leaf) owns its configuration model, its query model and its implementation, and the one
registry that maps a source's ``type`` to its leaf is :mod:`gatecheck.sources`.

A source answers one suite query with a *small* pandas DataFrame of aggregates: the heavy
work happens inside the source (SQL, JetStream APIs, PromQL), never in Python.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from gatecheck.durations import Duration
from gatecheck.errors import redact
from gatecheck.frozen import Frozen

if TYPE_CHECKING:
    import pandas as pd

QueryParameters = Mapping[str, datetime | bool | int | float | str]

#: The most rows (or series) a suite's answer may have: a suite returns aggregates. Sources stop
#: reading at MAX_ROWS + 1, so a runaway query never crosses whole into Python.
MAX_ROWS = 10_000


@dataclass(frozen=True)
class PlannedRequest:
    """One suite's request as a gate would send it: the suite, its window's length (for
    messages), the query and its parameters."""

    suite: str
    window: str
    query: Any
    parameters: QueryParameters


class SourceSettings(Frozen):
    """What every source's configuration has (``environments.<env>.sources.<name>``); each
    leaf adds its ``type`` literal and its own keys."""

    # A URL can carry user:password@: kept out of the model's repr (logs, tracebacks).
    url: str = Field(repr=False)
    timeout: Duration = timedelta(seconds=30)

    #: URL schemes this source type accepts.
    schemes: ClassVar[tuple[str, ...]] = ()

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in cls.schemes:
            raise ValueError(f"URL scheme must be one of {', '.join(s + '://' for s in cls.schemes)}")
        from urllib.parse import urlsplit

        for part in value.split(","):  # NATS takes a list of servers
            try:
                urlsplit(part.strip()).port  # noqa: B018 -- reading it checks the port and an IPv6 host
            except ValueError as exc:  # its words hold no password: the port, or none
                raise ValueError(f"not a URL: {str(exc).rstrip('.')}") from None
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be positive")
        return value


class Source(ABC):
    """One configured source (``environments.<env>.sources.<name>`` in gatecheck.yaml)."""

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config

    @property
    def timeout(self) -> float:
        return float(self.config.timeout.total_seconds())

    @abstractmethod
    async def query(self, text: Any, parameters: QueryParameters) -> pd.DataFrame:
        """Run one suite query (SQL text or a source-specific query model); raise a
        ``SourceError`` subclass on failure."""

    async def records(self, text: Any, parameters: QueryParameters, columns: list[str]) -> list[list[Any]]:
        """Every record a keyed query selects, as the values of ``columns`` (a ``reconcile:``
        side this source cannot hash itself: NATS messages). Sources that hash their rows in
        their own engine (SQL) never get asked."""
        from gatecheck.errors import QueryError

        raise QueryError(f"a {type(self).__name__} cannot list records")

    async def query_steps(
        self, text: Any, parameter_sets: list[QueryParameters]
    ) -> list[pd.DataFrame] | None:
        """The frames of one query at each of many parameter sets, in order, in one request;
        None when this source cannot (the caller queries each set). Each frame is what
        ``query`` returns for its set."""
        return None

    def steps_per_request(self, text: Any, parameter_sets: list[QueryParameters]) -> int:
        """How many of these parameter sets one ``query_steps`` request should carry."""
        return 64

    async def estimate(self, text: Any, parameters: QueryParameters) -> dict[str, Any] | None:
        """What the source expects one suite query to read, from its own planner, read-only and
        without running it (``gatecheck explain --estimate``); None when it has no planner."""
        return None

    async def unpruned(self, requests: list[PlannedRequest]) -> list[str]:
        """Each request that reads a whole table its window could have pruned, one line per
        table with what to do (``gatecheck check-sources``); none when the source has no
        planner to ask."""
        return []

    async def close(self) -> None:  # noqa: B027 — optional hook
        """Release connections; safe to call more than once."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {redact(self.config.url)}>"


def _told(span: timedelta) -> timedelta:
    """A span as a message tells it: to the second, to the minute past ten minutes (an
    hour measured as 59m59s or 1h1s is 1h)."""
    seconds = span.total_seconds()
    return timedelta(seconds=round(seconds / 60) * 60 if seconds >= 600 else round(seconds))


def clock_problem(where: str, theirs: datetime | None, before: datetime, after: datetime) -> str | None:
    """Why a server's clock cannot be trusted with gatecheck's windows, or None (also when it
    did not say, ``theirs`` None): its reading ``theirs``, taken between ``before`` and
    ``after`` by gatecheck's clock, lies outside that
    span by more than :data:`~gatecheck.durations.MAX_CLOCK_SKEW`. Every window is gatecheck's
    clock's; on a host whose clock runs an hour behind, the last hour of data lies after every
    window, and a freshness check finds the newest row it does see seconds old."""
    from gatecheck._values import timestamp
    from gatecheck.durations import MAX_CLOCK_SKEW, format_duration

    if theirs is None:
        return None
    if theirs > after + MAX_CLOCK_SKEW:
        way = "ahead of"
    elif theirs < before - MAX_CLOCK_SKEW:
        way = "behind"
    else:
        return None
    off = _told(abs(theirs - (before + (after - before) / 2)))  # (a Date header: to the second)
    return (
        f"{where}'s clock reads {timestamp(theirs)}, {format_duration(off)} {way} gatecheck's "
        f"({timestamp(after)}), more than the {format_duration(MAX_CLOCK_SKEW)} two clocks may differ: "
        "a window by gatecheck's clock would judge another time than it names (synchronize the "
        "clocks, e.g. with NTP)"
    )


#: How long before now an evaluation's ``as_of`` may lie for what only the present can answer —
#: a stream's or a consumer's state, a scrape, a probe's request — to be judged as of it.
PRESENT_TOLERANCE = timedelta(seconds=60)


def past_for_the_present(as_of: Any, what: str, tolerance: timedelta = PRESENT_TOLERANCE) -> str | None:
    """Why ``what`` (which answers only the present) cannot be judged as of ``as_of``, or None:
    an ``as_of`` (``--as-of``, a backtest's step) more than ``tolerance`` ago."""
    from gatecheck._values import timestamp
    from gatecheck.durations import format_duration

    if not isinstance(as_of, datetime):
        return None
    ago = datetime.now(as_of.tzinfo) - as_of
    if ago <= tolerance:
        return None
    ago = _told(ago)
    return (
        f"{what} is the present: an evaluation as of {timestamp(as_of)}, {format_duration(ago)} ago "
        "(--as-of), cannot be judged from it"
    )
