"""The configuration models: ``gatecheck.yaml``, ``thresholds.yaml``, ``gates/*.yaml``,
``suites/*.yaml``, and :class:`Project`, everything under one ``--config`` directory.

Every model is strict and frozen (``extra="forbid"``). A source's own configuration and query
models live with the source (:mod:`gatecheck.sources`, one leaf per ``type``).

Why one module of ~1,140 lines: the models refer to one another (a gate's checks and their
rules over time, a suite's window and query of every kind — SQL, PromQL, NATS, reconcile,
SLO, probe — and the project) and pydantic resolves them together.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from gatecheck._values import digest_of
from gatecheck.durations import Duration, format_duration
from gatecheck.errors import ConfigError, did_you_mean
from gatecheck.frozen import NAME as _NAME
from gatecheck.frozen import Frozen
from gatecheck.frozen import sane_number as _sane_number
from gatecheck.sources import SourceConfig, SuiteQuery

PROJECT_FILE = "gatecheck.yaml"
THRESHOLDS_FILE = "thresholds.yaml"
GATES_DIR = "gates"
SUITES_DIR = "suites"

#: Query parameters every evaluation provides, besides resolved thresholds.
BUILTIN_PARAMETERS = ("window_start", "window_end", "as_of")

_PHASE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# --------------------------------------------------------------------------- gatecheck.yaml


class EnvironmentConfig(Frozen):
    sources: dict[str, SourceConfig]


class HistoryConfig(Frozen):
    url: str = Field(repr=False)
    # How long `gatecheck serve` keeps evaluation records (None: for ever). The audit trail,
    # pinned records and each phase's latest records are always kept.
    retention: Duration | None = None

    @field_validator("retention")
    @classmethod
    def _a_day_at_least(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(days=1) <= value <= timedelta(days=3660):
            raise ValueError("retention lasts at least 1d and at most 3660d")
        return value

    @field_validator("url")
    @classmethod
    def _readable(cls, value: str) -> str:
        """A PostgreSQL ledger's URL that libpq cannot read is refused here (its password
        never shown), not at the first command that opens the ledger."""
        if value.split(":", 1)[0] in ("postgresql", "postgres"):
            from gatecheck.sources.postgresql import url_problem

            problem = url_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value


def _at_least_a_second(name: str, value: timedelta) -> timedelta:
    if value < timedelta(seconds=1):
        raise ValueError(f"{name} must be at least 1s")
    return value


class WorkerConfig(Frozen):
    """The evaluation worker of ``gatecheck serve`` (a process of its own)."""

    deadline: Duration = timedelta(minutes=5)  # one evaluation longer than this: replaced
    memory_limit_mib: int = Field(default=2048, ge=64)  # resident memory over it: replaced
    recycle_after: int = Field(default=0, ge=0)  # evaluations; 0 = never (a safety net only)

    _deadline = field_validator("deadline")(lambda value: _at_least_a_second("deadline", value))


class LeaseConfig(Frozen):
    """Replicas of ``gatecheck serve`` on one PostgreSQL ledger: the lease that decides which
    one schedules. Its holder renews it every third of ``ttl``; a holder that could not renew
    stops scheduling before ``ttl`` has passed, and another replica takes over when it ends."""

    ttl: Duration = timedelta(seconds=15)

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=2):
            raise ValueError("ttl must be at least 2s (the holder renews it every third of it)")
        return value


class ServiceConfig(Frozen):
    """How ``gatecheck serve`` runs: which phases, how often, where it listens."""

    interval: Duration = timedelta(minutes=5)
    listen: str = "127.0.0.1:9464"
    phases: list[str] | None = None  # default: every gate
    intervals: dict[str, Duration] = {}  # per-phase interval overrides
    worker: WorkerConfig = WorkerConfig()
    # The scheduler's lease among replicas (PostgreSQL ledgers only; None: the defaults there).
    lease: LeaseConfig | None = None
    # The address people open the service at, for links in notifications (default: http://listen).
    url: str | None = None
    # Evaluations a client may start a minute (fresh=true, max_age, POST, Flagger); past it
    # 429. Many rollouts behind one controller's address need more than the default.
    evaluations_per_minute: int = Field(default=30, ge=1, le=100_000)
    # Host names the service answers to besides its listen address, the loopback names and
    # url's host (a request naming any other Host is refused: DNS rebinding). "*.example.com"
    # matches subdomains.
    allowed_hosts: list[str] = []

    _interval = field_validator("interval")(lambda value: _at_least_a_second("interval", value))

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: the system picks one
            raise ValueError("listen must be HOST:PORT, e.g. 127.0.0.1:9464")
        return value

    def interval_for(self, phase: str) -> timedelta:
        return self.intervals.get(phase, self.interval)


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook's address (never quoting it: it is a secret), or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a port out of range or not a number
    except ValueError:
        return "url is not a valid URL (its port must be a number from 1 to 65535)"
    if parts.scheme not in ("http", "https"):
        return "url must be an http(s):// URL"
    if not parts.hostname:
        return "url names no host"
    return None


class NotifyTarget(Frozen):
    """One ``notify:`` target of ``gatecheck serve``: a webhook told when a phase's verdict
    changes. The URL is a secret: write ``url: "${SLACK_WEBHOOK_URL}"`` or ``url_file: PATH``."""

    name: str
    # a Slack-compatible incoming webhook, the verdict as JSON, or CloudEvents 1.0 (structured)
    kind: Literal["slack", "json", "cloudevents"]
    url: SecretStr | None = None
    url_file: str | None = None  # a file holding the URL (relative: to the --config directory)
    phases: list[str] | None = None  # default: every phase the service evaluates
    # The verdicts a change *into* notifies: e.g. [no-go, rollback] only, or go too ("back to GO").
    on: list[Literal["go", "no-go", "inconclusive", "rollback"]] = ["no-go", "rollback", "go"]
    suppress: Duration = timedelta(minutes=30)  # the same change again within this: not sent
    timeout: Duration = timedelta(seconds=10)  # per delivery attempt
    retries: int = Field(3, ge=0, le=10)  # more attempts after a failed one, with backoff

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a target name uses lowercase letters, digits and _")
        return value

    @field_validator("on")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one verdict to be told about")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> NotifyTarget:
        if (self.url is None) == (self.url_file is None):
            raise ValueError('give exactly one of url (write "${VAR}") and url_file')
        problem = webhook_url_problem(self.url.get_secret_value()) if self.url is not None else None
        if problem is not None:
            raise ValueError(problem)
        return self


class ProjectConfig(Frozen):
    """``gatecheck.yaml``."""

    environments: dict[str, EnvironmentConfig] = Field(min_length=1)
    history: HistoryConfig | None = None
    service: ServiceConfig = ServiceConfig()
    notify: list[NotifyTarget] = []

    @field_validator("notify")
    @classmethod
    def _unique_names(cls, value: list[NotifyTarget]) -> list[NotifyTarget]:
        repeated = _repeated([t.name for t in value])
        if repeated:
            raise ValueError(f"notify target names must be unique: {', '.join(repeated)}")
        return value


# --------------------------------------------------------------------------- thresholds.yaml


def _threshold_value(value: Any) -> Any:
    """A threshold is a number, text or true/false, or a list of them (for a ``value_set``)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, bool | int | float | str):
            raise ValueError("a threshold is a number, text, true/false or a list of them")
        _sane_number(item)
    return value


