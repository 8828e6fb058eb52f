"""The Faust app: topics, RocksDB tables and the two agents (``events`` and ``items``), built by a factory.

The factory takes everything it needs (settings, learner, encoder, metrics), so tests can build several apps
and the module holds no global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
from faust.streams import _current_event  # the context Faust's tables read the partition from

from connectors.kafka import KafkaClientConfig, topic_names
from connectors.schemas import RECOMMENDATIONS_SCHEMA, CatalogItem, Reason, Rejection, parse_item
from learners.history import UserState
from learners.types import Learner, TextEncoder
from stream.broker_watch import BrokerResetDetector, epoch_topic
from stream.catalog import catalog_entries, encode_embedding, follow_catalog
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, RawMessage
from stream.settings import Settings
from stream.transport import worker_transport

log = logging.getLogger("streamrec.worker")


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
    learner: Learner
    encoder: TextEncoder | None
    metrics: WorkerMetrics
    processor: EventProcessor
    events_topic: Any
    items_topic: Any
    recommendations_topic: Any
    dlq_topic: Any
    user_table: Any
    item_table: Any
    events_agent: Any = None
    items_agent: Any = None
    on_broker_reset: Callable[[str], Awaitable[None]] | None = None  # set by the worker runner
    broker_reset_reason: str | None = None

    def tables(self) -> list[Any]:
        return [self.user_table, self.item_table]


def create_app(
    settings: Settings,
    learner: Learner,
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

    transport_cls = worker_transport(
        s.fetch_max_wait_ms,
        client_cfg.kwargs() if s.probe_highwaters else None,
        rewind,
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
        web_enabled=False,
        autodiscover=False,
        producer_linger_ms=5,
        stream_wait_empty=False,
        recovery_consistency_check=s.recovery_consistency_check,
    )
    events_topic = app.topic(s.topic_events, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=n_events)
    items_topic = app.topic(s.topic_items, key_type=bytes, value_type=bytes, key_serializer="raw",
                            value_serializer="raw", partitions=n_items)
    recs_topic = app.topic(s.topic_recommendations, key_serializer="raw", value_serializer="raw",
                           partitions=n_events)
    dlq_topic = app.topic(s.topic_dlq, key_serializer="raw", value_serializer="raw", partitions=n_events)
    user_table = app.Table("user-sequences", default=None, partitions=n_events, options=rocksdb_options(s),
                           help="Per-user recent items and seen set (learners.history.UserState as dict).")
    item_table = app.Table("item-embeddings", default=None, partitions=n_items, options=rocksdb_options(s),
                           help="Catalog items: text and frozen embedding (base64 float32).")
    sr = StreamrecApp(app, s, learner, encoder, metrics, processor, events_topic, items_topic, recs_topic,
                      dlq_topic, user_table, item_table)
    model_name = getattr(encoder, "model_path", type(encoder).__name__ if encoder else "none")
    metrics.info.labels(version="0.1.0", model=str(model_name).rsplit("/", 1)[-1]).set(1)
    metrics.model_version.set(learner.model_version)
    metrics.init_labels(sorted(s.event_weights), [str(r) for r in Reason], [s.topic_events, s.topic_items])
    metrics.catalog_items.set(len(getattr(learner, "item_ids", ())))

    async def load_catalog_from_table() -> None:
        """After recovery, give the learner every item the table holds (no re-encoding)."""
        ids, vecs = catalog_entries(item_table.items())
        if vecs is not None:
            learner_add(ids, vecs)
            log.info("catalog: %d items loaded from the item table", len(ids))

    def learner_add(ids: list[str], vecs: np.ndarray[Any, Any]) -> None:
        add = getattr(learner, "add_item_embeddings", None)
        if add is not None:
            add(ids, vecs)
        metrics.catalog_items.set(len(getattr(learner, "item_ids", ())))

    item_table.on_recover(load_catalog_from_table)

    if s.catalog_follow:
        @app.task
        async def follow_whole_catalog() -> None:
            """Items encoded by other workers (their ``items`` partitions) reach this worker's learner too."""
            await follow_catalog(client_cfg, item_table.changelog_topic.get_topic_name(),
                                 learner_add, stop=lambda: app.should_stop)

    @app.agent(items_topic, name="items")
    async def items_agent(stream: Any) -> None:
        async for batch in stream.take_events(s.encoder_batch_size, within=0.5):
            fresh: list[tuple[CatalogItem, Any]] = []
            for event in batch:
                parsed = parse_item(event.value, max_id_length=s.max_id_length)
                if isinstance(parsed, Rejection):
                    log.warning("items: rejected message at offset %s: %s", event.message.offset, parsed.detail)
                    continue
                old = item_table.get(parsed.item_id)
                if old is not None and old.get("text") == parsed.text and parsed.item_id in learner_ids():
                    continue
                fresh.append((parsed, event))
            if not fresh:
                continue
            if encoder is None:
                raise RuntimeError("encoder: the worker has no encoder, cannot embed new items")
            texts = [it.text for it, _ in fresh]
            vecs = await asyncio.get_running_loop().run_in_executor(None, encoder.encode, texts)
            for (it, event), vec in zip(fresh, vecs, strict=True):
                with event_context(event):
                    item_table[it.item_id] = {"text": it.text, "emb": encode_embedding(vec)}
            learner_add([it.item_id for it, _ in fresh], vecs)

    def learner_ids() -> dict[str, int]:
        return getattr(learner, "item_index", {})

    @app.agent(events_topic, name="events")
    async def events_agent(stream: Any) -> None:
        async for batch in stream.take_events(s.batch_max, within=s.batch_within_s):
            with metrics.batch_seconds.time():
                await process_batch(sr, batch)

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

    if s.broker_check_interval_s > 0:
        detector = BrokerResetDetector([epoch_topic(s.app_id), s.topic_events, s.topic_items,
                                        *(t.changelog_topic.get_topic_name() for t in sr.tables())])

        @app.timer(interval=s.broker_check_interval_s)
        async def watch_broker() -> None:
            """Detect a broker that lost our topics (see stream.broker_watch) and hand over to the runner."""
            if sr.on_broker_reset is None or sr.broker_reset_reason is not None:
                return
            try:
                present = await asyncio.wait_for(topic_names(client_cfg), timeout=s.broker_check_interval_s + 5.0)
            except Exception as exc:  # noqa: BLE001 - an unreachable broker is an outage, not a reset
                log.info("broker check skipped: %r", exc)
                return
            reason = detector.check(present)
            if reason is not None:
                await sr.on_broker_reset(reason)

    sr.events_agent = events_agent
    sr.items_agent = items_agent
    return sr


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


def load_user_state(table: Any, user_id: str) -> UserState:
    return UserState.from_dict(table.get(user_id))


async def process_batch(sr: StreamrecApp, batch: list[Any]) -> None:
    """Run one micro-batch of Faust events through the processor and do its I/O."""
    msgs = [
        RawMessage(e.key, e.value, e.message.topic, e.message.partition, e.message.offset,
                   e.message.timestamp, e)
        for e in batch
    ]
    sr.metrics.batch_size.observe(len(msgs))
    res = sr.processor.prepare(msgs, lambda u: load_user_state(sr.user_table, u))
    headers = {"schema": RECOMMENDATIONS_SCHEMA.encode()}
    for user_id, record in res.recommendations:
        await sr.recommendations_topic.send(key=user_id.encode(), value=json.dumps(record).encode(),
                                            headers=headers)
    for key, record in res.dlq:
        await sr.dlq_topic.send(key=key, value=json.dumps(record).encode(),
                                headers={"reason": record["reason"].encode()})
    for user_id, (state, event) in res.states.items():
        with event_context(event):
            sr.user_table[user_id] = state.to_dict()
    sr.processor.observe_emitted(res)
    sr.processor.learn(res)
