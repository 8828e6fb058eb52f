"""Two workers in one group split the partitions, yet each ranks the whole catalog."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, replay_events
from learners.types import Item
from stream.demo import scrape, scrape_all
from tests.conftest import make_catalog, wait_for
from tests.integration.test_engine import ev, read_json, start_ready

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


def test_events_flowing_while_a_worker_joins_and_leaves_all_reach_an_agent(
        worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Any) -> None:
    """Two rebalances under a steady stream: every event is answered, and neither worker's events agent saw a
    batch skip offsets (Faust handed on records fetched while a rebalance sought, and dropped them: see Known
    platform quirks; the worker's consumer holds the partitions and seeks again). The second worker stops about a
    second after its first answer, in the middle of a batch: Faust's take_events acked that batch as the agent
    was cancelled, and the commit at the stop passed it (Tansu: 1 to 149 of the 2,000 unanswered in 9 of 14 runs
    before hold_back)."""
    app = "t-scale-join"
    asyncio.run(ensure_topics(kafka, {f"{app}-events": 4, f"{app}-items": 1}))
    a = start_ready(worker_factory, kafka, app, tmp_path / "a")
    users = [f"user{i}" for i in range(40)]
    events = [ev(n, u, f"cooking-{(n + k) % 8}") for n in range(50) for k, u in enumerate(users)]
    producer = threading.Thread(target=lambda: asyncio.run(replay_events(kafka, f"{app}-events", events, rate=50)))
    producer.start()
    b = worker_factory(app, tmp_path / "b")
    wait_for(lambda: (scrape(b.metrics_port, "streamrec_recommendations_total") or 0) > 0, 180, "b answers")
    skipped_b = scrape(b.metrics_port, "streamrec_event_offsets_skipped_total")
    assert b.stop() == 0  # the second rebalance: a takes every partition back
    producer.join()
    want = {e["event_id"] for e in events}

    def unanswered() -> set[str]:
        return want - {r["event_id"] for r in asyncio.run(read_json(kafka, f"{app}-recommendations", 10**9, 3))}

    def state() -> str:
        left = sorted(unanswered())
        seen = {k: v for k, v in scrape_all(a.metrics_port).items()
                if k.startswith(("streamrec_consumer_lag", "streamrec_recommendations_total", "streamrec_ready"))}
        return f"{len(left)} events unanswered ({left[:8]}); worker a: {seen}"

    wait_for(lambda: not unanswered(), 90, state)
    assert skipped_b == 0 and scrape(a.metrics_port, "streamrec_event_offsets_skipped_total") == 0
