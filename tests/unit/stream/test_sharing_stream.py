"""The worker's side of sharing (stream.sharing): what it does with whatever a record on the shared topic holds."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from aiokafka.structs import ConsumerRecord

from connectors.kafka import KafkaClientConfig
from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.sharing import Contribution
from learners.training import TrainingConfig
from learners.types import Interaction, Item
from stream.checkpoint import CheckpointStore
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor
from stream.settings import Settings
from stream.sharing import Sharing, publish, readable, topic_configs, worker_name
from stream.worker import checkpoint_saver, saved_state


def record(value: bytes | None, offset: int, ts_ms: int = 1_000_000) -> ConsumerRecord:
    return ConsumerRecord("model-shares", 0, offset, ts_ms, 0, b"k", value, None, 0, len(value or b""), [])


def test_unreadable_records_are_counted_and_skipped_and_peers_timed() -> None:
    metrics = WorkerMetrics()
    sr = SimpleNamespace(sharing=Sharing("me"), metrics=metrics)
    good = Contribution("peer", 1, [("a", 1.0, ())], {"blend": np.ones(2, np.float32)}).to_bytes()
    mine = Contribution("me", 4).to_bytes()
    out = readable(sr, [record(b"garbage", 0), record(None, 1), record(good, 2, 5_000), record(mine, 3, 9_000)])
    assert [(c.worker, c.seq) for c in out] == [("peer", 1), ("me", 4)]  # its own too: it numbers on after them
    assert metrics.shared_contributions.labels("rejected")._value.get() == 2
    assert metrics.shared_bytes.labels("received")._value.get() == len(b"garbage") + len(good) + len(mine)
    assert sr.sharing.peer_seen == {"peer": 5.0}  # publish time in seconds; never its own


def test_names_and_topic_settings() -> None:
    s = Settings(web_port=7001, sharing_max_bytes=2 * 2**20)
    assert worker_name(s).endswith(":7001")
    assert worker_name(Settings(worker_name="w-3")) == "w-3"
    assert topic_configs(s) == {"max.message.bytes": str(2 * 2**20), "cleanup.policy": "delete"}


def test_a_contribution_taken_after_a_checkpoint_is_checkpointed_again(tmp_path: Path) -> None:
    """A contribution changes the learner (its events leave it) but not the model's version. The checkpoint must
    be written again, else a restart from it would send those events again (under a new number: peers learn them
    twice). It failed as `a after its restart` in tests/integration/test_sharing.py when the machine was loaded."""
    learner = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=6, device="cpu", text_dims=0,
                                 training=TrainingConfig(early_events=0))
    learner.add_items([Item(f"i{j}", f"topic{j % 5} word{j % 7}") for j in range(40)])
    learner.start_sharing("me")
    store = CheckpointStore(tmp_path, keep=3)
    settings = Settings(worker_name="me", broker_url="kafka://127.0.0.1:1")  # no broker: the send fails
    metrics = WorkerMetrics()
    sr = SimpleNamespace(settings=settings, learner=learner, sharing=Sharing("me"), metrics=metrics,
                         processor=EventProcessor(settings, learner, metrics), model_lock=asyncio.Lock(),
                         learning_thread=ThreadPoolExecutor(1))
    save = checkpoint_saver(store, saved_state(sr))
    learner.learn_many([Interaction(f"u{j}", f"i{j}") for j in range(8)], [[f"i{j + 1}"] for j in range(8)])

    async def steps() -> None:
        await save(sr, False)  # the learned events, not contributed yet
        await publish(sr, KafkaClientConfig.from_settings(settings))
        await save(sr, False)  # the same model version, but the events are contributed now

    with sr.learning_thread:  # shut down at the end
        asyncio.run(steps())
        assert len(sr.sharing.unsent) == 1 and sr.sharing.taken == 1
        found = store.load_latest()
        assert found is not None and found.version == learner.model_version
        assert found.learner.contribution() is None  # nothing left that a restart would send again
        before = sorted(tmp_path.iterdir())
        asyncio.run(save(sr, False))  # nothing changed since: nothing written
    assert sorted(tmp_path.iterdir()) == before and [p.stat().st_mtime_ns for p in before] == [
        p.stat().st_mtime_ns for p in sorted(tmp_path.iterdir())]
