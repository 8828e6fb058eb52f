"""Exploration in a closed loop: simulated users click (or not) on the engine's lists, and their clicks come back.

Usage: python benchmarks/exploration.py [--policies none,epsilon,ucb,thompson] [--batches 60] [--seeds 0,1,2]
                                        [--exploration '{"epsilon": 0.1}'] [--organic]

The world (fixed, seeded): the users' true tastes are a rank-``--rank`` factorisation of who rated what in all
of MovieLens-100K (a truncated SVD of the 943 x 1,682 binary matrix); a user's true appeal of an item is that
score standardised over the catalog for the user. A list is clicked in cascade: place p is looked at with
probability ``1 / log2(p + 2)`` (position bias) and, when looked at, clicked with probability
``sigmoid(SLOPE * (appeal - CUT))``; the first click ends the list. By default the engine learns from the clicks
on its own lists alone, the feedback loop exploration is for; with ``--organic`` a list without a click is
followed by the user's own pick among items not shown (drawn by true appeal), which the engine learns too.

The engine (the default learner, built as the worker builds it, with the policy under test) first learns the
first 20% of the ML-100K log, minus the ``--new-share`` of items held back, serving a list for each of those
events meanwhile (its exposures; those events are not clicks on them); it then serves ``--batches``
micro-batches of 256 users drawn by their activity: recommend (test), the users act, the engine learns every
event (clicks name their list as the worker attributes them) and takes in what it showed
(``observe_feedback``). The held-back items arrive evenly over the first half of the run, with text only.
"High-appeal" new items are the held-back quarter with the highest mean click chance over users.

Every policy meets the same users in the same order, and the same uniform draws decide whether each (list, place)
is looked at and clicked (common random numbers), so two policies differ only where their lists do. The loop is
still chaotic: one different click changes what the engine learns and every list after it. Exploring 0.2% of the
lists (``--policies none,epsilon --exploration '{"epsilon": 0.002, "bonus": 0.0}'``) measures that floor.

It prints, per policy: CTR (lists clicked / lists sent) in each 10% of the run, CTR over the second half, the
share of the catalog ever shown, and the median number of lists from a high-appeal item's arrival to its first
click (the run's length when never). Then one line per policy for scripts:
``EXPLORATION policy=P default=yes|no second_half_ctr_gain=G worst_window_change=W discovery_speedup=S``
(relative to no exploration in the same world, 0.05 = +5%; the mean over seeds, the worst window over all).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from connectors.datasets import load_dataset
from learners.encoder import CachingEncoder
from learners.exploration import ExplorationConfig
from learners.types import Interaction, Item, Query
from stream.heap import keep_freed_tensor_memory
from stream.settings import load_settings
from stream.worker import build_encoder, build_learner

SLOPE, CUT = 1.5, 4.0  # click chance sigmoid(SLOPE * (appeal - CUT)) once a place is looked at
BATCH = 256
WARM_SHARE = 0.2


@dataclasses.dataclass
class World:
    items: list[Item]
    users: list[str]
    appeal: np.ndarray  # (users, items) standardised per user
    activity: np.ndarray  # (users,) probability a step's user is this one
    held: np.ndarray  # item indices held back, in arrival order
    high: set[int]  # held-back items of high appeal
    warm: list[tuple[int, int]]  # (user, item) of the warm-up log, in order


def make_world(rank: int, new_share: float, seed: int) -> World:
    ds = load_dataset("ml-100k", Path("data"))
    items = list(ds.items)
    index = {it.item_id: j for j, it in enumerate(items)}
    users = sorted({e["user_id"] for e in ds.events})
    uindex = {u: j for j, u in enumerate(users)}
    pairs = [(uindex[e["user_id"]], index[e["item_id"]]) for e in ds.events if e["item_id"] in index]
    r = np.zeros((len(users), len(items)), dtype=np.float64)
    for u, i in pairs:
        r[u, i] = 1.0
    uu, ss, vt = np.linalg.svd(r, full_matrices=False)
    a = (uu[:, :rank] * ss[:rank]) @ vt[:rank]
    appeal = (a - a.mean(axis=1, keepdims=True)) / (a.std(axis=1, keepdims=True) + 1e-9)
    rng = np.random.default_rng(seed)
    held = rng.permutation(len(items))[: int(new_share * len(items))]
    chance = 1.0 / (1.0 + np.exp(-SLOPE * (appeal[:, held] - CUT)))
    high = set(held[np.argsort(-chance.mean(axis=0))[: max(1, len(held) // 4)]].tolist())
    activity = r.sum(axis=1) / r.sum()
    held_set = set(held.tolist())
    warm = [(u, i) for u, i in pairs[: int(WARM_SHARE * len(pairs))] if i not in held_set]
    return World(items, users, appeal, activity, held, high, warm)


def run(world: World, cfg: ExplorationConfig, batches: int, seed: int, encoder: Any,
        organic: bool = False) -> dict[str, Any]:
    s = load_settings(seed=seed)
    m = build_learner(s, encoder)
    m.exploration = cfg
    held_set = set(world.held.tolist())
    m.add_items([it for j, it in enumerate(world.items) if j not in held_set])
    ids = [it.item_id for it in world.items]
    index = {x: j for j, x in enumerate(ids)}
    hist: dict[int, list[int]] = {}
    for k in range(0, len(world.warm), BATCH):  # the engine's past: the first part of the real log
        chunk = world.warm[k : k + BATCH]
        xs, hs = [], []
        for u, i in chunk:
            mine = hist.setdefault(u, [])
            hs.append(tuple(ids[j] for j in mine[-s.seq_len:]))
            xs.append(Interaction(world.users[u], ids[i]))
            mine.append(i)
        # the engine was serving then too: its lists count as exposures (the log's events are not clicks on them)
        qs = [Query(x.user_id, h, frozenset(h)) for x, h in zip(xs, hs, strict=True)]
        m.observe_feedback([[i for i, _ in r] for r in m.recommend_many(qs, s.top_k)], [])
        m.learn_many(xs, hs)
    # common random numbers: every policy meets the same users in the same order, and the same uniform draws decide
    # whether each (list, place) is looked at and clicked, so two policies differ only where their lists do
    users_rng, clicks_rng, organic_rng = (np.random.default_rng([seed, stream]) for stream in (1, 2, 3))
    known = np.ones(len(ids), dtype=bool)
    known[world.held] = False
    arrived: dict[int, int] = {}  # held item -> lists sent before it arrived
    first_click: dict[int, int] = {}
    shown_ever: set[int] = set()
    clicked_lists: list[int] = []
    look = 1.0 / np.log2(np.arange(s.top_k) + 2.0)
    lists_sent = 0
    half = max(1, batches // 2)
    for b in range(batches):
        want = min(len(world.held), -(-len(world.held) * (b + 1) // half))  # evenly over the first half
        new = world.held[len(arrived):want]
        if len(new):
            m.add_items([world.items[j] for j in new.tolist()])
            known[new] = True
            for j in new.tolist():
                arrived[j] = lists_sent
        users = users_rng.choice(len(world.users), size=BATCH, p=world.activity)
        looked_at, clicked_if_looked = clicks_rng.random((2, BATCH, s.top_k))
        qs = []
        for u in users.tolist():
            mine = hist.setdefault(u, [])
            h = tuple(ids[j] for j in mine[-s.seq_len:])
            qs.append(Query(world.users[u], h, frozenset(ids[j] for j in mine)))
        recs = m.recommend_many(qs, s.top_k)
        xs, hs, shown, clicks, click_histories = [], [], [], [], []
        for row, (u, q, rec) in enumerate(zip(users.tolist(), qs, recs, strict=True)):
            lst = [index[i] for i, _ in rec]
            shown.append([ids[j] for j in lst])
            shown_ever.update(lst)
            pick = -1
            for p, j in enumerate(lst):
                chance = 1.0 / (1.0 + np.exp(-SLOPE * (world.appeal[u, j] - CUT)))
                if looked_at[row, p] < look[p] and clicked_if_looked[row, p] < chance:
                    pick = j
                    clicks.append((ids[j], p))
                    click_histories.append(q.history)
                    if j in arrived and j not in first_click:
                        first_click[j] = lists_sent
                    break
            clicked_lists.append(int(pick >= 0))
            lists_sent += 1
            if pick < 0 and not organic:
                continue
            if pick < 0:  # --organic: the user's own pick among what was not shown, by true appeal
                ok = known.copy()
                ok[lst] = False
                ok[hist[u]] = False
                avail = np.flatnonzero(ok)
                w = np.exp(world.appeal[u, avail])
                pick = int(organic_rng.choice(avail, p=w / w.sum()))
            xs.append(Interaction(world.users[u], ids[pick]))
            hs.append(q.history)
            hist[u].append(pick)
        m.observe_feedback(shown, clicks, [q.history for q in qs], click_histories)
        m.learn_many(xs, hs)
    ctr = np.asarray(clicked_lists, dtype=np.float64)
    windows = [float(w.mean()) for w in np.array_split(ctr, 10)]
    high_waits = [first_click.get(j, lists_sent) - arrived[j] for j in world.high if j in arrived]
    return {"policy": cfg.policy, "windows": windows, "second_half": float(ctr[len(ctr) // 2:].mean()),
            "whole": float(ctr.mean()), "coverage": len(shown_ever) / len(ids),
            "discovery": float(np.median(high_waits)) if high_waits else float("nan"),
            "found": sum(1 for j in world.high if j in first_click), "high": len(world.high)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="none,epsilon,ucb,thompson")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--new-share", type=float, default=0.1)
    ap.add_argument("--exploration", default="{}", help="JSON fields for every policy (epsilon, places, pool, bonus)")
    ap.add_argument("--default", default=load_settings().exploration.policy,
                    help="the policy the worker's default setting names")
    ap.add_argument("--organic", action="store_true",
                    help="a list without a click is followed by the user's own pick among items not shown")
    ap.add_argument("--seeds", default="0,1,2", help="worlds (held-back items, users' draws, model init)")
    args = ap.parse_args()
    keep_freed_tensor_memory()
    extra = json.loads(args.exploration)
    encoder = CachingEncoder(build_encoder(load_settings()))
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        world = make_world(args.rank, args.new_share, seed)
        for p in policies:
            rows.append({**run(world, ExplorationConfig(policy=p, **extra), args.batches, seed, encoder, args.organic),
                         "seed": seed})
    command = " ".join(shlex.quote(a) for a in ["benchmarks/exploration.py", *sys.argv[1:]])
    table = Table(title=f"exploration, closed loop on ML-100K tastes — $ {command}")
    table.add_column("policy (seed)")
    for k in range(10):
        table.add_column(f"CTR {10 * k}-{10 * k + 10}%", justify="right")
    for col in ("CTR 2nd half", "catalog shown", "high-appeal new: median lists to 1st click (found)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['policy']} ({r['seed']})", *[f"{w:.3f}" for w in r["windows"]], f"{r['second_half']:.4f}",
                      f"{r['coverage']:.3f}", f"{r['discovery']:.0f} ({r['found']}/{r['high']})")
    Console(width=250).print(table)
    print(f"# per seed {int(args.new_share * 1682)} items held back and arriving, a quarter of them of high appeal; "
          f"{args.batches} x {BATCH} lists per policy; exploration fields {extra or 'defaults'}; gains below are "
          f"means over seeds {seeds} of each seed's gain against none")
    if "none" not in policies:
        return
    for p in policies:
        gains, worsts, speeds = [], [], []
        for seed in seeds:
            r = next(x for x in rows if x["policy"] == p and x["seed"] == seed)
            b = next(x for x in rows if x["policy"] == "none" and x["seed"] == seed)
            gains.append(r["second_half"] / b["second_half"] - 1)
            worsts.append(min(w / bw - 1 for w, bw in zip(r["windows"], b["windows"], strict=True)))
            speeds.append(b["discovery"] / r["discovery"] if r["discovery"] > 0 else float("inf"))
        print(f"EXPLORATION policy={p} default={'yes' if p == args.default else 'no'} "
              f"second_half_ctr_gain={np.mean(gains):.3f} worst_window_change={min(worsts):.3f} "
              f"discovery_speedup={np.mean(speeds):.2f}")


if __name__ == "__main__":
    main()
