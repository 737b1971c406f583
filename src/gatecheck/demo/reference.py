"""Reference warehouse: the reference schema (docs/reference-project.md), filled with realistic, deterministic data.

All rows are generated *inside* ClickHouse (``INSERT … SELECT … FROM numbers(n)`` with
``cityHash64`` as the dice), so building 50 hours of traffic takes a second and the same
``as_of`` and scenario always give the same rows.

Traffic model: sessions arrive evenly (with jitter) across three gateways/regions, two
pipelines with two models each, six orchestrators. Each session emits four lifecycle events
(request, start, first segment, end; 30 s–5 min long) that reach the warehouse 0.2–3 s
later; the stream processor pairs them into three edges once the later event has arrived;
gold sessions are written at start (version 1) and again at the end (version 2); the
hourly rollup covers every hour that ended at least five minutes before ``as_of``, at the
model grain (``network_demand_hourly``) and at the old pipeline grain
(``network_demand_pipeline_hourly``, which the model grain replaces and must add up to).

Scenarios break one thing each:

================== =====================================================================
healthy            nothing
unmatched-edges    3% of ``start->first_segment`` edges unpaired in the last 3 hours
stale-ingest       raw events (``stream_trace_events``) stopped arriving 20 minutes ago
clock-skew         5% of runner-clock events stamped 30 s in the future in the last 3 h
rollup-drift       one hour and key of the rollups counted 7 sessions twice (both grains)
unattributed-spike 60% of sessions unattributed in the last 2 hours (capabilities lost)
thin-traffic       30 sessions an hour: too little evidence for a verdict
demand-drift       the pipeline-grain rollup lost one hour of one gateway's key and counted
                   5 sessions twice in another (the model grain no longer adds up to it)
================== =====================================================================
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gatecheck.sources.clickhouse.connection import Connection

SCENARIOS = (
    "healthy",
    "unmatched-edges",
    "stale-ingest",
    "clock-skew",
    "rollup-drift",
    "unattributed-spike",
    "thin-traffic",
    "demand-drift",
)

HOURS = 50
SESSIONS_PER_HOUR = 600
THIN_SESSIONS_PER_HOUR = 30
PROCESSOR_DELAY_MS = 30_000  # the stream processor sees an event this long after ingest

TABLES = (
    "stream_trace_events",
    "network_capabilities",
    "lifecycle_edges",
    "session_facts",
    "network_demand_hourly",
    "network_demand_pipeline_hourly",
)

# Made for time windows (docs/clickhouse-server.md, "A schema made for time windows"): the
# event tables and session_facts partitioned by day of the time their windows use (every
# version of a session shares its start, so ReplacingMergeTree still sees them together),
# minmax skip indexes on the times that cannot lead the sort key (ingest_ts, and
# session_start_ts under session_facts' session_id key), the rollups by month with granules
# of a few hours' rows. A suite's read grows with its window, not the history
# (bench/history.py).
SCHEMA = (
    """CREATE TABLE {db}.stream_trace_events (
      event_id String, event_type LowCardinality(String),
      session_id String, gateway LowCardinality(String), region LowCardinality(String),
      orchestrator_local_address String,
      clock_domain LowCardinality(String),
      event_ts DateTime64(3, 'UTC'),
      ingest_ts DateTime64(3, 'UTC'),
      INDEX ingest_ts_minmax ingest_ts TYPE minmax GRANULARITY 1
    ) ENGINE = MergeTree PARTITION BY toDate(event_ts) ORDER BY (event_ts, session_id)""",
    """CREATE TABLE {db}.network_capabilities (
      snapshot_ts DateTime64(3, 'UTC'), local_address String, orchestrator_address String,
      pipeline LowCardinality(String), model_id LowCardinality(String),
      gpu_id String, region LowCardinality(String)
    ) ENGINE = MergeTree ORDER BY (local_address, snapshot_ts)""",
    """CREATE TABLE {db}.lifecycle_edges (
      session_id String,
      edge_type LowCardinality(String),
      from_event_id String, to_event_id Nullable(String),
      from_ts DateTime64(3, 'UTC'), to_ts Nullable(DateTime64(3, 'UTC')),
      ingest_ts DateTime64(3, 'UTC'),
      INDEX ingest_ts_minmax ingest_ts TYPE minmax GRANULARITY 1
    ) ENGINE = MergeTree PARTITION BY toDate(from_ts) ORDER BY (from_ts, session_id)""",
    """CREATE TABLE {db}.session_facts (
      session_id String, session_start_ts DateTime64(3, 'UTC'),
      gateway LowCardinality(String), region LowCardinality(String),
      orchestrator_address String,
      pipeline LowCardinality(String), model_id LowCardinality(String),
      attribution_source Enum8('direct' = 1, 'mapped_window' = 2, 'unattributed' = 3),
      duration_s Float64, version UInt64, ingest_ts DateTime64(3, 'UTC'),
      INDEX session_start_ts_minmax session_start_ts TYPE minmax GRANULARITY 1,
      INDEX ingest_ts_minmax ingest_ts TYPE minmax GRANULARITY 1
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toDate(session_start_ts) ORDER BY session_id""",
    """CREATE TABLE {db}.network_demand_hourly (
      hour DateTime('UTC'), gateway LowCardinality(String), region LowCardinality(String),
      pipeline LowCardinality(String), model_id LowCardinality(String),
      sessions UInt64, session_minutes Float64
    ) ENGINE = SummingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY (hour, gateway, region, pipeline, model_id)
    SETTINGS index_granularity = 64""",
    """CREATE TABLE {db}.network_demand_pipeline_hourly (
      hour DateTime('UTC'), gateway LowCardinality(String), region LowCardinality(String),
      pipeline LowCardinality(String), sessions UInt64, session_minutes Float64
    ) ENGINE = SummingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY (hour, gateway, region, pipeline)
    SETTINGS index_granularity = 32""",
)

# One row per session with every time in epoch milliseconds. {as_of_ms}, {start_ms},
# {spacing_ms}, {sessions} and the scenario flags are bound as query parameters.
_SESSIONS = """
SELECT
  number AS n,
  concat('sess-', leftPad(toString(n), 7, '0')) AS session_id,
  {start_ms:Int64} + toInt64(n) * {spacing_ms:Int64} + toInt64(cityHash64(n, 1) % {spacing_ms:Int64}) AS t_req,
  t_req + 500 + toInt64(cityHash64(n, 2) % 2500) AS t_start,
  t_start + 1000 + toInt64(cityHash64(n, 3) % 4000) AS t_first,
  t_req + 30000 + toInt64(cityHash64(n, 4) % 270000) AS t_end,
  [t_req, t_start, t_first, t_end] AS event_times,
  arrayMap(k -> 200 + toInt64(cityHash64(n, 10 + k) % 2800), [1, 2, 3, 4]) AS ingest_lags,
  arrayMap((t, lag) -> t + lag, event_times, ingest_lags) AS ingest_times,
  cityHash64(n, 5) % 3 AS gi,
  ['gw-fra-1', 'gw-iad-1', 'gw-sin-1'][gi + 1] AS gateway,
  ['eu-central', 'us-east', 'ap-southeast'][gi + 1] AS region,
  cityHash64(n, 6) % 2 AS pi,
  ['live-video-to-video', 'text-to-image'][pi + 1] AS pipeline,
  [['streamdiffusion', 'comfyui-stream'], ['sdxl-lightning', 'flux-schnell']][pi + 1][cityHash64(n, 7) % 2 + 1] AS model_id,
  cityHash64(n, 8) % 6 AS oi,
  concat('0xorch', toString(oi)) AS orchestrator_address,
  concat('0xhot', toString(oi)) AS local_address,
  cityHash64(n, 9) % 10000 AS attribution_dice,
  multiIf(
    {unattributed_spike:UInt8} = 1 AND t_req >= {as_of_ms:Int64} - 2 * 3600000 AND cityHash64(n, 30) % 100 < 60, 'unattributed',
    attribution_dice < 8600, 'direct',
    attribution_dice < 9950, 'mapped_window',
    'unattributed') AS attribution
FROM numbers({sessions:UInt64})
"""

_EVENTS = """
INSERT INTO {db}.stream_trace_events
SELECT
  concat(session_id, '-', toString(k)) AS event_id,
  ['stream_request', 'stream_start', 'first_segment', 'stream_end'][k] AS event_type,
  session_id, gateway, region,
  if(attribution = 'unattributed', '', local_address) AS orchestrator_local_address,
  ['gateway', 'runner', 'runner', 'gateway'][k] AS clock_domain,
  fromUnixTimestamp64Milli(
    event_times[k] + if({clock_skew:UInt8} = 1 AND clock_domain = 'runner'
                        AND event_times[k] >= {as_of_ms:Int64} - 3 * 3600000
                        AND cityHash64(n, 40 + k) % 100 < 5, 30000, 0), 'UTC') AS event_ts,
  fromUnixTimestamp64Milli(ingest_times[k], 'UTC') AS ingest_ts
FROM ({sessions_sql}) ARRAY JOIN [1, 2, 3, 4] AS k
WHERE ingest_times[k] <= {until_ms:Int64}
  AND NOT ({stale_ingest:UInt8} = 1 AND ingest_times[k] > {as_of_ms:Int64} - 20 * 60000)
"""

_SESSION_FACTS = """
INSERT INTO {db}.session_facts
SELECT
  session_id,
  fromUnixTimestamp64Milli(t_req, 'UTC'),
  gateway, region,
  if(attribution = 'unattributed', '', orchestrator_address),
  pipeline, model_id,
  attribution,
  if(v = 2, (t_end - t_req) / 1000., 0.),
  v,
  fromUnixTimestamp64Milli(if(v = 2, ingest_times[4], ingest_times[2]) + {delay_ms:Int64}, 'UTC')
FROM ({sessions_sql}) ARRAY JOIN [{version:UInt8}] AS v
WHERE if(v = 2, ingest_times[4], ingest_times[2]) + {delay_ms:Int64} <= {until_ms:Int64}
"""

_CAPABILITIES = """
INSERT INTO {db}.network_capabilities
SELECT
  fromUnixTimestamp64Milli({start_ms:Int64} + toInt64(number) * 3600000, 'UTC'),
  concat('0xhot', toString(o)), concat('0xorch', toString(o)),
  ['live-video-to-video', 'text-to-image'][o % 2 + 1],
  [['streamdiffusion', 'comfyui-stream'], ['sdxl-lightning', 'flux-schnell']][o % 2 + 1][intDiv(o, 2) % 2 + 1],
  concat('gpu-', toString(o)),
  ['eu-central', 'us-east', 'ap-southeast'][o % 3 + 1]
FROM numbers({hours:UInt64}) ARRAY JOIN range(6) AS o
"""

# The hourly rollup job: every hour that ended at least 5 minutes before as_of, written in
# two inserts per hour (as a job that retries or runs in shards would), which
# SummingMergeTree folds together — sum(sessions) reads the same before and after merges.
_ROLLUP = """
INSERT INTO {db}.network_demand_hourly
SELECT toDateTime(toStartOfHour(session_start_ts), 'UTC') AS hour,
       gateway, region, pipeline, model_id,
       count() AS sessions, sum(duration_s) / 60 AS session_minutes
FROM {db}.session_facts FINAL
WHERE cityHash64(session_id) % 2 = {part:UInt8}
GROUP BY hour, gateway, region, pipeline, model_id
HAVING hour + INTERVAL 1 HOUR <= fromUnixTimestamp64Milli({until_ms:Int64} - 5 * 60000, 'UTC')
"""

# The pipeline grain: the rollup before model_id was added, from the same gold sessions.
_PIPELINE_ROLLUP = """
INSERT INTO {db}.network_demand_pipeline_hourly
SELECT toDateTime(toStartOfHour(session_start_ts), 'UTC') AS hour,
       gateway, region, pipeline,
       count() AS sessions, sum(duration_s) / 60 AS session_minutes
FROM {db}.session_facts FINAL
GROUP BY hour, gateway, region, pipeline
HAVING hour + INTERVAL 1 HOUR <= fromUnixTimestamp64Milli({until_ms:Int64} - 5 * 60000, 'UTC')
"""

# demand-drift: the pipeline grain lost gw-fra-1's text-to-image key 2 hours before as_of and
# counted 5 sessions twice for gw-iad-1's 4 hours before.
_PIPELINE_DRIFT = (
    """ALTER TABLE {db}.network_demand_pipeline_hourly DELETE
    WHERE hour = toDateTime(toStartOfHour(fromUnixTimestamp64Milli({as_of_ms:Int64}, 'UTC')), 'UTC') - INTERVAL 2 HOUR
      AND gateway = 'gw-fra-1' AND pipeline = 'text-to-image'
    SETTINGS mutations_sync = 1""",
    """INSERT INTO {db}.network_demand_pipeline_hourly
    SELECT toDateTime(toStartOfHour(fromUnixTimestamp64Milli({as_of_ms:Int64}, 'UTC')), 'UTC') - INTERVAL 4 HOUR,
           'gw-iad-1', 'us-east', 'text-to-image', 5, 25.0""",
)

# rollup-drift: the rollup job counted 7 sessions twice, at both grains alike (the grains
# still agree with each other; neither agrees with the gold sessions).
_DRIFT = (
    """INSERT INTO {db}.network_demand_hourly
    SELECT toDateTime(toStartOfHour(fromUnixTimestamp64Milli({as_of_ms:Int64}, 'UTC')), 'UTC') - INTERVAL 3 HOUR,
           'gw-iad-1', 'us-east', 'text-to-image', 'sdxl-lightning', 7, 35.0""",
    """INSERT INTO {db}.network_demand_pipeline_hourly
    SELECT toDateTime(toStartOfHour(fromUnixTimestamp64Milli({as_of_ms:Int64}, 'UTC')), 'UTC') - INTERVAL 3 HOUR,
           'gw-iad-1', 'us-east', 'text-to-image', 7, 35.0""",
)


# The processor sees an event PROCESSOR_DELAY_MS after it is ingested; an edge whose later event
# it has not seen yet is written unmatched (to_event_id NULL).
_EDGES = """
INSERT INTO {db}.lifecycle_edges
SELECT
  session_id,
  ['request->start', 'start->first_segment', 'first_segment->end'][k] AS edge_type,
  concat(session_id, '-', toString(k)) AS from_event_id,
  if(matched, concat(session_id, '-', toString(k + 1)), NULL) AS to_event_id,
  fromUnixTimestamp64Milli(event_times[k], 'UTC') AS from_ts,
  if(matched, fromUnixTimestamp64Milli(event_times[k + 1], 'UTC'), NULL) AS to_ts,
  fromUnixTimestamp64Milli(if(matched, ingest_times[k + 1], ingest_times[k]) + {delay_ms:Int64}, 'UTC') AS ingest_ts
FROM (
  SELECT *, k,
    ingest_times[k + 1] + {delay_ms:Int64} <= {until_ms:Int64}
    AND NOT ({unmatched_edges:UInt8} = 1 AND k = 2
             AND event_times[k] >= {as_of_ms:Int64} - 3 * 3600000
             AND cityHash64(n, 50) % 100 < 3) AS matched
  FROM ({sessions_sql}) ARRAY JOIN [1, 2, 3] AS k
)
WHERE ingest_times[k] + {delay_ms:Int64} <= {until_ms:Int64}
"""


def build_reference(
    connection: Connection,
    database: str,
    as_of: datetime,
    scenario: str = "healthy",
    sessions_per_hour: int | None = None,
    hours: int = HOURS,
    until: datetime | None = None,
) -> dict[str, int]:
    """(Re)create the reference tables in ``database`` with the reference schema and ``scenario``'s data at ``as_of``.

    ``sessions_per_hour`` overrides the scenario's traffic and ``hours`` how far back it goes
    (benchmarks; the default is the demo's 50 hours). ``until`` (a served demo): the data goes
    on past ``as_of`` to ``until`` as the warehouse will have written it by then — rows with
    future ingest times, which a window ending now does not see, so the warehouse stays fresh
    as the clock advances — and each scenario's defect, anchored at ``as_of``, goes on with it
    (unmatched edges, clock skew, unattributed sessions from then on; no raw event after
    stale-ingest's stop). Returns the row
    count of each table. ``connection``: a :class:`gatecheck.sources.clickhouse.connection.Connection` (chDB or a
    server), e.g. ``ClickHouse().connect(Target.parse("chdb://PATH", root), create=True)``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    as_of = as_of.astimezone(UTC)
    as_of_ms = int(as_of.timestamp() * 1000)
    per_hour = THIN_SESSIONS_PER_HOUR if scenario == "thin-traffic" else SESSIONS_PER_HOUR
    if sessions_per_hour is not None:  # benchmarks scale the traffic up
        per_hour = sessions_per_hour
    spacing_ms = 3_600_000 // per_hour
    until_ms = max(as_of_ms, int(until.astimezone(UTC).timestamp() * 1000)) if until else as_of_ms
    params = {
        "as_of_ms": as_of_ms,
        "until_ms": until_ms,
        "start_ms": as_of_ms - hours * 3_600_000,
        "spacing_ms": spacing_ms,
        "sessions": hours * per_hour + (until_ms - as_of_ms) // spacing_ms,
        "hours": hours + -(-(until_ms - as_of_ms) // 3_600_000),
        "delay_ms": PROCESSOR_DELAY_MS,
        "unattributed_spike": int(scenario == "unattributed-spike"),
        "clock_skew": int(scenario == "clock-skew"),
        "stale_ingest": int(scenario == "stale-ingest"),
        "unmatched_edges": int(scenario == "unmatched-edges"),
    }
    db = f"`{database}`"
    connection.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    for table in TABLES:
        connection.command(f"DROP TABLE IF EXISTS {db}.{table}")
    for ddl in SCHEMA:
        connection.command(ddl.format(db=db))

    def run(template: str, **extra: Any) -> None:
        sql = template.replace("{sessions_sql}", _SESSIONS).replace("{db}", db)
        connection.command(sql, {**params, **extra})

    run(_EVENTS)
    run(_EDGES)
    # Separate inserts: within one insert ReplacingMergeTree would already keep only v2.
    for version in (1, 2):
        run(_SESSION_FACTS, version=version)
    run(_CAPABILITIES)
    for part in (0, 1):
        run(_ROLLUP, part=part)
    run(_PIPELINE_ROLLUP)
    if scenario == "rollup-drift":
        for statement in _DRIFT:
            run(statement)
    if scenario == "demand-drift":
        for statement in _PIPELINE_DRIFT:
            run(statement)
    counts = {}
    for table in TABLES:
        frame = connection.query_df(f"SELECT count() AS n FROM {db}.{table}")
        counts[table] = int(frame["n"].iloc[0])
    return counts
