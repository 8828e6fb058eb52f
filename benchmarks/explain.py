"""Explanations (``items[].because``): what they cost per micro-batch and what they say, on ML-100K and a large world.

Usage: python benchmarks/explain.py [--limit 20000] [--items 100000] [--seed 0]

The default learner, built as the worker builds it, runs the ML-100K stream (and, with ``--items N``, the synthetic
world of ``benchmarks/scale.py`` with N items, two-stage past 20,000) test-then-learn in micro-batches of 256, as the
worker does: recommend, explain (:meth:`~learners.adapter.AdapterRecommender.explain_many`), learn. Per size it
prints the p50/p99 milliseconds of recommending and of explaining a micro-batch, the share of each reason kind, how
often the cited history item is the user's latest item (an explanation that always named the latest item would say
little), and a faithfulness check through the learner's public ``score``: for up to 300 cited (list, item) pairs
after the warm-up, the share whose score falls when the cited item leaves the history (1.0 by construction; this
checks the construction). Then one line per size for scripts:
``EXPLAIN items=N recommend_p50_ms=R explain_p50_ms=E overhead=O history_share=H latest_share=L faithful=F``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from connectors.datasets import interactions, load_dataset  # noqa: E402
from learners.types import Interaction, Query  # noqa: E402
from stream.heap import keep_freed_tensor_memory  # noqa: E402
from stream.settings import load_settings  # noqa: E402
from stream.worker import build_encoder, build_learner  # noqa: E402

WARMUP_BATCHES = 5


def run(name: str, m: Any, batches: Any, seq_len: int, seen_max: int, limit: int,
        arrivals: Any = None, first_history: Any = None) -> dict[str, Any]:
    """Test, explain, then learn over ``batches`` of (users, items) id lists; the row's measurements.
    ``arrivals(n)``: add the items that arrive before event n; ``first_history(user)``: a user's history before
    the stream (the synthetic world's pre-filled ones)."""
    hist: dict[str, list[str]] = {}
    rec_ms: list[float] = []
    exp_ms: list[float] = []
    kinds: Counter[str] = Counter()
    latest = cited = 0
    checks: list[bool] = []
    done = 0
    for n_batch, (users, items) in enumerate(batches):
        if arrivals is not None:
            arrivals(done + len(users))
        qs, xs, hs = [], [], []
        for u, i in zip(users, items, strict=True):
            if u not in hist:
                hist[u] = list(first_history(u)) if first_history is not None else []
            mine = hist[u]
            h = tuple(mine[-seq_len:])
            qs.append(Query(u, h, frozenset(mine[-seen_max:])))
            xs.append(Interaction(u, i))
            hs.append(h)
            mine.append(i)
        t0 = time.perf_counter()
        recs = m.recommend_many(qs, 10)
        t1 = time.perf_counter()
        why = m.explain_many(qs, recs)
        t2 = time.perf_counter()
        if n_batch >= WARMUP_BATCHES:
            rec_ms.append((t1 - t0) * 1e3)
            exp_ms.append((t2 - t1) * 1e3)
            for q, rec, reasons in zip(qs, recs, why, strict=True):
                for (item, _), b in zip(rec, reasons, strict=True):
                    kinds[b["kind"]] += 1
                    if b["kind"] != "history":
                        continue
                    cited += 1
                    latest += b["item_id"] == q.history[-1]
                    if len(checks) < 300 and cited % 7 == 0:
                        shorter = Query(q.user_id, tuple(x for x in q.history if x != b["item_id"]), q.exclude)
                        checks.append(m.score(shorter, [item])[0] < m.score(q, [item])[0])
        m.learn_many(xs, hs)
        done += len(users)
        if done >= limit:
            break
    total = sum(kinds.values()) or 1
    r50, e50 = float(np.percentile(rec_ms, 50)), float(np.percentile(exp_ms, 50))
    return {"name": name, "items": len(m.item_ids), "events": done, "rec_p50": r50,
            "rec_p99": float(np.percentile(rec_ms, 99)), "exp_p50": e50, "exp_p99": float(np.percentile(exp_ms, 99)),
            "overhead": e50 / r50, "shares": {k: v / total for k, v in kinds.items()},
            "latest": latest / max(cited, 1), "faithful": float(np.mean(checks)) if checks else float("nan"),
            "checked": len(checks)}


def movielens(limit: int, seed: int) -> dict[str, Any]:
    s = load_settings(seed=seed)
    ds = load_dataset("ml-100k", Path("data"))
    events = interactions(ds.events, s.event_weights)[:limit]
    m = build_learner(s, build_encoder(s))
    m.add_items(ds.items)
    batches = ((([x.user_id for x in events[i:i + s.batch_max]]), [x.item_id for x in events[i:i + s.batch_max]])
               for i in range(0, len(events), s.batch_max))
    return run("ML-100K", m, batches, s.seq_len, s.seen_max, limit)


def synthetic(items: int, limit: int, seed: int) -> dict[str, Any]:
    import scale

    from connectors.synthetic import SyntheticWorld, WorldConfig

    s = load_settings(seed=seed)
    world = SyntheticWorld(WorldConfig(items=items, users=1_000_000, seed=seed))
    m, have, _ = scale.build("streamrec", world, seed)
    state = {"have": have}

    def arrivals(upto: int) -> None:
        state["have"] = scale.add_arrivals(m, world, state["have"], world.arrived(upto), "streamrec")

    prefilled: dict[str, list[str]] = {}

    def batches() -> Any:
        for _, users, its in world.batches(s.batch_max):
            fresh = [u for u in dict.fromkeys(users.tolist()) if f"user{u}" not in prefilled]
            if fresh:  # the world's pre-filled histories, as scale.py gives them
                h, lengths = world.prefilled(np.array(fresh))
                for u, row, n in zip(fresh, h.tolist(), lengths.tolist(), strict=True):
                    prefilled[f"user{u}"] = [f"item{j}" for j in row[len(row) - n:]]
            yield [f"user{u}" for u in users.tolist()], [f"item{i}" for i in its.tolist()]

    return run(f"synthetic {items:,}", m, batches(), s.seq_len, s.seen_max, limit, arrivals,
               lambda u: prefilled.get(u, []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=20_000, help="events per row")
    ap.add_argument("--items", type=int, default=0, help="also a synthetic world of this many items")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    keep_freed_tensor_memory()
    rows = [movielens(args.limit, args.seed)]
    if args.items:
        rows.append(synthetic(args.items, args.limit, args.seed))
    command = " ".join(shlex.quote(a) for a in ["benchmarks/explain.py", *sys.argv[1:]])
    table = Table(title=f"explanations — $ {command}")
    for col in ("catalog", "events", "recommend 256 p50 / p99", "explain 256 p50 / p99", "explain / recommend",
                "history / popular / new", "cited = latest item", "faithful (checked)"):
        table.add_column(col, justify="right")
    for r in rows:
        sh = r["shares"]
        table.add_row(f"{r['name']} ({r['items']:,} items)", f"{r['events']:,}",
                      f"{r['rec_p50']:.0f} / {r['rec_p99']:.0f} ms", f"{r['exp_p50']:.0f} / {r['exp_p99']:.0f} ms",
                      f"{r['overhead']:.2f}",
                      f"{sh.get('history', 0):.3f} / {sh.get('popular', 0):.3f} / {sh.get('new', 0):.3f}",
                      f"{r['latest']:.3f}", f"{r['faithful']:.3f} ({r['checked']})")
    Console(width=200).print(table)
    for r in rows:
        print(f"EXPLAIN items={r['items']} recommend_p50_ms={r['rec_p50']:.1f} explain_p50_ms={r['exp_p50']:.1f} "
              f"overhead={r['overhead']:.2f} history_share={r['shares'].get('history', 0):.3f} "
              f"latest_share={r['latest']:.3f} faithful={r['faithful']:.3f}")


if __name__ == "__main__":
    main()
