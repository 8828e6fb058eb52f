"""Two workers in one group learn one model through the shared topic (stream.sharing), on each broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from connectors.kafka import KafkaClientConfig, assign_all_partitions, ensure_topics, publish_items, replay_events
from learners.sharing import Contribution
from stream.demo import scrape
from stream.sharing import CONTRIBUTION_SCHEMA
from tests.conftest import make_catalog, wait_for
from tests.integration.test_engine import ev, read_json

pytestmark = pytest.mark.integration

SHARING = {"STREAMREC_SHARING_INTERVAL_S": "0.5", "STREAMREC_CHECKPOINT_INTERVAL_S": "1"}


async def read_all(cfg: KafkaClientConfig, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=32 * 2**20)
    await consumer.start()
    try:
        tps = await assign_all_partitions(consumer, topic)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=250)
            out.extend(r for rs in batch.values() for r in rs)
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
        return out
    finally:
        await consumer.stop()


def learned(w: Any) -> float:
    return scrape(w.metrics_port, "streamrec_model_events_learned") or 0.0


def test_two_workers_learn_every_event_and_a_later_worker_catches_up(
        worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Any) -> None:
    app = "t-share"
    asyncio.run(ensure_topics(kafka, {f"{app}-events": 4, f"{app}-items": 4}))
    a = worker_factory(app, tmp_path / "a", STREAMREC_WORKER_NAME="a", **SHARING)
    b = worker_factory(app, tmp_path / "b", STREAMREC_WORKER_NAME="b", **SHARING)
    for w in (a, b):
        wait_for(lambda w=w: scrape(w.metrics_port, "streamrec_catalog_items") is not None, 180, "worker up")
    catalog = make_catalog()
    asyncio.run(publish_items(kafka, f"{app}-items", catalog))
    for w in (a, b):
        w.wait_ready(len(catalog), timeout=120)

    users = [f"user{i}" for i in range(16)]
    events = [ev(n, u, f"cooking-{(n + k) % 8}") for n in range(4) for k, u in enumerate(users)]
    asyncio.run(replay_events(kafka, f"{app}-events", events))
    recs = asyncio.run(read_json(kafka, f"{app}-recommendations", len(events)))
    assert {r["event_id"] for r in recs} == {e["event_id"] for e in events}
    served = [scrape(w.metrics_port, "streamrec_recommendations_total") or 0 for w in (a, b)]
    assert all(0 < n < len(events) for n in served), f"each worker should own some users: {served}"
    # each learned its own users' events and merged the other's: both models have learned every event
    wait_for(lambda: learned(a) == learned(b) == len(events), 60,
               lambda: f"both workers learn all {len(events)} events: a {learned(a)}, b {learned(b)}")
    for w in (a, b):
        assert (scrape(w.metrics_port, "streamrec_shared_contributions_total{outcome=merged}") or 0) >= 1
        assert (scrape(w.metrics_port, "streamrec_shared_bytes_total{direction=sent}") or 0) > 0
        assert scrape(w.metrics_port, "streamrec_sharing_peer_lag_seconds") is not None

    # every message on the shared topic is a contribution in the documented form, numbered on per worker
    shared = asyncio.run(read_all(kafka, f"{app}-model-shares"))
    seqs: dict[str, list[int]] = {}
    total = 0
    for r in shared:
        assert dict(r.headers).get("schema") == CONTRIBUTION_SCHEMA.encode()
        c = Contribution.from_bytes(r.value)
        assert r.key == c.worker.encode() and c.worker in {"a", "b"}
        seqs.setdefault(c.worker, []).append(c.seq)
        total += len(c)
    assert total == len(events), "each learned event is contributed once"
    assert all(s == sorted(set(s)) and s[0] == 1 for s in seqs.values()), seqs

    # b stops; c joins later with no checkpoint: before it says ready it has merged a's and b's contributions.
    # Events b had answered but not committed when it stopped may reach a again (at least once): a then learns
    # and contributes them too, so the total every model must reach is what the topic holds, each counted once.
    b.stop()
    c = worker_factory(app, tmp_path / "c", STREAMREC_WORKER_NAME="c", **SHARING)
    wait_for(lambda: scrape(c.metrics_port, "streamrec_ready") == 1, 180, "worker c ready")
    assert learned(c) >= len(events)
    wait_for(lambda: learned(c) == learned(a) == contributed(kafka, app), 60,
               lambda: f"c and a learn what the topic holds: c {learned(c)}, a {learned(a)}, topic {contributed(kafka, app)}")
    # a restarts from its checkpoint and reads on from the offset saved with it: nothing is merged twice
    a.stop()
    a.start()
    wait_for(lambda: scrape(a.metrics_port, "streamrec_ready") == 1, 180, "worker a ready again")
    wait_for(lambda: learned(a) == learned(c) == contributed(kafka, app), 60,
               lambda: f"a after its restart: {learned(a)}, c {learned(c)}, topic {contributed(kafka, app)}")


def contributed(kafka: KafkaClientConfig, app: str) -> int:
    """Events in every contribution on the shared topic: what each model has learned once all are merged."""
    return sum(len(Contribution.from_bytes(r.value)) for r in asyncio.run(read_all(kafka, f"{app}-model-shares")))


def test_a_worker_killed_after_contributing_restores_what_it_contributed_and_contributes_nothing_twice(
        worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Any) -> None:
    """kill -9 after a contribution the worker's checkpoint predates: the restarted worker takes that contribution
    back from the shared topic and does not learn those events again when it reads them again, so it contributes
    them once: whatever reads the shared topic (its peers; here the test) counts every event once."""
    app = "t-share-kill"
    asyncio.run(ensure_topics(kafka, {f"{app}-events": 2, f"{app}-items": 1}))
    a = worker_factory(app, tmp_path / "a", STREAMREC_WORKER_NAME="a", STREAMREC_SHARING_INTERVAL_S="0.5",
                       STREAMREC_CHECKPOINT_INTERVAL_S="3600")  # checkpoints only when it stops gracefully
    wait_for(lambda: scrape(a.metrics_port, "streamrec_catalog_items") is not None, 180, "worker up")
    catalog = make_catalog()
    asyncio.run(publish_items(kafka, f"{app}-items", catalog))
    a.wait_ready(len(catalog), timeout=120)
    users = [f"user{i}" for i in range(16)]

    def send(batch: int) -> int:
        events = [ev(n, u, f"cooking-{(n + k) % 8}") for n in range(4 * batch, 4 * batch + 4)
                  for k, u in enumerate(users)]
        asyncio.run(replay_events(kafka, f"{app}-events", events))
        return len(events)

    total = send(0)
    wait_for(lambda: contributed(kafka, app) == total, 60, lambda: f"batch 0 contributed: {contributed(kafka, app)}")
    a.stop()  # its checkpoint: batch 0 learned and contributed
    a.start()
    wait_for(lambda: scrape(a.metrics_port, "streamrec_ready") == 1, 180, "worker a ready again")
    total += send(1)
    wait_for(lambda: contributed(kafka, app) == total, 60, lambda: f"batch 1 contributed: {contributed(kafka, app)}")
    a.kill()  # batch 1 reached the topic; the checkpoint has batch 0 only
    a.start()
    wait_for(lambda: scrape(a.metrics_port, "streamrec_ready") == 1, 180, "worker a ready after kill -9")
    total += send(2)
    wait_for(lambda: learned(a) == total, 60, lambda: f"a learns each of {total} events once: {learned(a)}")
    again = scrape(a.metrics_port, "streamrec_shared_events_total{outcome=already_shared}") or 0
    assert again == 64, f"batch 1, read again after the kill, is in the model already: {again}"
    a.stop()  # a clean stop sends whatever is left to send: after it the topic holds all a will ever contribute
    assert contributed(kafka, app) == total, "every event contributed once"


def test_a_worker_giving_up_partitions_sends_what_it_learned_before_their_new_owner_reads_them(
        worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Any) -> None:
    """A second worker joins: the rebalance moves partitions away from the first, which sends what it learned
    while it gives them up (its sharing interval here is an hour: nothing else would send it), and the new owner
    merges that before it takes their events, so neither learns an event the other has."""
    app = "t-share-move"
    asyncio.run(ensure_topics(kafka, {f"{app}-events": 4, f"{app}-items": 1}))
    a = worker_factory(app, tmp_path / "a", STREAMREC_WORKER_NAME="a", STREAMREC_SHARING_INTERVAL_S="3600")
    wait_for(lambda: scrape(a.metrics_port, "streamrec_catalog_items") is not None, 180, "worker up")
    catalog = make_catalog()
    asyncio.run(publish_items(kafka, f"{app}-items", catalog))
    a.wait_ready(len(catalog), timeout=120)
    users = [f"user{i}" for i in range(16)]
    events = [ev(n, u, f"cooking-{(n + k) % 8}") for n in range(4) for k, u in enumerate(users)]
    asyncio.run(replay_events(kafka, f"{app}-events", events))
    wait_for(lambda: learned(a) == len(events), 60, lambda: f"a learns the {len(events)} events: {learned(a)}")
    assert contributed(kafka, app) == 0  # an hour to its first contribution
    b = worker_factory(app, tmp_path / "b", STREAMREC_WORKER_NAME="b", STREAMREC_SHARING_INTERVAL_S="0.5")
    wait_for(lambda: scrape(b.metrics_port, "streamrec_ready") == 1, 180, "worker b ready")
    wait_for(lambda: contributed(kafka, app) == len(events), 60,
             lambda: f"a's contribution, sent in the rebalance: {contributed(kafka, app)} events")
    wait_for(lambda: learned(b) == len(events), 60, lambda: f"b merged it: {learned(b)}")
    assert (scrape(a.metrics_port, "streamrec_shared_contributions_total{outcome=sent}") or 0) >= 1
