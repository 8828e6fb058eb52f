"""One model across workers, the worker's side: publish what this worker learned, merge what its peers learned.

With ``sharing_interval_s`` > 0 every worker of a group

* publishes, every ``sharing_interval_s``, a contribution (:class:`learners.sharing.Contribution`: the events it
  learned since its previous one, the per-item rows that changed as deltas, the dense parameters' values) to
  ``topic_shares`` (one partition, so every worker reads the contributions in one order), keyed by its name;
* reads every contribution on that topic without a consumer group (its own included: they only move its numbering
  on) and merges its peers' into its learner (:meth:`~learners.types.WorkerLearner.merge`) between learning steps,
  under :attr:`~stream.app.StreamrecApp.model_lock`.

No other coordination service: the topic is the only channel. The offset read on ``topic_shares`` is saved with
each model checkpoint, so a restarted worker reads on from where its model stands; a worker that joins later
(no checkpoint) reads the topic from its beginning, which holds every contribution its retention keeps,
including those of workers that have stopped. A worker says ready only once it has read the topic to the end it
had at start (``catalog_wait_s`` at most). Delivery is at least once: events a restarted worker learns again
(the events after its checkpoint) reach its peers again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from connectors.kafka import KafkaClientConfig, assign_all_partitions
from learners.sharing import Contribution

if TYPE_CHECKING:
    from stream.app import StreamrecApp
    from stream.settings import Settings

log = logging.getLogger("streamrec.worker")

#: The ``schema`` header of a contribution message (the value: :meth:`Contribution.to_bytes`).
CONTRIBUTION_SCHEMA = "streamrec.contribution/1"
SYNC_WAIT_S = 10.0  # the longest a batch waits for the shared topic after a rebalance (:func:`synced`)
REVOKE_PUBLISH_S = 3.0  # the longest a rebalance waits for the contribution of partitions given up


def worker_name(s: Settings) -> str:
    """This worker's name among its peers: ``worker_name``, else host name and web port (stable across restarts).

    >>> from stream.settings import Settings
    >>> worker_name(Settings(worker_name="w1"))
    'w1'
    """
    return s.worker_name or f"{socket.gethostname()}:{s.web_port}"


def topic_configs(s: Settings) -> dict[str, str]:
    """Topic configuration of ``topic_shares``: messages up to ``sharing_max_bytes``, kept by time (a worker that
    joins later reads what the retention keeps), never compacted (each contribution counts)."""
    return {"max.message.bytes": str(s.sharing_max_bytes), "cleanup.policy": "delete"}


@dataclass
class Sharing:
    """A worker's sharing state: where it has read ``topic_shares`` to (saved with checkpoints), whether it has
    caught up with it, its peers' latest publish times, and contributions not sent yet (the broker was away)."""

    name: str
    read: dict[int, int] = field(default_factory=dict)  # partition -> offset after the last record merged
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    synced: asyncio.Event = field(default_factory=asyncio.Event)  # merged all the topic held at the last sync asked
    sync_wanted: bool = False  # a rebalance gave this worker events partitions: read the topic to its end again
    publishing: asyncio.Lock = field(default_factory=asyncio.Lock)
    peer_seen: dict[str, float] = field(default_factory=dict)  # peer -> its latest contribution's publish time, s
    unsent: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, message), oldest first
    taken: int = 0  # contributions taken from the learner: each changes its state without a new model version
    producer: AIOKafkaProducer | None = None


