"""What was shown and what was clicked: per-item exposure and attributed-click counts.

The worker tells its learner, once per micro-batch, which items it sent (every list) and which of them were
clicked (events whose ``context.rec_id`` names a list the user was sent, attributed by ``stream.processor``). The
counts are the learner's feedback from what it showed: an item's exposures are how often the engine has looked
at it through a user's eyes, its clicks how often that paid off. They live in contiguous arrays that grow with
the catalog, pickled with the learner.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ExposureStats:
    """Exposures and attributed clicks per item index.

    >>> e = ExposureStats(); e.grow(3)
    >>> e.observe(shown=[[0, 1], [1, 2]], clicked=[(1, 0)])
    >>> e.exposures.tolist(), e.clicks.tolist(), e.lists, e.attributed
    ([1.0, 2.0, 1.0], [0.0, 1.0, 0.0], 2, 1)
    """

    def __init__(self) -> None:
        self.exposures = np.zeros(0, dtype=np.float64)
        self.clicks = np.zeros(0, dtype=np.float64)
        self.lists = 0  # lists sent
        self.attributed = 0  # clicks attributed to a list

    def grow(self, n: int) -> None:
        """Room for ``n`` items (new ones never shown)."""
        if n > len(self.exposures):
            extra = np.zeros(n - len(self.exposures))
            self.exposures = np.concatenate([self.exposures, extra])
            self.clicks = np.concatenate([self.clicks, extra])

    def observe(self, shown: Sequence[Sequence[int]], clicked: Sequence[tuple[int, int]]) -> None:
        """``shown``: the item indices of each list sent; ``clicked``: (item index, 0-based position) of each
        attributed click. Unknown items (-1) are skipped."""
        flat = np.asarray([i for lst in shown for i in lst if i >= 0], dtype=np.int64)
        if len(flat):
            self.grow(int(flat.max()) + 1)
            np.add.at(self.exposures, flat, 1.0)
        self.lists += len(shown)
        hit = np.asarray([i for i, _ in clicked if i >= 0], dtype=np.int64)
        if len(hit):
            self.grow(int(hit.max()) + 1)
            np.add.at(self.clicks, hit, 1.0)
        self.attributed += len(hit)
