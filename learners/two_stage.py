"""Two-stage recommendation past ``retrieval.exact_max_items`` items: candidates from the
:class:`~learners.retrieval.CandidateRetriever` (ANN over the adapted item vectors, co-occurrence neighbours, fresh
and popular items), then the full model, the fusion re-ranker and the cold places on those candidates only; and
sampled-softmax training (Yi et al., RecSys 2019), so neither a list nor a step is O(catalog).

:class:`TwoStageRanking` is the part of :class:`~learners.adapter.AdapterRecommender` that does this (a mixin: it
works on the adapter's own tensors, which a checkpoint saves once; :class:`~learners.adapter_base.AdapterBase` declares
them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from learners.adapter_base import AdapterBase
from learners.cooccurrence import CosineSums
from learners.exploration import Boost
from learners.fusion import fuse, knn_ranking
from learners.heads import AdapterHead, AttentionUserModel
from learners.intent import with_intent
from learners.retrieval import CandidateRetriever
from learners.tensors import cosines, holds, take, unique_rows
from learners.types import FloatArray, Query, Recommendation, RetrievalState, pick_top_k, run_stages, top_sorted

log = logging.getLogger(__name__)
SIMILAR_CANDIDATES = 200  # past retrieval.exact_max_items: the index's nearest items similar_items re-ranks


class TwoStageRanking(AdapterBase):
    """Candidate retrieval, ranking of the candidates and sampled-softmax training of the adapter."""

    _retrieved: tuple[Sequence[Query], tuple[torch.Tensor, np.ndarray, CosineSums | None]] | None = None

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
            h = take(cached[0], idx)
        else:
            rows, at = unique_rows(idx.reshape(-1))
            v, _ = self._row_vectors(head, rows)
            h = take(v, at.view(idx.shape))
        u: torch.Tensor = user(h, mask)
        return with_intent(head, u, intent, self.intent.weight) if intent is not None else u

    def _index_queries(self, idx: torch.Tensor, mask: torch.Tensor,
                       intent: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """The scaled user vectors (B, dim) and the ANN index's queries ``[u * temperature, 1]`` (B, dim + 1)."""
        head, user, log_temp, _ = self._scoring_parts()
        u = self._user_vectors(user, head, idx, mask, intent) * log_temp.exp()
        return u, torch.cat([u, torch.ones(u.shape[0], 1, device=self._dev)], dim=1).float().cpu().numpy()

    def _retrieve(self, idx: torch.Tensor, mask: torch.Tensor,
                  intent: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray, CosineSums | None]:
        """The scaled user vectors (B, dim), the (B, C) candidates of the retriever's sources (-1 padded) and the
        co-occurrence cosines of the latest ``fusion.recent`` history items (None without the bounded structure or
        its source), which the ranker looks its candidates up in."""
        rt = self._ensure_retriever()
        cfg = self.retrieval
        u, queries = self._index_queries(idx, mask, intent)
        cooc = sums = None
        bounded = self._cooc.bounded if self._cooc is not None else None
        if bounded is not None and cfg.cooccurrence_candidates:
            r = min(self.fusion.recent, idx.shape[1])
            h, m = idx[:, -r:].cpu().numpy(), mask[:, -r:].cpu().numpy()
            sums = bounded.sums(h, m)
            cooc = bounded.top(h, m, cfg.cooccurrence_candidates, sums)
        return u, rt.candidates(queries, cooc, exact=lambda q: q @ self._index_table().T), sums

    def retrieval_recall(self, qs: Sequence[Query], k: int = 10) -> float:
        """Share of each query's top ``k`` by the full model's scores over the whole catalog (its exclusions
        left out; before fusion and cold places) that the retriever's candidates hold, averaged over ``qs``:
        what two-stage retrieval loses. 1.0 up to ``retrieval.exact_max_items`` items."""
        if not self._large() or self._head is None or not qs:
            return 1.0
        with torch.no_grad():
            scores, idx, mask = self._scores(qs)
            assert idx is not None and mask is not None
            _, cand, _ = self._retrieve(idx, mask, self._intent_tensor(qs))
        for row, q in enumerate(qs):
            gone = [self.item_index[i] for i in q.exclude if i in self.item_index]
            scores[row, gone] = -np.inf
        best = top_sorted(scores, min(k, scores.shape[1]))
        hits = [len(set(b.tolist()) & set(c.tolist())) / len(b) for b, c in zip(best, cand, strict=True)]
        return float(np.mean(hits))

    def index_recall(self, qs: Sequence[Query], k: int = 10) -> float | None:
        """Share of each query's exact top ``k`` over the ANN index's stored vectors that the index's search finds
        (:meth:`~learners.retrieval.CandidateRetriever.probe_recall`): how far the graph's links have drifted from
        the vectors, apart from the other sources. None up to ``retrieval.exact_max_items`` items or without an
        index. O(items x dim) per query."""
        if not self._large() or self._head is None or not qs:
            return None
        rt = self._ensure_retriever()
        with torch.no_grad():
            idx, mask = self._encode_histories([q.history for q in qs])
            queries = self._index_queries(idx, mask, self._intent_tensor(qs))[1]
        return rt.probe_recall(queries)

    @property
    def retrieval_state(self) -> RetrievalState | None:
        """The two-stage retriever's counters for the worker's metrics; None until the catalog passes
        ``retrieval.exact_max_items``."""
        rt = self._retriever
        if rt is None:
            return None
        return RetrievalState(len(rt.index) if rt.index is not None else 0, rt.rebuilds, rt.ann_recall, rt.building())

    def _recommend_two_stage(self, qs: Sequence[Query], k: int, on_demand: bool, boost: Boost | None = None,
                             same_candidates: bool = False) -> list[Recommendation]:
        """Candidates (:class:`~learners.retrieval.CandidateRetriever`), then the full model, the fusion and the
        cold gate on them only: nothing here is O(catalog). ``same_candidates``: when the previous call was for
        this very ``qs`` (an exploration policy's second ranking), rank its candidates again instead of
        retrieving them anew (retrieval is most of a call: ~60% at 100,000 items)."""
        idx, mask = self._encode_histories([q.history for q in qs])
        idx_np, mask_np = idx.cpu().numpy(), mask.cpu().numpy()
        n = len(self.item_ids)
        cooc, knn_t = self._cooc, None
        with torch.no_grad():
            kept = self._retrieved
            if same_candidates and kept is not None and kept[0] is qs:
                u, cand, sums = kept[1]
            else:
                u, cand, sums = self._retrieve(idx, mask, self._intent_tensor(qs))
            self._retrieved = (qs, (u, cand, sums))
            cand_t = torch.as_tensor(cand, device=self._dev)
            valid = cand_t >= 0
            shared = cooc is not None and cooc.recent == self.fusion.recent  # the signal's cosines are the fusion's
            if cooc is not None and (self.fusion.weight > 0 or shared):  # computed once for both
                knn_t = cooc.cosine_at(idx, mask, cand_t, self.fusion.recent, sums)
            scores_t = self._scores_at(u, idx, mask, cand_t,
                                       cooc_raw=knn_t.clone() if shared and knn_t is not None else None)
            # a query's history items are usually among its exclusions: out before the fusion picks its candidates
            in_history = holds(idx, mask, cand_t).cpu().numpy()
        scores: FloatArray = scores_t.float().cpu().numpy()
        if boost is not None:
            scores = (scores + boost(np.maximum(cand, 0), len(qs))).astype(np.float32)
        scores[~valid.cpu().numpy()] = -np.inf
        gone = in_history & np.array([q.exclude.issuperset(q.history) for q in qs])[:, None]
        scores[gone] = -np.inf
        knn = pop = None
        at = np.maximum(cand, 0)
        if self.fusion.weight > 0 and cooc is not None and knn_t is not None:
            knn = knn_ranking(knn_t.cpu().numpy(), cooc.item_count_tensor(n).cpu().numpy()[at])
            knn[scores == -np.inf] = -np.inf
        popularity = self._popularity_array() if self.fusion.popularity > 0 else None
        if popularity is not None:
            pop = popularity[at]
            pop[scores == -np.inf] = -np.inf
        cols, val = fuse(self.fusion, scores, knn, pop, k)
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
        scores_t = torch.einsum("bd,bcd->bc", u, take(vc, pos)) + take(bc, pos)
        if self._cooc is not None:
            feats = self._cooc.scaled(cooc_raw) if cooc_raw is not None else self._cooc.features_at(idx, mask, cand)
            scores_t = scores_t + blend[0] * feats
        if self._pop is not None:
            scores_t = scores_t + blend[1] * self._pop.features_at(cand)
        return scores_t

    def _enter_large(self) -> None:
        """The catalog passed ``retrieval.exact_max_items``: the per-item vectors move to SparseAdam, so a step
        touches (gradient, moments, average) only the rows of the items it scored, not the whole (items, dim)
        table (at 100,000 items the dense backward and Adam over that table were 60% of a step). Their Adam
        moments start over; the dense parameters keep theirs."""
        assert self._head is not None and self._opt is not None
        if self._sparse_opt is not None:
            return
        self._opt.state.pop(self._head.item_id, None)
        self._sparse_opt = torch.optim.SparseAdam([self._head.item_id], lr=self.training.learning_rate)
        self._opt.param_groups[0]["params"] = self._dense_params()

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation | None:
        """The ``k`` items whose adapted vectors (averaged parameters) have the highest cosine with ``item_id``'s.

        >>> from learners.encoder import HashingEncoder
        >>> from learners.adapter import AdapterRecommender
        >>> from learners.types import Item
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
        result: Recommendation | None = run_stages(self.similar_stages(item_id, k))
        return result

    def similar_stages(self, item_id: str, k: int = 10) -> Generator[Callable[[], None], None, Recommendation | None]:
        """:meth:`similar_items` in stages: past ``retrieval.exact_max_items`` the scan of the index's stored
        vectors (~54 ms at 1M items) is the stage another thread may run; the item's vector before it and the
        re-ranking after it read the parameters, on the caller's thread."""
        if not self._large() or self._head is None:
            return super().similar_items(item_id, k)
        i = self.item_index.get(item_id)  # a large catalog: the index's stored vectors, re-ranked
        if i is None:
            return None
        rt = self._ensure_retriever()
        if rt.index is None:
            return super().similar_items(item_id, k)
        with torch.no_grad():
            v, _ = self._row_vectors(self._scoring_parts()[0], torch.tensor([i], device=self._dev))
        query, found = v[0].float().cpu().numpy(), []
        yield lambda: found.append(rt.nearest_by_cosine(query, max(SIMILAR_CANDIDATES, 4 * k) + 1, int(v.shape[1])))
        cand = found[0][found[0] != i]
        with torch.no_grad():  # the parameters as they are now (a learning step may have moved them meanwhile)
            head = self._scoring_parts()[0]
            vc, _ = self._row_vectors(head, torch.as_tensor(cand, device=self._dev))
            sims = cosines(vc, self._row_vectors(head, torch.tensor([i], device=self._dev))[0][0])
        best = np.argsort(-sims, kind="stable")[:k]
        return [(self.item_ids[int(cand[j])], float(sims[j])) for j in best]

    def _large(self) -> bool:
        return len(self.item_ids) > self.retrieval.exact_max_items

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
        h = take(v, inverse[len(cols):].view(idx.shape))
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
