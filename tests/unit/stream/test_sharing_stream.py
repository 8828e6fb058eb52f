"""The worker's side of sharing (stream.sharing): what it does with whatever a record on the shared topic holds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from aiokafka.structs import ConsumerRecord

from learners.sharing import Contribution
from stream.metrics import WorkerMetrics
from stream.settings import Settings
from stream.sharing import Sharing, readable, topic_configs, worker_name


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
