"""One model across workers: what a worker contributes to its peers, and how a contribution is merged.

With N workers in one consumer group each learner sees only the users of its partitions. Sharing makes every
worker serve from a model that has seen the whole stream, without a coordination service:

* **Additive statistics** (co-occurrence, decayed popularity, the cold gate's item counts and estimate) travel as
  the events themselves: each contribution carries the (item, weight, recent history) of the events its worker
  learned from, and a peer adds them to its statistics (:meth:`~learners.adapter.AdapterRecommender.count_many`),
  so every worker's totals are a single worker's, up to the order of the events.
* **Per-item parameters** (each item's adapted vector and bias, and their moving averages) travel as deltas: the
  change since the worker's last contribution of the rows that changed, keyed by item id (item indices differ
  between workers); the shared vectors of item attribute values likewise, keyed by value. A merging worker moves
  each row by the mean of the deltas of the workers that changed it (its own latest and the peers'), as a model
  that took the mean of their steps. Every worker starts from the
  same initial parameters (the same seed).
* **Dense parameters** (the adapter's projection, the user model, temperature and blend weights, and their moving
  averages) are averaged: a contribution carries their values, and a worker that merges replaces its own by the
  mean of its value and each peer's latest. Each worker's Adam moments stay its own.

A contribution is plain arrays plus a JSON header (:meth:`Contribution.to_bytes`): no pickle crosses the wire.
This module is free of Kafka; the worker publishes contributions on a topic (``stream.sharing``) and the
benchmark exchanges them in-process (``benchmarks/workers.py``).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learners.adapter_base import AdapterBase
from learners.types import Interaction

FORMAT = 1


@dataclass
class Contribution:
    """What one worker learned since its previous contribution.

    ``events``: (item id, weight, the user's recent items before it, oldest first) per learned event.
    ``dense``: parameter name -> value of a parameter with no per-item rows (``avg.``-prefixed names: of the
    moving average). ``rows``: parameter name -> (item ids, delta rows) of the per-item parameters' changed rows.
    ``marks``: how far into the input the worker's contributed events reach (the worker's keys and positions:
    per ``events`` partition, the offset after the last event learned). An event below them is in the shared
    model: a worker that reads it again (after a restart, or a partition that moved) does not learn it again.
    """

    worker: str
    seq: int
    events: list[tuple[str, float, tuple[str, ...]]] = field(default_factory=list)
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events)

    def to_bytes(self) -> bytes:
        """The wire form: an ``.npz`` archive whose ``header`` entry is the JSON of everything but the arrays.

        >>> c = Contribution("w1", 3, [("a", 1.0, ("b",))], {"blend": np.ones(2, np.float32)},
        ...                  {"head.item_id": (["a"], np.zeros((1, 4), np.float32))})
        >>> d = Contribution.from_bytes(c.to_bytes())
        >>> d.worker, d.seq, d.events, d.dense["blend"].tolist(), d.rows["head.item_id"][0]
        ('w1', 3, [('a', 1.0, ('b',))], [1.0, 1.0], ['a'])
        """
        header = {"format": FORMAT, "worker": self.worker, "seq": self.seq,
                  "events": [[i, w, list(h)] for i, w, h in self.events],
                  "dense": sorted(self.dense), "rows": {name: ids for name, (ids, _) in self.rows.items()},
                  "marks": self.marks}
        arrays: dict[str, Any] = {f"dense/{name}": a for name, a in self.dense.items()}
        arrays.update({f"rows/{name}": a for name, (_, a) in self.rows.items()})
        buf = io.BytesIO()
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(buf, **arrays)  # stored, not deflated: trained float32 rows shrank ~20% for ~40x the time (60 ms
        # against 1.5 ms for ML-100K's rows on an idle core, 0.15-0.4 s in a loaded worker, which delayed each share)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Contribution:
        """Parse :meth:`to_bytes`' output; ``ValueError`` naming what is wrong for anything else."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes())
                if header.get("format") != FORMAT:
                    raise ValueError(f"format: expected {FORMAT}, got {header.get('format')!r}")
                dense = {name: z[f"dense/{name}"] for name in header["dense"]}
                rows = {name: (list(ids), z[f"rows/{name}"]) for name, ids in header["rows"].items()}
                events = [(str(i), float(w), tuple(str(x) for x in h)) for i, w, h in header["events"]]
                marks = {str(k): int(v) for k, v in header.get("marks", {}).items()}  # absent before they existed
                return cls(str(header["worker"]), int(header["seq"]), events, dense, rows, marks)
        except Exception as exc:  # noqa: BLE001 - whatever np.load makes of foreign bytes (EOFError, BadZipFile...)
            raise ValueError(f"contribution: not a streamrec contribution ({exc!r})") from None


