"""Prometheus metrics of a worker, on their own registry (no global state), served at ``/metrics``."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

from stream.health import WorkerHealth

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class WorkerMetrics:
    """All metrics a worker exports; names follow Prometheus conventions (base units, ``_total``)."""

    def __init__(self, registry: CollectorRegistry | None = None, hit_window: int = 1000) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.events = Counter("streamrec_events", "Valid events consumed, by type.", ["event_type"], registry=r)
        self.invalid = Counter("streamrec_events_invalid", "Events sent to the DLQ, by reason.", ["reason"],
                               registry=r)
        self.recommendations = Counter("streamrec_recommendations", "Recommendation messages published.",
                                       registry=r)
        self.latency = Histogram("streamrec_event_to_recommendation_seconds",
                                 "Event produce timestamp to recommendation emitted.", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.batch_seconds = Histogram("streamrec_batch_seconds", "Processing time per micro-batch.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.checkpoint_seconds = Histogram(
            "streamrec_checkpoint_seconds", "Checkpoint time by phase: write (the model held: learning waits) and "
            "sync (the file to disk, the model free again).", ["phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("streamrec_batch_size", "Events per micro-batch.",
                                    buckets=(1, 4, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.relearned = Counter("streamrec_relearned_events", "Already processed events learned after a restart "
                                 "(the resumed checkpoint had not learned them).", registry=r)
        self.model_updates = Counter("streamrec_model_updates", "Adapter optimisation steps.", registry=r)
        self.model_version = Gauge("streamrec_model_version", "Model version of the latest recommendations.",
                                   registry=r)
        self.training_loss = Gauge("streamrec_training_loss", "Loss of the latest update.", registry=r)
        self.replay_size = Gauge("streamrec_replay_buffer_size", "Examples held in the replay buffer.", registry=r)
        self.catalog_items = Gauge("streamrec_catalog_items", "Items known to the model.", registry=r)
        self.index_items = Gauge("streamrec_retrieval_index_items", "Items in the ANN index of two-stage retrieval "
                                 "(0 while the model scores its whole catalog).", registry=r)
        self.index_rebuilds = Gauge("streamrec_retrieval_index_rebuilds", "ANN graph rebuilds started.", registry=r)
        self.index_recall = Gauge("streamrec_retrieval_index_recall", "Latest recall probe: share of the probed "
                                  "queries' exact top 10 the ANN search found (retrieval.rebuild_below > 0; NaN "
                                  "before a probe).", registry=r)
        self.index_recall.set(float("nan"))  # not 0: no probe has run, which is not a probe that found nothing
        self.attribute_values = Gauge("streamrec_catalog_attribute_values", "Item attribute values with a learned "
                                      "vector shared by the items that have them (attributes.slots > 0).", registry=r)
        self.hit_rate = Gauge("streamrec_online_hit_rate",
                              "Rolling HR@10: share of events whose item was in the user's last recommendation.",
                              registry=r)
        self.drift_alarms = Counter("streamrec_drift_alarms", "Drift detector alarms.", ["detector", "signal"],
                                    registry=r)
        self.drift_score = Gauge("streamrec_drift_score", "Latest drift statistic per signal (PSI, JS, cosine shift).",
                                 ["signal", "statistic"], registry=r)
        self.unknown_item_ratio = Gauge("streamrec_unknown_item_ratio",
                                        "Share of recent events whose item is not in the catalog.", registry=r)
        self.new_item_ratio = Gauge("streamrec_new_item_ratio",
                                    "Share of recent events on items first seen in the recent window.", registry=r)
        self.cold_lists = Counter("streamrec_cold_slot_lists", "Recommendation lists whose last places the cold "
                                  "gate gave to cold items (users likely to pick a little-seen item next).",
                                  registry=r)
        self.cold_items = Counter("streamrec_cold_slot_items", "Cold items the cold gate placed in lists.",
                                  registry=r)
        self.lag = Gauge("streamrec_consumer_lag_messages", "Messages behind the end of each input partition.",
                         ["topic", "partition"], registry=r)
        self.broker_resets = Counter("streamrec_broker_resets", "Times the broker was found to have lost our topics "
                                     "(the worker then restarted itself).", registry=r)
        self.topic_missing = Gauge("streamrec_topic_missing", "1 while a topic the worker uses is gone from the "
                                   "broker (deleted by hand?), by topic; against Apache Kafka the worker does not "
                                   "re-create it.", ["topic"], registry=r)
        self.items_invalid = Counter("streamrec_items_invalid", "Catalog items sent to the items dead-letter topic, "
                                     "by reason.", ["reason"], registry=r)
        self.item_embeddings_used = Counter("streamrec_item_embeddings_used", "Catalog items whose embedding came "
                                            "with the item message (not encoded by the worker).", registry=r)
        self.item_embeddings_rejected = Counter("streamrec_item_embeddings_rejected", "Item messages whose embedding "
                                                "was made by another model or has another width: the worker encoded "
                                                "the text itself, by reason (model, size).", ["reason"], registry=r)
        for reason in ("model", "size"):
            self.item_embeddings_rejected.labels(reason)
        self.empty_lists = Counter("streamrec_empty_recommendations", "Recommendation messages with no items "
                                   "(nothing could be recommended: an empty catalog, or a user who has every item).",
                                   registry=r)
        self.pending_events = Gauge("streamrec_pending_events", "Events about items not in the catalog yet, held to "
                                    "be learned when the item arrives.", registry=r)
        self.pending_learned = Counter("streamrec_pending_events_learned", "Held events learned once their item "
                                       "arrived.", registry=r)
        self.pending_dropped = Counter("streamrec_pending_events_dropped", "Held events dropped unlearned (the "
                                       "bound `pending_max_events` was reached).", registry=r)
        self.offsets_skipped = Counter("streamrec_event_offsets_skipped", "Event offsets that never reached the "
                                       "events agent between where its partition was sought to and the next "
                                       "batch (a loss, or a producer's transaction markers).", registry=r)
        self.answered_again = Counter("streamrec_redelivered_answered", "Events read again after a crash whose "
                                      "answer was not known to be on the topic, answered again (consumers "
                                      "deduplicate by event_id).", registry=r)
        self.shown = Counter("streamrec_recommendation_shown", "Items sent in recommendation lists, by arm "
                             "(exploit: the model's order; explore: placed by the exploration policy) and "
                             "0-based position.", ["arm", "position"], registry=r)
        self.clicks = Counter("streamrec_recommendation_clicks", "Events attributed to a list sent before (their "
                              "context.rec_id names it and their item is in it), by the arm and 0-based position "
                              "it had there.", ["arm", "position"], registry=r)
        self.attributions = Counter("streamrec_attributions", "Events that name a list in context.rec_id, by "
                                    "outcome: attributed, unknown_list (not among the user's last "
                                    "attribution_lists lists), not_in_list (the item was not in it).", ["outcome"],
                                    registry=r)
        for outcome in ("attributed", "unknown_list", "not_in_list"):
            self.attributions.labels(outcome)
        self.feedback_clicks = Gauge("streamrec_model_feedback_clicks", "Attributed clicks the learner has "
                                     "taken in (its per-item exposure and click counts).", registry=r)
        self.events_learned = Gauge("streamrec_model_events_learned", "Events the model has learned from: this "
                                    "worker's own and those merged from its peers.", registry=r)
        self.shared_contributions = Counter("streamrec_shared_contributions", "Model contributions (what one worker "
                                            "learned in a sharing interval), by outcome: `sent` by this worker, "
                                            "`merged` from a peer, `skipped` (its own, or merged before), "
                                            "`rejected` (unreadable or not fitting this model: logged).",
                                            ["outcome"], registry=r)
        for outcome in ("sent", "merged", "skipped", "rejected"):
            self.shared_contributions.labels(outcome)
        self.shared_bytes = Counter("streamrec_shared_bytes", "Bytes of model contributions, `sent` and `received`.",
                                    ["direction"], registry=r)
        for direction in ("sent", "received"):
            self.shared_bytes.labels(direction)
        self.shared_events = Counter("streamrec_shared_events", "Events of this worker's partitions, for sharing: "
                                     "`contributed` (learned, in a contribution it took), `already_shared` (read "
                                     "again below the marks of a contribution on the shared topic, after a restart "
                                     "or a partition moving: in the model already, not learned again).",
                                     ["outcome"], registry=r)
        for outcome in ("contributed", "already_shared"):
            self.shared_events.labels(outcome)
        self.sharing_peer_lag = Gauge("streamrec_sharing_peer_lag_seconds", "Seconds since each peer's latest "
                                      "contribution was published (a peer that stopped keeps its series).", ["peer"],
                                      registry=r)
        self.ready = Gauge("streamrec_ready", "1 once the worker has read its catalog and takes events; 0 while "
                           "starting or after a fatal error.", registry=r)
        self.info = Gauge("streamrec_worker_info", "Worker build information.", ["version", "model"], registry=r)
        self._hits: deque[int] = deque(maxlen=hit_window)
        self._hit_sum = 0

    def init_labels(self, event_types: list[str], reasons: list[str], topics: list[str]) -> None:
        """Create every bounded label combination at zero, so dashboards and alerts see series from the start."""
        for t in event_types:
            self.events.labels(t)
        for r in reasons:
            self.invalid.labels(r)
        for det, sig in (("adwin", "hit"), ("page_hinkley", "hit"), ("adwin", "loss"), ("page_hinkley", "loss"),
                         ("psi", "item_popularity"), ("js", "item_popularity"), ("psi", "event_type"),
                         ("js", "event_type"), ("embedding", "user_embedding")):
            self.drift_alarms.labels(det, sig)
        for t in topics:
            self.lag.labels(t, "0")
            self.topic_missing.labels(t)

    def observe_hit(self, hit: bool) -> None:
        """Add one online hit/miss to the rolling window."""
        if len(self._hits) == self._hits.maxlen:
            self._hit_sum -= self._hits[0]
        self._hits.append(int(hit))
        self._hit_sum += int(hit)
        self.hit_rate.set(self._hit_sum / len(self._hits))

    @property
    def rolling_hit_rate(self) -> float:
        return self._hit_sum / len(self._hits) if self._hits else 0.0

    def serve(self, host: str, port: int, health: WorkerHealth | None = None) -> ThreadingWSGIServer | None:
        """Serve ``/metrics``, and with ``health`` also ``/healthz`` and ``/readyz``, in a daemon thread (port 0:
        don't). Returns the server (``shutdown()`` stops it)."""
        if not port:
            return None
        app = health_wsgi_app(make_wsgi_app(self.registry), health)
        server = make_server(host, port, app, ThreadingWSGIServer, handler_class=QuietRequestHandler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return server


class QuietRequestHandler(WSGIRequestHandler):
    """A request handler that does not log every scrape and probe (wsgiref's logs each to stderr)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def health_wsgi_app(metrics_app: WsgiApp, health: WorkerHealth | None) -> WsgiApp:
    """A WSGI app answering ``/healthz`` and ``/readyz`` from ``health`` (JSON) and everything else as ``/metrics``.

    >>> h = WorkerHealth(); app = health_wsgi_app(lambda env, start: [b"m"], h); got = []
    >>> body = app({"PATH_INFO": "/readyz"}, lambda status, headers: got.append(status))
    >>> got, json.loads(b"".join(body))["status"]
    (['503 Service Unavailable'], 'waiting')
    """
    routes = {"/healthz": health.liveness, "/readyz": health.readiness} if health is not None else {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = routes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)
        code, body = probe()
        text = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable"}[code]
        start_response(f"{code} {text}", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return app
