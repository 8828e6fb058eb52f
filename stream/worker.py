"""Run a streamrec worker: make sure topics exist, load the frozen encoder, build the app and run Faust."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from connectors.kafka import KafkaClientConfig, ensure_topics, rewind_stale_offsets
from learners.adapter import AdapterRecommender
from learners.encoder import FrozenTransformerEncoder
from stream.app import StreamrecApp, create_app, learn_unlearned
from stream.broker_watch import epoch_topic, resolve_broker_profile
from stream.checkpoint import CheckpointStore
from stream.heap import glibc, keep_freed_tensor_memory, limit_malloc_arenas
from stream.metrics import WorkerMetrics
from stream.settings import ConfigError, Settings
from stream.sharing import flush as flush_contributions
from stream.sharing import topic_configs
from stream.tables import ITEM_TABLE, USER_TABLE, TableFiles, changelog_name, republish

BROKER_RESETS_ENV = "_STREAMREC_BROKER_RESETS"  # carried across the worker's re-exec after a broker reset
REPUBLISH_MARKER = "republish-pending"  # in data_dir while local tables wait to be republished

log = logging.getLogger("streamrec.worker")


def build_learner(settings: Settings, encoder: Any) -> AdapterRecommender:
    """The default learner, configured from settings (the same code ``streamrec evaluate`` runs)."""
    return AdapterRecommender(
        encoder, dim=settings.dim, seq_len=settings.seq_len, text_dims=settings.text_dims, training=settings.training,
        cooccurrence=settings.cooccurrence, popularity=settings.popularity, fusion=settings.fusion, cold=settings.cold,
        retrieval=settings.retrieval, exploration=settings.exploration, intent=settings.intent,
        attributes=settings.attributes, device=settings.device, seed=settings.seed,
    )


def build_encoder(settings: Settings, eager: bool = True) -> FrozenTransformerEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return FrozenTransformerEncoder(settings.encoder_model, device=settings.device,
                                    batch_size=settings.encoder_batch_size, max_length=settings.encoder_max_length,
                                    eager=eager)


def load_encoder_when_ready(sr: StreamrecApp, encoder: FrozenTransformerEncoder) -> None:
    """Load the encoder's weights in the background once the worker is ready (its group joined, the catalog read),
    so a restart answers before ``transformers`` is even imported; whatever needs the encoder sooner (an item
    without an embedding, an event with a query) loads it then. Until it is loaded, an events batch that finds
    items not read yet waits for the load before its ``catalog_lag_wait_s`` starts (items published just before
    their events still come first). Weights that do not load end the worker with the loader's one line (exit
    status 70)."""

    sr.encoder_loaded.clear()  # an events batch waits for items still to read only once it is loaded

    @sr.app.task
    async def load_encoder() -> None:
        await sr.catalog_read.wait()
        try:
            await asyncio.get_running_loop().run_in_executor(None, encoder.load)
        except Exception as exc:  # noqa: BLE001 - any failure to load is fatal, said in one line
            sr.on_fatal(str(exc).splitlines()[0] if str(exc) else repr(exc))
        finally:
            sr.encoder_loaded.set()  # never left waiting on (where on_fatal does not end the process: tests)


def prepare_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics; an ``events`` topic made by producers keeps its own partition count.

    The first contact with the broker: an unreachable one is retried for ``broker_connect_timeout_s`` (a log line
    per retry), then :class:`~connectors.clients.BrokerUnavailable` says in one line what failed.
    """
    from aiokafka.errors import KafkaConnectionError

    from connectors.clients import BrokerUnavailable, wait_for_broker

    def retrying(reason: str, pause: float, elapsed: float) -> None:
        log.warning("broker: %s not reachable (%s); retrying in %.1f s (%.0f of %.0f s)", settings.broker_url,
                    reason, pause, elapsed, settings.broker_connect_timeout_s)

    wait_for_broker(settings.bootstrap_servers, settings.broker_connect_timeout_s, on_retry=retrying)
    cfg = KafkaClientConfig.from_settings(settings)
    p = settings.topic_partitions
    topics = {settings.topic_events: p, settings.topic_items: p, settings.topic_recommendations: p,
              settings.topic_dlq: p, settings.topic_items_dlq: p}
    if settings.sharing_interval_s > 0:
        topics[settings.topic_shares] = 1  # one partition: every worker reads the contributions in one order
    try:
        return asyncio.run(_ensure_with_changelogs(settings, cfg, topics))
    except KafkaConnectionError as exc:  # it listens, but does not answer as a Kafka broker
        raise BrokerUnavailable(f"broker {','.join(settings.bootstrap_servers)}: creating topics failed ({exc})") from None