def rounds(cs: Sequence[Contribution]) -> list[list[Contribution]]:
    """``cs`` in order, cut into runs with at most one contribution per worker: a worker's successive
    contributions are successive steps, merged one after the other, while different workers' are averaged.

    >>> [[c.seq for c in r] for r in rounds([Contribution("a", 1), Contribution("b", 1), Contribution("a", 2)])]
    [[1, 1], [2]]
    """
    out: list[list[Contribution]] = []
    for c in cs:
        if not out or any(o.worker == c.worker for o in out[-1]):
            out.append([])
        out[-1].append(c)
    return out


#: How much more a worker's delta of an item's row counts, per event of its contribution with that item as the
#: target, than a delta of a worker that only pushed the item down as a negative (weight 1 + this x count). Under a
#: full softmax every worker moves every row each step; a plain mean let three workers' negative pushes dilute the
#: one worker's positive step. Tuned on ML-100K's first half (benchmarks/workers.py --workers 4 --limit 50000,
#: HR@10 with sharing): 0 -> 0.2035, 1 -> 0.2035, 4 -> 0.2041, 20 -> 0.2044, 100 -> 0.2045 (one worker: 0.2092).
TARGET_WEIGHT = 100.0

PER_ITEM = ("head.item_id", "head.item_bias")  # parameters with one row per catalog item (keyed by id on the wire)
PER_VALUE = ("head.attr_vec", "head.attr_bias")  # one row per attribute value (keyed by the value on the wire)


def _keyed(name: str) -> str | None:
    """``"item"`` or ``"value"`` for a parameter with one row per item or attribute value, else None (dense)."""
    base = name.removeprefix("avg.")
    return "item" if base in PER_ITEM else "value" if base in PER_VALUE else None


