"""Issue 15 through a real broker and worker: a catalog of 20,000 generated items (with pre-computed embeddings)
and some themed ones (without: the worker encodes them) is past ``retrieval.exact_max_items`` and switches the
worker to two-stage recommendation; every item is in the worker's catalog, every answer holds to the README's
schema and names catalog items. Two items that arrive later with one embedding are in the ANN index at once: each
is the other's nearest through ``GET /items/{id}/similar``, which past ``exact_max_items`` scans the vectors the
index stores (``test_retrieval.py`` shows an item added to the index is a candidate); events on them are answered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.clients import ItemProducer
from connectors.kafka import KafkaClientConfig, replay_events
from connectors.schemas import RECOMMENDATION_JSON_SCHEMA, ItemEmbedding, schema_errors
from stream.demo import scrape
from tests.conftest import make_catalog, wait_for
from tests.integration.test_engine import ev, read_json
from tests.integration.test_web import get

pytestmark = pytest.mark.integration

N_GENERATED = 20_000  # with pre-computed embeddings: nothing for the worker to encode


def test_two_stage_worker(worker_factory: Any, broker: Any, kafka: KafkaClientConfig, tmp_path: Path) -> None:
    app = "t-large"
    # the index's vectors rewritten in place and its graph rebuilt in the background while the worker runs
    w = worker_factory(app, STREAMREC_RETRIEVAL='{"exact_max_items": 10000, "refresh_rows": 4096, "rebuild_updates": 2}')
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 384)).astype(np.float32)
    vectors = centres[np.arange(N_GENERATED) % 8] + 0.5 * rng.standard_normal((N_GENERATED, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = make_catalog()  # themed texts, encoded by the worker
    with ItemProducer(broker.bootstrap, topic=f"{app}-items") as producer:
        for j in range(N_GENERATED):
            producer.send(f"gen{j}", f"generated item {j} of group {j % 8}",
                          embedding=ItemEmbedding.from_floats("all-MiniLM-L6-v2", vectors[j].tolist()))
        for it in texts:
            producer.send(it.item_id, it.text)
    w.wait_ready(N_GENERATED + len(texts), timeout=300)

    users = [f"user{i}" for i in range(10)]
    events = [ev(n, u, f"gen{(n * 8 + i) % N_GENERATED}") for n in range(4) for i, u in enumerate(users)]
    events += [ev(10 + n, u, texts[n].item_id) for n in range(3) for u in users[:3]]
    asyncio.run(replay_events(kafka, f"{app}-events", events))
    recs = asyncio.run(read_json(kafka, f"{app}-recommendations", len(events)))
    assert {r["event_id"] for r in recs} == {e["event_id"] for e in events}
    known = {f"gen{j}" for j in range(N_GENERATED)} | {it.item_id for it in texts}
    for r in recs:
        assert schema_errors(r, RECOMMENDATION_JSON_SCHEMA) == [], r
        assert r["items"] and {x["item_id"] for x in r["items"]} <= known
    log = (tmp_path / f"{app}-worker.log").read_text()
    assert "two-stage recommendation and sampled softmax from now on" in log
    wait_for(lambda: scrape(w.metrics_port, "streamrec_retrieval_index_items") == N_GENERATED + len(texts), 60,
             "the index's items in the metrics")

    # two items arriving later with one embedding (no other item's): each the other's nearest among the index's
    # vectors, so both were added to the index on arrival; events on them are answered
    twin = rng.standard_normal(384).astype(np.float32)
    twin /= np.linalg.norm(twin)
    with ItemProducer(broker.bootstrap, topic=f"{app}-items") as producer:
        for name in ("late-a", "late-b"):
            producer.send(name, f"{name}: a new item", embedding=ItemEmbedding.from_floats("all-MiniLM-L6-v2", twin.tolist()))
    w.wait_ready(N_GENERATED + len(texts) + 2, timeout=60)
    for a, b in (("late-a", "late-b"), ("late-b", "late-a")):
        status, body = get(w.web_port, f"/items/{a}/similar?k=5")
        assert status == 200 and body["items"][0]["item_id"] == b and body["items"][0]["score"] > 0.99, body
    more = [ev(20 + n, f"late{n}", "late-a") for n in range(3)]
    asyncio.run(replay_events(kafka, f"{app}-events", more))
    later = asyncio.run(read_json(kafka, f"{app}-recommendations", len(events) + len(more)))
    assert {e["event_id"] for e in more} <= {r["event_id"] for r in later}
    assert w.alive()
