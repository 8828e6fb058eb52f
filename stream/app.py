"""The Faust app: topics, RocksDB tables and the two agents (``events`` and ``items``), built by a factory.

The factory takes everything it needs (settings, learner, encoder, metrics), so tests can build several apps
and the module holds no global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

import faust
import numpy as np
from faust.streams import _current_event  # the context Faust's tables read the partition from

from connectors.kafka import KafkaClientConfig, topic_names
from connectors.schemas import RECOMMENDATIONS_SCHEMA, CatalogItem, Reason, Rejection, dlq_record, parse_item
from learners.history import UserState
from learners.types import TextEncoder, WorkerLearner, attribute_values
from stream.broker_watch import TopicWatch, epoch_topic
from stream.catalog import catalog_entries, check_embeddings, encode_embedding, encoder_name, follow_catalog
from stream.health import WorkerHealth
from stream.metrics import WorkerMetrics
from stream.processor import BatchResult, EventProcessor, RawMessage, intent_texts, merged
from stream.records import undecodable_reason
from stream.settings import Settings
from stream.sharing import Sharing, install_sharing, synced
from stream.tables import ITEM_TABLE, USER_TABLE
from stream.transport import OffsetWatch, worker_transport
from stream.web import install_routes, web_server_options

log = logging.getLogger("streamrec.worker")

CRASH_AFTER_STATE_WRITES_ENV = "_STREAMREC_CRASH_AFTER_STATE_WRITES"
EXIT_AGENT_CRASHED = 70  # EX_SOFTWARE: an agent failed; the orchestrator restarts the worker


def exit_process(reason: str) -> NoReturn:
    """End the worker at once with :data:`EXIT_AGENT_CRASHED`, committing nothing more.

    No graceful shutdown: Faust would commit the offsets of the failed batch's events, and they would never be
    processed. Exiting hard leaves them uncommitted, so the restarted worker reads them again (recommendations
    already sent are answered again for redelivered events; consumers deduplicate by ``event_id``).
    """
    log.critical("%s; exiting with status %d so that a restart reads the uncommitted events again", reason,
                 EXIT_AGENT_CRASHED)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_AGENT_CRASHED)


def _set_event() -> asyncio.Event:
    e = asyncio.Event()
    e.set()
    return e


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event, so table writes go to its partition.

    ``stream.take_events`` hands us a batch outside Faust's per-event iteration; table writes need the event
    whose partition they belong to (faust-streaming 0.15 reads it from this context variable).
    """
    token = _current_event.set(weakref.ref(event)) if event is not None else None
    try:
        yield
    finally:
        if token is not None:
            _current_event.reset(token)


def faust_credentials(settings: Settings) -> Any:
    """Faust credentials from the security settings (None for PLAINTEXT)."""
    proto = settings.security_protocol
    if proto == "PLAINTEXT":
        return None
    ssl_ctx = settings.kafka_client_kwargs().get("ssl_context")
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=ssl_ctx,
        )
    return faust.SSLCredentials(ssl_ctx)


