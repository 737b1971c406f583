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


def verdict_schema() -> dict[str, Any]:
    """The schema, generated from :class:`gatecheck.results.Verdict` (serialization mode)."""
    from gatecheck.results import Verdict

    schema = Verdict.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
        "title": "gatecheck verdict",
        "description": "One evaluation of a phase's gate: the verdict and every check's evidence.",
    }


def shipped_schema() -> dict[str, Any]:
    """The schema file shipped in the package."""
    text = files("gatecheck.schema").joinpath("verdict.schema.json").read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


def schema_text() -> str:
    return json.dumps(verdict_schema(), indent=2, ensure_ascii=False) + "\n"


BACKTEST_SCHEMA_ID = "https://gatecheck.dev/schema/backtest.schema.json"


def backtest_schema() -> dict[str, Any]:
    """The schema of ``gatecheck backtest --format json``, generated from its report model."""
    from gatecheck.backtest import BacktestReport

    schema = BacktestReport.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": BACKTEST_SCHEMA_ID,
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
        "title": "gatecheck backtest",
        "description": "A gate judged at every step of a past range: each step's verdict and checks.",
    }


def shipped_backtest_schema() -> dict[str, Any]:
    text = files("gatecheck.schema").joinpath("backtest.schema.json").read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result
