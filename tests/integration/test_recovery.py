"""kill -9 under load loses nothing and leaves per-user state idempotent; lost local state is rebuilt."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka import KafkaClientConfig, publish_items, read_topic, replay_events, topic_partitions
from stream.demo import scrape
from stream.tables import TableFiles, digest
from tests.conftest import make_catalog

pytestmark = pytest.mark.integration


def synthetic_events(prefix: str, n: int, users: int = 20) -> list[dict[str, Any]]:
    cat = [it.item_id for it in make_catalog()]
    return [{"event_id": f"{prefix}{i}", "user_id": f"{prefix}u{i % users}", "item_id": cat[(i * 7) % len(cat)],
             "event_type": "click", "ts": float(i)} for i in range(n)]


async def collect(cfg: KafkaClientConfig, topic: str, idle: float) -> list[dict[str, Any]]:
    return [json.loads(v) async for _, v, _ in read_topic(cfg, topic, idle_timeout=idle) if v is not None]


def changelog_state(cfg: KafkaClientConfig, app: str) -> dict[str, dict[str, Any]]:
    """Latest value per user from the user-sequences changelog (what a rebuilt worker would restore)."""
    state: dict[str, dict[str, Any]] = {}

    async def go() -> None:
        async for key, value, _ in read_topic(cfg, f"{app}-user-sequences-changelog", idle_timeout=3):
            if key is not None and value is not None:
                state[json.loads(key)] = json.loads(value)

    asyncio.run(go())
    return state


def expected_sequences(events: list[dict[str, Any]], seq_len: int = 50) -> dict[str, list[str]]:
    seqs: dict[str, list[str]] = {}
    seen_ids: set[str] = set()
    for e in events:
        if e["event_id"] in seen_ids:
            continue
        seen_ids.add(e["event_id"])
        seqs.setdefault(e["user_id"], []).append(e["item_id"])
    return {u: s[-seq_len:] for u, s in seqs.items()}


def test_kill_9_under_load_loses_nothing(worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Path) -> None:
    app = "t-crash"
    data = tmp_path / "state"
    w = worker_factory(app, data, STREAMREC_CHECKPOINT_INTERVAL_S="1")
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    events = synthetic_events("k", 600)
    producer = threading.Thread(target=lambda: asyncio.run(replay_events(kafka, f"{app}-events", events, rate=100)))
    producer.start()
    deadline = time.monotonic() + 30
    while (scrape(w.metrics_port, "streamrec_recommendations_total") or 0) < 100 and time.monotonic() < deadline:
        time.sleep(0.1)
    w.kill()  # SIGKILL mid-stream
    restarted_at = time.monotonic()
    w2 = worker_factory(app, data, STREAMREC_CHECKPOINT_INTERVAL_S="1")
    w2.wait_ready(len(make_catalog()), timeout=180)
    producer.join()
    want = {e["event_id"] for e in events}
    answered: list[dict[str, Any]] = []
    dlq: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answered = asyncio.run(collect(kafka, f"{app}-recommendations", idle=2))
        dlq = asyncio.run(collect(kafka, f"{app}-events-dlq", idle=1))
        if want <= {r["event_id"] for r in answered}:
            break
    recovered_s = time.monotonic() - restarted_at
    ids = [r["event_id"] for r in answered]
    lost = want - set(ids)
    assert not lost, f"{len(lost)} events never answered"  # delivered means: read back from the topic
    assert dlq == [], [d["reason"] for d in dlq]  # a redelivery is answered again, never a dead letter
    duplicates = len(ids) - len(set(ids))
    print(f"kill -9: {len(want)} events, {len(set(ids))} answered, {duplicates} answered twice, "
          f"recovered and drained in {recovered_s:.1f} s")
    state = changelog_state(kafka, app)
    for user, seq in expected_sequences(events).items():
        assert state[user]["seq"] == seq, f"{user}: state differs from an uninterrupted run"


def test_lost_local_state_is_rebuilt_from_changelogs(worker_factory: Any, kafka: KafkaClientConfig,
                                                     tmp_path: Path) -> None:
    app = "t-lost"
    data = tmp_path / "state"
    w = worker_factory(app, data)
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    first = [{"event_id": f"l{i}", "user_id": "carol", "item_id": f"sports-{i}", "event_type": "click",
              "ts": float(i)} for i in range(6)]
    asyncio.run(replay_events(kafka, f"{app}-events", first))
    deadline = time.monotonic() + 60
    while (scrape(w.metrics_port, "streamrec_recommendations_total") or 0) < len(first):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    before = changelog_state(kafka, app)
    assert w.stop() == 0
    tables = table_files(data, app)
    digests = {t.name: digest(t.read()) for t in tables}
    assert all(t.read() for t in tables), "both tables hold data before the loss"
    shutil.rmtree(data)  # RocksDB and checkpoints gone
    w2 = worker_factory(app, data)
    w2.wait_ready(len(make_catalog()), timeout=180)  # the catalog came back from the item-embeddings changelog
    assert w2.stop() == 0
    rebuilt = {t.name: digest(t.read()) for t in tables}
    assert rebuilt == digests, "tables rebuilt from their changelogs equal the pre-crash contents"
    w3 = worker_factory(app, data)
    w3.wait_ready(len(make_catalog()), timeout=180)
    asyncio.run(replay_events(kafka, f"{app}-events", [{"event_id": "l99", "user_id": "carol",
                                                         "item_id": "sports-6", "event_type": "click", "ts": 99.0}]))
    recs = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(r["event_id"] == "l99" for r in recs):
        recs = asyncio.run(collect(kafka, f"{app}-recommendations", idle=2))
    last = next(r for r in recs if r["event_id"] == "l99")
    assert not {i["item_id"] for i in last["items"]} & {e["item_id"] for e in first}  # state rebuilt
    after = changelog_state(kafka, app)
    assert after["carol"]["seq"] == [*before["carol"]["seq"], "sports-6"]
    assert scrape(w3.metrics_port, "streamrec_model_version") is not None  # fresh model, worker runs


def table_files(data: Path, app: str) -> list[TableFiles]:
    """The worker's two tables as files (Faust's layout: <data_dir>/v1/tables/<table>-<partition>.db)."""
    tabledir = data / "v1" / "tables"
    return [TableFiles(name, f"{app}-{name}-changelog", 4, tabledir, "")
            for name in ("user-sequences", "item-embeddings")]


def committed_total(cfg: KafkaClientConfig, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over ``topic``'s partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> int:  # OffsetFetch through a consumer (aiokafka's admin call does not parse Tansu's answer)
        partitions = (await topic_partitions(cfg, [topic]))[topic]  # Kafka sends no metadata of unasked topics
        consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            total = 0
            for p in range(partitions):
                total += max(0, await consumer.committed(TopicPartition(topic, p)) or 0)
            return total
        finally:
            await consumer.stop()

    return asyncio.run(go())


def test_restart_relearns_events_after_the_checkpoint_once(worker_factory: Any, kafka: KafkaClientConfig,
                                                           tmp_path: Path) -> None:
    app = "t-relearn"
    data = tmp_path / "state"
    env = {"STREAMREC_CHECKPOINT_INTERVAL_S": "3600"}  # only the checkpoint written at shutdown
    w = worker_factory(app, data, **env)
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    a, b, c = synthetic_events("a", 40), synthetic_events("b", 100), synthetic_events("c", 10)

    def send_and_wait(worker: Any, events: list[dict[str, Any]], total: int) -> None:
        asyncio.run(replay_events(kafka, f"{app}-events", events))
        deadline = time.monotonic() + 60
        while (scrape(worker.metrics_port, "streamrec_recommendations_total") or 0) < total:
            assert time.monotonic() < deadline, "events not answered in time"
            time.sleep(0.2)

    send_and_wait(w, a, len(a))
    assert w.stop() == 0  # checkpoint: the model learned a, offsets recorded
    w2 = worker_factory(app, data, **env)
    w2.wait_ready(len(make_catalog()), timeout=180)
    version_a = scrape(w2.metrics_port, "streamrec_model_version")
    send_and_wait(w2, b, len(b))
    deadline = time.monotonic() + 30
    while committed_total(kafka, app, f"{app}-events") < len(a) + len(b):
        assert time.monotonic() < deadline, "b was never committed"
        time.sleep(0.5)
    w2.kill()  # b is processed and committed, but no checkpoint has learned it

    w3 = worker_factory(app, data, **env)
    w3.wait_ready(len(make_catalog()), timeout=180)
    deadline = time.monotonic() + 60
    while (scrape(w3.metrics_port, "streamrec_relearned_events_total") or 0) < len(b):
        assert time.monotonic() < deadline, "the restarted worker did not re-learn b"
        time.sleep(0.2)
    while (scrape(w3.metrics_port, "streamrec_model_version") or 0) <= (version_a or 0):
        assert time.monotonic() < deadline, "re-learning b did not move the model version"
        time.sleep(0.2)
    assert scrape(w3.metrics_port, "streamrec_relearned_events_total") == len(b)
    send_and_wait(w3, c, len(c))
    assert w3.stop() == 0

    w4 = worker_factory(app, data, **env)  # commits moved past the replay: nothing is re-read again
    w4.wait_ready(len(make_catalog()), timeout=180)
    d = synthetic_events("d", 5)
    send_and_wait(w4, d, len(d))  # any rewind happens before new events are consumed
    assert (scrape(w4.metrics_port, "streamrec_relearned_events_total") or 0) == 0
    want = sorted(e["event_id"] for e in a + b + c + d)
    answered: list[str] = []
    deadline = time.monotonic() + 60  # the counter counts answers handed to the producer, not yet on the topic
    while not set(want) <= set(answered) and time.monotonic() < deadline:
        answered = [r["event_id"] for r in asyncio.run(collect(kafka, f"{app}-recommendations", idle=2))]
    assert sorted(answered) == want, "each event answered exactly once"
    assert not asyncio.run(collect(kafka, f"{app}-events-dlq", idle=1))
    state = changelog_state(kafka, app)
    for user, seq in expected_sequences(a + b + c + d).items():
        assert state[user]["seq"] == seq
