"""A client that sends its request slowly cannot hold the service's connections: uvicorn
waits for a request head without end, so a client sending a header line now and then kept
its connection (a file descriptor, a slot) forever. Real uvicorn, real sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatecheck.service.server import bounded_protocol

READ_TIMEOUT = 1.0


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Answers after reading the whole body; ``/slow`` takes longer than the read timeout."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * READ_TIMEOUT)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    import uvicorn

    config = uvicorn.Config(_app, host="127.0.0.1", port=0, log_level="warning", http=bounded_protocol(READ_TIMEOUT))
    served = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: served.run(sockets=[sock]), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield sock.getsockname()[1]
    served.should_exit = True
    thread.join(10)


def closed_after(connection: socket.socket, patience: float = 20.0) -> tuple[bool, bytes]:
    """Whether the server closed the connection within ``patience`` seconds, and what it sent."""
    connection.settimeout(patience)
    received = b""
    try:
        while chunk := connection.recv(4096):
            received += chunk
        return True, received
    except TimeoutError:
        return False, received


def test_a_request_head_sent_slowly_is_cut_off(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        started = time.monotonic()
        closed, answer = closed_after(slow)
    assert closed and answer == b"", "the connection was still held after 20s"
    assert time.monotonic() - started >= READ_TIMEOUT * 0.9  # its time, not at once


def test_a_body_sent_slowly_is_cut_off_and_a_slow_answer_is_not(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        closed, answer = closed_after(slow)
    assert closed and answer == b""
    # The whole request at once: the app may take longer than the read timeout to answer.
    with socket.create_connection(("127.0.0.1", server)) as fine:
        fine.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        closed, answer = closed_after(fine)
    assert closed and answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")


def test_the_next_request_on_a_kept_connection_has_the_same_bound(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as kept:
        kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        kept.settimeout(10)
        first = b""
        while not first.endswith(b"ok"):  # the whole first answer
            first += kept.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET / HTTP/1.1\r\n")  # the second head never ends
        closed, answer = closed_after(kept)
    assert closed and answer == b""


def test_the_service_serves_with_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gatecheck serve`'s own server: the bound is on (the service's timeout made short here),
    and a whole request is answered."""
    from typer.testing import CliRunner

    import gatecheck.service.server as served
    from gatecheck.cli import app
    from gatecheck.config import load_project
    from gatecheck.ledger import SqliteLedger
    from gatecheck.service.core import Service

    from ..conftest import local_http, serving

    monkeypatch.setattr(served, "REQUEST_READ_TIMEOUT", READ_TIMEOUT)
    root = tmp_path / "p"
    assert CliRunner().invoke(app, ["init", str(root)]).exit_code == 0
    svc = Service(load_project(root, environ={}), SqliteLedger(tmp_path / "h.db"), [])  # nothing scheduled
    with serving(svc) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            closed, answer = closed_after(slow)
        assert closed and answer == b""
        assert local_http.get(f"{base}/healthz", timeout=10).status_code == 200