ThresholdValue = Annotated[Any, AfterValidator(_threshold_value)]

#: The thresholds docs/configuration.md ("thresholds.yaml") declares (their names are part of the contract): a
#: ``defaults`` entry may name one even where no suite of this project uses it.
DECLARED_THRESHOLDS = frozenset(
    {
        "unmatched_edge_rate_max", "unmatched_edges_min_evidence", "freshness_lag_max_s",
        "event_lag_p99_max_s", "clock_skew_tolerance_s", "clock_skew_rate_max",
        "rollup_parity_rel_tol", "unattributed_session_rate_max", "sessions_min_evidence",
        "fallback_events_max", "core_hot_share_min", "dlq_messages_max", "consumer_pending_max",
        "hrv_messages_min_evidence", "success_rate_min", "p95_latency_max_ms",
        "schema_failures_per_s_max", "dlq_rollback_per_min", "stream_replicas",
        "db_write_stall_max_s", "db_writes_min_rows", "db_writes_min_evidence", "ln_rmssd_min",
        "ln_rmssd_max", "ln_rmssd_null_rate_max", "hrv_rows_min_evidence", "e2e_consecutive_min",
        "crashloop_containers_max", "container_restarts_max", "ingest_5xx_max",
        "consumer_lookup_failures_max", "demand_grain_rel_tol", "hrv_db_missing_max",
        "canary_latency_p_min", "reconcile_missing_max", "reconcile_extra_max",
        "reconcile_changed_max", "reconcile_duplicated_max", "rollup_keys_min_evidence", "slo_min_events",
    }
)  # fmt: skip


class ThresholdsConfig(Frozen):
    """``thresholds.yaml``: defaults, then per-environment and per-phase overrides."""

    defaults: dict[str, ThresholdValue] = {}
    environments: dict[str, dict[str, ThresholdValue]] = {}
    phases: dict[str, dict[str, ThresholdValue]] = {}


@dataclass(frozen=True)
class ResolvedThreshold:
    """A threshold value and where it came from (``default``, ``environment``, ``phase``)."""

    name: str
    value: ThresholdValue
    provenance: Literal["default", "environment", "phase"]
    key: str  # e.g. "thresholds.yaml: phases.canary-10.p95_latency_max_ms"


def resolve_thresholds(
    thresholds: ThresholdsConfig, environment: str, phase: str
) -> dict[str, ResolvedThreshold]:
    """Resolve every threshold for (environment, phase): phase > environment > defaults."""
    resolved: dict[str, ResolvedThreshold] = {}
    layers: list[tuple[Literal["default", "environment", "phase"], str, Mapping[str, Any]]] = [
        ("default", "defaults", thresholds.defaults),
        ("environment", f"environments.{environment}", thresholds.environments.get(environment, {})),
        ("phase", f"phases.{phase}", thresholds.phases.get(phase, {})),
    ]
    for provenance, prefix, values in layers:
        for name, value in values.items():
            resolved[name] = ResolvedThreshold(name, value, provenance, f"{THRESHOLDS_FILE}: {prefix}.{name}")
    return resolved


# --------------------------------------------------------------------------- gates/*.yaml


#: The most evaluations an accumulation rule may look back over.
MAX_LOOKBACK = 100


