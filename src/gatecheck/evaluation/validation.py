"""Validate a suite's aggregate frame with Great Expectations 1.x and judge the evidence.

GE runs in an ephemeral context owned by a :class:`Validator` (one per engine; nothing
written to disk, progress bars and analytics off) with a pandas datasource that takes each
query's frame as a batch. Suite parameters (``{$PARAMETER: name}``) are GE's own; their
values come from thresholds.yaml.

Why one module of ~1,110 lines: everything that touches Great Expectations is here — the
context, expectation building and checking, evidence, frames and their conversion — so
nothing else imports GE.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from numbers import Number
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from gatecheck._values import document_time, observed_number, shown
from gatecheck.config import ExpectationSpec, ParameterRef, ResolvedThreshold, SuiteConfig
from gatecheck.config.models import evidence_minimum
from gatecheck.errors import did_you_mean, one_line
from gatecheck.results import (
    EvidenceResult,
    ExpectationResult,
    FailingGroup,
    Outcome,
    Scalar,
    Threshold,
)

_BOUNDS = {"max_value": "max", "min_value": "min"}


def _import_ge() -> Any:
    """Great Expectations (its analytics are off in the context's own configuration, below:
    nothing of this process's environment is changed; what it imports that gatecheck never
    uses runs on first use: :mod:`gatecheck.evaluation.ge`)."""
    from gatecheck.evaluation.ge import gx

    return gx


class Validator:
    """One Great Expectations ephemeral context with a pandas datasource that takes each
    query's frame as a batch. An engine owns one and uses it from its validation thread only;
    building it (after GE's import) takes milliseconds, nothing is written to disk."""

    def __init__(self) -> None:
        self._built: tuple[Any, Any] | None = None
        # A suite's expectations, built once: (id of the SuiteConfig, index) → (the config, the
        # expectation or why it cannot be built), and their GE suite per set of indices. The
        # config is kept so its id cannot be reused by another.
        self._expectations: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._suites: dict[tuple[int, tuple[int, ...]], tuple[Any, Any]] = {}

    def expectation(self, suite: SuiteConfig, index: int) -> Any:
        """The GE expectation of ``suite.expectations[index]``, or the exception building it
        raised (built once)."""
        key = (id(suite), index)
        found = self._expectations.get(key)
        if found is None or found[0] is not suite:
            try:
                made: Any = _build(suite.expectations[index], index)
            except Exception as exc:
                made = exc
            found = (suite, made)
            self._expectations[key] = found
        return found[1]

    def expectation_suite(self, suite: SuiteConfig, built: dict[int, Any]) -> Any:
        """The GE suite of ``suite``'s expectations at the indices of ``built`` (built once
        per suite and set of indices; the thresholds travel with each validation)."""
        gx, _ = self.context()
        key = (id(suite), tuple(sorted(built)))
        found = self._suites.get(key)
        if found is None or found[0] is not suite:
            found = (suite, gx.ExpectationSuite(name=suite.name, expectations=list(built.values())))
            self._suites[key] = found
        return found[1]

    def context(self) -> tuple[Any, Any]:
        """(the ``great_expectations`` module, the batch definition), built on first use."""
        if self._built is None:
            gx = _import_ge()
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            # GE's default ephemeral context creates a temporary data-docs directory; this one
            # keeps everything in memory and writes nothing.
            project_config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                analytics_enabled=False,
            )
            context = gx.get_context(mode="ephemeral", project_config=project_config)
            asset = context.data_sources.add_pandas("gatecheck").add_dataframe_asset("aggregates")
            self._built = (gx, asset.add_batch_definition_whole_dataframe("frame"))
        return self._built


def warm_up(validator: Validator | None = None) -> None:
    """Import Great Expectations and build ``validator``'s context now (the import takes seconds)."""
    if validator is not None:
        validator.context()
    else:
        _import_ge()


def expectation_problems(spec: ExpectationSpec) -> list[str]:
    """Why Great Expectations would not accept this expectation (unknown type, unknown or
    ill-typed kwargs): one line each, ``KEY: what is wrong``, or an empty list."""
    try:
        _build(spec)
    except UnknownExpectation as exc:
        return [str(exc)]
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            return [_exception_text(exc)]
        by_key: dict[str, list[str]] = {}
        for error in errors():
            loc = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
            message = str(error.get("msg", "invalid"))
            if error.get("type") == "value_error.extra":
                message = "unknown key for this expectation"
            by_key.setdefault(loc, []).append(message)
        lines = []
        for key, messages in by_key.items():
            # GE accepts a value or a {$PARAMETER} mapping: "not a valid dict" is noise
            # beside the real complaint about the value.
            kept = [m for m in messages if m != "value is not a valid dict"] or messages
            lines.append(f"{key}: {'; '.join(dict.fromkeys(kept))}" if key else "; ".join(kept))
        return [_exception_text(Exception(line)) for line in lines] or [_exception_text(exc)]
    return []


class UnknownExpectation(ValueError):
    """The expectation type is not one Great Expectations knows."""


_INDEX = "gatecheck_index"