@dataclass
class StreamrecApp:
    """A built worker: the Faust app, its topics, tables, agents and the shared learner."""

    app: faust.App
    settings: Settings
    learner: WorkerLearner
    encoder: TextEncoder | None
    metrics: WorkerMetrics
    processor: EventProcessor
    events_topic: Any
    items_topic: Any
    recommendations_topic: Any
    dlq_topic: Any
    user_table: Any
    item_table: Any
    items_dlq_topic: Any = None
    offset_watch: OffsetWatch | None = None  # where each events partition's next offset should be (gaps logged)
    events_agent: Any = None
    items_agent: Any = None
    on_broker_reset: Callable[[str], Awaitable[None]] | None = None  # set by the worker runner
    broker_reset_reason: str | None = None
    health: WorkerHealth = field(default_factory=WorkerHealth)
    on_fatal: Callable[[str], None] = exit_process  # tests replace it: an agent crash must not end pytest
    catalog_read: asyncio.Event = field(default_factory=asyncio.Event)  # the events agent waits for it
    catalog_complete: asyncio.Event = field(default_factory=asyncio.Event)  # the catalog is read (sharing waits)
    encoder_loaded: asyncio.Event = field(default_factory=_set_event)  # cleared while the worker loads it lazily
    sharing: Sharing | None = None  # one model across workers (stream.sharing), when sharing_interval_s > 0
    model_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # held while the learner changes across awaits
    learn_queue: asyncio.Queue[Any] | None = None  # answered batches still to learn (learn_queue_batches > 0)
    unlearned: list[BatchResult] = field(default_factory=list)  # answered batches waiting for one step (learn_answered)
    unlearned_since: float = 0.0  # loop time the oldest of them was answered
    learning_thread: ThreadPoolExecutor = field(  # runs the gradient computations (learn_off_the_loop)
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-learning"))
    items_read: dict[int, int] = field(default_factory=dict)  # items partition -> offset after the last item read
    catalog_followed: bool = False  # the item-table changelog was read to the end it had at start
    items_tracked: bool = False  # the consumer runs, so the events agent can see what the items agent has read
    crash_after_state_writes: int | None = field(  # fault injection for tests: see crash_point
        default_factory=lambda: int(os.environ[CRASH_AFTER_STATE_WRITES_ENV])
        if os.environ.get(CRASH_AFTER_STATE_WRITES_ENV) else None)

    def fail(self, agent: str, exc: BaseException) -> None:
        """An agent raised: log it with its traceback, mark the worker failed (``/healthz``, ``/readyz``) and
        hand over to :attr:`on_fatal` (which ends the process in a worker)."""
        reason = f"{agent} agent crashed: {exc!r}"
        log.critical("%s", reason, exc_info=exc)
        self.health.set_failed(reason)
        self.metrics.ready.set(0)
        self.on_fatal(reason)

    def tables(self) -> list[Any]:
        return [self.user_table, self.item_table]


def create_app(
    settings: Settings,
    learner: WorkerLearner,
    encoder: TextEncoder | None,
    metrics: WorkerMetrics | None = None,
    *,
    events_partitions: int | None = None,
    items_partitions: int | None = None,
) -> StreamrecApp:
    """Build the Faust app for these settings (partition counts as found on the broker)."""
    s = settings
    client_cfg = KafkaClientConfig.from_settings(s)
    metrics = metrics or WorkerMetrics(hit_window=s.hit_window)
    n_events = events_partitions or s.topic_partitions
    n_items = items_partitions or n_events
    processor = EventProcessor(s, learner, metrics)

    def rewind(committed: dict[Any, int]) -> dict[Any, int]:
        starts = processor.rewind({tp: off for tp, off in committed.items() if tp.topic == s.topic_events})
        if starts:
            log.warning("model: re-reading %s to learn events the resumed checkpoint missed (committed: %s)",
                        starts, {tp: committed[tp] for tp in starts})
        return starts

    quirks = s.broker_quirks()  # what this broker needs (broker_profile; stream.broker_watch)
    watch = OffsetWatch(s.topic_events)
    transport_cls = worker_transport(
        s.fetch_max_wait_ms,
        client_cfg.kwargs() if quirks.probe_highwaters else None,
        rewind,
        watch,
    )

    class StreamrecFaustApp(faust.App):
        def _new_transport(self) -> Any:
            return transport_cls(self.conf.broker_consumer, self)
    app = StreamrecFaustApp(
        s.app_id,
        broker=s.broker_url,
        store=s.store_url,
        datadir=str(s.data_dir),
        broker_credentials=faust_credentials(s),
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        table_standby_replicas=0,
        topic_replication_factor=s.replication_factor,
        topic_partitions=n_events,
        consumer_auto_offset_reset="earliest",
        **web_server_options(s),
        autodiscover=False,
        producer_linger_ms=5,
        stream_wait_empty=False,
        recovery_consistency_check=quirks.recovery_consistency_check,
        processing_guarantee=s.processing_guarantee,
    )
    events_topic = app.topic(s.topic_events, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=n_events)
    items_topic = app.topic(s.topic_items, key_type=bytes, value_type=bytes, key_serializer="raw",
                            value_serializer="raw", partitions=n_items)
    recs_topic = app.topic(s.topic_recommendations, key_serializer="raw", value_serializer="raw",
                           partitions=n_events)
    dlq_topic = app.topic(s.topic_dlq, key_serializer="raw", value_serializer="raw", partitions=n_events)
    items_dlq_topic = app.topic(s.topic_items_dlq, key_serializer="raw", value_serializer="raw", partitions=n_items)
    user_table = app.Table(USER_TABLE, default=None, partitions=n_events, options=rocksdb_options(s),
                           help="Per-user recent items and seen set (learners.history.UserState as dict).")
    item_table = app.Table(ITEM_TABLE, default=None, partitions=n_items, options=rocksdb_options(s),
                           help="Catalog items: text and frozen embedding (base64 float32).")
    sr = StreamrecApp(app, s, learner, encoder, metrics, processor, events_topic, items_topic, recs_topic,
                      dlq_topic, user_table, item_table, items_dlq_topic, offset_watch=watch)
    model_path = getattr(encoder, "model_path", type(encoder).__name__ if encoder else "none")
    metrics.info.labels(version="0.1.0", model=str(model_path).rsplit("/", 1)[-1]).set(1)
    model_name = encoder_name(s.encoder_model)  # what an item's embedding must say it was made by
    metrics.model_version.set(learner.model_version)
    metrics.events_learned.set(learner.events_learned)
    metrics.init_labels(sorted(s.event_weights), [str(r) for r in Reason], [s.topic_events, s.topic_items])
    for reason in ITEM_REASONS:
        metrics.items_invalid.labels(str(reason))
    metrics.catalog_items.set(len(learner.item_ids))

    async def load_catalog_from_table() -> None:
        """After recovery, give the learner every item the table holds (no re-encoding)."""
        ids, vecs, attrs = catalog_entries(item_table.items())
        if vecs is not None:
            await learner_add(ids, vecs, attrs)
            log.info("catalog: %d items loaded from the item table", len(ids))

    async def learner_add(ids: list[str], vecs: np.ndarray[Any, Any], attrs: list[tuple[str, ...]]) -> None:
        async with sr.model_lock:  # not while a learning step of the events agent is half done
            learner.add_item_embeddings(ids, vecs, attrs)
            metrics.catalog_items.set(len(learner.item_ids))
            metrics.attribute_values.set(learner.attribute_count)
            processor.learn_arrived(ids)  # events that named these items before they arrived

    item_table.on_recover(load_catalog_from_table)

    if s.catalog_follow:
        @app.task
        async def follow_whole_catalog() -> None:
            """Items encoded by other workers (their ``items`` partitions) reach this worker's learner too."""
            def caught_up() -> None:
                sr.catalog_followed = True

            await follow_catalog(client_cfg, item_table.changelog_topic.get_topic_name(),
                                 learner_add, stop=lambda: app.should_stop, on_caught_up=caught_up)

    @app.agent(items_topic, name="items")
    async def items_agent(stream: Any) -> None:
        async for batch in stream.take_events(s.encoder_batch_size, within=0.5):
            try:
                await take_items(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a crashed agent must end the worker, not idle in it
                sr.fail("items", exc)
                raise

    async def take_items(batch: list[Any]) -> None:
        fresh: list[tuple[CatalogItem, Any]] = []
        attrs: list[tuple[str, ...]] = []  # each fresh item's attribute values
        for event in batch:
            m = event.message
            parsed = parse_item(event.value, max_id_length=s.max_id_length)
            if isinstance(parsed, Rejection):
                record = dlq_record(event.value, parsed, topic=m.topic, partition=m.partition, offset=m.offset,
                                    key=event.key)
                await items_dlq_topic.send(key=event.key, value=json.dumps(record).encode(),
                                           headers={"reason": str(parsed.reason).encode()})
                metrics.items_invalid.labels(str(parsed.reason)).inc()
                log.warning("items: %s[%s]@%s to %s: %s", m.topic, m.partition, m.offset, s.topic_items_dlq,
                            parsed.detail)
                continue
            old = item_table.get(parsed.item_id)
            values = attribute_values(parsed.attributes)
            if (old is not None and old.get("text") == parsed.text and parsed.item_id in learner_ids()
                    and old.get("attrs", []) == list(values)):
                continue
            fresh.append((parsed, event))
            attrs.append(values)
        if fresh:
            vecs = await embed_items([it for it, _ in fresh])
            for (it, event), vec, values in zip(fresh, vecs, attrs, strict=True):
                with event_context(event):
                    item_table[it.item_id] = {"text": it.text, "emb": encode_embedding(vec), "attrs": list(values)}
            await learner_add([it.item_id for it, _ in fresh], vecs, attrs)
        for event in batch:  # read (and added to the learner) up to here
            m = event.message
            sr.items_read[m.partition] = max(sr.items_read.get(m.partition, 0), m.offset + 1)

    async def embed_items(items: list[CatalogItem]) -> np.ndarray[Any, Any]:
        """The items' embeddings: the one in the message when it is this encoder's, else the text encoded here
        (off the event loop), counting and logging (once per batch) embeddings of another model or width."""
        if encoder is None:
            raise RuntimeError("encoder: the worker has no encoder, cannot embed new items")
        check = check_embeddings(items, model_name, encoder.dim)
        vecs = np.zeros((len(items), encoder.dim), dtype=np.float32)
        for n, vec in check.given.items():
            vecs[n] = vec
        if check.to_encode:
            texts = [items[n].text for n in check.to_encode]
            vecs[check.to_encode] = await asyncio.get_running_loop().run_in_executor(None, encoder.encode, texts)
        metrics.item_embeddings_used.inc(len(check.given))
        for reason, count in check.rejected.items():
            metrics.item_embeddings_rejected.labels(reason).inc(count)
        if check.rejected:
            log.warning("items: %d of %d embeddings not usable, their texts encoded here instead: %s",
                        sum(check.rejected.values()), len(items), "; ".join(check.mismatches))
        return vecs

    def learner_ids() -> dict[str, int]:
        return learner.item_index

    @app.agent(events_topic, name="events")
    async def events_agent(stream: Any) -> None:
        async for batch in stream.take_events(s.batch_max, within=s.batch_within_s):
            done = False
            try:
                if not sr.catalog_read.is_set():
                    await sr.catalog_read.wait()  # never answer from a catalog not read to its end
                await catch_up_items(sr)
                with metrics.batch_seconds.time():
                    await process_batch(sr, batch)
                done = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a crashed agent must end the worker, not idle in it
                sr.fail("events", exc)
                raise
            finally:
                if not done:  # take_events acks the batch as its generator closes: not committable
                    app.consumer.hold_back([e.message for e in batch])  # worker_transport's Consumer

    if s.learn_queue_batches:
        sr.learn_queue = asyncio.Queue(maxsize=s.learn_queue_batches)

        @app.task
        async def learn_behind_the_answers() -> None:
            await learn_queued(sr)

    if s.learn_min_events > 1:
        @app.task
        async def learn_the_waiting() -> None:
            await learn_when_due(sr)

    @app.task
    async def become_ready() -> None:
        """Open the events agent once the catalog is read (:func:`wait_for_catalog`), and say so once."""
        await wait_for_catalog(sr)
        sr.catalog_complete.set()
        if sr.sharing is not None:  # the peers' contributions on the shared topic, merged before any answer
            try:
                await asyncio.wait_for(sr.sharing.caught_up.wait(), timeout=max(s.catalog_wait_s, 1.0))
            except TimeoutError:
                log.warning("sharing: %s not read to its end after catalog_wait_s=%.0f s; taking events anyway",
                            s.topic_shares, s.catalog_wait_s)
        if s.broker_check_interval_s > 0:
            await check_broker()  # the watch knows every topic there at ready: one deleted a moment later counts
        sr.items_tracked = True
        sr.catalog_read.set()
        parts = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == s.topic_events)
        n_items = len(learner.item_ids)
        sr.health.set_ready(catalog_items=n_items, partitions=parts, model_version=learner.model_version)
        metrics.ready.set(1)
        log.warning("ready: catalog of %d items, %s partitions %s, model version %d", n_items, s.topic_events,
                    parts, learner.model_version)

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        """Consumer lag per assigned input partition (high watermark - position)."""
        tps = [tp for tp in app.consumer.assignment() if tp.topic in (s.topic_events, s.topic_items)]
        if not tps:
            return
        try:
            highwaters = await asyncio.wait_for(app.consumer.highwaters(*tps), timeout=10.0)
            positions = {tp: await asyncio.wait_for(app.consumer.position(tp), timeout=5.0) for tp in tps}
        except Exception as exc:  # noqa: BLE001 - a broker outage must not stop the worker
            log.info("consumer lag not measured: %r", exc)
            return
        for tp, pos in positions.items():
            hw = highwaters.get(tp)
            if pos is not None and hw is not None:
                metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - pos))

    watch = TopicWatch([*([epoch_topic(s.app_id)] if quirks.reset_recovery else []), s.topic_events,
                        s.topic_items, s.topic_recommendations, s.topic_dlq, s.topic_items_dlq,
                        *([s.topic_shares] if s.sharing_interval_s > 0 else []),
                        *(t.changelog_topic.get_topic_name() for t in sr.tables())],
                       reset_recovery=quirks.reset_recovery, gauge=metrics.topic_missing)

    async def check_broker() -> None:
        """Notice topics gone from the broker (see stream.broker_watch): a reset to hand over to the runner
        (Tansu), or topics to report missing (Apache Kafka)."""
        if sr.broker_reset_reason is not None or (quirks.reset_recovery and sr.on_broker_reset is None):
            return
        try:
            present = await asyncio.wait_for(topic_names(client_cfg), timeout=s.broker_check_interval_s + 5.0)
        except Exception as exc:  # noqa: BLE001 - an unreachable broker is an outage, not a reset
            log.info("broker check skipped: %r", exc)
            return
        reason = watch.check(present)
        if reason is not None and sr.on_broker_reset is not None:
            await sr.on_broker_reset(reason)

    if s.broker_check_interval_s > 0:
        app.timer(interval=s.broker_check_interval_s, name="watch_broker")(check_broker)

    sr.events_agent = events_agent
    sr.items_agent = items_agent
    if s.sharing_interval_s > 0:
        install_sharing(sr, {})
    install_routes(sr)
    return sr