class FailAfter(Frozen):
    """A check fails only once its failures accumulate over this phase's evaluations: ``k of
    n`` (``{failures: 3, of: 5}``) or ``{consecutive: 3}``; the current evaluation counts."""

    failures: int | None = Field(None, ge=1, le=MAX_LOOKBACK)
    of: int | None = Field(None, ge=1, le=MAX_LOOKBACK)
    consecutive: int | None = Field(None, ge=1, le=MAX_LOOKBACK)

    @model_validator(mode="after")
    def _one_rule(self) -> FailAfter:
        counted = self.failures is not None or self.of is not None
        if counted == (self.consecutive is not None):
            raise ValueError("give either failures and of ({failures: 3, of: 5}) or consecutive")
        if counted and (self.failures is None or self.of is None):
            raise ValueError("failures and of go together ({failures: 3, of: 5})")
        if self.failures is not None and self.of is not None and self.failures > self.of:
            raise ValueError(f"failures ({self.failures}) cannot exceed of ({self.of})")
        return self

    @property
    def lookback(self) -> int:
        """How many evaluations, the current one included, the rule reads."""
        return self.of if self.of is not None else self.consecutive or 1


class PassAfter(Frozen):
    """A check passes only after this many consecutive passing evaluations (the current one
    included): a check that flaps does not earn a GO."""

    consecutive: int = Field(ge=1, le=MAX_LOOKBACK)


class Baseline(Frozen):
    """A bound relative to the check's own history in this phase: ``quantile`` of ``column``
    (per group) over its last ``last`` passing evaluations — or a pinned evaluation's value
    (``gatecheck pin``) — times ``max_ratio`` and/or ``min_ratio``."""

    column: str
    last: int = Field(20, ge=1, le=1000)
    quantile: float = Field(0.5, ge=0, le=1)
    max_ratio: float | None = Field(None, gt=0)
    min_ratio: float | None = Field(None, ge=0)
    min_records: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _bounded(self) -> Baseline:
        if self.max_ratio is None and self.min_ratio is None:
            raise ValueError("give max_ratio, min_ratio or both (e.g. max_ratio: 1.25)")
        if self.max_ratio is not None and self.min_ratio is not None and self.min_ratio > self.max_ratio:
            raise ValueError(f"min_ratio ({self.min_ratio}) exceeds max_ratio ({self.max_ratio})")
        if self.min_records > self.last:
            raise ValueError(f"min_records ({self.min_records}) exceeds last ({self.last})")
        return self


class ExcludedStretch(Frozen):
    """A stretch of history a learned threshold leaves out (an incident, a load test)."""

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> ExcludedStretch:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("from and to need a time zone (e.g. 2026-11-20T02:00:00Z)")
        if self.end <= self.start:
            raise ValueError("to must be after from")
        return self