def _build(spec: ExpectationSpec, index: int = 0) -> Any:
    _import_ge()
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        cls = get_expectation_impl(spec.type)
    except Exception as exc:
        from great_expectations.expectations.registry import list_registered_expectation_implementations

        hint = did_you_mean(spec.type, list_registered_expectation_implementations())
        raise UnknownExpectation(f"unknown Great Expectations expectation type {spec.type!r}{hint}") from exc
    kwargs = spec.kwargs
    # GE does not keep the suite's order in its results; the index in meta pairs them up.
    meta = {**(kwargs.pop("meta", None) or {}), _INDEX: index}
    return cls(**kwargs, meta=meta)


#: Great Expectations' words that are Python's, as a suite's author reads them.
_GE_WORDS = (
    (re.compile(r"(\w+) and (\w+) cannot both be None"), r"give \1 or \2 (or both)"),
    (re.compile(r"\bNone\b"), "null"),
    (re.compile(r"\bTrue\b"), "true"),
    (re.compile(r"\bFalse\b"), "false"),
)


def _exception_text(exc: BaseException) -> str:
    """Great Expectations' message (often pretty-printed over lines) as one line, at most 300
    characters, escaped like every other problem line (:func:`gatecheck.errors.one_line`), in
    the words of the suite's YAML (``null``, ``true``), not Python's."""
    text = " ".join(str(exc).split())
    for pattern, words in _GE_WORDS:
        text = pattern.sub(words, text)
    return one_line(text[:300]) if text else type(exc).__name__


def _severity(failure: FailingGroup, bound: str | None) -> tuple[Any, ...]:
    """A failing group's place in its list: the worst first — the highest observed value past
    a maximum, the lowest past a minimum — then by group (a value that is not a number, or a
    rule without a side, by group alone). A verdict lists the first 100: the worst of them."""
    value = observed_number(failure.observed_value) if not isinstance(failure.observed_value, bool) else None
    if value is None or bound not in ("max", "min"):
        rank: tuple[Any, ...] = (1, 0.0)
    else:
        rank = (0, -value if bound == "max" else value)
    return (*rank, sorted(failure.group.items()), str(failure.observed_value))


def _scalar(value: Any) -> Scalar:
    """JSON-safe, deterministic form of a value from a frame."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 2**53:
            return int(value)  # counts come back as floats when a column has NULLs
        return round(value, 9)
    if isinstance(value, datetime | pd.Timestamp):
        return document_time(pd.Timestamp(value).to_pydatetime())
    if isinstance(value, bool | int | str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _group_label(value: Any) -> str:
    found = _scalar(value)
    return "" if found is None else str(found)


#: The forms a group's value and an observed value take in results (public for the gate).
group_label = _group_label
scalar = _scalar


def group_columns(suite: SuiteConfig, frame: pd.DataFrame) -> list[str]:
    if suite.groups is not None:
        return [c for c in suite.groups if c in frame.columns]
    if suite.compare is not None:  # a comparison's groups: its keys and which side has them
        if suite.compare.test != "difference":
            return []
        return [c for c in [*suite.compare.keys, "present"] if c in frame.columns]
    # by the frame's dtypes: taking each column as a Series costs ~0.1 ms, times every step
    return [
        c
        for c, dtype in zip(frame.columns, frame.dtypes, strict=True)
        if not pd.api.types.is_numeric_dtype(dtype)
    ]


def _listed(values: list[Any]) -> str:
    """A value_set as reports show it: ``file, memory``; the empty text as ``""``."""
    return ", ".join('""' if v == "" else shown(_scalar(v)) for v in values)


def _threshold(
    kwarg: str, value: Any, thresholds: Mapping[str, ResolvedThreshold], suite: str
) -> Threshold | None:
    bound = _BOUNDS.get(kwarg)
    if kwarg == "value_set" and isinstance(value, list):
        return Threshold(
            name="value_set",
            value=_listed(value),
            provenance="suite",
            key=f"suites/{suite}.yaml: expectations.value_set",
        )
    if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
        resolved = thresholds[value["$PARAMETER"]]
        return Threshold(
            name=resolved.name,
            # a list is a value_set from thresholds.yaml, shown like one written in the suite
            value=_listed(resolved.value) if isinstance(resolved.value, list) else resolved.value,
            bound=bound,  # type: ignore[arg-type]
            provenance=resolved.provenance,
            key=resolved.key,
        )
    if bound is not None and value is not None:
        return Threshold(
            name=kwarg,
            value=_scalar(value),
            bound=bound,  # type: ignore[arg-type]
            provenance="suite",
            key=f"suites/{suite}.yaml: expectations.{kwarg}",
        )
    return None


def judge_evidence(
    suite: SuiteConfig, frame: pd.DataFrame, thresholds: Mapping[str, ResolvedThreshold]
) -> EvidenceResult | str | None:
    """Minimum evidence: an EvidenceResult, an error string (column missing), or None."""
    if suite.compare is not None:
        return _compare_evidence(suite, frame, thresholds)
    if suite.reconcile is not None:
        return _reconcile_evidence(suite, frame, thresholds)
    evidence = evidence_minimum(suite.evidence)
    if evidence is None:
        return None
    key = f"suites/{suite.name}.yaml: evidence.min_total"
    return _evidence(evidence, frame, evidence.column, thresholds, key)


def _compare_evidence(
    suite: SuiteConfig, frame: pd.DataFrame, thresholds: Mapping[str, ResolvedThreshold]
) -> EvidenceResult | str | None:
    """A comparison's evidence: each side's own minimum over its column in the joined frame
    (``<side>_<column>``), or for a statistical test the smaller side's sample count against
    ``min_samples``. The first side short of its minimum, else the first side's."""
    config = suite.compare
    assert config is not None
    if config.test != "difference":
        counts: dict[str, float | None] = {}
        for name in config.names:
            column_name = f"{name}_n"
            if column_name not in frame.columns:
                return (
                    f"evidence column {column_name!r} is not in the query result "
                    f"(columns: {', '.join(map(str, frame.columns))})"
                )
            numbers = pd.to_numeric(frame[column_name], errors="coerce") if len(frame) == 1 else None
            value = None if numbers is None or not isinstance(numbers, pd.Series) else numbers.iloc[0]
            counts[name] = None if value is None or pd.isna(value) else float(value)
        # the smaller side decides (a side without a count is the smallest)
        side = min(config.names, key=lambda n: -1.0 if counts[n] is None else float(counts[n] or 0.0))
        observed = counts[side]
        minimum = Threshold(
            name="min_samples",
            value=config.min_samples,
            bound="min",
            provenance="suite",
            key=f"suites/{suite.name}.yaml: compare.min_samples",
        )
        sufficient = observed is not None and observed >= config.min_samples
        return EvidenceResult(
            column=f"{side}_n", observed_total=observed, min_total=minimum, sufficient=sufficient
        )
    results: list[EvidenceResult] = []
    for prefix, unit in suite.units():
        declared = evidence_minimum(unit.evidence)
        if declared is None:
            continue
        side = prefix.split(".")[2]
        key = f"suites/{suite.name}.yaml: {prefix}evidence.min_total"
        found = _evidence(declared, frame, f"{side}_{declared.column}", thresholds, key)
        if isinstance(found, str):
            return found
        assert found is not None
        if not found.sufficient:
            return found
        results.append(found)
    return results[0] if results else None