class DeltaTracker:
    """The bookkeeping behind a learner's contributions: the value every shared tensor had at the previous
    contribution (its *base*), and the events learned since.

    Merging a peer's deltas adds them to the tensors and to the base alike, so a worker's next contribution
    holds only what it learned itself (a delta is never sent back around). Per-item tensors that grew (new
    catalog items) are compared over the base's rows padded with zeros, as their new rows start.
    """

    def __init__(self, worker: str, tensors: dict[str, torch.Tensor], history_tail: int) -> None:
        self.worker = worker
        self.seq = 0
        self.history_tail = history_tail
        self.base = {name: t.detach().clone() for name, t in tensors.items()}
        self.events: list[tuple[str, float, tuple[str, ...]]] = []
        self.peers: dict[str, dict[str, np.ndarray]] = {}  # each peer's latest dense values
        self.own: Contribution | None = None  # this worker's latest contribution, until a merge averages with it
        self.merged: dict[str, int] = {}  # each peer's latest contribution merged (its seq)
        self.target_weight = TARGET_WEIGHT
        self.marks: dict[str, int] = {}  # the furthest Contribution.marks of every worker's contributions seen

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A tracker pickled (in a checkpoint) by an earlier version lacks the attributes added since."""
        self.__dict__.update({"merged": {}, "target_weight": TARGET_WEIGHT, "marks": {}, **state})

    def _note_marks(self, marks: dict[str, int]) -> None:
        for key, at in marks.items():
            self.marks[key] = max(self.marks.get(key, at), at)

    def fresh(self, cs: Sequence[Contribution]) -> list[Contribution]:
        """The contributions of ``cs`` to merge: the peers' not merged before (a seq above the peer's latest merged;
        a contribution read twice, after a restart from a checkpoint, is merged once), and this worker's own that
        are newer than the tracker (published before a crash its checkpoint predates: :meth:`restore` takes them
        back). Their marks join :attr:`marks`."""
        out: list[Contribution] = []
        for c in cs:
            if c.seq > (self.seq if c.worker == self.worker else self.merged.get(c.worker, 0)):
                out.append(c)
            self._note_marks(c.marks)
        return out

    def record(self, item_ids: Sequence[str], examples: Sequence[tuple[int, float, Sequence[int]]]) -> None:
        """Note learned events: (target index, weight, history indices) each."""
        tail = self.history_tail
        self.events.extend((item_ids[t], float(w), tuple(item_ids[j] for j in h[-tail:] if j >= 0))
                           for t, w, h in examples)

    def _base_for(self, name: str, t: torch.Tensor) -> torch.Tensor:
        base = self.base[name]
        if base.shape != t.shape:
            if base.shape[1:] != t.shape[1:] or base.shape[0] > t.shape[0]:
                raise ValueError(f"{name}: shape {tuple(t.shape)} cannot follow {tuple(base.shape)}")
            grown = torch.zeros_like(t)
            grown[: base.shape[0]] = base
            base = self.base[name] = grown
        return base

    def restore(self, c: Contribution, tensors: dict[str, torch.Tensor], item_index: dict[str, int],
                value_index: dict[str, int] | None = None) -> None:
        """Take back this worker's own contribution ``c``, published after the checkpoint the learner resumed from
        (its peers have merged it): the per-item rows become the base plus ``c``'s deltas (rows ``c`` leaves out
        had not changed since the contribution before it), the dense tensors ``c``'s values, and the tracker
        numbers on after ``c``, as when it was taken."""
        if c.worker != self.worker or c.seq <= self.seq:
            raise ValueError(f"restore: contribution {c.worker}#{c.seq} is not one of {self.worker!r} after #{self.seq}")
        with torch.no_grad():
            for name, t in tensors.items():
                base = self._base_for(name, t)
                keyed = _keyed(name)
                if keyed is None:
                    if name in c.dense:
                        t.copy_(torch.as_tensor(c.dense[name], device=t.device, dtype=t.dtype).reshape(t.shape))
                else:
                    t.copy_(base)
                    if name in c.rows:
                        ids, delta = c.rows[name]
                        index = item_index if keyed == "item" else value_index or {}
                        keep = [k for k, i in enumerate(ids) if i in index]
                        rows = torch.as_tensor([index[ids[k]] for k in keep], dtype=torch.long, device=t.device)
                        t.index_add_(0, rows, torch.as_tensor(delta[keep], device=t.device, dtype=t.dtype))
                base.copy_(t)
        self.seq, self.own = c.seq, c

    def contribution(self, tensors: dict[str, torch.Tensor], item_ids: Sequence[str],
                     values: Sequence[str] = (), marks: dict[str, int] | None = None) -> Contribution:
        """Everything learned since the previous contribution; the base moves to the tensors' values.
        ``values``: the attribute values by row of the per-value tensors; ``marks``: :attr:`Contribution.marks`."""
        dense: dict[str, np.ndarray] = {}
        rows: dict[str, tuple[list[str], np.ndarray]] = {}
        with torch.no_grad():
            for name, t in tensors.items():
                base = self._base_for(name, t)
                keyed = _keyed(name)
                if keyed is not None:
                    keys = item_ids if keyed == "item" else values
                    n = len(keys)
                    d = (t[:n] - base[:n]).reshape(n, -1)
                    changed = torch.nonzero(d.abs().amax(dim=1) > 0).flatten() if n else torch.zeros(0, dtype=torch.long)
                    if len(changed):
                        rows[name] = ([keys[i] for i in changed.tolist()],
                                      d.index_select(0, changed).reshape(-1, *t.shape[1:]).cpu().numpy())
                else:
                    dense[name] = t.detach().cpu().numpy().copy()
                base.copy_(t)
        self.seq += 1
        out = self.own = Contribution(self.worker, self.seq, self.events, dense, rows, dict(marks or {}))
        self._note_marks(out.marks)
        self.events = []
        return out

    def merge(self, cs: Sequence[Contribution], tensors: dict[str, torch.Tensor], item_index: dict[str, int],
              value_index: dict[str, int] | None = None) -> int:
        """Merge peers' parameters (the caller adds their events to the statistics): each per-item (or per
        attribute value: ``value_index``) row moves to the mean of the deltas of the workers that changed it (this
        worker's own latest contribution, if not merged before, and the peers'), and every dense tensor to the
        mean of this worker's value and each peer's latest. Returns how many per-item or per-value rows named items
        or values this learner does not have (skipped)."""
        for c in cs:
            for name, value in c.dense.items():
                t = tensors.get(name)
                if t is None or tuple(t.shape) != value.shape:
                    raise ValueError(f"contribution of {c.worker}: {name}: shape {value.shape} does not fit "
                                     f"{None if t is None else tuple(t.shape)}")
            for name, (ids, delta) in c.rows.items():
                t = tensors.get(name)
                if t is None or tuple(t.shape[1:]) != delta.shape[1:] or len(ids) != len(delta):
                    raise ValueError(f"contribution of {c.worker}: {name}: rows of shape {delta.shape} do not fit "
                                     f"{None if t is None else tuple(t.shape)}")
        own, self.own = self.own, None
        skipped = 0
        with torch.no_grad():
            for name in sorted({n for c in cs for n in c.rows}):
                t = tensors[name]
                at_parts: list[torch.Tensor] = []
                delta_parts: list[torch.Tensor] = []
                weight_parts: list[torch.Tensor] = []
                n_own = 0
                mine = own if own is not None and name in own.rows else None
                for c in ([mine] if mine is not None else []) + [c for c in cs if name in c.rows]:
                    ids, delta = c.rows[name]
                    index = item_index if _keyed(name) == "item" else value_index or {}
                    local = [index.get(i, -1) if i else -1 for i in ids]
                    keep = [k for k, j in enumerate(local) if j >= 0]
                    if c is mine:
                        n_own = len(keep)
                    else:
                        skipped += len(ids) - len(keep)
                    targets = Counter(i for i, _, _ in c.events) if self.target_weight else Counter()
                    at_parts.append(torch.as_tensor([local[k] for k in keep], dtype=torch.long, device=t.device))
                    delta_parts.append(torch.as_tensor(delta[keep], device=t.device, dtype=t.dtype))
                    weight_parts.append(torch.as_tensor([1.0 + self.target_weight * targets[ids[k]] for k in keep],
                                                        device=t.device, dtype=t.dtype))
                at = torch.cat(at_parts)
                if not len(at):
                    continue
                shape = (-1, *[1] * (t.dim() - 1))
                weights = torch.cat(weight_parts).reshape(shape)
                deltas = torch.cat(delta_parts)
                rows, inverse = torch.unique(at, return_inverse=True)
                total = torch.zeros((len(rows), *t.shape[1:]), device=t.device, dtype=t.dtype).index_add_(
                    0, inverse, deltas * weights)
                weight = torch.zeros((len(rows), 1), device=t.device, dtype=t.dtype).index_add_(
                    0, inverse, weights.reshape(-1, 1)).reshape(shape)
                applied = torch.zeros_like(total).index_add_(0, inverse[:n_own], deltas[:n_own])  # in t already
                change = total / weight - applied
                t.index_add_(0, rows, change)
                self._base_for(name, t).index_add_(0, rows, change)
            for c in cs:
                self.peers[c.worker] = c.dense
                self.merged[c.worker] = max(self.merged.get(c.worker, 0), c.seq)
            if cs:
                for name, t in tensors.items():
                    values = [p[name] for p in self.peers.values() if name in p]
                    if values:
                        total_dense = torch.as_tensor(np.sum(values, axis=0), device=t.device, dtype=t.dtype)
                        t.copy_((t + total_dense) / (1 + len(values)))
        return skipped


class SharedLearning(AdapterBase):
    """The adapter's side of sharing: what it contributes and how it merges its peers' contributions (a mixin of
    :class:`~learners.adapter.AdapterRecommender` over its own state, declared by
    :class:`~learners.adapter_base.AdapterBase`)."""

    def start_sharing(self, worker: str) -> None:
        """From now on keep what :meth:`contribution` hands to peers (``worker``: this worker's name in it)."""
        if self._head is None:
            raise RuntimeError("sharing: the learner has no catalog yet; add items first")
        tail = max(self.cooccurrence.window, self._gate.recent if self._gate is not None else 0, 1)
        self._sharing = DeltaTracker(worker, self._shared_tensors(), tail)

    def contribution(self, marks: dict[str, int] | None = None) -> Contribution | None:
        """What this learner learned since its previous contribution (None when it learned nothing); ``marks``:
        how far into its input those events reach (:attr:`~learners.sharing.Contribution.marks`)."""
        if self._sharing is None or not self._sharing.events:
            return None
        return self._sharing.contribution(self._shared_tensors(), self.item_ids, self.attribute_values, marks)

    @property
    def shared_marks(self) -> dict[str, int]:
        """How far into the input the contributions on the shared topic reach (the furthest marks of every
        worker's, this worker's own included): an event below them is in the shared model already, merged from
        its peer or restored (:meth:`merge`); empty when not sharing."""
        return self._sharing.marks if self._sharing is not None else {}

    def merge(self, cs: Sequence[Contribution]) -> int:
        """Merge peers' contributions (:mod:`learners.sharing`): their events into the stream statistics, their
        per-item deltas into the item parameters, and the dense parameters averaged with theirs. This worker's own
        published after its checkpoint (read back after a crash) are restored
        (:meth:`~learners.sharing.DeltaTracker.restore`), their events counted as well; those merged or taken
        before are skipped (:meth:`~learners.sharing.DeltaTracker.fresh`). Returns how many were merged or
        restored."""
        tracker = self._sharing
        if tracker is None:
            raise RuntimeError("sharing: call start_sharing before merging contributions")
        cs = tracker.fresh(cs)
        if not cs:
            return 0
        self._train_table = None  # its graph is of the parameters before the merge
        values = self._attributes.index if self._attributes is not None else None
        for run in rounds(cs):
            for c in run:
                if c.worker == tracker.worker:
                    tracker.restore(c, self._shared_tensors(), self.item_index, values)
            peers = [c for c in run if c.worker != tracker.worker]
            if peers:
                tracker.merge(peers, self._shared_tensors(), self.item_index, values)
        events = [e for c in cs for e in c.events]
        self.count_many([Interaction("", i, 0.0, w) for i, w, _ in events], [h for _, _, h in events])
        self._n_learned += len(events)  # the shared model has learned them: no longer young for their sake
        self._cache = None
        self._version += 1
        if self._large():
            self._ensure_retriever().updated(self._index_table, self._popularity_array())
        return len(cs)

    @property
    def sharing_worker(self) -> str | None:
        """The name this learner shares under (:meth:`start_sharing`), or None."""
        return self._sharing.worker if self._sharing is not None else None

    @property
    def events_learned(self) -> int:
        """Events learned from: this worker's own and those merged from peers."""
        return self._n_learned

    def _shared_tensors(self) -> dict[str, torch.Tensor]:
        """The trained tensors peers share by name, the moving averages as ``avg.<name>``."""
        out = dict(self._named_params())
        if self._avg is not None:
            out.update({f"avg.{name}": t for name, t in self._avg.items()})
        return out
