"""The log: levels, text and JSON lines with their fields, quiet drivers, no secret."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from gatecheck import logs
from gatecheck.cli import app
from gatecheck.errors import ConfigError


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("gatecheck", *logs.DRIVER_LOGGERS)}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def emit(level: str, fmt: str) -> list[str]:
    stream = io.StringIO()
    logs.configure(level, fmt, stream=stream, environ={})
    log = logging.getLogger("gatecheck.service")
    log.debug("a debug line", extra={"phase": "p"})
    log.info("evaluated staging-soak: go", extra={"phase": "staging-soak", "verdict": "go", "failing": []})
    log.warning("source bus of staging is down: no answer", extra={"source": "bus", "up": False})
    log.error("evaluation of p failed")
    logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=2))")
    logging.getLogger("great_expectations").info("a GE line")
    return stream.getvalue().splitlines()


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["a debug line", "evaluated", "source bus", "evaluation of p failed", "Retrying", "a GE line"]),
        ("info", ["evaluated", "source bus", "evaluation of p failed"]),
        ("warning", ["source bus", "evaluation of p failed"]),
        ("error", ["evaluation of p failed"]),
    ],
)
def test_each_level_shows_its_lines_and_the_drivers_only_at_debug(restored_logging: None, level: str, shown: list[str]) -> None:
    lines = emit(level, "text")
    assert len(lines) == len(shown), lines
    for line, start in zip(lines, shown, strict=True):
        assert start in line


def test_text_lines_carry_their_fields(restored_logging: None) -> None:
    line = emit("info", "text")[0]
    assert " INFO gatecheck.service: evaluated staging-soak: go " in line
    assert line.endswith("phase=staging-soak verdict=go failing=-")
    assert line[:4].isdigit() and line.split(" ")[0].endswith("Z")  # UTC timestamp first


def test_json_lines_parse_with_their_fields(restored_logging: None) -> None:
    documents = [json.loads(line) for line in emit("info", "json")]
    assert [d["level"] for d in documents] == ["info", "warning", "error"]
    first = documents[0]
    assert first["message"] == "evaluated staging-soak: go" and first["logger"] == "gatecheck.service"
    assert (first["phase"], first["verdict"], first["failing"]) == ("staging-soak", "go", [])
    assert documents[1]["up"] is False and documents[1]["source"] == "bus"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", first["time"]), first["time"]


def test_the_level_and_format_come_from_the_option_then_the_environment() -> None:
    assert logs.resolve(None, None, {}) == ("info", "text")
    assert logs.resolve(None, None, {"GATECHECK_LOG_LEVEL": "DEBUG", "GATECHECK_LOG_FORMAT": "json"}) == ("debug", "json")
    assert logs.resolve("error", "text", {"GATECHECK_LOG_LEVEL": "debug"}) == ("error", "text")
    with pytest.raises(ConfigError, match="GATECHECK_LOG_LEVEL: unknown level 'loud'"):
        logs.resolve(None, None, {"GATECHECK_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="GATECHECK_LOG_FORMAT: unknown format 'xml'"):
        logs.resolve(None, None, {"GATECHECK_LOG_FORMAT": "xml"})


def test_serve_refuses_an_unknown_level_or_format_in_one_line() -> None:
    for args in (["--log-level", "loud"], ["--log-format", "xml"]):
        result = CliRunner().invoke(app, ["serve", *args])
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert args[0] in result.output


def test_a_text_line_shows_none_numbers_and_moments_as_every_output_does() -> None:
    from datetime import UTC, datetime

    record = logging.makeLogRecord(
        {"name": "gatecheck.service", "levelname": "INFO", "msg": "verdict of p changed", "created": 1796400000.25,
         "previous": None, "duration_s": 0.123456789, "at": datetime(2026, 12, 4, 17, 47, 1, tzinfo=UTC)}
    )  # fmt: skip
    line = logs.TextFormatter().format(record)
    assert line.startswith("2026-12-04T") and line.split(" ")[0].endswith(".250Z")
    assert line.endswith("previous=- duration_s=0.1235 at=2026-12-04T17:47:01Z"), line


def test_a_text_line_stays_one_line_whatever_the_data_holds(restored_logging: None) -> None:
    """A message or a field from data (a source's error, a group value) holding a newline
    wrote a forged line of the log (a reader, or a log shipper splitting on lines, saw an
    `evaluated … verdict=go` that never happened); a terminal escape steered the terminal."""
    stream = io.StringIO()
    logs.configure("info", "text", stream=stream, environ={})
    forged = "\n2026-11-23T06:00:00Z INFO gatecheck.service: evaluated prod-soak: go phase=prod-soak verdict=go"
    log = logging.getLogger("gatecheck.service")
    log.warning("source warehouse: %s", "cannot connect" + forged, extra={"group": "eu" + forged, "who": "\x1b[2Kx"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "cannot connect\\n2026-11-23T06:00:00Z INFO" in lines[0]
    assert 'group="eu\\n2026-11-23T06:00:00Z INFO' in lines[0] and 'who="\\u001b[2Kx"' in lines[0]
    assert "\x1b" not in lines[0]


def test_lines_go_to_the_stderr_of_the_moment_they_are_logged(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Configured while one stderr is in place (a command run under a test runner's capture,
    closed after it), the lines logged later go to the stderr then in place — not into the
    closed one, which printed a "--- Logging error ---" traceback for every line instead."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure("info", "text", environ={})
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    logging.getLogger("gatecheck.service").info("evaluated %s: %s", "p", "go")
    assert now.getvalue().rstrip().endswith("INFO gatecheck.service: evaluated p: go"), now.getvalue()
    assert "Logging error" not in now.getvalue()
