"""Every HTTP answer gatecheck reads is bounded as a whole: in time (httpx's timeout bounds
each read, so a server sending a byte a second was waited on forever) and in size (an
endless answer was held until memory ran out: 3.5 GB in 20 s from one Prometheus query).
Each reader against a real server that trickles and one that floods."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatecheck.errors import SourceTimeout, SourceUnavailable
from gatecheck.sources._http import MAX_ANSWER_BYTES, AnswerTooLarge


class Misbehaving:
    """An HTTP server on a thread: a path holding "flood" answers 1 MiB chunks without end,
    any other path one space every 0.2 s without end (within any read timeout); headers at
    once, a chunked body."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                flood = b"flood" in head.split(b"\r\n", 1)[0]
                chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n" if flood else b"1\r\n \r\n"
                while True:
                    writer.write(chunk)
                    await writer.drain()
                    if not flood:
                        await asyncio.sleep(0.2)
            except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop)
        ready.wait(10)

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}"

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[Misbehaving]:
    server = Misbehaving()
    yield server
    server.close()


@contextmanager
def answering(answer: Callable[[str], tuple[bytes, dict[str, str]]]) -> Iterator[str]:
    """A well-behaved HTTP server on a thread: each GET answered 200 with ``answer(path)``'s
    body and headers (and its Content-Length); its URL while the block runs."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, headers = answer(self.path)
            self.send_response(200)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def bounded(coroutine: Any) -> Any:
    """Run it; a hang (what this module guards against) fails here instead of forever."""

    async def go() -> Any:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(go())


def window() -> dict[str, Any]:
    end = datetime.now(UTC)
    return {"window_start": end - timedelta(hours=1), "window_end": end, "as_of": end}


# A trickle is judged at 1s; a flood gets time enough to send 64 MiB on a busy machine.
def prometheus(url: str, timeout: str = "1s") -> Any:
    from gatecheck.sources.prometheus.api import PrometheusSource, PrometheusSourceConfig

    return PrometheusSource(
        "m", PrometheusSourceConfig(type="prometheus", url=url, timeout=timeout), Path(".")
    )


def scrape(url: str, timeout: str = "1s") -> Any:
    from gatecheck.sources.prometheus.api import PrometheusSourceConfig
    from gatecheck.sources.prometheus.scrape import ScrapeSource

    config = PrometheusSourceConfig(type="prometheus", url=f"scrape+{url}", timeout=timeout)
    return ScrapeSource("m", config, Path("."))


def junit(url: str, timeout: str = "1s") -> Any:
    from gatecheck.sources.junit import JUnitSource, JUnitSourceConfig

    return JUnitSource("e2e", JUnitSourceConfig(type="junit", url=url + "/", timeout=timeout), Path("."))


async def ask(source: Any) -> Any:
    try:
        if hasattr(source, "runs"):
            return await source.runs("*.xml")
        return await source.query("up", window())
    finally:
        if hasattr(source, "close"):
            await source.close()


@pytest.mark.parametrize("reader", [prometheus, scrape, junit], ids=["prometheus", "scrape", "junit"])
def test_a_source_that_trickles_is_a_timeout_and_one_that_floods_is_refused(misbehaving, reader) -> None:
    with pytest.raises(SourceTimeout, match=r"did not answer within 1s$"):
        bounded(ask(reader(misbehaving.url("trickle"))))
    with pytest.raises(AnswerTooLarge, match=rf"answered more than {MAX_ANSWER_BYTES // 2**20} MiB$"):
        bounded(ask(reader(misbehaving.url("flood"), "50s")))


def test_a_probe_that_trickles_or_floods_has_no_answer(misbehaving) -> None:
    from gatecheck.sources.http import HttpSource, HttpSourceConfig, ProbeRequest

    for kind, timeout, reason in (
        ("trickle", "1s", "no answer within 1s"), ("flood", "50s", "an answer of more than 64 MiB"),
    ):  # fmt: skip
        config = HttpSourceConfig(type="http", url=misbehaving.url(kind), timeout=timeout)
        source = HttpSource("ingest", config, Path("."))
        answer = bounded(source.send(ProbeRequest(method="GET"), "p1", "2026-01-01T00:00:00Z"))
        assert (answer["status"], answer["error"]) == (0, reason)


def test_run_url_against_a_service_that_trickles_or_floods_is_inconclusive(misbehaving) -> None:
    from gatecheck.client import fetch_verdict
    from gatecheck.results import VerdictState

    for kind, timeout, words in (
        ("trickle", 1.0, "did not answer within 1s"), ("flood", 50.0, "answered more than 64 MiB"),
    ):  # fmt: skip
        verdict = fetch_verdict(misbehaving.url(kind), "staging-soak", timeout=timeout, max_age=None)
        assert verdict.verdict is VerdictState.INCONCLUSIVE
        assert words in verdict.reasons[0], verdict.reasons


def test_an_ordinary_answer_reads_as_before() -> None:
    """The bound keeps what is kept: status, headers, the (decoded) body."""
    import gzip
    import json

    def answer(path: str) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [0, "7"]}})
        return gzip.compress(body.encode()), {"Content-Type": "application/json", "Content-Encoding": "gzip"}

    with answering(answer) as url:
        frame = bounded(ask(prometheus(url)))
    assert frame["value"].tolist() == [7.0]


def test_too_large_is_a_source_unavailable() -> None:
    assert issubclass(AnswerTooLarge, SourceUnavailable)


def test_a_junit_listing_is_read_whole_within_the_sources_timeout() -> None:
    """Each report answered within the timeout, 40 of them behind one listing: each answer was
    bounded alone, so the read took 40 × the delay (up to 500 × 30 s by default). The listing
    and its reports now share the one timeout; reports are fetched a few at a time."""
    import time

    delay = {"s": 1.0}

    def answer(path: str) -> tuple[bytes, dict[str, str]]:
        if path == "/":
            return "".join(f'<a href="r{k:02}.xml">r{k:02}.xml</a>' for k in range(40)).encode(), {}
        time.sleep(delay["s"])  # within the source's timeout, every one of them
        return b'<testsuite name="e2e" tests="1" timestamp="2026-11-22T05:00:00"><testcase name="t"/></testsuite>', {}

    with answering(answer) as url:
        with pytest.raises(SourceTimeout, match=r"^JUnit reports at http://127.0.0.1:\d+/ did not answer within 2s$"):
            bounded(ask(junit(url, "2s")))
        delay["s"] = 0.0  # the same listing answered at once: every report, in the listing's order
        runs = bounded(ask(junit(url, "20s")))
    assert [run.name for run in runs] == [f"r{k:02}.xml" for k in range(40)]
