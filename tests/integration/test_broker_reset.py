"""The embedded broker restarts empty (memory storage): the worker notices, keeps its state and carries on."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.broker import EmbeddedBroker, free_port
from connectors.kafka import KafkaClientConfig, publish_items, read_json_topic, read_topic, replay_events
from stream.demo import WorkerProcess, scrape
from tests.conftest import make_catalog

pytestmark = pytest.mark.integration


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


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


def test_worker_recovers_when_the_broker_restarts_empty(tmp_path: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker.log").start()
    cfg = KafkaClientConfig([broker.bootstrap], {})
    w = WorkerProcess(broker.url, tmp_path / "state", free_port(), tmp_path / "worker.log",
                      {"STREAMREC_BROKER_CHECK_INTERVAL_S": "1", "STREAMREC_BATCH_WITHIN_S": "0.02",
                       "STREAMREC_LOG_LEVEL": "info"}).start()
    try:
        catalog = make_catalog()
        asyncio.run(publish_items(cfg, "items", catalog))
        w.wait_ready(len(catalog), timeout=180)
        first = [{"event_id": f"e{i}", "user_id": "alice", "item_id": f"space-{i}", "event_type": "click",
                  "ts": float(i)} for i in range(5)]
        asyncio.run(replay_events(cfg, "events", first))
        answers(cfg, "e4")
        assert scrape(w.metrics_port, "streamrec_broker_resets_total") == 0
        pid = w.proc.pid if w.proc else None

        broker.kill()  # memory storage: every topic, changelog and committed offset is gone
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker2.log").start()

        wait_for(lambda: (scrape(w.metrics_port, "streamrec_broker_resets_total") or 0) >= 1
                 and (scrape(w.metrics_port, "streamrec_catalog_items") or 0) >= len(catalog), 180,
                 "the worker to notice the reset and come back with its catalog")
        assert w.alive() and w.proc is not None and w.proc.pid == pid, "recovered in place, not crashed"
        asyncio.run(replay_events(cfg, "events", [{"event_id": "e5", "user_id": "alice", "item_id": "space-5",
                                                   "event_type": "click", "ts": 5.0}]))
        rec = answers(cfg, "e5", timeout=120)
        had = {e["item_id"] for e in first} | {"space-5"}
        assert not had & {i["item_id"] for i in rec["items"]}, "alice's history survived the broker reset"
        assert rec["model_version"] >= 1, "the model resumed from its checkpoint"
        seq = changelog(cfg)["alice"]["seq"]
        assert seq == [f"space-{i}" for i in range(6)], "the fresh changelog holds the whole sequence"
    finally:
        w.stop()
        broker.stop()
    assert "lost its data" in (tmp_path / "worker.log").read_text()


def test_interrupted_republish_is_finished_at_the_next_start(tmp_path: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker.log").start()
    cfg = KafkaClientConfig([broker.bootstrap], {})
    env = {"STREAMREC_BATCH_WITHIN_S": "0.02", "STREAMREC_LOG_LEVEL": "info"}
    w = WorkerProcess(broker.url, tmp_path / "state", free_port(), tmp_path / "worker.log", env).start()
    try:
        catalog = make_catalog()
        asyncio.run(publish_items(cfg, "items", catalog))
        w.wait_ready(len(catalog), timeout=180)
        first = [{"event_id": f"e{i}", "user_id": "bob", "item_id": f"sports-{i}", "event_type": "click",
                  "ts": float(i)} for i in range(4)]
        asyncio.run(replay_events(cfg, "events", first))
        answers(cfg, "e3")
        assert w.stop() == 0
        broker.kill()  # the broker lost everything while the worker was down mid-republish
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker2.log").start()
        (tmp_path / "state" / "republish-pending").write_text("interrupted\n")
        w = WorkerProcess(broker.url, tmp_path / "state", free_port(), tmp_path / "worker2.log", env).start()
        w.wait_ready(len(catalog), timeout=180)
        assert not (tmp_path / "state" / "republish-pending").exists()
        assert changelog(cfg)["bob"]["seq"] == [f"sports-{i}" for i in range(4)], "changelog republished"
        asyncio.run(replay_events(cfg, "events", [{"event_id": "e4", "user_id": "bob", "item_id": "sports-4",
                                                   "event_type": "click", "ts": 4.0}]))
        rec = answers(cfg, "e4", timeout=120)
        assert not {f"sports-{i}" for i in range(5)} & {i["item_id"] for i in rec["items"]}
    finally:
        w.stop()
        broker.stop()
