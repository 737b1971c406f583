"""NATS JetStream source (nats-py, asyncio).

A suite's query names streams and consumers to describe and message counts to take in the
check's window (see :class:`NatsQuery`). Only JetStream's info and
consumer APIs are used: the source never publishes, never fetches a message body, never
acks.

Exact windowed counts without reading messages: an ephemeral pull consumer created with
``deliver_policy=by_start_time`` and ``opt_start_time=T`` (and the subject filter) reports
in ``num_pending`` how many stored messages were published at or after ``T``. Two such
consumers, at ``window_start`` and ``window_end``, give the count in ``[start, end)`` as the
difference. Messages published while we ask land after ``window_end`` and so raise both
numbers alike; the end consumer is read before and after the start consumer and the pair is
taken only when it did not move, so the difference is exact. Both consumers are deleted
afterwards (and expire on their own after a minute if we cannot).

Frame, one row per described stream (``kind=stream``), per described consumer
(``kind=consumer``) and, when the query has counts, one ``kind=window`` row holding every
count and derived column.

Why one module of ~880 lines: the query model, its checks and the two readers (stream and
consumer info, windowed counts) speak one vocabulary of streams, subjects and consumers;
apart, each half would import the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator

from gatecheck._values import document_time, whole_characters
from gatecheck.arith import evaluate as evaluate_expression
from gatecheck.errors import (
    ConfigError,
    QueryError,
    SourceTimeout,
    SourceUnavailable,
    network_reason,
    redact,
    server_of,
)
from gatecheck.frozen import NAME, Frozen
from gatecheck.sources.base import (
    PRESENT_TOLERANCE,
    QueryParameters,
    Source,
    SourceSettings,
    clock_problem,
    past_for_the_present,
)
from gatecheck.sources.probe import Probe, counted

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------- configuration and query


class NatsSourceConfig(SourceSettings):
    """A NATS JetStream server, or a cluster's servers separated by commas
    (``nats://n1:4222,nats://n2:4222``: the client reaches whichever answers). Credentials
    come from files or ``${VAR}`` expansion."""

    type: Literal["nats"]
    credentials_file: str | None = None  # a .creds file (JWT + nkey seed)
    nkey_seed_file: str | None = None  # a file holding an nkey seed
    token: SecretStr | None = None  # write "${NATS_TOKEN}"
    tls_ca_file: str | None = None  # CA bundle for tls:// servers
    tls_cert_file: str | None = None  # client certificate (mutual TLS)
    tls_key_file: str | None = None
    schemes: ClassVar[tuple[str, ...]] = ("nats", "tls")

    @field_validator("url")
    @classmethod
    def _every_server(cls, value: str) -> str:
        for server in value.split(","):
            scheme = server.strip().split("://", 1)[0] if "://" in server else ""
            if scheme not in cls.schemes or not server.strip().split("://", 1)[1]:
                raise ValueError("each server of a cluster (separated by commas) is a nats:// or tls:// URL")
        return value

    @property
    def servers(self) -> list[str]:
        return [server.strip() for server in self.url.split(",")]


_ARITHMETIC = re.compile(r"^[\sA-Za-z0-9_.+\-*/()]+$")


class NatsStream(Frozen):
    """A stream to describe; ``subjects`` (if given) becomes the ``expected_subjects`` column."""

    name: str
    subjects: list[str] | None = None


class NatsConsumer(Frozen):
    """A durable consumer to describe; expected values become ``expected_*`` columns."""

    stream: str
    name: str
    filter_subject: str | None = None
    ack_policy: Literal["explicit", "all", "none"] | None = None


class NatsCount(Frozen):
    """An exact count of messages in the check's window on a stream (and subject filter)."""

    name: str
    stream: str
    subject: str | None = None

    @field_validator("name")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a count name is a column name: lowercase letters, digits and _")
        return value


_COLUMN_FROM = re.compile(
    r"^(header:[!-9;-~]+|payload:[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*|sequence|time|subject)$"
)


class NatsMessages(Frozen):
    """A subject's messages in the window, one row each, for a ``reconcile:`` side: each
    column read from a header (``header:Nats-Msg-Id``), a JSON payload field
    (``payload:reading.athlete_id``), or the message's ``sequence``, ``time`` or ``subject``.
    More than ``max_messages`` in the window makes the check inconclusive (never a partial
    read)."""

    stream: str
    subject: str
    columns: dict[str, str]
    max_messages: int = Field(default=100_000, ge=1, le=10_000_000)

    @field_validator("columns")
    @classmethod
    def _readable(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("name at least the key column and where it is read")
        for name, where in value.items():
            if not NAME.match(name):
                raise ValueError(f"column {name!r}: use lowercase letters, digits and _")
            if not _COLUMN_FROM.match(where):
                raise ValueError(
                    f"column {name!r}: {where!r} is not header:NAME, payload:FIELD[.FIELD…], "
                    "sequence, time or subject"
                )
        return value


class NatsQuery(Frozen):
    """The ``query:`` of a suite on a NATS source (see docs/sources/nats.md)."""

    #: Keys that mark a suite's ``query:`` mapping as this form.
    form_keys: ClassVar[frozenset[str]] = frozenset({"streams", "consumers", "counts", "derive", "messages"})

    streams: list[NatsStream] = []
    consumers: list[NatsConsumer] = []
    counts: list[NatsCount] = []
    # Columns computed on the window row from the counts, e.g. share = a / (a + b).
    derive: dict[str, str] = {}
    # A subject's messages, one row each (a reconcile: side only).
    messages: NatsMessages | None = None

    @field_validator("derive")
    @classmethod
    def _arithmetic_only(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            if not NAME.match(name):
                raise ValueError(f"derived column {name!r}: use lowercase letters, digits and _")
            if not _ARITHMETIC.match(expression):
                raise ValueError(
                    f"derived column {name!r}: only names, numbers, + - * / and parentheses are allowed"
                )
        return value

    def problems(self) -> list[str]:
        """Names a derived expression uses must be counts or earlier derived columns."""
        from gatecheck.arith import names_in

        known = {c.name for c in self.counts}
        found: list[str] = []
        if self.messages is not None:
            if self.streams or self.consumers or self.counts or self.derive:
                found.append("messages: reads a subject's messages alone (no streams, consumers, counts)")
            return found
        if not (self.streams or self.consumers or self.counts):
            found.append("a NATS query needs at least one of streams, consumers, counts")
        for name, expression in self.derive.items():
            try:
                used = names_in(expression)
            except ValueError as exc:
                found.append(f"derive.{name}: {exc}")
                continue
            unknown = sorted(used - known)
            if unknown:
                found.append(
                    f"derive.{name}: unknown name(s) {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(known)) or 'none'})"
                )
            known.add(name)
        return found


def explain_query(
    name: str, config: NatsSourceConfig, query: Any, parameters: QueryParameters, root: Path
) -> dict[str, Any]:
    """The JetStream API calls the source makes for ``query`` (``gatecheck explain``)."""
    requests: list[dict[str, Any]] = []
    for stream in query.streams:
        expected = ""
        if stream.subjects is not None:
            expected = f" (expected subjects: {', '.join(stream.subjects)})"
        requests.append({"what": "stream info", "text": f"$JS.API.STREAM.INFO.{stream.name}{expected}"})
    for consumer in query.consumers:
        requests.append(
            {"what": "consumer info", "text": f"$JS.API.CONSUMER.INFO.{consumer.stream}.{consumer.name}"}
        )
    start, end = parameters["window_start"], parameters["window_end"]
    assert isinstance(start, datetime) and isinstance(end, datetime)
    for count in query.counts:
        on = count.stream + (f" (subject {count.subject})" if count.subject else "")
        requests.append(
            {
                "what": f"count {count.name}",
                "text": (
                    f"messages on {on} stamped in [{document_time(start)}, {document_time(end)}): "
                    "two ephemeral "
                    "consumers (deliver by start time at each end, no acks, in memory, deleted after), "
                    "pending from the start minus pending from the end, read until stable"
                ),
            }
        )
    for column, expression in query.derive.items():
        requests.append({"what": f"derive {column}", "text": f"{column} = {expression} (computed here)"})
    if query.messages is not None:
        spec = query.messages
        window = f"[{document_time(start)}, {document_time(end)})"
        requests.append(
            {
                "what": "count of the messages",
                "text": f"messages of {spec.subject} on {spec.stream} stamped in {window}, counted as "
                f"a count is (two ephemeral consumers); more than max_messages ({spec.max_messages}) "
                "stops here: inconclusive",
            }
        )
        columns = ", ".join(f"{c} from {w}" for c, w in spec.columns.items())
        requests.append(
            {
                "what": "the messages",
                "text": f"an ordered consumer on {spec.stream} (subject {spec.subject}) delivering from "
                f"{document_time(start)}, read until {document_time(end)}: {columns}",
            }
        )
    return {"sent_to": f"NATS at {redact(config.url)}", "requests": requests}


async def check_source(name: str, config: NatsSourceConfig, root: Path, suites: list[Any]) -> Probe:
    """Connect, read the server's version, and check that every stream (and durable consumer)
    the suites name exists."""
    from nats.js.errors import NotFoundError

    streams: dict[str, set[str]] = {}
    consumers: dict[tuple[str, str], set[str]] = {}
    for suite in suites:
        query = suite.query
        for stream in query.streams:
            streams.setdefault(stream.name, set()).add(suite.name)
        for count in query.counts:
            streams.setdefault(count.stream, set()).add(suite.name)
        if query.messages is not None:  # a reconcile side's messages
            streams.setdefault(query.messages.stream, set()).add(suite.name)
        for consumer in query.consumers:
            streams.setdefault(consumer.stream, set()).add(suite.name)
            consumers.setdefault((consumer.stream, consumer.name), set()).add(suite.name)
    source = NatsSource(name, config, root)
    try:
        started = time.perf_counter()
        try:
            jsm = await source._jsm()
        except (SourceUnavailable, SourceTimeout) as exc:
            return Probe(reachable=False, problems=[str(exc)])
        latency = (time.perf_counter() - started) * 1000
        assert source._connection is not None
        server = source._connection.connected_server_version
        version = f"NATS {server.major}.{server.minor}.{server.patch}"
        problems: list[str] = []
        missing: set[str] = set()
        try:
            for stream, users in sorted(streams.items()):
                try:
                    await source._stream_info(stream, f"stream {stream}")  # (and the server's clock)
                except NotFoundError:
                    missing.add(stream)
                    problems.append(f"stream {stream} does not exist (named by {', '.join(sorted(users))})")
            for (stream, consumer), users in sorted(consumers.items()):
                if stream in missing:
                    continue
                try:
                    await source._call(
                        f"consumer {stream}/{consumer}",
                        functools.partial(jsm.consumer_info, stream, consumer),
                    )
                except NotFoundError:
                    problems.append(
                        f"consumer {stream}/{consumer} does not exist (named by {', '.join(sorted(users))})"
                    )
        except (SourceUnavailable, SourceTimeout, QueryError) as exc:
            problems.append(str(exc))
        return Probe(
            version=version,
            latency_ms=latency,
            checked=f"{counted(len(streams), 'stream')}, {counted(len(consumers), 'consumer')} named",
            problems=problems,
        )
    finally:
        await source.close()


# ---------------------------------------------------------------- the source


log = logging.getLogger(__name__)
T = TypeVar("T")

#: Columns of the frame, in order: every row kind has all of them (NULL where they do not
#: apply), then the window row's counts and derived columns.
COLUMNS = (
    "kind", "stream", "consumer", "exists",
    "subjects", "expected_subjects", "replicas", "current_replicas", "lagging_replicas",
    "storage", "retention", "discard",
    "max_age_s", "messages", "bytes", "first_seq", "last_seq", "first_ts", "last_ts",
    "consumer_count",
    "filter_subject", "expected_filter_subject", "ack_policy", "expected_ack_policy",
    "num_pending", "num_ack_pending", "num_redelivered", "last_active",
)  # fmt: skip
_STABLE_READS = 5
_EPHEMERAL_TTL_S = 60.0
#: More messages deleted from a stream's middle than this: too many to place against a window.
_DELETED_MAX = 100_000


def _enum(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _stored_at(text: Any) -> datetime | None:
    """A JetStream time (RFC 3339, nanoseconds: ``2026-12-06T03:40:00.123456789Z``) as a UTC
    datetime; Go's zero time (``0001-01-01T00:00:00Z``: never) as None."""
    if not isinstance(text, str) or text.startswith("0001-01-01"):
        return None
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if found is None:
        return None
    fraction = (found.group(2) or ".0")[:7]  # microseconds: Python's precision
    zone = found.group(3).replace("Z", "+00:00")
    return datetime.fromisoformat(found.group(1) + fraction + zone).astimezone(UTC)


def _time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return document_time(value)
    return str(value)


class NatsSource(Source):
    """Answers :class:`NatsQuery` queries from one NATS server (or cluster URL)."""

    def __init__(self, name: str, config: NatsSourceConfig, root: Path) -> None:
        super().__init__(name, config)
        self.config: NatsSourceConfig = config
        self.root = root
        self._connection: Any = None
        self._last_error: BaseException | None = None
        self._lock = asyncio.Lock()

    # ---------------------------------------------------------------- connection

    def _path(self, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value)
        path = path if path.is_absolute() else self.root / path
        if not path.is_file():
            raise ConfigError(f"source {self.name!r}: file {path} does not exist")
        return str(path)

    def _connect_options(self) -> dict[str, Any]:
        config = self.config

        async def remember(exc: Exception) -> None:  # nats-py prints tracebacks by default
            self._last_error = exc
            log.debug("nats %s: %s", self.name, exc)

        options: dict[str, Any] = {
            "servers": config.servers,
            "connect_timeout": self.timeout,
            "allow_reconnect": False,
            # nats-py retries the first connect forever with 0; 1 means one try, then give up.
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.1,
            "error_cb": remember,
            "name": "gatecheck",
        }
        if config.credentials_file:
            options["user_credentials"] = self._path(config.credentials_file)
        if config.nkey_seed_file:
            options["nkeys_seed"] = self._path(config.nkey_seed_file)
        if config.token is not None:
            options["token"] = config.token.get_secret_value()
        if any(u.startswith("tls://") for u in config.servers) or config.tls_ca_file or config.tls_cert_file:
            context = ssl.create_default_context(cafile=self._path(config.tls_ca_file))
            if config.tls_cert_file:
                context.load_cert_chain(
                    self._path(config.tls_cert_file) or "", self._path(config.tls_key_file)
                )
            options["tls"] = context
        return options

    async def _jsm(self) -> Any:
        async with self._lock:
            if self._connection is None or not self._connection.is_connected:
                from nats.aio.client import Client

                await self.close()  # a connection the server dropped is not reused
                client = Client()
                try:
                    await asyncio.wait_for(client.connect(**self._connect_options()), self.timeout + 1)
                    self._connection = client
                except (ConfigError, ssl.SSLError) as exc:
                    raise ConfigError(str(exc)) from exc
                except asyncio.CancelledError:
                    # A stop during the attempt: nats-py would leave its socket open too.
                    with contextlib.suppress(Exception):
                        await client.close()
                    raise
                except Exception as exc:
                    # nats-py leaves the failed attempt's socket open; close it here.
                    with contextlib.suppress(Exception):
                        await client.close()
                    cause = self._last_error or exc
                    reason = network_reason(cause) or network_reason(exc) or _describe(cause)
                    server = ", ".join(server_of(u) for u in self.config.servers)
                    raise SourceUnavailable(f"cannot reach NATS at {server}: {reason}") from exc
            return self._connection.jsm(timeout=self.timeout)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one JetStream API call, translating nats-py's errors."""
        from nats import errors as nats_errors
        from nats.js import errors as js_errors

        try:
            return await asyncio.wait_for(call(), self.timeout + 1)
        except js_errors.NotFoundError:
            raise
        except js_errors.ServiceUnavailableError as exc:
            raise SourceUnavailable(f"{what}: JetStream is not available on the server") from exc
        except js_errors.APIError as exc:
            raise QueryError(f"{what}: {exc.description or exc}") from exc
        except (TimeoutError, nats_errors.TimeoutError) as exc:
            raise SourceTimeout(f"{what}: no answer within {self.timeout:g}s") from exc
        except (
            nats_errors.ConnectionClosedError,
            nats_errors.NoServersError,
            nats_errors.StaleConnectionError,
            nats_errors.UnexpectedEOF,
            nats_errors.OutboundBufferLimitError,
            ConnectionError,
        ) as exc:
            reason = network_reason(exc) or _describe(exc)
            server = ", ".join(server_of(u) for u in self.config.servers)
            raise SourceUnavailable(f"{what}: connection to NATS at {server} lost ({reason})") from exc
        except nats_errors.Error as exc:
            raise SourceUnavailable(f"{what}: {_describe(exc)}") from exc

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), min(self.timeout, 5.0))

    # ---------------------------------------------------------------- queries

    async def query(self, text: Any, parameters: QueryParameters) -> pd.DataFrame:
        if not isinstance(text, NatsQuery):
            raise QueryError("a NATS source needs a streams/consumers/counts query, not SQL")
        query = text
        if query.streams or query.consumers:  # their state now; counts look back by time
            tolerance = max(PRESENT_TOLERANCE, timedelta(seconds=self.timeout))
            problem = past_for_the_present(
                parameters.get("as_of"), "a stream's or a consumer's state", tolerance
            )
            if problem is not None:
                raise QueryError(f"{problem} (counts: and messages: look back by time)")
        jsm = await self._jsm()
        rows: list[dict[str, Any]] = []
        for stream in query.streams:
            rows.append(await self._stream_row(jsm, stream))
        for consumer in query.consumers:
            rows.append(await self._consumer_row(jsm, consumer))
        if query.counts:
            start, end = parameters["window_start"], parameters["window_end"]
            if not isinstance(start, datetime) or not isinstance(end, datetime):
                raise QueryError("counts need window_start and window_end")
            window: dict[str, Any] = {"kind": "window", "stream": "", "consumer": ""}
            for count in query.counts:
                window[count.name] = await self._count(jsm, count, start, end)
            for name, expression in query.derive.items():
                value = evaluate_expression(expression, window)
                window[name] = None if math.isnan(value) else value
            rows.append(window)
        # Every documented column, always (NULL where a row kind has no such value): the
        # frame's shape never depends on what exists, so a missing consumer is judged on its
        # `exists` column instead of erroring on an absent `filter_subject`.
        extra = [c for c in rows[-1] if c not in COLUMNS] if rows else []
        import pandas as pd

        return pd.DataFrame(rows, columns=[*COLUMNS, *extra])

    async def records(self, text: Any, parameters: QueryParameters, columns: list[str]) -> list[list[Any]]:
        """A ``messages:`` query's messages in the window (:meth:`messages`)."""
        spec = text.messages if isinstance(text, NatsQuery) else None
        start, end = parameters.get("window_start"), parameters.get("window_end")
        if spec is None or not isinstance(start, datetime) or not isinstance(end, datetime):
            raise QueryError("records need a messages: query and the window")
        return await self.messages(spec, start, end, columns)

    async def messages(
        self, spec: NatsMessages, start: datetime, end: datetime, columns: list[str]
    ) -> list[list[Any]]:
        """The values of ``columns`` of every message of ``spec.subject`` stored in
        ``[start, end)``, in stream order, read with an ordered consumer from ``start``. The
        window's count is taken first (exactly, without reading): more than
        ``max_messages`` raises :class:`TooMuchToRead`, nothing read."""
        from nats.js.api import ConsumerConfig, DeliverPolicy

        jsm = await self._jsm()
        counted_spec = NatsCount(name="messages", stream=spec.stream, subject=spec.subject)
        expected = await self._count(jsm, counted_spec, start, end)
        what = f"messages of {spec.subject} on {spec.stream}"
        if expected > spec.max_messages:
            raise TooMuchToRead(
                f"{what}: {expected} in the window, more than max_messages ({spec.max_messages}); "
                "a shorter window or a higher max_messages"
            )
        if expected == 0:
            return []
        js = self._connection.jetstream(timeout=self.timeout)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)
        subscription = await self._call(
            what,
            lambda: js.subscribe(
                spec.subject, stream=spec.stream, config=config, ordered_consumer=True,
                idle_heartbeat=max(1.0, min(5.0, self.timeout / 2)),
            ),
        )  # fmt: skip
        readers = [_reader(spec.columns[c]) for c in columns]
        rows: list[list[Any]] = []
        try:
            while len(rows) < expected:
                message = await self._call(what, lambda: subscription.next_msg(timeout=self.timeout))
                if message.metadata.timestamp >= end:
                    break
                payload = _Payload(message.data)
                rows.append([read(message, payload) for read in readers])
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(subscription.unsubscribe(), self.timeout)
        if len(rows) < expected:
            # Removed between the count and the read (max_age reaching the window's start, a
            # deletion): the ordered consumer skips what is gone, and the window read would be
            # part of itself — a message never written to the other side, unread, is none.
            raise QueryError(
                f"{what}: {expected} counted in the window, only {len(rows)} left to read: messages "
                "were removed while the window was read (the stream's limits or a deletion); it cannot "
                "be read whole"
            )
        return rows

    async def _stream_row(self, jsm: Any, spec: NatsStream) -> dict[str, Any]:
        from nats.js.errors import NotFoundError

        row: dict[str, Any] = {"kind": "stream", "stream": spec.name, "consumer": ""}
        if spec.subjects is not None:
            row["expected_subjects"] = ",".join(sorted(spec.subjects))
        try:
            info, first_ts, last_ts = await self._stream_info(spec.name, f"stream {spec.name}")
        except NotFoundError:
            return row | {"exists": False}
        config, state = info.config, info.state
        current, lagging = _replica_states(info.cluster)
        return row | {
            "exists": True,
            "subjects": ",".join(sorted(config.subjects or [])),
            "replicas": config.num_replicas or 1,
            "current_replicas": current,
            "lagging_replicas": lagging,
            "storage": _enum(config.storage),
            "retention": _enum(config.retention),
            "discard": _enum(config.discard),
            "max_age_s": float(config.max_age or 0),
            "messages": state.messages,
            "bytes": state.bytes,
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
            "first_ts": _time(first_ts),
            "last_ts": _time(last_ts),
            "consumer_count": state.consumer_count,
        }

    async def _consumer_row(self, jsm: Any, spec: NatsConsumer) -> dict[str, Any]:
        from nats.js.errors import NotFoundError

        row: dict[str, Any] = {"kind": "consumer", "stream": spec.stream, "consumer": spec.name}
        if spec.filter_subject is not None:
            row["expected_filter_subject"] = spec.filter_subject
        if spec.ack_policy is not None:
            row["expected_ack_policy"] = spec.ack_policy
        try:
            info = await self._call(
                f"consumer {spec.stream}/{spec.name}", lambda: jsm.consumer_info(spec.stream, spec.name)
            )
        except NotFoundError:
            return row | {"exists": False}
        delivered = info.delivered
        return row | {
            "exists": True,
            "filter_subject": info.config.filter_subject or "",
            "ack_policy": _enum(info.config.ack_policy),
            "num_pending": info.num_pending,
            "num_ack_pending": info.num_ack_pending,
            "num_redelivered": info.num_redelivered,
            "last_active": _time(getattr(delivered, "last_active", None)),
        }

    async def _count(self, jsm: Any, spec: NatsCount, start: datetime, end: datetime) -> int:
        from nats.js.errors import NotFoundError

        what = f"count on {spec.stream}" + (f" ({spec.subject})" if spec.subject else "")
        created: list[str] = []
        try:
            info = await self._holds_the_window(spec.stream, None, what)  # its retention, first
            taken = list(info.config.subjects or [])
            if spec.subject is not None and taken and not any(overlap(spec.subject, s) for s in taken):
                # nats-server counts 0 for such a filter: a misspelt subject would be no
                # fallback event, no dead letter, ever
                raise QueryError(
                    f"{what}: stream {spec.stream} takes {', '.join(taken)}; no subject it takes "
                    f"matches {spec.subject}, so the count would be 0 whatever was stored"
                )
            at_end = await self._ephemeral(jsm, spec, end, what)
            created.append(at_end)
            at_start = await self._ephemeral(jsm, spec, start, what)
            created.append(at_start)
            for _ in range(_STABLE_READS):
                before = await self._pending(jsm, spec.stream, at_end, what)
                from_start = await self._pending(jsm, spec.stream, at_start, what)
                after = await self._pending(jsm, spec.stream, at_end, what)
                if before == after:
                    info = await self._holds_the_window(spec.stream, start, what)
                    if info.state.num_deleted:
                        window = (start, at_start, at_end)
                        await self._none_deleted_within(jsm, spec, window, info.state.num_deleted, what)
                    return max(0, from_start - before)
            raise SourceTimeout(
                f"{what}: the stream kept changing; no stable count after {_STABLE_READS} reads"
            )
        except NotFoundError as exc:
            raise QueryError(f"{what}: stream {spec.stream} does not exist") from exc
        finally:
            for name in created:
                try:
                    await asyncio.wait_for(jsm.delete_consumer(spec.stream, name), self.timeout)
                except Exception as exc:  # the inactive threshold removes it anyway
                    log.debug("deleting ephemeral consumer %s/%s failed: %s", spec.stream, name, exc)

    async def _holds_the_window(self, stream: str, start: datetime | None, what: str) -> Any:
        """QueryError unless ``stream`` still holds every message it stored since ``start``: a
        stream that drops consumed messages (interest or work-queue retention), or one whose
        limits (max_age, max_msgs, max_bytes) removed messages stored after ``start``, counts
        only what is left — a fallback event or a dead letter no longer stored is none.
        Without ``start``: the retention only (before the counting consumers are created).
        Returns the stream's info."""
        from nats.js.api import RetentionPolicy

        info, first_ts, last_ts = await self._stream_info(stream, what)
        retention = info.config.retention
        if retention is not None and retention != RetentionPolicy.LIMITS:
            raise QueryError(
                f"{what}: stream {stream} keeps a message only until it is consumed ({_enum(retention)} "
                "retention), so a count over the window would miss the consumed ones"
            )
        state = info.state
        if start is None or state.first_seq <= 1:
            return info  # only the retention asked, or nothing removed
        # the newest removed message was stored at most when the oldest kept one was (or, none
        # kept, when the last one was)
        newest_removed = first_ts if state.messages else last_ts
        if newest_removed is None or newest_removed > start:
            kept = f"holds messages from {_time(first_ts)}" if state.messages else "holds none"
            raise QueryError(
                f"{what}: stream {stream} {kept} (the {state.first_seq - 1} before were removed, by its "
                f"limits or deleted), and the window starts at {_time(start)}: a count over it would miss "
                "the removed ones — keep the stream's messages longer than the window, and delete none"
            )
        return info

    async def _none_deleted_within(
        self, jsm: Any, spec: NatsCount, window: tuple[datetime, str, str], holds: int, what: str
    ) -> None:
        """QueryError if a message deleted from the middle of ``spec.stream`` (``nats stream
        rmm``, a purge by subject, ``max_msgs_per_subject``) may have been stored in the window:
        a count leaves it out, so a dead letter deleted after the fact would be none. A deleted
        message has no time left, so the window is told by sequence: from where an unfiltered
        consumer by ``start`` time begins (and the deleted run just below it, which may have
        been stored after ``start``) to where the end consumer begins. A deleted message of
        another subject counts too: which subject it had is gone with it. ``window``: its
        start and the consumers at its start and end; ``holds``: the stream's deleted count."""
        import json

        start, at_start, at_end = window
        if holds > _DELETED_MAX:
            raise QueryError(
                f"{what}: stream {spec.stream} holds {holds} deleted messages, too many "
                "to tell whether one was stored in the window"
            )
        found = await self._call(
            what,
            lambda: self._connection.request(
                f"$JS.API.STREAM.INFO.{spec.stream}", b'{"deleted_details": true}', timeout=self.timeout
            ),
        )
        try:
            deleted = set(json.loads(found.data)["state"].get("deleted") or ())
        except (ValueError, KeyError, TypeError) as exc:
            raise QueryError(f"{what}: stream {spec.stream}: an unreadable stream info") from exc
        first = at_start
        if spec.subject is not None:  # a filtered consumer skips ahead to its subject's first message
            first = await self._ephemeral(jsm, NatsCount(name=spec.name, stream=spec.stream), start, what)
        try:
            low = await self._delivered(jsm, spec.stream, first, what) + 1
        finally:
            if first != at_start:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(jsm.delete_consumer(spec.stream, first), self.timeout)
        high = await self._delivered(jsm, spec.stream, at_end, what)
        while low - 1 in deleted:
            low -= 1
        within = sorted(seq for seq in deleted if low <= seq <= high)
        if within:
            shown = ", ".join(str(seq) for seq in within[:5]) + (", …" if len(within) > 5 else "")
            raise QueryError(
                f"{what}: stream {spec.stream} had {len(within)} message(s) deleted from the window "
                f"(sequence {shown}): a count over it would miss the deleted ones"
            )

    async def _delivered(self, jsm: Any, stream: str, name: str, what: str) -> int:
        """The stream sequence just before where consumer ``name`` begins."""
        info = await self._call(what, lambda: jsm.consumer_info(stream, name))
        return int(info.delivered.stream_seq)

    async def _stream_info(self, stream: str, what: str) -> tuple[Any, datetime | None, datetime | None]:
        """nats-py's StreamInfo of ``stream`` (NotFoundError if there is none), with when its
        oldest and newest message were stored (the newest: even if removed since; None where
        it never held one), which nats-py's state leaves out: one JetStream API request, read
        as nats-py's own ``stream_info`` reads it."""
        import json

        from nats.errors import NoRespondersError
        from nats.js.api import StreamInfo
        from nats.js.errors import APIError, ServiceUnavailableError

        await self._jsm()  # connected (again, if the server dropped the connection)
        connection = self._connection

        async def ask() -> dict[str, Any]:
            subject = f"$JS.API.STREAM.INFO.{stream}"
            try:
                answer = await connection.request(subject, b"", timeout=self.timeout)
            except NoRespondersError as exc:  # as nats-py's own requests say it
                raise ServiceUnavailableError from exc
            try:
                found: dict[str, Any] = json.loads(answer.data)
            except ValueError as exc:
                raise QueryError(f"{what}: stream {stream}: an unreadable stream info") from exc
            if "error" in found:
                APIError.from_error(found["error"])  # raises it: NotFoundError, …
            return found

        before = datetime.now(UTC)
        found = await self._call(what, ask)
        # the server's clock when it answered: every window is gatecheck's clock's
        theirs = _stored_at(found.get("ts"))  # (a server before 2.10 does not say)
        server = ", ".join(server_of(u) for u in self.config.servers)
        problem = clock_problem(f"NATS at {server}", theirs, before, datetime.now(UTC))
        if problem is not None:
            raise QueryError(f"{what}: {problem}")
        times = found.get("state", {})
        first_ts, last_ts = _stored_at(times.get("first_ts")), _stored_at(times.get("last_ts"))
        return StreamInfo.from_response(found), first_ts, last_ts

    async def _ephemeral(self, jsm: Any, spec: NatsCount, moment: datetime, what: str) -> str:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=moment,
            filter_subject=spec.subject,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=_EPHEMERAL_TTL_S,
            mem_storage=True,
            num_replicas=1,
        )
        info = await self._call(what, lambda: jsm.add_consumer(spec.stream, config))
        return str(info.name)

    async def _pending(self, jsm: Any, stream: str, name: str, what: str) -> int:
        info = await self._call(what, lambda: jsm.consumer_info(stream, name))
        return int(info.num_pending)