class Learned(Frozen):
    """A band for ``column`` (per group) learned from the check's observed history in this
    phase: the median ± ``spread`` × the scaled MAD (at least ``min_change``), per seasonal
    bucket, over ``training`` before the window being judged, with incidents left out."""

    column: str
    training: Duration = timedelta(days=28)
    season: Literal["none", "hour_of_day", "day_of_week"] = "none"
    spread: float = Field(3.0, gt=0)
    min_change: float = Field(0.0, ge=0)
    bound: Literal["both", "max", "min"] = "both"
    min_records: int = Field(8, ge=2, le=10_000)
    exclude: list[ExcludedStretch] = []

    @field_validator("training")
    @classmethod
    def _some_training(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > timedelta(days=400):
            raise ValueError("training lasts more than 0s and at most 400d")
        return value


class CheckRef(Frozen):
    """One check of a gate: a suite, optionally with its own window, settle, advisory flag,
    accumulation rules, a bound from its history (``baseline`` or ``learned``), and
    ``enforce: false`` for a shadow check (judged, never blocking)."""

    suite: str
    window: Duration | None = None
    settle: Duration | None = None
    required: bool = True
    fail_after: FailAfter | None = None
    pass_after: PassAfter | None = None
    enforce: bool = True
    baseline: Baseline | None = None
    learned: Learned | None = None

    @model_validator(mode="after")
    def _shadow_of_a_blocking_check(self) -> CheckRef:
        if self.baseline is not None and self.learned is not None:
            raise ValueError("give baseline or learned, not both (one bound from history per check)")
        if not self.enforce and not self.required:
            raise ValueError(
                "enforce: false on an advisory check (required: false): an advisory check never "
                "blocks already; a shadow check is one that would block once enforced"
            )
        return self


class RollbackRef(Frozen):
    """A rollback suite: if it fails, the verdict is ROLLBACK (``enforce: false``: a shadow
    trigger, judged and recorded, never rolling back)."""

    suite: str
    window: Duration | None = None
    settle: Duration | None = None
    fail_after: FailAfter | None = None
    enforce: bool = True


class Soak(Frozen):
    duration: Duration
    max_gap: Duration


class Deadline(Frozen):
    """How long a phase may stay INCONCLUSIVE before it is escalated: ``then: no-go`` or
    ``rollback`` changes the verdict, ``notify`` keeps it and tells the notify targets."""

    inconclusive_for: Duration
    then: Literal["no-go", "rollback", "notify"]

    @field_validator("inconclusive_for")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("inconclusive_for must be longer than 0s")
        return value


class GateConfig(Frozen):
    """``gates/PHASE.yaml``."""

    phase: str
    environment: str
    description: str = ""
    requires: list[str] = []
    window: Duration | None = None
    soak: Soak | None = None
    deadline: Deadline | None = None
    # Probes (suites on an http source) send synthetic requests: only a gate that says so runs them.
    probes: bool = False
    checks: list[CheckRef] = Field(min_length=1)
    rollback: list[RollbackRef] = []
    # `required`: a person's recorded approval (`gatecheck approve`) must be in force.
    approval: Literal["required", "none"] = "none"
    # A recorded approval of a phase in `requires` stands in for its recorded GO.
    approval_satisfies_requires: bool = False

    @field_validator("phase")
    @classmethod
    def _phase_name(cls, value: str) -> str:
        if not _PHASE_NAME.match(value):
            raise ValueError("a phase name uses lowercase letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _each_suite_once(self) -> GateConfig:
        """A suite twice among the checks (or the rollback suites) is two entries for one
        check: which window, which ``required``? Its history, waivers and records are the
        suite's, one per gate: refused, not picked."""
        entries: tuple[tuple[str, Sequence[CheckRef | RollbackRef]], ...] = (
            ("checks", self.checks), ("rollback", self.rollback),
        )  # fmt: skip
        for key, refs in entries:
            first: dict[str, int] = {}
            for index, ref in enumerate(refs):
                seen = first.setdefault(ref.suite, index)
                if seen != index:
                    raise ValueError(
                        f"{key}[{index}]: suite {ref.suite!r} is already {key}[{seen}]: a suite is "
                        "one check of a gate (give that entry its window, required, …)"
                    )
        return self

    @model_validator(mode="after")
    def _positive_spans(self) -> GateConfig:
        """A window of 0s judges nothing, a soak of 0s is covered by the evaluation alone, and
        a max_gap of 0s is never met: each refused where it is written."""
        spans: list[tuple[str, timedelta | None]] = [("window", self.window)]
        if self.soak is not None:
            spans += [("soak.duration", self.soak.duration), ("soak.max_gap", self.soak.max_gap)]
        spans += [(f"checks[{i}].window", ref.window) for i, ref in enumerate(self.checks)]
        spans += [(f"rollback[{i}].window", r.window) for i, r in enumerate(self.rollback)]
        for where, span in spans:
            if span is not None and span <= timedelta(0):
                raise ValueError(f"{where}: must be longer than 0s")
        if self.soak is not None and self.soak.max_gap >= self.soak.duration:
            raise ValueError(
                f"soak.max_gap: {format_duration(self.soak.max_gap)} is not shorter than soak.duration "
                f"{format_duration(self.soak.duration)}: two evaluations at its ends would cover it, with "
                "nothing watched between"
            )
        return self


# --------------------------------------------------------------------------- suites/*.yaml


class ParameterRef(Frozen):
    """Great Expectations' suite-parameter syntax: ``{$PARAMETER: name}``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)
    name: str = Field(alias="$PARAMETER")


class SuiteWindow(Frozen):
    length: Duration
    settle: Duration = timedelta(0)

    @field_validator("length")
    @classmethod
    def _positive_length(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("window length must be positive")
        return value


def _repeated(names: list[str]) -> list[str]:
    """The names given more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def _sane_minimum(value: Any, what: str) -> Any:
    """A literal minimum is a finite number, not negative (a $PARAMETER is checked where its
    value is resolved)."""
    if isinstance(value, float):
        _sane_number(value)
        if value < 0:
            raise ValueError(f"{what} cannot be negative")
    return value


class Evidence(Frozen):
    """Minimum evidence: ``sum(column)`` over the frame must reach ``min_total``."""

    column: str
    min_total: float | ParameterRef

    @field_validator("min_total")
    @classmethod
    def _sane_minimum(cls, value: float | ParameterRef) -> float | ParameterRef:
        return _sane_minimum(value, "a minimum evidence")


def mostly_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a ``mostly`` (as a literal or a threshold), or None: the share of
    values that must meet the expectation. At 0 any values pass (Great Expectations accepts
    it), so the expectation would judge nothing."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1:
        return None
    return "must be a number above 0 and at most 1 (at 0, any values would pass)"


class ExpectationSpec(BaseModel):
    """A Great Expectations expectation by its snake_case type and its own kwargs."""

    model_config = ConfigDict(frozen=True, extra="allow")
    type: str

    @model_validator(mode="after")
    def _sane_bounds(self) -> ExpectationSpec:
        for key in ("min_value", "max_value", "value"):
            value = (self.model_extra or {}).get(key)
            try:
                _sane_number(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc} (got {value!r})") from None
        mostly = (self.model_extra or {}).get("mostly")
        # a number only: other values are Great Expectations' to refuse, in its words
        problem = mostly_problem(mostly) if isinstance(mostly, int | float) else None
        if problem is not None:
            raise ValueError(f"mostly: {problem} (got {mostly!r})")
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _two_named_sides(value: dict[str, Any], what: str) -> dict[str, Any]:
    """Exactly two sides, each named as a column is (its name prefixes the frame's columns)."""
    if len(value) != 2:
        raise ValueError(f"{what} has exactly two sides (got {len(value)})")
    for name in value:
        if not _NAME.match(name):
            raise ValueError(f"side {name!r}: a side name uses a-z, 0-9 and _, starting with a letter")
    return value


#: ``evidence: none``: the query judges an empty window itself (it answers a row whatever the
#: data, and that row's values fail when nothing was there), so it declares no minimum.
NoEvidence = Literal["none"]


def _evidence_kind(value: Any) -> str:
    return "none" if isinstance(value, str) else "minimum"


#: A minimum, or ``none``: one or the other by the value's form, so a bad minimum is told as
#: a minimum's problem (not also as "should be 'none'").
EvidenceOrNone = Annotated[
    Annotated[Evidence, Tag("minimum")] | Annotated[NoEvidence, Tag("none")],
    Discriminator(_evidence_kind),
]


def evidence_minimum(evidence: Evidence | NoEvidence | None) -> Evidence | None:
    """The minimum a suite or side declares (None: none, or ``evidence: none``)."""
    return evidence if isinstance(evidence, Evidence) else None


class CompareSide(Frozen):
    """One side of a comparison: a query on a source, with its own evidence minimum."""

    source: str
    query: SuiteQuery
    evidence: EvidenceOrNone | None = None


class CompareConfig(Frozen):
    """``compare:`` — two sides' answers joined (``test: difference``) or two samples tested
    (``mann-whitney``, ``proportions``)."""

    sides: dict[str, CompareSide]
    test: Literal["difference", "mann-whitney", "proportions"] = "difference"
    # difference: the sides' answers joined on ``keys``; ``values`` compared
    keys: list[str] = []
    values: list[str] = []
    # mann-whitney: each side's samples in ``samples`` (one row each), or with ``histogram``
    # a cumulative histogram: ``le`` (bucket upper bound) and ``samples`` (its count)
    samples: str | None = None
    histogram: bool = False
    # proportions: each side's one row with ``hits`` out of ``total``
    hits: str | None = None
    total: str | None = None
    # mann-whitney / proportions: which direction of the first side is worse, and the
    # smallest sample on either side that concludes anything
    worse: Literal["higher", "lower"] = "higher"
    min_samples: int = Field(default=50, ge=2)

    @field_validator("sides")
    @classmethod
    def _two_sides(cls, value: dict[str, CompareSide]) -> dict[str, CompareSide]:
        return _two_named_sides(value, "a comparison")

    @model_validator(mode="after")
    def _what_is_compared(self) -> CompareConfig:
        unused = {
            "difference": ("samples", "hits", "total"),
            "mann-whitney": ("keys", "values", "hits", "total"),
            "proportions": ("keys", "values", "samples"),
        }[self.test]
        for key in unused:
            if getattr(self, key):
                raise ValueError(f"{key}: not used by test {self.test!r}")
        if self.test == "difference" and not self.values:
            raise ValueError("values: name at least one column both sides answer (test 'difference')")
        if self.test == "mann-whitney" and not self.samples:
            raise ValueError("samples: the column of samples (or of histogram counts) is required")
        if self.test == "proportions" and not (self.hits and self.total):
            raise ValueError("hits and total: both columns are required by 'proportions'")
        if self.histogram and self.test != "mann-whitney":
            raise ValueError("histogram: only for test 'mann-whitney'")
        if self.test != "difference":
            for name, side in self.sides.items():
                if side.evidence is not None:
                    raise ValueError(
                        f"sides.{name}.evidence: a statistical test's evidence is min_samples per side"
                    )
        overlap = set(self.keys) & set(self.values)
        if overlap:
            raise ValueError(f"keys and values share {', '.join(sorted(overlap))}")
        for name, side in self.sides.items():
            minimum = evidence_minimum(side.evidence)
            if minimum is not None and minimum.column not in self.values:
                raise ValueError(
                    f"sides.{name}.evidence.column: {minimum.column!r} is not one of the compared "
                    f"values ({', '.join(self.values)})"
                )
        return self

    @property
    def names(self) -> tuple[str, str]:
        first, second = self.sides
        return first, second


#: How a reconciled column is compared: its canonical form (docs/reconcile.md).
ColumnType = Literal["text", "integer", "number", "timestamp", "boolean"]


class ReconcileSide(Frozen):
    """One side of a reconciliation: a keyed query on a ClickHouse or PostgreSQL source (SQL
    returning the key and compared columns, one row per record) or a NATS source (the
    ``messages:`` of a stream's subject), with the fewest rows it must answer."""

    source: str
    query: SuiteQuery
    min_rows: float | ParameterRef | None = None
    # this side's rows are selected by a time at most this much later than the other side's
    # for the same record (a row written with now() after its message): docs/reconcile.md
    lag: Duration = timedelta(0)

    @field_validator("min_rows")
    @classmethod
    def _sane_minimum(cls, value: float | ParameterRef | None) -> float | ParameterRef | None:
        return _sane_minimum(value, "a minimum number of rows")

    @field_validator("lag")
    @classmethod
    def _sane_lag(cls, value: timedelta) -> timedelta:
        if value < timedelta(0) or value > timedelta(days=1):
            raise ValueError("lag is at least 0s and at most 1d")
        return value


class ReconcileConfig(Frozen):
    """``reconcile:`` — two sides' records matched by key (the first side is the reference:
    a key only there is *missing*, a key only on the other side *extra*)."""

    sides: dict[str, ReconcileSide]
    keys: dict[str, ColumnType] = Field(min_length=1)
    values: dict[str, ColumnType] = {}
    # numbers are compared to this many decimal places
    decimals: int = Field(default=6, ge=0, le=9)
    # keys of each kind named in the result; hash_keys: their MD5 instead (keys that are personal data)
    sample: int = Field(default=10, ge=0, le=1000)
    hash_keys: bool = False
    # the most rows of differing buckets fetched from a side; more makes the counts lower
    # bounds (a pass is then inconclusive, a failure stays one)
    max_rows: int = Field(default=50_000, ge=100, le=1_000_000)
    # rounds of splitting differing buckets before their rows are fetched
    max_rounds: int = Field(default=6, ge=1, le=12)

    @field_validator("sides")
    @classmethod
    def _two_sides(cls, value: dict[str, ReconcileSide]) -> dict[str, ReconcileSide]:
        return _two_named_sides(value, "a reconciliation")

    @model_validator(mode="after")
    def _columns(self) -> ReconcileConfig:
        for column in [*self.keys, *self.values]:
            if not _NAME.match(column):
                raise ValueError(
                    f"column {column!r}: a column name uses a-z, 0-9 and _, starting with a letter"
                )
        overlap = set(self.keys) & set(self.values)
        if overlap:
            raise ValueError(f"keys and values share {', '.join(sorted(overlap))}")
        if all(side.lag > timedelta(0) for side in self.sides.values()):
            raise ValueError(
                "lag on both sides: give it on the side whose rows are written after the other's "
                "(the late side), its lag behind the other"
            )
        return self

    @property
    def names(self) -> tuple[str, str]:
        first, second = self.sides
        return first, second

    @property
    def late(self) -> tuple[str, timedelta] | None:
        """The side with a ``lag`` and that lag, or None (both sides cut by the same window)."""
        for name, side in self.sides.items():
            if side.lag > timedelta(0):
                return name, side.lag
        return None

    @property
    def columns(self) -> dict[str, ColumnType]:
        """Every compared column, the keys first."""
        return {**self.keys, **self.values}


class BurnRateRule(Frozen):
    """One multiwindow burn-rate rule: it fires when the error budget burns faster than
    ``factor`` times the sustainable rate over both ``long`` and ``short``."""

    name: str
    long: Duration
    short: Duration
    factor: float = Field(gt=0)

    @model_validator(mode="after")
    def _windows(self) -> BurnRateRule:
        if not _NAME.match(self.name.replace("-", "_")):
            raise ValueError(f"name {self.name!r}: use a-z, 0-9, - and _, starting with a letter")
        if self.short <= timedelta(0) or self.long <= self.short:
            raise ValueError("short must be positive and shorter than long")
        _sane_number(self.factor)
        return self


#: The SRE workbook's multiwindow, multi-burn-rate rules (a 30-day budget's page and ticket
#: alerts): 2% of the budget in 1 h, 5% in 6 h, 10% in 3 days.
DEFAULT_BURN_RATES = (
    BurnRateRule(name="page-fast", long=timedelta(hours=1), short=timedelta(minutes=5), factor=14.4),
    BurnRateRule(name="page-slow", long=timedelta(hours=6), short=timedelta(minutes=30), factor=6),
    BurnRateRule(name="ticket", long=timedelta(days=3), short=timedelta(hours=6), factor=1),
)


class SloConfig(Frozen):
    """``slo:`` — the suite's query is an SLI (``good`` and ``total`` events in a window);
    the suite's window is the SLO's (rolling) window."""

    # percent of events that must be good over the window, e.g. 99.9
    objective: float = Field(gt=0, lt=100)
    burn_rates: list[BurnRateRule] = Field(default_factory=lambda: list(DEFAULT_BURN_RATES))
    # fewer events than this in a window leaves what that window judges inconclusive
    min_events: float | ParameterRef = 100.0
    # a calendar SLO: the budget counts from the start of the current week (Monday) or month
    # in time_zone, up to the window's end; None: rolling over the suite's window
    calendar: Literal["week", "month"] | None = None
    time_zone: str = "UTC"
    # Sloth's or Pyrra's recording rules, used where they exist: PromQL of a window's error
    # ratio naming the window as $window_name (5m, 1h, 3d), e.g.
    # 'slo:sli_error:ratio_rate$window_name{sloth_id="normalize-success"}'
    recorded_error_ratio: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time_zone {value!r}: not an IANA time zone (e.g. UTC, Europe/Berlin)"
            ) from None
        return value

    def period_start(self, end: datetime) -> datetime | None:
        """Where a calendar SLO's budget starts counting for a window ending at ``end``: the
        start of the week (Monday) or month holding the instant before ``end``, in
        ``time_zone``; None for a rolling SLO."""
        if self.calendar is None:
            return None
        from zoneinfo import ZoneInfo

        local = (end - timedelta(microseconds=1)).astimezone(ZoneInfo(self.time_zone))
        day = (
            local.date() - timedelta(days=local.weekday())
            if self.calendar == "week"
            else local.date().replace(day=1)
        )
        return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(self.time_zone)).astimezone(end.tzinfo)

    @field_validator("recorded_error_ratio")
    @classmethod
    def _names_the_window(cls, value: str | None) -> str | None:
        if value is not None and "$window_name" not in value:
            raise ValueError(
                "recorded_error_ratio names its window as $window_name (e.g. ratio_rate$window_name)"
            )
        return value

    @field_validator("min_events")
    @classmethod
    def _sane_minimum(cls, value: float | ParameterRef) -> float | ParameterRef:
        return _sane_minimum(value, "a minimum number of events")

    @field_validator("burn_rates")
    @classmethod
    def _distinct(cls, value: list[BurnRateRule]) -> list[BurnRateRule]:
        twice = _repeated([rule.name for rule in value])
        if twice:
            raise ValueError(f"burn-rate rule {', '.join(twice)} named more than once")
        return value

    @property
    def budget(self) -> float:
        """The error budget: the share of events that may be bad (0.001 for 99.9%)."""
        return 1 - self.objective / 100