def _reconcile_evidence(
    suite: SuiteConfig, frame: pd.DataFrame, thresholds: Mapping[str, ResolvedThreshold]
) -> EvidenceResult | str | None:
    """Each side's rows in the window against its ``min_rows``: the first side short of its
    minimum, else the first side's."""
    assert suite.reconcile is not None
    results: list[EvidenceResult] = []
    for name, side in suite.reconcile.sides.items():
        if side.min_rows is None:
            continue
        key = f"suites/{suite.name}.yaml: reconcile.sides.{name}.min_rows"
        found = _evidence(SimpleNamespace(min_total=side.min_rows), frame, f"{name}_rows", thresholds, key)
        if isinstance(found, str) or not found.sufficient:
            return found
        results.append(found)
    return results[0] if results else None


def _evidence(
    evidence: Any,
    frame: pd.DataFrame,
    column_name: str,
    thresholds: Mapping[str, ResolvedThreshold],
    key: str,
) -> EvidenceResult | str:
    """``sum(column_name)`` of the frame against the evidence's minimum."""
    if isinstance(evidence.min_total, ParameterRef):
        resolved = thresholds[evidence.min_total.name]
        minimum = Threshold(
            name=resolved.name,
            value=resolved.value,
            bound="min",
            provenance=resolved.provenance,
            key=resolved.key,
        )
    else:
        minimum = Threshold(
            name="min_total", value=evidence.min_total, bound="min", provenance="suite", key=key
        )
    if column_name not in frame.columns:
        return (
            f"evidence column {column_name!r} is not in the query result "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    column = frame[column_name]
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        # numbers already (the usual case): summed in numpy, not per value
        numbers = column.to_numpy(dtype="float64", na_value=float("nan"))
        present = numbers[~np.isnan(numbers)]
        total = float(present.sum()) if present.size else None
    else:
        values = pd.to_numeric(column, errors="coerce")
        total = float(values.sum(skipna=True)) if values.notna().any() else None
    if total is not None and not math.isfinite(total):
        return f"evidence column {column_name!r} holds an infinite value: it counts nothing"
    try:
        required = float(minimum.value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"evidence minimum {minimum.name}={minimum.value!r} is not a number"
    sufficient = total is not None and total >= required
    return EvidenceResult(
        column=column_name,
        observed_total=None if total is None else _scalar(total),  # type: ignore[arg-type]
        min_total=minimum,
        sufficient=sufficient,
    )


def validate_frame(
    suite: SuiteConfig,
    frame: pd.DataFrame,
    thresholds: Mapping[str, ResolvedThreshold],
    validator: Validator | None = None,
    only: Collection[int] | None = None,
) -> list[ExpectationResult]:
    """Run the suite's expectations on the frame, one ExpectationResult each (on
    ``validator``'s context; without one, on a context of its own); with ``only``, just the
    expectations at those indices, in order."""
    validator = validator or Validator()
    groups = group_columns(suite, frame)
    infinite = _infinite(frame)
    if infinite:  # judged on the finite values (GE skips NaN); the infinite ones named below
        frame = frame.copy()
        for column in infinite:
            frame[column] = frame[column].replace([np.inf, -np.inf], np.nan)
    parameters = {name: thresholds[name].value for name in suite.parameters() if name in thresholds}
    built: dict[int, Any] = {}
    errors: dict[int, ExpectationResult] = {}
    for index, spec in enumerate(suite.expectations):
        if only is not None and index not in only:
            continue
        malformed = _malformed(spec, frame)
        if malformed is not None:
            errors[index] = _errored(spec, thresholds, suite.name, malformed)
            continue
        made = validator.expectation(suite, index)
        if isinstance(made, Exception):
            errors[index] = _errored(spec, thresholds, suite.name, f"cannot build: {_exception_text(made)}")
        else:
            built[index] = made
    ge_results: dict[int, Any] = {}
    if built:
        result_format: dict[str, Any] = {"result_format": "COMPLETE"}
        if groups:
            result_format["unexpected_index_column_names"] = groups
        ge_frame = _for_ge(frame, groups, [suite.expectations[i] for i in built])
        try:
            ge_results = ANSWERS.validate(validator, suite, built, ge_frame, parameters, result_format)
        except Exception as exc:  # GE itself failed on this answer: every expectation is an error
            reason = f"Great Expectations could not validate the answer: {_exception_text(exc)}"
            errors.update({i: _errored(suite.expectations[i], thresholds, suite.name, reason) for i in built})
    unnamed = _unnamed_groups(suite, frame)
    return [
        _judged_beside(
            _judged_with_infinite(
                errors[index]
                if index in errors
                else _convert(spec, ge_results.get(index), frame, groups, thresholds, suite.name),
                spec,
                infinite,
            ),
            unnamed,
        )
        for index, spec in enumerate(suite.expectations)
        if only is None or index in only
    ]


#: Expectations that judge each row on its own values alone (no ``mostly``, no
#: ``row_condition``): one validation of many frames stacked is the validation of each.
#: Uniqueness, aggregates and type checks look across rows or at the column and are not here.
ROW_WISE = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_null",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_values_to_not_match_regex_list",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_pair_values_to_be_equal",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_in_set",
        "expect_multicolumn_sum_to_equal",
    }
)
_STEP = "gatecheck_step"


