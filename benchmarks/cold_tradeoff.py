"""What cold-item HR@10 costs in HR@10: the default learner with more or fewer cold places, against item-kNN.

Usage: python benchmarks/cold_tradeoff.py [--places 0.5:4,0.3:4,0.1:6,0.05:10] [--seed 0] [--limit N]
Each entry is ``cold.gate:cold.slots`` (see the README's model section); ``off`` is the learner without cold places.
Prints one table, headed by its command line: HR@10, NDCG@10 and cold-item HR@10 of each setting, each relative to
item-kNN in the same run (the quality issue's targets: HR@10 and NDCG@10 >= +15%, cold-item HR@10 >= 2x).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.datasets import interactions, load_dataset
from learners.baselines import BASELINES
from learners.cold import ColdConfig
from learners.encoder import CachingEncoder
from learners.evaluation import prequential
from stream.heap import keep_freed_tensor_memory
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner


def places(text: str) -> list[tuple[str, float, int]]:
    """``0.5:4,off`` -> [("0.5:4", 0.5, 4), ("off", 1.0, 0)]."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "off":
            out.append((part, 1.0, 0))
            continue
        gate, _, slots = part.partition(":")
        try:
            out.append((part, float(gate), int(slots)))
        except ValueError:
            raise SystemExit(f"--places: expected gate:slots entries like 0.5:4 or off, got {part!r}") from None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--places", default="off,0.5:4,0.5:8,0.2:6,0.1:8,0.05:10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    settings_list = places(args.places)
    keep_freed_tensor_memory()  # as streamrec evaluate does (stream/heap.py)
    s = load_settings(seed=args.seed)
    ds = load_dataset("ml-100k", Path("data"))
    events = interactions(ds.events, s.event_weights)
    kw = {"batch_size": s.batch_max, "seq_len": s.seq_len, "seen_max": s.seen_max, "limit": args.limit}
    knn = BASELINES["item-knn"](seed=args.seed)
    knn.add_items(ds.items)
    base = prequential(knn, events, name="item-knn", **kw)
    encoder = CachingEncoder(build_encoder(s))
    command = " ".join(shlex.quote(a) for a in ["benchmarks/cold_tradeoff.py", *sys.argv[1:]])
    table = Table(title=f"cold places vs HR@10 — $ {command}")
    for col in ("cold places (gate:slots)", "HR@10", "vs item-kNN", "NDCG@10", "vs item-kNN", "cold HR@10",
                "vs item-kNN"):
        table.add_column(col, justify="left" if col.startswith("cold places") else "right")
    table.add_row("item-kNN", f"{base.hr:.4f}", "", f"{base.ndcg:.4f}", "", f"{base.hr_cold:.4f}", "")
    for label, gate, slots in settings_list:
        m = build_learner(s.model_copy(update={"cold": ColdConfig(s.cold.threshold, gate, slots)}), encoder)
        m.add_items(ds.items)
        r = prequential(m, events, name=label, **kw)
        table.add_row(label, f"{r.hr:.4f}", f"{r.hr / base.hr - 1:+.1%}", f"{r.ndcg:.4f}", f"{r.ndcg / base.ndcg - 1:+.1%}",
                      f"{r.hr_cold:.4f}", f"{r.hr_cold / base.hr_cold:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