#: What an SLO suite judges when it lists no expectations of its own: no burn-rate rule fires
#: and budget is left over the window.
SLO_EXPECTATIONS = (
    {
        "type": "expect_column_values_to_be_between",
        "column": "firing",
        "description": "burn-rate rules firing: both windows above the factor",
        "max_value": 0,
    },
    {
        "type": "expect_column_values_to_be_between",
        "column": "budget_remaining",
        "description": "error budget left over the SLO's window",
        "min_value": 0,
    },
)


class SuiteConfig(Frozen):
    """``suites/NAME.yaml``."""

    name: str
    description: str = ""
    # one source and its query, or ``compare`` (two sides, each a source and a query)
    source: str = ""
    window: SuiteWindow
    # SQL (ClickHouse) or one PromQL expression (Prometheus) as text; a mapping for NATS
    # (streams / consumers / counts) or Prometheus (measures).
    query: SuiteQuery | None = None
    compare: CompareConfig | None = None
    reconcile: ReconcileConfig | None = None
    slo: SloConfig | None = None
    evidence: EvidenceOrNone | None = None
    # Columns that name a group in failure reports; default: the frame's non-numeric columns.
    groups: list[str] | None = None
    expectations: list[ExpectationSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _slo_expectations(cls, data: Any) -> Any:
        """An SLO suite without expectations of its own (no key, or null) judges the default
        ones; any value given is judged as given (``expectations: 0`` is refused, not replaced)."""
        if isinstance(data, dict) and data.get("slo") is not None and data.get("expectations") is None:
            return {**data, "expectations": [dict(e) for e in SLO_EXPECTATIONS]}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> SuiteConfig:
        paired = [k for k in ("compare", "reconcile") if getattr(self, k) is not None]
        if len(paired) > 1:
            raise ValueError("compare and reconcile: a suite is one kind (a comparison or a reconciliation)")
        if self.slo is not None and paired:
            raise ValueError(f"slo and {paired[0]}: a suite is one kind (an SLO reads one source's query)")
        if self.slo is not None and self.evidence is not None:
            raise ValueError("evidence: an SLO suite's minimum is slo.min_events (per window)")
        if not paired:
            if not self.source or self.query is None:
                missing = [k for k, v in (("source", self.source), ("query", self.query)) if not v]
                raise ValueError(f"missing {' and '.join(missing)} (or a compare: or reconcile: block)")
            if getattr(self.query, "messages", None) is not None:
                raise ValueError(
                    "query.messages: a NATS subject's messages are read only by a reconcile: side"
                )
        else:
            kinds = (("source", self.source), ("query", self.query), ("evidence", self.evidence))
            given = [k for k, v in kinds if v]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: a {'comparison' if self.compare else 'reconciliation'} suite names "
                    f"them per side ({paired[0]}.sides.NAME)"
                )
        if self.reconcile is not None:
            for name, side in self.reconcile.sides.items():
                query = side.query
                if not isinstance(query, str) and getattr(query, "messages", None) is None:
                    raise ValueError(
                        f"reconcile.sides.{name}.query: SQL returning the keys and values, or for a NATS "
                        "source messages: (a stream's subject)"
                    )
                messages = getattr(query, "messages", None)
                if messages is not None:
                    unread = [c for c in self.reconcile.columns if c not in messages.columns]
                    if unread:
                        raise ValueError(
                            f"reconcile.sides.{name}.query.messages.columns: no {', '.join(unread)} "
                            "(every key and value column is read from the message)"
                        )
        return self

    def units(self) -> list[tuple[str, SuiteConfig]]:
        """What is queried: ``[("", self)]``, or for a comparison or a reconciliation each side
        as a suite of its own (named ``suite.side``) with the key path its problems are
        reported under."""
        paired = self.compare if self.compare is not None else self.reconcile
        if paired is None:
            return [("", self)]
        kind = "compare" if self.compare is not None else "reconcile"
        return [
            (
                f"{kind}.sides.{name}.",
                SuiteConfig.model_construct(
                    name=f"{self.name}.{name}",
                    description=self.description,
                    source=side.source,
                    window=self.window,
                    query=side.query,
                    compare=None,
                    reconcile=None,
                    evidence=getattr(side, "evidence", None),  # a reconcile side has min_rows instead
                    groups=None,
                    expectations=self.expectations,
                ),
            )
            for name, side in paired.sides.items()
        ]

    @property
    def sources(self) -> list[str]:
        """The sources the suite reads (one, or each side's)."""
        return list(dict.fromkeys(unit.source for _, unit in self.units()))

    @property
    def source_label(self) -> str:
        """The source, or the sides' sources: ``nats vs database``."""
        paired = self.compare is not None or self.reconcile is not None
        return " vs ".join(self.sources) if paired else self.source

    def parameters(self) -> set[str]:
        """Every ``$PARAMETER`` the suite's expectations and evidence use."""
        names = set(_parameter_names([e.kwargs for e in self.expectations]))
        for _, unit in self.units():
            minimum = evidence_minimum(unit.evidence)
            if minimum is not None and isinstance(minimum.min_total, ParameterRef):
                names.add(minimum.min_total.name)
        if self.slo is not None and isinstance(self.slo.min_events, ParameterRef):
            names.add(self.slo.min_events.name)
        if self.reconcile is not None:
            for side in self.reconcile.sides.values():
                if isinstance(side.min_rows, ParameterRef):
                    names.add(side.min_rows.name)
        return names

    def query_parameters(self) -> dict[str, str]:
        """``{name:Type}`` placeholders in the SQL, name → the source's type; for a mapping
        query, the thresholds it names (a JUnit query's ``newest``); for a comparison, both
        sides'."""
        if self.compare is not None or self.reconcile is not None:
            merged: dict[str, str] = {}
            for _, unit in self.units():
                merged.update(unit.query_parameters())
            return merged
        if not isinstance(self.query, str):
            named = getattr(self.query, "query_parameters", None)
            return dict(named()) if callable(named) else {}
        from gatecheck.sources.clickhouse import sql_parameters

        return sql_parameters(self.query)


