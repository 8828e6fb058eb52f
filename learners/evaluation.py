"""Prequential (test-then-learn) evaluation of any learner, exactly as the worker runs it.

Events are taken in order in micro-batches. For each batch: every event's query is built from the user's
history *including earlier events of the same batch* (per-event prefixes) and excluding everything the user
already has; the learner recommends for the whole batch with the model as it was before the batch; HR@k and
NDCG@k are recorded against each event's item; then the learner learns from the batch.

``score_from`` keeps the protocol whole (every event is recommended and learned from) but counts HR@k and
NDCG@k only from that event on: the part of a stream no hyper-parameter was tuned on. The counts over every
event come with it (:attr:`PrequentialResult.whole`), so one run gives both.
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
    """Accuracy of one learner on one stream: counted over the events from ``score_from`` on (``n`` of them),
    while ``events`` were processed in all (recommended and learned from); ``whole`` holds the counts over every
    event when ``score_from`` > 0 (None otherwise: these counts are the whole stream's)."""

    name: str = ""
    score_from: int = 0
    events: int = 0
    n: int = 0
    hits: int = 0
    ndcg_sum: float = 0.0
    n_cold: int = 0
    hits_cold: int = 0
    ndcg_cold_sum: float = 0.0
    repeats: int = 0
    seconds: float = 0.0
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    whole: PrequentialResult | None = None

    def add(self, gain: float, cold: bool, repeat: bool) -> None:
        """Count one scored event: its NDCG gain (0: a miss), whether its item was cold, whether it was a repeat."""
        self.n += 1
        self.repeats += repeat
        if gain:
            self.hits += 1
            self.ndcg_sum += gain
        if cold:
            self.n_cold += 1
            if gain:
                self.hits_cold += 1
                self.ndcg_cold_sum += gain

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
        """Every event processed (scored or not) per second of the run."""
        return (self.events or self.n) / self.seconds if self.seconds else math.nan


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
    score_from: int = 0,
) -> PrequentialResult:
    """Run the protocol (module doc). ``learn`` may be a function of the event index (e.g. a warm-up cut-off);
    HR/NDCG count the events from index ``score_from`` on, and the result's ``whole`` every event.

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
    >>> r = prequential(m, evs, k=1, batch_size=2, score_from=1)
    >>> (r.hits, r.n, r.events), (r.whole.hits, r.whole.n)
    ((1, 2, 3), (2, 3))
    """
    if score_from < 0:
        raise ValueError(f"score_from: expected an event index >= 0, got {score_from}")
    res = PrequentialResult(name=name, score_from=score_from)
    whole = res.whole = PrequentialResult(name=name) if score_from > 0 else None
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
        for j, (x, q, rec) in enumerate(zip(batch, queries, recs, strict=True)):
            ids = [i for i, _ in rec]
            cold = item_counts[x.item_id] < cold_threshold
            gain = 1.0 / math.log2(ids.index(x.item_id) + 2) if x.item_id in ids else 0.0
            repeat = x.item_id in q.exclude
            res.events += 1
            if start + j >= score_from:
                res.add(gain, cold, repeat)
            if whole is not None:
                whole.add(gain, cold, repeat)
            win_n += 1
            win_hits += gain > 0
            win_ndcg += gain
            if win_n == window:
                res.curve.append((res.events, win_hits / win_n, win_ndcg / win_n))
                win_hits, win_ndcg, win_n = 0, 0.0, 0
            item_counts[x.item_id] += 1
        do_learn = learn(start) if callable(learn) else learn
        if do_learn:
            learner.learn_many(batch, hists)
        if progress:
            progress(res.events)

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
        res.curve.append((res.events, win_hits / win_n, win_ndcg / win_n))
    res.seconds = time.perf_counter() - t0
    if whole is not None:
        whole.events, whole.seconds, whole.curve = res.events, res.seconds, res.curve
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
    score_from: int = 0

    def eval_line(self) -> str:
        """The machine-readable summary line of this row (means over seeds).

        >>> SummaryRow("item-knn", 1, (0.2, 0), (0.1, 0), (0.05, 0), (0.02, 0), 812.4, 50, score_from=50).eval_line()
        'EVAL learner=item-knn hr10=0.2000 ndcg10=0.1000 cold_hr10=0.0500 events_per_s=812 score_from=50'
        """
        return (f"EVAL learner={self.name} hr10={self.hr[0]:.4f} ndcg10={self.ndcg[0]:.4f} "
                f"cold_hr10={self.hr_cold[0]:.4f} events_per_s={self.events_per_s:.0f} score_from={self.score_from}")


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    return (statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0)


def summarise(name: str, results: Sequence[PrequentialResult], note: str = "") -> SummaryRow:
    """Aggregate one learner's runs (one per seed)."""
    return SummaryRow(
        name, len(results), _mean_std([r.hr for r in results]), _mean_std([r.ndcg for r in results]),
        _mean_std([r.hr_cold for r in results]), _mean_std([r.ndcg_cold for r in results]),
        statistics.fmean(r.events_per_s for r in results), results[0].n if results else 0, note,
        results[0].score_from if results else 0,
    )


def whole_stream_rows(rows: Sequence[SummaryRow], raw: Mapping[str, Sequence[PrequentialResult]]) -> list[SummaryRow]:
    """The rows of :func:`evaluate_many` counted over every event instead of from ``score_from`` on (the same
    runs: a scored range is only a narrower count)."""
    return [summarise(r.name, [x.whole or x for x in raw[r.name]], r.note) for r in rows]


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
        note = f"first {lim:,} events only" if partial else ""
        if partial and runs and runs[0].n == 0:
            note += f"; none from event {runs[0].score_from:,}"
        rows.append(summarise(name, runs, note=note))
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
