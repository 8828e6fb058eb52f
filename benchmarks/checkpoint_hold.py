"""How long a checkpoint holds the model: written in-process (the learning thread, the model held throughout)
against written by a forked child (``CheckpointStore.write_forked``: the model held for the fork only), on the
synthetic worlds of ``benchmarks/scale.py``.

Usage: python benchmarks/checkpoint_hold.py [--sizes 1682,200000,1000000] [--repeats 3] [--batches 30]

Per size, in one process: the learner built as ``benchmarks/scale.py`` builds it, ``--batches`` micro-batches of
256 events recommended and learned, then ``--repeats`` checkpoints each way. In-process: ``CheckpointStore.write``
(held) then ``Written.commit`` (sync). Forked: the fork (held), then the parent goes on recommending and learning
batches until the child has written the file (child), then the sync; the table gives the batches' median time
before and during the child's write (the child shares the two cores, and the pages the parent writes are copied
on first touch). Then one line per size: ``CHECKPOINT_HOLD items=N in_process_held_s=A fork_held_s=B child_s=C
batch_ms_before=D batch_ms_during=E``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scale  # noqa: E402 - the world and the learner as scale.py builds them


def measure(items: int, repeats: int, batches: int) -> dict[str, float]:
    import torch

    from connectors.synthetic import SyntheticWorld, WorldConfig
    from stream.checkpoint import CheckpointStore
    from stream.heap import keep_freed_tensor_memory
    from stream.settings import load_settings

    s = load_settings()
    if s.torch_threads:
        torch.set_num_threads(s.torch_threads)
    keep_freed_tensor_memory()
    world = SyntheticWorld(WorldConfig(items=items, users=100_000, seed=0))
    m, have, _ = scale.build("streamrec", world, 0)
    stream = scale.stream_batches(m, world, have, "streamrec", s.batch_max, s.seq_len, s.seen_max)

    def step() -> float:
        queries, xs, hs, _ = next(stream)
        t0 = time.perf_counter()
        m.recommend_many(queries, 10)
        m.learn_many(xs, hs)
        return time.perf_counter() - t0

    before = [step() for _ in range(batches)][batches // 3:]
    held, sync, f_held, child, during = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="ckpt-hold-") as tmp:
        store = CheckpointStore(Path(tmp), keep=1)
        for _ in range(repeats):
            t0 = time.perf_counter()
            written = store.write(m, m.model_version)
            t1 = time.perf_counter()
            written.commit()
            held.append(t1 - t0)
            sync.append(time.perf_counter() - t1)
            step()
        for _ in range(repeats):
            t0 = time.perf_counter()
            forked = store.write_forked(m, m.model_version)
            t1 = time.perf_counter()
            while os.waitpid(forked.pid, os.WNOHANG) == (0, 0):
                during.append(step())
            t2 = time.perf_counter()
            Path(forked.tmp).replace(forked.path)  # the child has exited: its file is complete
            f_held.append(t1 - t0)
            child.append(t2 - t1)
    return {"items": items, "held": float(np.median(held)), "sync": float(np.median(sync)),
            "f_held": float(np.median(f_held)), "child": float(np.median(child)),
            "before_ms": float(np.median(before)) * 1e3,
            "during_ms": float(np.median(during)) * 1e3 if during else float("nan"), "during_n": len(during)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1682,200000,1000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    rows = [measure(int(n), args.repeats, args.batches) for n in args.sizes.split(",")]
    table = Table(title="checkpoint: how long the model is held — $ " + " ".join(["benchmarks/checkpoint_hold.py",
                                                                                 *sys.argv[1:]]))
    for col in ("items", "in-process: held", "sync", "forked: held", "child writing", "batch before",
                "batch while the child writes (n)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['items']:,}", f"{r['held']:.2f} s", f"{r['sync']:.2f} s", f"{r['f_held'] * 1e3:.0f} ms",
                      f"{r['child']:.2f} s", f"{r['before_ms']:.0f} ms", f"{r['during_ms']:.0f} ms ({r['during_n']})")
    Console(width=160).print(table)
    print(f"# medians of {args.repeats} checkpoints each way; batches of 256 events, recommended and learned")
    for r in rows:
        print(f"CHECKPOINT_HOLD items={r['items']} in_process_held_s={r['held']:.3f} fork_held_s={r['f_held']:.3f} "
              f"child_s={r['child']:.2f} batch_ms_before={r['before_ms']:.0f} batch_ms_during={r['during_ms']:.0f}")


if __name__ == "__main__":
    main()
