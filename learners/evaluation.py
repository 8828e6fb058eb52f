"""Prequential (test-then-learn) evaluation of any learner, exactly as the worker runs it.

Events are taken in order in micro-batches. For each batch: every event's query is built from the user's
history *including earlier events of the same batch* (per-event prefixes) and excluding everything the user
already has; the learner recommends for the whole batch with the model as it was before the batch; HR@k and
NDCG@k are recorded against each event's item; then the learner learns from the batch.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from learners.history import InMemoryHistory
from learners.types import Interaction, Learner, Query


@dataclass
class PrequentialResult:
    """Accuracy of one learner on one stream."""

    name: str = ""
    n: int = 0
    hits: int = 0
    ndcg_sum: float = 0.0
    n_cold: int = 0
    hits_cold: int = 0
    ndcg_cold_sum: float = 0.0
    repeats: int = 0
    seconds: float = 0.0
    curve: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def hr(self) -> float:
        return self.hits / self.n if self.n else math.nan

    @property
    def ndcg(self) -> float:
        return self.ndcg_sum / self.n if self.n else math.nan

    @property
    def hr_cold(self) -> float:
        return self.hits_cold / self.n_cold if self.n_cold else math.nan

    @property
    def ndcg_cold(self) -> float:
        return self.ndcg_cold_sum / self.n_cold if self.n_cold else math.nan

    @property
    def events_per_s(self) -> float:
        return self.n / self.seconds if self.seconds else math.nan


def prequential(
    learner: Learner,
    events: Iterable[Interaction],
    *,
    k: int = 10,
    batch_size: int = 256,
    seq_len: int = 50,
    seen_max: int = 2000,
    cold_threshold: int = 5,
    window: int = 5000,
    limit: int | None = None,
    learn: bool | Callable[[int], bool] = True,
    progress: Callable[[int], None] | None = None,
    name: str = "",
) -> PrequentialResult:
    """Run the protocol (module doc). ``learn`` may be a function of the event index (e.g. a warm-up cut-off).

    >>> from learners.types import BaseLearner, Item
    >>> import numpy as np
    >>> class Fixed(BaseLearner):
    ...     def learn_one(self, x, history=()): pass
    ...     def _score_all(self, q): return np.array([3, 2, 1], dtype=np.float32)
    >>> m = Fixed(); m.add_items([Item("a", ""), Item("b", ""), Item("c", "")])
    >>> evs = [Interaction("u", "a"), Interaction("u", "b"), Interaction("u", "a")]
    >>> r = prequential(m, evs, k=1, batch_size=2)
    >>> r.hits, r.n, r.repeats
    (2, 3, 1)
    """
    res = PrequentialResult(name=name)
    history = InMemoryHistory(seq_len, seen_max)
    item_counts: Counter[str] = Counter()
    win_hits = 0
    win_ndcg = 0.0
    win_n = 0
    t0 = time.perf_counter()
    batch: list[Interaction] = []

    def run(batch: list[Interaction], start: int) -> None:
        nonlocal win_hits, win_ndcg, win_n
        queries: list[Query] = []
        hists: list[tuple[str, ...]] = []
        for x in batch:  # each query sees the events before it, earlier ones of this batch included
            st = history.state(x.user_id)
            h = tuple(st.seq)
            hists.append(h)
            queries.append(Query(x.user_id, h, frozenset(st.seen)))
            st.append(x.item_id, seq_len, seen_max)
        recs = learner.recommend_many(queries, k)
        for x, q, rec in zip(batch, queries, recs, strict=True):
            ids = [i for i, _ in rec]
            cold = item_counts[x.item_id] < cold_threshold
            gain = 1.0 / math.log2(ids.index(x.item_id) + 2) if x.item_id in ids else 0.0
            res.n += 1
            res.repeats += x.item_id in q.exclude
            if gain:
                res.hits += 1
                res.ndcg_sum += gain
            if cold:
                res.n_cold += 1
                if gain:
                    res.hits_cold += 1
                    res.ndcg_cold_sum += gain
            win_n += 1
            win_hits += gain > 0
            win_ndcg += gain
            if win_n == window:
                res.curve.append((res.n, win_hits / win_n, win_ndcg / win_n))
                win_hits, win_ndcg, win_n = 0, 0.0, 0
            item_counts[x.item_id] += 1
        do_learn = learn(start) if callable(learn) else learn
        if do_learn:
            learner.learn_many(batch, hists)
        if progress:
            progress(res.n)

    start = 0
    for i, x in enumerate(events):
        if limit is not None and i >= limit:
            break
        batch.append(x)
        if len(batch) == batch_size:
            run(batch, start)
            start += len(batch)
            batch = []
    if batch:
        run(batch, start)
    if win_n:
        res.curve.append((res.n, win_hits / win_n, win_ndcg / win_n))
    res.seconds = time.perf_counter() - t0
    return res


@dataclass
class SummaryRow:
    """Mean ± std over seeds of one learner."""

    name: str
    seeds: int
    hr: tuple[float, float]
    ndcg: tuple[float, float]
    hr_cold: tuple[float, float]
    ndcg_cold: tuple[float, float]
    events_per_s: float
    n: int
    note: str = ""


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    return (statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0)


def summarise(name: str, results: Sequence[PrequentialResult], note: str = "") -> SummaryRow:
    """Aggregate one learner's runs (one per seed)."""
    return SummaryRow(
        name, len(results), _mean_std([r.hr for r in results]), _mean_std([r.ndcg for r in results]),
        _mean_std([r.hr_cold for r in results]), _mean_std([r.ndcg_cold for r in results]),
        statistics.fmean(r.events_per_s for r in results), results[0].n if results else 0, note,
    )


def evaluate_many(
    factories: Mapping[str, Callable[[int], Learner]],
    events: Sequence[Interaction],
    seeds: Sequence[int] = (0,),
    limits: Mapping[str, int] | None = None,
    **kw: object,
) -> tuple[list[SummaryRow], dict[str, list[PrequentialResult]]]:
    """Every learner on the same stream for every seed; returns summary rows and the raw results."""
    rows: list[SummaryRow] = []
    raw: dict[str, list[PrequentialResult]] = {}
    overall = kw.pop("limit", None)
    for name, make in factories.items():
        caps = [c for c in ((limits or {}).get(name), overall) if isinstance(c, int)]
        lim = min(caps) if caps else None
        runs = [prequential(make(seed), events, name=name, limit=lim, **kw) for seed in seeds]  # type: ignore[arg-type]
        raw[name] = runs
        partial = lim is not None and lim < len(events)
        rows.append(summarise(name, runs, note=f"first {lim:,} events only" if partial else ""))
    return rows, raw


def plot_curves(results: Mapping[str, PrequentialResult], path: Path, title: str = "") -> Path:
    """PNG of HR@10 per window over the stream, one line per learner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, r in results.items():
        if r.curve:
            ax.plot([c[0] for c in r.curve], [c[1] for c in r.curve], marker=".", label=name)
    ax.set_xlabel("events")
    ax.set_ylabel("HR@10 (window)")
    ax.set_title(title or "prequential HR@10 per window")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
