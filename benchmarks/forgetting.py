"""Forgetting benchmark: does the replay buffer keep phase-1 knowledge while the model learns phase 2?

The MovieLens-100K stream is split by genre into two phases whose interests differ: phase 1 = ratings of items
whose genres include any of connectors.datasets.PHASE_ONE_GENRES, phase 2 = the rest (each phase in timestamp
order; ``genre_phases``). Every 10th phase-1 event is held back (not learned) as a probe: its query is the user's
history at that moment. We learn phase 1,
measure HR@10 on the probes (the peak), learn phase 2 (measuring its own prequential HR@10, the "current phase"),
and measure the probes again. Forgetting = peak - after. Run with and without replay.

Usage: python benchmarks/forgetting.py [--seeds 0,1] [--replay-ratio 1.0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.datasets import genre_phases, interactions, load_dataset
from learners.encoder import CachingEncoder
from learners.evaluation import prequential
from learners.history import InMemoryHistory
from learners.types import Interaction, Query
from stream.heap import keep_freed_tensor_memory
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner


def probe_hr(learner, probes: list[tuple[Query, str]], k: int = 10) -> float:
    hits = 0
    for start in range(0, len(probes), 256):
        chunk = probes[start : start + 256]
        recs = learner.recommend_many([q for q, _ in chunk], k)
        hits += sum(item in {i for i, _ in r} for (_, item), r in zip(chunk, recs, strict=True))
    return hits / len(probes)


def run(seed: int, replay_capacity: int, replay_ratio: float, encoder, ds) -> dict[str, float]:
    s = load_settings(seed=seed, training={"replay_capacity": replay_capacity, "replay_ratio": replay_ratio})
    phase1, phase2 = genre_phases(ds)
    m = build_learner(s, encoder)
    m.add_items(ds.items)
    hist = InMemoryHistory(s.seq_len, s.seen_max)
    train1: list[Interaction] = []
    probes: list[tuple[Query, str]] = []
    for n, e in enumerate(phase1):
        if n % 10 == 9:
            probes.append((Query(e["user_id"], hist.history(e["user_id"]), hist.seen(e["user_id"])), e["item_id"]))
        else:
            train1.append(Interaction(e["user_id"], e["item_id"], e["ts"]))
            hist.append(e["user_id"], e["item_id"])
    p1 = prequential(m, train1, batch_size=s.batch_max)
    peak = probe_hr(m, probes)
    p2 = prequential(m, interactions(phase2), batch_size=s.batch_max)
    after = probe_hr(m, probes)
    return {"phase1_hr": p1.hr, "peak": peak, "phase2_hr": p2.hr, "after": after, "forgetting": peak - after,
            "n1": len(train1), "n2": len(phase2), "probes": len(probes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--replay-ratio", type=float, default=1.0)
    ap.add_argument("--replay-capacity", type=int, default=20_000)
    args = ap.parse_args()
    keep_freed_tensor_memory()  # as the worker and streamrec evaluate do (stream/heap.py)
    ds = load_dataset("ml-100k", Path("data"))
    encoder = CachingEncoder(build_encoder(load_settings()))
    t = Table(title=f"forgetting — {' '.join(sys.argv)}")
    for col in ("variant", "seed", "phase-1 events", "probe HR@10 peak", "probe HR@10 after phase 2", "forgetting",
                "phase-2 HR@10 (current)"):
        t.add_column(col, justify="right")
    results: dict[str, list[dict[str, float]]] = {"replay": [], "no replay": []}
    for seed in [int(x) for x in args.seeds.split(",")]:
        for name, cap in (("replay", args.replay_capacity), ("no replay", 0)):
            r = run(seed, cap, args.replay_ratio, encoder, ds)
            results[name].append(r)
            t.add_row(name, str(seed), f"{r['n1']:,}", f"{r['peak']:.4f}", f"{r['after']:.4f}",
                      f"{r['forgetting']:.4f}", f"{r['phase2_hr']:.4f}")
    Console().print(t)
    f_rep = sum(r["forgetting"] for r in results["replay"]) / len(results["replay"])
    f_no = sum(r["forgetting"] for r in results["no replay"]) / len(results["no replay"])
    c_rep = sum(r["phase2_hr"] for r in results["replay"]) / len(results["replay"])
    c_no = sum(r["phase2_hr"] for r in results["no replay"]) / len(results["no replay"])
    cut = (1 - f_rep / f_no) if f_no > 0 else float("nan")
    Console().print(f"forgetting with replay {f_rep:.4f} vs without {f_no:.4f}: cut by {cut:.0%} (target >= 50%); "
                    f"current-phase HR@10 {c_rep:.4f} vs {c_no:.4f} ({c_rep / c_no - 1:+.1%}, target >= -5%)")


if __name__ == "__main__":
    main()
