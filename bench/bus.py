"""Benchmark: the exact windowed count against reading the window's messages.

    .venv/bin/python bench/bus.py [--messages 1000000] [--repeat 3]

Starts the bundled nats-server with JetStream in a temp directory, publishes --messages
small HRV messages on AA_CORE_HOT (in three timed thirds), then counts the middle third two
ways: gatecheck's NATS source (two ephemeral by_start_time consumers, no message read) and
a pull consumer that reads every message of the window. Prints both and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from gatecheck.demo.bus import HRV_SUBJECT, NatsServer
from gatecheck.sources.nats import NatsQuery, NatsSource, NatsSourceConfig


async def publish(url: str, count: int) -> None:
    connection = await nats.connect(url)
    payload = b'{"type":"hrv.raw-received","athlete_id":"ath-001","rmssd_ms":52}'
    for i in range(count):
        await connection.publish(HRV_SUBJECT, payload)  # core publish: JetStream stores it
        if i % 10_000 == 0:
            await connection.flush()
    await connection.flush()
    await connection.close()


async def wait_for(url: str, total: int) -> None:
    connection = await nats.connect(url)
    jsm = connection.jsm()
    while (await jsm.stream_info("AA_CORE_HOT")).state.messages < total:
        await asyncio.sleep(0.05)
    await connection.close()


async def read_window(url: str, start: datetime, end: datetime) -> int:
    """The consumer route: deliver from `start` and read until a message is newer than `end`."""
    connection = await nats.connect(url)
    js = connection.jetstream()
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start, ack_policy=AckPolicy.NONE,
        filter_subject=HRV_SUBJECT, inactive_threshold=30.0, mem_storage=True,
    )  # fmt: skip
    subscription = await js.pull_subscribe(HRV_SUBJECT, stream="AA_CORE_HOT", config=config)
    counted = 0
    try:
        while True:
            batch = await subscription.fetch(1000, timeout=5)
            for message in batch:
                if message.metadata.timestamp >= end:
                    return counted
                counted += 1
    except TimeoutError:
        return counted
    finally:
        await subscription.unsubscribe()
        await connection.close()


async def run(messages: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats") as server:
        connection = await nats.connect(server.url)
        await connection.jsm().add_stream(StreamConfig(name="AA_CORE_HOT", subjects=["athlete-ally.hrv.>"]))
        await connection.close()
        third = messages // 3
        marks = []
        started = time.perf_counter()
        for i in range(3):
            if i:
                # Core publishes are asynchronous: mark the boundary once all are stored.
                await wait_for(server.url, i * third)
                await asyncio.sleep(0.05)
                marks.append(datetime.now(UTC))
                await asyncio.sleep(0.05)
            await publish(server.url, third)
        await wait_for(server.url, 3 * third)
        published = time.perf_counter() - started
        start, end = marks
        source = NatsSource("bus", NatsSourceConfig(type="nats", url=server.url, timeout="60s"), Path("."))
        query = NatsQuery.model_validate(
            {"counts": [{"name": "n", "stream": "AA_CORE_HOT", "subject": HRV_SUBJECT}]}
        )
        parameters = {"window_start": start, "window_end": end, "as_of": end}
        exact_times, read_times, exact_n, read_n = [], [], 0, 0
        for _ in range(repeat):
            t = time.perf_counter()
            frame = await source.query(query, parameters)
            exact_times.append(time.perf_counter() - t)
            exact_n = int(frame["n"].iloc[0])
            t = time.perf_counter()
            read_n = await read_window(server.url, start, end)
            read_times.append(time.perf_counter() - t)
        await source.close()
        exact, read = statistics.median(exact_times), statistics.median(read_times)
        total = 3 * third
        print(f"{datetime.now(UTC):%Y-%m-%d} · {total:,} on AA_CORE_HOT (published in {published:.1f}s)")
        print(f"window holds {exact_n:,} messages (read route counted {read_n:,})")
        print(f"exact count (two ephemeral consumers): {exact * 1000:9.1f} ms")
        print(f"reading the window's messages:        {read * 1000:9.1f} ms")
        print(f"ratio: reading is {read / exact:,.0f}x slower")
        assert exact_n == read_n == third, "the two routes disagree"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.repeat))


if __name__ == "__main__":
    main()