async def _ensure_with_changelogs(settings: Settings, cfg: KafkaClientConfig, topics: dict[str, int]) -> dict[str, int]:
    """The topics, then the tables' changelogs with their source topics' partition counts (compacted, as Faust
    makes them). Faust creates a missing changelog itself, but its consumer may then take the first records before
    its metadata lists the new topic: it counts 0 partitions against the source's and the agent crashes with
    ``PartitionsMismatch`` (seen on a fresh Apache Kafka; faust-streaming issue 667 is about topic creation there).
    Made beforehand, the changelogs are in the consumer's first metadata."""
    have = await ensure_topics(cfg, topics, settings.replication_factor,
                               {settings.topic_shares: topic_configs(settings)})
    changelogs = {changelog_name(settings.app_id, table): have[source]
                  for table, source in ((USER_TABLE, settings.topic_events), (ITEM_TABLE, settings.topic_items))
                  if source in have}
    await ensure_topics(cfg, changelogs, settings.replication_factor,
                        dict.fromkeys(changelogs, {"cleanup.policy": "compact"}))
    return have


def load_or_build_learner(settings: Settings, encoder: Any) -> tuple[AdapterRecommender, dict[tuple[str, int], int]]:
    """Resume from the newest checkpoint in ``data_dir/checkpoints`` if there is one, else a fresh learner.

    Also returns the offsets per input partition the resumed model learned up to (empty for a fresh one).
    """
    found = CheckpointStore(settings.data_dir / "checkpoints", settings.checkpoint_keep).load_latest()
    if found is not None and isinstance(found.learner, AdapterRecommender):
        learner = found.learner
        learner.attach_encoder(encoder)
        log.warning("model: resumed from checkpoint version %d (%d items, learned up to %s)", found.version,
                    len(learner.item_ids), dict(found.offsets))
        return learner, dict(found.offsets)
    return build_learner(settings, encoder), {}


def build_worker_app(settings: Settings) -> StreamrecApp:
    parts = prepare_topics(settings)
    settings = resolve_broker_profile(settings)  # `auto`: ask the broker which one it is
    if settings.processing_guarantee == "exactly_once" and settings.broker_profile == "tansu":
        raise ConfigError("processing_guarantee: exactly_once needs Kafka transactions, which Tansu 0.6.0 lacks")
    reset_recovery = settings.broker_quirks().reset_recovery
    if reset_recovery:  # the marker topic only a broker that lost its data loses (stream.broker_watch)
        asyncio.run(ensure_topics(KafkaClientConfig.from_settings(settings), {epoch_topic(settings.app_id): 1},
                                  settings.replication_factor))
    encoder = build_encoder(settings, eager=False)
    learner, learned = load_or_build_learner(settings, encoder)
    metrics = WorkerMetrics(hit_window=settings.hit_window)
    sr = create_app(settings, learner, encoder, metrics,
                    events_partitions=parts[settings.topic_events],
                    items_partitions=parts[settings.topic_items])
    load_encoder_when_ready(sr, encoder)
    shares = settings.topic_shares
    sr.processor.learned.update({tp: off for tp, off in learned.items() if tp[0] != shares})
    if sr.sharing is not None:  # the shared topic, read on from where the resumed model stands
        sr.sharing.read.update({p: off for (topic, p), off in learned.items() if topic == shares})
    save = checkpoint_saver(CheckpointStore(settings.data_dir / "checkpoints", settings.checkpoint_keep),
                            saved_state(sr))
    if settings.checkpoint_interval_s > 0:
        install_checkpoints(sr, save)
    if reset_recovery:
        install_broker_reset_recovery(sr, save)
    return sr


Checkpointer = Callable[[StreamrecApp, bool], Awaitable[None]]


