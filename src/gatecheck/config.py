"""Configuration: ``gatecheck.yaml``, ``thresholds.yaml``, ``gates/*.yaml``, ``suites/*.yaml``.

Every file is parsed into a strict, frozen pydantic model (``extra="forbid"``). Loading a
project collects *every* problem — one line each, naming the file, the key and the bad
value — and raises one :class:`~gatecheck.errors.ConfigError` carrying all of them, so
``gatecheck validate`` can show the whole list at once.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from gatecheck.durations import Duration
from gatecheck.errors import ConfigError, did_you_mean, redact

PROJECT_FILE = "gatecheck.yaml"
THRESHOLDS_FILE = "thresholds.yaml"
GATES_DIR = "gates"
SUITES_DIR = "suites"

#: Query parameters every evaluation provides, besides resolved thresholds.
BUILTIN_PARAMETERS = ("window_start", "window_end", "as_of")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PHASE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# `{name:Type}` placeholders, ClickHouse's server-side parameter syntax.
_SQL_PARAM = re.compile(r"\{\s*([^{}:'\"\s]*)\s*:\s*([A-Za-z][^{}]*)\}")
_MAX_FILE_BYTES = 1_000_000
# libyaml's safe loader when PyYAML has it (its wheels do): ten times faster than the pure
# Python one, the same safe constructors and error classes.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_ALIASES = 50
_MAX_DEPTH = 40
#: Thresholds are exported as float gauges and JSON numbers: beyond this they lose precision.
MAX_MAGNITUDE = 1e15


def _sane_number(value: Any) -> Any:
    """A threshold, bound or minimum must be a finite number of a sane size (NaN would make
    every comparison false; 10**400 cannot become a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"must be at most {MAX_MAGNITUDE:.0e} in magnitude")
    return value


class Frozen(BaseModel):
    """Base for every configuration model: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- gatecheck.yaml


class _SourceBase(Frozen):
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
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be positive")
        return value


class ClickHouseSourceConfig(_SourceBase):
    """A ClickHouse warehouse: ``chdb://PATH`` (embedded) or ``clickhouse(s)://…``."""

    type: Literal["clickhouse"]
    password: SecretStr | None = None  # overrides the URL's password; write "${VAR}"
    schemes: ClassVar[tuple[str, ...]] = ("chdb", "clickhouse", "clickhouses")


class NatsSourceConfig(_SourceBase):
    """A NATS JetStream server. Credentials come from files or ``${VAR}`` expansion."""

    type: Literal["nats"]
    credentials_file: str | None = None  # a .creds file (JWT + nkey seed)
    nkey_seed_file: str | None = None  # a file holding an nkey seed
    token: SecretStr | None = None  # write "${NATS_TOKEN}"
    tls_ca_file: str | None = None  # CA bundle for tls:// servers
    tls_cert_file: str | None = None  # client certificate (mutual TLS)
    tls_key_file: str | None = None
    schemes: ClassVar[tuple[str, ...]] = ("nats", "tls")


class PrometheusSourceConfig(_SourceBase):
    """A Prometheus server (PromQL over its HTTP API) or a scrape endpoint."""

    type: Literal["prometheus"]
    username: str | None = None  # basic auth (or user:password@ in the URL)
    password: SecretStr | None = None  # write "${PROMETHEUS_PASSWORD}"
    bearer_token: SecretStr | None = None  # write "${PROMETHEUS_TOKEN}"
    schemes: ClassVar[tuple[str, ...]] = ("http", "https", "scrape+http", "scrape+https")


SourceConfig = Annotated[
    Union[ClickHouseSourceConfig, NatsSourceConfig, PrometheusSourceConfig],  # noqa: UP007
    Field(discriminator="type"),
]


class EnvironmentConfig(Frozen):
    sources: dict[str, SourceConfig]


class HistoryConfig(Frozen):
    url: str = Field(repr=False)


class ServiceConfig(Frozen):
    """How ``gatecheck serve`` runs: which phases, how often, where it listens."""

    interval: Duration = timedelta(minutes=5)
    listen: str = "127.0.0.1:9464"
    phases: list[str] | None = None  # default: every gate
    intervals: dict[str, Duration] = {}  # per-phase interval overrides

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("interval must be at least 1s")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("listen must be HOST:PORT, e.g. 127.0.0.1:9464")
        return value

    def interval_for(self, phase: str) -> timedelta:
        return self.intervals.get(phase, self.interval)


