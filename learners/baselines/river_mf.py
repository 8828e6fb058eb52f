"""river's ``reco.BiasedMF`` behind the learner protocol (positive-only, with sampled negatives)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from learners.types import BaseLearner, FloatArray, Interaction, Query


class RiverBiasedMF(BaseLearner):
    """Each interaction is learned as rating 1.0 and ``negatives`` random items as 0.0; scoring the catalog
    calls river's ``predict_one`` once per item, so it is slow (evaluate it on a prefix).

    >>> from learners.types import Item
    >>> m = RiverBiasedMF(seed=0); m.add_items([Item("a", ""), Item("b", "")])
    >>> m.learn_one(Interaction("u", "a")); len(m.recommend(Query("u"), k=2))
    2
    """

    def __init__(self, n_factors: int = 10, learning_rate: float = 0.05, negatives: int = 1, seed: int = 0) -> None:
        super().__init__()
        from river import optim, reco

        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.seed = seed
        self._rng = random.Random(seed)
        self.model: Any = reco.BiasedMF(n_factors=n_factors, bias_optimizer=optim.SGD(learning_rate),
                                        latent_optimizer=optim.SGD(learning_rate), seed=seed)

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self._register(x.item_id)
        self.model.learn_one(x.user_id, x.item_id, 1.0)
        for _ in range(self.negatives):
            if self.item_ids:
                self.model.learn_one(x.user_id, self._rng.choice(self.item_ids), 0.0)
        self._version += 1

    def _score_all(self, q: Query) -> FloatArray:
        return np.array([self.model.predict_one(q.user_id, i) for i in self.item_ids], dtype=np.float32)
