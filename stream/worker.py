"""Run a streamrec worker: make sure topics exist, load the frozen encoder, build the app and run Faust."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from connectors.kafka import KafkaClientConfig, ensure_topics
from learners.adapter import AdapterRecommender
from learners.encoder import FrozenTransformerEncoder
from stream.app import StreamrecApp, create_app
from stream.metrics import WorkerMetrics
from stream.settings import Settings

log = logging.getLogger("streamrec.worker")


def build_learner(settings: Settings, encoder: Any) -> AdapterRecommender:
    """The default learner, configured from settings (the same code ``streamrec evaluate`` runs)."""
    return AdapterRecommender(
        encoder,
        dim=settings.dim,
        seq_len=settings.seq_len,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        replay_capacity=settings.replay_capacity,
        replay_ratio=settings.replay_ratio,
        device=settings.device,
        seed=settings.seed,
    )


def build_encoder(settings: Settings) -> FrozenTransformerEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return FrozenTransformerEncoder(settings.encoder_model, device=settings.device,
                                    batch_size=settings.encoder_batch_size, max_length=settings.encoder_max_length)


def prepare_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics; an ``events`` topic made by producers keeps its own partition count."""
    cfg = KafkaClientConfig.from_settings(settings)
    p = settings.topic_partitions
    return asyncio.run(ensure_topics(
        cfg,
        {settings.topic_events: p, settings.topic_items: p, settings.topic_recommendations: p,
         settings.topic_dlq: p},
        settings.replication_factor,
    ))


def build_worker_app(settings: Settings) -> StreamrecApp:
    parts = prepare_topics(settings)
    encoder = build_encoder(settings)
    learner = build_learner(settings, encoder)
    metrics = WorkerMetrics(hit_window=settings.hit_window)
    return create_app(settings, learner, encoder, metrics,
                      events_partitions=parts[settings.topic_events],
                      items_partitions=parts[settings.topic_items])


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT."""
    import faust

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    sr = build_worker_app(settings)
    sr.metrics.serve(settings.metrics_host, settings.metrics_port)
    worker = faust.Worker(sr.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