class ProjectConfig(Frozen):
    """``gatecheck.yaml``."""

    environments: dict[str, EnvironmentConfig] = Field(min_length=1)
    history: HistoryConfig | None = None
    service: ServiceConfig = ServiceConfig()


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

#: The thresholds DESIGN.md's table declares (their names are part of the contract): a
#: ``defaults`` entry may name one even where no suite of this project uses it.
DECLARED_THRESHOLDS = frozenset(
    {
        "unmatched_edge_rate_max", "unmatched_edges_min_evidence", "freshness_lag_max_s",
        "event_lag_p99_max_s", "clock_skew_tolerance_s", "clock_skew_rate_max",
        "rollup_parity_rel_tol", "unattributed_session_rate_max", "sessions_min_evidence",
        "fallback_events_max", "core_hot_share_min", "dlq_messages_max", "consumer_pending_max",
        "hrv_messages_min_evidence", "success_rate_min", "p95_latency_max_ms",
        "schema_failures_per_s_max", "dlq_rollback_per_min", "stream_replicas",
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


class CheckRef(Frozen):
    """One check of a gate: a suite, optionally with its own window, settle, advisory flag."""

    suite: str
    window: Duration | None = None
    settle: Duration | None = None
    required: bool = True


class RollbackRef(Frozen):
    """A rollback suite: if it fails, the verdict is ROLLBACK."""

    suite: str
    window: Duration | None = None
    settle: Duration | None = None


class Soak(Frozen):
    duration: Duration
    max_gap: Duration


class GateConfig(Frozen):
    """``gates/PHASE.yaml``."""

    phase: str
    environment: str
    description: str = ""
    requires: list[str] = []
    window: Duration | None = None
    soak: Soak | None = None
    checks: list[CheckRef] = Field(min_length=1)
    rollback: list[RollbackRef] = []

    @field_validator("phase")
    @classmethod
    def _phase_name(cls, value: str) -> str:
        if not _PHASE_NAME.match(value):
            raise ValueError("a phase name uses lowercase letters, digits and '-'")
        return value


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


class Evidence(Frozen):
    """Minimum evidence: ``sum(column)`` over the frame must reach ``min_total``."""

    column: str
    min_total: float | ParameterRef

    @field_validator("min_total")
    @classmethod
    def _sane_minimum(cls, value: float | ParameterRef) -> float | ParameterRef:
        if isinstance(value, float):
            _sane_number(value)
            if value < 0:
                raise ValueError("a minimum evidence cannot be negative")
        return value


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
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


_ARITHMETIC = re.compile(r"^[\sA-Za-z0-9_.+\-*/()]+$")


class NatsStream(Frozen):
    """A stream to describe; ``subjects`` (if given) becomes the ``expected_subjects`` column."""

    name: str
    subjects: list[str] | None = None


class NatsConsumer(Frozen):
    """A durable consumer to describe; expected values become ``expected_*`` columns."""

    stream: str
    name: str
    filter_subject: str | None = None
    ack_policy: Literal["explicit", "all", "none"] | None = None


class NatsCount(Frozen):
    """An exact count of messages in the check's window on a stream (and subject filter)."""

    name: str
    stream: str
    subject: str | None = None

    @field_validator("name")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a count name is a column name: lowercase letters, digits and _")
        return value


class NatsQuery(Frozen):
    """The ``query:`` of a suite on a NATS source (see README, "NATS suites")."""

    streams: list[NatsStream] = []
    consumers: list[NatsConsumer] = []
    counts: list[NatsCount] = []
    # Columns computed on the window row from the counts, e.g. share = a / (a + b).
    derive: dict[str, str] = {}

    @field_validator("derive")
    @classmethod
    def _arithmetic_only(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            if not _NAME.match(name):
                raise ValueError(f"derived column {name!r}: use lowercase letters, digits and _")
            if not _ARITHMETIC.match(expression):
                raise ValueError(
                    f"derived column {name!r}: only names, numbers, + - * / and parentheses are allowed"
                )
        return value

    def problems(self) -> list[str]:
        """Names a derived expression uses must be counts or earlier derived columns."""
        from gatecheck.arith import names_in

        known = {c.name for c in self.counts}
        found: list[str] = []
        if not (self.streams or self.consumers or self.counts):
            found.append("a NATS query needs at least one of streams, consumers, counts")
        for name, expression in self.derive.items():
            try:
                used = names_in(expression)
            except ValueError as exc:
                found.append(f"derive.{name}: {exc}")
                continue
            unknown = sorted(used - known)
            if unknown:
                found.append(
                    f"derive.{name}: unknown name(s) {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(known)) or 'none'})"
                )
            known.add(name)
        return found


#: ``$name`` placeholders a PromQL query may use (see README, "Prometheus suites").
PROMQL_PLACEHOLDERS = ("window", "window_s", "window_start", "window_end", "as_of", "settle")
_PROMQL_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def promql_problems(promql: str) -> list[str]:
    unknown = sorted({m.group(1) for m in _PROMQL_PLACEHOLDER.finditer(promql)} - set(PROMQL_PLACEHOLDERS))
    return [
        f"unknown placeholder ${name} (known: {', '.join('$' + p for p in PROMQL_PLACEHOLDERS)})"
        for name in unknown
    ]


class PromQuery(Frozen):
    """The ``query:`` of a suite on a Prometheus source: named PromQL measures, one column each."""

    measures: dict[str, str] = Field(min_length=1)

    def problems(self) -> list[str]:
        found = []
        for name, promql in self.measures.items():
            if not _NAME.match(name):
                found.append(f"measures.{name}: a measure is a column name: lowercase letters, digits and _")
            found.extend(f"measures.{name}: {p}" for p in promql_problems(promql))
        return found


def _query_kind(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict) and "measures" in value:
        return "prom"
    return "nats"


class SuiteConfig(Frozen):
    """``suites/NAME.yaml``."""

    name: str
    description: str = ""
    source: str
    window: SuiteWindow
    # SQL (ClickHouse) or one PromQL expression (Prometheus) as text; a mapping for NATS
    # (streams / consumers / counts) or Prometheus (measures).
    query: Annotated[
        Annotated[str, Tag("text")] | Annotated[NatsQuery, Tag("nats")] | Annotated[PromQuery, Tag("prom")],
        Discriminator(_query_kind),
    ]
    evidence: Evidence | None = None
    # Columns that name a group in failure reports; default: the frame's non-numeric columns.
    groups: list[str] | None = None
    expectations: list[ExpectationSpec] = Field(min_length=1)

    def parameters(self) -> set[str]:
        """Every ``$PARAMETER`` the suite's expectations and evidence use."""
        names = set(_parameter_names([e.kwargs for e in self.expectations]))
        if self.evidence is not None and isinstance(self.evidence.min_total, ParameterRef):
            names.add(self.evidence.min_total.name)
        return names

    def query_parameters(self) -> dict[str, str]:
        """``{name:Type}`` placeholders in the SQL, name → ClickHouse type."""
        if not isinstance(self.query, str):
            return {}
        return {m.group(1): m.group(2).strip() for m in _SQL_PARAM.finditer(self.query)}


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

    def gate(self, phase: str) -> GateConfig:
        if phase not in self.gates:
            known = ", ".join(sorted(self.gates)) or "none"
            raise ConfigError(f"unknown phase {phase!r} (known phases: {known})")
        return self.gates[phase]

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


def expand_env(value: Any, environ: Mapping[str, str], where: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML tree.

    Expansion happens after parsing, so a value from the environment can never change the
    structure of the file.
    """
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and environ[name] != "":
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set and has no default")

        return _ENV_REF.sub(substitute, value)
    # `where` is "file" at the top, then "file: key.path": the file is always followed by ": ".
    inside = ": " in where
    if isinstance(value, dict):
        return {
            k: expand_env(v, environ, f"{where}.{k}" if inside else f"{where}: {k}") for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            expand_env(v, environ, f"{where}[{i}]" if inside else f"{where}: [{i}]")
            for i, v in enumerate(value)
        ]
    return value


def _read_yaml(path: Path, label: str) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read file ({exc.strerror})") from exc
    if size > _MAX_FILE_BYTES:
        raise ConfigError(f"{label}: file is {size} bytes; the limit is {_MAX_FILE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read file ({exc})") from exc
    try:
        # Aliases can multiply a small file into an exponential tree ("billion laughs"):
        # configuration needs few, so more than _MAX_ALIASES is refused before loading.
        # Deep nesting would exhaust the recursive composer: refused before loading too.
        aliases = depth = 0
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > _MAX_DEPTH:
                    mark = event.start_mark
                    where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
                    raise ConfigError(f"{label}:{where} nested more than {_MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        if aliases > _MAX_ALIASES:
            raise ConfigError(f"{label}: {aliases} YAML aliases (*name); at most {_MAX_ALIASES} are allowed")
        data = yaml.load(text, Loader=_LOADER)  # a safe loader (libyaml or PyYAML)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{label}:{where}: invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML: {exc}") from exc
    except ValueError as exc:  # Python refuses to read an integer of more than 4300 digits
        reason = "a number with thousands of digits" if "digits" in str(exc) else str(exc)
        raise ConfigError(f"{label}: invalid YAML value: {reason}") from exc
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError(f"{label}: expected a mapping at the top level, got {kind}")
    return data


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _describe_location(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, list[str] | None]:
    """Render a pydantic error location as a dotted key path; for the last model on the
    path, list its allowed keys (so an unknown key can say what would have been valid)."""
    parts: list[str] = []
    tp: Any = model
    allowed: list[str] | None = None
    for index, part in enumerate(loc):
        tp = _unwrap(tp)
        if _is_model(tp):
            allowed = [f.alias or name for name, f in tp.model_fields.items()]
            fld = tp.model_fields.get(part) if isinstance(part, str) else None
            if fld is None and isinstance(part, str):
                fld = next((f for f in tp.model_fields.values() if f.alias == part), None)
            parts.append(str(part))
            tp = fld.annotation if fld is not None else None
            if index == len(loc) - 1:
                return _join_path(parts), allowed
            continue
        origin = typing.get_origin(tp)
        if origin is dict:
            parts.append(str(part))
            tp = typing.get_args(tp)[1]
        elif origin is list:
            parts.append(f"[{part}]")
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            # A discriminated union puts the tag into the location; do not print it.
            match = None
            for member in typing.get_args(tp):
                # A callable-discriminated union tags its members: Annotated[X, Tag("x")].
                if typing.get_origin(member) is Annotated and any(
                    isinstance(m, Tag) and m.tag == part for m in typing.get_args(member)[1:]
                ):
                    match = _unwrap(member)
                    break
                member = _unwrap(member)
                if _is_model(member) and "type" in member.model_fields:
                    literal = typing.get_args(member.model_fields["type"].annotation)
                    if part in literal:
                        match = member
            if match is not None:
                tp = match
            elif isinstance(part, str) and not part.startswith(("float", "int", "str", "bool")):
                parts.append(part)
                tp = None
        else:
            parts.append(str(part))
            tp = None
    return _join_path(parts), None


_PLAIN_KEY = re.compile(r"^(?:[A-Za-z0-9_$][A-Za-z0-9_$\-]*|\[\d+\])$")


def _join_path(parts: list[str]) -> str:
    # A key that is not a plain name (empty, spaces, dots, newlines…) is quoted.
    return ".".join(p if _PLAIN_KEY.match(p) else repr(p) for p in parts).replace(".[", "[")


_SECRET_KEYS = ("password", "token", "secret")


def _format_validation_error(label: str, model: type[BaseModel], exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        path, allowed = _describe_location(model, tuple(error["loc"]))
        where = f"{label}: {path}" if path else label
        if error["type"] == "extra_forbidden":
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            problems.append(f"{where}: unknown key{hint}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            problems.append(f"{where}: required key is missing")
            continue
        shown = error.get("input")
        if any(s in path.lower() for s in _SECRET_KEYS):
            problems.append(f"{where}: {message}")
        else:
            text = redact(repr(shown))
            text = text if len(text) <= 60 else text[:57] + "..."
            problems.append(f"{where}: {message} (got {text})")
    return problems


def _parse(label: str, model: type[BaseModel], data: Any, problems: list[str]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_format_validation_error(label, model, exc))
        return None


def load_project(
    root: Path | str, environ: Mapping[str, str] | None = None, expectations: bool = False
) -> Project:
    """Load and cross-check a project directory; raise one ConfigError listing every problem.

    Every file is read and checked even when another one is broken, so one run lists every
    problem. ``expectations=True`` also has Great Expectations check every expectation's type
    and kwargs (it imports GE, which takes seconds: ``validate``, ``run`` and ``serve`` ask)."""
    root = Path(root)
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    if not (root / PROJECT_FILE).is_file():
        raise ConfigError(f"{root / PROJECT_FILE}: not found (--config names the directory holding it)")

    def load(path: Path, label: str, model: type[BaseModel], expand: bool) -> Any:
        try:
            data = _read_yaml(path, label)
            if expand:
                data = expand_env(data, environ, label)
            return _parse(label, model, data, problems)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except RecursionError:  # an alias inside its own anchor: a: &a [*a]
            problems.append(f"{label}: a YAML alias refers to itself (recursive anchor)")
        return None

    config = load(root / PROJECT_FILE, PROJECT_FILE, ProjectConfig, expand=True)
    thresholds_path = root / THRESHOLDS_FILE
    if thresholds_path.is_file():
        thresholds = load(thresholds_path, THRESHOLDS_FILE, ThresholdsConfig, expand=True)
    else:
        thresholds = ThresholdsConfig()

    files: dict[str, str] = {}
    unparsed: set[str] = set()

    def load_each(directory: str, model: type[BaseModel], kind: str, key: str) -> dict[str, Any]:
        """Load every YAML file of a directory; the ``key`` field must equal the file name."""
        found: dict[str, Any] = {}
        for path in sorted((root / directory).glob("*.y*ml")):
            label = f"{directory}/{path.name}"
            item = load(path, label, model, expand=False)
            if item is None:
                unparsed.add(f"{kind}:{path.stem}")
                continue
            name = getattr(item, key)
            if name != path.stem:
                problems.append(f"{label}: {key}: {name!r} must match the file name {path.stem!r}")
                unparsed.add(f"{kind}:{path.stem}")
            elif name in found:
                problems.append(f"{label}: {kind} {name!r} is defined twice")
            else:
                found[name] = item
                files[f"{kind}:{name}"] = label
        return found

    gates: dict[str, GateConfig] = load_each(GATES_DIR, GateConfig, "gate", "phase")
    suites: dict[str, SuiteConfig] = load_each(SUITES_DIR, SuiteConfig, "suite", "name")

    if expectations:
        from gatecheck.runner import expectation_problems

        for suite in suites.values():
            label = files[f"suite:{suite.name}"]
            for index, spec in enumerate(suite.expectations):
                problems.extend(f"{label}: expectations[{index}]: {p}" for p in expectation_problems(spec))

    # A broken gatecheck.yaml or thresholds.yaml still lets the other files be cross-checked:
    # what depends on the broken file is skipped (it would only repeat its problem).
    if config is None:
        unparsed.add("project")
    if thresholds is None:
        unparsed.add("thresholds")
    project = Project(
        root=root,
        config=config if config is not None else ProjectConfig.model_construct(environments={}),
        thresholds=thresholds if thresholds is not None else ThresholdsConfig(),
        gates=gates,
        suites=suites,
        config_hash=config_hash(root),
        files=files,
        unparsed=frozenset(unparsed),
    )
    problems.extend(cross_check(project))
    if problems:
        raise ConfigError(problems[0], problems)
    return project


def config_hash(root: Path) -> str:
    """SHA-256 over every configuration file (as written, before variable expansion)."""
    digest = hashlib.sha256()
    paths = [root / PROJECT_FILE, root / THRESHOLDS_FILE]
    paths += sorted((root / GATES_DIR).glob("*.y*ml")) + sorted((root / SUITES_DIR).glob("*.y*ml"))
    for path in paths:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _suite_refs(gate: GateConfig) -> Iterable[tuple[str, str]]:
    for i, check in enumerate(gate.checks):
        yield f"checks[{i}].suite", check.suite
    for i, ref in enumerate(gate.rollback):
        yield f"rollback[{i}].suite", ref.suite


def cross_check(project: Project) -> list[str]:
    """Problems that span files: unknown names, unresolved parameters, bad SQL."""
    from gatecheck.sources import SOURCE_TYPES  # the registry of source kinds and query forms

    problems: list[str] = []
    unresolved: dict[tuple[str, str, str], list[str]] = {}
    unknown_sources: dict[tuple[str, str], dict[str, list[str]]] = {}
    scrape: dict[tuple[str, str, str, str], set[str]] = {}
    config, thresholds = project.config, project.thresholds
    environments = sorted(config.environments)
    if "project" in project.unparsed:
        # gatecheck.yaml did not parse: only what needs no environment can be checked.
        for suite in project.suites.values():
            label = project.files[f"suite:{suite.name}"]
            if not isinstance(suite.query, str):
                problems.extend(f"{label}: query: {p}" for p in suite.query.problems())
        if "thresholds" not in project.unparsed:
            problems.extend(threshold_problems(project))
        return list(dict.fromkeys(problems))

    for name, _value in thresholds.defaults.items():
        if not _NAME.match(name):
            problems.append(f"{THRESHOLDS_FILE}: defaults.{name}: a threshold name uses a-z, 0-9 and _")
    for env in thresholds.environments:
        if env not in config.environments:
            problems.append(
                f"{THRESHOLDS_FILE}: environments.{env}: unknown environment "
                f"(known: {', '.join(environments)})"
            )
    for phase in thresholds.phases:
        if phase not in project.gates:
            problems.append(
                f"{THRESHOLDS_FILE}: phases.{phase}: unknown phase "
                f"(known: {', '.join(sorted(project.gates))})"
            )

    service = config.service
    for key, phases in (("phases", service.phases or []), ("intervals", list(service.intervals))):
        for phase in phases:
            if phase not in project.gates:
                problems.append(
                    f"{PROJECT_FILE}: service.{key}: unknown phase {phase!r} "
                    f"(known: {', '.join(sorted(project.gates))})"
                )
    for suite in project.suites.values():
        label = project.files[f"suite:{suite.name}"]
        if not isinstance(suite.query, str):
            problems.extend(f"{label}: query: {p}" for p in suite.query.problems())

    for phase, gate in project.gates.items():
        label = project.files[f"gate:{phase}"]
        if gate.environment not in config.environments:
            problems.append(
                f"{label}: environment: unknown environment {gate.environment!r} "
                f"(known: {', '.join(environments)})"
            )
            continue
        for i, required in enumerate(gate.requires):
            if required not in project.gates:
                if f"gate:{required}" in project.unparsed:
                    continue
                problems.append(
                    f"{label}: requires[{i}]: unknown phase {required!r} "
                    f"(known: {', '.join(sorted(project.gates))})"
                )
            elif required == phase:
                problems.append(f"{label}: requires[{i}]: a phase cannot require itself")
        sources = config.environments[gate.environment].sources
        resolved = resolve_thresholds(thresholds, gate.environment, phase)
        for key, suite_name in _suite_refs(gate):
            found = project.suites.get(suite_name)
            if found is None:
                if f"suite:{suite_name}" in project.unparsed:
                    continue
                problems.append(
                    f"{label}: {key}: unknown suite {suite_name!r} "
                    f"(known: {', '.join(sorted(project.suites)) or 'none'})"
                )
                continue
            suite = found
            suite_label = project.files[f"suite:{suite_name}"]
            if suite.source not in sources:
                unknown_sources.setdefault((suite_label, suite.source), {})[gate.environment] = sorted(
                    sources
                )
            else:
                source_type = type(sources[suite.source])
                source_kind = SOURCE_TYPES[source_type]
                if not isinstance(suite.query, source_kind.query_types):
                    problems.append(
                        f"{suite_label}: query: source {suite.source!r} is a {source_kind.label} source, "
                        f"so the query must be {source_kind.query_help}"
                    )
                elif isinstance(suite.query, str):
                    text_problems = sql_problems if source_type is ClickHouseSourceConfig else promql_problems
                    problems.extend(f"{suite_label}: query: {p}" for p in text_problems(suite.query))
                if source_type is PrometheusSourceConfig and sources[suite.source].url.startswith("scrape+"):
                    for where, problem in _scrape_problems(suite):
                        scrape.setdefault((suite_label, where, suite.source, problem), set()).add(
                            gate.environment
                        )
            if "thresholds" in project.unparsed:
                continue  # thresholds.yaml did not parse: no parameter can be judged missing
            for parameter in sorted(suite.parameters()):
                if parameter not in resolved:
                    unresolved.setdefault((suite_label, "$PARAMETER", parameter), []).append(phase)
            for parameter in sorted(suite.query_parameters()):
                if parameter in BUILTIN_PARAMETERS or not _NAME.match(parameter):
                    continue  # bad names are reported once by sql_problems
                if parameter not in resolved:
                    unresolved.setdefault((suite_label, "query", parameter), []).append(phase)
    for (suite_label, where, source, problem), scrape_envs in scrape.items():
        names = ", ".join(repr(e) for e in sorted(scrape_envs))
        plural = "environments" if len(scrape_envs) > 1 else "environment"
        problems.append(
            f"{suite_label}: {where}: source {source!r} is a scrape source in {plural} {names}: {problem}"
        )
    for (suite_label, source), known_by_env in unknown_sources.items():
        envs = ", ".join(repr(e) for e in sorted(known_by_env))
        known = sorted({name for names in known_by_env.values() for name in names})
        plural = "environments" if len(known_by_env) > 1 else "environment"
        problems.append(
            f"{suite_label}: source: unknown source {source!r} in {plural} {envs} "
            f"(known: {', '.join(known) or 'none'})"
        )
    # One line per suite and parameter, naming every phase that lacks a value.
    for (suite_label, kind, parameter), phases in unresolved.items():
        names = ", ".join(repr(p) for p in sorted(phases))
        plural = "phases" if len(phases) > 1 else "phase"
        if kind == "$PARAMETER":
            problems.append(
                f"{suite_label}: $PARAMETER {parameter!r} has no value in {THRESHOLDS_FILE} "
                f"for {plural} {names}"
            )
        else:
            problems.append(
                f"{suite_label}: query: parameter {{{parameter}}} is neither one of "
                f"{', '.join(BUILTIN_PARAMETERS)} nor a threshold with a value for {plural} {names}"
            )
    if "thresholds" not in project.unparsed:
        problems.extend(threshold_problems(project))
    # Duplicate lines arise when several gates use one broken suite.
    return list(dict.fromkeys(problems))


# --------------------------------------------------------------------------- thresholds in use

#: The kind of value an expectation kwarg takes (GE's own types are looser: a bound may be a
#: string, which compares as text and would loosen a gate silently). Others: any.
_KWARG_KINDS = {
    **dict.fromkeys(("min_value", "max_value", "value", "mostly", "threshold", "tolerance"), "number"),
    **dict.fromkeys(("value_set", "values"), "list"),
    **dict.fromkeys(("strict_min", "strict_max"), "boolean"),
}
_SQL_NUMBER = re.compile(r"^(?:Nullable\()?\s*(?:U?Int\d+|Float\d+|Decimal)", re.I)
_SQL_TEXT = re.compile(r"^(?:Nullable\()?\s*(?:String|LowCardinality\(String\))", re.I)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _kind_problem(kind: str, value: Any) -> str | None:
    """Why ``value`` cannot be used as ``kind`` (number, list, boolean, text), or None."""
    if kind == "number" and not _is_number(value):
        hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) and "e" in value else ""
        return f"must be a finite number{hint}"
    if kind == "non-negative number" and (not _is_number(value) or value < 0):
        return "must be a finite number, at least 0"
    if kind == "list" and not isinstance(value, list):
        return "must be a list"
    if kind == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    if kind == "text" and not isinstance(value, str):
        return "must be text"
    return None


def threshold_uses(suite: SuiteConfig) -> Iterator[tuple[str, str, str]]:
    """Every use of a threshold by ``suite``: (threshold name, where it is used, the kind of
    value that use needs: number, non-negative number, list, boolean, text or any)."""
    for index, spec in enumerate(suite.expectations):
        for kwarg, value in spec.kwargs.items():
            # The whole kwarg is the parameter: its value must fit the kwarg. (Nested in a
            # list or mapping, GE takes it as it is.)
            whole = isinstance(value, dict) and set(value) == {"$PARAMETER"}
            kind = _KWARG_KINDS.get(kwarg, "any") if whole else "any"
            for name in _parameter_names(value):
                yield name, f"expectations[{index}] ({spec.type}) as {kwarg}", kind
    if suite.evidence is not None and isinstance(suite.evidence.min_total, ParameterRef):
        yield suite.evidence.min_total.name, "evidence.min_total", "non-negative number"
    for name, sql_type in suite.query_parameters().items():
        if name in BUILTIN_PARAMETERS or not _NAME.match(name):
            continue
        if _SQL_NUMBER.match(sql_type):
            kind = "number"
        elif _SQL_TEXT.match(sql_type):
            kind = "text"
        elif sql_type.strip().lower() == "bool":
            kind = "boolean"
        else:
            kind = "any"
        yield name, f"query parameter {{{name}:{sql_type}}}", kind


def threshold_problems(project: Project) -> list[str]:
    """Thresholds that nothing uses, and thresholds that do not fit where they are used.

    A name no suite uses would be ignored, and the gate judged by another value than the one
    written (a typo in a phase override falls back to the default): every key under
    ``defaults`` must be used by some suite (or be one DESIGN.md declares), every key under
    ``environments.E`` / ``phases.P`` by a suite that E's gates / gate P run. A value must fit
    its use (a number for a bound, a list for a value_set) in every phase that runs it.
    """
    problems: list[str] = []
    thresholds = project.thresholds
    uses = {name: list(threshold_uses(suite)) for name, suite in project.suites.items()}
    used_anywhere = {threshold for found in uses.values() for threshold, _, _ in found}

    def used_by(gates: Iterable[GateConfig]) -> set[str]:
        names: set[str] = set()
        for gate in gates:
            for _, suite in _suite_refs(gate):
                names.update(threshold for threshold, _, _ in uses.get(suite, []))
        return names

    known = used_anywhere | DECLARED_THRESHOLDS

    def unknown(key: str, name: str) -> str:
        return f"{THRESHOLDS_FILE}: {key}: no suite uses a threshold of this name{did_you_mean(name, known)}"

    def files_of(gates: list[GateConfig]) -> str:
        return ", ".join(project.files.get(f"gate:{g.phase}", g.phase) for g in gates)

    # Unparsed suites may use anything: do not report names they might have used.
    complete = not any(u.startswith("suite:") for u in project.unparsed)
    for name in thresholds.defaults:
        if complete and name not in known:
            problems.append(unknown(f"defaults.{name}", name))
    layers: list[tuple[str, str, Mapping[str, Any], list[GateConfig]]] = []

    for env, values in thresholds.environments.items():
        gates = [g for g in project.gates.values() if g.environment == env]
        whose = f"the gates of environment {env!r} ({files_of(gates)})"
        layers.append((f"environments.{env}", whose, values, gates))
    for phase, values in thresholds.phases.items():
        gate = project.gates.get(phase)
        gates = [gate] if gate else []
        layers.append((f"phases.{phase}", f"gate {phase!r} ({files_of(gates)})", values, gates))
    for prefix, whose, layer, gates in layers:
        if not gates or not complete:
            continue  # an unknown environment or phase is reported on its own
        used = used_by(gates)
        for name in layer:
            if name in used:
                continue
            if name in known:
                problems.append(
                    f"{THRESHOLDS_FILE}: {prefix}.{name}: no suite of {whose} uses this threshold, "
                    "so this value would change nothing"
                )
            else:
                problems.append(unknown(f"{prefix}.{name}", name))

    # Fit: one line per (value's key, suite, use), naming the phases that would use it.
    misfits: dict[tuple[str, str, str, str], list[str]] = {}
    for phase, gate in project.gates.items():
        resolved = resolve_thresholds(thresholds, gate.environment, phase)
        for _, suite_name in _suite_refs(gate):
            for name, where, kind in uses.get(suite_name, []):
                found = resolved.get(name)
                if found is None or kind == "any":
                    continue
                problem = _kind_problem(kind, found.value)
                if problem is not None:
                    shown = redact(repr(found.value))
                    shown = shown if len(shown) <= 40 else shown[:37] + "..."
                    suite_label = project.files.get(f"suite:{suite_name}", f"suites/{suite_name}.yaml")
                    key = (f"{found.key}: {shown} {problem}", suite_label, where, kind)
                    misfits.setdefault(key, []).append(phase)
    for (what, suite_label, where, _), phases in misfits.items():
        plural = "phases" if len(phases) > 1 else "phase"
        problems.append(
            f"{what}: {suite_label} uses it in {where} (for {plural} {', '.join(sorted(phases))})"
        )
    return problems


def _scrape_problems(suite: SuiteConfig) -> list[tuple[str, str]]:
    """(key, problem) for PromQL a scrape source (one snapshot) cannot answer."""
    from gatecheck.sources.scrape import scrape_problems

    measures = suite.query.measures if isinstance(suite.query, PromQuery) else {"value": suite.query}
    found: list[tuple[str, str]] = []
    for measure, promql in measures.items():
        if isinstance(promql, str):
            where = f"query.measures.{measure}" if isinstance(suite.query, PromQuery) else "query"
            found.extend((where, p) for p in scrape_problems(promql))
    return found


_STATEMENT_START = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(\w+)", re.S)


def sql_problems(sql: str) -> list[str]:
    """Static checks of a suite's SQL: a read-only statement, well-formed parameters. A second
    statement is refused by the engine itself: the source runs the SQL as the subquery of
    ``SELECT * FROM (…)``, where anything after a ``;`` is a syntax error."""
    problems: list[str] = []
    first = _STATEMENT_START.match(sql)
    if first is None or first.group(1).upper() not in ("SELECT", "WITH"):
        word = first.group(1) if first else "nothing"
        problems.append(f"must be a single SELECT (or WITH … SELECT) statement, starts with {word!r}")
    for match in _SQL_PARAM.finditer(sql):
        name = match.group(1)
        if not _NAME.match(name) and not name.startswith(("'", '"')):
            problems.append(
                f"bad parameter name {{{name}:{match.group(2)}}}: use lowercase letters, "
                "digits and _ (e.g. {window_start:DateTime64(3)})"
            )
    return problems
