"""The broker going away for 30 s (process frozen, memory kept) and coming back: the worker carries on alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import pytest

from connectors.broker import BrokerProcess
from connectors.kafka import KafkaClientConfig, publish_items, read_topic, replay_events
from tests.conftest import make_catalog

pytestmark = pytest.mark.integration


async def answered(cfg: KafkaClientConfig, topic: str, want: set[str], timeout: float) -> set[str]:
    got: set[str] = set()
    async for _, value, _ in read_topic(cfg, topic, idle_timeout=timeout):
        if value is not None:
            got.add(json.loads(value)["event_id"])
            if want <= got:
                break
    return got


def test_worker_survives_broker_pause(worker_factory: Any, broker: BrokerProcess, kafka: KafkaClientConfig) -> None:
    app = "t-pause"
    w = worker_factory(app)
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    before = [{"event_id": f"b{n}", "user_id": f"u{n % 3}", "item_id": f"space-{n % 8}", "event_type": "click",
               "ts": float(n)} for n in range(10)]
    asyncio.run(replay_events(kafka, f"{app}-events", before))
    assert {e["event_id"] for e in before} <= asyncio.run(answered(kafka, f"{app}-recommendations",
                                                                   {e["event_id"] for e in before}, 30))
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)  # the broker is gone for 30 s (no answers, nothing lost)
    try:
        time.sleep(30)
        assert w.alive(), "the worker must not die while the broker is away"
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    after = [{"event_id": f"a{n}", "user_id": f"u{n % 3}", "item_id": f"cooking-{n % 8}", "event_type": "click",
              "ts": 100.0 + n} for n in range(10)]
    asyncio.run(replay_events(kafka, f"{app}-events", after))
    want = {e["event_id"] for e in after}
    t0 = time.monotonic()
    got = asyncio.run(answered(kafka, f"{app}-recommendations", want, 90))
    assert want <= got, f"missing after the broker came back: {sorted(want - got)}"
    assert w.alive()
    print(f"recommendations resumed {time.monotonic() - t0:.1f} s after the broker came back")
