"""The JSON Schema of the verdict document (``gatecheck run --format json``, the API).

``verdict.schema.json`` beside this file is generated from the result model
(``gatecheck schema > src/gatecheck/schema/verdict.schema.json``); a test keeps the two
identical.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

SCHEMA_ID = "https://gatecheck.dev/schema/verdict.schema.json"


def _generated(model: Any, schema_id: str, title: str, description: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
        "title": title,
        "description": description,
    }


def _shipped(name: str) -> dict[str, Any]:
    text = files("gatecheck.schema").joinpath(name).read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


def verdict_schema() -> dict[str, Any]:
    """The schema, generated from :class:`gatecheck.results.Verdict` (serialization mode)."""
    from gatecheck.results import Verdict

    return _generated(
        Verdict,
        SCHEMA_ID,
        "gatecheck verdict",
        "One evaluation of a phase's gate: the verdict and every check's evidence.",
    )


def shipped_schema() -> dict[str, Any]:
    """The schema file shipped in the package."""
    return _shipped("verdict.schema.json")


def schema_text() -> str:
    return json.dumps(verdict_schema(), indent=2, ensure_ascii=False) + "\n"


BACKTEST_SCHEMA_ID = "https://gatecheck.dev/schema/backtest.schema.json"


def backtest_schema() -> dict[str, Any]:
    """The schema of ``gatecheck backtest --format json``, generated from its report model."""
    from gatecheck.evaluation.backtest import BacktestReport

    return _generated(
        BacktestReport,
        BACKTEST_SCHEMA_ID,
        "gatecheck backtest",
        "A gate judged at every step of a past range: each step's verdict and checks.",
    )


def shipped_backtest_schema() -> dict[str, Any]:
    return _shipped("backtest.schema.json")
