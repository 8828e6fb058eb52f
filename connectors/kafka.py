"""Kafka plumbing outside Faust: topic creation, producers for catalog and event replay, topic read-back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from connectors.schemas import event_json, item_json
from learners.types import Item


@dataclass(frozen=True, slots=True)
class KafkaClientConfig:
    """Where and how to connect: bootstrap servers plus aiokafka security keyword arguments."""

    bootstrap_servers: Sequence[str]
    security: dict[str, Any]

    @classmethod
    def from_settings(cls, settings: Any) -> KafkaClientConfig:
        return cls(tuple(settings.bootstrap_servers), settings.kafka_client_kwargs())

    def kwargs(self) -> dict[str, Any]:
        return {"bootstrap_servers": list(self.bootstrap_servers), **self.security}


@contextlib.asynccontextmanager
async def admin_client(cfg: KafkaClientConfig) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit."""
    admin = AIOKafkaAdminClient(**cfg.kwargs())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def topic_names(cfg: KafkaClientConfig) -> set[str]:
    """Names of every topic the broker lists (listing creates nothing)."""
    async with admin_client(cfg) as admin:
        return set(await admin.list_topics())


async def delete_topics(cfg: KafkaClientConfig, topics: Sequence[str]) -> None:
    """Delete these topics."""
    async with admin_client(cfg) as admin:
        await admin.delete_topics(list(topics))


async def topic_partitions(cfg: KafkaClientConfig, topics: Iterable[str]) -> dict[str, int]:
    """Partition counts of the given topics that exist (missing ones are left out)."""
    async with admin_client(cfg) as admin:
        wanted = list(topics)
        existing = set(await admin.list_topics())
        present = [t for t in wanted if t in existing]
        if not present:
            return {}
        desc = await admin.describe_topics(present)
        return {d["topic"]: len(d["partitions"]) for d in desc if not d.get("error_code")}


async def ensure_topics(
    cfg: KafkaClientConfig, topics: dict[str, int], replication_factor: int = 1,
    configs: dict[str, dict[str, str]] | None = None,
) -> dict[str, int]:
    """Create missing topics (name -> partitions); return the partition count of every named topic."""
    have = await topic_partitions(cfg, topics)
    missing = [t for t in topics if t not in have]
    if missing:
        async with admin_client(cfg) as admin:
            new = [NewTopic(t, topics[t], replication_factor, topic_configs=(configs or {}).get(t, {}))
                   for t in missing]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        for _ in range(50):
            have = await topic_partitions(cfg, topics)
            if all(t in have for t in topics):
                break
            await asyncio.sleep(0.1)
    return have


def _producer(cfg: KafkaClientConfig, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**cfg.kwargs(), linger_ms=5, max_batch_size=256 * 1024, **kw)


async def publish_items(cfg: KafkaClientConfig, topic: str, items: Sequence[Item]) -> int:
    """Publish catalog items (key = item id); returns how many were sent."""
    prod = _producer(cfg, acks="all")
    await prod.start()
    try:
        futs = [await prod.send(topic, item_json(it.item_id, it.text), key=it.item_id.encode()) for it in items]
        await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return len(items)


async def replay_events(
    cfg: KafkaClientConfig,
    topic: str,
    events: Iterable[dict[str, Any]],
    *,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
    sent_at: list[float] | None = None,
) -> int:
    """Publish events (key = user id) in order, at ``rate`` events/s or as fast as possible (``None``).

    ``sent_at``, when given, receives the wall-clock time each event was handed to the producer.
    """
    prod = _producer(cfg, acks=1)
    await prod.start()
    sent = 0
    t0 = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    try:
        for ev in events:
            if limit is not None and sent >= limit:
                break
            pending.append(await prod.send(topic, event_json(ev), key=str(ev["user_id"]).encode()))
            if sent_at is not None:
                sent_at.append(time.time())
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                if progress:
                    progress(sent)
        await asyncio.gather(*pending)
        if progress:
            progress(sent)
    finally:
        await prod.stop()
    return sent


