"""The end-to-end run behind ``streamrec demo`` and ``benchmarks/throughput.py``.

Embedded broker -> one worker process -> catalog to ``items`` -> events replayed to ``events`` -> every
``recommendations`` message read back and scored against the user's next event (prequential HR@10 / NDCG@10,
computed from the topic, not from the worker's counters) -> summary -> worker and broker stopped.
"""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.broker import EmbeddedBroker, free_port
from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, read_topic, replay_events
from connectors.schemas import ItemEmbedding
from stream.settings import load_settings


@dataclass
class DemoResult:
    """What one run measured."""

    events_in: int = 0
    events_valid: int = 0
    recommendations_out: int = 0
    dlq_out: int = 0
    seconds: float = 0.0
    events_per_s: float = 0.0
    latency_p50: float = math.nan
    latency_p99: float = math.nan
    delivered_p50: float = math.nan  # event sent -> its recommendation read back from the topic by the demo
    delivered_p99: float = math.nan
    hr10: float = math.nan
    ndcg10: float = math.nan
    scored: int = 0
    worker_start_s: float = 0.0
    worker_cpu_s: float = math.nan  # CPU seconds the worker process used from the first event to the last one out
    extra: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("events in", f"{self.events_in:,}"),
            ("recommendations out", f"{self.recommendations_out:,}"),
            ("events-dlq out", f"{self.dlq_out:,}"),
            ("events/s (first send -> last recommendation)", f"{self.events_per_s:,.0f}"),
            ("p50 event->recommendation latency", f"{self.latency_p50 * 1e3:,.0f} ms"),
            ("p99 event->recommendation latency", f"{self.latency_p99 * 1e3:,.0f} ms"),
            ("p50 / p99 event->recommendation read back", f"{self.delivered_p50 * 1e3:,.0f} / "
                                                          f"{self.delivered_p99 * 1e3:,.0f} ms"),
            ("prequential HR@10 (from the topic)", f"{self.hr10:.4f}"),
            ("prequential NDCG@10 (from the topic)", f"{self.ndcg10:.4f}"),
            ("recommendations scored (had a next event)", f"{self.scored:,}"),
            ("worker CPU per 1,000 events", f"{self.cpu_per_1000:.2f} s"),
            ("worker ready after", f"{self.worker_start_s:.1f} s"),
            ("wall time of the run", f"{self.seconds:.1f} s"),
        ]

    @property
    def cpu_per_1000(self) -> float:
        """Worker CPU seconds per 1,000 events in: the worker's cost without the time it waited for the CPU."""
        return 1000 * self.worker_cpu_s / self.events_in if self.events_in else math.nan


