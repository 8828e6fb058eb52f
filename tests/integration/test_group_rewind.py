"""Rewinding a group's offsets that lie past the end of re-created topics, past a member that died without leaving
(real Tansu)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from connectors.broker import BrokerProcess
from connectors.kafka import KafkaClientConfig, ensure_topics, rewind_stale_offsets

pytestmark = pytest.mark.integration

GHOST = """
import asyncio, os, signal, sys
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata

async def go():
    c = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3], enable_auto_commit=False)
    await c.start()
    while not c.assignment():
        await asyncio.sleep(0.1)
    await c.commit({tp: OffsetAndMetadata(7, "") for tp in c.assignment()})
    os.kill(os.getpid(), signal.SIGKILL)  # gone without leaving the group

asyncio.run(go())
"""


def committed(kafka: KafkaClientConfig, group: str, tps: list[TopicPartition]) -> list[int | None]:
    async def go() -> list[int | None]:
        c = AIOKafkaConsumer(**kafka.kwargs(), group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            return [await c.committed(tp) for tp in tps]
        finally:
            await c.stop()

    return asyncio.run(go())


def test_offsets_past_the_end_are_rewound_past_a_dead_member(broker: BrokerProcess,
                                                              kafka: KafkaClientConfig) -> None:
    asyncio.run(ensure_topics(kafka, {"t-rewind": 3}))
    tps = [TopicPartition("t-rewind", p) for p in range(3)]
    ghost = subprocess.run([sys.executable, "-c", GHOST, broker.bootstrap, "t-rewind", "g-rewind"], timeout=120)
    assert ghost.returncode == -9
    assert committed(kafka, "g-rewind", tps) == [7, 7, 7]

    async def produce_to_partition_0(n: int) -> None:  # one record at a time: Tansu under-reports batch ends
        prod = AIOKafkaProducer(**kafka.kwargs())
        await prod.start()
        try:
            for i in range(n):
                await prod.send_and_wait("t-rewind", b"x%d" % i, partition=0)
        finally:
            await prod.stop()

    asyncio.run(produce_to_partition_0(10))  # partition 0 now ends at 10: its offset 7 is a real one

    async def outside_commit() -> None:  # what the broker refuses while the dead member is listed
        c = AIOKafkaConsumer(**kafka.kwargs(), group_id="g-rewind", enable_auto_commit=False)
        await c.start()
        try:
            c.assign(tps)
            await c.commit({tp: OffsetAndMetadata(0, "") for tp in tps})
        finally:
            await c.stop()

    with pytest.raises(Exception, match="rebalanced"):
        asyncio.run(outside_commit())
    undone = asyncio.run(rewind_stale_offsets(kafka, "g-rewind", ["t-rewind", "t-missing"]))
    assert undone == {tps[1]: 7, tps[2]: 7}
    assert committed(kafka, "g-rewind", tps) == [7, 0, 0]
    assert asyncio.run(rewind_stale_offsets(kafka, "g-rewind", ["t-rewind"])) == {}, "nothing stale is left"