async def assign_all_partitions(consumer: AIOKafkaConsumer, topic: str, *, from_beginning: bool = True,
                                wait_s: float = 10.0) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to a group-less consumer and seek to its beginning (or end).

    Waits up to ``wait_s`` for the topic to appear; returns the partitions (empty if it never did).
    """
    parts: set[int] | None = None
    for _ in range(max(1, int(wait_s / 0.1))):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            break
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topic may be new
        await asyncio.sleep(0.1)
    if not parts:
        return []
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    return tps


async def evict_group_members(cfg: KafkaClientConfig, group_id: str) -> list[str]:
    """Send a LeaveGroup for every member of ``group_id``; returns their member ids.

    For members that are gone without having left (a consumer stopped mid-rebalance, a killed process): some
    brokers (Tansu) keep such a member until a rebalance, and while it is there they refuse offset commits made
    from outside the group. Only call this when none of the group's consumers is running.
    """
    from aiokafka.protocol.group import LeaveGroupRequest

    async with admin_client(cfg) as admin:
        node = await admin.find_coordinator(group_id)
        [resp] = await admin.describe_consumer_groups([group_id], group_coordinator_id=node)
        members = [m[0] for g in resp.groups for m in g[5]]  # (member_id, client_id, host, metadata, assignment)
        for member in members:
            await admin._client.send(node, LeaveGroupRequest(group_id, member))  # noqa: SLF001 - no public call
    return members


async def rewind_group(cfg: KafkaClientConfig, group_id: str, topics: Iterable[str],
                       attempts: int = 5) -> dict[TopicPartition, int]:
    """Commit the beginning of every partition of ``topics`` as ``group_id``'s offset.

    Returns the offsets the group had committed past the beginning before (the ones this undid).

    For topics that were re-created empty: offsets committed on the old ones (a worker that was still shutting
    down can commit them to the new broker) would make the group skip everything before them. Call it while no
    member of the group is running: members the broker still lists are evicted first
    (:func:`evict_group_members`). Topics that do not exist are skipped.
    """
    from aiokafka.errors import CommitFailedError
    from aiokafka.structs import OffsetAndMetadata

    consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return {}
        starts = await consumer.beginning_offsets(tps)
        consumer.assign(tps)
        before = {tp: await consumer.committed(tp) for tp in tps}
        for attempt in range(attempts):
            await evict_group_members(cfg, group_id)
            try:
                await consumer.commit({tp: OffsetAndMetadata(starts[tp], "") for tp in tps})
                break
            except CommitFailedError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(1.0)
        return {tp: off for tp, off in before.items() if off is not None and off > starts[tp]}
    finally:
        await consumer.stop()


async def read_topic(
    cfg: KafkaClientConfig,
    topic: str,
    *,
    until_count: int | None = None,
    idle_timeout: float = 5.0,
    from_beginning: bool = True,
    follow: bool = False,
    stop: Callable[[], bool] | None = None,
) -> AsyncIterator[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """Yield ``(key, value, headers)`` of a topic without a consumer group.

    Stops after ``until_count`` messages, or once nothing arrived for ``idle_timeout`` seconds (unless ``follow``).
    """
    consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    try:
        if not await assign_all_partitions(consumer, topic, from_beginning=from_beginning):
            return
        n = 0
        last = time.monotonic()
        while True:
            if stop is not None and stop():
                return
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = False
            for records in batch.values():
                for r in records:
                    got = True
                    yield r.key, r.value, dict(r.headers or ())
                    n += 1
                    if until_count is not None and n >= until_count:
                        return
            if got:
                last = time.monotonic()
            elif not follow and time.monotonic() - last > idle_timeout:
                return
    finally:
        await consumer.stop()


async def read_json_topic(cfg: KafkaClientConfig, topic: str, **kw: Any) -> list[dict[str, Any]]:
    """All JSON values of a topic (see :func:`read_topic` for the stopping rules)."""
    return [json.loads(v) async for _, v, _ in read_topic(cfg, topic, **kw) if v is not None]