ITEM_REASONS = (Reason.TOO_LARGE, Reason.INVALID_UTF8, Reason.INVALID_JSON, Reason.NOT_AN_OBJECT, Reason.MISSING_FIELD,
                Reason.WRONG_TYPE, Reason.EMPTY_ID, Reason.ID_TOO_LONG, Reason.CONTROL_CHARACTERS, Reason.EMPTY_TEXT,
                Reason.INVALID_EMBEDDING)


def items_unread(sr: StreamrecApp, ends: dict[Any, int]) -> dict[int, int]:
    """The ``items`` partitions of ``ends`` (partition -> end offset) this worker has not read up to their end.

    Read means: by the items agent since it started, or below the group's committed offset (items read before a
    restart; Faust sets that offset when it seeks to it).
    """
    committed = sr.app.consumer._committed_offset  # noqa: SLF001 - Faust's own bookkeeping of the seek
    return {tp.partition: end for tp, end in ends.items()
            if end and max(sr.items_read.get(tp.partition, 0), committed.get(tp) or 0) < end}


def items_partitions(sr: StreamrecApp) -> list[Any]:
    return [tp for tp in sr.app.consumer.assignment() if tp.topic == sr.settings.topic_items]


async def wait_for_catalog(sr: StreamrecApp, poll_s: float = 0.1) -> None:
    """Return once this worker has read the catalog as it stood when its partitions were assigned.

    That is: once Faust has recovered the tables of its assignment, every ``items`` partition assigned to it read
    (by the items agent, or before a restart) up to the end offset it had when it was first seen assigned, and
    (with ``catalog_follow``) the item table's changelog, which holds the items other workers encoded, read to its
    end. The assignment is looked at again on every check: a rebalance during start-up (a second worker joining)
    moves partitions, and a partition taken away must not be waited for. Gives up after ``catalog_wait_s`` with a
    warning (a catalog still being encoded must not hold events back for hours).
    """
    s, app = sr.settings, sr.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.catalog_wait_s
    sr.health.set_waiting("partition assignment and table recovery")
    await app.tables.recovery.completed.wait()
    ends: dict[Any, int] = {}
    unread: dict[int, int] = {}
    next_note = loop.time() + 10.0
    while loop.time() < deadline:
        tps = items_partitions(sr)
        new = [tp for tp in tps if tp not in ends]
        if new:
            ends.update(await app.consumer.highwaters(*new))
        unread = items_unread(sr, {tp: ends[tp] for tp in tps})
        waiting = (f"catalog: {s.topic_items} partitions to read up to {unread}" if unread
                   else "a rebalance to end" if app.rebalancing else "catalog: the item table's changelog")
        sr.health.set_waiting(waiting)
        if not app.rebalancing and not unread and (sr.catalog_followed or not s.catalog_follow):
            return
        if loop.time() >= next_note:
            log.info("not ready yet: waiting for %s (items read up to %s)", waiting, dict(sr.items_read))
            next_note = loop.time() + 10.0
        await asyncio.sleep(poll_s)
    log.warning("catalog: not read to its end after catalog_wait_s=%.0f s (still to read: %s); taking events anyway",
                s.catalog_wait_s, unread)