@dataclass(frozen=True)
class _StepResult:
    """One frame's share of a validation of stacked frames, shaped like GE's result."""

    success: bool
    result: dict[str, Any]
    exception_info: None = None


def validate_frames(
    suite: SuiteConfig,
    frames: Sequence[pd.DataFrame],
    thresholds: Mapping[str, ResolvedThreshold],
    validator: Validator | None = None,
) -> list[list[ExpectationResult]]:
    """``validate_frame`` of each frame, with one Great Expectations validation for all of
    them where that gives the same answers: the row-wise expectations (``ROW_WISE``) run once
    on the frames stacked with their position as a column, and each frame gets the rows that
    failed in it. Every other expectation, and any that the stacked frames cannot answer alike
    (a column whose type differs between frames, a malformed value, GE raising), runs frame by
    frame."""
    validator = validator or Validator()
    if not frames:
        return []
    groups = [group_columns(suite, frame) for frame in frames]
    stackable = _STEP not in frames[0].columns and all(g == groups[0] for g in groups)
    together: list[int] = []
    infinite: list[set[str]] | None = None  # each frame's columns holding an infinity, once
    for index, spec in enumerate(suite.expectations):
        if not stackable or spec.type not in ROW_WISE or {"mostly", "row_condition"} & set(spec.kwargs):
            continue
        if isinstance(validator.expectation(suite, index), Exception):
            continue
        columns = [c for c in _named_columns(spec) if c in frames[0].columns]
        if not _alike(frames, columns):
            continue
        if infinite is None:
            infinite = [set(_infinite(frame)) for frame in frames]
        if any(
            _malformed(spec, frame) is not None or set(columns) & found
            for frame, found in zip(frames, infinite, strict=True)
        ):
            continue
        together.append(index)
    stacked: dict[int, list[Any]] = _validate_stacked(
        suite, frames, groups[0], together, thresholds, validator
    )
    apart = [i for i in range(len(suite.expectations)) if i not in stacked]
    found = {i: _thresholds_of(suite.expectations[i], thresholds, suite.name) for i in stacked}
    results: list[list[ExpectationResult]] = []
    for position, frame in enumerate(frames):
        by_index: dict[int, ExpectationResult] = {}
        if apart:
            for index, result in zip(
                apart, validate_frame(suite, frame, thresholds, validator, only=apart), strict=True
            ):
                by_index[index] = result
        unnamed = _unnamed_groups(suite, frame)
        for index, shares in stacked.items():
            spec = suite.expectations[index]
            by_index[index] = _judged_beside(
                _convert(spec, shares[position], frame, groups[0], thresholds, suite.name, found[index]),
                unnamed,
            )
        results.append([by_index[i] for i in range(len(suite.expectations))])
    return results


