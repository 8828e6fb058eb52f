"""Worker throughput with learning on: embedded broker + one worker process, events replayed as fast as possible;
then the latency of the on-demand HTTP routes while a worker consumes ML-100K at a steady rate.

Usage: python benchmarks/throughput.py [--events N] [--rate R] [--route-events N] [--route-rate R]
Prints one table: the broker path (events/s from first send to last recommendation, latency percentiles), the
learner alone (the same EventProcessor the worker runs, no broker) for comparison, and each HTTP route (p50/p99 of
single requests for one user or item, sent one after another by a separate process while the worker consumes
``--route-rate`` events/s, past its first ``training.early_events``); then one ``ROUTE`` line per route.

``--items N`` (issue 15's through-the-broker target) runs a synthetic world of N items instead of ML-100K
(:mod:`connectors.synthetic`, ``--users`` users who start with empty histories): the items are published with
pre-computed embeddings (the world's 384-wide stub vectors, 4 decimals), the worker's catalog read is timed, then
``--events`` events are replayed as fast as possible (sustained events/s) and, on a fresh broker and worker,
``--half-events`` more at half that rate (or at ``--rate``; ``--events 0`` skips the first run, to compare
settings at one rate); the latency percentiles of that run leave out its first ``--skip-events`` (the model's
young phase). Then one line for scripts: ``BROKER_SCALE items=N ...``.
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from connectors.broker import free_port
from connectors.datasets import load_dataset
from stream.demo import DemoResult, percentile, run_demo
from stream.heap import keep_freed_tensor_memory
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, run_offline
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner

ROUTES = ("/users/{id}/recommendations", "/items/{id}/similar")
TARGET_P99_MS = 20.0


def processor_only(events: list[dict], items: list, batch: int) -> float:
    """events/s of validate + recommend + learn, in-process, no Kafka (JSON encoding of the input included)."""
    s = load_settings(batch_max=batch)
    learner = build_learner(s, build_encoder(s))
    learner.add_items(items)
    t0 = time.perf_counter()
    run_offline(EventProcessor(s, learner, WorkerMetrics()), events, batch)
    return len(events) / (time.perf_counter() - t0)


def probe_routes(port: int, users: list[str], items: list[str], start: Any, stop: Any, out: Any,
                 pause_s: float = 0.02) -> None:
    """In its own process: between ``start`` and ``stop``, GET each route in turn for a random user / item, one
    request at a time on a kept-alive connection, and put {route: ([seconds of 200 answers], other answers)}."""
    rng = random.Random(0)
    result: dict[str, tuple[list[float], int]] = {r: ([], 0) for r in ROUTES}
    start.wait()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set():
            for route, path in ((ROUTES[0], f"/users/{quote(rng.choice(users), safe='')}/recommendations?k=10"),
                                (ROUTES[1], f"/items/{quote(rng.choice(items), safe='')}/similar?k=10")):
                t0 = time.perf_counter()
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                took = time.perf_counter() - t0
                ok, bad = result[route]
                if resp.status == 200:
                    ok.append(took)
                else:
                    result[route] = (ok, bad + 1)
            time.sleep(pause_s)
    except OSError as exc:  # the worker went away early: report what was measured
        print(f"route probe stopped: {exc!r}", file=sys.stderr)
    finally:
        conn.close()
        out.put(result)


def route_latency(events: list[dict], items: list, rate: float) -> tuple[Any, dict[str, tuple[list[float], int]]]:
    """Replay ``events`` at ``rate`` through a worker while a probe process times the routes, from the first
    answered event past the young model's extra learning steps (``training.early_events`` + 1,000: the steady state) to the
    last 5% (so the worker is consuming all along). Returns the run and the timings."""
    ctx = mp.get_context("fork")
    start, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    port = free_port()
    begin = min(load_settings().training.early_events + 1000, len(events) // 2)
    users = sorted({e["user_id"] for e in events[:begin]})  # known to the worker once the probe starts
    probe = ctx.Process(target=probe_routes, args=(port, users, [it.item_id for it in items], start, stop, out),
                        daemon=True)
    probe.start()

    def progress(stage: str, done: int, total: int, stats: dict[str, float]) -> None:
        if done >= begin:
            start.set()
        if done >= 0.95 * total:
            stop.set()

    try:
        res = run_demo(events, items, rate=rate, worker_env={"STREAMREC_WEB_PORT": str(port)}, on_progress=progress)
    finally:
        start.set()
        stop.set()
    timings = out.get(timeout=60)
    probe.join(10)
    return res, timings


def synthetic_events(world: Any, start: int, stop: int) -> list[dict[str, Any]]:
    users, items = world.events(start, stop)
    return [{"event_id": f"e{start + n}", "user_id": f"user{int(u)}", "item_id": world.item_id(int(i)),
             "event_type": "click", "ts": 1_700_000_000.0 + start + n}
            for n, (u, i) in enumerate(zip(users, items, strict=True))]


def large_catalog(args: argparse.Namespace) -> None:
    """The ``--items`` mode of the module doc."""
    import numpy as np

    from connectors.schemas import ItemEmbedding
    from connectors.synthetic import SyntheticWorld, WorldConfig

    world = SyntheticWorld(WorldConfig(items=args.items, users=args.users, initial_share=1.0, seed=args.seed))
    items = world.items(0, args.items)
    model = load_settings().encoder_model or "all-MiniLM-L6-v2"
    vectors = np.round(world.embeddings(0, args.items, 384), 4)
    embeddings = [ItemEmbedding(model, tuple(v)) for v in vectors.tolist()]
    del vectors
    fast = synthetic_events(world, 0, args.events) if args.events else []
    half_events = synthetic_events(world, args.events, args.events + args.half_events)
    print(f"world ready: {args.items:,} items, {args.users:,} users", flush=True)
    kw: dict[str, Any] = {"broker_kind": args.broker, "item_embeddings": embeddings, "ready_timeout": args.ready_timeout}
    if not fast and not args.rate:
        raise SystemExit("throughput.py: --events 0 needs --rate (the latency run's events/s)")
    sustained = run_demo(fast, items, rate=None, **kw) if fast else DemoResult()
    if fast:
        print(f"sustained: {sustained.events_per_s:,.0f} events/s (catalog read in {sustained.worker_start_s:.0f} s)",
              flush=True)
    rate = args.rate or sustained.events_per_s / 2
    half = run_demo(half_events, items, rate=rate, **kw)
    kept = {e["event_id"] for e in half_events[args.skip_events :]}
    lat = [v for e, v in half.extra["latency"].items() if e in kept]
    p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
    broker_name = "Apache Kafka" if args.broker == "kafka" else "Tansu"
    t = Table(title=f"streamrec throughput, {args.items:,}-item catalog — {' '.join(sys.argv)}")
    for col in ("run", "events in", "answered", "events/s", "p50 latency", "p99 latency", "catalog read",
                "worker CPU / 1,000 events"):
        t.add_column(col, justify="left" if col == "run" else "right")
    if fast:
        t.add_row(f"as fast as possible ({broker_name})", f"{sustained.events_in:,}",
                  f"{sustained.recommendations_out:,}", f"{sustained.events_per_s:,.0f}",
                  f"{sustained.latency_p50 * 1e3:,.0f} ms", f"{sustained.latency_p99 * 1e3:,.0f} ms",
                  f"{sustained.worker_start_s:.0f} s", f"{sustained.cpu_per_1000:.2f} s")
    t.add_row(f"at {rate:,.0f} events/s, past the first {args.skip_events:,}", f"{half.events_in:,}",
              f"{half.recommendations_out:,}", f"{half.events_per_s:,.0f}", f"{p50:,.0f} ms", f"{p99:,.0f} ms",
              f"{half.worker_start_s:.0f} s", f"{half.cpu_per_1000:.2f} s")
    Console(width=160).print(t)
    print(f"BROKER_SCALE items={args.items} users={args.users} broker={args.broker} "
          f"sustained_events_per_s={sustained.events_per_s:.0f} half_rate={rate:.0f} p50_ms={p50:.0f} p99_ms={p99:.0f} "
          f"answered={sustained.recommendations_out + half.recommendations_out} "
          f"events={sustained.events_in + half.events_in} "
          f"catalog_read_s={(sustained if fast else half).worker_start_s:.0f} "
          f"target_events_per_s=1000 target_p99_ms=100 "
          f"met={'yes' if sustained.events_per_s >= 1000 and p99 <= 100 else 'no'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=0.0, help="0: as fast as possible (with --items: the rate of the "
                    "latency run, 0: half the sustained rate)")
    ap.add_argument("--route-events", type=int, default=30_000, help="events replayed while the routes are timed "
                    "(0: skip)")
    ap.add_argument("--route-rate", type=float, default=500.0, help="events/s the worker consumes meanwhile")
    ap.add_argument("--broker", default="tansu", choices=("tansu", "kafka"),
                    help="the embedded broker, or Apache Kafka from `make kafka`'s jars")
    ap.add_argument("--items", type=int, default=0, help="a synthetic catalog of this many items (module doc)")
    ap.add_argument("--users", type=int, default=100_000, help="with --items: users of the synthetic world")
    ap.add_argument("--half-events", type=int, default=30_000, help="with --items: events of the half-rate run")
    ap.add_argument("--skip-events", type=int, default=5_000, help="with --items: first events of the half-rate run "
                    "left out of its latency")
    ap.add_argument("--ready-timeout", type=float, default=1800.0, help="with --items: longest catalog read, s")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    keep_freed_tensor_memory()  # as the worker and streamrec evaluate do (stream/heap.py)
    if args.items:
        large_catalog(args)
        return
    ds = load_dataset("ml-100k", Path("data"))
    events = ds.events[: args.events]
    res = run_demo(events, ds.items, rate=args.rate or None, broker_kind=args.broker)
    offline = processor_only(events, ds.items, load_settings().batch_max)
    t = Table(title=f"streamrec throughput — {' '.join(sys.argv)}")
    t.add_column("path")
    t.add_column("events")
    t.add_column("events/s", justify="right")
    t.add_column("p50 latency", justify="right")
    t.add_column("p99 latency", justify="right")
    t.add_column("HR@10", justify="right")
    t.add_column("worker CPU / 1,000 events", justify="right")
    broker_name = "Apache Kafka" if args.broker == "kafka" else "Tansu"
    t.add_row(f"broker + worker ({broker_name}, Faust, RocksDB)", f"{res.events_in:,}", f"{res.events_per_s:,.0f}",
              f"{res.latency_p50 * 1e3:,.0f} ms", f"{res.latency_p99 * 1e3:,.0f} ms", f"{res.hr10:.4f}",
              f"{res.cpu_per_1000:.2f} s")
    t.add_row("processor only (no broker)", f"{len(events):,}", f"{offline:,.0f}", "-", "-", "-",
              f"{1000 / offline:.2f} s (wall)")
    summaries = []
    if args.route_events:
        run, timings = route_latency(ds.events[: args.route_events], ds.items, args.route_rate)
        for route in ROUTES:
            ok, bad = timings[route]
            p50, p99 = percentile(ok, 50) * 1e3, percentile(ok, 99) * 1e3
            t.add_row(f"GET {route} (while consuming)", f"{run.events_in:,}",
                      f"{run.events_per_s:,.0f}", f"{p50:.1f} ms", f"{p99:.1f} ms", "-", f"{run.cpu_per_1000:.2f} s")
            met = "yes" if math.isfinite(p99) and p99 <= TARGET_P99_MS else "no"
            summaries.append(f"ROUTE path={route} p50_ms={p50:.1f} p99_ms={p99:.1f} requests={len(ok)} "
                             f"not_200={bad} events_per_s={run.events_per_s:.0f} "
                             f"target_p99_ms={TARGET_P99_MS:g} met={met}")
    Console(width=150).print(t)
    for line in summaries:
        print(line)


if __name__ == "__main__":
    main()