async def catch_up_items(sr: StreamrecApp, poll_s: float = 0.02) -> None:
    """Before an events batch: while the assigned ``items`` partitions hold records not read yet (by the high
    watermarks the consumer last saw), let the items agent read them first, for at most ``catalog_lag_wait_s``
    (counted from when the encoder's weights are loaded, if the worker is still loading them: see
    :func:`stream.worker.load_encoder_when_ready`).

    Items published just before events (a catalog and its first events, a new product and its first clicks)
    are then in the catalog when the events are answered. Costs a dictionary look-up per batch otherwise.
    """
    wait_s = sr.settings.catalog_lag_wait_s
    if wait_s <= 0 or not sr.items_tracked:
        return
    consumer = sr.app.consumer
    ends = {tp: consumer.highwater(tp) or 0 for tp in items_partitions(sr)}
    if not items_unread(sr, ends):
        return
    if not sr.encoder_loaded.is_set():  # the items may need it: the wait starts once it is loaded (a few s, once)
        await sr.encoder_loaded.wait()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while items_unread(sr, ends) and loop.time() < deadline:
        await asyncio.sleep(poll_s)


def rocksdb_options(s: Settings) -> dict[str, Any] | None:
    """Bounded RocksDB memory per table partition (a fresh dict per table: Faust's store mutates it).

    Faust's defaults (64 MB memtables x 3 and a 2 GB block cache, per partition DB) let the user table's
    memtables grow by every state written until a 64 MB flush per partition: ~7 MB/min at 300 events/s.
    """
    if not s.store_on_disk:
        return None
    return {"write_buffer_size": s.rocksdb_write_buffer_mb * 2**20,
            "max_write_buffer_number": s.rocksdb_write_buffers,
            "block_cache_size": s.rocksdb_block_cache_mb * 2**20}


