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
from learners.history import UserState
from stream.demo import run_demo
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, RawMessage
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner


def processor_only(events: list[dict], items: list, batch: int) -> float:
    """events/s of validate + recommend + learn, in-process, no Kafka."""
    import json

    s = load_settings(batch_max=batch)
    enc = build_encoder(s)
    learner = build_learner(s, enc)
    learner.add_items(items)
    proc = EventProcessor(s, learner, WorkerMetrics())
    states: dict[str, UserState] = {}
    msgs = [RawMessage(e["user_id"].encode(), json.dumps(e).encode(), timestamp=time.time()) for e in events]
    t0 = time.perf_counter()
    for i in range(0, len(msgs), batch):
        res = proc.prepare(msgs[i : i + batch], lambda u: states.get(u) or UserState())
        for u, (st, _) in res.states.items():
            states[u] = st
        proc.learn(res)
    return len(msgs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=0.0, help="0: as fast as possible")
    args = ap.parse_args()
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
    t.add_row("broker + worker (Tansu, Faust, RocksDB)", f"{res.events_in:,}", f"{res.events_per_s:,.0f}",
              f"{res.latency_p50 * 1e3:,.0f} ms", f"{res.latency_p99 * 1e3:,.0f} ms", f"{res.hr10:.4f}")
    t.add_row("processor only (no broker)", f"{len(events):,}", f"{offline:,.0f}", "-", "-", "-")
    Console().print(t)


if __name__ == "__main__":
    main()
