"""Tansu 0.6.0 under-reports end offsets after multi-record batches; the worker's probe corrects them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.broker import BrokerProcess
from connectors.kafka import KafkaClientConfig, ensure_topics, true_highwaters

pytestmark = [pytest.mark.integration, pytest.mark.brokers("tansu")]


def test_probe_returns_true_end_offsets(broker: BrokerProcess, kafka: KafkaClientConfig) -> None:
    async def go() -> tuple[int, int]:
        await ensure_topics(kafka, {"t-hw": 1})
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        await prod.start()
        futs = [await prod.send("t-hw", b"x%d" % i) for i in range(6)]  # one batch of 6 records
        await asyncio.gather(*futs)
        await prod.stop()
        tp = TopicPartition("t-hw", 0)
        probe = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, fetch_max_wait_ms=20)
        await probe.start()
        try:
            reported = (await probe.end_offsets([tp]))[tp]
            fixed = (await true_highwaters(probe, {tp: reported}))[tp]
        finally:
            await probe.stop()
        return reported, fixed

    reported, fixed = asyncio.run(go())
    assert fixed == 6
    print(f"Tansu reported end offset {reported} for 6 records; probed {fixed}")
