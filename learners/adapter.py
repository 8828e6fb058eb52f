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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from learners import explain
from learners.attributes import AttributeConfig, ItemAttributes
from learners.cold import ColdConfig, ColdGate
from learners.encoder import resolve_device
from learners.exploration import (
    Boost,
    ExplorationConfig,
    Explored,
    ExposureStats,
    LinearPosterior,
    boosted_places,
    epsilon_places,
    examination,
    exposure_boost,
    features,
)
from learners.fusion import FusionConfig, fuse, knn_ranking
from learners.heads import AdapterHead, AttentionUserModel
from learners.intent import IntentCache, IntentConfig, with_intent
from learners.item_tables import ItemTables
from learners.migrate import migrate_flat_state
from learners.replay import Example, ReplayBuffer
from learners.retrieval import CandidateRetriever, RetrievalConfig
from learners.sharing import DeltaTracker, SharedLearning
from learners.signals import CooccurrenceConfig, CooccurrenceSignal, PopularityConfig, PopularitySignal
from learners.tensors import cosines, right_aligned, take, unique_rows
from learners.training import TrainingConfig, masked_history, update_average
from learners.two_stage import TwoStageRanking
from learners.types import (
    Because,
    FloatArray,
    Interaction,
    Query,
    Recommendation,
    TextEncoder,
    pick_top_k,
    run_stages,
    top_k,
)

log = logging.getLogger(__name__)


