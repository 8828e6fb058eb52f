"""A bounded replay buffer of past training examples, mixed into every update against forgetting."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Example:
    """One next-item training example: item indices seen before (oldest first), the target index, its weight."""

    history: tuple[int, ...]
    target: int
    weight: float = 1.0


class ReplayBuffer:
    """Reservoir sampling (Vitter's algorithm R): every example seen so far is kept with equal probability.

    ``strategy="fifo"`` keeps the most recent ``capacity`` examples instead.

    >>> buf = ReplayBuffer(capacity=3, seed=0)
    >>> for t in range(10):
    ...     buf.add(Example((), t))
    >>> len(buf), buf.seen
    (3, 10)
    >>> len(buf.sample(2))
    2
    """

    def __init__(self, capacity: int = 20000, strategy: str = "reservoir", seed: int = 0) -> None:
        if strategy not in ("reservoir", "fifo"):
            raise ValueError(f"replay strategy: expected 'reservoir' or 'fifo', got {strategy!r}")
        self.capacity = capacity
        self.strategy = strategy
        self.seed = seed
        self.seen = 0
        self._items: list[Example] = []
        self._next = 0
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, ex: Example) -> None:
        """Offer one example to the buffer."""
        self.seen += 1
        if self.capacity <= 0:
            return
        if len(self._items) < self.capacity:
            self._items.append(ex)
        elif self.strategy == "fifo":
            self._items[self._next] = ex
            self._next = (self._next + 1) % self.capacity
        else:
            j = self._rng.randrange(self.seen)
            if j < self.capacity:
                self._items[j] = ex

    def extend(self, exs: list[Example]) -> None:
        for ex in exs:
            self.add(ex)

    def sample(self, n: int) -> list[Example]:
        """Up to ``n`` examples drawn uniformly with replacement (empty if the buffer is empty)."""
        if not self._items or n <= 0:
            return []
        return [self._items[self._rng.randrange(len(self._items))] for _ in range(n)]

    # -- state: the examples as four arrays (a checkpoint wrote 20,000 Example objects one entry at a time) -----
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        items: list[Example] = state.pop("_items")
        histories = [e.history for e in items]
        state["_packed"] = {
            "lengths": np.fromiter(map(len, histories), dtype=np.int64, count=len(items)),
            "histories": np.fromiter(itertools.chain.from_iterable(histories), dtype=np.int64),
            "targets": np.array([e.target for e in items], dtype=np.int64),
            "weights": np.array([e.weight for e in items], dtype=np.float64),
        }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A state of :meth:`__getstate__`, or an older one holding the ``Example`` objects themselves.

        >>> buf = ReplayBuffer(capacity=4, seed=1)
        >>> buf.extend([Example((1, 2), 3), Example((), 4, 0.5)])
        >>> back = ReplayBuffer.__new__(ReplayBuffer)
        >>> back.__setstate__(buf.__getstate__())
        >>> back._items == buf._items, back.seen
        (True, 2)
        """
        state = dict(state)
        packed = state.pop("_packed", None)
        if packed is not None:
            ends = np.cumsum(packed["lengths"]).tolist()
            flat = packed["histories"].tolist()
            state["_items"] = [Example(tuple(flat[a:b]), t, w) for a, b, t, w in zip(
                [0, *ends][:-1], ends, packed["targets"].tolist(), packed["weights"].tolist(), strict=True)]
        self.__dict__.update(state)