def install_sharing(sr: StreamrecApp, read: dict[int, int]) -> None:
    """Publish and merge contributions as the module doc says (nothing when ``sharing_interval_s`` is 0).

    ``read``: the offsets on ``topic_shares`` the resumed checkpoint had merged up to (empty: from the start).
    """
    s = sr.settings
    sh = sr.sharing = Sharing(worker_name(s), dict(read))
    cfg = KafkaClientConfig.from_settings(s)

    @sr.app.task
    async def merge_peers() -> None:
        await sr.catalog_complete.wait()
        while not sr.learner.item_ids:  # sharing needs a catalog (the rows are keyed by item id)
            await asyncio.sleep(0.5)
        async with sr.model_lock:
            if sr.learner.sharing_worker != sh.name:
                sr.learner.start_sharing(sh.name)
        log.warning("sharing: as %r, every %.1f s, on %s (read from %s)", sh.name, s.sharing_interval_s,
                    s.topic_shares, sh.read or "its beginning")
        while not sr.app.should_stop:
            try:
                await follow_shares(sr, cfg)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep following: a worker that stops merging drifts from its peers
                log.exception("sharing: following %s failed; retrying in 2 s", s.topic_shares)
                await asyncio.sleep(2.0)

    @sr.app.timer(interval=s.sharing_interval_s)
    async def publish_contribution() -> None:
        if sr.learner.sharing_worker is None or not sh.caught_up.is_set():
            return
        await publish(sr, cfg)

    @sr.app.on_partitions_revoked.connect
    async def share_before_giving_up(app: Any, revoked: Any, **kwargs: Any) -> None:
        """The partitions' next owner reads the topic to its end before it takes their events (:func:`synced`):
        what this worker learned from them is there by then, so neither learns an event the other has."""
        if sr.learner.sharing_worker is None or not sh.caught_up.is_set() \
                or not any(tp.topic == s.topic_events for tp in revoked):
            return
        try:
            await asyncio.wait_for(asyncio.shield(publish(sr, cfg)), timeout=REVOKE_PUBLISH_S)  # never cut short
        except TimeoutError:
            log.warning("sharing: contribution not sent within %.0f s of giving up partitions", REVOKE_PUBLISH_S)

    @sr.app.on_partitions_assigned.connect
    async def sync_on_assignment(app: Any, assigned: Any, **kwargs: Any) -> None:
        if any(tp.topic == s.topic_events for tp in assigned):
            sh.synced.clear()
            sh.sync_wanted = True

    if s.checkpoint_interval_s <= 0:  # else the final checkpoint calls flush first (stream.worker)
        @sr.app.on_before_shutdown.connect
        async def last_contribution(app: Any, **kwargs: Any) -> None:
            await flush(sr)


async def synced(sr: StreamrecApp) -> None:
    """Before a batch, after a rebalance gave this worker ``events`` partitions: wait (at most
    :data:`SYNC_WAIT_S`) until it has merged what the shared topic held then. The partitions' previous owner sent
    what it had learned from them when it gave them up, with its marks, so the events it learned are not learned
    here again (:meth:`~stream.processor.EventProcessor.prepare` leaves events below the marks out)."""
    sh = sr.sharing
    if sh is None or sh.synced.is_set():
        return
    try:
        await asyncio.wait_for(sh.synced.wait(), timeout=SYNC_WAIT_S)
    except TimeoutError:
        log.warning("sharing: %s not read to its end within %.0f s of a rebalance; taking events anyway",
                    sr.settings.topic_shares, SYNC_WAIT_S)
        sh.synced.set()


async def flush(sr: StreamrecApp) -> None:
    """At shutdown: publish what is left to publish, then close the producer. Before the final checkpoint, so
    that the checkpoint's learner knows those events were sent (a restart does not send them again)."""
    sh = sr.sharing
    if sh is None:
        return
    if sr.learner.sharing_worker is not None and sh.caught_up.is_set():
        await publish(sr, KafkaClientConfig.from_settings(sr.settings))
    if sh.producer is not None:
        await sh.producer.stop()
        sh.producer = None


async def publish(sr: StreamrecApp, cfg: KafkaClientConfig) -> None:
    """Send what the learner learned since its previous contribution (and any contribution not sent before), one
    caller at a time (the timer, a rebalance, the shutdown)."""
    assert sr.sharing is not None
    async with sr.sharing.publishing:
        await _publish(sr, cfg)


