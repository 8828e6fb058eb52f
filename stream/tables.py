"""The worker's Faust tables as files: read a stopped worker's RocksDB tables, digest them, republish them.

Faust keeps each table partition in its own RocksDB database, ``<tabledir>/<table>-<partition>.db``, holding the
serialized key and value bytes exactly as they go to the table's changelog topic (plus one offset bookkeeping
key). Reading those files after the worker stopped gives the table contents without Faust: tests compare them
before and after a rebuild, and a worker whose broker lost every topic republishes them into fresh changelogs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from connectors.kafka import KafkaClientConfig, delete_topics, ensure_topics, topic_partitions

OFFSET_KEY = b"__faust\0offset__"  # faust.stores.rocksdb.Store.offset_key: bookkeeping, not table data
USER_TABLE = "user-sequences"  # per-user state, partitioned like the events topic
ITEM_TABLE = "item-embeddings"  # the catalog, partitioned like the items topic


def changelog_name(app_id: str, table: str) -> str:
    """The changelog topic Faust gives table ``table`` of app ``app_id``.

    >>> changelog_name("streamrec", USER_TABLE)
    'streamrec-user-sequences-changelog'
    """
    return f"{app_id}-{table}-changelog"


@dataclass(frozen=True, slots=True)
class TableFiles:
    """Where one table lives: its RocksDB files and its changelog topic."""

    name: str
    changelog_topic: str
    partitions: int
    tabledir: Path
    source_topic: str  # the input topic the table is partitioned like

    def partition_paths(self) -> dict[int, Path]:
        """Existing ``<name>-<partition>.db`` folders by partition."""
        pat = re.compile(rf"^{re.escape(self.name)}-(\d+)\.db$")
        if not self.tabledir.is_dir():
            return {}
        return {int(m.group(1)): p for p in self.tabledir.iterdir() if (m := pat.match(p.name))}

    def read(self) -> dict[int, dict[bytes, bytes]]:
        """Every key/value of every partition (the worker must be stopped: RocksDB allows one writer)."""
        return {p: read_partition(path) for p, path in sorted(self.partition_paths().items())}


def read_partition(path: Path) -> dict[bytes, bytes]:
    """The raw key/value pairs of one Faust RocksDB table partition, without the offset bookkeeping key."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return {bytes(k): bytes(v) for k, v in db.items() if bytes(k) != OFFSET_KEY}
    finally:
        db.close()


def digest(partitions: dict[int, dict[bytes, bytes]]) -> str:
    """SHA-256 over a table's contents, independent of partitioning and write order.

    >>> digest({0: {b"a": b"1"}, 1: {b"b": b"2"}}) == digest({3: {b"b": b"2", b"a": b"1"}})
    True
    """
    h = hashlib.sha256()
    for k, v in sorted(kv for part in partitions.values() for kv in part.items()):
        h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
    return h.hexdigest()


def source_partition(key: bytes, partitions: int) -> int:
    """The partition a producer's default partitioner gives the raw id inside a JSON-serialized table key.

    >>> source_partition(b'"u1"', 4)
    0
    """
    from aiokafka.partitioner import DefaultPartitioner

    raw = str(json.loads(key)).encode()
    every = list(range(partitions))
    return int(DefaultPartitioner()(raw, every, every))


async def republish(cfg: KafkaClientConfig, tables: Iterable[TableFiles], replication_factor: int = 1) -> int:
    """Write every table entry into the table's changelog on a broker that lost it; returns records written.

    Input topics missing on the broker are created with the tables' partition counts; where producers already
    re-created one with another count, the entries are re-partitioned the way those producers route ids, and a
    changelog that was auto-created with the wrong count is replaced.
    """
    from aiokafka import AIOKafkaProducer

    tables = list(tables)
    counts = await ensure_topics(cfg, {t.source_topic: t.partitions for t in tables}, replication_factor)
    want = {t.changelog_topic: counts[t.source_topic] for t in tables}
    have = await topic_partitions(cfg, want)
    wrong = [topic for topic, n in want.items() if topic in have and have[topic] != n]
    if wrong:
        await delete_topics(cfg, wrong)
    await ensure_topics(cfg, want, replication_factor,
                        configs={topic: {"cleanup.policy": "compact"} for topic in want})
    prod = AIOKafkaProducer(**cfg.kwargs(), acks="all", linger_ms=5)
    await prod.start()
    futs = []
    try:
        for t in tables:
            same = want[t.changelog_topic] == t.partitions
            for p, part in t.read().items():
                for k, v in part.items():
                    target = p if same else source_partition(k, want[t.changelog_topic])
                    futs.append(await prod.send(t.changelog_topic, v, key=k, partition=target))
        await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return len(futs)
