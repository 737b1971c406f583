"""The history ledger: every evaluation, recorded atomically, queried for soak and requires;
and the audit trail of waivers and approvals beside it.

Backends, chosen by ``history.url`` in gatecheck.yaml (:func:`open_ledger`):

- ``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db`` — the embedded default
  (:mod:`gatecheck.ledger.sqlite`).
- ``chdb://PATH?database=DB`` / ``clickhouse(s)://user:pass@host:port/db`` — a ClickHouse
  table (:mod:`gatecheck.ledger.clickhouse`).
- ``postgresql://user@host:5432/db`` — a PostgreSQL database several processes share
  (:mod:`gatecheck.ledger.postgresql`).

:mod:`gatecheck.ledger.base` is the contract every backend meets; :mod:`~gatecheck.ledger.audit`
the audit trail's events and what they decide; :mod:`~gatecheck.ledger.decisions` the one
place audit events are built from a person's request; :mod:`~gatecheck.ledger.proxy` the
ledger as the serving process sees it (every call runs in the evaluation worker).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from gatecheck.errors import ConfigError, LedgerError, redact
from gatecheck.ledger.base import (
    DECISIVE,
    MAX_CLOCK_SKEW,
    MAX_RECORDING_DELAY,
    SCHEDULER,
    Lease,
    Ledger,
    Record,
    contemporary,
    record_summary,
)
from gatecheck.ledger.clickhouse import ClickHouseLedger
from gatecheck.ledger.sqlite import SqliteLedger
from gatecheck.sources.clickhouse.connection import SCHEMES as CLICKHOUSE_SCHEMES
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

__all__ = [
    "DECISIVE",
    "MAX_CLOCK_SKEW",
    "MAX_RECORDING_DELAY",
    "SCHEDULER",
    "ClickHouseLedger",
    "Lease",
    "Ledger",
    "LedgerError",
    "Record",
    "SqliteLedger",
    "contemporary",
    "open_ledger",
    "record_summary",
]


OWN_DIRECTORY = ".gatecheck"


def _ledger_directory(path: Path, root: Path, url: str) -> None:
    """The ledger's file is created, its directory is not: a path that points nowhere (a typo,
    an unmounted volume) would otherwise start an empty ledger and silently lose the soak and
    ``requires`` history. Only gatecheck's own ``.gatecheck/`` directory is created."""
    parent = path.parent
    if parent.is_dir():
        return
    if parent == root / OWN_DIRECTORY and root.is_dir():
        try:
            parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"history.url: cannot create {parent} ({exc.strerror})") from exc
        return
    raise ConfigError(
        f"history.url: the directory {parent} of the ledger {redact(url)!r} does not exist "
        "(create it, or point history.url / GATECHECK_HISTORY_URL at an existing one)"
    )


def _not_in_the_package(path: Path, url: str) -> None:
    """Refuse a ledger inside the installed gatecheck package (``--config`` pointing at a
    shipped project, whose default ledger is relative to it): nothing is ever written there."""
    import gatecheck

    package = Path(gatecheck.__file__).resolve().parent
    if path.resolve().is_relative_to(package):
        raise ConfigError(
            f"history.url: {redact(url)} resolves to {path.resolve()}, "
            "inside the installed gatecheck package, "
            "which is never written: set GATECHECK_HISTORY_URL (or history.url) to a path of yours; "
            "the demo's records: gatecheck status --demo"
        )


def open_ledger(url: str, root: Path, clickhouse: ClickHouse | None = None, *, create: bool = True) -> Ledger:
    """The ledger for ``history.url``; relative paths resolve against the config directory.
    ``clickhouse``: the engine's connections, shared with its ClickHouse sources. ``create=False``:
    an SQLite ledger only read, never created (``run --no-record`` writes nothing)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative/file.db → "relative/file.db"; sqlite:////abs/file.db → "/abs/file.db"
        raw = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not raw:
            raise ConfigError(f"history.url: {url!r} needs a path, e.g. sqlite:///.gatecheck/history.db")
        path = Path(raw)
        path = path if path.is_absolute() else root / path
        _not_in_the_package(path, url)
        if not create:
            return SqliteLedger(path, create=False)
        _ledger_directory(path, root, url)
        return SqliteLedger(path)
    if parts.scheme in CLICKHOUSE_SCHEMES:
        embedded = Target.parse(url, root, what="history.url").embedded
        if embedded is not None:
            _not_in_the_package(embedded, url)
        return ClickHouseLedger(url, root, clickhouse, create=create)
    if parts.scheme in ("postgresql", "postgres"):
        from gatecheck.ledger.postgresql import PostgresLedger

        return PostgresLedger(url, create=create)
    raise ConfigError(
        f"history.url: unsupported scheme in {redact(url)!r} "
        "(use sqlite:///PATH, postgresql://user@host/db, chdb://PATH or clickhouse://host:8123/db)"
    )
