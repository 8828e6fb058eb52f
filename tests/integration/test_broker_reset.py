"""The embedded broker restarts empty (memory storage): the worker notices, keeps its state and carries on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.broker import EmbeddedBroker, free_port
from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, read_json_topic, read_topic, replay_events
from stream.demo import WorkerProcess, scrape
from tests.conftest import make_catalog, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.brokers("tansu")]


def answers(cfg: KafkaClientConfig, want: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in asyncio.run(read_json_topic(cfg, "recommendations", idle_timeout=1.0)):
            if r["event_id"] == want:
                return r
    raise AssertionError(f"no recommendation for {want}")


def changelog(cfg: KafkaClientConfig) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        return {json.loads(k): json.loads(v) async for k, v, _ in
                read_topic(cfg, "streamrec-user-sequences-changelog", idle_timeout=2) if k and v}

    return asyncio.run(go())


def click(n: int, user: str, item: str) -> dict[str, Any]:
    return {"event_id": f"e{n}", "user_id": user, "item_id": item, "event_type": "click", "ts": float(n)}


@dataclass
class Rig:
    """A broker on a fixed port and one worker process (either may be replaced by the test)."""

    tmp: Path
    port: int
    broker: EmbeddedBroker
    env: dict[str, str]
    worker: Any = None  # the WorkerProcess running now

    @property
    def cfg(self) -> KafkaClientConfig:
        return KafkaClientConfig([self.broker.bootstrap], {})

    def restart_broker_empty(self) -> None:
        self.broker.kill()  # memory storage: every topic, changelog and committed offset is gone
        self.broker = EmbeddedBroker(port=self.port, log_path=self.tmp / "broker2.log").start()

    def start_worker(self, log_name: str) -> WorkerProcess:
        self.worker = WorkerProcess(self.broker.url, self.tmp / "state", free_port(), self.tmp / log_name,
                                    self.env).start()
        return self.worker


@contextlib.contextmanager
def rig_with_history(tmp: Path, events: list[dict[str, Any]], **env: str) -> Iterator[Rig]:
    """Broker + worker with the test catalog, after ``events`` were answered; both stopped on exit."""
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp / "broker.log").start()
    rig = Rig(tmp, port, broker, {"STREAMREC_BATCH_WITHIN_S": "0.02", "STREAMREC_LOG_LEVEL": "info", **env})
    try:
        w = rig.start_worker("worker.log")
        asyncio.run(publish_items(rig.cfg, "items", make_catalog()))
        w.wait_ready(len(make_catalog()), timeout=180)
        asyncio.run(replay_events(rig.cfg, "events", events))
        answers(rig.cfg, events[-1]["event_id"])
        yield rig
    finally:
        if rig.worker is not None:
            rig.worker.stop()
        rig.broker.stop()


def test_worker_recovers_when_the_broker_restarts_empty(tmp_path: Path) -> None:
    first = [click(i, "alice", f"space-{i}") for i in range(5)]
    with rig_with_history(tmp_path, first, STREAMREC_BROKER_CHECK_INTERVAL_S="1") as rig:
        w = rig.worker
        assert scrape(w.metrics_port, "streamrec_broker_resets_total") == 0
        pid = w.proc.pid if w.proc else None
        rig.restart_broker_empty()
        log_path = tmp_path / "worker.log"
        wait_for(lambda: (scrape(w.metrics_port, "streamrec_broker_resets_total") or 0) >= 1
                 and (scrape(w.metrics_port, "streamrec_catalog_items") or 0) >= len(make_catalog())
                 and log_path.read_text().count("ready: catalog of") >= 2, 180,
                 "the worker to notice the reset and come back ready with its catalog")
        # the metrics above can still be the old process's while it republishes; the second 'ready:' line is the
        # restarted one's (an event sent in that window can go unanswered on Tansu: see the README's Reliability)
        assert w.alive() and w.proc is not None and w.proc.pid == pid, "recovered in place, not crashed"
        asyncio.run(replay_events(rig.cfg, "events", [click(5, "alice", "space-5")]))
        rec = answers(rig.cfg, "e5", timeout=120)
        had = {e["item_id"] for e in first} | {"space-5"}
        assert not had & {i["item_id"] for i in rec["items"]}, "alice's history survived the broker reset"
        assert rec["model_version"] >= 1, "the model resumed from its checkpoint"
        seq = changelog(rig.cfg)["alice"]["seq"]
        assert seq == [f"space-{i}" for i in range(6)], "the fresh changelog holds the whole sequence"
    log = (tmp_path / "worker.log").read_text()
    assert "so broker_profile tansu" in log, "broker_profile auto recognised Tansu"
    assert "lost its data" in log


def commit_stale_offsets(cfg: KafkaClientConfig, group: str, topic: str, partitions: int, offset: int) -> None:
    """Commit ``offset`` on every partition, as a worker shutting down after a reset can do on the fresh broker."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    async def go() -> None:
        consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp in tps})
        finally:
            await consumer.stop()

    asyncio.run(go())


def test_interrupted_republish_is_finished_at_the_next_start(tmp_path: Path) -> None:
    with rig_with_history(tmp_path, [click(i, "bob", f"sports-{i}") for i in range(4)]) as rig:
        assert rig.worker.stop() == 0
        rig.restart_broker_empty()  # the broker lost everything while the worker was down mid-republish
        (tmp_path / "state" / "republish-pending").write_text("interrupted\n")
        asyncio.run(ensure_topics(rig.cfg, {"events": 4}))
        commit_stale_offsets(rig.cfg, "streamrec", "events", 4, 4)  # bob's offsets on the lost topic
        asyncio.run(replay_events(rig.cfg, "events", [click(4, "bob", "sports-4")]))  # offset 0 on the fresh one
        rig.start_worker("worker2.log").wait_ready(len(make_catalog()), timeout=180)
        # /metrics is up (with the resumed checkpoint's catalog) before the republish: it is the liveness probe
        wait_for(lambda: not (tmp_path / "state" / "republish-pending").exists(), 120, "the republish to finish")
        assert "rewound them to the beginning" in (tmp_path / "worker2.log").read_text()
        rec = answers(rig.cfg, "e4", timeout=120)
        assert changelog(rig.cfg)["bob"]["seq"] == [f"sports-{i}" for i in range(5)], "changelog republished"
        assert not {f"sports-{i}" for i in range(5)} & {i["item_id"] for i in rec["items"]}
