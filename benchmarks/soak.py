"""Soak: broker + one worker for N minutes at a fixed rate; RSS growth, consumer lag, lag drain, restarts.

Usage: python benchmarks/soak.py [--minutes 30] [--rate 300]
MovieLens-100K events are replayed in a loop (fresh event ids per pass). Every 10 s: worker RSS, lag = events
sent - (recommendations + DLQ messages read back), whether the worker process is the same one. After input
stops: seconds until the lag drains to zero.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.broker import EmbeddedBroker, free_port
from connectors.datasets import load_dataset
from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, read_topic, replay_events
from stream.demo import WorkerProcess


def rss_mb(pid: int, field: str = "RssAnon") -> float:
    """``RssAnon`` (heap, tensors, RocksDB memtables and caches): ``VmRSS`` adds ~220 MB of shared-library pages
    that are faulted in as code paths first run, which is neither growth nor a leak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute (nan for fewer than 2 points)."""
    pts = [(t, y) for t, y in points if y == y]
    if len(pts) < 2:
        return float("nan")
    mt = sum(t for t, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    var = sum((t - mt) ** 2 for t, _ in pts)
    return 60 * sum((t - mt) * (y - my) for t, y in pts) / var if var else float("nan")


async def soak(cfg: KafkaClientConfig, worker: WorkerProcess, events: list[dict], minutes: float, rate: float,
               fresh_users: bool = False) -> tuple[list[tuple[float, float, int, bool, float, int]], float]:
    counts = {"sent": 0, "out": 0}
    stop_reading = asyncio.Event()

    async def count(topic: str) -> None:
        async for _ in read_topic(cfg, topic, follow=True, stop=stop_reading.is_set):
            counts["out"] += 1

    readers = [asyncio.create_task(count("recommendations")), asyncio.create_task(count("events-dlq"))]
    end = time.monotonic() + minutes * 60

    def passes():
        n = 0
        while time.monotonic() < end:
            for e in events:
                if time.monotonic() >= end:
                    return
                counts["sent"] += 1
                user = {"user_id": f"p{n}-{e['user_id']}"} if fresh_users else {}
                yield {**e, "event_id": f"p{n}-{e['event_id']}", **user}
            n += 1

    pid = worker.proc.pid if worker.proc else -1
    samples: list[tuple[float, float, int, bool, float, int]] = []  # t, RssAnon, lag, same worker, VmRSS, sent
    producer = asyncio.create_task(replay_events(cfg, "events", passes(), rate=rate))
    t0 = time.monotonic()
    while not producer.done():
        await asyncio.sleep(10)
        alive = worker.alive() and worker.proc is not None and worker.proc.pid == pid
        samples.append((time.monotonic() - t0, rss_mb(pid) if alive else float("nan"),
                        counts["sent"] - counts["out"], alive, rss_mb(pid, "VmRSS") if alive else float("nan"),
                        counts["sent"]))
    await producer
    t_stop = time.monotonic()
    drain = float("nan")
    while time.monotonic() - t_stop < 300:
        if counts["out"] >= counts["sent"]:
            drain = time.monotonic() - t_stop
            break
        await asyncio.sleep(0.5)
    stop_reading.set()
    await asyncio.gather(*readers, return_exceptions=True)
    return samples, drain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--fresh-users", action="store_true",
                    help="new user ids every pass too, so per-user state (LRU caps, the user table) keeps growing")
    args = ap.parse_args()
    ds = load_dataset("ml-100k", Path("data"))
    work = Path(tempfile.mkdtemp(prefix="streamrec-soak-"))
    console = Console()
    with EmbeddedBroker(port=0, log_path=work / "broker.log") as broker:
        cfg = KafkaClientConfig([broker.bootstrap], {})
        asyncio.run(ensure_topics(cfg, {t: 4 for t in ("items", "events", "recommendations", "events-dlq")}))
        worker = WorkerProcess(broker.url, work / "state", free_port(), work / "worker.log").start()
        try:
            asyncio.run(publish_items(cfg, "items", ds.items))
            worker.wait_ready(len(ds.items))
            samples, drain = asyncio.run(soak(cfg, worker, ds.events, args.minutes, args.rate, args.fresh_users))
        finally:
            worker.stop()
    t = Table(title=f"soak — {' '.join(sys.argv)}")
    for col in ("minute", "worker RssAnon (MB)", "worker VmRSS (MB)", "lag (events)", "same worker"):
        t.add_column(col, justify="right")
    for s in samples:
        if int(s[0]) % 60 < 10:
            t.add_row(f"{s[0] / 60:.1f}", f"{s[1]:.0f}", f"{s[4]:.0f}", f"{s[2]:,}", str(s[3]))
    console.print(t)
    # warm-up ends once one full pass went through (every user and item seen, replay buffer full), and not
    # before a sixth of the run (at most 5 minutes)
    warm_at = min(5 * 60, args.minutes * 60 / 6)
    after = [s for s in samples if s[0] >= warm_at and s[5] - s[2] >= len(ds.events)]
    warm = after[0][1] if after else float("nan")
    last = samples[-1][1] if samples else float("nan")
    slope = slope_mb_per_min([(s[0], s[1]) for s in after])
    restarts = sum(1 for s in samples if not s[3])
    summary = Table(title="soak summary")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_column("goal", justify="right")
    warm_vm = after[0][4] if after else float("nan")
    last_vm = samples[-1][4] if samples else float("nan")
    summary.add_row("VmRSS after warm-up (first full pass) -> end",
                    f"{warm_vm:.0f} -> {last_vm:.0f} MB ({(last_vm / warm_vm - 1):+.1%})", "< +10%")
    summary.add_row("RssAnon after warm-up -> end", f"{warm:.0f} -> {last:.0f} MB ({(last / warm - 1):+.1%})", "")
    summary.add_row("RssAnon slope after warm-up", f"{slope:+.2f} MB/min", "")
    summary.add_row("max lag", f"{max((s[2] for s in samples), default=0):,} events", "")
    summary.add_row("lag drained after input stopped", f"{drain:.1f} s", "< 60 s")
    summary.add_row("worker restarts / deaths", str(restarts), "0")
    console.print(summary)


if __name__ == "__main__":
    main()
