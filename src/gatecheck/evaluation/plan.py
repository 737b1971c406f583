"""What one check of a gate does at an ``as_of`` before anything runs: its window (and where
its length and settle came from) and the parameters its query is sent with.

The gate engine and ``gatecheck explain`` both use this module, so what ``explain`` shows is
what a run sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from gatecheck._values import digest_of
from gatecheck.config import (
    BUILTIN_PARAMETERS,
    CheckRef,
    GateConfig,
    Project,
    ResolvedThreshold,
    RollbackRef,
    SuiteConfig,
)
from gatecheck.config.models import Baseline, FailAfter, Learned, PassAfter
from gatecheck.results import Window

Role = Literal["required", "advisory", "rollback"]


def window_for(as_of: datetime, length: timedelta, settle: timedelta) -> Window:
    """``[as_of - settle - length, as_of - settle)``."""
    end = as_of - settle
    return Window(start=end - length, end=end, length=length, settle=settle)


def role_of(ref: CheckRef | RollbackRef) -> Role:
    if isinstance(ref, RollbackRef):
        return "rollback"
    return "required" if ref.required else "advisory"


@dataclass(frozen=True)
class CheckPlan:
    """One check of a gate at one ``as_of``: the suite, its role and window; ``length_from``
    and ``settle_from`` name the file and key each came from."""

    suite: SuiteConfig
    role: Role
    window: Window
    length_from: str
    settle_from: str
    fail_after: FailAfter | None = None
    pass_after: PassAfter | None = None
    enforce: bool = True
    baseline: Baseline | None = None
    learned: Learned | None = None
    where: str = ""  # the gate's file and key of this check (``gates/P.yaml: checks[0]``)
    # With a bound from history: the digest of what produces its column's values (measure_of);
    # it learns only from records whose tracked values have the same.
    measure: str = ""

    @property
    def tracked_column(self) -> str | None:
        """The column a bound from history judges (None: the check has none)."""
        rule = self.baseline or self.learned
        return rule.column if rule is not None else None

    @property
    def lookback(self) -> int:
        """How many evaluations its accumulation rules read, this one included (1: none)."""
        return max(
            self.fail_after.lookback if self.fail_after is not None else 1,
            self.pass_after.consecutive if self.pass_after is not None else 1,
        )


def plan_checks(project: Project, gate: GateConfig, as_of: datetime) -> list[CheckPlan]:
    """Every check of ``gate`` (its checks, then its rollback suites) at ``as_of``."""
    gate_file = project.files.get(f"gate:{gate.phase}", f"gates/{gate.phase}.yaml")
    refs: list[tuple[str, CheckRef | RollbackRef]] = [
        *((f"{gate_file}: checks[{i}]", ref) for i, ref in enumerate(gate.checks)),
        *((f"{gate_file}: rollback[{i}]", ref) for i, ref in enumerate(gate.rollback)),
    ]
    return [_plan(project, gate, ref, where, gate_file, as_of) for where, ref in refs]


def _plan(
    project: Project,
    gate: GateConfig,
    ref: CheckRef | RollbackRef,
    where: str,
    gate_file: str,
    as_of: datetime,
) -> CheckPlan:
    suite = project.suites[ref.suite]
    suite_file = project.files.get(f"suite:{suite.name}", f"suites/{suite.name}.yaml")
    role = role_of(ref)
    # The gate's window is for its checks; a rollback suite watches the last minutes and
    # keeps its own window unless its rollback entry names one.
    if ref.window is not None:
        length, length_from = ref.window, f"{where}.window"
    elif role != "rollback" and gate.window is not None:
        length, length_from = gate.window, f"{gate_file}: window"
    else:
        length, length_from = suite.window.length, f"{suite_file}: window.length"
    if ref.settle is not None:
        settle, settle_from = ref.settle, f"{where}.settle"
    else:
        settle, settle_from = suite.window.settle, f"{suite_file}: window.settle"
    return CheckPlan(
        suite,
        role,
        window_for(as_of, length, settle),
        length_from,
        settle_from,
        fail_after=ref.fail_after,
        pass_after=ref.pass_after if isinstance(ref, CheckRef) else None,
        enforce=ref.enforce,
        baseline=ref.baseline if isinstance(ref, CheckRef) else None,
        learned=ref.learned if isinstance(ref, CheckRef) else None,
        where=where,
        measure=measure_of(project, gate.phase, suite, length, settle)
        if isinstance(ref, CheckRef) and (ref.baseline or ref.learned)
        else "",
    )


def measure_of(project: Project, phase: str, suite: SuiteConfig, length: timedelta, settle: timedelta) -> str:
    """SHA-256 of what produces a suite's values: its source and query (or sides, or SLO), its
    groups, the window's length and settle, and the thresholds its query is sent with, as
    resolved for ``phase``. A bound from history compares values only under the same: a query
    changed from milliseconds to seconds would otherwise pass any ``max_ratio``."""
    resolved = project.resolve_thresholds(phase)
    bound = {name: resolved[name].value for name in sorted(suite.query_parameters()) if name in resolved}
    fields = {"source", "query", "compare", "reconcile", "slo", "groups"}
    produced = suite.model_dump(mode="json", include=fields, exclude_defaults=True, serialize_as_any=True)
    return digest_of(
        {"suite": produced, "window": [length.total_seconds(), settle.total_seconds()], "thresholds": bound}
    )


def query_parameters(
    suite: SuiteConfig, window: Window, as_of: datetime, thresholds: Mapping[str, ResolvedThreshold]
) -> dict[str, Any]:
    """The parameters the suite's query is sent with."""
    builtins: dict[str, Any] = {"window_start": window.start, "window_end": window.end, "as_of": as_of}
    # The window always (a PromQL text reads window_end whether or not it names $window), and
    # the thresholds the query names. A SQL source binds only what its SQL names (ClickHouse
    # rejects unused parameters on some versions): see the sources' ``named_only``.
    named = {n: thresholds[n].value for n in suite.query_parameters() if n not in BUILTIN_PARAMETERS}
    return {**builtins, **named}