async def crash_point(sr: StreamrecApp) -> None:
    """Fault injection for the crash tests: after the n-th batch's state writes reach the broker and before its
    recommendations are sent, die as ``kill -9`` would (n from :data:`CRASH_AFTER_STATE_WRITES_ENV`)."""
    sr.crash_after_state_writes = (sr.crash_after_state_writes or 1) - 1
    if sr.crash_after_state_writes == 0:
        await sr.app.producer.flush()  # the users' state is on the changelog; the answers never leave
        log.critical("fault injection: killed after the state writes of a batch, before its recommendations")
        os.kill(os.getpid(), signal.SIGKILL)


def load_user_state(table: Any, user_id: str) -> UserState:
    return UserState.from_dict(table.get(user_id))


async def process_batch(sr: StreamrecApp, batch: list[Any]) -> None:
    """Run one micro-batch of Faust events through the processor and do its I/O."""
    msgs = [
        RawMessage(e.key, e.value, e.message.topic, e.message.partition, e.message.offset,
                   e.message.timestamp, e, undecodable_reason(e.message.headers))
        for e in batch
    ]
    sr.metrics.batch_size.observe(len(msgs))
    watch_offsets(sr, msgs)
    await synced(sr)  # after a rebalance: the previous owner's contribution merged first
    texts = intent_texts(msgs)
    if texts:  # the frozen encoder runs off the event loop; prepare then finds every text encoded
        await asyncio.get_running_loop().run_in_executor(None, sr.learner.encode_intents, texts)
    res = sr.processor.prepare(msgs, lambda u: load_user_state(sr.user_table, u))
    for user_id, (state, event) in res.states.items():
        with event_context(event):
            sr.user_table[user_id] = state.to_dict()
    if sr.crash_after_state_writes is not None:
        await crash_point(sr)
    headers = {"schema": RECOMMENDATIONS_SCHEMA.encode()}
    for user_id, record in res.recommendations:
        await sr.recommendations_topic.send(key=user_id.encode(), value=json.dumps(record).encode(),
                                            headers=headers)
    for key, record in res.dlq:
        await sr.dlq_topic.send(key=key, value=json.dumps(record).encode(),
                                headers={"reason": record["reason"].encode()})
    sr.processor.observe_emitted(res)
    if sr.learn_queue is not None:  # learned behind the answers (learn_queued); waits while the queue is full
        await sr.learn_queue.put(res)
    else:
        await learn_answered(sr, res)


