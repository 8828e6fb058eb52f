"""Apache Kafka as a child process: one KRaft node (broker and controller in one JVM) on loopback, data in a
temporary folder, started from the jars ``make kafka`` copies into ``.kafka/lib`` (``deploy/kafka/pom.xml``)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import IO, Self

from connectors.broker import BrokerError, BrokerProcess, free_port, port_open

ROOT = Path(__file__).resolve().parents[1]
LIB_ENV = "STREAMREC_KAFKA_LIB"  # a folder of Kafka's jars, instead of <repo>/.kafka/lib

# Small and quick to start: a 512 MB heap, the serial collector, no C2 compiler (the tests' load is light).
JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
               "-Djava.awt.headless=true")

LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def kafka_lib() -> Path:
    """The folder holding Kafka's jars (``$STREAMREC_KAFKA_LIB`` overrides ``<repo>/.kafka/lib``)."""
    return Path(os.environ.get(LIB_ENV) or ROOT / ".kafka" / "lib")


def kafka_version(lib: Path) -> str:
    """The Kafka version of the ``kafka_2.13-<version>.jar`` in ``lib`` ('' when there is none)."""
    for jar in sorted(lib.glob("kafka_2.13-*.jar")):
        m = re.fullmatch(r"kafka_2\.13-(\d[\w.\-]*)\.jar", jar.name)
        if m:
            return m.group(1)
    return ""


def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on the PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if not found:
        raise BrokerError("java: not found (Apache Kafka needs Java 17 or later on the PATH or in JAVA_HOME)")
    return found


def random_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` prints it (URL-safe base64 of 16 random bytes)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka avoids these too: they read as command-line options
            return cid


async def answers_metadata(bootstrap: str) -> bool:
    """True when the broker answers a metadata request and lists itself."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 5.0)
        await asyncio.wait_for(admin.list_topics(), 5.0)
        return bool(admin._client.cluster.brokers())  # noqa: SLF001 - the metadata just fetched
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        await admin.close()


class ApacheKafkaBroker(BrokerProcess):
    """A single-node Apache Kafka (KRaft, combined broker and controller) with settings for tests.

    Topics are not auto-created (``auto.create.topics.enable=false``, as on most production clusters: a deleted
    topic stays deleted); internal topics have one replica and one partition; the first consumer group rebalance is
    not delayed. The data folder is temporary and removed by :meth:`stop` unless ``data_dir`` was given.

    Parameters
    ----------
    port, host, log_path
        As for :class:`~connectors.broker.BrokerProcess`.
    lib
        Folder of Kafka's jars (default :func:`kafka_lib`).
    data_dir
        Where the broker keeps its log (default: a temporary folder).
    jvm_options
        Java options (default :data:`JVM_OPTIONS`).
    """

    name = "kafka"
    profile = "kafka"

    def __init__(self, port: int = 9092, host: str = "127.0.0.1", log_path: Path | None = None, *,
                 lib: Path | None = None, data_dir: Path | None = None,
                 jvm_options: tuple[str, ...] = JVM_OPTIONS) -> None:
        super().__init__(port, host, log_path)
        self.lib = lib or kafka_lib()
        self.controller_port = free_port(host)
        self.jvm_options = jvm_options
        self._own_dir = data_dir is None
        self.work = Path(tempfile.mkdtemp(prefix="streamrec-kafka-")) if data_dir is None else data_dir
        self.version = kafka_version(self.lib)

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties``."""
        h, p, c = self.host, self.port, self.controller_port
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{h}:{c}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.work / "data"),
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "num.network.threads": "2",
            "num.io.threads": "2",
        }

    def java(self, main: str, *args: str) -> list[str]:
        return [java_binary(), *self.jvm_options, f"-Dlog4j2.configurationFile={self.work / 'log4j2.properties'}",
                "-cp", f"{self.lib}/*", main, *args]

    def prepare(self, out: IO[bytes] | int) -> None:
        """Write the configuration and format the storage (``kafka-storage format``) under a fresh cluster id."""
        if not self.version:
            raise BrokerError(f"Apache Kafka is not installed: no kafka_2.13-*.jar in {self.lib} "
                              f"(run `make kafka`, or set {LIB_ENV} to a folder of Kafka's jars)")
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        (self.work / "log4j2.properties").write_text(LOG4J2)
        if (self.work / "data" / "meta.properties").exists():
            return  # formatted before: a restart keeps the broker's data
        done = subprocess.run(self.java("kafka.tools.StorageTool", "format", "-t", random_cluster_id(),
                                        "-c", str(self.work / "server.properties")),
                              stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
        if done.returncode != 0:
            raise BrokerError(f"kafka-storage format failed with code {done.returncode} "
                              f"(see {self.log_path or 'its log'})")

    def command(self) -> list[str]:
        return self.java("kafka.Kafka", str(self.work / "server.properties"))

    def ready(self) -> bool:
        return port_open(self.host, self.port) and asyncio.run(answers_metadata(self.bootstrap))

    def start(self, timeout: float = 90.0) -> Self:
        try:
            return super().start(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the broker (SIGTERM: a controlled shutdown; SIGKILL after ``timeout``) and drop its temporary data."""
        super().stop(timeout)
        if self._own_dir:
            shutil.rmtree(self.work, ignore_errors=True)
