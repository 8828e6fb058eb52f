"""Scale: the default learner and item-kNN on synthetic worlds from 1,682 to 1,000,000 items, one process each.

Usage: python benchmarks/scale.py [--sizes 1682,10000,100000,1000000] [--users 1000000] [--items N --users M]
                                  [--learners streamrec,item-knn] [--events 5120] [--seconds 45] [--max-rss-gb 10]

Each (size, learner) runs in its own subprocess, so its peak RSS is its own: a seeded world
(``connectors.synthetic``: category vocabularies, Zipf popularity, users with a few tastes and pre-filled
histories, 95% of the items there at the start and the rest arriving over 100,000 events), the learner built as
the worker builds it (``stream.worker.build_learner``, early phase off: steady-state steps) with the initial
catalog, then test-then-learn micro-batches of ``batch_max`` (256) events as ``streamrec evaluate`` runs them:
recommend the batch (top-10, each user's items excluded), then learn it. Items arriving meanwhile are added
between batches, untimed. Timed: ``recommend_many`` + ``learn_many`` only, after ``--warmup`` batches (or
``--warmup-seconds``, whichever ends first; the first batch is always untimed), until
``--events`` events or ``--seconds`` seconds of learner time, whichever comes first; then one checkpoint
(``stream.checkpoint.CheckpointStore``, as the worker writes it: config + arrays). Peak RSS is the process's peak
up to there (setup, timed batches, checkpoint); the exact comparison after it makes (256, items) score arrays no
worker makes, and the note gives the peak with it. Up to 1,682 items the real frozen encoder (MiniLM)
embeds the item texts; above, a stub (``SyntheticWorld.embeddings``, bag of seeded word vectors, 384 wide like
MiniLM) does, so only the learner is timed and setting up a million items takes seconds, not hours. A size whose
process passes ``--max-rss-gb`` or ``--timeout-s``, or fails, prints its row with the reason.

After the table, one line per size for scripts (the default learner; item-kNN's lines end in learner=item-knn):
``SCALE items=N users=M events_per_s=E ratio_to_small=R peak_rss_mb=P recall_at_10=Q checkpoint_s=C``. ratio_to_small
is events/s over the 1,682-item world's in the same run (``--items N`` also runs that world for it; with
``--no-reference`` it is n/a). After the timed batches, ``--recall-batches`` more (untimed, still learned from)
measure two-stage retrieval against scoring the whole catalog with the same model: recall_at_10 is the share of
the model's exact top 10 (by its scores, before fusion and cold places) that the retriever's candidates hold
(``AdapterRecommender.retrieval_recall``); the table adds how much of each exact list
(``AdapterRecommender.recommend_exact``: fusion and cold places over the whole catalog) the sent list holds, and
HR@10 (the next item in the list) of both on those batches, with the events only one of the two hit. It is ``n/a``
where the learner scored the whole catalog anyway (item-kNN, and the default learner up to
``retrieval.exact_max_items``, 20,000 items).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

SMALL = 1682
DEFAULT_SIZES = "1682,10000,100000,1000000"
STUB_DIM = 384
CHUNK = 65_536  # items added per call, as the items agent adds encoder batches (the first fixes the text basis)


# -- one size, in its own process -------------------------------------------------------------------------------
def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(name: str, world: Any, seed: int) -> tuple[Any, int, str]:
    """The learner with the initial catalog: (learner, items added, how the items were embedded)."""
    from learners.baselines import BASELINES
    from stream.settings import load_settings
    from stream.worker import build_encoder, build_learner

    n0 = world.initial_items
    if name == "item-knn":
        m = BASELINES["item-knn"](seed=seed)
        m.add_items(world.items(0, n0, text=False))
        return m, n0, "ids only"
    s = load_settings()
    s = s.model_copy(update={"seed": seed, "training": dataclasses.replace(s.training, early_events=0)})
    if world.config.items <= SMALL:
        m = build_learner(s, build_encoder(s))
        m.add_items(world.items(0, n0))
        return m, n0, "MiniLM"
    m = build_learner(s, None)
    for start in range(0, n0, CHUNK):
        stop = min(n0, start + CHUNK)
        m.add_item_embeddings([world.item_id(i) for i in range(start, stop)], world.embeddings(start, stop, STUB_DIM))
    return m, n0, f"stub {STUB_DIM}-d"


def add_arrivals(m: Any, world: Any, have: int, want: int, name: str) -> int:
    if want <= have:
        return have
    if name == "item-knn":
        m.add_items(world.items(have, want, text=False))
    elif world.config.items <= SMALL:
        m.add_items(world.items(have, want))
    else:
        m.add_item_embeddings([world.item_id(i) for i in range(have, want)], world.embeddings(have, want, STUB_DIM))
    return want


def stream_batches(m: Any, world: Any, have: int, name: str, batch: int, seq_len: int,
                   seen_max: int) -> Iterator[tuple[list[Any], list[Any], list[tuple[str, ...]], int]]:
    """The world's micro-batches as the learner meets them: items arriving meanwhile are added to ``m`` first
    (untimed), users get their pre-filled histories when first seen; yields (queries, interactions, histories,
    items added so far)."""
    from learners.types import Interaction, Query

    hist: dict[int, list[int]] = {}
    for start, users, items in world.batches(batch):
        have = add_arrivals(m, world, have, world.arrived(start + batch), name)
        fresh = [u for u in dict.fromkeys(users.tolist()) if u not in hist]
        if fresh:
            h, lengths = world.prefilled(np.array(fresh))
            for u, row, n in zip(fresh, h.tolist(), lengths.tolist(), strict=True):
                hist[u] = row[len(row) - n:]
        queries, xs, hs = [], [], []
        for u, i in zip(users.tolist(), items.tolist(), strict=True):
            mine = hist[u]
            h_ids = tuple(f"item{j}" for j in mine[-seq_len:])
            queries.append(Query(f"user{u}", h_ids, frozenset(f"item{j}" for j in mine[-seen_max:])))
            xs.append(Interaction(f"user{u}", f"item{i}"))
            hs.append(h_ids)
            mine.append(i)
        yield queries, xs, hs, have


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    from connectors.synthetic import SyntheticWorld, WorldConfig
    from stream.checkpoint import CheckpointStore
    from stream.heap import keep_freed_tensor_memory
    from stream.settings import load_settings

    s = load_settings()
    if s.torch_threads:  # as the worker and streamrec evaluate do
        import torch

        torch.set_num_threads(s.torch_threads)
    import stream.worker  # noqa: F401 - the libraries the learner needs, loaded before the baseline RSS

    def save_checkpoint(m: Any) -> tuple[float, float]:
        """One checkpoint as the worker writes it: (seconds, MB)."""
        with tempfile.TemporaryDirectory(prefix="scale-ckpt-") as tmp:
            t0 = time.perf_counter()
            path = CheckpointStore(Path(tmp), keep=1).save(m, version=m.model_version)
            return time.perf_counter() - t0, path.stat().st_size / 1e6

    keep_freed_tensor_memory()
    t_setup = time.perf_counter()
    world = SyntheticWorld(WorldConfig(items=args.items, users=args.users, seed=args.seed))
    base_rss = rss_mb()  # the interpreter, torch and friends, and the world
    m, have, embedded = build(args.learner, world, args.seed)
    setup_s = time.perf_counter() - t_setup
    setup_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # building the learner's catalog
    batch, seq_len, seen_max = s.batch_max, s.seq_len, s.seen_max
    users_seen: set[str] = set()
    rec_s: list[float] = []
    learn_s: list[float] = []
    timed_events = 0
    measuring = 0  # batches left to compare with exact scoring, after the timed ones
    recall: list[float] = []  # per batch: retrieval recall@10 (candidates vs the model's exact top 10)
    overlap: list[float] = []  # per event: sent list vs the exact path's list (fusion and cold places included)
    hr_two_stage: list[bool] = []
    hr_exact: list[bool] = []
    ckpt: tuple[float, float] | None = None
    serving_peak = 0.0
    t_warm = time.perf_counter()
    catalog = have
    for n_batch, (queries, xs, hs, added) in enumerate(stream_batches(m, world, have, args.learner, batch, seq_len,
                                                               seen_max)):
        catalog = added
        users_seen.update(q.user_id for q in queries)
        t0 = time.perf_counter()
        sent = m.recommend_many(queries, 10)
        t1 = time.perf_counter()
        exact = m.recommend_exact(queries, 10) if measuring else []  # the same model, before it learns the batch
        if measuring:
            recall.append(m.retrieval_recall(queries, 10))
        m.learn_many(xs, hs)
        t2 = time.perf_counter()
        warm = n_batch == 0 or (n_batch < args.warmup and time.perf_counter() - t_warm < args.warmup_seconds)
        if not warm and not measuring:
            rec_s.append(t1 - t0)
            learn_s.append(t2 - t1)
            timed_events += len(xs)
        if measuring:
            for got, want, x in zip(sent, exact, xs, strict=True):
                got_ids, want_ids = {i for i, _ in got}, {i for i, _ in want}
                overlap.append(len(got_ids & want_ids) / max(len(want_ids), 1))
                hr_two_stage.append(x.item_id in got_ids)
                hr_exact.append(x.item_id in want_ids)
            measuring -= 1
            if not measuring:
                break
        elif timed_events >= args.events or sum(rec_s) + sum(learn_s) >= args.seconds:
            ckpt = save_checkpoint(m)  # before the exact comparison, whose (256, items) score arrays a worker never makes
            serving_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            two_stage = getattr(m, "_large", lambda: False)()
            measuring = args.recall_batches if two_stage else 0
            if not measuring:
                break
            getattr(m, "wait_for_index", lambda: None)()
    if ckpt is None:  # the world ran out of events first
        ckpt = save_checkpoint(m)
        serving_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    learner_s = sum(rec_s) + sum(learn_s)
    checkpoint_s, checkpoint_mb = ckpt
    return {
        "items": args.items, "users": args.users, "learner": args.learner, "embedded": embedded,
        "catalog": catalog, "events": timed_events, "batches": len(rec_s), "events_per_s": timed_events / learner_s,
        "rec_p50_ms": float(np.percentile(rec_s, 50)) * 1e3, "rec_p99_ms": float(np.percentile(rec_s, 99)) * 1e3,
        "learn_p50_ms": float(np.percentile(learn_s, 50)) * 1e3, "setup_s": setup_s,
        "base_rss_mb": base_rss, "peak_rss_mb": serving_peak,
        "setup_peak_mb": setup_peak, "peak_rss_exact_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "checkpoint_s": checkpoint_s, "checkpoint_mb": checkpoint_mb, "users_seen": len(users_seen),
        **({"recall_at_10": float(np.mean(recall)), "overlap_at_10": float(np.mean(overlap)),
            "hr10": float(np.mean(hr_two_stage)), "hr10_exact": float(np.mean(hr_exact)),
            "hits_sent_only": int(np.sum(np.array(hr_two_stage) & ~np.array(hr_exact))),
            "hits_exact_only": int(np.sum(np.array(hr_exact) & ~np.array(hr_two_stage))),
            "recall_events": len(overlap)} if recall else {}),
    }


# -- the table, one subprocess per row ----------------------------------------------------------------------------
def proc_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def available_gb() -> float:
    """MemAvailable of /proc/meminfo, in GB (inf where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("inf")


def measure(items: int, users: int, learner: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one row in a subprocess, watched: killed past --max-rss-gb or --timeout-s (the row says why)."""
    with tempfile.NamedTemporaryFile(prefix="scale-", suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = [sys.executable, __file__, "--child", "--items", str(items), "--users", str(users), "--learner", learner,
           "--events", str(args.events), "--seconds", str(args.seconds), "--warmup", str(args.warmup),
           "--warmup-seconds", str(args.warmup_seconds), "--recall-batches", str(args.recall_batches),
           "--seed", str(args.seed), "--out", str(out)]
    limit_mb, t0, peak, reason = args.max_rss_gb * 1024, time.monotonic(), 0.0, ""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    while proc.poll() is None:
        peak = max(peak, proc_rss_mb(proc.pid))
        if peak > limit_mb:
            reason = f"stopped at {peak / 1024:.1f} GB RSS (--max-rss-gb {args.max_rss_gb:g})"
        elif time.monotonic() - t0 > args.timeout_s:
            reason = f"stopped after {args.timeout_s:g} s (--timeout-s)"
        if reason:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.25)
    err = proc.stderr.read() if proc.stderr else ""
    try:
        row: dict[str, Any] = json.loads(out.read_text()) if not reason and proc.returncode == 0 else {}
    except (OSError, ValueError):
        row = {}
    out.unlink(missing_ok=True)
    if not row:
        last = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or [f"exit status {proc.returncode}"]
        row = {"items": items, "users": users, "learner": learner, "failed": reason or last[0][:160],
               "peak_rss_mb": peak}
    row["wall_s"] = time.monotonic() - t0
    return row


def fmt(row: dict[str, Any], key: str, spec: str, unit: str = "") -> str:
    return format(row[key], spec) + unit if key in row and not row.get("failed") else "-"


def hr_cell(r: dict[str, Any]) -> str:
    """HR@10 of the sent lists and of the exact path's on the same events, and the events only one of them hit (the
    difference is all in those: with a few hundred hits a few events decide it).

    >>> hr_cell({"hr10": 0.05, "hr10_exact": 0.06, "hits_sent_only": 3, "hits_exact_only": 8, "recall_events": 1024})
    '0.0500 / 0.0600; hit by one only: 3 / 8 of 1,024'
    >>> hr_cell({})
    '-'
    """
    if "hr10" not in r:
        return "-"
    only = (f"; hit by one only: {r['hits_sent_only']} / {r['hits_exact_only']} of {r['recall_events']:,}"
            if "hits_sent_only" in r else "")
    return f"{r['hr10']:.4f} / {r['hr10_exact']:.4f}{only}"


def print_table(rows: list[dict[str, Any]], command: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"streamrec scale — $ {command}")
    for col in ("items", "users", "learner", "events/s", "x of 1,682", "recommend 256 p50", "p99", "learn 256 p50",
                "peak RSS", "of it before the learner", "checkpoint", "recall@10", "lists overlap",
                "HR@10 sent / exact", "embedded",
                "note"):
        t.add_column(col, justify="left" if col in ("learner", "embedded", "note") else "right")
    small = {r["learner"]: r for r in rows if r["items"] == SMALL and not r.get("failed")}
    for r in rows:
        ref = small.get(r["learner"])
        ratio = f"{r['events_per_s'] / ref['events_per_s']:.2f}" if ref and not r.get("failed") else "-"
        note = r.get("failed") or (f"{r['events']:,} events in {r['batches']} batches; setup {r['setup_s']:.0f} s; "
                                   f"{r['users_seen']:,} users acted" + (
                                       f"; peak {r['peak_rss_exact_mb']:,.0f} MB with the exact comparison, "
                                       f"{r['setup_peak_mb']:,.0f} MB by the end of setup"
                                       if r.get("recall_at_10") is not None else ""))
        t.add_row(f"{r['items']:,}", f"{r['users']:,}", r["learner"], fmt(r, "events_per_s", ",.0f"), ratio,
                  fmt(r, "rec_p50_ms", ",.0f", " ms"), fmt(r, "rec_p99_ms", ",.0f", " ms"),
                  fmt(r, "learn_p50_ms", ",.0f", " ms"), f"{r['peak_rss_mb']:,.0f} MB",
                  fmt(r, "base_rss_mb", ",.0f", " MB"),
                  (f"{r['checkpoint_s']:.1f} s, {r['checkpoint_mb']:,.0f} MB" if not r.get("failed") else "-"),
                  fmt(r, "recall_at_10", ".3f"), fmt(r, "overlap_at_10", ".3f"),
                  hr_cell(r),
                  r.get("embedded", "-"), note)
    Console(width=220).print(t)


def scale_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One SCALE line per row: the default learner's in the issue's form, item-kNN's with learner= at the end.

    >>> ok = {"users": 5, "learner": "streamrec", "events_per_s": 100.0, "peak_rss_mb": 900.0, "checkpoint_s": 0.5}
    >>> scale_lines([{**ok, "items": 10**6}])[0].split()[4]  # no 1,682-item row to compare with
    'ratio_to_small=n/a'

    >>> scale_lines([{**ok, "items": 1682}, {**ok, "items": 10**5, "events_per_s": 50.0},
    ...              {"items": 9, "users": 5, "learner": "item-knn", "failed": "x", "peak_rss_mb": 1.0}])[1:]
    ['SCALE items=100000 users=5 events_per_s=50 ratio_to_small=0.50 peak_rss_mb=900 recall_at_10=n/a checkpoint_s=0.5', \
'SCALE items=9 users=5 events_per_s=n/a ratio_to_small=n/a peak_rss_mb=1 recall_at_10=n/a checkpoint_s=n/a learner=item-knn']
    """
    out = []
    for learner in ("streamrec", "item-knn"):
        mine = [r for r in rows if r["learner"] == learner]
        ref = next((r for r in mine if r["items"] == SMALL and not r.get("failed")), None)
        for r in mine:
            good = not r.get("failed")
            eps = f"{r['events_per_s']:.0f}" if good else "n/a"
            ratio = f"{r['events_per_s'] / ref['events_per_s']:.2f}" if good and ref else "n/a"
            ck = f"{r['checkpoint_s']:.1f}" if good else "n/a"
            tail = "" if learner == "streamrec" else f" learner={learner}"
            rc = f"{r['recall_at_10']:.3f}" if good and "recall_at_10" in r else "n/a"
            out.append(f"SCALE items={r['items']} users={r['users']} events_per_s={eps} ratio_to_small={ratio} "
                       f"peak_rss_mb={r['peak_rss_mb']:.0f} recall_at_10={rc} checkpoint_s={ck}{tail}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated catalog sizes (items)")
    ap.add_argument("--items", type=int, default=None, help="one size (plus the 1,682-item reference row)")
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--learners", default="streamrec,item-knn")
    ap.add_argument("--events", type=int, default=5120, help="timed events per row at most")
    ap.add_argument("--seconds", type=float, default=45.0, help="timed learner seconds per row at most")
    ap.add_argument("--warmup", type=int, default=2, help="untimed micro-batches first (at most)")
    ap.add_argument("--warmup-seconds", type=float, default=20.0, help="untimed warm-up ends after this long")
    ap.add_argument("--max-rss-gb", type=float, default=None,
                    help="a row's process is stopped past this RSS (default: 10, or 70%% of the memory available now)")
    ap.add_argument("--timeout-s", type=float, default=600.0, help="a row's process is stopped after this long")
    ap.add_argument("--no-reference", action="store_true", help="with --items: skip the 1,682-item row")
    ap.add_argument("--recall-batches", type=int, default=4,
                    help="untimed batches after the timed ones compared with exact scoring (two-stage rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--learner", default="streamrec", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.child:
        Path(args.out).write_text(json.dumps(run_one(args)))
        return
    if args.max_rss_gb is None:
        args.max_rss_gb = min(10.0, round(0.7 * available_gb(), 1))
    if args.items is not None:
        sizes = [args.items] if args.no_reference or args.items == SMALL else [SMALL, args.items]
    else:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    learners = [x.strip() for x in args.learners.split(",") if x.strip()]
    command = " ".join(shlex.quote(a) for a in ["benchmarks/scale.py", *sys.argv[1:]])
    rows = []
    for n in sizes:
        for name in learners:
            row = measure(n, args.users, name, args)
            rows.append(row)
            state = row.get("failed") or f"{row['events_per_s']:,.0f} events/s"
            print(f"  {n:,} items, {name}: {state} ({row['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    print_table(rows, command)
    for line in scale_lines(rows):
        print(line)


if __name__ == "__main__":
    main()