async def learn_answered(sr: StreamrecApp, res: BatchResult) -> None:
    """Learn an answered batch, with the ones before it still waiting, once they hold ``learn_min_events`` events
    (:func:`learn_when_due` learns them when the oldest has waited ``learn_within_s``). One step per batch cost
    the same ~10-20 ms at 3 events as at 60 with a two-stage catalog: at 50 events/s the steps of micro-batches of
    a few events took most of a core. Events waiting are not learned yet: a checkpoint records only the offsets
    learned, and a restart re-learns the rest."""
    if not sr.unlearned:
        sr.unlearned_since = asyncio.get_running_loop().time()
    sr.unlearned.append(res)
    if sum(len(r.examples) for r in sr.unlearned) >= sr.settings.learn_min_events:
        await learn_unlearned(sr)


async def learn_unlearned(sr: StreamrecApp) -> None:
    """One learning step on every answered batch waiting (in order; :func:`~stream.processor.merged`)."""
    if not sr.unlearned:
        return
    waiting, sr.unlearned = sr.unlearned, []
    await learn_off_the_loop(sr, sr.processor.learning(merged(waiting)))


async def learn_when_due(sr: StreamrecApp) -> None:
    """Learn the answered batches waiting once the oldest has waited ``learn_within_s`` (checked every tenth of
    it); a failed step fails the worker as a crashed agent does."""
    within = sr.settings.learn_within_s
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(within / 10)
        if sr.unlearned and loop.time() - sr.unlearned_since >= within:
            try:
                await learn_unlearned(sr)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - as the events agent: end the worker, never idle in it
                sr.fail("learning", exc)
                raise