def _named_columns(spec: ExpectationSpec) -> list[str]:
    kwargs = spec.kwargs
    named = [kwargs.get(key) for key in ("column", "column_A", "column_B")]
    named += list(kwargs.get("column_list") or [])
    return [c for c in named if isinstance(c, str)]


def _alike(frames: Sequence[pd.DataFrame], columns: list[str]) -> bool:
    """Every frame has these columns with one dtype (stacking would change no value)."""
    for column in columns:
        dtypes = {str(frame[column].dtype) for frame in frames if column in frame.columns}
        if len(dtypes) > 1 or any(column not in frame.columns for frame in frames):
            return False
    return True


def _validate_stacked(
    suite: SuiteConfig,
    frames: Sequence[pd.DataFrame],
    groups: list[str],
    indices: list[int],
    thresholds: Mapping[str, ResolvedThreshold],
    validator: Validator,
) -> dict[int, list[Any]]:
    """index → each frame's share of one validation of the stacked frames, for the
    expectations at ``indices`` that GE judged without raising."""
    if not indices:
        return {}
    specs = [suite.expectations[i] for i in indices]
    stacked = _stacked_for_ge(frames, groups, specs)
    built = {i: validator.expectation(suite, i) for i in indices}
    parameters = {name: thresholds[name].value for name in suite.parameters() if name in thresholds}
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [_STEP, *groups]}
    try:
        answers = ANSWERS.validate(validator, suite, built, stacked, parameters, result_format)
    except Exception:
        return {}  # frame by frame, where each frame gets its own error
    shares: dict[int, list[Any]] = {}
    for index, ge_result in answers.items():
        if index not in built or _raised(ge_result.exception_info) is not None:
            continue
        unexpected: list[list[dict[str, Any]]] = [[] for _ in frames]
        for row in (ge_result.result or {}).get("unexpected_index_list") or []:
            unexpected[row[_STEP]].append(row)
        shares[index] = [
            _StepResult(
                success=not rows,
                result={
                    "element_count": len(frame),
                    "unexpected_count": len(rows),
                    "unexpected_index_list": rows,
                },
            )
            for frame, rows in zip(frames, unexpected, strict=True)
        ]
    return shares


@dataclass(frozen=True)
class _Answer:
    """What gatecheck reads of one GE expectation result (kept after the validation)."""

    success: bool
    result: dict[str, Any] = field(hash=False)
    exception_info: Any = field(hash=False)


