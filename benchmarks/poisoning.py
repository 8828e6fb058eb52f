"""Fake-user poisoning: 1% fake users push one target item; how much does its share of real users' top-10 grow?

Usage: python benchmarks/poisoning.py [--target-rank 200] [--fake-users 10] [--every 100]
Runs the worker's EventProcessor (validation, rate limit, de-duplication, learner) offline over MovieLens-100K.
The attack inserts one fake event after every ``--every`` real events, cycling through ``--fake-users`` users;
each fake user clicks the target (the item ranked ``--target-rank`` by popularity) and a random top-50 item as
camouflage in turn. Share = fraction of real users' recommendations in the second half of the stream that
contain the target. Goal: attacked share < 2x clean share.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.datasets import load_dataset
from learners.encoder import CachingEncoder
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, run_offline
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner


def share(events: list[dict], items: list, encoder, target: str) -> tuple[float, int]:
    s = load_settings()
    learner = build_learner(s, encoder)
    learner.add_items(items)
    proc = EventProcessor(s, learner, WorkerMetrics())
    half = len(events) // 2
    counts = {"hits": 0, "total": 0}

    def tally(start: int, res) -> None:
        if start >= half:
            for _, r in res.recommendations:
                if not r["user_id"].startswith("fake-"):
                    counts["total"] += 1
                    counts["hits"] += any(x["item_id"] == target for x in r["items"])

    run_offline(proc, events, s.batch_max, tally)
    hits, total = counts["hits"], counts["total"]
    return hits / max(1, total), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-rank", type=int, default=200)
    ap.add_argument("--fake-users", type=int, default=10)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_dataset("ml-100k", Path("data"))
    ranked = [i for i, _ in Counter(e["item_id"] for e in ds.events).most_common()]
    target, popular = ranked[args.target_rank], ranked[:50]
    rng = random.Random(args.seed)
    attacked: list[dict] = []
    n_fake = 0
    for k, e in enumerate(ds.events):
        attacked.append(e)
        if k % args.every == args.every - 1:
            # every fake user alternates target and camouflage (``n_fake % 2`` would, for an even number of fake
            # users, give half of them only the target and the other half only camouflage)
            item = target if (n_fake // args.fake_users) % 2 == 0 else rng.choice(popular)
            attacked.append({"event_id": f"fake-{n_fake}", "user_id": f"fake-{n_fake % args.fake_users}",
                             "item_id": item, "event_type": "click", "ts": e["ts"]})
            n_fake += 1
    encoder = CachingEncoder(build_encoder(load_settings()))
    clean, n_clean = share(ds.events, ds.items, encoder, target)
    hit, n_hit = share(attacked, ds.items, encoder, target)
    t = Table(title=f"poisoning — {' '.join(sys.argv)}")
    for col in ("stream", "fake events", "real recommendations scored", "target share of real top-10s"):
        t.add_column(col, justify="right")
    t.add_row("clean", "0", f"{n_clean:,}", f"{clean:.4%}")
    t.add_row(f"attacked ({args.fake_users} fake users = {args.fake_users / 943:.1%})", f"{n_fake:,}", f"{n_hit:,}",
              f"{hit:.4%}")
    Console().print(t)
    ratio = hit / clean if clean else float("inf")
    Console().print(f"target {target} (popularity rank {args.target_rank}): share x{ratio:.2f} (goal < 2x)")


if __name__ == "__main__":
    main()