async def _publish(sr: StreamrecApp, cfg: KafkaClientConfig) -> None:
    s, sh, m = sr.settings, sr.sharing, sr.metrics
    assert sh is not None
    loop = asyncio.get_running_loop()
    async with sr.model_lock:  # between learning steps, on the learning thread (the diff reads every item's rows)
        c = await loop.run_in_executor(sr.learning_thread, sr.learner.contribution, sr.processor.marks())
    if c is not None:
        sh.taken += 1
        m.shared_events.labels("contributed").inc(len(c))
        data = await loop.run_in_executor(None, c.to_bytes)
        if len(data) > s.sharing_max_bytes:
            m.shared_contributions.labels("rejected").inc()
            log.error("sharing: contribution %d is %d bytes, over sharing_max_bytes=%d; not sent (%d events lost "
                      "to the peers)", c.seq, len(data), s.sharing_max_bytes, len(c))
        else:
            sh.unsent.append((c.seq, data))
    if not sh.unsent:
        return
    try:
        if sh.producer is None:
            sh.producer = AIOKafkaProducer(**cfg.kwargs(), acks="all", max_request_size=s.sharing_max_bytes + 4096)
            await sh.producer.start()
        while sh.unsent:
            seq, data = sh.unsent[0]
            await sh.producer.send_and_wait(s.topic_shares, data, key=sh.name.encode(),
                                            headers=[("schema", CONTRIBUTION_SCHEMA.encode())])
            sh.unsent.pop(0)
            m.shared_contributions.labels("sent").inc()
            m.shared_bytes.labels("sent").inc(len(data))
    except KafkaError as exc:
        log.warning("sharing: %d contributions not sent yet (%r); trying again in %.1f s", len(sh.unsent), exc,
                    s.sharing_interval_s)


async def follow_shares(sr: StreamrecApp, cfg: KafkaClientConfig, max_records: int = 32) -> None:
    """Read ``topic_shares`` (every partition, from :attr:`Sharing.read`) and merge the peers' contributions."""
    s, sh, m = sr.settings, sr.sharing, sr.metrics
    assert sh is not None
    loop = asyncio.get_running_loop()
    consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=s.sharing_max_bytes + 4096,
                                fetch_max_bytes=max(s.sharing_max_bytes + 4096, 50 * 2**20))
    try:
        await consumer.start()
        while not (tps := await assign_all_partitions(consumer, s.topic_shares)):
            if sr.app.should_stop:
                return
            await asyncio.sleep(1.0)
        for tp in tps:
            if tp.partition in sh.read:
                consumer.seek(tp, sh.read[tp.partition])
        target: dict[Any, int] | None = None  # the ends to read to (Tansu may under-report them: then passed)
        while not sr.app.should_stop:
            if sh.sync_wanted or (target is None and not sh.synced.is_set()):
                sh.sync_wanted = False
                target = await consumer.end_offsets(tps)
            if target is not None and all([await consumer.position(tp) >= target[tp] for tp in tps]):
                target = None
                sh.synced.set()
                if not sh.caught_up.is_set():
                    sh.caught_up.set()
                    log.warning("sharing: read %s to its end at start (%s)", s.topic_shares, dict(sh.read))
            batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
            records = sorted((r for rs in batch.values() for r in rs), key=lambda r: (r.partition, r.offset))
            if records:
                cs = await loop.run_in_executor(None, readable, sr, records)
                async with sr.model_lock:  # between learning steps; the checkpoint saves `read` with the model
                    try:
                        merged = sr.learner.merge(cs) if cs else 0
                    except ValueError as exc:  # a peer with another model shape: its contributions cannot merge
                        merged = 0
                        m.shared_contributions.labels("rejected").inc(len(cs))
                        log.error("sharing: %d contributions not merged: %s", len(cs), exc)
                    else:
                        m.shared_contributions.labels("merged").inc(merged)
                        m.shared_contributions.labels("skipped").inc(len(cs) - merged)
                    for r in records:
                        sh.read[r.partition] = r.offset + 1
                    if merged:
                        m.model_version.set(sr.learner.model_version)
                        m.events_learned.set(sr.learner.events_learned)
            now = time.time()
            for peer, at in sh.peer_seen.items():
                m.sharing_peer_lag.labels(peer).set(max(0.0, now - at))
    finally:
        await consumer.stop()


def readable(sr: StreamrecApp, records: list[Any]) -> list[Contribution]:
    """The contributions in ``records``, in order; an unreadable one is counted and logged, never merged."""
    sh, m = sr.sharing, sr.metrics
    assert sh is not None
    out: list[Contribution] = []
    for r in records:
        m.shared_bytes.labels("received").inc(len(r.value or b""))
        try:
            c = Contribution.from_bytes(r.value or b"")
        except ValueError as exc:
            m.shared_contributions.labels("rejected").inc()
            log.error("sharing: %s[%s]@%s skipped: %s", r.topic, r.partition, r.offset, exc)
            continue
        if c.worker != sh.name:
            sh.peer_seen[c.worker] = max(sh.peer_seen.get(c.worker, 0.0), r.timestamp / 1000.0)
        out.append(c)
    return out
