"""The streamrec learner: online adapter heads over frozen text embeddings, with a replay buffer.

Items are embedded once by the frozen encoder; the trainable parts (:mod:`learners.heads`) adapt those
embeddings (:class:`AdapterHead`) and pool a user's recent items into a user vector (:class:`AttentionUserModel`).
Scores are dot products over the whole catalog plus learned side signals, re-ranked by rank fusion, and a
:class:`~learners.cold.ColdGate` gives cold items places in the lists of users likely to pick one. Each update
is one Adam step (a few while the model is young) on a micro-batch of next-item examples (softmax over the
catalog less each example's history), mixed with examples from the :class:`~learners.replay.ReplayBuffer`.
Recommendations are scored with an exponential moving average of the trained parameters (``ema_decay``), which
smooths the noise of single online steps.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from learners import explain
from learners.cold import ColdGate
from learners.encoder import resolve_device
from learners.exploration import (
    Boost,
    ExplorationConfig,
    Explored,
    ExposureStats,
    boosted_places,
    epsilon_places,
    exposure_boost,
)
from learners.heads import AdapterHead, AttentionUserModel
from learners.replay import Example, ReplayBuffer
from learners.retrieval import CandidateRetriever, RetrievalConfig
from learners.sharing import Contribution, DeltaTracker, rounds
from learners.signals import CooccurrenceSignal, PopularitySignal
from learners.types import (
    BaseLearner,
    Because,
    FloatArray,
    Interaction,
    Item,
    Query,
    Recommendation,
    TextEncoder,
    pick_top_k,
    reciprocal_rank_fusion,
    run_stages,
    top_k,
    top_sorted,
)

log = logging.getLogger(__name__)
INTENT_CACHE = 10_000  # request texts whose embeddings the learner keeps


def right_aligned(codes: Sequence[int], lengths: Sequence[int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows given one after another in ``codes`` (``lengths`` each; -1 = unknown, dropped), each row's last
    ``width`` codes right-aligned in a (rows, width) matrix, and the mask of filled cells.

    >>> idx, mask = right_aligned([5, 6, -1, 7, 8, 9], [3, 0, 3], 2)
    >>> idx.tolist(), mask.tolist()
    ([[5, 6], [0, 0], [8, 9]], [[True, True], [False, False], [True, True]])
    """
    rows = len(lengths)
    c = np.asarray(codes, dtype=np.int64)
    row = np.repeat(np.arange(rows), np.asarray(lengths, dtype=np.int64))
    keep = c >= 0
    row, c = row[keep], c[keep]
    ends = np.cumsum(np.bincount(row, minlength=rows))
    from_right = ends[row] - np.arange(len(row)) - 1  # 0 for a row's last code
    take = from_right < width
    col = width - 1 - from_right[take]
    idx = np.zeros((rows, width), dtype=np.int64)
    mask = np.zeros((rows, width), dtype=bool)
    idx[row[take], col] = c[take]
    mask[row[take], col] = True
    return idx, mask


def principal_basis(emb: torch.Tensor, k: int, seed: int = 0, svd_max_rows: int = 65_536) -> torch.Tensor:
    """An orthonormal (dim, k) basis: the k leading right singular vectors of ``emb`` (rows = items), completed
    with seeded random directions when ``emb`` has rank below k.

    Up to ``svd_max_rows`` rows, from the SVD of ``emb`` in float64; past it, from the eigenvectors of the (dim, dim)
    Gram matrix ``emb.T @ emb`` summed in float64 over chunks of rows (the same directions, signs aside): the SVD
    of a million 384-wide rows held 3 GB of left singular vectors and a float64 copy besides, and took a minute.

    >>> e = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> b = principal_basis(e, 1); [round(abs(x), 3) for x in b[:, 0].tolist()]
    [1.0, 0.0, 0.0]
    >>> b = principal_basis(e, 3); bool(torch.allclose(b.T @ b, torch.eye(3), atol=1e-5))
    True
    >>> [round(abs(x), 3) for x in principal_basis(e, 1, svd_max_rows=1)[:, 0].tolist()]
    [1.0, 0.0, 0.0]
    """
    if emb.shape[0] <= svd_max_rows:
        _, sv, vt = torch.linalg.svd(emb.double().cpu(), full_matrices=False)
    else:
        gram = torch.zeros(emb.shape[1], emb.shape[1], dtype=torch.float64)
        for i in range(0, emb.shape[0], svd_max_rows):
            part = emb[i : i + svd_max_rows].double().cpu()
            gram += part.T @ part
        eig, vecs = torch.linalg.eigh(gram)  # ascending
        sv, vt = eig.flip(0).clamp(min=0.0).sqrt(), vecs.flip(1).T
    rank = int((sv > sv.max() * 1e-6).sum()) if sv.numel() else 0
    top = vt[: min(k, rank)].T
    if top.shape[1] < k:
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.cat([top, torch.randn(emb.shape[1], k - top.shape[1], generator=g,
                                                           dtype=torch.float64)], dim=1))
        top = torch.cat([top, q[:, top.shape[1]:]], dim=1)
    basis: torch.Tensor = top.float().to(emb.device)
    return basis


#: An attribute value counts for an item once at least this many items have it (one: the item's own vector again).
ATTRIBUTE_MIN_ITEMS = 2
SIMILAR_CANDIDATES = 200  # past retrieval.exact_max_items: the index's nearest items similar_items re-ranks


def padded(t: torch.Tensor, capacity: int) -> torch.Tensor:
    """``t``'s rows (detached), then zero rows up to ``capacity``."""
    out = torch.zeros((capacity, *t.shape[1:]), device=t.device, dtype=t.dtype)
    out[: t.shape[0]] = t.detach()
    return out


def unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of a 1-D index tensor and each entry's position among them (torch 2.13's unique took
    1.5 ms for the ~10^5 indices of a batch's candidates on 2 cores, numpy's 5.5 to 6.6 ms).

    >>> [t.tolist() for t in unique_rows(torch.tensor([5, 2, 5, 9]))]
    [[2, 5, 9], [1, 0, 1, 2]]
    """
    u, inv = torch.unique(x, sorted=True, return_inverse=True)
    return u, inv.reshape(-1)


class AdapterRecommender(BaseLearner):
    """Online next-item recommender over a frozen encoder (the default streamrec learner).

    Parameters
    ----------
    encoder
        A frozen :class:`~learners.types.TextEncoder`; needed only to add items by text.
    dim
        Width of the adapted space.
    seq_len
        Most recent items read from a history.
    learning_rate, weight_decay
        Adam settings for the adapter heads.
    replay_capacity, replay_ratio
        Size of the reservoir buffer; replayed examples mixed in per new example.
    temperature
        Initial logit scale (learned).
    cooccurrence_window, cooccurrence_recent, cooccurrence_log_scale
        The co-occurrence side signal (:class:`~learners.signals.CooccurrenceSignal`): pairs counted within this
        many recent items, scored from the user's latest ``recent`` items, compressed by
        ``log1p(log_scale * score)`` (0: raw; 30 raised cold-item HR@10 by a third on the first half of ML-100K).
    cooccurrence_dense_items, cooccurrence_neighbours
        Up to ``dense_items`` items the counts are a dense items x items matrix (exact); past it each item keeps
        its ``neighbours`` heaviest co-occurring items (:class:`~learners.cooccurrence.BoundedCooccurrence`,
        memory O(items x neighbours)), starting from the dense counts' top neighbours.
    cooccurrence_distance_decay
        A pair whose history item lies d items before the target counts ``1 / (1 + decay * d)``. 0.1 raised
        HR@10 by 0.6% and NDCG@10 by 0.8% on the first half of ML-100K (3 seeds, each better).
    popularity_half_life
        Half-life, in events, of the decayed-popularity side signal.
    text_dims
        The frozen embeddings are projected onto their ``text_dims`` leading principal directions (uncentred),
        fitted once on the first catalog batch the learner sees and fixed from then on (0, or not below the
        encoder's width: used whole). 64 of MiniLM's 384 raised HR@10 by 1.1% and cold-item HR@10 by 16% on the
        first half of ML-100K (3 seeds), and cut the cost of the item table; a first batch smaller than
        ``text_dims`` items completes the basis with random directions.
    ema_decay
        Recommendations use parameters averaged as ``avg = decay * avg + (1 - decay) * trained`` after every
        update (0: the trained parameters themselves). 0.9 (about the last ten updates) raised HR@10 by 2% on the
        first half of ML-100K; it also delays the reaction to drift by as many updates.
    fusion_weight, fusion_recent, fusion_popularity
        The final list re-ranks the model's top ``max(40, k + 16)`` by reciprocal rank fusion with the item-kNN
        ranking of the co-occurrence counts over the user's latest ``fusion_recent`` items and with the
        decayed-popularity ranking: ``1/(20 + model rank) + fusion_weight/(20 + kNN rank) +
        fusion_popularity/(20 + popularity rank)`` (both 0: the model's order). 0.5 and 0.3 raised HR@10 by 1.9%
        on the first half of ML-100K (tuned there); the recommendation's scores are then the fused values.
    early_events, early_steps
        While the model has learned from fewer than ``early_events`` events, each micro-batch takes
        ``early_steps`` Adam steps (each with its own replay draw) instead of one: a young model learns from its
        first few thousand events faster. 5,000 and 4 raised cold-item HR@10 by 13% and HR@10 by 0.6% on the
        first half of ML-100K (2 seeds), for 60 extra steps in all; a larger learning rate instead did not help.
    retrieval
        Past ``retrieval.exact_max_items`` items (:class:`~learners.retrieval.RetrievalConfig`): two-stage
        recommendation (candidates from :class:`~learners.retrieval.CandidateRetriever`, the full model on them)
        and sampled-softmax training; below, every query scores the whole catalog and each step takes the full
        softmax.
    cold_threshold, cold_gate, cold_slots
        The :class:`~learners.cold.ColdGate`: an item with fewer than ``cold_threshold`` interactions is cold;
        when the online estimate that a user's next item is cold reaches ``cold_gate``, the last ``cold_slots``
        places of their list go to the best-scored cold items (``cold_slots`` 0: off). 0.5 and 4 raised
        cold-item HR@10 by 9% for 0.3% of HR@10 on the first half of ML-100K (2 seeds).
    attribute_slots, attribute_scale
        Up to ``attribute_slots`` attribute values per item (``Item.attributes``, e.g. ``director=...``) add the
        mean of learned vectors and biases, one per value, shared by every item with that value, times
        ``attribute_scale`` (:class:`~learners.heads.AdapterHead`); a value only one item has so far is left out
        (it would be a second vector of that item). 0 slots: items' attributes are ignored.
    device
        ``auto``, ``cpu`` or ``cuda[:N]``.
    seed
        Seeds parameter init and replay sampling.

    Examples
    --------
    >>> from learners.encoder import HashingEncoder
    >>> m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu")
    >>> m.add_items([Item("a", "space opera"), Item("b", "space opera two"), Item("c", "cooking show")])
    >>> m.learn_many([Interaction("u", "b")], [("a",)])
    >>> m.model_version, len(m.recommend(Query("u", ("a",), frozenset({"a"})), k=2))
    (1, 2)
    """

    # class defaults: checkpoints written before these existed
    _train_table: tuple[torch.Tensor, torch.Tensor] | None = None
    _avg: dict[str, torch.Tensor] | None = None
    _averaged: tuple[AdapterHead, AttentionUserModel] | None = None
    _basis: torch.Tensor | None = None
    ema_decay = 0.0
    text_dims = 0
    fusion_weight = 0.0
    fusion_recent = 10
    fusion_popularity = 0.0
    early_events = 0
    early_steps = 1
    _n_learned = 0
    _gate: ColdGate | None = None
    _exposure: ExposureStats | None = None  # made on first feedback (checkpoints from before it have none)
    exploration = ExplorationConfig()  # class defaults: learners pickled before exploration existed
    intent_weight = 4.0
    _intents: OrderedDict[str, np.ndarray] | None = None  # request text -> frozen embedding (not checkpointed)
    _explore_rng: np.random.Generator | None = None
    last_explored: list[Explored] = []  # noqa: RUF012 - replaced, never mutated: see recommend_many
    cooccurrence_dense_items = 4096
    cooccurrence_neighbours = 64
    retrieval = RetrievalConfig(exact_max_items=2**62)  # checkpoints from before two-stage: exact, as they were
    _retriever: CandidateRetriever | None = None
    _sparse_opt: torch.optim.SparseAdam | None = None
    _sharing: DeltaTracker | None = None
    attribute_slots = 0  # checkpoints from before item attributes: none
    _attr_index: dict[str, int] | None = None  # attribute value -> row of the head's attribute tables (0: padding)
    _attr_rows: torch.Tensor | None = None  # (capacity, attribute_slots) int32 value rows of each item, 0-padded:
    # made when the first item with attributes arrives (a catalog without any pays nothing)
    _attr_support: torch.Tensor | None = None  # items with each value (by row)
    _attr_width = 0  # the most values an item has had (the rows' columns past it are all padding)
    attribute_scale = 0.5

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        dim: int = 64,
        seq_len: int = 50,
        learning_rate: float = 0.004,
        weight_decay: float = 0.0,
        replay_capacity: int = 20000,
        replay_ratio: float = 1.0,
        temperature: float = 10.0,
        cooccurrence_window: int = 20,
        cooccurrence_recent: int = 5,
        cooccurrence_dense_items: int = 4096,
        cooccurrence_neighbours: int = 64,
        cooccurrence_log_scale: float = 30.0,
        cooccurrence_distance_decay: float = 0.1,
        popularity_half_life: float = 5000.0,
        ema_decay: float = 0.9,
        text_dims: int = 64,
        fusion_weight: float = 0.5,
        fusion_recent: int = 10,
        fusion_popularity: float = 0.3,
        early_events: int = 5000,
        early_steps: int = 4,
        cold_threshold: int = 5,
        cold_gate: float = 0.5,
        cold_slots: int = 4,
        retrieval: RetrievalConfig | None = None,
        exploration: ExplorationConfig | None = None,
        intent_weight: float = 4.0,
        attribute_slots: int = 0,
        attribute_scale: float = 0.5,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim = dim
        self.seq_len = seq_len
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.replay_capacity = replay_capacity
        self.replay_ratio = replay_ratio
        self.temperature = temperature
        self.cooccurrence_window = cooccurrence_window
        self.cooccurrence_recent = cooccurrence_recent
        self.cooccurrence_dense_items = cooccurrence_dense_items
        self.cooccurrence_neighbours = cooccurrence_neighbours
        self.cooccurrence_log_scale = cooccurrence_log_scale
        self.cooccurrence_distance_decay = cooccurrence_distance_decay
        self.popularity_half_life = popularity_half_life
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected a number in [0, 1), got {ema_decay!r}")
        self.ema_decay = ema_decay
        self.text_dims = text_dims
        self.fusion_weight = fusion_weight
        self.fusion_recent = fusion_recent
        self.fusion_popularity = fusion_popularity
        self.early_events = early_events
        self.early_steps = early_steps
        self.cold_threshold = cold_threshold
        self.cold_gate = cold_gate
        self.cold_slots = cold_slots
        self.retrieval = retrieval or RetrievalConfig()
        self._retriever = None  # made when the catalog passes retrieval.exact_max_items
        self.exploration = exploration or ExplorationConfig()
        self.intent_weight = intent_weight
        if attribute_slots < 0:
            raise ValueError(f"attribute_slots: expected a count >= 0, got {attribute_slots!r}")
        self.attribute_slots = attribute_slots
        if not attribute_scale > 0:
            raise ValueError(f"attribute_scale: expected a number > 0, got {attribute_scale!r}")
        self.attribute_scale = attribute_scale
        self._explore_rng = np.random.default_rng(seed + 7919)
        self.device = device
        self.seed = seed
        self.replay = ReplayBuffer(replay_capacity, seed=seed)
        self.n_skipped = 0
        self._n_learned = 0  # events learned from (early_events)
        self._gate = ColdGate(cold_threshold, cold_gate, cold_slots) if cold_slots > 0 else None
        self._dev = resolve_device(device)
        self._emb: torch.Tensor | None = None  # (capacity, in_dim) frozen embeddings
        self._head: AdapterHead | None = None
        self._user: AttentionUserModel | None = None
        self._log_temp = nn.Parameter(torch.tensor(math.log(temperature), device=self._dev))
        # learned blend weights of the side signals: [co-occurrence, decayed popularity]
        self._blend = nn.Parameter(torch.tensor([1.0, 0.5], device=self._dev))
        self._cooc: CooccurrenceSignal | None = None
        self._pop: PopularitySignal | None = None
        self._opt: torch.optim.Optimizer | None = None
        self._sparse_opt = None  # the per-item vectors' optimizer past retrieval.exact_max_items (_enter_large)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None  # item table for scoring (no graph)
        self._train_table: tuple[torch.Tensor, torch.Tensor] | None = None  # the same, with graph, for _step
        self._avg: dict[str, torch.Tensor] | None = None  # averaged parameters for scoring (ema_decay > 0)
        self._averaged: tuple[AdapterHead, AttentionUserModel] | None = None  # modules over _avg's tensors
        self._basis: torch.Tensor | None = None  # (encoder dim, text_dims), fixed by the first catalog batch
        self.last_loss = float("nan")
        self._boost_steps = 0
        self._boost_factor = 1.0

    # -- catalog ---------------------------------------------------------------------------------------------
    def add_items(self, items: Sequence[Item]) -> None:
        """Encode new items' text once (in one batch) and make them recommendable."""
        new = [it for it in dict((it.item_id, it) for it in items).values() if it.item_id not in self.item_index]
        if not new:
            return
        if self.encoder is None:
            raise ValueError("encoder: this learner has no encoder attached; call attach_encoder() first")
        self.add_item_embeddings([it.item_id for it in new], self.encoder.encode([it.text for it in new]),
                                 [it.attributes for it in new])

    def add_item_embeddings(self, item_ids: Sequence[str], embeddings: FloatArray,
                            attributes: Sequence[Sequence[str]] | None = None) -> None:
        """Add items whose frozen embeddings were computed elsewhere (e.g. cached in a table). ``attributes``: each
        item's attribute values (``key=value``); those of an item already known replace its values."""
        if attributes is not None and len(attributes) != len(item_ids):
            raise ValueError(f"attributes: expected one entry per item ({len(item_ids)}), got {len(attributes)}")
        fresh = [(i, row) for row, i in enumerate(item_ids) if i not in self.item_index]
        if not fresh:
            self._set_attributes(item_ids, attributes)
            return
        emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)[[r for _, r in fresh]], device=self._dev)
        if self._head is None:
            if 0 < self.text_dims < emb.shape[1]:
                self._basis = principal_basis(emb, self.text_dims, self.seed)
            self._build(self.text_dims if self._basis is not None else emb.shape[1], capacity=max(1024, 2 * len(fresh)))
        if self._basis is not None:
            emb = emb @ self._basis
        assert self._emb is not None
        n0 = len(self.item_ids)
        need = n0 + len(fresh)
        if need > self._emb.shape[0]:
            cap = self._emb.shape[0]  # double while small; past 65,536 rows by a quarter (every per-item tensor
            self._grow(max(need, 2 * cap if cap < 65_536 else cap + cap // 4))  # and its Adam moments grows with it)
        self._emb[n0:need] = emb
        for i, _ in fresh:
            self._register(i)
        self._set_attributes(item_ids, attributes)
        if self._gate is not None:
            self._gate.grow(need)
        self._fit_cooccurrence(need)
        self._cache = self._train_table = None
        if self._retriever is not None:
            rows = np.arange(n0, need)
            self._retriever.items_added(need, rows, self._index_table(rows))
        elif self._large():
            self._ensure_retriever()  # the catalog just passed retrieval.exact_max_items: index it now

    def _set_attributes(self, item_ids: Sequence[str], attributes: Sequence[Sequence[str]] | None) -> None:
        """Give the (registered) items ``item_ids`` their first ``attribute_slots`` attribute values, registering
        values not seen before (their shared vectors start at zero)."""
        if attributes is None or self._attr_index is None or self._head is None or self._emb is None:
            return  # attribute_slots 0 (no tables made by _build)
        if self._attr_rows is None:
            if not any(attributes):
                return
            self._attr_rows = torch.zeros(self._emb.shape[0], self.attribute_slots, dtype=torch.int32, device=self._dev)
        index = self._attr_index
        at: list[int] = []
        rows: list[list[int]] = []
        for item_id, values in zip(item_ids, attributes, strict=True):
            row = [index.setdefault(v, len(index)) for v in list(dict.fromkeys(values))[: self.attribute_slots] if v]
            self._attr_width = max(self._attr_width, len(row))
            at.append(self.item_index[item_id])
            rows.append(row + [0] * (self.attribute_slots - len(row)))
        if len(index) > self._head.attr_vec.shape[0]:
            self._resize(("attr_vec", "attr_bias"), 2 * len(index))
        if at:
            at_t = torch.as_tensor(at, device=self._dev)
            assert self._attr_support is not None  # made by _build with the tables
            support = self._attr_support = padded(self._attr_support, self._head.attr_vec.shape[0])
            old = self._attr_rows.index_select(0, at_t).reshape(-1)
            support.index_add_(0, old, torch.full((len(old),), -1, dtype=torch.long, device=self._dev))
            self._attr_rows[at_t] = new = torch.as_tensor(rows, dtype=torch.int32, device=self._dev)
            support.index_add_(0, new.reshape(-1), torch.ones(len(old), dtype=torch.long, device=self._dev))
        self._cache = self._train_table = None

    @property
    def attribute_values(self) -> list[str]:
        """The attribute values the model has a shared vector for, by row (row 0, padding, is ``""``)."""
        index = self._attr_index or {}
        out = [""] * len(index)
        for v, r in index.items():
            out[r] = v
        return out

    @property
    def attribute_count(self) -> int:
        """How many attribute values have a shared vector (0 with ``attribute_slots`` 0)."""
        return len(self._attr_index) - 1 if self._attr_index else 0

    def _attrs(self, rows: torch.Tensor | None = None, n: int = 0) -> torch.Tensor | None:
        """The attribute value rows of items ``rows`` (of the first ``n`` items when None), or None without any."""
        if self._attr_rows is None or self._attr_support is None:
            return None
        r = self._attr_rows[:n] if rows is None else self._attr_rows.index_select(0, rows)
        r = r[:, : self._attr_width]  # no item has more values: the rest of every row is padding
        return torch.where(self._attr_support[r] >= ATTRIBUTE_MIN_ITEMS, r, 0)

    def _fit_cooccurrence(self, n: int) -> None:
        """Size the co-occurrence counts to the live catalog (256-row steps), not to the doubled capacity of the
        per-item tensors: doubling a quadratic matrix costs 4x (43 MB instead of 11 MB for ML-100K, and in every
        checkpoint). Past ``cooccurrence_dense_items`` items they become per-item top neighbours."""
        if self._cooc is None:
            return
        if n > self.cooccurrence_dense_items:
            self._cooc.bound(self.cooccurrence_neighbours)
        self._cooc.grow(-(-n // 256) * 256)

    def attach_encoder(self, encoder: TextEncoder) -> None:
        """Re-attach a frozen encoder (it is not pickled with the learner)."""
        self.encoder = encoder

    def _build(self, in_dim: int, capacity: int) -> None:
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self._emb = torch.zeros(capacity, in_dim, device=self._dev)
        self._head = AdapterHead(in_dim, self.dim, capacity, g).to(self._dev)
        self._user = AttentionUserModel(self.dim, self.seq_len).to(self._dev)
        if self.attribute_slots > 0:
            self._head.add_attributes(1024, self.attribute_scale)
            self._attr_index = {"": 0}
            self._attr_support = torch.zeros(1024, dtype=torch.long, device=self._dev)
        if self.cooccurrence_window > 0:  # sized by _fit_cooccurrence once the items are registered
            self._cooc = CooccurrenceSignal(0, self.cooccurrence_window, self.cooccurrence_recent, self._dev,
                                            self.cooccurrence_log_scale, self.cooccurrence_distance_decay)
        if self.popularity_half_life > 0:
            self._pop = PopularitySignal(capacity, self.popularity_half_life, self._dev)
        # fused: one kernel for every parameter instead of a dozen foreach ops per step (3x faster on CPU)
        self._opt = torch.optim.Adam(self._params(), lr=self.learning_rate, weight_decay=self.weight_decay, fused=True)
        if self.ema_decay > 0:
            self._avg = {k: p.detach().clone() for k, p in self._named_params().items()}
            self._averaged = None

    def _named_params(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor by a stable name (``head.*``, ``user.*``, ``log_temp``, ``blend``)."""
        assert self._head is not None and self._user is not None
        return {**{f"head.{k}": p for k, p in self._head.named_parameters()},
                **{f"user.{k}": p for k, p in self._user.named_parameters()},
                "log_temp": self._log_temp, "blend": self._blend}

    def _params(self) -> list[torch.Tensor]:
        return list(self._named_params().values())

    def _dense_params(self) -> list[torch.Tensor]:
        """What the dense Adam steps: every parameter, less the per-item vectors once SparseAdam has them."""
        return [p for name, p in self._named_params().items()
                if not (self._sparse_opt is not None and name == "head.item_id")]

    def _enter_large(self) -> None:
        """The catalog passed ``retrieval.exact_max_items``: the per-item vectors move to SparseAdam, so a step
        touches (gradient, moments, average) only the rows of the items it scored, not the whole (items, dim)
        table (at 100,000 items the dense backward and Adam over that table were 60% of a step). Their Adam
        moments start over; the dense parameters keep theirs."""
        assert self._head is not None and self._opt is not None
        if self._sparse_opt is not None:
            return
        self._opt.state.pop(self._head.item_id, None)
        self._sparse_opt = torch.optim.SparseAdam([self._head.item_id], lr=self.learning_rate)
        self._opt.param_groups[0]["params"] = self._dense_params()

    def _grow(self, capacity: int) -> None:
        """Enlarge the per-item tensors (and their Adam state) to ``capacity`` rows."""
        assert self._emb is not None
        self._emb = padded(self._emb, capacity)
        if self._attr_rows is not None:
            self._attr_rows = padded(self._attr_rows, capacity)
        if self._pop is not None:
            self._pop.grow(capacity)
        self._resize(("item_id", "item_bias"), capacity)

    def _resize(self, names: Sequence[str], capacity: int) -> None:
        """Enlarge the head's parameters ``names`` (their Adam state and moving averages) to ``capacity`` rows."""
        assert self._head is not None and self._opt is not None
        for name in names:
            p_old: nn.Parameter = getattr(self._head, name)
            p_new = nn.Parameter(padded(p_old, capacity))
            opt = self._sparse_opt if self._sparse_opt is not None and name == "item_id" else self._opt
            state = opt.state.pop(p_old, None)
            setattr(self._head, name, p_new)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = padded(state[key], capacity)
                opt.state[p_new] = state
        self._opt.param_groups[0]["params"] = self._dense_params()
        if self._sparse_opt is not None:
            self._sparse_opt.param_groups[0]["params"] = [self._head.item_id]
        if self._avg is not None:
            for name in names:
                self._avg[f"head.{name}"] = padded(self._avg[f"head.{name}"], capacity)
            self._averaged = None

    # -- the model -------------------------------------------------------------------------------------------
    def _item_table(self, averaged: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._head is not None and self._emb is not None
        n = len(self.item_ids)
        head = self._averaged_modules()[0] if averaged and self._avg is not None else self._head
        v, b = head(self._emb[:n], self._attrs(n=n))
        return v, b

    def _averaged_modules(self) -> tuple[AdapterHead, AttentionUserModel]:
        """Copies of the head and the user model whose parameters *are* the averaged tensors (shared storage, updated
        in place after each step), so scoring with them is a plain forward pass: ``functional_call`` cost ~3 ms a
        micro-batch. Rebuilt when those tensors are replaced (catalog growth, loading a checkpoint)."""
        if self._averaged is None:
            assert self._head is not None and self._user is not None and self._avg is not None
            modules = copy.deepcopy(self._head), copy.deepcopy(self._user)
            for prefix, module in zip(("head.", "user."), modules, strict=True):
                for name, _ in list(module.named_parameters()):
                    owner, _, leaf = name.rpartition(".")
                    module.get_submodule(owner)._parameters[leaf] = nn.Parameter(self._avg[prefix + name],
                                                                                 requires_grad=False)
            self._averaged = modules
        return self._averaged

    def _encode_histories(self, histories: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-aligned index matrix (B, L) of known history items and its mask."""
        L = self.seq_len
        get = self.item_index.get
        tails = [h[-L:] for h in histories]
        codes = [get(i, -1) for h in tails for i in h]
        return self._tensors(*right_aligned(codes, [len(h) for h in tails], L))

    def _tensors(self, idx: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(idx, device=self._dev), torch.as_tensor(mask, device=self._dev)

    def _logits(self, idx: torch.Tensor, mask: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor],
                averaged: bool = False, intent: torch.Tensor | None = None) -> torch.Tensor:
        assert self._user is not None
        v, b = table
        h = v.index_select(0, idx.reshape(-1)).view(*idx.shape, v.shape[1])  # backward: index_add_, not index_put_
        head: AdapterHead | None
        if averaged and self._avg is not None:
            head, user = self._averaged_modules()
            u: torch.Tensor = user(h, mask)
            log_temp, blend = self._avg["log_temp"], self._avg["blend"]
        else:
            head, u, log_temp, blend = self._head, self._user(h, mask), self._log_temp, self._blend
        if intent is not None and head is not None:
            u = self._with_intent(head, u, intent)
        logits: torch.Tensor = (u * log_temp.exp()) @ v.T + b  # scale (B, dim), not (B, n)
        n = v.shape[0]
        if self._cooc is not None:
            logits = logits + blend[0] * self._cooc.features(idx, mask, n)
        if self._pop is not None:
            logits = logits + blend[1] * self._pop.features(n)
        return logits

    def _score_all_many(self, qs: Sequence[Query]) -> FloatArray:
        return self._scores(qs)[0]

    def _scores(self, qs: Sequence[Query]) -> tuple[FloatArray, torch.Tensor | None, torch.Tensor | None]:
        """Scores (queries x items) and the queries' history index rows and mask they were computed from."""
        if self._head is None or not qs:
            return np.zeros((len(qs), len(self.item_ids)), dtype=np.float32), None, None
        averaged = self._avg is not None
        if self._cache is None:
            if self._opt is not None and not averaged and torch.is_grad_enabled():
                # the next learning step runs on these same parameters: keep the graph, saving it a second pass
                v, b = self._train_table = self._item_table()
                self._cache = (v.detach(), b.detach())
            else:
                with torch.no_grad():
                    self._cache = self._item_table(averaged)
        with torch.no_grad():
            idx, mask = self._encode_histories([q.history for q in qs])
            out: FloatArray = self._logits(idx, mask, self._cache, averaged,
                                           self._intent_tensor(qs)).float().cpu().numpy()
        return out, idx, mask

    def _score_all(self, q: Query) -> FloatArray:
        row: FloatArray = self._score_all_many([q])[0]
        return row

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        """The lists for these events, after the exploration policy (``exploration``,
        :mod:`learners.exploration`); the places it filled are in :attr:`last_explored` until the next call."""
        recs = self._recommend(qs, k)
        cfg = self.exploration
        if cfg.policy == "none" or not self.item_ids or self._head is None:
            self.last_explored = [{} for _ in qs]
            return recs
        if self._explore_rng is None:
            self._explore_rng = np.random.default_rng(self.seed + 7919)
        stats = self._exposure
        counts = np.zeros(len(self.item_ids))
        if stats is not None:
            counts[: len(stats.exposures)] = stats.exposures[: len(counts)]
        with torch.no_grad():
            boost = exposure_boost(cfg, counts, stats.lists if stats is not None else 0, self._explore_rng)
            if cfg.policy == "epsilon":
                pools = self._recommend(qs, max(cfg.pool, k), on_demand=True, force_cold=False,
                                        boost=boost if cfg.bonus > 0 else None)
                out, self.last_explored = epsilon_places(cfg, recs, pools, self._explore_rng)
                return out
            boosted = self._recommend(qs, k, on_demand=True, force_cold=False, boost=boost)
        out, self.last_explored = boosted_places(cfg, recs, boosted)
        return out

    def recommend_readonly(self, q: Query, k: int = 10) -> Recommendation:
        """:meth:`recommend` for a request that came with no event: the cold gate's counters stay as they are
        (the list is not sent on a topic), and nothing else changes but the scoring cache (the item table for
        the current parameters, which the next call would compute the same). A query with no known item in its
        history (a user never seen) gets the model's list for an empty history, led by popular items, with its
        last ``cold_slots`` places given to cold items (new or rarely seen), as if the cold gate had fired.

        >>> from learners.encoder import HashingEncoder
        >>> m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu", cold_threshold=2, cold_slots=1)
        >>> m.add_items([Item(i, f"item {i}") for i in "abcd"])
        >>> m.learn_many([Interaction("u", "b")] * 3 + [Interaction("v", "a")] * 2, [("c",)] * 3 + [()] * 2)
        >>> [i for i, _ in m.recommend_readonly(Query("stranger"), k=3)], m.cold_places  # d: cold
        (['b', 'a', 'd'], (0, 0))
        >>> [i for i, _ in m.recommend(Query("stranger"), k=3)], m.cold_places
        (['b', 'a', 'd'], (1, 1))
        """
        with torch.no_grad():
            return self._recommend([q], k, on_demand=True)[0]

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation | None:
        """The ``k`` items whose adapted vectors (averaged parameters) have the highest cosine with ``item_id``'s.

        >>> from learners.encoder import HashingEncoder
        >>> m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu")
        >>> m.add_items([Item("a", "space opera"), Item("b", "space opera two"), Item("c", "cooking show")])
        >>> [i for i, _ in m.similar_items("a", k=2)], m.similar_items("zz")
        (['b', 'c'], None)

        Past ``retrieval.exact_max_items`` items the candidates are the item's ``SIMILAR_CANDIDATES`` nearest by
        cosine among the vectors the ANN index stores (an exact scan, O(items x dim) per call,
        :meth:`~learners.retrieval.AnnIndex.nearest_by_cosine`: the graph is searched by inner product, where longer
        vectors would crowd out the nearest by cosine), re-ranked under the current parameters (the stored vectors
        may be a few updates old). No item vector is computed for the whole catalog.
        """
        if not self._large() or self._head is None:
            return super().similar_items(item_id, k)
        i = self.item_index.get(item_id)  # a large catalog: the index's stored vectors, re-ranked
        if i is None:
            return None
        index = self._ensure_retriever().index  # one index throughout, whatever a rebuild swaps in meanwhile
        if index is None:
            return super().similar_items(item_id, k)
        head = self._scoring_parts()[0]
        with torch.no_grad():
            v, _ = self._row_vectors(head, torch.tensor([i], device=self._dev))
            cand = index.nearest_by_cosine(v[0].float().cpu().numpy(), max(SIMILAR_CANDIDATES, 4 * k) + 1,
                                           columns=int(v.shape[1]))
            cand = cand[cand != i]
            vc, _ = self._row_vectors(head, torch.as_tensor(cand, device=self._dev))
            sims = (torch.nn.functional.normalize(vc.float(), dim=1)
                    @ torch.nn.functional.normalize(v.float(), dim=1)[0]).cpu().numpy()
        best = np.argsort(-sims, kind="stable")[:k]
        return [(self.item_ids[int(cand[j])], float(sims[j])) for j in best]

    def _similarities(self, i: int) -> FloatArray | None:
        if self._head is None:
            return None
        with torch.no_grad():
            if self._cache is None:
                self._cache = self._item_table(averaged=True)
            v = torch.nn.functional.normalize(self._cache[0].float(), dim=1)
            out: FloatArray = (v @ v[i]).cpu().numpy()
        return out

    def recommend_exact(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        """The lists of scoring the whole catalog, whatever its size (what two-stage retrieval is measured
        against); the cold gate's counters stay as they are."""
        with torch.no_grad():
            return self._recommend(qs, k, on_demand=True, exact=True, force_cold=False)

    def _large(self) -> bool:
        return len(self.item_ids) > self.retrieval.exact_max_items

    def _recommend(self, qs: Sequence[Query], k: int, on_demand: bool = False, exact: bool = False,
                   force_cold: bool = True, boost: Boost | None = None) -> list[Recommendation]:
        """Top-``k`` lists; ``on_demand``: counted nowhere, unknown users get cold places (recommend_readonly);
        ``boost(rows, queries)``: added to the model's scores of item indices ``rows`` (exploration)."""
        if not self.item_ids:
            return [[] for _ in qs]
        if self._large() and not exact and self._head is not None:
            return self._recommend_two_stage(qs, k, on_demand, boost)
        scores, idx, mask = self._scores(qs)
        if boost is not None:
            scores = (scores + boost(np.arange(scores.shape[1])[None, :], len(qs))).astype(np.float32)
        if idx is None or mask is None:
            return top_k(scores, qs, self.item_ids, self.item_index, k, extra=16)
        idx_np, mask_np = idx.cpu().numpy(), mask.cpu().numpy()
        # a query's history items are usually among its exclusions (checked per query: a C-level set test):
        # dropping them before the top-k leaves few excluded items among the first candidates
        gone = mask_np & np.array([q.exclude.issuperset(q.history) for q in qs])[:, None]
        dropped = (np.nonzero(gone)[0], idx_np[gone])
        scores[dropped] = -np.inf
        if self.fusion_weight > 0 or self.fusion_popularity > 0:
            recs = self._fused(scores, idx, mask, dropped, qs, k)
        else:
            recs = top_k(scores, qs, self.item_ids, self.item_index, k, extra=16)
        if self._gate is not None:
            no_history = np.logical_not(mask_np.any(axis=1)) if on_demand and force_cold else None
            recs = self._gate.reshape(recs, scores, idx_np, mask_np, qs, self.item_ids, count=not on_demand,
                                      force=no_history)
        return recs

    # -- two-stage (past retrieval.exact_max_items) ----------------------------------------------------------
    def _scoring_parts(self) -> tuple[AdapterHead, AttentionUserModel, torch.Tensor, torch.Tensor]:
        """The head, user model, log-temperature and blend weights recommendations are scored with."""
        assert self._head is not None and self._user is not None
        if self._avg is not None:
            head, user = self._averaged_modules()
            return head, user, self._avg["log_temp"], self._avg["blend"]
        return self._head, self._user, self._log_temp, self._blend

    def _row_vectors(self, head: AdapterHead, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._emb is not None
        return head.rows(self._emb.index_select(0, rows), rows, attrs=self._attrs(rows))

    def _index_table(self, rows: np.ndarray | None = None, chunk: int = 65_536) -> np.ndarray:
        """(rows, dim + 1) ``[v, bias]`` of item index ``rows`` (every item when None) under the scoring
        parameters: the ANN index's vectors, searched with ``[u * temperature, 1]``."""
        head = self._scoring_parts()[0]
        r_all = np.arange(len(self.item_ids)) if rows is None else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(r_all), self.dim + 1), dtype=np.float32)
        with torch.no_grad():
            for i in range(0, len(r_all), chunk):
                r = torch.as_tensor(r_all[i : i + chunk], device=self._dev)
                v, b = self._row_vectors(head, r)
                out[i : i + len(r), : self.dim] = v.float().cpu().numpy()
                out[i : i + len(r), self.dim] = b.float().cpu().numpy()
        return out

    def _ensure_retriever(self) -> CandidateRetriever:
        """The retriever, made (its index built from every item, inline) the first time it is needed."""
        if self._retriever is None:
            rt = CandidateRetriever(self.retrieval)
            n = len(self.item_ids)
            t0 = time.perf_counter()
            rt.items_added(n, np.arange(n), None)
            rt.build_now(self._index_table(None))
            rt.updated(self._index_table, self._popularity_array())
            self._retriever = rt
            log.warning("retrieval: %d items, past retrieval.exact_max_items=%d: two-stage recommendation and "
                        "sampled softmax from now on (ANN index of every item built in %.1f s)", n,
                        self.retrieval.exact_max_items, time.perf_counter() - t0)
        return self._retriever

    def _popularity_array(self) -> np.ndarray | None:
        if self._pop is None:
            return None
        out: np.ndarray = self._pop.decayed[: len(self.item_ids)].cpu().numpy()
        return out

    def wait_for_index(self) -> None:
        """Finish a background rebuild of the ANN index (benchmarks, tests); a no-op for small catalogs."""
        if self._retriever is not None:
            self._retriever.wait(self._index_table)

    def _user_vectors(self, user: AttentionUserModel, head: AdapterHead, idx: torch.Tensor,
                      mask: torch.Tensor, intent: torch.Tensor | None = None) -> torch.Tensor:
        """(B, dim) user vectors from the history index rows, computing only the history items' vectors (or
        reading them from the whole-catalog table when it is at hand)."""
        cached = self._cached_table()
        if cached is not None:
            h = cached[0].index_select(0, idx.reshape(-1)).view(*idx.shape, cached[0].shape[1])
        else:
            rows, at = unique_rows(idx.reshape(-1))
            v, _ = self._row_vectors(head, rows)
            h = v.index_select(0, at).view(*idx.shape, v.shape[1])
        u: torch.Tensor = user(h, mask)
        return self._with_intent(head, u, intent) if intent is not None else u

    def _retrieve(self, idx: torch.Tensor, mask: torch.Tensor,
                  intent: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """The scaled user vectors (B, dim) and the (B, C) candidates of the retriever's sources (-1 padded)."""
        rt = self._ensure_retriever()
        cfg = self.retrieval
        head, user, log_temp, _ = self._scoring_parts()
        u = self._user_vectors(user, head, idx, mask, intent) * log_temp.exp()
        queries = torch.cat([u, torch.ones(u.shape[0], 1, device=self._dev)], dim=1).float().cpu().numpy()
        cooc = None
        bounded = self._cooc.bounded if self._cooc is not None else None
        if bounded is not None and cfg.cooccurrence_candidates:
            r = min(self.fusion_recent, idx.shape[1])
            cooc = bounded.top(idx[:, -r:].cpu().numpy(), mask[:, -r:].cpu().numpy(), cfg.cooccurrence_candidates)
        return u, rt.candidates(queries, cooc, exact=lambda q: q @ self._index_table().T)

    def retrieval_recall(self, qs: Sequence[Query], k: int = 10) -> float:
        """Share of each query's top ``k`` by the full model's scores over the whole catalog (its exclusions
        left out; before fusion and cold places) that the retriever's candidates hold, averaged over ``qs``:
        what two-stage retrieval loses. 1.0 up to ``retrieval.exact_max_items`` items."""
        if not self._large() or self._head is None or not qs:
            return 1.0
        with torch.no_grad():
            scores, idx, mask = self._scores(qs)
            assert idx is not None and mask is not None
            _, cand = self._retrieve(idx, mask, self._intent_tensor(qs))
        for row, q in enumerate(qs):
            gone = [self.item_index[i] for i in q.exclude if i in self.item_index]
            scores[row, gone] = -np.inf
        best = top_sorted(scores, min(k, scores.shape[1]))
        hits = [len(set(b.tolist()) & set(c.tolist())) / len(b) for b, c in zip(best, cand, strict=True)]
        return float(np.mean(hits))

    def _recommend_two_stage(self, qs: Sequence[Query], k: int, on_demand: bool,
                             boost: Boost | None = None) -> list[Recommendation]:
        """Candidates (:class:`~learners.retrieval.CandidateRetriever`), then the full model, the fusion and the
        cold gate on them only: nothing here is O(catalog)."""
        idx, mask = self._encode_histories([q.history for q in qs])
        idx_np, mask_np = idx.cpu().numpy(), mask.cpu().numpy()
        n = len(self.item_ids)
        cooc, knn_t = self._cooc, None
        with torch.no_grad():
            u, cand = self._retrieve(idx, mask, self._intent_tensor(qs))
            cand_t = torch.as_tensor(cand, device=self._dev)
            valid = cand_t >= 0
            shared = cooc is not None and cooc.recent == self.fusion_recent  # the signal's cosines are the fusion's
            if cooc is not None and (self.fusion_weight > 0 or shared):  # computed once for both
                knn_t = cooc.cosine_at(idx, mask, cand_t, self.fusion_recent)
            scores_t = self._scores_at(u, idx, mask, cand_t,
                                       cooc_raw=knn_t.clone() if shared and knn_t is not None else None)
            # a query's history items are usually among its exclusions: out before the fusion picks its candidates
            in_history = ((cand_t[:, :, None] == idx[:, None, :]) & mask[:, None, :]).any(dim=2).cpu().numpy()
        scores: FloatArray = scores_t.float().cpu().numpy()
        if boost is not None:
            scores = (scores + boost(np.maximum(cand, 0), len(qs))).astype(np.float32)
        scores[~valid.cpu().numpy()] = -np.inf
        gone = in_history & np.array([q.exclude.issuperset(q.history) for q in qs])[:, None]
        scores[gone] = -np.inf
        others: list[tuple[FloatArray, float]] = []
        if self.fusion_weight > 0 and cooc is not None and knn_t is not None:
            knn = knn_t.cpu().numpy()
            counts = cooc.item_count_tensor(n).cpu().numpy()
            knn += 1e-4 * counts[np.maximum(cand, 0)]  # ties (no co-occurrence) broken by popularity
            knn[scores == -np.inf] = -np.inf
            others.append((knn, self.fusion_weight))
        if self.fusion_popularity > 0 and self._pop is not None:
            popularity = self._popularity_array()
            assert popularity is not None
            pop = popularity[np.maximum(cand, 0)]
            pop[scores == -np.inf] = -np.inf
            others.append((pop, self.fusion_popularity))
        if others:
            cols, val = reciprocal_rank_fusion(scores, others, candidates=max(40, k + 16))
        else:
            cols = top_sorted(scores, min(scores.shape[1], k + 16))
            val = np.take_along_axis(scores, cols, axis=1)
        items = np.take_along_axis(cand, cols, axis=1)
        recs = pick_top_k(items, val, None, qs, self.item_ids, self.item_index, min(k, n))
        if self._gate is not None:
            no_history = np.logical_not(mask_np.any(axis=1)) if on_demand else None
            recs = self._gate.reshape(recs, scores, idx_np, mask_np, qs, self.item_ids, count=not on_demand,
                                      force=no_history, cand=cand)
        return recs

    def _scores_at(self, u: torch.Tensor | None, idx: torch.Tensor, mask: torch.Tensor,
                   cand: torch.Tensor, intent: torch.Tensor | None = None,
                   cooc_raw: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) model scores (before fusion and cold places) of each row's items ``cand`` (item indices, -1: 0)
        for the histories ``idx``/``mask``, under the scoring parameters; ``u``: the rows' scaled user vectors when
        already computed; ``cooc_raw``: the co-occurrence signal's cosines at ``cand`` when already computed (its
        features are made from them in place). Only the candidates' and histories' item vectors are computed."""
        head, user, log_temp, blend = self._scoring_parts()
        if u is None:
            u = self._user_vectors(user, head, idx, mask, intent) * log_temp.exp()
        cached = self._cached_table()
        if cached is not None:
            vc, bc = cached
            pos = cand.clamp(min=0)
        else:
            crow, pos = unique_rows(cand.clamp(min=0).reshape(-1))
            vc, bc = self._row_vectors(head, crow)
            pos = pos.view(cand.shape)
        scores_t = torch.einsum("bd,bcd->bc", u, vc[pos]) + bc[pos]
        if self._cooc is not None:
            feats = self._cooc.scaled(cooc_raw) if cooc_raw is not None else self._cooc.features_at(idx, mask, cand)
            scores_t = scores_t + blend[0] * feats
        if self._pop is not None:
            scores_t = scores_t + blend[1] * self._pop.features_at(cand)
        return scores_t

    # -- user intent (a request's text) ---------------------------------------------------------------------
    def encode_intents(self, texts: Sequence[str]) -> None:
        """Encode the request texts not cached yet, in one batch (the encoder is frozen: a text's vector never
        changes); the cache keeps the latest ``INTENT_CACHE`` texts."""
        if self._intents is None:
            self._intents = OrderedDict()
        cache = self._intents
        missing = [t for t in dict.fromkeys(texts) if t and t not in cache]
        if missing and self.encoder is not None:
            for t, v in zip(missing, self.encoder.encode(missing), strict=True):
                cache[t] = np.asarray(v, dtype=np.float32)
        for t in texts:
            if t in cache:
                cache.move_to_end(t)
        while len(cache) > INTENT_CACHE:
            cache.popitem(last=False)

    def _intent_tensor(self, qs: Sequence[Query]) -> torch.Tensor | None:
        """(B, encoder dim) frozen embeddings of the queries' texts (zero rows: no text), or None when none has
        one (or there is no encoder, or ``intent_weight`` is 0)."""
        if self.intent_weight <= 0 or self.encoder is None or not any(q.intent for q in qs) or self._emb is None:
            return None
        self.encode_intents([q.intent for q in qs if q.intent])
        cache = self._intents
        assert cache is not None
        width = self._basis.shape[0] if self._basis is not None else self._emb.shape[1]  # the encoder's
        out = np.zeros((len(qs), width), dtype=np.float32)
        for row, q in enumerate(qs):
            v = cache.get(q.intent) if q.intent else None
            if v is not None and len(v) == width:
                out[row] = v
        t = torch.as_tensor(out, device=self._dev)
        return t @ self._basis if self._basis is not None else t  # as item embeddings are (text_dims)

    def _with_intent(self, head: AdapterHead, u: torch.Tensor, intent: torch.Tensor) -> torch.Tensor:
        """User vectors moved toward their request's text: ``u + intent_weight * |u| * q / |q|``, q the text's
        adapted vector (the item head without an item's own id vector); rows without a text unchanged."""
        has = intent.abs().sum(dim=1, keepdim=True) > 0
        q = intent @ head.proj.T + head.mlp(intent)
        q = torch.nn.functional.normalize(q, dim=1) * u.norm(dim=1, keepdim=True).clamp(min=1e-6)
        return torch.where(has, u + self.intent_weight * q, u)

    def _cached_table(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (items, dim) vectors and (items,) biases of every item under the scoring parameters, when the
        whole-catalog scoring path (small catalogs) has them computed already; else None."""
        table = self._cache
        return table if table is not None and len(table[0]) >= len(self.item_ids) else None

    def explain_many(self, qs: Sequence[Query], recs: Sequence[Recommendation]) -> list[list[Because]]:
        """Why each recommended item is in its list (:mod:`learners.explain`), for lists this learner just made
        for ``qs`` and has not learned since: the history item whose removal from the user's history lowers the
        item's model score most (of the latest ``explain.RECENT`` distinct ones), else ``new`` for an item with no
        interactions yet, else ``popular``. Changes nothing."""
        counts = self._interactions()
        if self._head is None or not self.item_ids:
            return explain.without_history(recs, self.item_index, counts)
        with torch.no_grad():
            texts = self._intent_tensor(qs)

            def scores_at(idx: torch.Tensor, mask: torch.Tensor, cand: torch.Tensor, owner: np.ndarray,
                          with_intent: np.ndarray) -> torch.Tensor:
                rows = None
                if texts is not None:
                    rows = texts[torch.as_tensor(owner, device=self._dev)]
                    rows = rows * torch.as_tensor(with_intent, device=self._dev, dtype=rows.dtype)[:, None]
                return self._scores_at(None, idx, mask, cand, rows)

            return explain.by_leave_one_out(qs, recs, self.item_index, self.item_ids, counts, self._encode_histories,
                                            scores_at)

    def _interactions(self) -> np.ndarray:
        """Interactions per item index so far (what makes an item cold or new)."""
        if self._gate is not None:
            return self._gate.counts[: len(self.item_ids)]
        if self._cooc is not None:
            out: np.ndarray = self._cooc.item_count_tensor(len(self.item_ids)).cpu().numpy()
            return out
        return np.ones(len(self.item_ids))

    def _fused(self, scores: FloatArray, idx: torch.Tensor, mask: torch.Tensor,
               dropped: tuple[np.ndarray, np.ndarray], qs: Sequence[Query], k: int) -> list[Recommendation]:
        """The model's top items re-ranked with the kNN and popularity rankings (``fusion_*``); ``dropped``:
        the (row, item) cells already left out of ``scores``, left out of the kNN ranking too."""
        n = scores.shape[1]
        others: list[tuple[FloatArray, float]] = []
        with torch.no_grad():
            if self.fusion_weight > 0 and self._cooc is not None:
                knn = self._cooc.cosine(idx, mask, n, self.fusion_recent)
                knn += 1e-4 * self._cooc.item_count_tensor(n)  # ties (no co-occurrence) broken by popularity
                knn_np: FloatArray = knn.cpu().numpy()
                knn_np[dropped] = -np.inf
                others.append((knn_np, self.fusion_weight))
            if self.fusion_popularity > 0 and self._pop is not None:
                others.append((self._pop.decayed[:n].cpu().numpy(), self.fusion_popularity))
        # older seen items (beyond the history window) may still be among the candidates: keep spares; a row
        # whose candidates are nearly all excluded falls back to the model's own order and scores
        cand, val = reciprocal_rank_fusion(scores, others, candidates=max(40, k + 16))
        return pick_top_k(cand, val, scores, qs, self.item_ids, self.item_index, min(k, n))

    # -- learning --------------------------------------------------------------------------------------------
    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self.learn_many([x], [history])

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        """One Adam step (``early_steps`` while the model is young) on these next-item examples plus replayed
        ones; unknown target items are skipped."""
        run_stages(self.learn_stages(xs, histories))

    def learn_stages(self, xs: Sequence[Interaction],
                     histories: Sequence[Sequence[str]]) -> Iterator[Callable[[], None]]:
        """:meth:`learn_many` in stages: one gradient computation per Adam step (forward and backward, which read
        the parameters and write only their ``.grad``) yielded for the caller to run, on another thread if it
        likes, and past ``retrieval.exact_max_items`` a last one that recomputes the next ``refresh_rows`` ANN
        index vectors in place (~25 ms at 65,536 rows: off the worker's event loop too); the optimizer step, the
        averaged parameters, the stream statistics and the replay buffer change here, between the yields, on the
        caller's thread."""
        fresh = self._examples(xs, histories)
        if not fresh or self._opt is None:
            return
        for _ in range(self.early_steps if self._n_learned < self.early_events else 1):
            batch = fresh + self.replay.sample(int(round(len(fresh) * self.replay_ratio)))
            idx, mask = self._batch_tensors(batch)
            yield from self._step(batch, idx, mask)
        self._n_learned += len(fresh)
        self._version += 1  # one version per learning micro-batch, however many steps it took
        self._update_signals(fresh, idx[: len(fresh)], mask[: len(fresh)])
        self.replay.extend(fresh)
        if self._sharing is not None:
            self._sharing.record(self.item_ids, [(ex.target, ex.weight, ex.history) for ex in fresh])
        if self._large():
            rt, popularity = self._ensure_retriever(), self._popularity_array()
            n_fresh = len(fresh)
            yield lambda: rt.updated(self._index_table, popularity, n_fresh)

    def _examples(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> list[Example]:
        """Next-item examples of these events (history items as indices, unknown ones left out); an event whose
        item is unknown is skipped and counted in ``n_skipped``."""
        fresh: list[Example] = []
        get = self.item_index.get
        L = self.seq_len
        for x, h in zip(xs, histories, strict=True):
            t = get(x.item_id)
            if t is None:
                self.n_skipped += 1
                continue
            codes = [get(i, -1) for i in h[-L:]]
            fresh.append(Example(tuple(codes) if -1 not in codes else tuple(j for j in codes if j >= 0), t,
                                 float(x.weight)))
        return fresh

    def count_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        """Add these events to the stream statistics (the co-occurrence and popularity signals, the cold gate's
        counts and estimate) as :meth:`learn_many` does, without a gradient step, a replay entry or a new
        version: how a batch job that trained on shuffled events rebuilds them in time order."""
        fresh = self._examples(xs, histories)
        if fresh and self._head is not None:
            self._update_signals(fresh, *self._batch_tensors(fresh))

    def reset_statistics(self) -> None:
        """Empty the stream statistics :meth:`count_many` fills (the trained parameters, the blend weights
        among them, stay); their sizes and hyper-parameters are kept."""
        if self._cooc is not None:
            self._cooc = self._cooc.empty_like()
        if self._pop is not None:
            self._pop = PopularitySignal(self._pop.decayed.shape[0], self._pop.half_life, self._pop.device)
        if self._gate is not None:
            g = self._gate
            self._gate = ColdGate(g.threshold, g.min_probability, g.slots, g.recent, g.learning_rate)
            self._gate.grow(len(g.counts))
        self._cache = None

    def _batch_tensors(self, batch: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        L = self.seq_len
        tails = [ex.history[-L:] for ex in batch]
        return self._tensors(*right_aligned([j for h in tails for j in h], [len(h) for h in tails], L))

    def _update_signals(self, fresh: list[Example], idx: torch.Tensor, mask: torch.Tensor) -> None:
        targets = torch.as_tensor([ex.target for ex in fresh], device=self._dev)
        with torch.no_grad():
            if self._cooc is not None:
                self._cooc.update(idx, mask, targets)
            if self._pop is not None:
                self._pop.update(targets)
        if self._gate is not None:
            self._gate.learn(idx.cpu().numpy(), mask.cpu().numpy(), targets.cpu().numpy())
        self._cache = None

    def _step(self, batch: list[Example], idx: torch.Tensor,
              mask: torch.Tensor) -> Iterator[Callable[[], None]]:
        """One Adam step on ``batch``: yields its gradient computation (see :meth:`learn_stages`), then steps."""
        assert self._head is not None and self._user is not None and self._opt is not None
        target = torch.as_tensor([ex.target for ex in batch], device=self._dev)
        weight = torch.as_tensor([ex.weight for ex in batch], device=self._dev, dtype=torch.float32)
        self._head.train()
        self._user.train()
        large = self._large()
        if large:
            self._enter_large()
        sparse = self._sparse_opt if large else None
        optimizers = [self._opt] if sparse is None else [self._opt, sparse]
        table, self._train_table = self._train_table, None
        losses: list[torch.Tensor] = []

        def gradient() -> None:
            if large:
                logits, target_col = self._sampled_logits(idx, mask, target)
            else:
                logits = self._masked_history(self._logits(idx, mask, table or self._item_table()), idx, mask, target)
                target_col = target
            loss = (torch.nn.functional.cross_entropy(logits, target_col, reduction="none") * weight).sum() \
                / weight.sum()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            losses.append(loss.detach())

        yield gradient
        if not losses:
            raise RuntimeError("learn_stages: a gradient stage was skipped; run every stage in order")
        loss = losses[0]
        factor = self._boost_factor if self._boost_steps > 0 else 1.0
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = self.learning_rate * factor
            opt.step()
        if self._avg is not None:
            with torch.no_grad():
                for name, p in self._named_params().items():
                    if sparse is not None and name == "head.item_id":
                        # only the rows this step moved (the others' averages wait for their next update)
                        grad = p.grad.coalesce() if p.grad is not None else None
                        rows = grad.indices()[0] if grad is not None else None
                        if rows is not None and len(rows):
                            avg = self._avg[name]
                            avg.index_copy_(0, rows, avg.index_select(0, rows).lerp_(p.detach().index_select(0, rows),
                                                                                   1.0 - self.ema_decay))
                        continue
                    self._avg[name].lerp_(p.detach(), 1.0 - self.ema_decay)
        self._boost_steps = max(0, self._boost_steps - 1)
        self._cache = None
        self.last_loss = float(loss.detach())

    def _sampled_logits(self, idx: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
                        sampled: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled softmax (Yi et al., RecSys 2019): logits over the batch's targets (in-batch negatives) plus
        ``retrieval.sampled_negatives`` items drawn by decayed popularity (+1 smoothing, so every item can be
        drawn), each minus log of its sampling probability (the log-Q correction), histories left out as in the
        full softmax. Returns (logits (B, S), the targets' columns). ``sampled``: the drawn items (tests).
        With every item in the sample and uniform probabilities it equals the full softmax's loss."""
        assert self._head is not None and self._user is not None
        n = len(self.item_ids)
        weights = (self._pop.decayed[:n] + 1.0) if self._pop is not None else torch.ones(n, device=self._dev)
        q = weights / weights.sum()
        if sampled is None:
            k = self.retrieval.sampled_negatives
            sampled = torch.multinomial(q, k, replacement=True) if k > 0 else target[:0]
        cols = unique_rows(torch.cat([target, sampled]))[0]  # sorted
        rows, inverse = unique_rows(torch.cat([cols, idx.reshape(-1)]))
        assert self._emb is not None
        v, b = self._head.rows(self._emb.index_select(0, rows), rows, sparse=self._sparse_opt is not None,
                               attrs=self._attrs(rows))
        at = inverse[: len(cols)]
        h = v.index_select(0, inverse[len(cols):]).view(*idx.shape, v.shape[1])
        u = self._user(h, mask)
        logits = (u * self._log_temp.exp()) @ v[at].T + b[at]
        if self._cooc is not None:
            logits = logits + self._blend[0] * self._cooc.features_at(idx, mask, cols)
        if self._pop is not None:
            logits = logits + self._blend[1] * self._pop.features_at(cols)
        logits = logits - torch.log(q[cols])
        # history items (but not the target) out of their row's softmax
        r, c = torch.nonzero(mask, as_tuple=True)
        items = idx[r, c]
        pos = torch.searchsorted(cols, items).clamp(max=len(cols) - 1)
        hit = (cols[pos] == items) & (items != target[r])
        logits = logits.index_put((r[hit], pos[hit]), torch.tensor(float("-inf"), device=self._dev))
        return logits, torch.searchsorted(cols, target)

    @staticmethod
    def _masked_history(logits: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor,
                        target: torch.Tensor) -> torch.Tensor:
        """Leave each example's history items (but not its target) out of its softmax.

        A user's own items are never recommended to them, so pushing them down is wasted effort that also fights
        "items like your history rank high"; training like this raised HR@10 by 2.3% on the first half of ML-100K.
        """
        rows = torch.arange(idx.shape[0], device=idx.device).unsqueeze(1).expand_as(idx)[mask]
        cols = idx[mask]
        keep = cols != target[rows]  # a repeat of the target stays in
        # in place on a sum (whose backward does not need it): 8x cheaper than a (B, n) mask and masked_fill
        return logits.index_put_((rows[keep], cols[keep]), torch.tensor(float("-inf"), device=logits.device))

    # -- one model across workers (learners.sharing) ---------------------------------------------------------
    def start_sharing(self, worker: str) -> None:
        """From now on keep what :meth:`contribution` hands to peers (``worker``: this worker's name in it)."""
        if self._head is None:
            raise RuntimeError("sharing: the learner has no catalog yet; add items first")
        tail = max(self.cooccurrence_window, self._gate.recent if self._gate is not None else 0, 1)
        self._sharing = DeltaTracker(worker, self._shared_tensors(), tail)

    def contribution(self) -> Contribution | None:
        """What this learner learned since its previous contribution (None when it learned nothing)."""
        if self._sharing is None or not self._sharing.events:
            return None
        return self._sharing.contribution(self._shared_tensors(), self.item_ids, self.attribute_values)

    def merge(self, cs: Sequence[Contribution]) -> int:
        """Merge peers' contributions (:mod:`learners.sharing`): their events into the stream statistics, their
        per-item deltas into the item parameters, and the dense parameters averaged with theirs. This worker's
        own and those merged before are skipped (:meth:`~learners.sharing.DeltaTracker.fresh`); returns how many
        were merged."""
        if self._sharing is None:
            raise RuntimeError("sharing: call start_sharing before merging contributions")
        cs = self._sharing.fresh(cs)
        if not cs:
            return 0
        self._train_table = None  # its graph is of the parameters before the merge
        for run in rounds(cs):
            self._sharing.merge(run, self._shared_tensors(), self.item_index, self._attr_index)
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

    def observe_feedback(self, shown: Sequence[Sequence[str]], clicked: Sequence[tuple[str, int]]) -> None:
        """The lists the worker sent (item ids) and the clicks attributed to them ((item id, 0-based position)):
        per-item exposures and clicks (:class:`~learners.exploration.ExposureStats`)."""
        if self._exposure is None:
            self._exposure = ExposureStats()
        get = self.item_index.get
        self._exposure.grow(len(self.item_ids))
        self._exposure.observe([[get(i, -1) for i in lst] for lst in shown], [(get(i, -1), p) for i, p in clicked])

    @property
    def feedback(self) -> tuple[int, int]:
        """(lists sent, clicks attributed to them) that :meth:`observe_feedback` has seen."""
        e = self._exposure
        return (e.lists, e.attributed) if e is not None else (0, 0)

    @property
    def cold_places(self) -> tuple[int, int]:
        """(lists given cold places, cold items placed in them) by the cold gate so far (0, 0 without one)."""
        g = self._gate
        return (g.lists, g.placed) if g is not None else (0, 0)

    def boost_learning_rate(self, factor: float, steps: int) -> None:
        """Multiply the learning rate by ``factor`` for the next ``steps`` updates (a reaction to drift)."""
        self._boost_factor = factor
        self._boost_steps = max(self._boost_steps, steps)

    def adapted_item_vectors(self) -> FloatArray | None:
        """The adapted vectors of every known item, (n_items, dim), or None before any item."""
        if self._head is None or not self.item_ids:
            return None
        with torch.no_grad():
            if self._cache is None:
                self._cache = self._item_table(averaged=True)
            out: FloatArray = self._cache[0].float().cpu().numpy()
        return out

    # -- state -----------------------------------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        if "cooccurrence_dense_items" not in state:  # saved when the signal was dense up to cooccurrence_max_items
            state["cooccurrence_dense_items"] = state.pop("cooccurrence_max_items", 10000)
            if state.get("_cooc") is None and state.get("cooccurrence_window", 0) > 0 and state.get("item_ids"):
                log.warning("co-occurrence: this checkpoint (%d items) was saved without its co-occurrence signal "
                            "(an earlier version dropped it above %d items); it stays off for this model",
                            len(state["item_ids"]), state["cooccurrence_dense_items"])
        self.__dict__.update(state)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["encoder"] = None  # frozen and large: re-attach after loading
        state["_cache"] = None
        state["_train_table"] = None
        state["_averaged"] = None  # views of _avg: rebuilt after loading
        state["_intents"] = None  # a cache of request texts' embeddings
        return state

    def trainable_parameters(self) -> int:
        """Number of trainable scalars (the frozen encoder excluded)."""
        return sum(p.numel() for p in self._params()) if self._head is not None else 0
