"""What ``GET /items/{id}/similar`` costs the worker's event loop past ``retrieval.exact_max_items``.

Usage: python benchmarks/similar_items.py [--sizes 200000,1000000] [--requests 30]

A learner with ``N`` items of random 384-wide embeddings (past ``exact_max_items``: the ANN index holds them) answers
``--requests`` similar-items requests for random items. Per request it times the whole ``similar_items`` call, the
stage of ``similar_stages`` the web route runs on a thread (the scan of the index's stored vectors), and the rest,
which runs on the event loop (the item's vector, the re-ranking of the candidates). Medians. Then one line per size
for scripts: ``SIMILAR items=N whole_ms=W scan_stage_ms=S on_loop_ms=L``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch

from learners.adapter import AdapterRecommender
from learners.retrieval import RetrievalConfig


def measure(n: int, requests: int, seed: int = 0) -> dict[str, float]:
    m = AdapterRecommender(None, device="cpu", retrieval=RetrievalConfig(refresh_in_background=False), seed=seed)
    rng = np.random.default_rng(seed)
    ids = [f"item-{j}" for j in range(n)]
    m.add_item_embeddings(ids, rng.normal(size=(n, 384)).astype(np.float32))
    whole, scan, on_loop = [], [], []
    for _ in range(requests):
        item = ids[int(rng.integers(n))]
        t0 = time.perf_counter()
        m.similar_items(item, 10)
        whole.append(time.perf_counter() - t0)
        stages = m.similar_stages(item, 10)
        t0 = time.perf_counter()
        stage = next(stages)
        before = time.perf_counter() - t0
        t0 = time.perf_counter()
        stage()
        scan.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            next(stages)
        except StopIteration:
            pass
        on_loop.append(before + time.perf_counter() - t0)
    return {name: 1000 * float(np.median(xs)) for name, xs in (("whole", whole), ("scan", scan), ("loop", on_loop))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200000,1000000")
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"$ {shlex.join(['benchmarks/similar_items.py', *sys.argv[1:]])}")
    rows = [(int(n), measure(int(n), args.requests)) for n in args.sizes.split(",")]
    print(f"{'items':>10} | {'whole call, ms':>14} | {'scan stage (thread), ms':>23} | {'on the event loop, ms':>21}")
    for n, r in rows:
        print(f"{n:>10,} | {r['whole']:>14.1f} | {r['scan']:>23.1f} | {r['loop']:>21.1f}")
    for n, r in rows:
        print(f"SIMILAR items={n} whole_ms={r['whole']:.1f} scan_stage_ms={r['scan']:.1f} on_loop_ms={r['loop']:.1f}")


if __name__ == "__main__":
    main()
