"""Two-stage recommendation for large catalogs: candidate retrieval, then the full model on a few hundred items.

Past ``RetrievalConfig.exact_max_items`` items the adapter stops scoring the whole catalog. For each query,
:class:`CandidateRetriever` gathers candidates from five sources, each bounded:

* **ANN**: the user's nearest items by inner product in the adapted space (``u * temperature . v + bias``), from an
  HNSW index (:class:`AnnIndex`) of the averaged item vectors as the parameters gave them when each item was
  indexed: the first index is built inline, from every item, when the catalog passes ``exact_max_items``, and new
  items are added as they arrive. By default (``refresh_rows`` 0, ``rebuild_updates`` 0) the stored vectors are
  never rewritten, so the graph's links always fit them and the search finds what it was built to: the catalog as
  the young model saw it, mostly by text, which is where the long tail of items never clicked is found. The items
  learning moves most, the clicked and popular ones, are the hot source's. With ``refresh_rows`` > 0 the vectors
  are kept current in place instead: per 256 events learned (``FULL_UPDATE``; a smaller update does
  proportionally less) the vectors of ``refresh_rows`` items are recomputed, in turn, and written over the stored
  ones; the graph's links, drawn from older vectors, are then redrawn every ``rebuild_updates`` full updates' worth
  of events in a background thread from a copy of the stored vectors (queries use the old index until the new one
  is swapped in, with the current vectors and the items that arrived meanwhile), and with ``rebuild_below`` > 0
  also when it has drifted: every ``probe_updates`` x 256 events learned a few of the last queries are searched
  exactly over the stored vectors, and when the share of their exact top 10 that the index's search finds
  (:attr:`CandidateRetriever.ann_recall`) falls below ``rebuild_below`` the graph is redrawn. Rewriting is what
  makes the links drift: at 1M items, after 200 updates of a graph drawn before any learning, its search found 10%
  of the top 10 over the rewritten vectors that a graph drawn from the same vectors found 90% of, while a graph
  whose vectors are never rewritten still found 63% of its own top 10 after 600 updates
  (``benchmarks/retrieval_drift.py``). Without an index (a checkpoint from before it) the source scans exactly.
* **co-occurrence**: the item-kNN neighbours of the user's latest items
  (:meth:`learners.cooccurrence.BoundedCooccurrence.top`).
* **fresh**: the ``fresh_candidates`` items added last (new items have no interactions, so the other sources miss
  them; the cold gate picks among these).
* **popular**: the ``popular_candidates`` items of highest decayed popularity, re-ranked every ``refresh_updates``
  full updates' worth of events (``FULL_UPDATE`` each).
* **hot** (``hot_items`` > 0): each query's ``hot_candidates`` best of the ``hot_items`` most popular items, by an
  exact scan of their vectors under the current parameters (one matrix product per batch; the vectors are
  recomputed with the list): the items whose learned vectors and biases move most, which
  the index's stored vectors do not follow. At 1M items after 200 updates (before this source, with the index's
  vectors rewritten in place), 98% of the exact top 10 that the other sources missed were among the 32,768 most
  popular items.

The union (deduplicated per row, padded with -1) is what the ranker scores. Per-query cost is
O(candidates x dim + hot_items x dim) plus the index search, and per event O(refresh_rows / 256 x dim), all
independent of the catalog size; a graph rebuild (with ``rebuild_updates``) is O(items log items) but off the event
path, and rare.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from learners.config import check_ranges, setting
from learners.tensors import chunked_topk
from learners.types import ByteStream, top_sorted

log = logging.getLogger(__name__)
FULL_UPDATE = 256  # events of a full micro-batch: refresh_rows and rebuild_updates count in these
PROBE_QUERIES = 32  # queries of the last batch the recall probe scans exactly


@dataclass(frozen=True)
class RetrievalConfig:
    """How the adapter ranks a large catalog (the ``retrieval`` setting; ``STREAMREC_RETRIEVAL__<FIELD>``).

    exact_max_items
        Up to this many items every query scores the whole catalog and training takes the full softmax (ML-100K's
        numbers); past it, two-stage retrieval and sampled softmax. 0: always two-stage.
    ann_candidates, cooccurrence_candidates, fresh_candidates, popular_candidates
        Candidates per query from each source (see the module doc).
    ann_ef
        HNSW search breadth (faiss ``efSearch``, at least the candidates asked for): recall against speed (see
        ``benchmarks/ann_choice.py``).
    ann_neighbours
        HNSW graph degree (M).
    refresh_rows
        Items whose index vectors are recomputed and written in place, in turn, per ``FULL_UPDATE`` (256) events
        learned: a learning update of fewer events recomputes proportionally fewer, so the cost is per event, not
        per micro-batch. 0 (the default): none; the index keeps each item's vector of when it was indexed, and its
        graph fits them (module doc).
    refresh_updates
        Re-rank the popular and hot lists (and recompute the hot items' vectors) every ``refresh_updates`` x
        ``FULL_UPDATE`` events learned, so a stream of small updates pays no more per event than full ones.
    rebuild_updates
        Rebuild the index's graph from its stored vectors every ``rebuild_updates`` x ``FULL_UPDATE`` events
        learned (0, the default: never; a rebuild changes something only with ``refresh_rows`` > 0).
    refresh_in_background
        Rebuild in a thread (the worker); False rebuilds inline (reproducible runs, tests).
    sampled_negatives
        Negatives drawn per training step from the decayed popularity (plus the batch's own targets), with the
        log-Q correction; the step then costs O(batch x negatives), not O(batch x items).
    probe_updates, rebuild_below
        With ``rebuild_below`` > 0, every ``probe_updates`` x ``FULL_UPDATE`` events learned ``PROBE_QUERIES`` of the
        last queries are scanned exactly over the stored vectors (O(items x dim) each, on the learning thread); when
        the share of their top 10 the index's search finds falls below ``rebuild_below``, the graph is rebuilt. 0 (the default):
        no probe; the hot source keeps recall up instead, and at 1M items on 2 cores a rebuild takes minutes of both
        cores (``benchmarks/retrieval_drift.py``).
    hot_items, hot_candidates
        The hot source (module doc): how many of the most popular items it scans, and how many of them per query.
    """

    exact_max_items: int = setting(20_000, "Up to this many items every query scores the whole catalog (exact); "
                                   "past it two-stage recommendation and sampled softmax (0: always two-stage).")
    ann_candidates: int = setting(100, "Candidates per query from the ANN index of the adapted item vectors.")
    cooccurrence_candidates: int = setting(200, "Candidates per query from the co-occurrence neighbours of the "
                                           "user's latest items.")
    fresh_candidates: int = setting(64, "Candidates per query from the items added last.")
    popular_candidates: int = setting(50, "Candidates per query from the most popular items (decayed counts).")
    hot_items: int = setting(65_536, "Most popular items whose current vectors every query scans exactly (0: none).")
    hot_candidates: int = setting(60, "Candidates per query from the exact scan of the hot items.")
    ann_ef: int = setting(100, "HNSW search breadth (faiss efSearch): recall against speed.")
    ann_neighbours: int = setting(16, "HNSW graph degree (M).")
    refresh_rows: int = setting(0, "Index vectors recomputed in place, in turn, per 256 events learned (0: none; "
                                "the index keeps each item's vector of when it was indexed).")
    refresh_updates: int = setting(10, "Re-rank the popular and hot lists every this many x 256 events learned.")
    rebuild_updates: int = setting(0, "Rebuild the index's graph every this many x 256 events learned (0: never; "
                                   "only useful with refresh_rows > 0).")
    refresh_in_background: bool = setting(True, "Rebuild the graph in a thread (false: inline, reproducible).")
    sampled_negatives: int = setting(2048, "Negatives per training step drawn by decayed popularity, with the "
                                     "log-Q correction.")
    probe_updates: int = setting(20, "Probe the index's recall every this many x 256 events learned (with "
                                 "rebuild_below > 0).")
    rebuild_below: float = setting(0.0, "Rebuild the graph when the probed recall@10 of its search falls below this "
                                   "(0: no probe).")

    def __post_init__(self) -> None:
        check_ranges(self, "retrieval", {**dict.fromkeys(
            ("exact_max_items", "ann_candidates", "cooccurrence_candidates", "fresh_candidates", "popular_candidates",
             "hot_items", "hot_candidates",
             "sampled_negatives", "refresh_rows", "rebuild_updates", "probe_updates"), ">=0"),
            **dict.fromkeys(("ann_ef", "ann_neighbours", "refresh_updates"), ">=1"), "rebuild_below": "[0,1]"})


class AnnIndex:
    """Maximum inner product search over item vectors (labels = item indices, added in order), on faiss HNSW.

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(500, 8)).astype(np.float32)
    >>> idx = AnnIndex(8, neighbours=16, ef=64); idx.add(x[:400]); idx.add(x[400:])
    >>> q = rng.normal(size=(3, 8)).astype(np.float32)
    >>> exact = np.argsort(-(q @ x.T), axis=1)[:, :5]
    >>> got = idx.search(q, 5)
    >>> len(idx), float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact.tolist(), got.tolist())])) >= 0.8
    (500, True)
    """

    def __init__(self, dim: int, neighbours: int = 16, ef: int = 128, ef_construction: int = 80) -> None:
        import faiss  # faiss-cpu: chosen by benchmarks/ann_choice.py

        self.dim = dim
        self.ef = ef
        self._index: Any = faiss.IndexHNSWFlat(dim, neighbours, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = ef_construction

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __getstate__(self) -> dict[str, Any]:
        return {"dim": self.dim, "ef": self.ef, "index": ByteStream(self._write)}  # read back as a uint8 array

    def _write(self, emit: Callable[[bytes], None]) -> None:
        """faiss's serialisation of the index, to ``emit`` in chunks of up to 16 MB."""
        import faiss

        faiss.write_index(self._index, faiss.PyCallbackIOWriter(emit, 1 << 24))  # type: ignore[attr-defined]  # not in its stubs

    def __setstate__(self, state: dict[str, Any]) -> None:
        import faiss

        self.dim, self.ef = state["dim"], state["ef"]
        self._index = faiss.deserialize_index(np.asarray(state["index"], dtype=np.uint8))

    def add(self, vectors: np.ndarray) -> None:
        """Append items: their labels continue from ``len(self)``."""
        if len(vectors):
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def vectors(self) -> np.ndarray:
        """The stored (len, dim) vectors as a writable view: writing a row changes what the search ranks by (the
        graph's links stay). Valid until the next :meth:`add`, which may move the storage."""
        import faiss

        storage: Any = faiss.downcast_index(self._index.storage)
        if len(self) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: np.ndarray = faiss.rev_swig_ptr(storage.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)
        return out

    def nearest_by_cosine(self, query: np.ndarray, k: int, columns: int | None = None,
                          chunk: int = 65_536) -> np.ndarray:
        """Labels of the ``k`` stored vectors of highest cosine with ``query`` over their first ``columns`` columns
        (all: None), best first, ties by label: an exact scan of the stored vectors in chunks of ``chunk`` rows,
        O(len x columns) time and O(chunk x columns) memory. The graph is searched by inner product, where longer
        vectors crowd out the nearest by cosine; this is the on-demand similar-items route's search.

        >>> idx = AnnIndex(3); idx.add(np.array([[9, 0, 5], [1, 1, 0], [2, 0, 0], [0, 1, 0]], dtype=np.float32))
        >>> idx.nearest_by_cosine(np.array([1, 0, 7], dtype=np.float32), 3, columns=2, chunk=2).tolist()
        [0, 2, 1]
        """
        n = len(self)
        d = self.dim if columns is None else columns
        if n == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64)
        q = np.asarray(query, dtype=np.float32).reshape(-1)[:d]
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        stored = self.vectors()
        labels, sims = [], []
        for start in range(0, n, chunk):
            part = np.ascontiguousarray(stored[start : start + chunk, :d])
            s = (part @ q) / np.maximum(np.sqrt(np.einsum("ij,ij->i", part, part)), 1e-12)
            top = top_sorted(s[None], min(k, len(s)))[0]  # ties in label order, so the merge keeps them so
            labels.append(top + start)
            sims.append(s[top])
        lab, sim = np.concatenate(labels), np.concatenate(sims)
        out: np.ndarray = lab[top_sorted(sim[None], min(k, len(sim)))[0]].astype(np.int64)
        return out

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(B, k) labels, best first (-1 where the index holds fewer than k)."""
        if len(self) == 0 or k <= 0:
            return np.full((len(queries), max(k, 0)), -1, dtype=np.int64)
        self._index.hnsw.efSearch = max(self.ef, k)
        _, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        out: np.ndarray = ids.astype(np.int64)
        return out


def dedupe_rows(cand: np.ndarray) -> np.ndarray:
    """Each row's distinct non-negative entries (sorted), the rest -1.

    >>> dedupe_rows(np.array([[3, 1, 3, -1, 2], [5, 5, 5, 5, 5]])).tolist()
    [[1, 2, 3, -1, -1], [5, -1, -1, -1, -1]]
    """
    s = np.sort(np.where(cand < 0, np.iinfo(np.int64).max, cand.astype(np.int64)), axis=1)
    dup = np.zeros_like(s, dtype=bool)
    dup[:, 1:] = s[:, 1:] == s[:, :-1]
    s[dup] = np.iinfo(np.int64).max
    s.sort(axis=1)
    s[s == np.iinfo(np.int64).max] = -1
    return s


class CandidateRetriever:
    """The candidate sources of the module doc over one learner's items.

    The learner keeps it in step with the catalog through :meth:`items_added` and :meth:`updated`; ``table_fn(rows)``
    there returns the (rows, dim + 1) index vectors ``[v, bias]`` of item index ``rows`` (every item when None)
    under the current averaged parameters.
    """

    def __init__(self, config: RetrievalConfig) -> None:
        self.config = config
        self.index: AnnIndex | None = None
        self.n_items = 0  # items the learner has
        self.fresh = np.zeros(0, dtype=np.int64)
        self.popular = np.zeros(0, dtype=np.int64)
        self.hot = np.zeros(0, dtype=np.int64)  # the hot_items most popular, sorted (re-ranked with popular)
        self.hot_vectors = np.zeros((0, 0), dtype=np.float32)  # their [v, bias] under the parameters of the last re-rank
        self.cursor = 0  # the next item whose index vector is recomputed in place
        self.refresh_due = 0.0  # index vectors owed to the in-place refresh (a fraction of one carried over)
        self.rebuild_due = 0  # events learned since the last rebuild
        self.rank_due = 0  # events learned since the popular and hot lists were last re-ranked
        self.probe_due = 0  # events learned since the last recall probe
        self.probe: np.ndarray | None = None  # a few of the last queries, for the recall probe
        self.ann_recall: float | None = None  # the last probe's share of the exact top 10 the search found
        self.rebuilds = 0  # graph rebuilds started (every rebuild_updates, or on a low probe)
        self._building: threading.Thread | None = None
        self._built: AnnIndex | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # the index as faiss serialises it; a rebuild under way is dropped
        state = dict(self.__dict__)
        state.update(_building=None, _built=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"cursor": 0, "refresh_due": 0.0, "rebuild_due": 0, "probe": None, "ann_recall": None,
                              "rebuilds": 0, "rank_due": 0, "probe_due": 0, "hot": np.zeros(0, dtype=np.int64),
                              "hot_vectors": np.zeros((0, 0), dtype=np.float32), **state})  # older checkpoints
        self._lock = threading.Lock()

    def nearest_by_cosine(self, query: np.ndarray, k: int, columns: int | None = None) -> np.ndarray:
        """:meth:`AnnIndex.nearest_by_cosine` of the current index (empty without one), holding the lock
        :meth:`items_added` takes, so another thread may run it: an ``add`` meanwhile could move the storage the
        scan reads."""
        with self._lock:
            index = self.index
            return np.zeros(0, dtype=np.int64) if index is None else index.nearest_by_cosine(query, k, columns)

    # -- keeping current ----------------------------------------------------------------------------------------
    def items_added(self, n_items: int, rows: np.ndarray, table: np.ndarray | None) -> None:
        """Items ``rows`` joined (now ``n_items`` in all); ``table`` their (rows, dim + 1) index vectors."""
        self.n_items = n_items
        keep = self.config.fresh_candidates
        self.fresh = np.concatenate([self.fresh, rows.astype(np.int64)])[-keep:] if keep else self.fresh[:0]
        with self._lock:  # a rebuild under way gets the rows it lacks when it is swapped in
            if self.index is not None and table is not None and len(rows) and len(self.index) == int(rows[0]):
                self.index.add(table)

    def updated(self, table_fn: Any, popularity: np.ndarray | None, events: int = FULL_UPDATE) -> None:
        """A learning update of ``events`` events happened: recompute ``refresh_rows`` index vectors in place per
        ``FULL_UPDATE`` events (``table_fn(rows)``), every ``refresh_updates`` x ``FULL_UPDATE`` events re-rank the
        popular and hot lists, every ``rebuild_updates`` x ``FULL_UPDATE`` events rebuild the graph
        (:meth:`refresh`)."""
        self._swap_if_built(table_fn)
        self._revector(table_fn, events)
        p, h, c = self.config.popular_candidates, self.config.hot_items, self.config
        never = bool(p or h) and not len(self.popular) and not len(self.hot)
        if self._due("rank_due", events, c.refresh_updates, when=popularity is not None, now=never):
            assert popularity is not None
            m = min(max(p, h), len(popularity))  # one selection for both lists, on torch's threads (as the hot scan)
            best = torch.topk(torch.from_numpy(popularity), m).indices.numpy() if m else np.zeros(0, dtype=np.int64)
            self.popular = best[:p].astype(np.int64)
            self.hot = np.sort(best[:h]).astype(np.int64)
            self.hot_vectors = np.ascontiguousarray(table_fn(self.hot), dtype=np.float32) if h else self.hot_vectors[:0]
        if self._due("rebuild_due", events, c.rebuild_updates, when=c.rebuild_updates > 0):
            self.refresh(table_fn)
        if self._due("probe_due", events, c.probe_updates,
                     when=c.rebuild_below > 0 and c.probe_updates > 0 and not self.building()):
            self.ann_recall = self.probe_recall()
            if self.ann_recall is not None and self.ann_recall < self.config.rebuild_below:
                log.info("retrieval: the index's search found %.2f of the probed queries' exact top 10 "
                         "(rebuild_below %.2f): rebuilding its graph", self.ann_recall, self.config.rebuild_below)
                self.rebuild_due = 0
                self.refresh(table_fn)

    def _due(self, counter: str, events: int, updates: int, when: bool, now: bool = False) -> bool:
        """Count ``events`` on the schedule ``counter`` (an attribute); True, and the count back to 0, when it has
        reached ``updates`` x ``FULL_UPDATE`` events (or ``now``) while ``when`` holds: a schedule that is not
        allowed to run keeps counting, and runs as soon as it is."""
        due = getattr(self, counter) + events
        run = when and (now or due >= updates * FULL_UPDATE)
        setattr(self, counter, 0 if run else due)
        return run

    def building(self) -> bool:
        """Whether a background rebuild is under way (or built and not yet swapped in)."""
        return (self._building is not None and self._building.is_alive()) or self._built is not None

    def probe_recall(self, queries: np.ndarray | None = None, k: int = 10, chunk: int = 262_144) -> float | None:
        """Share of the exact top ``k`` over the stored vectors that the index's search (as :meth:`candidates` runs
        it) finds, averaged over ``queries`` (None: the probe's, the last batch's first ``PROBE_QUERIES``): how far
        the graph's links have drifted from the vectors. O(items x dim) per query, in chunks of ``chunk`` rows, on
        torch's threads (as the hot scan). None without an index, queries, more than ``k`` items or ANN candidates."""
        q, index = self.probe if queries is None else queries, self.index
        n = len(index) if index is not None else 0
        if q is None or not len(q) or index is None or n <= k or not self.config.ann_candidates:
            return None
        stored = torch.from_numpy(index.vectors())
        tq = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
        best = chunked_topk(tq, stored, k, chunk)
        found = index.search(np.asarray(q, dtype=np.float32), self.config.ann_candidates)
        return float(np.mean([len(set(e) & set(f.tolist())) / k for e, f in zip(best.tolist(), found, strict=True)]))

    def _revector(self, table_fn: Any, events: int) -> None:
        """Write the current vectors of the next ``refresh_rows x events / FULL_UPDATE`` indexed items (wrapping
        around; fractions carried to the next update) over the stored ones."""
        n = len(self.index) if self.index is not None else 0
        if not n or not self.config.refresh_rows:
            return
        want = self.refresh_due + self.config.refresh_rows * events / FULL_UPDATE
        k = min(int(want), n)
        self.refresh_due = want - k if k < n else 0.0
        if k < 1:
            return
        start = self.cursor % n
        rows = (start + np.arange(k)) % n
        self.cursor = int(rows[-1]) + 1
        assert self.index is not None
        self.index.vectors()[rows] = table_fn(rows)

    def build_now(self, table: np.ndarray) -> None:
        """Index ``table`` (every item's vectors) inline: the first index, and after loading an old checkpoint."""
        self.index = self._build(table)

    def refresh(self, table_fn: Any) -> None:
        """Rebuild the graph: inline (``refresh_in_background`` False, from ``table_fn(None)``), else in a thread
        from a copy of the vectors the index stores (kept current in place), which costs the caller nothing."""
        if self._building is not None and self._building.is_alive():
            return
        self.rebuilds += 1
        if not self.config.refresh_in_background:
            self.build_now(table_fn(None))
            return
        table = table_fn(None) if self.index is None or not len(self.index) else None
        self._building = threading.Thread(target=self._build_into, args=(table,), name="ann-refresh", daemon=True)
        self._building.start()

    def _build(self, table: np.ndarray) -> AnnIndex:
        idx = AnnIndex(table.shape[1], self.config.ann_neighbours, self.config.ann_ef)
        idx.add(table)
        return idx

    def _build_into(self, table: np.ndarray | None) -> None:
        try:
            if table is None:
                with self._lock:  # items_added's add, the only thing that moves the storage, waits for the copy
                    assert self.index is not None
                    table = self.index.vectors().copy()  # rows being rewritten meanwhile: old or new, both fine
            built = self._build(table)
        except Exception:  # noqa: BLE001 - the old index keeps serving
            log.exception("retrieval: rebuilding the ANN index failed; the previous one stays")
            return
        with self._lock:
            self._built = built

    def _swap_if_built(self, table_fn: Any) -> None:
        with self._lock:
            built, self._built = self._built, None
        if built is None:
            return
        old = self.index
        if old is not None:  # the old index's vectors are newer than the ones the graph was drawn from
            kept = min(len(old), len(built))
            built.vectors()[:kept] = old.vectors()[:kept]
        missing = self.n_items - len(built)
        if missing > 0:
            built.add(table_fn(np.arange(len(built), self.n_items)))
        self.index = built  # last: a search on the event loop meanwhile uses the old index, never one being added to

    def wait(self, table_fn: Any) -> None:
        """Finish a background rebuild and swap it in (tests, benchmarks, checkpoints)."""
        if self._building is not None:
            self._building.join()
        self._swap_if_built(table_fn)

    # -- retrieving ---------------------------------------------------------------------------------------------
    def _hot_candidates(self, queries: np.ndarray) -> np.ndarray:
        """(B, hot_candidates): each query's best hot items by the exact inner product with their vectors. On
        torch's threads, product and selection (:func:`~learners.tensors.chunked_topk`): ``np.argpartition`` over
        (256, 16,384) took ~50 ms against ``torch.topk``'s ~7, and numpy's product (OpenBLAS threads) doubled the
        torch work after it."""
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        best = chunked_topk(q, torch.from_numpy(self.hot_vectors), self.config.hot_candidates)
        out: np.ndarray = self.hot[best.numpy()]
        return out

    def candidates(self, queries: np.ndarray, cooc: tuple[np.ndarray, np.ndarray] | None,
                   exact: Any = None) -> np.ndarray:
        """(B, C) candidate item indices per query row, distinct, -1 padded.

        ``queries``: (B, dim + 1) index-space query vectors; ``cooc``: the co-occurrence source's inputs (history
        indices and mask of the latest items) or None; ``exact``: a callable scoring queries against every item,
        used while no index exists.
        """
        c = self.config
        B = len(queries)
        parts: list[np.ndarray] = []
        if c.ann_candidates:
            if self.index is not None and len(self.index):
                parts.append(self.index.search(queries, min(c.ann_candidates, len(self.index))))
                if c.rebuild_below > 0 and c.probe_updates:  # for the next probe (a copy: the caller may reuse it)
                    self.probe = np.array(queries[:PROBE_QUERIES], dtype=np.float32)
            elif exact is not None:
                scores = exact(queries)
                k = min(c.ann_candidates, scores.shape[1])
                parts.append(np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1]
                             else np.broadcast_to(np.arange(scores.shape[1]), scores.shape))
        if c.hot_candidates and len(self.hot) and len(self.hot_vectors) == len(self.hot):
            parts.append(self._hot_candidates(queries))
        if cooc is not None and c.cooccurrence_candidates:
            parts.append(cooc[0])
        for shared in (self.fresh, self.popular):
            if len(shared):
                parts.append(np.broadcast_to(shared, (B, len(shared))))
        if not parts:
            return np.full((B, 1), -1, dtype=np.int64)
        return dedupe_rows(np.concatenate([p.astype(np.int64) for p in parts], axis=1))
