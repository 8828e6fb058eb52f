"""Popularity and recency-decayed popularity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learners.types import BaseLearner, FloatArray, Interaction, Query


class Popularity(BaseLearner):
    """Most interacted items first.

    >>> from learners.types import Item
    >>> m = Popularity(); m.add_items([Item("a", ""), Item("b", "")])
    >>> m.learn_one(Interaction("u", "b")); m.recommend(Query("v"), k=1)
    [('b', 1.0)]
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self.counts = np.zeros(0, dtype=np.float64)

    def _ensure(self, item_id: str) -> int:
        i = self._register(item_id)
        if i >= len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(max(1024, i + 1 - len(self.counts)))])
        return i

    def add_items(self, items: Sequence[object]) -> None:
        for it in items:
            self._ensure(it.item_id)  # type: ignore[attr-defined]

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self.counts[self._ensure(x.item_id)] += x.weight
        self._version += 1

    def _score_all(self, q: Query) -> FloatArray:
        return self.counts[: len(self.item_ids)].astype(np.float32)

    def _score_all_many(self, qs: Sequence[Query]) -> FloatArray:
        row = self.counts[: len(self.item_ids)].astype(np.float32)
        return np.broadcast_to(row, (len(qs), len(row)))


class DecayedPopularity(Popularity):
    """Popularity where each count halves every ``half_life`` events (a growing scale instead of decaying all).

    >>> from learners.types import Item
    >>> m = DecayedPopularity(half_life=1.0); m.add_items([Item("a", ""), Item("b", "")])
    >>> for i in ["a", "a", "b"]: m.learn_one(Interaction("u", i))
    >>> m.recommend(Query("v"), k=1)[0][0]
    'b'
    """

    def __init__(self, half_life: float = 5000.0, seed: int = 0) -> None:
        super().__init__(seed)
        self.half_life = half_life
        self._scale = 1.0

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self._scale *= 2.0 ** (1.0 / self.half_life)
        if self._scale > 1e100:
            self.counts /= self._scale
            self._scale = 1.0
        self.counts[self._ensure(x.item_id)] += x.weight * self._scale
        self._version += 1
