"""User intent from text: HR@10 on ML-100K when a share of events carries what a search box would give.

Usage: python benchmarks/intent.py [--share 0.3] [--weights 0.5,1,2] [--limit N] [--seed 0]

The default learner, built as the worker builds it, runs the ML-100K stream test-then-learn in micro-batches of 256
(as ``streamrec evaluate``). A seeded ``--share`` of the events carries a query (``Query.intent``, the worker's
``context.query``) made from the item the user picks next, as a search box would give it: one of its genres and
one word of its title (4 letters or more), lowercased, in random order ("comedy story"). Each weight
(``intent.weight``) is one pass with the queries; a pass without any query is the reference. The learner never
learns from the text (it only moves the user vector of that request), so the reference pass is the same model.

It prints HR@10 of the events with a query (with it / without it, from the reference pass) and of the events
without one (this pass / the reference), on the whole stream and on its second half (events 50,001 on; weights are
to be chosen on the first half), then one line for scripts, for the weight given by ``--default``:
``INTENT with_query_gain=G without_query_change=C`` (relative, whole stream: 0.30 = +30%).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from connectors.datasets import interactions, load_dataset
from learners.encoder import CachingEncoder
from learners.types import Query
from stream.heap import keep_freed_tensor_memory
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner

HALF = 50_000


def search_box(text: str, rng: np.random.Generator) -> str:
    """A query for an item from its text (``movie_text``): a genre and a title word.

    >>> search_box("Toy Story (1995). Genres: Animation, Children's, Comedy.", np.random.default_rng(0))
    'comedy story'
    """
    head, _, genres = text.partition(" Genres: ")
    title = re.sub(r"\s*\(\d{4}\)\.?$", "", head.strip().rstrip("."))
    words = [w for w in re.findall(r"[A-Za-z']+", title) if len(w) >= 4]
    kinds = [g.strip().lower() for g in genres.rstrip(".").split(",") if g.strip()]
    parts = [str(rng.choice(kinds))] if kinds else []
    if words:
        parts.append(str(rng.choice(words)).lower())
    rng.shuffle(parts)
    return " ".join(parts)


def run(weight: float, queries: dict[int, str], items: list[Any], events: list[Any], encoder: Any, limit: int,
        seed: int) -> np.ndarray:
    """One pass over ``events`` with a catalog of ``items``; per event, whether its item was in the list (1/0)."""
    s = load_settings(seed=seed, intent={"weight": weight})
    m = build_learner(s, encoder)
    m.add_items(items)
    hist: dict[str, list[str]] = {}
    hits = np.zeros(min(limit, len(events)), dtype=np.int8)
    for start in range(0, len(hits), s.batch_max):
        chunk = events[start : start + s.batch_max][: len(hits) - start]
        qs, hs = [], []
        for n, x in enumerate(chunk, start):  # each query sees the events before it, this batch's included
            mine = hist.setdefault(x.user_id, [])
            h = tuple(mine[-s.seq_len:])
            qs.append(Query(x.user_id, h, frozenset(mine[-s.seen_max:]), queries.get(n, "")))
            hs.append(h)
            mine.append(x.item_id)
        for n, (x, rec) in enumerate(zip(chunk, m.recommend_many(qs, 10), strict=True), start):
            hits[n] = x.item_id in {i for i, _ in rec}
        m.learn_many(chunk, hs)
    return hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--weights", default="0.5,1,2")
    ap.add_argument("--default", type=float, default=load_settings().intent.weight)
    ap.add_argument("--limit", type=int, default=10**9)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    keep_freed_tensor_memory()
    s = load_settings(seed=args.seed)
    ds = load_dataset("ml-100k", Path("data"))
    events = interactions(ds.events, s.event_weights)
    texts = {it.item_id: it.text for it in ds.items}
    rng = np.random.default_rng(args.seed + 101)
    queries = {n: search_box(texts[x.item_id], rng) for n, x in enumerate(events) if rng.random() < args.share}
    queries = {n: q for n, q in queries.items() if q}
    encoder = CachingEncoder(build_encoder(s))
    weights = [float(w) for w in args.weights.split(",") if w.strip()]
    if args.default not in weights:
        weights.append(args.default)
    reference = run(0.0, {}, ds.items, events, encoder, args.limit, args.seed)
    n = len(reference)
    has = np.zeros(n, dtype=bool)
    has[[k for k in queries if k < n]] = True
    second = np.arange(n) >= HALF
    command = " ".join(shlex.quote(a) for a in ["benchmarks/intent.py", *sys.argv[1:]])
    table = Table(title=f"user intent from text, ML-100K — $ {command}")
    for col in ("intent.weight", "part", "events with a query", "HR@10 with query / without", "gain",
                "HR@10 others / reference", "change"):
        table.add_column(col, justify="right")
    summary: dict[float, tuple[float, float]] = {}
    for w in weights:
        got = run(w, queries, ds.items, events, encoder, args.limit, args.seed)
        for part, sel in (("whole", np.ones(n, dtype=bool)), ("second half", second)):
            q, o = sel & has, sel & ~has
            if not q.any() or not o.any():
                continue
            with_q, without_q = got[q].mean(), reference[q].mean()
            others, ref_others = got[o].mean(), reference[o].mean()
            gain, change = with_q / without_q - 1, others / ref_others - 1
            table.add_row(f"{w:g}", part, f"{int(q.sum()):,}", f"{with_q:.4f} / {without_q:.4f}", f"{gain:+.1%}",
                          f"{others:.4f} / {ref_others:.4f}", f"{change:+.2%}")
            if part == "whole":
                summary[w] = (gain, change)
    Console(width=200).print(table)
    gain, change = summary[args.default]
    print(f"INTENT with_query_gain={gain:.3f} without_query_change={change:.3f}")


if __name__ == "__main__":
    main()