def overlap(first: str, second: str) -> bool:
    """Whether some subject matches both NATS subject patterns (``*`` one token, ``>`` the
    rest: one token or more)."""
    a, b = first.split("."), second.split(".")
    for x, y in zip(a, b, strict=False):
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(a) == len(b)


class TooMuchToRead(QueryError):
    """More messages in the window than the query may read: the check is inconclusive."""


class _Payload:
    """A message's JSON payload, parsed once when a column first asks (not JSON: no fields)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._parsed: Any = _Payload

    def field(self, path: list[str]) -> Any:
        if self._parsed is _Payload:
            import json

            try:
                self._parsed = json.loads(self.data)
            except ValueError:
                self._parsed = None
        found = self._parsed
        for part in path:
            if not isinstance(found, dict):
                return None
            found = found.get(part)
        return whole_characters(found) if isinstance(found, str) else found


def _reader(where: str) -> Callable[[Any, _Payload], Any]:
    """How one column is read from a message (``header:``, ``payload:``, ``sequence``,
    ``time``, ``subject``); a missing header or field is NULL."""
    if where == "sequence":
        return lambda m, _: int(m.metadata.sequence.stream)
    if where == "time":
        return lambda m, _: m.metadata.timestamp
    if where == "subject":
        return lambda m, _: m.subject
    kind, _, name = where.partition(":")
    if kind == "header":
        return lambda m, _: (m.headers or {}).get(name)
    path = name.split(".")
    return lambda _, payload: payload.field(path)


def _replica_states(cluster: Any) -> tuple[int, str]:
    """(how many of a stream's replicas are current — its leader and every follower that is
    neither offline nor behind —, the others named: ``gatecheck-n3 (offline)``, ``n2 (behind
    by 12 operations)``, or ``""``). A stream on a single server is one current replica; a
    stream without a leader (its quorum lost) has none."""
    if cluster is None:
        return 1, ""
    current = 1 if cluster.leader else 0
    lagging = [] if cluster.leader else ["no leader"]
    for peer in cluster.replicas or []:
        if peer.offline:
            lagging.append(f"{peer.name} (offline)")
        elif not peer.current:
            lagging.append(f"{peer.name} (behind by {peer.lag or 0} operations)")
        else:
            current += 1
    return current, ", ".join(sorted(lagging))


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).removeprefix("nats: ")
    return text or type(exc).__name__
