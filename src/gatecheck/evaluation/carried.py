"""What a check's fetch found beyond its frame (a reconciliation's keys, an SLO's windows),
carried on the frame's ``attrs`` to the judging step, and what a source's failure makes of a
check: the parts every kind of fetch shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gatecheck.errors import GatecheckError, QueryError, SourceTimeout, SourceUnavailable
from gatecheck.results import CheckResult, Outcome

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")


class Carried(Generic[T]):
    """Findings on a frame's ``attrs``: shared, never copied (pandas deep-copies ``attrs``
    into every column taken from a frame)."""

    def __init__(self, found: T) -> None:
        self.found = found

    def __copy__(self) -> Carried[T]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Carried[T]:
        return self


def carry(frame: pd.DataFrame, key: str, found: Any) -> pd.DataFrame:
    """``frame`` carrying ``found`` under ``key``."""
    frame.attrs[key] = Carried(found)
    return frame


def carried(frame: pd.DataFrame, key: str) -> Any:
    """What ``frame`` carries under ``key`` (None when it carries nothing there)."""
    found = frame.attrs.get(key)
    return found.found if isinstance(found, Carried) else None


def source_failed(exc: GatecheckError, source: str, base: dict[str, Any]) -> CheckResult:
    """The ``error`` result of a check whose source failed: unreachable or timed out (its
    source unavailable), its query refused (the source answered), or anything else of
    gatecheck's (not known)."""
    if isinstance(exc, SourceUnavailable | SourceTimeout):
        available: bool | None = False
    else:
        available = True if isinstance(exc, QueryError) else None
    return CheckResult(
        **base, outcome=Outcome.ERROR, source_available=available, reason=f"source {source}: {exc}"
    )
