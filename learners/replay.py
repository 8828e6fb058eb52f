"""A bounded replay buffer of past training examples, mixed into every update against forgetting."""

from __future__ import annotations

import random
from dataclasses import dataclass


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
