"""How long an outside consumer takes from start to its first message, by client and consumer settings.

Usage: python benchmarks/consumer_join.py [--bootstrap HOST:PORT | --broker tansu|kafka]
       [--clients kafka-python,confluent-kafka] [--no-killed] [--timeout 150]

Without ``--bootstrap`` it starts a broker on a free port: the embedded Tansu (default), or with ``--broker kafka``
the test suite's single-node Apache Kafka (``make kafka``; its first group rebalance is not delayed, where a
production cluster waits ``group.initial.rebalance.delay.ms``, 3 s by default). Every measurement uses a fresh topic
(4 partitions, 20 messages already on it) and a fresh group, and times a consumer from its construction to the
first message it returns. Scenarios:

* ``fresh-group``: a consumer group nobody used before;
* ``killed-member``: the same group right after its only member was killed with SIGKILL (it never left the group;
  the coordinator only drops it when its session times out), the new member with the same settings;
* ``static-member``: as ``killed-member``, but both members carry the same ``group.instance.id`` (static
  membership, KIP-345), so the new one may take the dead one's place without waiting for its session to end;
* ``no-group``: no group at all, every partition assigned by hand and read from the beginning.

Prints a table headed by the command line, then one line per measurement:
``JOIN client=... scenario=... settings=... seconds=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTITIONS = 4
MESSAGES = 20

#: client -> settings name -> consumer configuration (kafka-python keyword arguments / librdkafka properties)
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "kafka-python": {
        "default": {},
        "proposed": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
    },
    "confluent-kafka": {
        "default": {},
        "proposed": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    },
}


def describe(settings: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "default"


# -- the clients, reduced to: start a consumer, return the first message's arrival ----------------------------

def first_message_kafka_python(bootstrap: str, topic: str, group: str | None, settings: dict[str, Any],
                               timeout: float, instance: str | None = None, close: bool = True) -> float:
    """Seconds from creating a kafka-python consumer to its first message (inf on timeout)."""
    from kafka import KafkaConsumer, TopicPartition

    t0 = time.monotonic()
    extra = {"group_instance_id": instance} if instance else {}
    if group is None:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **settings)
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
    else:
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                 enable_auto_commit=False, **extra, **settings)
    try:
        while time.monotonic() - t0 < timeout:
            if any(consumer.poll(timeout_ms=100).values()):
                return time.monotonic() - t0
        return float("inf")
    finally:
        if close:  # the member to be killed must not leave its group
            consumer.close()


def first_message_confluent(bootstrap: str, topic: str, group: str | None, settings: dict[str, Any],
                            timeout: float, instance: str | None = None, close: bool = True) -> float:
    """Seconds from creating a confluent-kafka consumer to its first message (inf on timeout)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    t0 = time.monotonic()
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                            "auto.offset.reset": "earliest", **settings}
    if instance:
        conf["group.instance.id"] = instance
    if group is None:
        conf["group.id"] = f"unused-{uuid.uuid4().hex[:8]}"  # librdkafka wants one; assign() never joins it
        consumer = Consumer(conf)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    else:
        consumer = Consumer({**conf, "group.id": group})
        consumer.subscribe([topic])
    try:
        while time.monotonic() - t0 < timeout:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                return time.monotonic() - t0
        return float("inf")
    finally:
        if close:
            consumer.close()


CLIENTS: dict[str, Callable[..., float]] = {
    "kafka-python": first_message_kafka_python,
    "confluent-kafka": first_message_confluent,
}


def member_main(args: list[str]) -> None:
    """Child process: join, read one message, say so, then wait to be killed."""
    client, bootstrap, topic, group, settings, instance = args
    took = CLIENTS[client](bootstrap, topic, group, json.loads(settings), 300.0, instance or None, close=False)
    print(f"JOINED {took:.2f}", flush=True)
    time.sleep(3600)


def killed_member(client: str, bootstrap: str, topic: str, group: str, settings: dict[str, Any],
                  instance: str | None) -> None:
    """Start a member of ``group`` in a child process, wait until it has read a message, SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--member", client, bootstrap, topic, group, json.dumps(settings), instance or ""],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("JOINED"):
            raise RuntimeError(f"the member to be killed did not join (said {line!r})")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- topics ---------------------------------------------------------------------------------------------------

def fresh_topic(bootstrap: str) -> str:
    """A new topic of PARTITIONS partitions holding MESSAGES messages."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"join-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for i in range(MESSAGES):
            producer.send(name, key=f"u{i}".encode(), value=json.dumps({"n": i}).encode())
        producer.flush()
    finally:
        producer.close()
    return name


def measure(client: str, scenario: str, settings_name: str, bootstrap: str, timeout: float) -> float:
    settings = SETTINGS[client][settings_name]
    topic = fresh_topic(bootstrap)
    group = None if scenario == "no-group" else f"g-{uuid.uuid4().hex[:10]}"
    instance = f"i-{uuid.uuid4().hex[:8]}" if scenario == "static-member" else None
    if scenario in ("killed-member", "static-member"):
        assert group is not None
        killed_member(client, bootstrap, topic, group, settings, instance)
    return CLIENTS[client](bootstrap, topic, group, settings, timeout, instance)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--member":
        member_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=None, help="HOST:PORT of a running broker (default: start one)")
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="tansu", help="which broker to start")
    ap.add_argument("--clients", default="kafka-python,confluent-kafka")
    ap.add_argument("--no-killed", action="store_true", help="skip the killed/static member scenarios")
    ap.add_argument("--timeout", type=float, default=150.0, help="give up on one measurement after this long")
    args = ap.parse_args()
    import logging

    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its reconnect warnings would interleave the table
    command = "$ " + " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    plan = [("fresh-group", "default"), ("fresh-group", "proposed"), ("no-group", "default")]
    if not args.no_killed:
        plan += [("killed-member", "default"), ("killed-member", "proposed"), ("static-member", "proposed")]
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]

    def run_all(bootstrap: str) -> list[tuple[str, str, str, float]]:
        rows = []
        for client in clients:
            for scenario, name in plan:
                took = measure(client, scenario, name, bootstrap, args.timeout)
                rows.append((client, scenario, describe(SETTINGS[client][name]), took))
                print(f"  {client} {scenario} {name}: {took:.2f} s", file=sys.stderr, flush=True)
        return rows

    if args.bootstrap:
        broker_name, rows = args.bootstrap, run_all(args.bootstrap)
    else:
        from connectors.broker import EmbeddedBroker
        from connectors.kafka_broker import ApacheKafkaBroker

        kind = {"tansu": EmbeddedBroker, "kafka": ApacheKafkaBroker}[args.broker]
        with kind(port=0) as broker:
            label = "embedded Tansu" if args.broker == "tansu" else f"Apache Kafka {broker.version}"
            broker_name, rows = f"{label} on {broker.bootstrap}", run_all(broker.bootstrap)
    console = Console(width=160)
    console.print(f"[bold]{command}[/]  (commit {commit or '?'}, broker: {broker_name})")
    table = Table(title="consumer start -> first message (topic of 4 partitions, 20 messages waiting)")
    for col in ("client", "scenario", "settings", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for client, scenario, settings, took in rows:
        table.add_row(client, scenario, settings, f"{took:.2f}" if took != float("inf") else f"> {args.timeout:.0f}")
    console.print(table)
    for client, scenario, settings, took in rows:
        print(f"JOIN client={client} scenario={scenario} settings={settings} seconds={took:.2f}")


if __name__ == "__main__":
    main()
