"""One timestamp formatter and one number formatter in every output: each format gatecheck
writes, read back and searched for the forms the issue found side by side — ``+00:00`` beside
``Z``, ``2026-12-04 17:47Z`` beside ``2026-12-04T17:47:01Z``, ``240.0``, ``303.318652``,
``1e+09``, Python's ``None``/``True``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatecheck.cli import app

from ..conftest import AS_OF, PROJECT, warehouse_env

runner = CliRunner()
AS_OF_TEXT = AS_OF.isoformat()

#: A moment in any text: the one form, to the second (milliseconds only in documents).
MOMENT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?")
ONE_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d{3})?)?Z")
#: Float noise and Python in what a person reads.
NOISE = (
    re.compile(r"(?<![\w.])\d+\.0(?![\d.])"),  # 240.0
    re.compile(r"\de[+-]\d"),  # 1e+09
    re.compile(r"\b(None|True|False)\b"),
)
DECIMAL = re.compile(r"(?<![\w.])(\d+)\.(\d+)(?![\d.])")


def _noisy(text: str) -> list[str]:
    """Decimals with more significant digits than the formatter's four (303.318652, 0.005138889)."""
    found = []
    for match in DECIMAL.finditer(text):
        digits = (match.group(1) + match.group(2)).lstrip("0")
        if len(digits) > 5:
            found.append(match.group(0))
    return found


def _visible(text: str) -> str:
    """What a person reads of a page or a report: not its markup, styles or attributes."""
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    text = re.sub(r"<style>.*?</style>", "", text, flags=re.S)
    return re.sub(r"<[^>]*>", " ", text)


def _moments(text: str) -> Iterator[str]:
    for found in MOMENT.finditer(text):
        yield found.group(0)


@pytest.fixture(scope="module")
def outputs(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bool]]:
    """Every output format of a NO-GO (unmatched-edges) with a recorded history and a waiver:
    name → (text, whether a person reads it)."""
    history = tmp_path_factory.mktemp("outputs") / "h.db"
    env = {**warehouse_env(warehouse, "unmatched-edges"), "GATECHECK_HISTORY_URL": f"sqlite:///{history}"}

    def cli(*args: str) -> str:
        result = runner.invoke(app, [*args, "--config", str(PROJECT)], env=env)
        assert result.exit_code in (0, 1, 3), (args, result.output)
        return result.stdout

    found: dict[str, tuple[str, bool]] = {}
    for fmt in ("text", "json", "junit", "markdown", "html"):
        found[f"run {fmt}"] = (
            cli("run", "--phase", "warehouse-release", "--as-of", AS_OF_TEXT, "--format", fmt),
            fmt != "json",
        )
    cli("run", "--phase", "warehouse-release")  # a record as of now: in history's last 48h whatever the date
    cli("waive", "--phase", "warehouse-release", "--check", "unmatched_edges", "--for", "2h",
        "--reason", "vendor backfill", "--by", "alice")  # fmt: skip
    for fmt in ("text", "json"):
        found[f"history {fmt}"] = (cli("history", "--phase", "warehouse-release", "--format", fmt), fmt == "text")
        found[f"status {fmt}"] = (cli("status", "--format", fmt), fmt == "text")
        found[f"audit {fmt}"] = (cli("audit", "--format", fmt), fmt == "text")
        found[f"explain {fmt}"] = (
            cli("explain", "--phase", "warehouse-release", "--as-of", AS_OF_TEXT, "--format", fmt), fmt == "text"
        )
        found[f"backtest {fmt}"] = (
            cli("backtest", "--phase", "warehouse-release", "--until", AS_OF_TEXT, "--since", "3h", "--format", fmt),
            fmt == "text",
        )
    for fmt in ("markdown", "html"):
        found[f"report {fmt}"] = (cli("report", "--phase", "warehouse-release", "--format", fmt), True)
    return found


def test_every_output_format_was_produced(outputs: dict[str, tuple[str, bool]]) -> None:
    assert len(outputs) == 17 and all(text.strip() for text, _ in outputs.values())


@pytest.mark.parametrize(
    "name",
    ["run text", "run json", "run junit", "run markdown", "run html", "history text", "history json",
     "status text", "status json", "audit text", "audit json", "explain text", "explain json",
     "backtest text", "backtest json", "report markdown", "report html"],
)  # fmt: skip
def test_one_timestamp_form_and_numbers_without_noise(outputs: dict[str, tuple[str, bool]], name: str) -> None:
    text, for_people = outputs[name]
    moments = list(_moments(text))
    assert moments, name  # every output says when
    odd = [m for m in moments if not ONE_FORM.fullmatch(m)]
    # JUnit's timestamp attribute carries no zone by its schema: the one exception, and UTC
    odd = [m for m in odd if not (name == "run junit" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", m))]
    assert not odd, (name, odd[:5])
    if for_people:
        # the configuration's own hash and version strings are not numbers a person reads
        body = re.sub(r"\b[0-9a-f]{12,64}\b|gatecheck[ _]version\W+[\w.+-]+|gatecheck \d[\w.+-]*", "", _visible(text))
        # explain shows a bound value exactly as sent, beside what it means: the wire's, not ours
        body = re.sub(r"= \d+\.\d+  = \d{4}-", "= ", body)
        for pattern in NOISE:
            found = pattern.findall(body)
            assert not found, (name, pattern.pattern, found[:5])
        assert not _noisy(body), (name, _noisy(body)[:5])
    else:
        json.loads(text)  # a document stays a document: its values are the machines' raw numbers
