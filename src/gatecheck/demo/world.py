"""The served demo's world, living on at its rates while the service judges it.

``gatecheck demo --serve`` starts the world once and it ticks every ``TICK_S`` seconds until
the demo stops: the normalize service receives HRV readings on ``AA_CORE_HOT`` (with sleep,
onboarding and vendor traffic beside them), processes them (pull + ack on its durable
consumer, so no backlog builds up), writes one row per message into PostgreSQL — stamped
with the message's own JetStream time, so that a window counts a message and its row alike —
and counts them in its metrics; the E2E job reports a run every 10 minutes. Each scenario
keeps its one broken thing: ``fallback`` and ``dlq`` publish their legacy message or dead
letters again every 5 minutes, ``db-stall`` writes no rows, ``db-missing`` loses one row in
six, the metrics scenarios go on at their rates (:class:`gatecheck.demo.metrics.NormalizeService`).
The warehouse needs no ticks: it is built ahead (``build_reference(until=…)``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between ticks, and HRV readings per tick (720 an hour: every 15-minute window holds
#: well over the 100 the soak criteria need as evidence).
TICK_S = 10.0
HRV_PER_TICK = 2
#: Ticks between a scenario's recurring defect on the bus (5 minutes) and between E2E runs (10).
DEFECT_EVERY = 30
E2E_EVERY = 60
SLEEP_SUBJECT = "athlete-ally.sleep.session-recorded"
VENDOR_SUBJECT = "vendor.oura.webhook"


class World:
    """The demo's sources kept alive: :meth:`tick` does one step (a test calls it directly);
    :meth:`start` runs it on a thread every ``tick_s`` seconds until :meth:`stop`."""

    def __init__(
        self,
        scenario: str,
        *,
        bus_url: str | None,
        database_url: str | None,
        e2e_dir: Path | None,
        metrics: Any = None,
        production_bus_url: str | None = None,
        tick_s: float = TICK_S,
        hrv_per_tick: int = HRV_PER_TICK,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.scenario = scenario
        self.bus_url, self.database_url, self.e2e_dir = bus_url, database_url, e2e_dir
        self.metrics = metrics  # a NormalizeService, or None
        # production's bus (a cluster) gets the same traffic; the rows follow staging's bus
        self.production_bus_url = production_bus_url
        self.tick_s = tick_s
        self.hrv_per_tick = hrv_per_tick
        self.clock = clock
        self.ticks = 0
        self.sequence = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- one step

    def tick(self) -> dict[str, int]:
        """One step of the world; what it did (messages published, rows written, …). A source
        that is down (nats-down) is skipped, never fatal."""
        done = {"hrv_messages": 0, "rows": 0, "defects": 0, "e2e_runs": 0}
        recurring = self.ticks % DEFECT_EVERY == 0
        stamped: list[tuple[int, datetime]] = []
        if self.bus_url is not None and self.scenario != "nats-down":
            stamped, defects = asyncio.run(self._bus(recurring and self.ticks > 0))
            done["hrv_messages"], done["defects"] = len(stamped), defects
        if self.production_bus_url is not None:
            after = self.sequence
            self.sequence = after - len(stamped)  # the same messages, the same sequence numbers
            try:
                asyncio.run(self._bus(recurring and self.ticks > 0, self.production_bus_url))
            except Exception as exc:  # a node down is the scenario, not the world's end
                log.debug("production bus tick: %s", exc)
            finally:
                self.sequence = max(self.sequence, after)
        if self.database_url is not None and stamped:
            done["rows"] = self._rows(stamped)
        if self.metrics is not None:
            self.metrics.add(self.hrv_per_tick, minutes=self.tick_s / 60)
        if self.e2e_dir is not None and self.ticks % E2E_EVERY == 0 and self.ticks > 0:
            from gatecheck.demo.e2e import write_reports

            done["e2e_runs"] = write_reports(self.e2e_dir, self.clock(), self.scenario)
        self.ticks += 1
        return done

    async def _bus(self, recurring: bool, url: str | None = None) -> tuple[list[tuple[int, datetime]], int]:
        """Publish this tick's traffic (on staging's bus, or ``url``); each HRV message's
        sequence and JetStream time."""
        from gatecheck.demo.bus import HRV_SUBJECT, LEGACY_STREAM, _consume, connect_bus

        connection = await connect_bus(url or self.bus_url or "")
        try:
            js = connection.jetstream()
            stamped: list[tuple[int, datetime]] = []
            for _ in range(self.hrv_per_tick):
                seq = self.sequence
                self.sequence += 1
                reading = {"athlete_id": f"ath-{seq % 37:03d}", "rmssd_ms": 40 + seq % 25, "source": "oura"}
                body = json.dumps({
                    "type": "hrv.raw-received", "message_id": f"world-{seq:07d}", "seq": seq, "world": True,
                    **reading,
                }).encode()  # fmt: skip
                ack = await js.publish(HRV_SUBJECT, body, stream="AA_CORE_HOT")
                # The row is stamped with the message's own time: a window counts both alike.
                stored = await js.get_msg("AA_CORE_HOT", ack.seq)
                stamped.append((seq, _utc(stored.time)))
                if seq % 4 == 0:
                    await js.publish(SLEEP_SUBJECT, b'{"minutes": 420}', stream="AA_CORE_HOT")
                if seq % 6 == 0:
                    await js.publish(VENDOR_SUBJECT, b'{"event": "daily_readiness"}', stream="AA_VENDOR_HOT")
            defects = 0
            if recurring and self.scenario == "fallback":
                legacy = b'{"type": "hrv.raw-received"}'
                await js.publish("athlete-ally.events.hrv.raw-received", legacy, stream=LEGACY_STREAM)
                defects = 1
            if recurring and self.scenario == "dlq":
                for i in range(3):
                    letter = json.dumps({"seq": i, "error": "schema_invalid"}).encode()
                    await js.publish("dlq.normalize.hrv.raw-received", letter, stream="AA_DLQ")
                defects = 3
            await _consume(js, self.hrv_per_tick)  # the normalize service keeps up: no backlog grows
            return stamped, defects
        finally:
            await connection.close()

    def _rows(self, stamped: list[tuple[int, datetime]]) -> int:
        """One row per HRV message, as the normalize service writes it (none in db-stall; one
        in six lost in db-missing; in db-duplicates one in six lost and another one in six
        written twice)."""
        import psycopg

        from gatecheck.demo.database import BUS_SUBJECT

        if self.scenario == "db-stall":
            return 0
        rows = [
            (
                f"world-{seq:07d}", f"ath-{seq % 37:03d}", at - timedelta(seconds=3), at,
                round(3.4 + 0.7 * math.sin(seq / 11.0), 4), "AA_CORE_HOT", BUS_SUBJECT,
            )
            for seq, at in stamped
            for _ in range(2 if self.scenario == "db-duplicates" and seq % 6 == 3 else 1)
            if not (self.scenario in ("db-missing", "db-duplicates") and seq % 6 == 0)
        ]  # fmt: skip
        with psycopg.connect(self.database_url or "", autocommit=True) as connection:
            connection.cursor().executemany(
                "INSERT INTO hrv_readings (message_id, user_id, recorded_at, created_at, ln_rmssd,"
                " source_stream, source_subject) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        return len(rows)

    # ---------------------------------------------------------------- running

    def start(self) -> World:
        """Tick on a daemon thread every ``tick_s`` until :meth:`stop` (a failed tick is
        logged and the next one tried: the world never stops the demo)."""

        def run() -> None:
            while not self._stop.wait(self.tick_s):
                try:
                    self.tick()
                except Exception as exc:
                    log.warning("demo world: a tick failed: %s", " ".join(str(exc).split()))

        self._thread = threading.Thread(target=run, name="gatecheck-demo-world", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _utc(moment: Any) -> datetime:
    """JetStream's message time (a datetime or RFC 3339 text, by nats-py version) in UTC."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = str(moment).replace("Z", "+00:00")
    if "." in text:  # nanoseconds: Python reads at most microseconds
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text).astimezone(UTC)
