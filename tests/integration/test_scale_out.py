"""Two workers in one group split the partitions, yet each ranks the whole catalog."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, replay_events
from learners.types import Item
from stream.demo import scrape
from tests.conftest import make_catalog, wait_for
from tests.integration.test_engine import ev, read_json

pytestmark = pytest.mark.integration


def test_two_workers_each_see_the_whole_catalog(worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Any) -> None:
    app = "t-scale"
    asyncio.run(ensure_topics(kafka, {f"{app}-events": 4, f"{app}-items": 4}))
    a = worker_factory(app, tmp_path / "a")
    b = worker_factory(app, tmp_path / "b")
    for w in (a, b):  # whoever encodes the catalog, a worker owning none or some items partitions needs the rest
        wait_for(lambda w=w: scrape(w.metrics_port, "streamrec_catalog_items") is not None, 180, "worker up")
    catalog = make_catalog()
    asyncio.run(publish_items(kafka, f"{app}-items", catalog))
    for w in (a, b):
        w.wait_ready(len(catalog), timeout=120)
    # an item added later is encoded by one worker and reaches both
    late = Item("late-arrival", "A cooking story about the soup and the bread, a late episode.")
    asyncio.run(publish_items(kafka, f"{app}-items", [late]))
    for w in (a, b):
        w.wait_ready(len(catalog) + 1, timeout=60)

    users = [f"user{i}" for i in range(12)]
    events = [ev(n, u, f"cooking-{n % 6}") for n in range(3) for u in users]
    asyncio.run(replay_events(kafka, f"{app}-events", events))
    recs = asyncio.run(read_json(kafka, f"{app}-recommendations", len(events)))
    assert {r["event_id"] for r in recs} == {e["event_id"] for e in events}
    served = [scrape(w.metrics_port, "streamrec_recommendations_total") or 0 for w in (a, b)]
    assert all(n > 0 for n in served), f"both workers should own some events partitions: {served}"
    assert {w.alive() for w in (a, b)} == {True}
