"""Worker throughput with learning on: embedded broker + one worker process, events replayed as fast as possible.

Usage: python benchmarks/throughput.py [--events N] [--rate R]
Prints one table: the broker path (events/s from first send to last recommendation, latency percentiles) and
the learner alone (the same EventProcessor the worker runs, no broker) for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.datasets import load_dataset
from stream.demo import run_demo
from stream.heap import keep_freed_tensor_memory
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, run_offline
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner


def processor_only(events: list[dict], items: list, batch: int) -> float:
    """events/s of validate + recommend + learn, in-process, no Kafka (JSON encoding of the input included)."""
    s = load_settings(batch_max=batch)
    learner = build_learner(s, build_encoder(s))
    learner.add_items(items)
    t0 = time.perf_counter()
    run_offline(EventProcessor(s, learner, WorkerMetrics()), events, batch)
    return len(events) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=0.0, help="0: as fast as possible")
    args = ap.parse_args()
    keep_freed_tensor_memory()  # as the worker and streamrec evaluate do (stream/heap.py)
    ds = load_dataset("ml-100k", Path("data"))
    events = ds.events[: args.events]
    res = run_demo(events, ds.items, rate=args.rate or None)
    offline = processor_only(events, ds.items, load_settings().batch_max)
    t = Table(title=f"streamrec throughput — {' '.join(sys.argv)}")
    t.add_column("path")
    t.add_column("events")
    t.add_column("events/s", justify="right")
    t.add_column("p50 latency", justify="right")
    t.add_column("p99 latency", justify="right")
    t.add_column("HR@10", justify="right")
    t.add_column("worker CPU / 1,000 events", justify="right")
    t.add_row("broker + worker (Tansu, Faust, RocksDB)", f"{res.events_in:,}", f"{res.events_per_s:,.0f}",
              f"{res.latency_p50 * 1e3:,.0f} ms", f"{res.latency_p99 * 1e3:,.0f} ms", f"{res.hr10:.4f}",
              f"{res.cpu_per_1000:.2f} s")
    t.add_row("processor only (no broker)", f"{len(events):,}", f"{offline:,.0f}", "-", "-", "-",
              f"{1000 / offline:.2f} s (wall)")
    Console().print(t)


if __name__ == "__main__":
    main()
