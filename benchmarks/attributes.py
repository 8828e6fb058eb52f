"""Item attributes shared across items: HR@10 and cold-item HR@10 with and without them, on ML-100K and a
synthetic world.

Usage: python benchmarks/attributes.py [--variants 0,16,32,64,32x1] [--default 32x0.5] [--limit N] [--seeds 0]
                                       [--world-events 30000]

A variant is ``slots`` or ``slotsxscale`` (``attributes.slots``, ``attributes.scale``; the scale defaults to the
setting's); 0 is the learner without attributes. Each runs the default learner, built as the worker builds it, over
the stream test-then-learn in micro-batches of 256 (``learners.evaluation.prequential``, as ``streamrec
evaluate``). A cold item is one with fewer than 5 interactions before the event (the evaluator's
``cold.threshold``): the items attributes are for, whose own vectors have learned little.

* **ML-100K.** Each movie's attributes come from RecBole's knowledge graph (``ml-100k.kg`` through
  ``ml-100k.link``: director, writer, producer, genre, company, cinematographer, subject, country, language, rating,
  awards, actors; Freebase entity ids), the first ``slots`` of them in that order. HR@10 on the whole stream and on
  its second half (events 50,001 on; variants are to be chosen on the first half: ``--limit 50000``), each the
  mean over ``--seeds``.
* **A synthetic world** (``connectors.synthetic``, 2,000 items in 40 categories, 2,000 users, half the catalog
  arriving during the run) whose texts say little of an item's category (``text_share`` 0.2) and whose brands
  (5 per category) say it, some brands drawing more traffic than others (``brand_effect`` 1): what attributes
  can give where they carry what the text does not. One brand attribute per item.

Then one line per data set for scripts, for ``--default`` against 0:
``ATTRIBUTES data=D variant=V cold_hr10_gain=G hr10_change=C`` (relative, whole stream: 0.10 = +10%).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from connectors.datasets import Dataset, interactions, load_dataset
from connectors.synthetic import SyntheticWorld, WorldConfig
from learners.encoder import CachingEncoder
from learners.evaluation import PrequentialResult, prequential
from learners.types import Interaction
from stream.heap import keep_freed_tensor_memory
from stream.settings import Settings, load_settings
from stream.worker import build_encoder, build_learner

HALF = 50_000
Variant = tuple[int, float]


def parse_variant(text: str, scale: float) -> Variant:
    """``"32"`` or ``"32x0.5"`` -> (slots, scale).

    >>> parse_variant("32x1", 0.5), parse_variant("16", 0.5)
    ((32, 1.0), (16, 0.5))
    """
    slots, _, s = text.strip().partition("x")
    return int(slots), float(s) if s else scale


def name(v: Variant) -> str:
    return "off" if v[0] == 0 else f"{v[0]}x{v[1]:g}"


def world_stream(seed: int, n_events: int) -> tuple[SyntheticWorld, list[Interaction]]:
    world = SyntheticWorld(WorldConfig(items=2000, users=2000, categories=40, text_share=0.2, initial_share=0.5,
                                       brands_per_category=5, brand_effect=1.0, horizon=n_events, seed=seed))
    users, picked = world.events(0, n_events)
    return world, [Interaction(f"u{u}", world.item_id(i), float(n))
                   for n, (u, i) in enumerate(zip(users.tolist(), picked.tolist(), strict=True))]


def run(v: Variant, seed: int, data: str, s: Settings, encoder: CachingEncoder, limit: int | None,
        world_events: int, ml100k: Dataset) -> list[tuple[str, PrequentialResult]]:
    """One pass; (part, result) for the whole stream and, past HALF events, its second half."""
    m = build_learner(load_settings(seed=seed, attributes={"slots": v[0], "scale": v[1]}), encoder)
    if data == "ml-100k":
        m.add_items(ml100k.items)
        events = interactions(ml100k.events, s.event_weights)
    else:
        world, events = world_stream(seed, world_events)
        items = world.items(0, world.config.items, text=False, attributes=True)
        m.add_item_embeddings([it.item_id for it in items], world.embeddings(0, len(items)),
                              [it.attributes for it in items])
    n = min(len(events), limit or len(events))
    r = prequential(m, events, batch_size=s.batch_max, seq_len=s.seq_len, seen_max=s.seen_max, limit=limit,
                    cold_threshold=s.cold.threshold, score_from=HALF if n > HALF else 0, name=name(v))
    return [("whole", r)] if r.whole is None else [("whole", r.whole), ("second half", r)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = load_settings()
    ap.add_argument("--variants", default="0,16,32,64")
    ap.add_argument("--default", default=f"{defaults.attributes.slots}x{defaults.attributes.scale:g}")
    ap.add_argument("--data", default="ml-100k,synthetic")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--world-events", type=int, default=30_000)
    args = ap.parse_args()
    keep_freed_tensor_memory()
    s = load_settings()
    default = parse_variant(args.default, s.attributes.scale)
    variants = sorted({parse_variant(x, s.attributes.scale) for x in args.variants.split(",") if x.strip()}
                      | {(0, s.attributes.scale), default})
    variants = [v for v in variants if v[0] > 0 or v[1] == s.attributes.scale]  # one "off"
    default = (0, s.attributes.scale) if default[0] == 0 else default
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    encoder = CachingEncoder(build_encoder(s))
    command = " ".join(shlex.quote(a) for a in ["benchmarks/attributes.py", *sys.argv[1:]])
    table = Table(title=f"item attributes, seeds {args.seeds} — $ {command}")
    for col in ("data", "attributes (slots x scale)", "part", "events", "HR@10", "change", "cold-item HR@10",
                "change", "cold events", "events/s"):
        table.add_column(col, justify="right")
    summary: list[str] = []
    datas = [d.strip() for d in args.data.split(",") if d.strip()]
    ml100k = load_dataset("ml-100k", Path("data"))
    if "ml-100k" in datas:
        items = ml100k.items
        counts = Counter(v for it in items for v in it.attributes)
        print(f"ml-100k attributes: {sum(1 for it in items if it.attributes):,} of {len(items):,} movies linked, "
              f"{len(counts):,} distinct values, {sum(1 for c in counts.values() if c >= 2):,} of them shared by two "
              "or more movies")
    for data in datas:
        rows: dict[Variant, dict[str, tuple[float, float, int, int, float]]] = {}
        for v in variants:
            acc: dict[str, list[tuple[float, float, int, int, float]]] = {}
            for seed in seeds:
                for part, res in run(v, seed, data, s, encoder, args.limit, args.world_events, ml100k):
                    acc.setdefault(part, []).append((res.hr, res.hr_cold, res.n_cold, res.n, res.events_per_s))
                print(f"{data} {name(v)} seed={seed}: HR@10 {acc['whole'][-1][0]:.4f} "
                      f"cold {acc['whole'][-1][1]:.4f}", file=sys.stderr)
            rows[v] = {part: (float(np.mean([a[0] for a in got])), float(np.mean([a[1] for a in got])),
                              got[0][2], got[0][3], float(np.mean([a[4] for a in got]))) for part, got in acc.items()}
        base = rows[(0, s.attributes.scale)]
        for v in variants:
            for part, (hr, cold, n_cold, n, speed) in rows[v].items():
                b_hr, b_cold = base[part][:2]
                table.add_row(data, name(v), part, f"{n:,}", f"{hr:.4f}", f"{hr / b_hr - 1:+.1%}", f"{cold:.4f}",
                              f"{cold / b_cold - 1:+.1%}" if b_cold else "-", f"{n_cold:,}",
                              f"{speed:,.0f}" if part == "whole" else "")
        hr, cold = rows[default]["whole"][:2]
        b_hr, b_cold = base["whole"][:2]
        summary.append(f"ATTRIBUTES data={data} variant={name(default)} "
                       f"cold_hr10_gain={cold / b_cold - 1 if b_cold else 0.0:.3f} hr10_change={hr / b_hr - 1:.3f}")
    Console(width=200).print(table)
    print("\n".join(summary))


if __name__ == "__main__":
    main()
