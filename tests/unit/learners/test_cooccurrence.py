"""Bounded co-occurrence (learners/cooccurrence.py): heaviest pairs kept, bounded memory, exact when it fits."""

from __future__ import annotations

import numpy as np
import pytest

from learners.cooccurrence import BoundedCooccurrence


def zipf_stream(n_items: int, events: int, batch: int, window: int, seed: int = 0):
    """Batches of (right-aligned histories, mask, targets) from users who draw Zipf-popular items."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** 1.1
    p /= p.sum()
    perm = rng.permutation(n_items)  # popularity does not follow the index
    for _ in range(events // batch):
        hist = perm[rng.choice(n_items, size=(batch, window), p=p)]
        lengths = rng.integers(0, window + 1, size=batch)
        mask = np.arange(window)[None, :] >= (window - lengths)[:, None]
        yield np.where(mask, hist, 0), mask, perm[rng.choice(n_items, size=batch, p=p)]


def dense_counts(n: int, stream, decay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The exact matrix the bounded structure approximates (float64)."""
    c = np.zeros((n, n))
    counts = np.zeros(n)
    for h, m, t in stream:
        w = h.shape[1]
        for b in range(h.shape[0]):
            for j in range(w):
                if m[b, j] and h[b, j] != t[b]:
                    wt = 1.0 / (1.0 + decay * (w - 1 - j))
                    c[h[b, j], t[b]] += wt
                    c[t[b], h[b, j]] += wt
            counts[t[b]] += 1
    return c, counts


def test_with_enough_slots_it_equals_the_dense_matrix() -> None:
    n = 40
    batches = list(zipf_stream(n, 600, 32, 6))
    exact, counts = dense_counts(n, batches, decay=0.1)
    c = BoundedCooccurrence(neighbours=n)
    c.grow(n)
    for h, m, t in batches:
        c.update(h, m, t, distance_decay=0.1)
    dense = np.stack([c.row_dense(i, n) for i in range(n)])
    assert np.allclose(dense, exact, rtol=1e-5)
    assert np.array_equal(c.item_counts, counts)
    assert not c.errors.any()
    h, m = batches[0][0], batches[0][1]  # cosine scoring equals the dense formula
    norm = 1.0 / np.sqrt(counts + 1.0)
    want = np.einsum("br,bri->bi", norm[h] * m, exact[h]) * norm
    assert np.allclose(c.cosine(h, m, n), want, rtol=1e-5, atol=1e-7)


def test_frequent_items_keep_their_heaviest_neighbours() -> None:
    n, K = 300, 16
    batches = list(zipf_stream(n, 20_000, 256, 10, seed=1))
    exact, counts = dense_counts(n, batches)
    c = BoundedCooccurrence(neighbours=K, capacity=n)
    for h, m, t in batches:
        c.update(h, m, t)
    frequent = np.argsort(-counts)[:20]
    for i in frequent:
        kept = {j for j, _ in c.neighbours_of(int(i))}
        row = exact[i].copy()
        row[i] = 0
        heaviest = np.argsort(-row, kind="stable")[:5]
        assert set(heaviest.tolist()) <= kept, f"item {i}: top-5 {heaviest} not all kept"
        # space-saving: a kept count is an upper bound of the true count, count - error a lower bound
        r = int(c.row_of[i])
        for j, est in c.neighbours_of(int(i)):
            slot = int(np.flatnonzero(c.ids[r] == j)[0])
            assert c.counts[r, slot] - c.errors[r, slot] - 1e-3 <= row[j] <= est + 1e-3
        # the heaviest five in the same order as the exact counts (ties aside)
        lower = {j: float(c.counts[r, s] - c.errors[r, s]) for s, j in enumerate(c.ids[r]) if j >= 0}
        assert sorted(lower, key=lambda j: -lower[j])[:3] == np.argsort(-row, kind="stable")[:3].tolist() or \
            len(set(row[np.argsort(-row)[:4]])) < 4
        kept = c.ids[r, : c.fill[r]]
        assert len(set(kept.tolist())) == len(kept) and i not in kept


def test_memory_is_bounded_by_items_times_neighbours() -> None:
    n, K = 500, 8
    c = BoundedCooccurrence(neighbours=K, capacity=n)
    assert c.nbytes <= n * 8 + K * 12 + 4  # only the empty row: 8 bytes an item (row number, interactions)
    for h, m, t in zipf_stream(n, 5_000, 250, 10, seed=2):
        c.update(h, m, t)
    assert c.ids.shape[1] == K and c.ids.shape[0] <= 1.5 * (n + 1) and (c.fill <= K).all()
    assert c.nbytes <= 1.5 * (n + 1) * (K * 12 + 4) + n * 8
    assert ((c.ids >= 0).sum(axis=1) == c.fill).all()
    assert not c.fill[0] and (c.ids[0] == -1).all()  # the shared empty row stays empty
    for i in range(n):  # no neighbour twice in a row, never the item itself
        kept = c.ids[c.row_of[i], : c.fill[c.row_of[i]]]
        assert len(set(kept.tolist())) == len(kept) and i not in kept


def test_grow_keeps_counts_and_adds_rows_and_slots() -> None:
    c = BoundedCooccurrence(neighbours=4, capacity=2)
    c.update(np.array([[0]]), np.array([[True]]), np.array([1]))
    assert c.width == 2
    c.grow(10_000)
    assert c.capacity == 10_000 and c.width == 4
    c.update(np.array([[9_999]]), np.array([[True]]), np.array([1]))
    assert c.neighbours_of(1) == [(0, 1.0), (9_999, 1.0)]


