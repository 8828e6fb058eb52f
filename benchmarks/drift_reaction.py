"""Does reacting to drift alarms help? The worker's EventProcessor (drift watch included) with and without
``drift_reaction=lr_boost``, on MovieLens-100K as recorded and on a stream with an injected interest shift.

Usage: python benchmarks/drift_reaction.py [--boost 3.0] [--steps 50]
The shifted stream is the genre-phased one of benchmarks/forgetting.py (phase 1, then phase 2). HR@10 is
prequential from the processor's own recommendation records (each checked against the user's next event),
overall and over the 10,000 events after the shift point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.datasets import genre_phases, load_dataset
from learners.encoder import CachingEncoder
from stream.demo import prequential_from_topic
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, run_offline
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner


def run(events: list[dict], items: list, encoder, reaction: str, boost: float, steps: int) -> tuple[dict, int]:
    s = load_settings(drift_reaction=reaction, drift_lr_boost=boost, drift_boost_steps=steps)
    learner = build_learner(s, encoder)
    learner.add_items(items)
    metrics = WorkerMetrics()
    proc = EventProcessor(s, learner, metrics)
    recs: dict[str, dict] = {}

    def keep(_: int, res) -> None:
        recs.update((r["event_id"], r) for _, r in res.recommendations)

    run_offline(proc, events, s.batch_max, keep)
    alarms = sum(int(sample.value) for fam in metrics.registry.collect() if fam.name == "streamrec_drift_alarms"
                 for sample in fam.samples if sample.name.endswith("_total"))
    return recs, alarms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boost", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    ds = load_dataset("ml-100k", Path("data"))
    phase1, phase2 = genre_phases(ds)
    streams = {"ml-100k as recorded": (ds.events, None), "genre shift (phase 1 -> 2)": (phase1 + phase2, len(phase1))}
    encoder = CachingEncoder(build_encoder(load_settings()))
    t = Table(title=f"drift reaction — {' '.join(sys.argv)}")
    for col in ("stream", "reaction", "drift alarms", "HR@10 overall", "HR@10 10k events after the shift"):
        t.add_column(col, justify="right")
    for name, (events, shift) in streams.items():
        for reaction in ("none", "lr_boost"):
            recs, alarms = run(events, ds.items, encoder, reaction, args.boost, args.steps)
            hr, _, _ = prequential_from_topic(events, recs)
            after = "-"
            if shift is not None:
                window = events[shift : shift + 10_000]
                hr_after, _, _ = prequential_from_topic(window, recs)
                after = f"{hr_after:.4f}"
            t.add_row(name, reaction, str(alarms), f"{hr:.4f}", after)
    Console().print(t)


if __name__ == "__main__":
    main()
