"""The synthetic world (connectors/synthetic.py) behind benchmarks/scale.py."""

from __future__ import annotations

import numpy as np

from connectors.synthetic import SyntheticWorld, WorldConfig


def world(**kw) -> SyntheticWorld:  # noqa: ANN003
    return SyntheticWorld(WorldConfig(**{"items": 5000, "users": 2000, "seed": 3, **kw}))


def test_the_same_seed_gives_the_same_world_and_another_seed_another() -> None:
    a, b, c = world(), world(), world(seed=4)
    assert a.items(0, 50) == b.items(0, 50) and a.items(0, 50) != c.items(0, 50)
    ua, ia = a.events(0, 500)
    ub, ib = b.events(0, 500)
    assert np.array_equal(ua, ub) and np.array_equal(ia, ib)
    assert np.array_equal(a.embeddings(10, 20), b.embeddings(10, 20))


def test_popularity_is_heavy_tailed() -> None:
    w = world(initial_share=1.0)
    _, items = w.events(0, 50_000)
    counts = np.sort(np.bincount(items, minlength=5000))[::-1]
    assert counts[:50].sum() > 0.2 * counts.sum()  # the top 1% of items take over a fifth of the events
    assert (counts == 0).sum() > 500  # and a long tail is never picked


def test_items_arrive_over_time_and_are_picked_only_once_there() -> None:
    w = world(initial_share=0.5, horizon=20_000)
    assert w.arrived(0) == 2500 and w.arrived(10_000) == 3750 and w.arrived(10**9) == 5000
    _, early = w.events(0, 2000)
    assert early.max() < w.arrived(2000)
    _, late = w.events(19_000, 25_000)
    assert (late >= 4500).any()  # the last items to arrive do get picked


def test_users_mostly_stay_within_their_tastes() -> None:
    w = world()
    users, items = w.events(0, 20_000)
    in_taste = (w.item_category[items][:, None] == w.user_tastes[users]).any(axis=1)
    assert in_taste.mean() > 0.85  # 10% of events explore any category


def test_items_of_a_category_share_words_and_lie_close() -> None:
    w = world()
    same, other = np.flatnonzero(w.item_category == 0)[:40], np.flatnonzero(w.item_category == 1)[:40]
    e = w.embeddings(0, 5000)
    assert float((e[same] @ e[same].T).mean()) > float((e[same] @ e[other].T).mean()) + 0.1
    words = [set(w.item_text(int(i)).split()) for i in (*same, *other)]
    shared = np.array([[len(a & b) > 0 for b in words] for a in words])
    assert shared[:40, :40].mean() > 2 * shared[:40, 40:].mean()


def test_prefilled_histories_depend_only_on_the_user() -> None:
    w = world(users=1_000_000)  # a million users hold no million histories
    assert w.nbytes < 40_000_000
    h1, n1 = w.prefilled(np.array([5, 999_999, 17]))
    h2, n2 = w.prefilled(np.array([17, 5]))
    assert np.array_equal(h1[[2, 0]], h2) and np.array_equal(n1[[2, 0]], n2)
    assert ((n1 >= 10) & (n1 <= 50)).all() and (h1 < w.initial_items).all()
    assert (h1[0, : 50 - n1[0]] == 0).all()
