"""N workers, one model? The prequential protocol with users partitioned over N simulated workers.

Usage: python benchmarks/workers.py [--workers 1,2,4,8] [--seeds 0] [--limit N] [--round-events E] [--sync-every R]
                                   [--score-from N]

Each simulated worker is the default learner (same settings, same seed: same initial parameters, as N worker
processes built from one configuration). A user's events and queries go to the worker of the user's partition,
placed like a Kafka key (murmur2 of the user id, Kafka's default partitioner), so each worker sees 1/N of the
stream. The stream is taken in rounds of ``--round-events`` events (default ``batch_max``: the micro-batches one
worker would take, split over the N workers by user; ``batch_max`` x N gives every worker a full micro-batch, as
under full load, and every model that many events older); every worker recommends for its share of a round with
its model as it was before the round, then learns from it.

Without sharing, the N models learn alone. With sharing (``learners.sharing``), after every ``--sync-every``
rounds each worker's contribution (its events for the additive statistics, its parameter deltas) is serialised
to its wire form and merged by every other worker, as the live workers do through the shared topic. Hits are
pooled over all workers. Prints the table of ``streamrec evaluate``, then one line per row for scripts:
``WORKERS n=N sharing=on|off hr10=H ratio_to_one=R`` (R: HR@10 relative to one worker; targets: with sharing
N = 4 within 2% of one worker, N = 8 within 4%).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2
from rich.console import Console

from connectors.datasets import interactions, load_dataset
from learners.adapter import AdapterRecommender
from learners.encoder import CachingEncoder
from learners.evaluation import evaluate_many
from learners.sharing import Contribution
from learners.types import Interaction, Item, Query, Recommendation, learn_in_one_stage
from stream.cli.evaluate import summary_table
from stream.heap import keep_freed_tensor_memory
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner

TARGETS = {4: 0.02, 8: 0.04}  # largest HR@10 shortfall against one worker, with sharing


def partition(user_id: str, n: int) -> int:
    """The partition Kafka's default partitioner gives a message keyed by this user id's UTF-8 bytes."""
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % n


class SimulatedWorkers:
    """N learners behind the :class:`~learners.types.Learner` protocol, users placed by :func:`partition`."""

    def __init__(self, make: Callable[[int], AdapterRecommender], n: int, sharing: bool, sync_every: int = 1) -> None:
        self.workers = [make(w) for w in range(n)]
        self.sharing = sharing
        self.sync_every = sync_every
        self._rounds = 0
        self.bytes_shared = 0

    @property
    def model_version(self) -> int:
        return sum(w.model_version for w in self.workers)

    def add_items(self, items: Sequence[Item]) -> None:
        for w in self.workers:
            w.add_items(items)
        if self.sharing:
            for n, w in enumerate(self.workers):
                w.start_sharing(f"worker-{n}")

    def _split(self, user_ids: Sequence[str]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.workers]
        for i, u in enumerate(user_ids):
            out[partition(u, len(self.workers))].append(i)
        return out

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        recs: list[Recommendation] = [[] for _ in qs]
        for w, rows in zip(self.workers, self._split([q.user_id for q in qs]), strict=True):
            for i, rec in zip(rows, w.recommend_many([qs[i] for i in rows], k), strict=True):
                recs[i] = rec
        return recs

    def recommend(self, q: Query, k: int = 10) -> Recommendation:
        return self.recommend_many([q], k)[0]

    def recommend_readonly(self, q: Query, k: int = 10) -> Recommendation:
        return self.workers[partition(q.user_id, len(self.workers))].recommend_readonly(q, k)

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation | None:
        return self.workers[0].similar_items(item_id, k)

    def score(self, q: Query, item_ids: Sequence[str]) -> list[float]:
        return self.workers[partition(q.user_id, len(self.workers))].score(q, item_ids)

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self.learn_many([x], [history])

    def learn_stages(self, xs: Sequence[Interaction],
                     histories: Sequence[Sequence[str]]) -> Iterator[Callable[[], None]]:
        return learn_in_one_stage(self, xs, histories)

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        for w, rows in zip(self.workers, self._split([x.user_id for x in xs]), strict=True):
            if rows:
                w.learn_many([xs[i] for i in rows], [histories[i] for i in rows])
        self._rounds += 1
        if self.sharing and self._rounds % self.sync_every == 0:
            self.exchange()

    def exchange(self) -> None:
        """Every worker's contribution, through its wire form, merged by every other worker."""
        wire = [c.to_bytes() for w in self.workers if (c := w.contribution()) is not None]
        self.bytes_shared += sum(len(b) for b in wire) * (len(self.workers) - 1)
        cs = [Contribution.from_bytes(data) for data in wire]
        for w in self.workers:
            w.merge(cs)  # a worker skips its own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--limit", type=int, default=None, help="first N events only")
    ap.add_argument("--round-events", default="batch_max", help="events per round: a number, batch_max, or "
                    "batch_max*N (a full micro-batch per worker)")
    ap.add_argument("--sync-every", type=int, default=1, help="rounds between exchanges (sharing on)")
    ap.add_argument("--score-from", type=int, default=0, help="count HR@10 from this event on (50000: the half "
                    "no hyper-parameter was tuned on); every event is still recommended and learned from")
    args = ap.parse_args()
    keep_freed_tensor_memory()
    s = load_settings()
    ds = load_dataset("ml-100k", Path("data"))
    events = interactions(ds.events, s.event_weights)
    encoder = CachingEncoder(build_encoder(s))
    counts = [int(x) for x in args.workers.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    console = Console(width=160)
    command_line = " ".join(["benchmarks/workers.py", *sys.argv[1:]])
    console.print(f"[bold]$ {command_line}[/]")
    console.print(f"{ds.name}: {len(events):,} events, {len(ds.items):,} items; users placed by murmur2 over N "
                  f"workers; rounds of {args.round_events} events; sharing: exchange every {args.sync_every} round(s)")
    all_rows: list[Any] = []
    lines: list[tuple[int, bool, float]] = []
    for n in counts:
        for sharing in ([False] if n == 1 else [False, True]):
            def make(seed: int, n: int = n, sharing: bool = sharing) -> SimulatedWorkers:
                cfg = s.model_copy(update={"seed": seed})
                m = SimulatedWorkers(lambda _w: build_learner(cfg, encoder), n, sharing, args.sync_every)
                m.add_items(ds.items)
                return m

            name = f"{n} worker{'s' if n > 1 else ''}, sharing {'on' if sharing else 'off'}"
            rounds = {"batch_max": s.batch_max, "batch_max*N": s.batch_max * n}
            round_events = rounds.get(args.round_events) or int(args.round_events)
            rows, _ = evaluate_many({name: make}, events, seeds, batch_size=round_events, seq_len=s.seq_len,
                                    seen_max=s.seen_max, limit=args.limit, progress=None,
                                    score_from=args.score_from)
            all_rows.extend(rows)
            lines.append((n, sharing, rows[0].hr[0]))
    console.print(summary_table(f"prequential HR@10 with users over N workers — $ {command_line}", all_rows))
    one = next((hr for n, sharing, hr in lines if n == 1), None)
    for n, sharing, hr in lines:
        ratio = hr / one if one else float("nan")
        target = TARGETS.get(n)
        met = "" if target is None or not sharing else \
            f" target_ratio={1 - target:g} met={'yes' if ratio >= 1 - target else 'no'}"
        console.print(f"WORKERS n={n} sharing={'on' if sharing else 'off'} hr10={hr:.4f} ratio_to_one={ratio:.4f}{met}"
                      f" score_from={args.score_from}",
                      soft_wrap=True)


if __name__ == "__main__":
    main()
