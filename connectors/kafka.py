"""Kafka plumbing outside Faust: topic creation, producers for catalog and event replay, topic read-back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from connectors.schemas import ItemEmbedding, event_json, item_json
from learners.types import Item, attribute_object


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


async def publish_items(cfg: KafkaClientConfig, topic: str, items: Sequence[Item],
                        embeddings: Sequence[ItemEmbedding | None] | None = None) -> int:
    """Publish catalog items (key = item id), each with its pre-computed embedding when ``embeddings`` is given
    (one per item, None: encoded by the worker); returns how many were sent."""
    if embeddings is not None and len(embeddings) != len(items):
        raise ValueError(f"embeddings: expected one per item ({len(items)}), got {len(embeddings)}")
    prod = _producer(cfg, acks="all")
    await prod.start()
    try:
        futs = [await prod.send(topic, item_json(it.item_id, it.text, attribute_object(it.attributes),
                                                 None if embeddings is None else embeddings[n]),
                                key=it.item_id.encode()) for n, it in enumerate(items)]
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

    For members that are gone without having left (a consumer stopped mid-rebalance, a killed process): Tansu
    keeps such a member until a rebalance, and while it is listed it refuses offset commits made from outside
    the group. A live member that is evicted rejoins (a rebalance).
    """
    from aiokafka.protocol.group import LeaveGroupRequest

    async with admin_client(cfg) as admin:
        node = await admin.find_coordinator(group_id)
        [resp] = await admin.describe_consumer_groups([group_id], group_coordinator_id=node)
        members = [m[0] for g in resp.groups for m in g[5]]  # (member_id, client_id, host, metadata, assignment)
        for member in members:
            await admin._client.send(node, LeaveGroupRequest(group_id, member))  # noqa: SLF001 - no public call
    return members


async def rewind_stale_offsets(cfg: KafkaClientConfig, group_id: str, topics: Iterable[str],
                               attempts: int = 5) -> dict[TopicPartition, int]:
    """Move ``group_id``'s committed offsets that lie past a partition's end back to its beginning.

    Returns the stale offsets it replaced. Such an offset can only come from a topic that was since re-created
    empty (a broker that lost its data; a worker still shutting down after the loss can rejoin its group on the
    new broker and commit the offsets it had): left in place, it would make the group skip every event below
    it. Offsets within a partition are left alone, so live members of the group lose nothing; to commit,
    though, the group's members are evicted first (:func:`evict_group_members`), so the live ones rebalance.
    A stale offset that producers have already overtaken cannot be told from a real one and stays.
    """
    from aiokafka.errors import CommitFailedError
    from aiokafka.structs import OffsetAndMetadata

    parts = await topic_partitions(cfg, topics)  # from the admin client: Kafka lists no topic unasked
    tps = [TopicPartition(t, p) for t, n in sorted(parts.items()) for p in range(n)]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        ends = await true_highwaters(consumer, await consumer.end_offsets(tps))
        stale = {tp: off for tp, off in committed.items() if off is not None and off > ends[tp]}
        if not stale:
            return {}
        starts = await consumer.beginning_offsets(list(stale))
        consumer.assign(list(stale))  # the probe above replaced the assignment
        for attempt in range(attempts):
            await evict_group_members(cfg, group_id)
            try:
                await consumer.commit({tp: OffsetAndMetadata(starts[tp], "") for tp in stale})
                break
            except CommitFailedError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(1.0)
        return stale
    finally:
        await consumer.stop()


async def true_highwaters(probe: AIOKafkaConsumer, reported: Mapping[Any, int], budget_s: float = 3.0
                          ) -> dict[Any, int]:
    """End offsets corrected by reading what lies at and after each reported end - 1.

    Tansu 0.6.0 reports a partition's end as the base offset of its last record batch + 1; ``probe`` (a consumer
    without a group, or one whose assignment may be replaced) reads the tail to find the true end.
    """
    out = dict(reported)
    tps = {TopicPartition(tp.topic, tp.partition): tp for tp, hw in reported.items() if hw and hw > 0}
    if not tps:
        return out
    probe.assign(list(tps))
    for atp in tps:
        probe.seek(atp, reported[tps[atp]] - 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    pending = set(tps)
    reached: set[TopicPartition] = set()  # got the record at reported - 1 (it exists): reading the tail now
    while pending and loop.time() < deadline:
        batch = await probe.getmany(*pending, timeout_ms=200)
        for atp in list(pending):
            records = batch.get(atp)
            if records:
                reached.add(atp)
                out[tps[atp]] = max(out[tps[atp]], records[-1].offset + 1)
            elif atp in reached:
                pending.discard(atp)  # nothing more after what we saw
            # else: the first fetch is still on its way (a busy worker): keep polling until the deadline
    return out


async def read_topic(
    cfg: KafkaClientConfig,
    topic: str,
    *,
    until_count: int | None = None,
    idle_timeout: float = 5.0,
    from_beginning: bool = True,
    follow: bool = False,
    stop: Callable[[], bool] | None = None,
    isolation_level: str = "read_uncommitted",
) -> AsyncIterator[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """Yield ``(key, value, headers)`` of a topic without a consumer group.

    Stops after ``until_count`` messages, or once nothing arrived for ``idle_timeout`` seconds (unless ``follow``).
    ``isolation_level="read_committed"`` leaves out what aborted transactions wrote (workers with
    ``processing_guarantee=exactly_once``).
    """
    consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                isolation_level=isolation_level)
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