class Answers:
    """Great Expectations' answers to questions already asked in this process.

    A validation is a pure function of the expectations, their parameters, the result format
    and the frame, and GE takes ~30 ms for one however small the frame: the same question comes
    back when a service cycle, a page or a what-if re-judges a window whose aggregates have not
    changed, and when a chain, a backtest and an explanation judge the same frames. The key is
    a digest of all four; a hit is confirmed by comparing the frame itself (``DataFrame.equals``
    with the same dtypes), so a digest collision cannot return another frame's answer. Bounded
    (``size`` questions, frames of at most ``rows`` rows, at most ``memory`` bytes of frames
    kept: 512 frames of 10,000 rows held ~450 MiB of a long-lived worker); the oldest go first.
    A validation that raised is never kept. Thread-safe: engines validate on their own threads.
    The process's one is :data:`ANSWERS`."""

    def __init__(self, size: int = 512, rows: int = 10_000, memory: int = 64 * 2**20) -> None:
        self.size, self.rows, self.memory = size, rows, memory
        self._lock = threading.Lock()
        # key → (the frame, its answers, the frame's bytes)
        self._kept: OrderedDict[str, tuple[pd.DataFrame, dict[int, _Answer], int]] = OrderedDict()
        self._bytes = 0

    def validate(
        self,
        validator: Validator,
        suite: SuiteConfig,
        built: Mapping[int, Any],
        frame: pd.DataFrame,
        parameters: Mapping[str, Any],
        result_format: Mapping[str, Any],
    ) -> dict[int, _Answer]:
        """index → GE's result for each expectation of ``built`` validated on ``frame``
        (GE raising propagates)."""
        key = self.key(suite, built, frame, parameters, result_format)
        if key is not None:
            with self._lock:
                kept = self._kept.get(key)
                if kept is not None and _same_frame(kept[0], frame):
                    self._kept.move_to_end(key)
                    return kept[1]
        _, batch_definition = validator.context()
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(
            validator.expectation_suite(suite, dict(built)),
            expectation_parameters=dict(parameters),
            result_format=dict(result_format),
        )
        answers: dict[int, _Answer] = {}
        for ge_result in validation.results:
            index = (ge_result.expectation_config.meta or {}).get(_INDEX)
            if isinstance(index, int):
                answers[index] = _Answer(ge_result.success, ge_result.result, ge_result.exception_info)
        if key is not None:
            size = int(frame.memory_usage(index=True, deep=True).sum())
            with self._lock:
                replaced = self._kept.pop(key, None)
                if replaced is not None:
                    self._bytes -= replaced[2]
                self._kept[key] = (frame, answers, size)
                self._bytes += size
                while self._kept and (len(self._kept) > self.size or self._bytes > self.memory):
                    self._bytes -= self._kept.popitem(last=False)[1][2]
        return answers

    def key(
        self,
        suite: SuiteConfig,
        built: Mapping[int, Any],
        frame: pd.DataFrame,
        parameters: Mapping[str, Any],
        result_format: Mapping[str, Any],
    ) -> str | None:
        """A digest of the question, or None when it is not kept (a large frame, values
        that cannot be hashed)."""
        if len(frame) > self.rows:
            return None
        try:
            question = json.dumps(
                [
                    [[i, suite.expectations[i].type, suite.expectations[i].kwargs] for i in sorted(built)],
                    parameters,
                    result_format,
                    [[str(c), str(t)] for c, t in frame.dtypes.items()],
                ],
                sort_keys=True,
                default=repr,
            )
            rows = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(question.encode() + b"\0" + rows).hexdigest()

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0

    @property
    def kept_bytes(self) -> int:
        """The bytes of the frames kept."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        """How many answers are kept."""
        with self._lock:
            return len(self._kept)


def _same_frame(kept: pd.DataFrame, frame: pd.DataFrame) -> bool:
    same_columns = list(kept.columns) == list(frame.columns) and list(kept.dtypes) == list(frame.dtypes)
    return same_columns and kept.equals(frame)


#: The answers kept in this process (every engine of it validates through this one).
ANSWERS = Answers()


_SINGLE_VALUES = (str, bool, int, float, Decimal, np.generic, datetime, date, pd.Timestamp)


def _wanted(columns: Any, groups: list[str], specs: list[ExpectationSpec]) -> list[str]:
    """The groups and every column of ``columns`` an expectation names, in that order — by
    value, or inside a ``row_condition`` (``edges > 150``, ```edges` > 150``,
    ``col("edges") > 150``): a condition may select rows by any column of the answer."""
    wanted = list(groups)
    for spec in specs:
        condition = spec.kwargs.get("row_condition")
        for value in spec.kwargs.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item in columns and item not in wanted:
                    wanted.append(item)
        if isinstance(condition, str):
            wanted += [
                c for c in columns if isinstance(c, str) and c not in wanted and _mentions(condition, c)
            ]
    return wanted


def _mentions(condition: str, column: str) -> bool:
    """Whether ``condition`` names ``column`` as a whole name (not inside a longer one)."""
    return re.search(rf"(?<![\w]){re.escape(column)}(?![\w])", condition) is not None


def _single_labels(narrowed: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """A group label that is not a single value (a ClickHouse array, tuple or map) as its
    JSON text: ``[1, 2]``, not ``[np.uint8(1), np.uint8(2)]`` (what a waiver's group is written as)."""
    for column in groups:
        if narrowed[column].dtype == object:
            narrowed[column] = [
                v if v is None or isinstance(v, _SINGLE_VALUES) else _as_text(v) for v in narrowed[column]
            ]
    return narrowed


def _as_text(value: Any) -> str:
    """A value that is not a single one as JSON, of Python's own types all the way down."""

    def plain(found: Any) -> Any:
        if isinstance(found, np.ndarray):
            found = found.tolist()
        if isinstance(found, np.generic):
            return found.item()
        if isinstance(found, list | tuple):
            return [plain(v) for v in found]
        if isinstance(found, dict):
            return {str(plain(k)): plain(v) for k, v in found.items()}
        return found

    if isinstance(value, list | tuple | dict | np.ndarray):
        return json.dumps(plain(value), ensure_ascii=False, default=str)
    return str(value)


def _for_ge(frame: pd.DataFrame, groups: list[str], specs: list[ExpectationSpec]) -> pd.DataFrame:
    """The columns GE needs (groups and every column an expectation names), nothing else:
    GE hashes the whole batch, and an extra column of arrays or maps would break it. A group
    label that is not a single value (a ClickHouse array) is shown as text."""
    return _single_labels(frame[_wanted(frame.columns, groups, specs)].copy(), groups)


def _stacked_for_ge(
    frames: Sequence[pd.DataFrame], groups: list[str], specs: list[ExpectationSpec]
) -> pd.DataFrame:
    """:func:`_for_ge` of every frame, stacked, each row with its frame's position in
    ``_STEP`` — the frames joined once and narrowed once (not a copy per frame), when they
    all name the same columns; else frame by frame."""
    wanted = _wanted(frames[0].columns, groups, specs)
    if any(_wanted(frame.columns, groups, specs) != wanted for frame in frames):
        parts = []
        for position, frame in enumerate(frames):
            part = _for_ge(frame, groups, specs)
            part.insert(0, _STEP, position)
            parts.append(part)
        return pd.concat(parts, ignore_index=True)
    if any(list(frame.columns) != list(frames[0].columns) for frame in frames):
        stacked = pd.concat([frame[wanted] for frame in frames], ignore_index=True)
    else:  # one source's answers: joined whole, then narrowed once
        stacked = pd.concat(frames, ignore_index=True)[wanted].copy()
    stacked.insert(0, _STEP, np.repeat(np.arange(len(frames)), [len(frame) for frame in frames]))
    return _single_labels(stacked, groups)


def _malformed(spec: ExpectationSpec, frame: pd.DataFrame) -> str | None:
    """Why the frame cannot answer this expectation (a list where a value belongs, text where
    a bound needs a number), or None. A source answering in the wrong shape is an error, not
    a finding about the data."""
    kwargs = spec.kwargs
    numeric = "min_value" in kwargs or "max_value" in kwargs
    for key in ("column", "column_A", "column_B"):
        column = kwargs.get(key)
        if not isinstance(column, str) or column not in frame.columns:
            continue
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_bool_dtype(series) and not numeric:
            continue
        for value in series:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            shown = repr(value)
            shown = f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"
            if not isinstance(value, _SINGLE_VALUES):
                return f"column {column!r} must hold single values, got {shown}"
            if numeric and (isinstance(value, str | bool | np.bool_) or not isinstance(value, Number)):
                return f"column {column!r} must hold numbers for its bound, got {shown}"
    return None


def _infinite(frame: pd.DataFrame) -> dict[str, str]:
    """Each numeric column holding ±Inf, with why it cannot be judged. ±Inf is what a division
    by zero answers in PromQL and in ClickHouse's float division (and PostgreSQL's numeric
    holds ``Infinity`` as a Decimal); it would pass a minimum (or, as -Inf, a maximum) on no
    meaningful value, so an infinite value is never a pass."""
    found = {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_numeric_dtype(series):
            values = series.to_numpy(dtype="float64", na_value=np.nan)
        elif series.dtype == object and any(isinstance(v, Decimal) and v.is_infinite() for v in series):
            values = np.array([float(v) if isinstance(v, Decimal) else np.nan for v in series])
        else:
            continue
        where = np.flatnonzero(np.isinf(values))
        if where.size:
            shown = ", ".join(sorted({"+inf" if values[i] > 0 else "-inf" for i in where}))
            found[str(column)] = (
                f"column {column!r} holds an infinite value ({shown}) in {where.size} of {len(values)} rows "
                "(a division by zero?): an infinite value is never a pass"
            )
    return found


def _judged_with_infinite(
    result: ExpectationResult, spec: ExpectationSpec, infinite: dict[str, str]
) -> ExpectationResult:
    """``result`` (judged on the finite values) with the infinite ones accounted for: a
    definite failure stays a failure, naming them too; anything else becomes an error."""
    return _judged_beside(result, [infinite[c] for c in _named_columns(spec) if c in infinite])


def _judged_beside(result: ExpectationResult, problems: list[str]) -> ExpectationResult:
    """``result`` with ``problems`` that keep the frame from being judged as the suite says:
    a definite failure stays a failure, naming them too; anything else becomes an error."""
    if not problems:
        return result
    if result.outcome is Outcome.FAIL:
        return result.model_copy(
            update={"reason": "; ".join([result.reason or "expectation not met", *problems])}
        )
    return result.model_copy(update={"outcome": Outcome.ERROR, "reason": "; ".join(problems)})


def _unnamed_groups(suite: SuiteConfig, frame: pd.DataFrame) -> list[str]:
    """The suite's ``groups`` the frame does not hold, said in one line (or none): a misspelt
    group column would leave every failing group unnamed."""
    missing = [c for c in suite.groups or () if c not in frame.columns]
    if not missing:
        return []
    return [
        f"groups: column(s) {', '.join(map(repr, missing))} not in the query result "
        f"(columns: {', '.join(map(str, frame.columns))})"
    ]


def _thresholds_of(
    spec: ExpectationSpec, thresholds: Mapping[str, ResolvedThreshold], suite: str
) -> list[Threshold]:
    found = []
    for kwarg, value in spec.kwargs.items():
        threshold = _threshold(kwarg, value, thresholds, suite)
        if threshold is not None:
            found.append(threshold)
    return found


def _errored(
    spec: ExpectationSpec, thresholds: Mapping[str, ResolvedThreshold], suite: str, reason: str
) -> ExpectationResult:
    return ExpectationResult(
        type=spec.type,
        column=spec.kwargs.get("column") or spec.kwargs.get("column_A"),
        description=spec.kwargs.get("description"),
        outcome=Outcome.ERROR,
        thresholds=_thresholds_of(spec, thresholds, suite),
        reason=reason,
    )


def _convert(
    spec: ExpectationSpec,
    ge_result: Any,
    frame: pd.DataFrame,
    groups: list[str],
    thresholds: Mapping[str, ResolvedThreshold],
    suite: str,
    found_thresholds: list[Threshold] | None = None,
) -> ExpectationResult:
    """One expectation's result from GE's answer (``found_thresholds``: the expectation's
    thresholds when the caller already has them — the same for every step of a backtest)."""
    # Pair expectations compare column_A (observed) with column_B (expected).
    column = spec.kwargs.get("column") or spec.kwargs.get("column_A")
    expected_column = spec.kwargs.get("column_B")
    if found_thresholds is None:
        found_thresholds = _thresholds_of(spec, thresholds, suite)
    if ge_result is None:
        return _errored(spec, thresholds, suite, "Great Expectations returned no result")
    missing = [c for c in (column, expected_column) if c is not None and c not in frame.columns]
    if missing:
        column = missing[0]
        return _errored(
            spec,
            thresholds,
            suite,
            f"column {column!r} is not in the query result (columns: {', '.join(map(str, frame.columns))})",
        )
    raised = _raised(ge_result.exception_info)
    if raised is not None:
        return _errored(spec, thresholds, suite, f"expectation raised: {raised}")
    result = ge_result.result or {}
    bound = next((t.bound for t in found_thresholds if t.bound), None)

    failing: list[FailingGroup] = []
    for row in result.get("unexpected_index_list") or []:
        if isinstance(row, dict):
            group = {g: _group_label(row.get(g)) for g in groups}
            observed = row.get(column) if column else None
            expected = row.get(expected_column) if expected_column else None
        else:  # a plain row index when the frame has no group columns
            group = {}
            observed = frame.at[row, column] if column in frame.columns else None
            expected = frame.at[row, expected_column] if expected_column in frame.columns else None
        failing.append(
            FailingGroup(group=group, observed_value=_scalar(observed), expected_value=_scalar(expected))
        )
    failing.sort(key=lambda f: _severity(f, bound))

    series = frame[column] if column is not None and column in frame.columns else None
    condition = spec.kwargs.get("row_condition")
    # Whether Great Expectations judged no row at all: it skips NULLs (and, for pairs and
    # column lists, the rows ``ignore_row_if`` leaves out), and would pass on none. An
    # expectation about NULLs themselves judges every row it is given, NULL or not.
    about_nulls = spec.type in _ABOUT_NULLS
    given = result.get("element_count")
    judged = (
        given if about_nulls or not isinstance(given, int) else given - int(result.get("missing_count") or 0)
    )
    nothing: str | None = None  # why no value was judged, if none was
    if condition:
        series = _selected(frame, spec, series)
        if (isinstance(judged, int) and judged <= 0) or (
            series is not None and (len(series) if about_nulls else series.notna().sum()) == 0
        ):
            # a condition that selects nothing (a misspelt group) or only NULLs would pass a
            # row-wise expectation on no data (and fail an aggregate on none)
            where = f" with a value in {column!r}" if column is not None and not about_nulls else ""
            nothing = f"row_condition {condition!r} selects no row{where} (of {len(frame)} rows)"
    elif series is not None and not about_nulls and series.notna().sum() == 0:
        nothing = f"column {column!r} has no values (all NULL/NaN)"
    elif isinstance(judged, int) and judged <= 0:  # (about NULLs: every row, never none)
        ignored = spec.kwargs.get("ignore_row_if")
        named = ", ".join(map(repr, _named_columns(spec)))
        nothing = f"no row to judge: each of the {len(frame)} rows lacks a value to compare in {named}" + (
            f" (ignore_row_if: {ignored})" if ignored else ""
        )
    if nothing is not None:
        return ExpectationResult(
            type=spec.type,
            column=column,
            description=spec.kwargs.get("description"),
            outcome=Outcome.INCONCLUSIVE,
            observed_value=None,
            thresholds=found_thresholds,
            reason=nothing,
        )
    observed_value: Scalar
    if "observed_value" in result:
        observed_value = _scalar(result["observed_value"])
    elif series is not None and bound is not None:
        observed_value = _worst(series, bound)
    else:
        observed_value = None
    outcome = Outcome.PASS if ge_result.success else Outcome.FAIL
    reason = None
    if outcome is Outcome.FAIL:
        count = result.get("unexpected_count")
        reason = (
            f"{count} of {result.get('element_count')} groups outside the bound"
            if count
            else "expectation not met"
        )
    return ExpectationResult(
        type=spec.type,
        column=column,
        description=spec.kwargs.get("description"),
        outcome=outcome,
        observed_value=observed_value,
        thresholds=found_thresholds,
        failing_groups=failing,
        reason=reason,
    )


#: Expectations about NULLs themselves: every row they are given is judged, NULL or not.
_ABOUT_NULLS = frozenset({"expect_column_values_to_be_null", "expect_column_values_to_not_be_null"})


def _selected(frame: pd.DataFrame, spec: ExpectationSpec, series: pd.Series | None) -> pd.Series | None:
    """``series`` on the rows the expectation's ``row_condition`` selects, as Great Expectations
    selects them for pandas (``DataFrame.query`` with the pandas parser), so the worst value
    shown is one that was judged; None when that cannot be known here (another parser)."""
    if series is None or spec.kwargs.get("condition_parser") != "pandas":
        return None
    try:
        return series.loc[frame.query(spec.kwargs["row_condition"], parser="pandas").index]
    except Exception:
        return None


def _raised(info: Any) -> str | None:
    """GE's exception message, if the expectation raised. GE puts it at the top level or,
    when a metric failed, under one key per metric."""
    if not isinstance(info, dict):
        return None
    candidates = [info, *(v for v in info.values() if isinstance(v, dict))]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            return _exception_text(Exception(candidate.get("exception_message") or "unknown error"))
    return None


def _worst(series: pd.Series, bound: str | None) -> Scalar:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        # numbers already: their own min/max (NaN skipped), no conversion per step
        worst = series.min() if bound == "min" else series.max()
        return None if pd.isna(worst) else _scalar(worst)
    values = pd.to_numeric(series, errors="coerce").dropna()
    if values.empty:
        return None
    return _scalar(values.min() if bound == "min" else values.max())