class AdapterRecommender(ItemTables, TwoStageRanking, SharedLearning):
    """Online next-item recommender over a frozen encoder (the default streamrec learner).

    Each part has its own config dataclass (:mod:`learners.config`), stored here under the argument's name and
    nested the same way in the worker's settings.

    Parameters
    ----------
    encoder
        A frozen :class:`~learners.types.TextEncoder`; needed only to add items by text.
    dim
        Width of the adapted space.
    seq_len
        Most recent items read from a history.
    text_dims
        The frozen embeddings are projected onto their ``text_dims`` leading principal directions (uncentred),
        fitted once on the first catalog batch the learner sees and fixed from then on (0, or not below the
        encoder's width: used whole). 64 of MiniLM's 384 raised HR@10 by 1.1% and cold-item HR@10 by 16% on the
        first half of ML-100K (3 seeds), and cut the cost of the item table; a first batch smaller than
        ``text_dims`` items completes the basis with random directions.
    training
        Adam, replay, parameter averaging and the extra steps of a young model
        (:class:`~learners.training.TrainingConfig`).
    cooccurrence, popularity
        The side signals blended into the scores with learned weights
        (:class:`~learners.signals.CooccurrenceConfig`, :class:`~learners.signals.PopularityConfig`).
    fusion
        The fusion re-ranker (:class:`~learners.fusion.FusionConfig`).
    cold
        Cold places in lists (:class:`~learners.cold.ColdConfig`).
    retrieval
        Past ``retrieval.exact_max_items`` items (:class:`~learners.retrieval.RetrievalConfig`): two-stage
        recommendation (candidates from :class:`~learners.retrieval.CandidateRetriever`, the full model on them)
        and sampled-softmax training; below, every query scores the whole catalog and each step takes the full
        softmax.
    exploration
        The exploration policy of :meth:`recommend_many` (:class:`~learners.exploration.ExplorationConfig`).
    intent
        How a request's text moves its user vector (:class:`~learners.intent.IntentConfig`).
    attributes
        Item attribute values as shared vectors (:class:`~learners.attributes.AttributeConfig`).
    device
        ``auto``, ``cpu`` or ``cuda[:N]``.
    seed
        Seeds parameter init and replay sampling.

    Examples
    --------
    >>> from learners.encoder import HashingEncoder
    >>> from learners.types import Item
    >>> m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu")
    >>> m.add_items([Item("a", "space opera"), Item("b", "space opera two"), Item("c", "cooking show")])
    >>> m.learn_many([Interaction("u", "b")], [("a",)])
    >>> m.model_version, len(m.recommend(Query("u", ("a",), frozenset({"a"})), k=2))
    (1, 2)
    """

    # class defaults: checkpoints written before these existed (flat hyper-parameters: see __setstate__)
    _train_table: tuple[torch.Tensor, torch.Tensor] | None = None
    _avg: dict[str, torch.Tensor] | None = None
    _averaged: tuple[AdapterHead, AttentionUserModel] | None = None
    _basis: torch.Tensor | None = None
    text_dims = 0
    _n_learned = 0
    _arrived: np.ndarray | None = None  # learned events when each item was added (older checkpoints: none, as if 0)
    _gate: ColdGate | None = None
    _exposure: ExposureStats | None = None  # made on first feedback (checkpoints from before it have none)
    _posterior: LinearPosterior | None = None  # thompson's click posterior, made on its first feedback
    exploration = ExplorationConfig()  # class defaults: learners pickled before exploration existed
    _intents: IntentCache | None = None  # request text -> frozen embedding (not checkpointed)
    _explore_rng: np.random.Generator | None = None
    last_explored: list[Explored] = []  # noqa: RUF012 - replaced, never mutated: see recommend_many
    retrieval = RetrievalConfig(exact_max_items=2**62)  # checkpoints from before two-stage: exact, as they were
    _retriever: CandidateRetriever | None = None
    _sparse_opt: torch.optim.SparseAdam | None = None
    _sharing: DeltaTracker | None = None
    _attributes: ItemAttributes | None = None  # made with the model when attributes.slots > 0

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        dim: int = 64,
        seq_len: int = 50,
        text_dims: int = 64,
        training: TrainingConfig | None = None,
        cooccurrence: CooccurrenceConfig | None = None,
        popularity: PopularityConfig | None = None,
        fusion: FusionConfig | None = None,
        cold: ColdConfig | None = None,
        retrieval: RetrievalConfig | None = None,
        exploration: ExplorationConfig | None = None,
        intent: IntentConfig | None = None,
        attributes: AttributeConfig | None = None,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim = dim
        self.seq_len = seq_len
        self.text_dims = text_dims
        self.training = training or TrainingConfig()
        self.cooccurrence = cooccurrence or CooccurrenceConfig()
        self.popularity = popularity or PopularityConfig()
        self.fusion = fusion or FusionConfig()
        self.cold = cold or ColdConfig()
        self.retrieval = retrieval or RetrievalConfig()
        self._retriever = None  # made when the catalog passes retrieval.exact_max_items
        self.exploration = exploration or ExplorationConfig()
        self.intent = intent or IntentConfig()
        self.attributes = attributes or AttributeConfig()
        self._explore_rng = np.random.default_rng(seed + 7919)
        self.device = device
        self.seed = seed
        self.replay = ReplayBuffer(self.training.replay_capacity, seed=seed)
        self.n_skipped = 0
        self._n_learned = 0  # events learned from (training.early_events)
        self._gate = self.cold.gate_or_none()
        self._dev = resolve_device(device)
        self._emb: torch.Tensor | None = None  # (capacity, in_dim) frozen embeddings
        self._head: AdapterHead | None = None
        self._user: AttentionUserModel | None = None
        self._log_temp = nn.Parameter(torch.tensor(math.log(self.training.temperature), device=self._dev))
        # learned blend weights of the side signals: [co-occurrence, decayed popularity]
        self._blend = nn.Parameter(torch.tensor([1.0, 0.5], device=self._dev))
        self._cooc: CooccurrenceSignal | None = None
        self._pop: PopularitySignal | None = None
        self._opt: torch.optim.Optimizer | None = None
        self._sparse_opt = None  # the per-item vectors' optimizer past retrieval.exact_max_items (_enter_large)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None  # item table for scoring (no graph)
        self._train_table: tuple[torch.Tensor, torch.Tensor] | None = None  # the same, with graph, for _step
        self._avg: dict[str, torch.Tensor] | None = None  # averaged parameters for scoring (training.ema_decay > 0)
        self._averaged: tuple[AdapterHead, AttentionUserModel] | None = None  # modules over _avg's tensors
        self._basis: torch.Tensor | None = None  # (encoder dim, text_dims), fixed by the first catalog batch
        self.last_loss = float("nan")
        self._boost_steps = 0
        self._boost_factor = 1.0
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
        h = take(v, idx)  # backward: index_add_, not index_put_
        head: AdapterHead | None
        if averaged and self._avg is not None:
            head, user = self._averaged_modules()
            u: torch.Tensor = user(h, mask)
            log_temp, blend = self._avg["log_temp"], self._avg["blend"]
        else:
            head, u, log_temp, blend = self._head, self._user(h, mask), self._log_temp, self._blend
        if intent is not None and head is not None:
            u = with_intent(head, u, intent, self.intent.weight)
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
        age = self._n_learned - self._arrival() if cfg.fresh_events > 0 else None  # an O(catalog) array: only when used
        with torch.no_grad():
            boost = exposure_boost(cfg, counts, stats.lists if stats is not None else 0, self._explore_rng, age)
            if cfg.policy == "thompson":
                boost = self._thompson_boost(qs, boost)
            if cfg.policy == "epsilon":
                pools = self._recommend(qs, max(cfg.pool, k), on_demand=True, force_cold=False,
                                        boost=boost if cfg.bonus > 0 else None, same_candidates=True)
                out, self.last_explored = epsilon_places(cfg, recs, pools, self._explore_rng)
                return out
            boosted = self._recommend(qs, k, on_demand=True, force_cold=False, boost=boost, same_candidates=True)
        out, self.last_explored = boosted_places(cfg, recs, boosted)
        return out

    def _arrival(self) -> np.ndarray:
        """Learned events (``_n_learned``) when each item was added; 0 for items a checkpoint from before this
        was kept holds."""
        out = np.zeros(len(self.item_ids), dtype=np.int64)
        if self._arrived is not None:
            n = min(len(out), len(self._arrived))
            out[:n] = self._arrived[:n]
        return out

    def _thompson_boost(self, qs: Sequence[Query], item_part: Boost) -> Boost:
        """``thompson``'s boost (:class:`~learners.exploration.ExplorationConfig`): per list one draw ``w`` of the
        click posterior, ``bonus * phi . w`` for its items (``phi``: :func:`~learners.exploration.features` of
        the list's user vector and the items' adapted vectors, only at the rows asked for), plus ``item_part``
        (the per-item draws)."""
        assert self._explore_rng is not None
        post = self._posterior or LinearPosterior(self.dim, self.exploration.ridge)
        kept = self._retrieved  # past retrieval.exact_max_items: the user vectors the candidates were retrieved with
        users = torch.nn.functional.normalize(kept[1][0].float(), dim=1) if kept is not None and kept[0] is qs \
            else self._unit_users(qs)  # (B, dim)
        w = torch.as_tensor(post.sample(len(qs), self._explore_rng), device=self._dev, dtype=users.dtype)
        z = users * w * math.sqrt(self.dim) * self.exploration.bonus  # phi . w = z . (v / |v|)

        def boost(rows: np.ndarray, queries: int) -> np.ndarray:
            r = torch.as_tensor(rows, device=self._dev)
            v = self._unit_items(r.reshape(-1)).view(*r.shape, self.dim)
            lin = z @ v[0].T if r.shape[0] == 1 else torch.einsum("bd,bcd->bc", z, v)
            out: np.ndarray = lin.float().cpu().numpy() + item_part(rows, queries)
            return out

        return boost

    def _unit_users(self, qs: Sequence[Query]) -> torch.Tensor:
        """(B, dim) unit user vectors of these queries (their histories and texts) under the scoring parameters."""
        head, user, _, _ = self._scoring_parts()
        idx, mask = self._encode_histories([q.history for q in qs])
        u = self._user_vectors(user, head, idx, mask, self._intent_tensor(qs))
        return torch.nn.functional.normalize(u.float(), dim=1)

    def _unit_items(self, rows: torch.Tensor) -> torch.Tensor:
        """(len(rows), dim) unit adapted vectors of item indices ``rows``: under the scoring parameters, or past
        ``retrieval.exact_max_items`` as the ANN index stores them (refreshed as the adapter learns; computing
        the candidates' vectors again cost ~180 ms a micro-batch of 256 at 100,000 items)."""
        cached = self._cached_table()
        index = self._retriever.index if self._retriever is not None else None
        if cached is not None:
            v = cached[0].index_select(0, rows)
        elif index is not None and len(rows) and len(index) > int(rows.max()):
            v = torch.as_tensor(index.vectors()[rows.cpu().numpy(), : self.dim], device=self._dev)
        else:
            distinct, at = unique_rows(rows)
            v = self._row_vectors(self._scoring_parts()[0], distinct)[0].index_select(0, at)
        return torch.nn.functional.normalize(v.float(), dim=1)

    def recommend_readonly(self, q: Query, k: int = 10) -> Recommendation:
        """:meth:`recommend` for a request that came with no event: the cold gate's counters stay as they are
        (the list is not sent on a topic), and nothing else changes but the scoring cache (the item table for
        the current parameters, which the next call would compute the same). A query with no known item in its
        history (a user never seen) gets the model's list for an empty history, led by popular items, with its
        last ``cold.slots`` places given to cold items (new or rarely seen), as if the cold gate had fired.

        >>> from learners.encoder import HashingEncoder
        >>> from learners.types import Item
        >>> m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu", cold=ColdConfig(threshold=2, slots=1))
        >>> m.add_items([Item(i, f"item {i}") for i in "abcd"])
        >>> m.learn_many([Interaction("u", "b")] * 3 + [Interaction("v", "a")] * 2, [("c",)] * 3 + [()] * 2)
        >>> [i for i, _ in m.recommend_readonly(Query("stranger"), k=3)], m.cold_places  # d: cold
        (['b', 'a', 'd'], (0, 0))
        >>> [i for i, _ in m.recommend(Query("stranger"), k=3)], m.cold_places
        (['b', 'a', 'd'], (1, 1))
        """
        with torch.no_grad():
            return self._recommend([q], k, on_demand=True)[0]

    def _similarities(self, i: int) -> FloatArray | None:
        if self._head is None:
            return None
        with torch.no_grad():
            if self._cache is None:
                self._cache = self._item_table(averaged=True)
            out: FloatArray = cosines(self._cache[0], self._cache[0][i])
        return out

    def recommend_exact(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        """The lists of scoring the whole catalog, whatever its size (what two-stage retrieval is measured
        against); the cold gate's counters stay as they are."""
        with torch.no_grad():
            return self._recommend(qs, k, on_demand=True, exact=True, force_cold=False)

    def _recommend(self, qs: Sequence[Query], k: int, on_demand: bool = False, exact: bool = False,
                   force_cold: bool = True, boost: Boost | None = None,
                   same_candidates: bool = False) -> list[Recommendation]:
        """Top-``k`` lists; ``on_demand``: counted nowhere, unknown users get cold places (recommend_readonly);
        ``boost(rows, queries)``: added to the model's scores of item indices ``rows`` (exploration);
        ``same_candidates``: past ``retrieval.exact_max_items``, the previous call's candidates when it was for
        this very ``qs``."""
        if not self.item_ids:
            return [[] for _ in qs]
        if self._large() and not exact and self._head is not None:
            return self._recommend_two_stage(qs, k, on_demand, boost, same_candidates)
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
        if self.fusion.on:
            recs = self._fused(scores, idx, mask, dropped, qs, k)
        else:
            recs = top_k(scores, qs, self.item_ids, self.item_index, k, extra=16)
        if self._gate is not None:
            no_history = np.logical_not(mask_np.any(axis=1)) if on_demand and force_cold else None
            recs = self._gate.reshape(recs, scores, idx_np, mask_np, qs, self.item_ids, count=not on_demand,
                                      force=no_history)
        return recs

    # -- user intent (a request's text) ---------------------------------------------------------------------
    def encode_intents(self, texts: Sequence[str]) -> None:
        """Encode the request texts not cached yet, in one batch (:class:`~learners.intent.IntentCache`)."""
        if self._intents is None:
            self._intents = IntentCache(self.intent.cache)
        self._intents.encode(self.encoder, texts)

    def _intent_tensor(self, qs: Sequence[Query]) -> torch.Tensor | None:
        """(B, encoder dim) frozen embeddings of the queries' texts (zero rows: no text), or None when none has
        one (or there is no encoder, or ``intent.weight`` is 0)."""
        if self.intent.weight <= 0 or self.encoder is None or not any(q.intent for q in qs) or self._emb is None:
            return None
        self.encode_intents([q.intent for q in qs if q.intent])
        assert self._intents is not None
        width = self._basis.shape[0] if self._basis is not None else self._emb.shape[1]  # the encoder's
        t = torch.as_tensor(self._intents.rows(qs, width), device=self._dev)
        return t @ self._basis if self._basis is not None else t  # as item embeddings are (text_dims)

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
        """The model's top items re-ranked by the fusion re-ranker (:mod:`learners.fusion`); ``dropped``: the
        (row, item) cells already left out of ``scores``, left out of the kNN ranking too."""
        n = scores.shape[1]
        knn = pop = None
        with torch.no_grad():
            if self.fusion.weight > 0 and self._cooc is not None:
                knn = knn_ranking(self._cooc.cosine(idx, mask, n, self.fusion.recent).cpu().numpy(),
                                  self._cooc.item_count_tensor(n).cpu().numpy())
                knn[dropped] = -np.inf
            if self.fusion.popularity > 0 and self._pop is not None:
                pop = self._pop.decayed[:n].cpu().numpy()
        # a row whose candidates are nearly all excluded falls back to the model's own order and scores
        cand, val = fuse(self.fusion, scores, knn, pop, k)
        return pick_top_k(cand, val, scores, qs, self.item_ids, self.item_index, min(k, n))

    # -- learning --------------------------------------------------------------------------------------------
    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self.learn_many([x], [history])

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        """One Adam step (``training.early_steps`` while the model is young) on these next-item examples plus replayed
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
        for _ in range(self.training.steps(self._n_learned)):
            batch = fresh + self.replay.sample(int(round(len(fresh) * self.training.replay_ratio)))
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
                logits = masked_history(self._logits(idx, mask, table or self._item_table()), idx, mask, target)
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
                group["lr"] = self.training.learning_rate * factor
            opt.step()
        if self._avg is not None:
            update_average(self._avg, self._named_params(), self.training.ema_decay,
                           sparse="head.item_id" if sparse is not None else None)
        self._boost_steps = max(0, self._boost_steps - 1)
        self._cache = None
        self.last_loss = float(loss.detach())

    def observe_feedback(self, shown: Sequence[Sequence[str]], clicked: Sequence[tuple[str, int]],
                         shown_histories: Sequence[Sequence[str]] | None = None,
                         click_histories: Sequence[Sequence[str]] | None = None) -> None:
        """The lists the worker sent (item ids) and the clicks attributed to them ((item id, 0-based position)):
        per-item exposures and clicks (:class:`~learners.exploration.ExposureStats`). With the ``thompson``
        policy and the histories each list was made for (``shown_histories``) and each clicked list was made
        for (``click_histories``), the click posterior over the last layer's features too
        (:class:`~learners.exploration.LinearPosterior`): every place shown counts as not clicked, a click adds
        its place's reward."""
        if self._exposure is None:
            self._exposure = ExposureStats()
        get = self.item_index.get
        self._exposure.grow(len(self.item_ids))
        self._exposure.observe([[get(i, -1) for i in lst] for lst in shown], [(get(i, -1), p) for i, p in clicked])
        if self.exploration.policy == "thompson" and self._head is not None and shown_histories is not None \
                and click_histories is not None:
            self._observe_clicks(shown, shown_histories, clicked, click_histories)

    def _observe_clicks(self, shown: Sequence[Sequence[str]], shown_histories: Sequence[Sequence[str]],
                        clicked: Sequence[tuple[str, int]], click_histories: Sequence[Sequence[str]]) -> None:
        cfg = self.exploration
        if self._posterior is None or len(self._posterior.b) != self.dim:
            self._posterior = LinearPosterior(self.dim, cfg.ridge)
        get = self.item_index.get
        # every place with a known item: its history's row (shown lists', then clicks'), item, position, clicked
        places = [(r, j, pos, False) for r, lst in enumerate(shown) for pos, i in enumerate(lst)
                  if (j := get(i, -1)) >= 0]
        places += [(len(shown) + r, j, pos, True) for r, (i, pos) in enumerate(clicked) if (j := get(i, -1)) >= 0]
        if not places:
            return
        rows, items, positions, hits = (list(x) for x in zip(*places, strict=True))
        hs = [*shown_histories, *click_histories]
        with torch.no_grad():
            users = self._unit_users([Query("", tuple(h)) for h in hs]).cpu().numpy()
            vecs = self._unit_items(torch.as_tensor(items, device=self._dev)).cpu().numpy()
        phi = features(users[rows], vecs)
        exam = examination(np.asarray(positions))
        clicks = np.asarray(hits, dtype=bool)  # a click's place was counted (as not clicked) when its list was shown
        self._posterior.shown(phi[~clicks], exam[~clicks], cfg.decay)
        self._posterior.clicked(phi[clicks], exam[clicks])

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
        migrate_flat_state(state)
        super().__setstate__(state)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["encoder"] = None  # frozen and large: re-attach after loading
        state["_cache"] = None
        state["_train_table"] = None
        state["_averaged"] = None  # views of _avg: rebuilt after loading
        state["_intents"] = None  # a cache of request texts' embeddings
        state["_retrieved"] = None  # the last call's candidates
        return state

    def trainable_parameters(self) -> int:
        """Number of trainable scalars (the frozen encoder excluded)."""
        return sum(p.numel() for p in self._params()) if self._head is not None else 0
