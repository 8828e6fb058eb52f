"""Streaming side signals blended into the adapter's scores with learned weights.

* :class:`CooccurrenceSignal`: incremental item-item co-occurrence within users' recent sequences, scored as a
  cosine-normalised sum over the user's latest items (an item-kNN signal), optionally compressed by
  ``log1p(log_scale * score)`` so that one shared neighbour of a rarely seen item still counts (cold items).
  A dense (items x items) tensor for small catalogs; past a size the owner picks (:meth:`~CooccurrenceSignal.bound`)
  the per-item top neighbours of :class:`~learners.cooccurrence.BoundedCooccurrence`, O(items x neighbours).
* :class:`PopularitySignal`: exponentially decayed item counts (half-life in events), as ``log1p``.

Both grow with the catalog; they are model state (pickled with the learner).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from learners.config import check_ranges, setting
from learners.cooccurrence import BoundedCooccurrence, CosineSums
from learners.tensors import take

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CooccurrenceConfig:
    """The co-occurrence side signal (the ``cooccurrence`` setting; ``STREAMREC_COOCCURRENCE__<FIELD>``).

    window, recent, log_scale
        Pairs counted within ``window`` recent items, scored from the user's latest ``recent`` items, compressed by
        ``log1p(log_scale * score)`` (0: raw; 30 raised cold-item HR@10 by a third on the first half of ML-100K).
        ``window`` 0: no co-occurrence signal (nor kNN fusion, nor co-occurrence candidates).
    dense_items, neighbours
        Up to ``dense_items`` items the counts are a dense items x items matrix (exact); past it each item keeps
        its ``neighbours`` heaviest co-occurring items (:class:`~learners.cooccurrence.BoundedCooccurrence`,
        memory O(items x neighbours)), starting from the dense counts' top neighbours.
    distance_decay
        A pair whose history item lies d items before the target counts ``1 / (1 + decay * d)``. 0.1 raised
        HR@10 by 0.6% and NDCG@10 by 0.8% on the first half of ML-100K (3 seeds, each better).
    """

    window: int = setting(20, "Pairs counted within this many of a user's recent items (0: no co-occurrence signal).")
    recent: int = setting(5, "Latest items of a user the co-occurrence score reads.")
    dense_items: int = setting(4096, "Up to this many items the counts are an exact items x items matrix; past it "
                               "per-item top neighbours.")
    neighbours: int = setting(64, "Co-occurring items kept per item past `dense_items`.")
    log_scale: float = setting(30.0, "Scores compressed as log1p(log_scale * score) (0: raw).")
    distance_decay: float = setting(0.1, "A pair d items apart counts 1 / (1 + distance_decay * d).")

    def __post_init__(self) -> None:
        check_ranges(self, "cooccurrence", {"window": ">=0", "recent": ">=1", "dense_items": ">=0",
                                            "neighbours": ">=1", "log_scale": ">=0", "distance_decay": ">=0"})


@dataclass(frozen=True)
class PopularityConfig:
    """The decayed-popularity side signal (the ``popularity`` setting; ``STREAMREC_POPULARITY__<FIELD>``)."""

    half_life: float = setting(5000.0, "Half-life, in events, of the decayed item counts (0: no popularity signal).")

    def __post_init__(self) -> None:
        check_ranges(self, "popularity", {"half_life": ">=0"})


class CooccurrenceSignal:
    """Item-item co-occurrence counts over a window of each user's recent items.

    >>> s = CooccurrenceSignal(capacity=4, window=2, recent=2, device=torch.device("cpu"))
    >>> idx = torch.tensor([[0, 1]]); mask = torch.tensor([[True, True]])
    >>> s.update(idx, mask, torch.tensor([2]))
    >>> f = s.features(torch.tensor([[0, 0]]), torch.tensor([[False, True]]), 4)
    >>> bool(f[0, 2] > 0), float(f[0, 3])
    (True, 0.0)
    """

    distance_decay = 0.0  # class defaults: signals pickled before these existed
    bounded: BoundedCooccurrence | None = None  # set by bound(): the per-item top-neighbour counts

    def __init__(self, capacity: int, window: int = 20, recent: int = 10,
                 device: torch.device | None = None, log_scale: float = 0.0, distance_decay: float = 0.0) -> None:
        self.log_scale = log_scale
        self.distance_decay = distance_decay
        self.window = window
        self.recent = recent
        self.device = device or torch.device("cpu")
        self.counts = torch.zeros(capacity, capacity, device=self.device)
        self.item_counts = torch.zeros(capacity, device=self.device)

    @property
    def capacity(self) -> int:
        return self.bounded.capacity if self.bounded is not None else int(self.counts.shape[0])

    def bound(self, neighbours: int) -> None:
        """Switch to :class:`~learners.cooccurrence.BoundedCooccurrence` with ``neighbours`` slots per item, each
        item keeping its heaviest neighbours of the dense counts so far (exact); the dense matrix is freed."""
        if self.bounded is not None:
            return
        counts = self.counts.cpu().numpy()
        self.bounded = BoundedCooccurrence.from_dense(counts, self.item_counts.cpu().numpy(), neighbours)
        log.info("co-occurrence: %d items, from a dense matrix (%.0f MB) to %d neighbours per item (%.0f MB)",
                 counts.shape[0], counts.nbytes / 1e6, neighbours, self.bounded.nbytes / 1e6)
        self.counts = torch.zeros(0, 0, device=self.device)
        self.item_counts = torch.zeros(0, device=self.device)

    def empty_like(self) -> CooccurrenceSignal:
        """A signal with no counts, of the same capacity, kind (dense or bounded) and hyper-parameters."""
        out = CooccurrenceSignal(0 if self.bounded is not None else self.capacity, self.window, self.recent,
                                 self.device, self.log_scale, self.distance_decay)
        if self.bounded is not None:
            out.bounded = BoundedCooccurrence(self.bounded.neighbours, self.capacity, self.bounded.score_lower_bound)
        return out

    def item_count_tensor(self, n: int) -> torch.Tensor:
        """(n,) interactions per item (the cosine's n_i)."""
        if self.bounded is not None:
            return torch.as_tensor(self.bounded.item_counts[:n], device=self.device)
        return self.item_counts[:n]

    def grow(self, capacity: int) -> None:
        b = self.bounded
        if b is not None:  # by a quarter at least: items arrive a few at a time, and a copy costs O(items x K)
            if capacity > b.capacity:
                b.grow(max(capacity, b.capacity + b.capacity // 4))
            return
        old = self.counts.shape[0]
        if capacity <= old:
            return
        c = torch.zeros(capacity, capacity, device=self.device)
        c[:old, :old] = self.counts
        self.counts = c
        n = torch.zeros(capacity, device=self.device)
        n[:old] = self.item_counts
        self.item_counts = n

    def update(self, idx: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> None:
        """Count (history item, target) pairs for the last ``window`` items of each right-aligned history.

        A pair counts ``1 / (1 + distance_decay * d)``, where d is 0 for the latest history item, 1 for the one
        before, and so on (0: every pair counts 1).
        A repeat of the target in its own history is not a pair: self-counts C[i, i] never score another item
        (a user's history items are excluded from recommendations) but inflate item i's own training logit
        for every user who had i, which drives i's learned bias down (one user re-clicking i buries it).
        """
        if self.bounded is not None:
            self.bounded.update(idx.cpu().numpy(), mask.cpu().numpy(), targets.cpu().numpy(), self.distance_decay,
                                self.window)
            return
        w = min(self.window, idx.shape[1])
        h = idx[:, -w:]
        t = targets.unsqueeze(1).expand_as(h)
        m = mask[:, -w:] & (h != t)
        rows, cols = h[m], t[m]
        distance = torch.arange(w - 1, -1, -1, device=self.device, dtype=torch.float32).expand_as(h)[m]
        weight = 1.0 / (1.0 + self.distance_decay * distance)
        cap = self.counts.shape[1]
        flat = torch.cat([rows * cap + cols, cols * cap + rows])  # both directions; index_add_ beats index_put_
        self.counts.view(-1).index_add_(0, flat, torch.cat([weight, weight]))
        self.item_counts.index_add_(0, targets, torch.ones(targets.shape[0], device=self.device))

    def features(self, idx: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
        """(B, n) scores: sum over the latest ``recent`` history items j of C[j, i] / sqrt(n_j n_i)."""
        return self.scaled(self.cosine(idx, mask, n, self.recent))  # counts carry no gradient: in place is safe

    def features_at(self, idx: torch.Tensor, mask: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """:meth:`features` at each row's candidates ``cand`` (B, C), or the shared sorted items (S,) (see
        :meth:`cosine_at`)."""
        return self.scaled(self.cosine_at(idx, mask, cand, self.recent))

    def scaled(self, raw: torch.Tensor) -> torch.Tensor:
        """The features of cosines ``raw`` (:meth:`cosine` over the latest ``recent`` items), in place."""
        return raw.mul_(self.log_scale).log1p_() if self.log_scale > 0 else raw

    def cosine_at(self, idx: torch.Tensor, mask: torch.Tensor, cand: torch.Tensor, recent: int,
                  sums: CosineSums | None = None) -> torch.Tensor:
        """:meth:`cosine` at each row's candidates ``cand`` (B, C) only (-1: 0), or at the sorted items ``cand`` (S,)
        shared by every row: O(B x (recent x K + C)) when bounded (``sums``: the bounded structure's
        :meth:`~learners.cooccurrence.BoundedCooccurrence.sums` of these rows, when already computed); a dense
        signal (small catalogs) computes its rows and picks."""
        r = min(recent, idx.shape[1])
        if self.bounded is not None:
            h, m, c = idx[:, -r:].cpu().numpy(), mask[:, -r:].cpu().numpy(), cand.cpu().numpy()
            out = self.bounded.cosine_shared(h, m, c) if c.ndim == 1 else self.bounded.cosine_at(h, m, c, sums)
            return torch.from_numpy(out).to(self.device)
        full = self.cosine(idx, mask, self.capacity, recent)
        if cand.ndim == 1:
            return full[:, cand]
        return torch.where(cand >= 0, full.gather(1, cand.clamp(min=0)), torch.zeros((), device=self.device))

    def cosine(self, idx: torch.Tensor, mask: torch.Tensor, n: int, recent: int) -> torch.Tensor:
        """(B, n): sum over the latest ``recent`` history items j of C[j, i] / sqrt(n_j n_i) (item kNN)."""
        r = min(recent, idx.shape[1])
        h = idx[:, -r:]
        if self.bounded is not None:  # (B, r x neighbours) entries scattered into (B, n): no n x n matrix
            dense = self.bounded.cosine(h.cpu().numpy(), mask[:, -r:].cpu().numpy(), n)
            return torch.from_numpy(dense).to(self.device)
        m = mask[:, -r:].to(self.counts.dtype)
        norm_j = (self.item_counts[h] + 1.0).rsqrt() * m  # (B, r)
        # weighted sum of the r rows without materialising them as (B, r, capacity): 10x faster than gather + bmm
        pooled = torch.nn.functional.embedding_bag(h.contiguous(), self.counts, per_sample_weights=norm_j.contiguous(),
                                                   mode="sum")
        return pooled[:, :n] * (self.item_counts[:n] + 1.0).rsqrt()


class PopularitySignal:
    """Decayed item counts: each event adds 1 to its item, every count halves every ``half_life`` events.

    >>> p = PopularitySignal(capacity=3, half_life=1.0, device=torch.device("cpu"))
    >>> p.update(torch.tensor([0, 0]))
    >>> p.update(torch.tensor([1]))
    >>> [round(x, 3) for x in p.decayed[:3].tolist()]
    [1.0, 1.0, 0.0]
    """

    def __init__(self, capacity: int, half_life: float = 5000.0, device: torch.device | None = None) -> None:
        self.half_life = half_life
        self.device = device or torch.device("cpu")
        self.decayed = torch.zeros(capacity, device=self.device)

    def grow(self, capacity: int) -> None:
        old = self.decayed.shape[0]
        if capacity > old:
            d = torch.zeros(capacity, device=self.device)
            d[:old] = self.decayed
            self.decayed = d

    def update(self, targets: torch.Tensor) -> None:
        self.decayed *= 0.5 ** (targets.shape[0] / self.half_life)
        self.decayed.index_add_(0, targets, torch.ones(targets.shape[0], device=self.device))

    def features(self, n: int) -> torch.Tensor:
        return torch.log1p(self.decayed[:n])

    def features_at(self, rows: torch.Tensor) -> torch.Tensor:
        """:meth:`features` of item index ``rows`` (any shape; -1: 0)."""
        return torch.where(rows >= 0, torch.log1p(take(self.decayed, rows.clamp(min=0))), torch.zeros((), device=self.device))
