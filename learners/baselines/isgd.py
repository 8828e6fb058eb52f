"""Incremental SGD matrix factorisation for positive-only feedback (Vinagre, Jorge & Gama, 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learners.types import BaseLearner, FloatArray, Interaction, Query


class ISGD(BaseLearner):
    """Each interaction pulls the user-item dot product towards 1 with one SGD step on both factor vectors.

    >>> from learners.types import Item
    >>> m = ISGD(seed=0); m.add_items([Item("a", ""), Item("b", "")])
    >>> for _ in range(50): m.learn_one(Interaction("u", "b"))
    >>> m.recommend(Query("u"), k=1)[0][0]
    'b'
    """

    def __init__(self, factors: int = 10, learning_rate: float = 0.05, regularization: float = 0.01,
                 seed: int = 0) -> None:
        super().__init__()
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.items = np.zeros((0, factors))
        self.users: dict[str, np.ndarray] = {}

    def _item(self, item_id: str) -> int:
        i = self._register(item_id)
        if i >= len(self.items):
            extra = self._rng.normal(0.0, 0.1, (max(1024, i + 1 - len(self.items)), self.factors))
            self.items = np.vstack([self.items, extra])
        return i

    def add_items(self, items: Sequence[object]) -> None:
        for it in items:
            self._item(it.item_id)  # type: ignore[attr-defined]

    def _user(self, user_id: str) -> np.ndarray:
        u = self.users.get(user_id)
        if u is None:
            u = self.users[user_id] = self._rng.normal(0.0, 0.1, self.factors)
        return u

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        i = self._item(x.item_id)
        u = self._user(x.user_id)
        v = self.items[i]
        err = 1.0 - float(u @ v)
        lr, reg = self.learning_rate, self.regularization
        u_new = u + lr * (err * v - reg * u)
        self.items[i] = v + lr * (err * u - reg * v)
        self.users[x.user_id] = u_new
        self._version += 1

    def _similarities(self, i: int) -> FloatArray:
        """Cosine of item ``i``'s factor vector with every item's."""
        v = self.items[: len(self.item_ids)]
        norms = np.linalg.norm(v, axis=1) + 1e-12
        out: FloatArray = ((v @ v[i]) / (norms * norms[i])).astype(np.float32)
        return out

    def _score_all(self, q: Query) -> FloatArray:
        u = self.users.get(q.user_id)
        n = len(self.item_ids)
        if u is None:  # unknown user: the mean user
            u = np.mean(list(self.users.values()), axis=0) if self.users else np.zeros(self.factors)
        return (self.items[:n] @ u).astype(np.float32)
