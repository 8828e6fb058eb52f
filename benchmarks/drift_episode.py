"""A drift episode as the metrics saw it: a live worker's /metrics sampled while the stream's interests shift.

Usage: python benchmarks/drift_episode.py [--events 12000] [--rate 800] [--every 2]
Embedded broker + one worker; MovieLens-100K's genre-phased stream (phase 1: Action/Adventure/Sci-Fi/Thriller/
War/Western/Crime ratings, then phase 2: the rest, as in benchmarks/forgetting.py), ``--events`` of each phase
replayed at ``--rate``. Every ``--every`` seconds the worker's /metrics (what Prometheus scrapes) is read; the
table shows the timeline of the drift signals and alarm counters, with the moment the shift reached the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.broker import EmbeddedBroker, free_port
from connectors.datasets import genre_phases, load_dataset
from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, replay_events
from stream.demo import WorkerProcess, scrape_all


def alarms(m: dict[str, float]) -> dict[str, int]:
    by: dict[str, int] = defaultdict(int)
    for k, v in m.items():
        if k.startswith("streamrec_drift_alarms_total{"):
            labels = dict(p.split("=", 1) for p in k[k.index("{") + 1 : -1].split(","))
            by[f"{labels['detector']}/{labels['signal']}"] += int(v)
    return by


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=12_000, help="events of each phase")
    ap.add_argument("--rate", type=float, default=800.0)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between /metrics samples")
    args = ap.parse_args()
    ds = load_dataset("ml-100k", Path("data"))
    phase1, phase2 = (phase[: args.events] for phase in genre_phases(ds))
    events = phase1 + phase2
    work = Path(tempfile.mkdtemp(prefix="streamrec-drift-"))
    rows: list[tuple[float, dict[str, float]]] = []
    with EmbeddedBroker(port=0, log_path=work / "broker.log") as broker:
        cfg = KafkaClientConfig([broker.bootstrap], {})
        asyncio.run(ensure_topics(cfg, {t: 4 for t in ("items", "events", "recommendations", "events-dlq")}))
        worker = WorkerProcess(broker.url, work / "state", free_port(), work / "worker.log",
                               {"STREAMREC_DRIFT_WINDOW": "2000"}).start()
        try:
            asyncio.run(publish_items(cfg, "items", ds.items))
            worker.wait_ready(len(ds.items))
            producer = threading.Thread(target=lambda: asyncio.run(replay_events(cfg, "events", events,
                                                                                 rate=args.rate)))
            t0 = time.monotonic()
            producer.start()
            while True:
                m = scrape_all(worker.metrics_port)
                rows.append((time.monotonic() - t0, m))
                if sum(v for k, v in m.items() if k.startswith("streamrec_events_total")) >= len(events):
                    break
                time.sleep(args.every)
            producer.join()
        finally:
            worker.stop()
    t = Table(title=f"drift episode — {' '.join(sys.argv)} (drift_window 2000; shift at event {len(phase1):,})")
    for col in ("s", "events", "phase", "online HR@10", "PSI items", "JS items", "embedding shift", "loss",
                "new-item ratio", "alarms so far (detector/signal)"):
        t.add_column(col, justify="right" if col != "alarms so far (detector/signal)" else "left")
    for at, m in rows:
        n = int(sum(v for k, v in m.items() if k.startswith("streamrec_events_total")))
        al = alarms(m)
        t.add_row(f"{at:.0f}", f"{n:,}", "1" if n <= len(phase1) else "2",
                  f"{m.get('streamrec_online_hit_rate', 0):.3f}",
                  f"{m.get('streamrec_drift_score{signal=item_popularity,statistic=psi}', 0):.3f}",
                  f"{m.get('streamrec_drift_score{signal=item_popularity,statistic=js}', 0):.3f}",
                  f"{m.get('streamrec_drift_score{signal=user_embedding,statistic=cosine_shift}', 0):.4f}",
                  f"{m.get('streamrec_training_loss', 0):.2f}", f"{m.get('streamrec_new_item_ratio', 0):.3f}",
                  ", ".join(f"{k} {v}" for k, v in sorted(al.items()) if v) or "-")
    Console().print(t)


if __name__ == "__main__":
    main()
