"""Apache Kafka keeps its topics on disk: one that vanishes was deleted by someone. The worker says so (one ERROR
line, the ``streamrec_topic_missing`` gauge behind the StreamrecTopicMissing alert) and does nothing else: no table
republish, no group eviction, no restart. (On Tansu a vanished topic means the broker lost its data:
test_broker_reset.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka import KafkaClientConfig, admin_client, delete_topics, publish_items, replay_events
from stream.demo import scrape
from tests.conftest import make_catalog, wait_for
from tests.integration.test_engine import ev, read_json

pytestmark = [pytest.mark.integration, pytest.mark.brokers("kafka")]


def group_members(cfg: KafkaClientConfig, group: str) -> set[str]:
    async def go() -> set[str]:
        async with admin_client(cfg) as admin:
            [resp] = await admin.describe_consumer_groups([group], group_coordinator_id=await admin.find_coordinator(group))
            return {m[0] for g in resp.groups for m in g[5]}  # (member_id, client_id, host, metadata, assignment)

    return asyncio.run(go())


def test_deleted_topic_is_reported_not_recovered(worker_factory: Any, kafka: KafkaClientConfig,
                                                 tmp_path: Path) -> None:
    app = "t-deleted"
    w = worker_factory(app, STREAMREC_BROKER_CHECK_INTERVAL_S="1")
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    first = [ev(i, "dora", f"space-{i}") for i in range(4)]
    asyncio.run(replay_events(kafka, f"{app}-events", first))
    assert {r["event_id"] for r in asyncio.run(read_json(kafka, f"{app}-recommendations", len(first)))} == \
        {e["event_id"] for e in first}
    missing = f"streamrec_topic_missing{{topic={app}-items}}"
    wait_for(lambda: scrape(w.metrics_port, missing) == 0, 30, "the watch to see the items topic")
    members = group_members(kafka, app)
    assert members, "the worker is a member of its group"
    pid = w.proc.pid if w.proc else None

    asyncio.run(delete_topics(kafka, [f"{app}-items"]))  # an operator's mistake
    wait_for(lambda: scrape(w.metrics_port, missing) == 1, 60, "streamrec_topic_missing for the deleted topic")
    log = (tmp_path / f"{app}-worker.log").read_text()
    assert f"[ERROR] broker: topic {app}-items is gone from the broker" in log
    assert "so broker_profile kafka" in log, "broker_profile auto recognised Apache Kafka"
    assert "lost its data" not in log and "republish" not in log
    assert scrape(w.metrics_port, "streamrec_broker_resets_total") == 0

    later = [ev(10 + i, "dora", f"cooking-{i}") for i in range(3)]  # events still flow: nothing was reset
    asyncio.run(replay_events(kafka, f"{app}-events", later))
    want = {e["event_id"] for e in later}  # the deletion rebalanced the group: earlier events may be answered again
    wait_for(lambda: want <= {r["event_id"] for r in asyncio.run(read_json(kafka, f"{app}-recommendations", 10**6,
                                                                           timeout=2))}, 90, "answers to later events")
    assert w.alive() and w.proc is not None and w.proc.pid == pid, "no restart"
    assert group_members(kafka, app) == members, "no member evicted from the group"
    assert scrape(w.metrics_port, missing) == 1 and scrape(w.metrics_port, "streamrec_broker_resets_total") == 0
