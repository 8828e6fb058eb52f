"""Retrieval drift: how the ANN index's recall holds up as the learner keeps learning, with and without rebuilding
its graph when the recall probe finds it drifted (``retrieval.rebuild_below``).

Usage: python benchmarks/retrieval_drift.py [--items 1000000] [--users 1000000] [--updates 300] [--every 50]
                                           [--rebuild-below 0.5,0]

``benchmarks/scale.py`` measures recall after ~25 learning updates, when the graph (drawn from the vectors of before
any learning) still fits the vectors. Here the same world and learner (``scale.build``, ``scale.stream_batches``)
learn for ``--updates`` micro-batches of 256 events, recommending each first; every ``--every`` updates one batch
is measured before it is learned: retrieval recall@10 (the share of the model's exact top 10 over the whole catalog
that the candidates of all sources hold, ``AdapterRecommender.retrieval_recall``) and the ANN search's own recall@10
(the share of the exact top 10 over the index's stored vectors that its search finds, for the batch's 256 queries,
``AdapterRecommender.index_recall``). Rebuilds run in the background as in the worker, so their CPU shows in the
interval's events/s (learner time of the batches since the previous row). One run per ``--rebuild-below`` value (0:
no probe-triggered rebuild; the periodic ``rebuild_updates`` rebuild stays in both).

After the table, one line per run: ``DRIFT items=N updates=U rebuild_below=X recall_at_10=R ann_recall_at_10=A
rebuilds=K events_per_s=E`` (the last row's recalls; events/s over all updates).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(items: int, users: int, updates: int, every: int, rebuild_below: float, seed: int) -> list[dict[str, Any]]:
    import scale

    from connectors.synthetic import SyntheticWorld, WorldConfig
    from stream.settings import load_settings

    s = load_settings()
    if s.torch_threads:
        import torch

        torch.set_num_threads(s.torch_threads)
    os.environ["STREAMREC_RETRIEVAL__REBUILD_BELOW"] = str(rebuild_below)
    world = SyntheticWorld(WorldConfig(items=items, users=users, seed=seed))
    m, have, _ = scale.build("streamrec", world, seed)
    assert m.retrieval.rebuild_below == rebuild_below
    rows: list[dict[str, Any]] = []
    spent, events, t_row, e_row = 0.0, 0, 0.0, 0
    for n, (queries, xs, hs, _) in enumerate(scale.stream_batches(m, world, have, "streamrec", s.batch_max,
                                                                   s.seq_len, s.seen_max)):
        if n and n % every == 0:
            state = m.retrieval_state
            rows.append({"updates": n, "recall": m.retrieval_recall(queries, 10), "ann": m.index_recall(queries),
                         "rebuilds": state.rebuilds if state else 0, "building": bool(state and state.building),
                         "events_per_s": e_row / t_row if t_row else float("nan")})
            print(f"  rebuild_below {rebuild_below:g}: {rows[-1]}", file=sys.stderr, flush=True)
            t_row, e_row = 0.0, 0
        if n >= updates:
            break
        t0 = time.perf_counter()
        m.recommend_many(queries, 10)
        m.learn_many(xs, hs)
        dt = time.perf_counter() - t0
        spent, events, t_row, e_row = spent + dt, events + len(xs), t_row + dt, e_row + len(xs)
    for r in rows:
        r["total_events_per_s"] = events / spent
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--rebuild-below", default="0.5,0", help="comma-separated retrieval.rebuild_below values")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from rich.console import Console
    from rich.table import Table

    from learners.retrieval import RetrievalConfig

    values = [float(x) for x in args.rebuild_below.split(",") if x.strip()]
    for v in values:
        dataclasses.replace(RetrievalConfig(), rebuild_below=v)  # a bad value: one line naming the field, first
    runs = {v: run(args.items, args.users, args.updates, args.every, v, args.seed) for v in values}
    t = Table(title=f"retrieval drift: {args.items:,} items, {args.users:,} users, micro-batches of 256")
    for col in ("rebuild_below", "updates", "retrieval recall@10", "ANN recall@10 (probe)", "rebuilds started",
                "rebuilding", "events/s since the previous row"):
        t.add_column(col, justify="right")
    for v, rows in runs.items():
        for r in rows:
            ann = "-" if r["ann"] is None else f"{r['ann']:.3f}"
            t.add_row(f"{v:g}", str(r["updates"]), f"{r['recall']:.3f}", ann, str(r["rebuilds"]),
                      "yes" if r["building"] else "no", f"{r['events_per_s']:,.0f}")
    Console(width=160).print(t)
    for v, rows in runs.items():
        last = rows[-1]
        ann = "n/a" if last["ann"] is None else f"{last['ann']:.3f}"
        print(f"DRIFT items={args.items} updates={last['updates']} rebuild_below={v:g} "
              f"recall_at_10={last['recall']:.3f} ann_recall_at_10={ann} rebuilds={last['rebuilds']} "
              f"events_per_s={last['total_events_per_s']:.0f}")


if __name__ == "__main__":
    main()