def _parameter_names(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"} and isinstance(value["$PARAMETER"], str):
            yield value["$PARAMETER"]
            return
        for item in value.values():
            yield from _parameter_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _parameter_names(item)


# --------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class Project:
    """Everything under one ``--config`` directory, loaded and cross-checked."""

    root: Path
    config: ProjectConfig
    thresholds: ThresholdsConfig
    gates: dict[str, GateConfig]
    suites: dict[str, SuiteConfig]
    config_hash: str
    files: dict[str, str] = field(default_factory=dict, repr=False)  # model name → file
    # "suite:NAME" / "gate:PHASE" of files that failed to load: already reported, so
    # references to them are not reported again as unknown.
    unparsed: frozenset[str] = frozenset()
    # notify: targets left out because a ${VAR} is unset (only `serve` sends: it refuses them)
    notify_unresolved: tuple[str, ...] = ()

    def gate(self, phase: str) -> GateConfig:
        if phase not in self.gates:
            raise ConfigError(
                f"unknown phase {phase!r}{did_you_mean(phase, self.gates)} "
                f"(known phases: {self.known_phases()})"
            )
        return self.gates[phase]

    def known_phases(self) -> str:
        """The phases in promotion order, for "known phases: …" in an error."""
        return ", ".join(gate.phase for gate in self.chain()) or "none"

    def chain(self) -> list[GateConfig]:
        """Gates in promotion order: every phase after the phases it requires."""
        order: list[GateConfig] = []
        seen: set[str] = set()

        def visit(phase: str, stack: tuple[str, ...]) -> None:
            if phase in seen or phase not in self.gates or phase in stack:
                return
            for required in self.gates[phase].requires:
                visit(required, (*stack, phase))
            seen.add(phase)
            order.append(self.gates[phase])

        for phase in self.gates:
            visit(phase, ())
        return order

    def prerequisites(self, phase: str) -> list[str]:
        """Every phase ``phase`` requires, directly or not, in promotion order."""
        needed: set[str] = set()
        pending = list(self.gate(phase).requires)
        while pending:
            name = pending.pop()
            if name not in needed and name in self.gates:
                needed.add(name)
                pending.extend(self.gates[name].requires)
        return [g.phase for g in self.chain() if g.phase in needed]

    def resolve_thresholds(self, phase: str) -> dict[str, ResolvedThreshold]:
        gate = self.gate(phase)
        return resolve_thresholds(self.thresholds, gate.environment, phase)

    def gate_digest(self, phase: str) -> str:
        """SHA-256 of what judges ``phase``'s checks: the gate's environment, window, probes
        and check entries, each suite it runs, and the threshold values those suites use as
        resolved for it — descriptions, ``requires``, soak, deadline and approval left out.
        A soak counts only evaluations with the current digest (a check added, a query or a
        threshold changed restarts it); layout, comments and other gates leave it alone."""
        gate = self.gate(phase)
        names = [ref.suite for ref in gate.checks] + [ref.suite for ref in gate.rollback]
        suites = {name: self.suites[name] for name in names if name in self.suites}
        resolved = self.resolve_thresholds(phase)
        used: set[str] = set()
        for suite in suites.values():
            used |= suite.parameters() | set(suite.query_parameters())
        judged = {
            # Defaults left out: a key a later gatecheck adds (with a default) changes no digest.
            "gate": gate.model_dump(
                mode="json",
                include={"environment", "window", "probes", "checks", "rollback"},
                exclude_defaults=True,
            ),
            "suites": {
                name: suite.model_dump(
                    mode="json",
                    exclude={"description": True, "expectations": {"__all__": {"description"}}},
                    exclude_defaults=True,
                    serialize_as_any=True,
                )
                for name, suite in suites.items()
            },
            "thresholds": {name: resolved[name].value for name in sorted(used) if name in resolved},
        }
        return digest_of(judged)
