"""Bounded item-item co-occurrence: each item's ``neighbours`` heaviest co-occurring items, for any catalog size.

:class:`BoundedCooccurrence` keeps, per item, a row of at most ``neighbours`` (id, count) slots in contiguous numpy
arrays, so memory is O(items x neighbours) instead of the O(items^2) of a dense matrix; an item gets its row when it
first co-occurs with another (``row_of`` maps item to row; row 0 stays empty and is every other item's), so a
catalog whose long tail is never clicked pays 4 bytes for each such item, not a row. Rows are space-saving
tables (Metwally et al., 2005): a new neighbour of an item whose row is full takes the place of the lightest one
and inherits its count (plus its own weight), recorded as the slot's error. Counts are therefore upper bounds, and
every neighbour whose true count exceeds the lightest kept count is in the row (the heaviest pairs are kept);
``count - error`` is a lower bound (the weight seen since the neighbour entered the row). A row that never filled
is exact, so with ``neighbours`` at least the catalog size the structure equals the dense matrix.

Updates come in batches (a micro-batch's pairs at once): duplicates are summed, neighbours already in a row are
added to, new ones are appended while the row has room, and a row that overflows keeps its ``neighbours``
heaviest of old and new slots, each new one counted from the row's lightest count before the batch.

Scoring follows the item-kNN cosine: a user's score for item i is ``sum_j C[j, i] / sqrt((n_j + 1)(n_i + 1))``
over their latest items j, either for the whole catalog (a dense (rows, n) array, for small catalogs) or as each
row's top candidates (ids and scores, for large ones). Pure numpy; the state saves as a dict of arrays.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from learners.types import FloatArray

IntArray = npt.NDArray[np.int64]


class CosineSums(NamedTuple):
    """:meth:`BoundedCooccurrence.sums`: the non-zero cells of a batch's cosines, as sorted keys ``row * capacity +
    item`` and values."""

    keys: IntArray
    values: FloatArray
    capacity: int


class BoundedCooccurrence:
    """Per-item top-``neighbours`` co-occurrence counts with space-saving eviction.

    Parameters
    ----------
    neighbours
        Slots per item (K). A row holds at most ``min(neighbours, capacity)`` neighbours.
    capacity
        Items with a row from the start (:meth:`grow` adds more).
    score_lower_bound
        Score with ``count - error``, the weight seen while the neighbour was in the row (default), or with the
        space-saving upper bound ``count`` (False); identical while no row has overflowed. The upper bound lets
        a neighbour that just entered a full row score as much as the lightest one it replaced: on ML-100K
        (item-kNN forced onto 128 slots per item) HR@10 fell to 0.093 with it, 0.180 with the lower bound
        (0.1928 exact).

    Examples
    --------
    >>> c = BoundedCooccurrence(neighbours=2, capacity=4)
    >>> c.update(np.array([[0, 1]]), np.array([[True, True]]), np.array([2]))  # history (0, 1), then item 2
    >>> c.neighbours_of(2)
    [(0, 1.0), (1, 1.0)]
    >>> ids, scores = c.top(np.array([[0]]), np.array([[True]]), 3)  # latest item 0: 1 / sqrt((0 + 1)(1 + 1))
    >>> ids.tolist(), [round(s, 3) for s in scores[0].tolist()[:1]]
    ([[2, -1, -1]], [0.707])
    """

    score_lower_bound = True

    def __init__(self, neighbours: int = 64, capacity: int = 0, score_lower_bound: bool = True) -> None:
        if neighbours < 1:
            raise ValueError(f"neighbours: expected a positive number of slots per item, got {neighbours!r}")
        self.neighbours = int(neighbours)
        self.score_lower_bound = score_lower_bound
        self.row_of = np.zeros(0, dtype=np.int32)  # item -> its row (0: none yet, the empty row)
        self.used = 1  # rows handed out, the empty row 0 included
        self.ids = np.full((1, 0), -1, dtype=np.int32)  # (rows, width), per row
        self.counts = np.zeros((1, 0), dtype=np.float32)
        self.errors = np.zeros((1, 0), dtype=np.float32)
        self.fill = np.zeros(1, dtype=np.int32)
        self.item_counts = np.zeros(0, dtype=np.float32)  # per item
        self.grow(capacity)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Objects pickled before rows were lazy had row i for item i: put the empty row 0 in front."""
        if "row_of" not in state:
            n = state["ids"].shape[0]
            state = {**state, "row_of": np.arange(1, n + 1, dtype=np.int32), "used": n + 1,
                     **{k: np.concatenate([np.full((1, *state[k].shape[1:]), fill, dtype=state[k].dtype), state[k]])
                        for k, fill in (("ids", -1), ("counts", 0), ("errors", 0), ("fill", 0))}}
        self.__dict__.update(state)

    # -- size --------------------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self.row_of.shape[0])

    @property
    def width(self) -> int:
        """Slots per row now: ``min(neighbours, capacity)`` (an item co-occurs with at most capacity - 1 others)."""
        return int(self.ids.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays: O(items + items that co-occurred x neighbours)."""
        return sum(a.nbytes for a in (self.ids, self.counts, self.errors, self.fill, self.item_counts, self.row_of))

    def grow(self, capacity: int) -> None:
        """Make room for ``capacity`` items (and slots per row up to ``neighbours``); never shrinks."""
        old = self.capacity
        if capacity > old:
            self.row_of = np.concatenate([self.row_of, np.zeros(capacity - old, dtype=np.int32)])
            self.item_counts = np.concatenate([self.item_counts, np.zeros(capacity - old, dtype=np.float32)])
        width = min(self.neighbours, max(self.capacity, 1))
        if width > self.width:
            self._resize(self.ids.shape[0], width)

    def _resize(self, rows: int, width: int) -> None:
        old_rows, old_width = self.ids.shape
        ids = np.full((rows, width), -1, dtype=np.int32)
        counts = np.zeros((rows, width), dtype=np.float32)
        errors = np.zeros((rows, width), dtype=np.float32)
        fill = np.zeros(rows, dtype=np.int32)
        keep = min(rows, old_rows)
        ids[:keep, :old_width] = self.ids[:keep]
        counts[:keep, :old_width] = self.counts[:keep]
        errors[:keep, :old_width] = self.errors[:keep]
        fill[:keep] = self.fill[:keep]
        self.ids, self.counts, self.errors, self.fill = ids, counts, errors, fill

    def rows(self, items: npt.ArrayLike) -> IntArray:
        """The rows of ``items``, handing one out to each item without one (the arrays grow by half)."""
        it = np.asarray(items, dtype=np.int64)
        new = np.unique(it[self.row_of[it] == 0])
        if new.size:
            end = self.used + len(new)
            if end > self.ids.shape[0]:
                self._resize(max(end, self.ids.shape[0] + self.ids.shape[0] // 2), self.width)
            self.row_of[new] = np.arange(self.used, end, dtype=np.int32)
            self.used = end
        out: IntArray = self.row_of[it].astype(np.int64)
        return out

    # -- learning ----------------------------------------------------------------------------------------------
    def update(self, history: npt.ArrayLike, mask: npt.ArrayLike, targets: npt.ArrayLike,
               distance_decay: float = 0.0, window: int | None = None) -> None:
        """Count (history item, target) pairs, both ways, and one interaction per target.

        ``history`` (B, L) holds right-aligned item indices (``mask`` marks the filled cells); the last ``window``
        columns pair with the row's target, each ``1 / (1 + distance_decay * d)`` where d is 0 for the latest item.
        A repeat of the target in its own history is not a pair.
        """
        h = np.asarray(history, dtype=np.int64)
        m = np.asarray(mask, dtype=bool)
        t = np.asarray(targets, dtype=np.int64)
        w = h.shape[1] if window is None else min(window, h.shape[1])
        h, m = h[:, h.shape[1] - w:], m[:, m.shape[1] - w:]
        tt = np.broadcast_to(t[:, None], h.shape)
        keep = m & (h != tt)
        distance = np.broadcast_to(np.arange(w - 1, -1, -1, dtype=np.float32), h.shape)[keep]
        weight = (1.0 / (1.0 + np.float32(distance_decay) * distance)).astype(np.float32)
        a, b = h[keep], tt[keep]
        self.add_pairs(np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([weight, weight]))
        self.count_items(t)

    def count_items(self, items: npt.ArrayLike) -> None:
        """One interaction for each entry of ``items`` (the cosine's n_i)."""
        np.add.at(self.item_counts, np.asarray(items, dtype=np.int64), np.float32(1.0))

    def add_pairs(self, rows: IntArray, cols: IntArray, weights: FloatArray) -> None:
        """Add ``weights[p]`` to C[rows[p], cols[p]] for every p (one direction only; duplicates summed)."""
        if rows.size == 0:
            return
        cap = self.capacity
        key = rows.astype(np.int64) * cap + cols.astype(np.int64)
        uniq, inverse = np.unique(key, return_inverse=True)
        add = np.bincount(inverse.ravel(), weights=weights.astype(np.float64)).astype(np.float32)
        r, c = uniq // cap, uniq % cap  # sorted by item, then column
        r = self.rows(r)  # each item's row (equal items stay together)
        eq = self.ids[r] == c[:, None]
        hit = eq.any(axis=1)
        self.counts[r[hit], eq[hit].argmax(axis=1)] += add[hit]
        if not hit.all():
            self._insert(r[~hit], c[~hit], add[~hit])

    def _insert(self, r: IntArray, c: IntArray, add: FloatArray) -> None:
        """New neighbours (grouped by row): appended where the row has room, else merged space-saving style."""
        K = self.width
        starts = np.flatnonzero(np.concatenate([[True], r[1:] != r[:-1]]))
        sizes = np.diff(np.append(starts, len(r)))
        rank = np.arange(len(r)) - np.repeat(starts, sizes)
        fits_row = self.fill[r[starts]] + sizes <= K
        fits = np.repeat(fits_row, sizes)
        if fits.any():
            rf, slot = r[fits], self.fill[r[fits]] + rank[fits]
            self.ids[rf, slot] = c[fits]
            self.counts[rf, slot] = add[fits]
            self.errors[rf, slot] = 0.0
            full = r[starts][fits_row]
            self.fill[full] += sizes[fits_row].astype(np.int32)
        if not fits.all():
            self._merge(r[~fits], c[~fits], add[~fits])

    def _merge(self, r: IntArray, c: IntArray, add: FloatArray) -> None:
        """Rows that overflow: keep the ``width`` heaviest of their old slots and the new neighbours, a new one
        counted from the row's lightest count before the batch (0 while the row had room: then it is exact)."""
        K = self.width
        rows = np.unique(r)
        pos = np.searchsorted(rows, r)
        full = self.fill[rows] == K
        floor = np.where(full, self.counts[rows].min(axis=1, initial=np.inf), 0.0).astype(np.float32)
        old_ids = self.ids[rows]
        valid = old_ids >= 0
        old_pos = np.broadcast_to(np.arange(len(rows))[:, None], old_ids.shape)[valid]
        all_pos = np.concatenate([old_pos, pos])
        all_ids = np.concatenate([old_ids[valid], c.astype(np.int32)])
        all_cnt = np.concatenate([self.counts[rows][valid], floor[pos] + add])
        all_err = np.concatenate([self.errors[rows][valid], floor[pos]])
        order = np.lexsort((-all_cnt, all_pos))  # by row, heaviest first (ties: old slots, then lower ids)
        all_pos, all_ids, all_cnt, all_err = all_pos[order], all_ids[order], all_cnt[order], all_err[order]
        starts = np.flatnonzero(np.concatenate([[True], all_pos[1:] != all_pos[:-1]]))
        rank = np.arange(len(all_pos)) - np.repeat(starts, np.diff(np.append(starts, len(all_pos))))
        keep = rank < K
        self.ids[rows] = -1
        self.counts[rows] = 0.0
        self.errors[rows] = 0.0
        kr, ks = rows[all_pos[keep]], rank[keep]
        self.ids[kr, ks] = all_ids[keep]
        self.counts[kr, ks] = all_cnt[keep]
        self.errors[kr, ks] = all_err[keep]
        self.fill[rows] = np.minimum(np.bincount(all_pos, minlength=len(rows)), K).astype(np.int32)

    # -- scoring -----------------------------------------------------------------------------------------------
    def norm(self, items: npt.ArrayLike) -> FloatArray:
        """``1 / sqrt(n_i + 1)`` for each item index (the cosine's normalisation)."""
        out: FloatArray = (np.float32(1.0) / np.sqrt(self.item_counts[np.asarray(items, dtype=np.int64)]
                                                     + np.float32(1.0))).astype(np.float32)
        return out

    def entries(self, history: npt.ArrayLike, weights: npt.ArrayLike) -> tuple[IntArray, IntArray, FloatArray]:
        """The rows of the (B, r) ``history`` items as flat (query row, neighbour id, count x weight) triples,
        in (query row, history position, slot) order; cells with weight 0 are left out."""
        h = np.asarray(history, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float32)
        take = w != 0
        q = np.broadcast_to(np.arange(h.shape[0])[:, None], h.shape)[take]
        hh, ww = self.row_of[h[take]], w[take]  # rows (0, empty, for an item without one)
        ids = self.ids[hh]  # (cells, K)
        counts = self.counts[hh] - self.errors[hh] if self.score_lower_bound else self.counts[hh]
        vals = counts * ww[:, None]
        ok = ids >= 0
        rows: IntArray = np.broadcast_to(q[:, None], ids.shape)[ok].astype(np.int64)
        cols: IntArray = ids[ok].astype(np.int64)
        out: FloatArray = vals[ok].astype(np.float32)
        return rows, cols, out

    def weighted_sum(self, history: npt.ArrayLike, weights: npt.ArrayLike, n: int) -> FloatArray:
        """(B, n): ``sum_j weights[b, j] * C[history[b, j], i]``, dense (the whole catalog of n items)."""
        h = np.asarray(history, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float32)
        out = np.zeros((h.shape[0], n), dtype=np.float32)
        for j in range(h.shape[1]):  # one history position at a time, in order, like a dense row sum
            rows, cols, vals = self.entries(h[:, j : j + 1], w[:, j : j + 1])
            keep = cols < n
            out[rows[keep], cols[keep]] += vals[keep]  # a row's neighbour ids are distinct: no repeated cell
        return out

    def cosine(self, history: npt.ArrayLike, mask: npt.ArrayLike, n: int) -> FloatArray:
        """(B, n): the item-kNN cosine ``sum_j C[j, i] / sqrt((n_j + 1)(n_i + 1))`` over the masked history items."""
        h = np.asarray(history, dtype=np.int64)
        w = self.norm(h) * np.asarray(mask, dtype=np.float32)
        out = self.weighted_sum(h, w, n)
        out *= self.norm(np.arange(n))
        return out

    def cosine_shared(self, history: npt.ArrayLike, mask: npt.ArrayLike, cols: npt.ArrayLike) -> FloatArray:
        """(B, S): :meth:`cosine` at the sorted distinct items ``cols`` (S,), the same for every row (a training
        step's sampled items): O(B x recent x neighbours x log S).

        >>> c = BoundedCooccurrence(neighbours=2, capacity=4)
        >>> c.update(np.array([[0, 1]]), np.array([[True, True]]), np.array([2]))
        >>> h, m = np.array([[0], [1]]), np.array([[True], [True]])
        >>> bool(np.allclose(c.cosine_shared(h, m, np.array([1, 2])), c.cosine(h, m, 4)[:, [1, 2]]))
        True
        """
        h = np.asarray(history, dtype=np.int64)
        cs = np.asarray(cols, dtype=np.int64)
        out = np.zeros((h.shape[0], len(cs)), dtype=np.float32)
        rows, ids, vals = self.entries(h, self.norm(h) * np.asarray(mask, dtype=np.float32))
        if rows.size == 0 or cs.size == 0:
            return out
        pos = np.minimum(np.searchsorted(cs, ids), len(cs) - 1)
        hit = cs[pos] == ids
        np.add.at(out, (rows[hit], pos[hit]), vals[hit])
        out *= self.norm(cs)
        return out

    def sums(self, history: npt.ArrayLike, mask: npt.ArrayLike) -> CosineSums:
        """Every (query row, item) cell of :meth:`cosine` that is not zero: the cells' keys ``row * capacity +
        item``, sorted, and their cosines. What :meth:`top` ranks and :meth:`cosine_at` looks up; a two-stage
        recommendation computes it once for both. O(B x recent x neighbours), never (B, catalog)."""
        h = np.asarray(history, dtype=np.int64)
        rows, cols, vals = self.entries(h, self.norm(h) * np.asarray(mask, dtype=np.float32))
        cap = max(self.capacity, 1)
        if rows.size == 0:
            return CosineSums(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), cap)
        keys, inverse = np.unique(rows * cap + cols, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=vals).astype(np.float32)  # float64 sums, in entry order
        summed *= self.norm(keys % cap)
        return CosineSums(keys, summed, cap)

    def cosine_at(self, history: npt.ArrayLike, mask: npt.ArrayLike, cand: npt.ArrayLike,
                  sums: CosineSums | None = None) -> FloatArray:
        """(B, C): :meth:`cosine` at each row's candidate items ``cand`` (B, C) only (-1: 0); never (B, catalog).
        ``sums``: :meth:`sums` of the same history and mask, when already computed.

        >>> c = BoundedCooccurrence(neighbours=2, capacity=4)
        >>> c.update(np.array([[0, 1]]), np.array([[True, True]]), np.array([2]))
        >>> h, m = np.array([[0]]), np.array([[True]])
        >>> bool(np.allclose(c.cosine_at(h, m, np.array([[2, 3, -1]])), c.cosine(h, m, 4)[:, [2, 3, 0]] * [1, 1, 0]))
        True
        """
        cd = np.asarray(cand, dtype=np.int64)
        out = np.zeros(cd.shape, dtype=np.float32)
        keys, summed, cap = sums if sums is not None else self.sums(history, mask)
        if keys.size == 0 or cd.size == 0:
            return out
        ok = cd >= 0
        want = (np.broadcast_to(np.arange(cd.shape[0])[:, None], cd.shape) * cap + cd)[ok]
        pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        out[ok] = np.where(keys[pos] == want, summed[pos], np.float32(0.0))
        return out

    def top(self, history: npt.ArrayLike, mask: npt.ArrayLike, c: int,
            sums: CosineSums | None = None) -> tuple[IntArray, FloatArray]:
        """Each row's ``c`` best co-occurrence candidates by the cosine of :meth:`cosine`, best first:
        (B, c) ids (-1 where a row has fewer) and scores (-inf there). Never allocates (B, catalog). ``sums``:
        :meth:`sums` of the same history and mask, when already computed."""
        B = np.asarray(history).shape[0]
        ids: IntArray = np.full((B, c), -1, dtype=np.int64)
        scores: FloatArray = np.full((B, c), -np.inf, dtype=np.float32)
        keys, summed, cap = sums if sums is not None else self.sums(history, mask)
        if keys.size == 0 or c <= 0:
            return ids, scores
        r, item = keys // cap, keys % cap
        order = np.lexsort((item, -summed, r))  # by row, best first, ties by id
        r, item, summed = r[order], item[order], summed[order]
        starts = np.flatnonzero(np.concatenate([[True], r[1:] != r[:-1]]))
        rank = np.arange(len(r)) - np.repeat(starts, np.diff(np.append(starts, len(r))))
        keep = rank < c
        ids[r[keep], rank[keep]] = item[keep]
        scores[r[keep], rank[keep]] = summed[keep]
        return ids, scores

    def neighbours_of(self, i: int) -> list[tuple[int, float]]:
        """Item ``i``'s kept neighbours and counts, heaviest first (ties by id)."""
        i = int(self.row_of[i])
        k = int(self.fill[i])
        ids, counts = self.ids[i, :k], self.counts[i, :k]
        order = np.lexsort((ids, -counts))
        return [(int(ids[o]), float(counts[o])) for o in order]

    def row_dense(self, i: int, n: int) -> FloatArray:
        """Item ``i``'s row of C as a dense (n,) array, as scored (zeros for neighbours not kept)."""
        out = np.zeros(n, dtype=np.float32)
        i = int(self.row_of[i])
        k = int(self.fill[i])
        ids = self.ids[i, :k]
        keep = ids < n
        counts = self.counts[i, :k] - self.errors[i, :k] if self.score_lower_bound else self.counts[i, :k]
        out[ids[keep]] = counts[keep]
        return out

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        """The whole state as arrays (``np.savez(path, **c.state_dict())``; :meth:`from_state` reads it back)."""
        return {"neighbours": np.array(self.neighbours), "score_lower_bound": np.array(self.score_lower_bound),
                "ids": self.ids[: self.used], "counts": self.counts[: self.used],
                "errors": self.errors[: self.used], "fill": self.fill[: self.used], "item_counts": self.item_counts,
                "row_of": self.row_of}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BoundedCooccurrence:
        """Rebuild from :meth:`state_dict`'s arrays (or an ``np.load`` of them).

        >>> c = BoundedCooccurrence(3, capacity=3)
        >>> c.update(np.array([[0]]), np.array([[True]]), np.array([1]))
        >>> BoundedCooccurrence.from_state(c.state_dict()).neighbours_of(1)
        [(0, 1.0)]
        """
        out = cls(int(state["neighbours"]), 0, bool(state["score_lower_bound"]))
        arrays: dict[str, Any] = {"ids": np.array(state["ids"], dtype=np.int32),
                                  "counts": np.array(state["counts"], dtype=np.float32),
                                  "errors": np.array(state["errors"], dtype=np.float32),
                                  "fill": np.array(state["fill"], dtype=np.int32),
                                  "item_counts": np.array(state["item_counts"], dtype=np.float32)}
        if "row_of" in state:
            arrays.update(row_of=np.array(state["row_of"], dtype=np.int32), used=len(arrays["ids"]))
        base = {k: v for k, v in out.__dict__.items() if k not in ("row_of", "used")}
        out.__setstate__({**base, **arrays})  # without row_of: a state saved before rows were lazy
        return out

    @classmethod
    def from_dense(cls, matrix: npt.ArrayLike, item_counts: npt.ArrayLike, neighbours: int,
                   score_lower_bound: bool = True) -> BoundedCooccurrence:
        """Each row's ``neighbours`` largest non-zero off-diagonal entries of a dense count matrix (exact counts,
        no error; a row with more is cut to its heaviest).

        >>> m = np.array([[5, 1, 2], [1, 0, 0], [2, 0, 0]], dtype=np.float32)
        >>> BoundedCooccurrence.from_dense(m, [3, 1, 2], neighbours=1).neighbours_of(0)
        [(2, 2.0)]
        """
        dense = np.array(matrix, dtype=np.float32)
        n = dense.shape[0]
        np.fill_diagonal(dense, 0.0)
        out = cls(neighbours, n, score_lower_bound)
        K = out.width
        rows = out.rows(np.arange(n))  # every item a row, in order
        if n:
            top = np.argsort(-dense, axis=1, kind="stable")[:, :K] if K < n else np.broadcast_to(np.arange(n), (n, n))
            vals = np.take_along_axis(dense, top, axis=1)
            order = np.argsort(-vals, axis=1, kind="stable")
            top, vals = np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)
            nz = vals > 0
            out.ids[rows, : top.shape[1]] = np.where(nz, top, -1)
            out.counts[rows, : top.shape[1]] = np.where(nz, vals, 0.0)
            out.fill[rows] = nz.sum(axis=1)
        out.item_counts[:] = np.asarray(item_counts, dtype=np.float32)[:n]
        return out