def watch_offsets(sr: StreamrecApp, msgs: list[RawMessage]) -> None:
    """Show the batch's events offsets to the consumer's :class:`OffsetWatch`: ranges that never reached the agent
    are logged and counted (``streamrec_event_offsets_skipped_total``)."""
    if sr.offset_watch is None:
        return
    offsets: dict[int, list[int]] = {}
    for m in msgs:
        if m.topic == sr.offset_watch.topic:
            offsets.setdefault(m.partition, []).append(m.offset)
    for partition, first, last in sr.offset_watch.batch(offsets):
        sr.metrics.offsets_skipped.inc(last - first + 1)
        log.warning("events partition %d: offsets %d-%d never reached the events agent (skipped acks so far: %d)",
                    partition, first, last, sr.offset_watch.skipped_acks)


async def learn_queued(sr: StreamrecApp) -> None:
    """With ``learn_queue_batches`` > 0: learn the answered batches :func:`process_batch` queued, in order, so
    that, until the queue is full, answers wait neither for learning steps nor for what else holds the model (a
    checkpoint, an item batch); a failed step fails the worker as a crashed agent does. Batches still queued when
    the worker stops are not lost: a checkpoint records only the offsets learned, and a restart re-learns them."""
    assert sr.learn_queue is not None
    while True:
        res = await sr.learn_queue.get()
        try:
            await learn_answered(sr, res)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - as the events agent: end the worker, never idle in it
            sr.fail("learning", exc)
            raise
        finally:
            sr.learn_queue.task_done()


async def learn_off_the_loop(sr: StreamrecApp, stages: Iterator[Callable[[], None]]) -> None:
    """Run a learning step's stages (:meth:`~learners.types.Learner.learn_stages`): the gradient computations
    on the learning thread, so the event loop answers the HTTP routes and keeps the consumer fed meanwhile; the
    model changes between them, on the loop. Holding :attr:`StreamrecApp.model_lock` keeps the items agent
    from changing the catalog (and the checkpoint from reading the model) half-way through a step."""
    loop = asyncio.get_running_loop()
    async with sr.model_lock:
        for gradient in stages:
            await loop.run_in_executor(sr.learning_thread, gradient)