def percentile(xs: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    """
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def prequential_from_topic(events: list[dict[str, Any]], recs: dict[str, dict[str, Any]], k: int = 10,
                           start: int = 0, stop: int | None = None) -> tuple[float, float, int]:
    """HR@k/NDCG@k of each recommendation against the same user's next event in the replayed order.

    Only next events with an index in ``[start, stop)`` are scored (the history before ``start`` still counts).

    >>> evs = [{"event_id": "1", "user_id": "u", "item_id": "a"}, {"event_id": "2", "user_id": "u", "item_id": "b"}]
    >>> prequential_from_topic(evs, {"1": {"items": [{"item_id": "b"}, {"item_id": "c"}]}})
    (1.0, 1.0, 1)
    """
    last: dict[str, str] = {}
    hits = 0
    ndcg = 0.0
    n = 0
    for i, ev in enumerate(events):
        if stop is not None and i >= stop:
            break
        prev = last.get(ev["user_id"])
        if i >= start and prev is not None and prev in recs:
            ids = [r["item_id"] for r in recs[prev]["items"][:k]]
            n += 1
            if ev["item_id"] in ids:
                hits += 1
                ndcg += 1.0 / math.log2(ids.index(ev["item_id"]) + 2)
        last[ev["user_id"]] = ev["event_id"]
    return (hits / n if n else math.nan, ndcg / n if n else math.nan, n)


def scrape_all(port: int) -> dict[str, float]:
    """Every sample of a worker's /metrics as ``name{label=value,...}`` -> value (empty when unreachable)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:  # noqa: S310
            text = r.read().decode()
    except (OSError, http.client.HTTPException):  # a worker that stops mid-answer (a re-exec): IncompleteRead
        return {}
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def scrape(port: int, name: str) -> float | None:
    """One sample value of a metric from a worker's /metrics (None when absent or unreachable)."""
    return next((v for k, v in scrape_all(port).items() if k == name or k.startswith(name + "{")), None)


class WorkerProcess:
    """A ``streamrec worker`` child process with its own data dir and metrics port."""

    def __init__(self, broker_url: str, data_dir: Path, metrics_port: int, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.broker_url = broker_url
        self.data_dir = data_dir
        self.metrics_port = metrics_port
        self.log_path = log_path
        self.env = env or {}
        self.web_port = int(self.env.get("STREAMREC_WEB_PORT") or free_port())  # several workers: one port each
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "STREAMREC_METRICS_PORT": str(self.metrics_port),
               "STREAMREC_WEB_PORT": str(self.web_port), "PYTHONUNBUFFERED": "1", **self.env}
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli.main", "worker", "--broker", self.broker_url,
             "--data-dir", str(self.data_dir)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def wait_ready(self, n_items: int, timeout: float = 240.0) -> float:
        """Block until the worker's catalog holds ``n_items``; return seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.alive():
                raise RuntimeError(f"worker exited with code {self.proc.returncode if self.proc else '?'} "
                                   f"(log: {self.log_path})")
            got = scrape(self.metrics_port, "streamrec_catalog_items")
            if got is not None and got >= n_items:
                return time.monotonic() - t0
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready after {timeout:.0f} s (log: {self.log_path})")


def local_broker(kind: str, log_path: Path, port: int = 0) -> Any:
    """A broker on this machine, to use as a context manager: ``tansu`` (the embedded one) or ``kafka`` (Apache
    Kafka from ``make kafka``'s jars, as the integration tests run it)."""
    if kind == "kafka":
        from connectors.kafka_broker import ApacheKafkaBroker

        return ApacheKafkaBroker(port=port or free_port(), log_path=log_path)
    if kind == "tansu":
        return EmbeddedBroker(port=port, log_path=log_path)
    raise ValueError(f"broker_kind: expected tansu or kafka, got {kind!r}")


def run_demo(
    events: list[dict[str, Any]],
    items: list[Any],
    *,
    rate: float | None = None,
    workdir: Path | None = None,
    broker_port: int = 0,
    worker_env: dict[str, str] | None = None,
    on_progress: Callable[[str, int, int, dict[str, float]], None] | None = None,
    broker_kind: str = "tansu",
    item_embeddings: Sequence[ItemEmbedding | None] | None = None,
    ready_timeout: float = 240.0,
) -> DemoResult:
    """Run the whole pipeline once and measure it (see module doc). ``broker_kind``: ``tansu`` (the embedded
    broker) or ``kafka`` (Apache Kafka from ``make kafka``'s jars, as the integration tests run it);
    ``item_embeddings``: the items' pre-computed embeddings (one per item) published with them; ``ready_timeout``:
    longest wait for the worker to hold the catalog. ``extra["latency"]`` maps each answered event id to its
    event-to-recommendation seconds."""
    res = DemoResult(events_in=len(events))
    t_start = time.monotonic()
    work = workdir or Path(tempfile.mkdtemp(prefix="streamrec-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    mport = free_port()
    with local_broker(broker_kind, work / "broker.log", broker_port) as broker:
        cfg = KafkaClientConfig([broker.bootstrap], {})
        worker = WorkerProcess(broker.url, work / "state", mport, work / "worker.log", worker_env).start()
        try:
            asyncio.run(publish_items_ready(cfg, items, item_embeddings))
            res.worker_start_s = worker.wait_ready(len({it.item_id for it in items}), ready_timeout)
            sent_at: dict[str, float] = {}
            received_at: dict[str, float] = {}
            cpu0 = scrape(mport, "process_cpu_seconds_total")
            recs, dlq, t_first = asyncio.run(_replay_and_collect(cfg, events, rate, sent_at, mport, on_progress,
                                                                 received_at))
            cpu1 = scrape(mport, "process_cpu_seconds_total")
            if cpu0 is not None and cpu1 is not None:
                res.worker_cpu_s = cpu1 - cpu0
        finally:
            worker.stop()
    res.recommendations_out = len(recs)
    res.dlq_out = dlq
    res.events_valid = len(recs)
    res.extra["latency"] = {e: r["emitted_ts"] - sent_at[e] for e, r in recs.items() if e in sent_at}
    lat = list(res.extra["latency"].values())
    res.latency_p50 = percentile(lat, 50)
    res.latency_p99 = percentile(lat, 99)
    got = [received_at[e] - sent_at[e] for e in recs if e in sent_at and e in received_at]
    res.delivered_p50 = percentile(got, 50)
    res.delivered_p99 = percentile(got, 99)
    if recs:
        last_emit = max(r["emitted_ts"] for r in recs.values())
        res.events_per_s = len(recs) / max(1e-9, last_emit - t_first)
    res.hr10, res.ndcg10, res.scored = prequential_from_topic(events, recs)
    res.seconds = time.monotonic() - t_start
    res.extra["recommendations"] = recs
    return res


async def publish_items_ready(cfg: KafkaClientConfig, items: list[Any],
                              embeddings: Sequence[ItemEmbedding | None] | None = None) -> None:
    s = load_settings()
    await ensure_topics(cfg, {t: s.topic_partitions for t in (s.topic_items, s.topic_events,
                                                              s.topic_recommendations, s.topic_dlq)})
    await publish_items(cfg, s.topic_items, items, embeddings)


async def _replay_and_collect(
    cfg: KafkaClientConfig, events: list[dict[str, Any]], rate: float | None, sent_at: dict[str, float],
    mport: int, on_progress: Callable[[str, int, int, dict[str, float]], None] | None,
    received_at: dict[str, float],
) -> tuple[dict[str, dict[str, Any]], int, float]:
    import json

    s = load_settings()
    recs: dict[str, dict[str, Any]] = {}
    n = len(events)
    t_first = time.time()
    done = asyncio.Event()

    times: list[float] = []

    async def produce() -> None:
        await replay_events(cfg, s.topic_events, events, rate=rate, sent_at=times)
        sent_at.update((ev["event_id"], t) for ev, t in zip(events, times, strict=False))

    async def consume() -> None:
        last_report = 0.0
        async for _, value, _ in read_topic(cfg, s.topic_recommendations, idle_timeout=60.0, stop=done.is_set):
            if value is None:
                continue
            r = json.loads(value)
            recs[r["event_id"]] = r
            received_at[r["event_id"]] = time.time()
            if on_progress and time.monotonic() - last_report > 0.25:
                last_report = time.monotonic()
                hr = scrape(mport, "streamrec_online_hit_rate") or 0.0
                on_progress("recommendations", len(recs), n,
                            {"events_per_s": len(recs) / max(1e-9, time.time() - t_first), "hit_rate": hr})
            if len(recs) + dlq_count[0] >= n:
                return

    dlq_count = [0]

    async def count_dlq() -> None:
        async for _ in read_topic(cfg, s.topic_dlq, idle_timeout=1e9, stop=done.is_set):
            dlq_count[0] += 1

    dlq_task = asyncio.create_task(count_dlq())
    prod = asyncio.create_task(produce())
    try:
        await consume()
        await prod
    finally:
        done.set()
        await asyncio.sleep(0.5)
        dlq_task.cancel()
        try:
            await dlq_task
        except (asyncio.CancelledError, Exception):  # noqa: S110 - best-effort counter
            pass
    if on_progress:
        on_progress("recommendations", len(recs), n,
                    {"events_per_s": len(recs) / max(1e-9, time.time() - t_first),
                     "hit_rate": scrape(mport, "streamrec_online_hit_rate") or 0.0})
    return recs, dlq_count[0], t_first
