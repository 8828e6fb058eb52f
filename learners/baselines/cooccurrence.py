"""Incremental item co-occurrence kNN over the user's recent items."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learners.types import BaseLearner, FloatArray, Interaction, Query


class ItemKNN(BaseLearner):
    """Counts co-occurrences of each new item with the user's last ``window`` items; scores a user by the
    cosine-normalised co-occurrence with their last ``recent`` items, plus a tiny popularity tie-breaker.

    >>> from learners.types import Item
    >>> m = ItemKNN(); m.add_items([Item(i, "") for i in "abc"])
    >>> m.learn_one(Interaction("u", "b"), ("a",)); m.learn_one(Interaction("v", "c"), ())
    >>> m.recommend(Query("w", ("a",), frozenset({"a"})), k=1)[0][0]
    'b'
    """

    def __init__(self, window: int = 20, recent: int = 10, popularity_weight: float = 1e-4, seed: int = 0) -> None:
        super().__init__()
        self.window = window
        self.recent = recent
        self.popularity_weight = popularity_weight
        self.seed = seed
        self.cooc = np.zeros((0, 0), dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.float32)

    def _ensure(self, item_id: str) -> int:
        i = self._register(item_id)
        n = len(self.counts)
        if i >= n:
            cap = max(1024, 2 * n, i + 1)
            c = np.zeros((cap, cap), dtype=np.float32)
            c[:n, :n] = self.cooc
            self.cooc = c
            self.counts = np.concatenate([self.counts, np.zeros(cap - n, dtype=np.float32)])
        return i

    def add_items(self, items: Sequence[object]) -> None:
        for it in items:
            self._ensure(it.item_id)  # type: ignore[attr-defined]

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        t = self._ensure(x.item_id)
        hs = [self._ensure(h) for h in history[-self.window:]]
        if hs:
            np.add.at(self.cooc, (hs, t), 1.0)
            np.add.at(self.cooc, (t, hs), 1.0)
        self.counts[t] += 1.0
        self._version += 1

    def _score_all(self, q: Query) -> FloatArray:
        row: FloatArray = self._score_all_many([q])[0]
        return row

    def _similarities(self, i: int) -> FloatArray:
        """Cosine-normalised co-occurrence of item ``i`` with every item (the kNN neighbourhood)."""
        n = len(self.item_ids)
        inv = 1.0 / np.sqrt(self.counts[:n] + 1.0)
        out: FloatArray = (self.cooc[i, :n] * inv * inv[i]).astype(np.float32)
        return out

    def _score_all_many(self, qs: Sequence[Query]) -> FloatArray:
        n = len(self.item_ids)
        inv = 1.0 / np.sqrt(self.counts[:n] + 1.0)
        out = np.tile(self.popularity_weight * self.counts[:n], (len(qs), 1))
        for row, q in enumerate(qs):
            idx = [self.item_index[h] for h in q.history[-self.recent:] if h in self.item_index]
            if idx:
                out[row] += (self.cooc[idx, :n] * inv[idx, None]).sum(0) * inv
        return out.astype(np.float32)