def saved_state(sr: StreamrecApp) -> tuple[Any, ...]:
    """What a checkpoint must be written again for when it changes: the model's version, and with sharing the
    contributions taken from the learner and the offsets read on the shared topic. A contribution changes the
    learner (its events leave it as sent) but not the model's version: a checkpoint that still held them would
    send them again, under a new number, after a restart (peers would learn them twice)."""
    sh = sr.sharing
    return (sr.learner.model_version,) + ((sh.taken, tuple(sorted(sh.read.items()))) if sh is not None else ())


def checkpoint_saver(store: CheckpointStore, state: tuple[Any, ...]) -> Checkpointer:
    """A coroutine function that checkpoints the learner when :func:`saved_state` changed since the last save (or
    when forced; ``state``: the one at start), between learning steps (:attr:`StreamrecApp.model_lock`), written
    on the learning thread: writing the model took ~200 ms of the event loop at ML-100K's size, which the HTTP
    routes waited through. The file is synced to disk after the model is released (:meth:`CheckpointStore.write`)."""
    last = {"state": state}

    async def save(sr: StreamrecApp, force: bool = False) -> None:
        async with sr.model_lock:
            v, state = sr.learner.model_version, saved_state(sr)
            if not force and state == last["state"]:
                return
            learned = dict(sr.processor.learned)  # as of this version (the loop may change it meanwhile)
            if sr.sharing is not None:
                learned.update({(sr.settings.topic_shares, p): off for p, off in sr.sharing.read.items()})
            with sr.metrics.checkpoint_seconds.labels("write").time():
                written = await asyncio.get_running_loop().run_in_executor(sr.learning_thread, store.write,
                                                                           sr.learner, v, learned)
        with sr.metrics.checkpoint_seconds.labels("sync").time():  # the model is free again
            await asyncio.get_running_loop().run_in_executor(None, written.commit)
        last["state"] = state

    return save


def install_broker_reset_recovery(sr: StreamrecApp, save: Checkpointer) -> None:
    """On a broker that lost our topics: checkpoint the model and stop, so :func:`run_worker` can restart us."""
    sr.metrics.broker_resets.inc(int(os.environ.get(BROKER_RESETS_ENV, "0")))

    async def on_reset(reason: str) -> None:
        sr.broker_reset_reason = reason
        sr.metrics.broker_resets.inc()
        log.error("broker: %s: the broker lost its data (an in-memory broker restarted?); checkpointing the "
                  "model, then restarting with the tables republished to fresh changelogs", reason)
        sr.processor.learned.clear()  # offsets of the lost topics mean nothing on the fresh ones
        sr.learner.shared_marks.clear()  # nor do the marks of the contributions on the lost shared topic
        if sr.sharing is not None:
            sr.sharing.read.clear()
        await save(sr, True)
        os.kill(os.getpid(), signal.SIGTERM)  # Faust's own graceful shutdown; run_worker takes it from there

    sr.on_broker_reset = on_reset


def table_files(sr: StreamrecApp) -> list[TableFiles]:
    s = sr.settings
    sources = {sr.user_table.name: s.topic_events, sr.item_table.name: s.topic_items}
    return [TableFiles(t.name, t.changelog_topic.get_topic_name(), t.partitions, Path(sr.app.conf.tabledir),
                       sources[t.name]) for t in sr.tables()]


def republish_local_tables(settings: Settings, tables: list[TableFiles]) -> None:
    """Republish the local RocksDB tables into fresh changelogs, drop them locally, and rewind the group.

    The rewind matters as much as the tables: a worker shutting down after a reset can rejoin its group on the
    fresh broker and commit the offsets it had on the lost topics, which would make the restarted worker skip
    every event published to the fresh ones below those offsets. Committed offsets past a partition's end are
    moved back to its beginning (:func:`~connectors.kafka.rewind_stale_offsets`). A marker file in the data
    dir, removed only when all this is done, makes a republish that was interrupted (the broker went away
    again, the process was killed) run again at the next start instead of leaving changelogs empty.
    """
    cfg = KafkaClientConfig.from_settings(settings)
    marker = settings.data_dir / REPUBLISH_MARKER
    marker.write_text("local tables still to be republished after a broker reset\n")
    if settings.store_on_disk:
        n = asyncio.run(republish(cfg, tables, settings.replication_factor))
        log.error("broker: republished %d table entries to fresh changelogs", n)
        for t in tables:
            for path in t.partition_paths().values():
                shutil.rmtree(path, ignore_errors=True)
    stale = asyncio.run(rewind_stale_offsets(cfg, settings.app_id, sorted({t.source_topic for t in tables})))
    if stale:
        log.error("broker: group %s had offsets past the end of the fresh topics, from before the reset (%s); "
                  "rewound them to the beginning", settings.app_id,
                  ", ".join(f"{tp.topic}[{tp.partition}]={off}" for tp, off in sorted(stale.items())))
    marker.unlink()


