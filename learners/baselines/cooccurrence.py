"""Incremental item co-occurrence kNN over the user's recent items: dense for small catalogs, bounded above."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learners.cooccurrence import BoundedCooccurrence
from learners.types import BaseLearner, FloatArray, Interaction, Item, Query, Recommendation, pick_top_k


class ItemKNN(BaseLearner):
    """Counts co-occurrences of each new item with the user's last ``window`` items; scores a user by the
    cosine-normalised co-occurrence with their last ``recent`` items, plus a tiny popularity tie-breaker.

    Up to ``dense_items`` items the counts are a dense matrix (exact; ML-100K's numbers). Past it they move to a
    :class:`~learners.cooccurrence.BoundedCooccurrence` of ``neighbours`` slots per item (memory O(items x
    neighbours), each item starting from its heaviest dense neighbours), and each query's list is drawn from its
    co-occurrence candidates and the most popular items: the top-k of the same scores (every other item scores
    its popularity term alone) without a (queries, items) array.

    >>> m = ItemKNN(); m.add_items([Item(i, "") for i in "abc"])
    >>> m.learn_one(Interaction("u", "b"), ("a",)); m.learn_one(Interaction("v", "c"), ())
    >>> m.recommend(Query("w", ("a",), frozenset({"a"})), k=1)[0][0]
    'b'
    >>> big = ItemKNN(dense_items=0); big.add_items([Item(i, "") for i in "abc"])  # bounded from the start
    >>> big.learn_one(Interaction("u", "b"), ("a",)); big.learn_one(Interaction("v", "c"), ())
    >>> big.recommend(Query("w", ("a",), frozenset({"a"})), k=2) == m.recommend(Query("w", ("a",), frozenset({"a"})), k=2)
    True
    """

    # class defaults: learners pickled before these existed (dense, up to the 65,536 items they could hold)
    neighbours = 64
    dense_items = 4096
    bounded: BoundedCooccurrence | None = None

    def __init__(self, window: int = 20, recent: int = 10, popularity_weight: float = 1e-4, neighbours: int = 64,
                 dense_items: int = 4096, seed: int = 0) -> None:
        super().__init__()
        self.window = window
        self.recent = recent
        self.popularity_weight = popularity_weight
        self.neighbours = neighbours
        self.dense_items = dense_items
        self.seed = seed
        self.cooc = np.zeros((0, 0), dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.float32)
        self.bounded = None

    # -- catalog and learning ----------------------------------------------------------------------------------
    def _ensure(self, item_id: str) -> int:
        i = self._register(item_id)
        if self.bounded is None and i >= len(self.counts):
            self._fit(i + 1)
        return i

    def _fit(self, need: int) -> None:
        """Room for ``need`` items: the dense matrix doubles up to ``dense_items``; past it, bounded rows."""
        b = self.bounded
        if b is not None:
            if need > b.capacity:
                b.grow(max(need, b.capacity + b.capacity // 4))
            return
        n = len(self.counts)
        if need <= n:
            return
        if need > self.dense_items:
            self.bounded = BoundedCooccurrence.from_dense(self.cooc[:n, :n], self.counts, self.neighbours)
            self.cooc = np.zeros((0, 0), dtype=np.float32)
            self.counts = np.zeros(0, dtype=np.float32)
            self._fit(need)
            return
        cap = min(max(1024, 2 * n, need), max(self.dense_items, need))
        c = np.zeros((cap, cap), dtype=np.float32)
        c[:n, :n] = self.cooc
        self.cooc = c
        self.counts = np.concatenate([self.counts, np.zeros(cap - n, dtype=np.float32)])

    def add_items(self, items: Sequence[Item]) -> None:
        for it in items:
            self._register(it.item_id)
        self._fit(len(self.item_ids))

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self.learn_many([x], [history])

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        if self.bounded is None:
            for x, h in zip(xs, histories, strict=True):
                self._learn_dense(x, h)
            return
        self._learn_bounded(xs, histories)

    def _learn_dense(self, x: Interaction, history: Sequence[str]) -> None:
        t = self._ensure(x.item_id)
        hs = [self._ensure(h) for h in history[-self.window:]]
        if self.bounded is not None:  # the catalog just outgrew the dense matrix
            self._learn_bounded([x], [history])
            return
        if hs:
            np.add.at(self.cooc, (hs, t), 1.0)
            np.add.at(self.cooc, (t, hs), 1.0)
        self.counts[t] += 1.0
        self._version += 1

    def _learn_bounded(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        """Pairs of every event's item with its history's last ``window`` items (both ways, 1 each), one batch."""
        reg = self._register
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for x, h in zip(xs, histories, strict=True):
            t = reg(x.item_id)
            targets.append(t)
            for j in (reg(i) for i in h[-self.window:] if self.window > 0):
                if j != t:  # a repeat of the item in its own history is not a pair (never scored: excluded)
                    rows.append(j)
                    cols.append(t)
        self._fit(len(self.item_ids))
        assert self.bounded is not None
        r, c = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        self.bounded.add_pairs(np.concatenate([r, c]), np.concatenate([c, r]), np.ones(2 * len(r), dtype=np.float32))
        self.bounded.count_items(np.asarray(targets, dtype=np.int64))
        self._version += len(xs)

    # -- scoring -----------------------------------------------------------------------------------------------
    def item_counts(self) -> FloatArray:
        """Interactions per known item, in index order."""
        n = len(self.item_ids)
        return self.bounded.item_counts[:n] if self.bounded is not None else self.counts[:n]

    def _score_all(self, q: Query) -> FloatArray:
        row: FloatArray = self._score_all_many([q])[0]
        return row

    def _similarities(self, i: int) -> FloatArray:
        """Cosine-normalised co-occurrence of item ``i`` with every item (the kNN neighbourhood)."""
        n = len(self.item_ids)
        inv = 1.0 / np.sqrt(self.item_counts() + 1.0)
        row = self.bounded.row_dense(i, n) if self.bounded is not None else self.cooc[i, :n]
        out: FloatArray = (row * inv * inv[i]).astype(np.float32)
        return out

    def _score_all_many(self, qs: Sequence[Query]) -> FloatArray:
        n = len(self.item_ids)
        counts = self.item_counts()
        if self.bounded is not None:
            idx, mask = self._recent(qs)
            out: FloatArray = np.float32(self.popularity_weight) * counts + self.bounded.cosine(idx, mask, n)
            return out.astype(np.float32, copy=False)
        inv = 1.0 / np.sqrt(counts + 1.0)
        out = np.tile(self.popularity_weight * counts, (len(qs), 1))
        for row, q in enumerate(qs):
            idx_list = [self.item_index[h] for h in q.history[-self.recent:] if h in self.item_index]
            if idx_list:
                out[row] += (self.cooc[idx_list, :n] * inv[idx_list, None]).sum(0) * inv
        return out.astype(np.float32)

    def _recent(self, qs: Sequence[Query]) -> tuple[np.ndarray, np.ndarray]:
        """(B, recent) right-aligned indices of each query's last ``recent`` known history items, and the mask."""
        r = max(self.recent, 1)
        idx = np.zeros((len(qs), r), dtype=np.int64)
        mask = np.zeros((len(qs), r), dtype=bool)
        get = self.item_index.get
        for row, q in enumerate(qs):
            known = [j for j in (get(h) for h in q.history[-self.recent:] if self.recent > 0) if j is not None]
            if known:
                idx[row, r - len(known):] = known
                mask[row, r - len(known):] = True
        return idx, mask

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        if self.bounded is None or not qs or k <= 0 or not self.item_ids:
            return super().recommend_many(qs, k)
        return self._recommend_sparse(qs, k)

    def _recommend_sparse(self, qs: Sequence[Query], k: int) -> list[Recommendation]:
        """The top-k from (B, candidates) arrays: each query's co-occurrence candidates (full score) and the
        ``k + most exclusions`` most popular items (popularity term alone, which is every other item's score),
        ordered by score, then index (as the dense path orders ties)."""
        assert self.bounded is not None
        n = len(self.item_ids)
        idx, mask = self._recent(qs)
        cand, cos = self.bounded.top(idx, mask, self.bounded.width * idx.shape[1])
        pop_term = (np.float32(self.popularity_weight) * self.item_counts()).astype(np.float32)
        found = cand >= 0
        cand_score = np.where(found, cos + pop_term[np.maximum(cand, 0)], -np.inf).astype(np.float32)
        p = min(n, k + max(len(q.exclude) for q in qs))
        popular = np.argpartition(-pop_term, p - 1)[:p] if p < n else np.arange(n)
        pop_ids = np.broadcast_to(popular, (len(qs), p))
        pop_score = np.broadcast_to(pop_term[popular], (len(qs), p)).copy()
        rows = np.arange(len(qs))[:, None]
        taken = np.isin((rows * n + pop_ids).ravel(), (rows * n + cand)[found]).reshape(pop_ids.shape)
        pop_score[taken] = -np.inf  # its full score is among the candidates
        ids = np.concatenate([np.where(found, cand, n), pop_ids], axis=1)
        scores = np.concatenate([cand_score, pop_score], axis=1)
        order = np.lexsort((ids, -scores))  # per row: best score first, ties by index
        ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
        return pick_top_k(np.minimum(ids, n - 1), scores, None, qs, self.item_ids, self.item_index, min(k, n))
