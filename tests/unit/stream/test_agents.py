"""The events agent through Faust's ``agent.test_context()`` with ``store="memory://"`` (no broker)."""

from __future__ import annotations

import asyncio
import json

from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.types import Item
from stream.app import create_app
from stream.settings import load_settings


def test_events_agent_updates_table_and_emits(tmp_path) -> None:
    s = load_settings(store_url="memory://", data_dir=tmp_path, app_id="unit-agent", batch_within_s=0.01)
    enc = HashingEncoder(16)
    learner = AdapterRecommender(enc, dim=8, seq_len=s.seq_len, device="cpu")
    learner.add_items([Item(f"i{j}", f"item {j}") for j in range(12)])
    sr = create_app(s, learner, enc, events_partitions=1, items_partitions=1)
    sent: list[tuple[str, bytes, bytes]] = []

    async def capture(topic_name: str, key=None, value=None, headers=None, **kw):  # the producer side
        sent.append((topic_name, key, value))

    for topic in (sr.recommendations_topic, sr.dlq_topic):
        name = topic.get_topic_name()
        topic.send = lambda key=None, value=None, headers=None, _n=name, **kw: capture(_n, key, value, headers)

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            for n, item in enumerate(["i1", "i2"]):
                ev = {"event_id": f"e{n}", "user_id": "u", "item_id": item, "event_type": "click", "ts": float(n)}
                await agent.put(json.dumps(ev).encode(), key=b"u")
            await agent.put(b"{broken", key=b"u")
            for _ in range(100):
                if len(sent) >= 3:
                    break
                await asyncio.sleep(0.02)

    asyncio.run(go())
    recs = [json.loads(v) for t, _, v in sent if t == "recommendations"]
    dlq = [json.loads(v) for t, _, v in sent if t == "events-dlq"]
    assert [r["event_id"] for r in recs] == ["e0", "e1"]
    assert dlq and dlq[0]["reason"] == "invalid_json"
    assert sr.user_table["u"]["seq"] == ["i1", "i2"]
    assert learner.model_version >= 1


def test_worker_logging_stays_at_the_configured_level(tmp_path) -> None:
    """Faust's spinner would set the root logger to DEBUG, building every debug record of Faust and aiokafka."""
    import logging

    from stream.worker import faust_worker

    s = load_settings(store_url="memory://", data_dir=tmp_path, app_id="unit-logging")
    enc = HashingEncoder(16)
    sr = create_app(s, AdapterRecommender(enc, dim=8, device="cpu"), enc, events_partitions=1, items_partitions=1)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        faust_worker(sr.app, "warning")._setup_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