def restart_after_broker_reset(settings: Settings, tables: list[TableFiles]) -> None:
    """Republish the local tables (:func:`republish_local_tables`) and re-exec this worker.

    The restarted worker recreates its topics, rebuilds the tables from the republished changelogs (so local
    state and changelog agree again), resumes the model from the checkpoint just written, and consumes the new
    topics from their beginning. The process id stays the same: to an orchestrator this is no crash.
    """
    republish_local_tables(settings, tables)
    os.environ[BROKER_RESETS_ENV] = str(int(os.environ.get(BROKER_RESETS_ENV, "0")) + 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)  # noqa: S606 - the same command line, on purpose


def install_checkpoints(sr: StreamrecApp, save: Checkpointer) -> None:
    """Checkpoint the learner every ``checkpoint_interval_s`` and at shutdown (when it changed)."""

    @sr.app.timer(interval=sr.settings.checkpoint_interval_s)
    async def periodic_checkpoint() -> None:
        await save(sr, False)

    @sr.app.on_before_shutdown.connect
    async def final_checkpoint(app: Any, **kwargs: Any) -> None:
        try:  # the answered batches waiting for a step (learn_min_events): learned, so the checkpoint holds them
            await learn_unlearned(sr)
        except Exception:  # noqa: BLE001 - the checkpoint of what was learned is still worth writing
            log.exception("learning the answered events still waiting failed at shutdown; a restart re-learns them")
        await flush_contributions(sr)  # what the checkpoint's learner holds as sent is then on the topic
        await save(sr, False)


def schedule_malloc_trim(sr: StreamrecApp, interval_s: float) -> None:
    """Return freed heap to the OS every ``interval_s`` seconds (glibc ``malloc_trim``; 0: never)."""
    libc = glibc()
    if libc is None or interval_s <= 0:
        return

    @sr.app.timer(interval=interval_s)
    async def trim_heap() -> None:
        libc.malloc_trim(0)


def faust_worker(app: Any, log_level: str) -> Any:
    """A ``faust.Worker`` for ``app`` whose loggers stay at ``log_level``.

    Faust's terminal spinner sets the root logger to DEBUG and spins on every record, so each debug line of
    Faust and aiokafka (several per message sent) was built and handled at any log level: 3-4% of the worker's
    py-spy samples at ~1,000 events/s. Without the spinner the root logger stays at ``log_level``.
    """
    import faust

    worker = faust.Worker(app, loglevel=log_level, quiet=True)
    worker.spinner = None
    return worker


#: How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). The learning thread
#: (stream.app.learn_off_the_loop) runs Python between torch kernels; a shorter interval hands the GIL back to the
#: event loop sooner, so an HTTP route waits less behind a learning step.
GIL_SWITCH_INTERVAL_S = 0.0005


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT."""
    limit_malloc_arenas()
    keep_freed_tensor_memory()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    sr = build_worker_app(settings)
    schedule_malloc_trim(sr, settings.malloc_trim_interval_s)
    sr.metrics.serve(settings.metrics_host, settings.metrics_port, sr.health)  # before a republish: liveness probe
    tables = table_files(sr)
    if (settings.data_dir / REPUBLISH_MARKER).exists():
        log.error("broker: an earlier republish of the local tables did not finish; republishing them now")
        republish_local_tables(settings, tables)
    worker = faust_worker(sr.app, settings.log_level)
    try:
        worker.execute_from_commandline()
    finally:
        if sr.broker_reset_reason is not None:
            restart_after_broker_reset(settings, tables)