def filled(n: int, seed: int) -> tuple[BoundedCooccurrence, np.ndarray, np.ndarray]:
    """10 slots per item over a Zipf stream of ``n`` items, and the last batch's latest 4 history items (and mask)."""
    batches = list(zipf_stream(n, 3_000, 100, 8, seed=seed))
    c = BoundedCooccurrence(neighbours=10, capacity=n)
    for h, m, t in batches:
        c.update(h, m, t)
    return c, batches[-1][0][:, -4:], batches[-1][1][:, -4:]


def test_top_candidates_match_the_dense_scores() -> None:
    n = 60
    c, h, m = filled(n, seed=3)
    dense = c.cosine(h, m, n)
    ids, scores = c.top(h, m, 5)
    for row in range(h.shape[0]):
        positive = np.flatnonzero(dense[row] > 0)
        want = sorted(positive.tolist(), key=lambda i: (-dense[row, i], i))[:5]
        got = [i for i in ids[row].tolist() if i >= 0]
        assert len(got) == len(want)
        assert np.allclose(dense[row, got], scores[row, : len(got)], rtol=1e-5)
        assert np.allclose(sorted(dense[row, want]), sorted(dense[row, got]), rtol=1e-5)


def test_cosines_at_candidates_match_the_dense_scores_with_or_without_the_sums() -> None:
    """cosine_at looks each row's candidates up in the batch's sums (-1: 0; items with no co-occurrence: 0), the
    same values whether it computes the sums or is given those top ranked from."""
    n = 60
    c, h, m = filled(n, seed=5)
    dense = c.cosine(h, m, n)
    cand = np.random.default_rng(0).integers(-1, n, size=(h.shape[0], 30))
    want = np.where(cand >= 0, np.take_along_axis(dense, np.maximum(cand, 0), axis=1), 0.0)
    sums = c.sums(h, m)
    assert (c.top(h, m, 5, sums)[0] == c.top(h, m, 5)[0]).all()
    for got in (c.cosine_at(h, m, cand), c.cosine_at(h, m, cand, sums)):
        assert np.allclose(got, want, rtol=1e-5, atol=0)
        assert (got[want == 0] == 0).all() and (got[want > 0] > 0).all()


def test_state_round_trips_through_savez(tmp_path) -> None:
    c = BoundedCooccurrence(neighbours=3, capacity=20)
    for h, m, t in zipf_stream(20, 500, 50, 5, seed=4):
        c.update(h, m, t)
    np.savez(tmp_path / "cooc.npz", **c.state_dict())
    back = BoundedCooccurrence.from_state(dict(np.load(tmp_path / "cooc.npz")))
    for key, value in c.state_dict().items():
        assert np.array_equal(back.state_dict()[key], value), key


def test_from_dense_keeps_each_rows_heaviest() -> None:
    rng = np.random.default_rng(5)
    m = rng.integers(0, 5, size=(30, 30)).astype(np.float32)
    m = m + m.T
    c = BoundedCooccurrence.from_dense(m, np.ones(30), neighbours=4)
    for i in range(30):
        row = m[i].copy()
        row[i] = 0
        assert sorted(v for _, v in c.neighbours_of(i)) == sorted(np.sort(row)[-4:][np.sort(row)[-4:] > 0].tolist())


def test_rejects_zero_slots() -> None:
    with pytest.raises(ValueError, match="neighbours"):
        BoundedCooccurrence(neighbours=0)


def test_rows_are_made_only_for_items_that_co_occur() -> None:
    """A large catalog whose clicks touch a few items holds rows for those only; scoring the others reads row 0."""
    c = BoundedCooccurrence(neighbours=16, capacity=1_000_000)
    c.update(np.array([[5, 7]]), np.array([[True, True]]), np.array([999_999]))
    assert c.used == 4 and int((c.row_of > 0).sum()) == 3
    assert c.nbytes < 1_000_000 * 8 + 1_000 * 16 * 12
    assert c.neighbours_of(999_999) == [(5, 1.0), (7, 1.0)] and c.neighbours_of(123) == []
    ids, _ = c.top(np.array([[123, 5]]), np.array([[True, True]]), 3)
    assert ids.tolist() == [[999_999, -1, -1]]


def test_a_state_from_before_lazy_rows_still_loads() -> None:
    import pickle

    c = BoundedCooccurrence(neighbours=3, capacity=20)
    for h, m, t in zipf_stream(20, 500, 50, 5, seed=4):
        c.update(h, m, t)
    old = {"neighbours": np.array(3), "score_lower_bound": np.array(True), "item_counts": c.item_counts,
           **{k: getattr(c, k)[c.row_of] for k in ("ids", "counts", "errors", "fill")}}  # row i = item i
    back = BoundedCooccurrence.from_state(old)
    assert [back.neighbours_of(i) for i in range(20)] == [c.neighbours_of(i) for i in range(20)]
    legacy = BoundedCooccurrence.__new__(BoundedCooccurrence)  # an object pickled before: its __dict__
    legacy.__dict__.update(neighbours=3, score_lower_bound=True, item_counts=c.item_counts,
                           **{k: old[k] for k in ("ids", "counts", "errors", "fill")})
    restored = pickle.loads(pickle.dumps(legacy))
    assert [restored.neighbours_of(i) for i in range(20)] == [c.neighbours_of(i) for i in range(20)]
    restored.update(np.array([[1]]), np.array([[True]]), np.array([2]))  # and it learns on
