"""The demo's ingest service: the HTTP endpoint the Phase B smoke test posts to
(``POST /ingest/hrv``), on a loopback port of its own, writing each reading it accepts to the
demo's PostgreSQL (``hrv_readings``, marked ``source_stream = 'synthetic'``: only probes post
here) — so the reference project's smoke probe is judged end to end. ``GET /healthz`` answers
200. Scenarios: ``ingest-down`` (nothing listens), ``ingest-drops`` (it answers 202 and never
writes the row)."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gatecheck.demo.metrics import STOP_POLL_S

INGEST_SCENARIOS = ("ingest-down", "ingest-drops")


class IngestService:
    """A threaded HTTP server on 127.0.0.1 (a port the system picks) until :meth:`stop`."""

    def __init__(self, database_url: str, drops: bool = False, token: str | None = None) -> None:
        self.database_url = database_url
        self.drops = drops
        self.token = token  # a POST must then carry `Authorization: Bearer TOKEN` (else 401)
        self.accepted = 0
        self.received: list[dict[str, Any]] = []  # each POST's headers and body, in order
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(200 if self.path == "/healthz" else 404)

            def do_POST(self) -> None:
                if self.path != "/ingest/hrv":
                    self._answer(404)
                    return
                try:
                    length = min(int(self.headers.get("content-length", "0")), 65536)
                    body = json.loads(self.rfile.read(length))
                    reading = (str(body["message_id"]), str(body.get("user_id", "")), float(body["rmssd_ms"]))
                except (ValueError, KeyError, TypeError):
                    self._answer(400)
                    return
                service.received.append({"headers": dict(self.headers.items()), "body": body})
                if (
                    service.token is not None
                    and self.headers.get("authorization") != f"Bearer {service.token}"
                ):
                    self._answer(401)
                    return
                if reading[2] <= 0:
                    self._answer(422)
                    return
                if not service.drops:
                    try:
                        service.write(*reading, str(body.get("recorded_at") or ""))
                    except Exception:  # the database is down: as a real service, a 503
                        self._answer(503)
                        return
                service.accepted += 1
                self._answer(202)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": STOP_POLL_S},
            name="demo-ingest",
            daemon=True,
        )

    def write(self, message_id: str, user_id: str, rmssd_ms: float, recorded_at: str) -> None:
        import psycopg

        measured = (
            datetime.fromisoformat(recorded_at.replace("Z", "+00:00")) if recorded_at else datetime.now(UTC)
        )
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO hrv_readings (message_id, user_id, recorded_at, ln_rmssd, source_stream,"
                " source_subject) VALUES (%s, %s, %s, %s, 'synthetic', 'ingest/hrv')",
                (message_id, user_id, measured, math.log(rmssd_ms)),
            )

    def start(self) -> IngestService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
