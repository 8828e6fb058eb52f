"""The poison corpus through a live worker: all of it in the DLQ with reasons, counted, no model update from it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from connectors.kafka import KafkaClientConfig, publish_items, read_topic, replay_events
from stream.demo import scrape
from tests.conftest import make_catalog
from tests.unit.connectors.test_poison_corpus import CORPUS

pytestmark = pytest.mark.integration


def metric_sum(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        return sum(float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))


async def read_all(cfg: KafkaClientConfig, topic: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    return [json.loads(v) async for _, v, _ in read_topic(cfg, topic, until_count=count, idle_timeout=timeout)
            if v is not None]


def test_poison_corpus_goes_to_dlq_and_teaches_nothing(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    app = "t-poison"
    w = worker_factory(app)
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    good = [{"event_id": f"g{n}", "user_id": f"u{n % 4}", "item_id": f"space-{n % 8}", "event_type": "click",
             "ts": float(n)} for n in range(12)]
    asyncio.run(replay_events(kafka, f"{app}-events", good))
    asyncio.run(read_all(kafka, f"{app}-recommendations", len(good)))
    deadline = time.monotonic() + 30
    while metric_sum(w.metrics_port, "streamrec_events_total") < len(good) and time.monotonic() < deadline:
        time.sleep(0.2)
    # learning trails the answers (the learn queue): the count of updates the poison must not move is read after it
    while (scrape(w.metrics_port, "streamrec_model_events_learned") or 0) < len(good) and time.monotonic() < deadline:
        time.sleep(0.2)
    updates_before = scrape(w.metrics_port, "streamrec_model_updates_total")
    poison = [raw for _, raw, _ in CORPUS] + [json.dumps(good[3]).encode()]  # + a duplicate event id
    expected = sorted([str(r) for _, _, r in CORPUS] + ["duplicate"])

    async def inject() -> None:
        prod = AIOKafkaProducer(bootstrap_servers=list(kafka.bootstrap_servers), max_request_size=1_048_576)
        await prod.start()
        try:
            for raw in poison:
                await prod.send_and_wait(f"{app}-events", raw, key=b"u1")
        finally:
            await prod.stop()

    asyncio.run(inject())
    dlq = asyncio.run(read_all(kafka, f"{app}-events-dlq", len(poison)))
    assert sorted(d["reason"] for d in dlq) == expected
    assert all(d["detail"] for d in dlq)
    deadline = time.monotonic() + 30
    while metric_sum(w.metrics_port, "streamrec_events_invalid_total") < len(poison) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric_sum(w.metrics_port, "streamrec_events_invalid_total") == len(poison)
    assert scrape(w.metrics_port, "streamrec_model_updates_total") == updates_before
    # an event for an item not in the catalog is not poison: it is answered and kept, but not trained on
    asyncio.run(replay_events(kafka, f"{app}-events", [{"event_id": "unk", "user_id": "u1", "item_id": "no-such-item",
                                                         "event_type": "click", "ts": 99.0}]))
    recs = asyncio.run(read_all(kafka, f"{app}-recommendations", len(good) + 1))
    assert any(r["event_id"] == "unk" for r in recs)
    assert scrape(w.metrics_port, "streamrec_model_updates_total") == updates_before
    assert w.alive()


def test_flooding_user_is_capped(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    app = "t-flood"
    w = worker_factory(app, STREAMREC_USER_RATE_PER_S="5", STREAMREC_USER_BURST="20")
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    flood = [{"event_id": f"f{n}", "user_id": "bot", "item_id": f"sports-{n % 8}", "event_type": "click",
              "ts": float(n)} for n in range(300)]
    calm = [{"event_id": f"c{n}", "user_id": "human", "item_id": f"space-{n}", "event_type": "click",
             "ts": float(n)} for n in range(5)]
    t0 = time.monotonic()
    asyncio.run(replay_events(kafka, f"{app}-events", flood + calm))
    recs = asyncio.run(read_all(kafka, f"{app}-recommendations", 10_000, timeout=8))
    elapsed = time.monotonic() - t0
    bot = sum(1 for r in recs if r["user_id"] == "bot")
    assert bot <= 20 + 5 * elapsed
    assert sum(1 for r in recs if r["user_id"] == "human") == len(calm)
    dlq = asyncio.run(read_all(kafka, f"{app}-events-dlq", 300 - bot, timeout=10))
    assert len(dlq) == 300 - bot and {d["reason"] for d in dlq} == {"rate_limited"}
    print(f"flood: {bot} of 300 bot events answered in {elapsed:.1f} s, {len(dlq)} capped; all 5 human events answered")
