"""Clients from the project's ecosystem against the real broker(s): kafka-python (connectors.clients, every
compression codec), confluent-kafka and aiokafka, each consumed back by all three; then a worker answering events
sent by EventProducer, read by RecommendationConsumer and held to the recommendation schema; then the CLI."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connectors.clients import CODEC_PACKAGES, EventProducer, ItemProducer, RecommendationConsumer, TopicReader, make_event
from connectors.kafka import KafkaClientConfig, ensure_topics, read_topic
from connectors.schemas import RECOMMENDATION_JSON_SCHEMA, Event, event_json, parse_event, schema_errors
from stream.cli.main import cli
from tests.conftest import make_catalog

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PRODUCERS = [*(("kafka-python", c) for c in CODECS), ("confluent-kafka", "none"), ("confluent-kafka", "snappy"),
             ("aiokafka", "none"), ("aiokafka", "zstd")]
CONSUMERS = ("kafka-python", "confluent-kafka", "aiokafka")
N = 30


def kafka_python_lacks(codec: str) -> str | None:
    """Why kafka-python cannot use ``codec`` here (None when it can)."""
    from kafka import codec as codecs

    if codec in ("none", "gzip") or getattr(codecs, f"has_{codec}")():
        return None
    return f"kafka-python needs {CODEC_PACKAGES[codec]} for {codec} (not installed: kafka-python[{codec}] in pyproject)"


def sample_events(tag: str) -> list[Event]:
    return [make_event(f"u{i % 4}", f"space-{i % 8}", "click", ts=1_700_000_000.0 + i, event_id=f"{tag}-{i}",
                       context={"n": i}) for i in range(N)]


# -- producers -------------------------------------------------------------------------------------------------

def produce_kafka_python(bootstrap: str, topic: str, events: list[Event], codec: str) -> None:
    with EventProducer(bootstrap, topic=topic, compression_type=None if codec == "none" else codec) as producer:
        for e in events:
            producer.send(e.user_id, e.item_id, e.event_type, ts=e.ts, event_id=e.event_id, context=e.context)


def produce_confluent(bootstrap: str, topic: str, events: list[Event], codec: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20})
    for e in events:
        producer.produce(topic, key=e.user_id.encode(), value=event_json(e))
    assert producer.flush(30) == 0


def produce_aiokafka(bootstrap: str, topic: str, events: list[Event], codec: str) -> None:
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                    compression_type=None if codec == "none" else codec)
        await producer.start()
        try:
            for e in events:
                await producer.send(topic, key=e.user_id.encode(), value=event_json(e))
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


PRODUCE: dict[str, Callable[[str, str, list[Event], str], None]] = {
    "kafka-python": produce_kafka_python, "confluent-kafka": produce_confluent, "aiokafka": produce_aiokafka}


# -- consumers (no group: every partition from the beginning) ------------------------------------------------------

def consume_kafka_python(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    with TopicReader(topic, bootstrap, from_beginning=True, max_messages=N, idle_timeout_s=20) as reader:
        return [(r.key, r.value) for r in reader]


def consume_confluent(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"unused-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while len(out) < N and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def consume_aiokafka(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    async def go() -> list[tuple[bytes, bytes]]:
        cfg = KafkaClientConfig([bootstrap], {})
        return [(k, v) async for k, v, _ in read_topic(cfg, topic, until_count=N, idle_timeout=20)
                if k is not None and v is not None]

    return asyncio.run(go())


CONSUME: dict[str, Callable[[str, str], list[tuple[bytes, bytes]]]] = {
    "kafka-python": consume_kafka_python, "confluent-kafka": consume_confluent, "aiokafka": consume_aiokafka}


@pytest.fixture(scope="module")
def published(broker: Any) -> Iterator[Callable[[str, str], tuple[str, list[Event]]]]:
    """Topic and events a producer with a codec published (once per broker, producer and codec)."""
    done: dict[tuple[str, str], tuple[str, list[Event]]] = {}

    def get(producer: str, codec: str) -> tuple[str, list[Event]]:
        if (producer, codec) not in done:
            topic = f"clients-{producer}-{codec}-{uuid.uuid4().hex[:6]}"
            asyncio.run(ensure_topics(KafkaClientConfig([broker.bootstrap], {}), {topic: 3}))
            events = sample_events(topic)
            PRODUCE[producer](broker.bootstrap, topic, events, codec)
            done[producer, codec] = (topic, events)
        return done[producer, codec]

    yield get


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize(("producer", "codec"), PRODUCERS, ids=[f"{p}-{c}" for p, c in PRODUCERS])
def test_every_client_reads_what_every_client_wrote(published: Callable[[str, str], tuple[str, list[Event]]],
                                                    broker: Any, producer: str, codec: str, consumer: str) -> None:
    why = kafka_python_lacks(codec) if "kafka-python" in (producer, consumer) else None
    if why:
        pytest.skip(why)
    topic, events = published(producer, codec)
    got = CONSUME[consumer](broker.bootstrap, topic)
    assert len(got) == N
    parsed = {}
    for key, value in got:
        ev = parse_event(value, event_types={"click"})
        assert isinstance(ev, Event), ev
        assert key == ev.user_id.encode()
        parsed[ev.event_id] = ev
    assert parsed == {e.event_id: e for e in events}


def test_worker_answers_event_producer_and_recommendation_consumer_reads(worker_factory: Any, broker: Any,
                                                                         kafka: KafkaClientConfig) -> None:
    app = f"t-clients-{uuid.uuid4().hex[:6]}"
    rec_topic = f"{app}-recommendations"
    asyncio.run(ensure_topics(kafka, {f"{app}-{t}": 4 for t in ("events", "items", "recommendations")}))
    worker = worker_factory(app)
    with ItemProducer(broker.bootstrap, topic=f"{app}-items") as items:
        for it in make_catalog():
            items.send(it.item_id, it.text, {"theme": it.item_id.split("-")[0]})
    worker.wait_ready(len(make_catalog()), timeout=180)
    events = sample_events(app)
    with EventProducer(broker.bootstrap, topic=f"{app}-events", compression_type="gzip",
                       event_types={"click", "view"}) as producer:
        for e in events:
            producer.send(e.user_id, e.item_id, e.event_type, ts=e.ts, event_id=e.event_id, context=e.context)

    answers = {}
    with RecommendationConsumer(broker.bootstrap, topic=rec_topic, from_beginning=True, idle_timeout_s=90) as recs:
        for rec in recs:  # each one parsed and held to RECOMMENDATION_JSON_SCHEMA by the consumer
            assert schema_errors(rec.value, RECOMMENDATION_JSON_SCHEMA) == []
            answers[rec.event_id] = rec  # at-least-once: deduplicate by event_id
            if len(answers) == len(events):
                break
    assert set(answers) == {e.event_id for e in events}
    assert all(a.items and a.user_id == e.user_id for e in events for a in [answers[e.event_id]])

    u1 = {e.event_id for e in events if e.user_id == "u1"}
    with RecommendationConsumer(broker.bootstrap, topic=rec_topic, user_id="u1", from_beginning=True,
                                idle_timeout_s=3) as recs:
        mine = list(recs)
    assert {r.event_id for r in mine} == u1 and {r.user_id for r in mine} == {"u1"}

    with RecommendationConsumer(broker.bootstrap, topic=rec_topic, group_id=f"{app}-readers", from_beginning=True,
                                max_messages=len(events), idle_timeout_s=60) as recs:
        in_group = {r.event_id for r in recs}
    assert in_group == set(answers)

    # streamrec tail --user follows one user, every line a conforming recommendation
    env = {"STREAMREC_TOPIC_RECOMMENDATIONS": rec_topic}
    out = CliRunner().invoke(cli, ["tail", "--user", "u1", "--from-beginning", "--no-follow", "--broker", broker.url],
                             env=env)
    assert out.exit_code == 0, out.output
    lines = [json.loads(ln) for ln in out.output.splitlines()]
    assert {ln["event_id"] for ln in lines} == u1
    assert all(ln["user_id"] == "u1" and schema_errors(ln, RECOMMENDATION_JSON_SCHEMA) == [] for ln in lines)


def test_cli_catalog_and_replay_publish_any_file(broker: Any, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    env = {"STREAMREC_TOPIC_ITEMS": f"cli-items-{tag}", "STREAMREC_TOPIC_EVENTS": f"cli-events-{tag}"}
    products = tmp_path / "products.csv"
    products.write_text("item_id,text,brand\nsku-1,Red kettle,Acme\nsku-2,Blue mug,Mugs Inc\n")
    events = tmp_path / "clicks.jsonl"
    events.write_text("".join(json.dumps({"user_id": f"u{i % 2}", "item_id": f"sku-{i % 2 + 1}", "ts": i}) + "\n"
                              for i in range(10)))
    runner = CliRunner()
    out = runner.invoke(cli, ["catalog", str(products), "--broker", broker.url], env=env)
    assert out.exit_code == 0 and "published 2 items" in out.output, out.output
    out = runner.invoke(cli, ["replay", str(events), "--broker", broker.url], env=env)
    assert out.exit_code == 0 and "published 10 events" in out.output, out.output

    with TopicReader(env["STREAMREC_TOPIC_ITEMS"], broker.bootstrap, from_beginning=True, max_messages=2,
                     idle_timeout_s=10) as reader:
        items = sorted(json.loads(r.value)["attributes"]["brand"] for r in reader)
    assert items == ["Acme", "Mugs Inc"]
    out = runner.invoke(cli, ["tail", "--topic", env["STREAMREC_TOPIC_EVENTS"], "--user", "u1", "--from-beginning",
                              "--no-follow", "--broker", broker.url], env=env)
    assert out.exit_code == 0, out.output
    assert sorted(json.loads(ln)["ts"] for ln in out.output.splitlines()) == [1.0, 3.0, 5.0, 7.0, 9.0]
