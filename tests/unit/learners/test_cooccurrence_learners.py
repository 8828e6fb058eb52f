"""The learners on bounded co-occurrence: item-kNN and the adapter's signal past their dense sizes, old pickles."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from learners.adapter import AdapterRecommender
from learners.baselines.cooccurrence import ItemKNN
from learners.cooccurrence import BoundedCooccurrence
from learners.encoder import HashingEncoder
from learners.signals import CooccurrenceConfig, CooccurrenceSignal
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query
from tests.unit.learners.test_parts import loaded, pickled_before_parts

N = 80
CATALOG = [Item(f"i{j}", f"{['space rocket', 'cooking pasta', 'tennis match', 'jazz'][j % 4]} {j}") for j in range(N)]


def stream(n: int = 1500, seed: int = 0) -> list[tuple[Interaction, tuple[str, ...]]]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, N + 1) ** 0.9
    p /= p.sum()
    out, hist = [], {}
    for t in range(n):
        u = f"u{rng.integers(40)}"
        item = f"i{(rng.choice(N, p=p) + 4 * (int(u[1:]) % 3)) % N}"
        h = tuple(hist.get(u, ()))
        out.append((Interaction(u, item, float(t)), h))
        hist[u] = [*h, item][-15:]
    return out


def learn(m, data, batch: int = 64) -> None:  # noqa: ANN001
    for s in range(0, len(data), batch):
        chunk = data[s : s + batch]
        m.learn_many([x for x, _ in chunk], [h for _, h in chunk])


def queries(data) -> list[Query]:  # noqa: ANN001
    last = {}
    for x, h in data:
        last[x.user_id] = (*h, x.item_id)[-15:]
    return [Query(u, h, frozenset(h)) for u, h in sorted(last.items())]


def test_item_knn_bounded_with_room_for_every_neighbour_recommends_as_the_dense_one() -> None:
    data = stream()
    dense, bounded = ItemKNN(), ItemKNN(dense_items=0, neighbours=N)
    for m in (dense, bounded):
        m.add_items(CATALOG)
        learn(m, data)
    assert dense.bounded is None and bounded.bounded is not None
    qs = queries(data)
    assert [[i for i, _ in r] for r in bounded.recommend_many(qs, 10)] == \
        [[i for i, _ in r] for r in dense.recommend_many(qs, 10)]
    mine = np.array([[f"i{j}" in q.exclude for j in range(N)] for q in qs])  # the dense one counts C[i, i] too
    assert np.allclose(bounded._score_all_many(qs)[~mine], dense._score_all_many(qs)[~mine], rtol=1e-5)
    assert [i for i, _ in bounded.similar_items("i3", 5)] == [i for i, _ in dense.similar_items("i3", 5)]


def test_item_knn_outgrows_its_dense_matrix_without_a_cliff() -> None:
    m = ItemKNN(dense_items=50, neighbours=8)
    m.add_items(CATALOG[:40])
    learn(m, [(x, h) for x, h in stream() if int(x.item_id[1:]) < 40 and all(int(i[1:]) < 40 for i in h)])
    before = m.recommend_many(queries(stream())[:5], 5)
    m.add_items(CATALOG)  # 80 items > 50: bounded, each item keeps its 8 heaviest neighbours
    assert m.bounded is not None and m.cooc.size == 0 and m.bounded.capacity == 80 and m.bounded.width == 8
    assert all(len(r) == 5 for r in m.recommend_many(queries(stream())[:5], 5))
    assert len(before) == 5
    m.learn_many([Interaction("u", "i79")], [("i0", "i1")])
    b = m.bounded
    r = int(b.row_of[0])
    slot = int(np.flatnonzero(b.ids[r] == 79)[0])  # in a full row: counted from its lightest slot, scored by 1
    assert b.counts[r, slot] - b.errors[r, slot] == 1.0


def test_item_knn_recommends_at_a_catalog_no_dense_matrix_could_hold() -> None:
    n = 200_000  # dense float32: 160 GB; here 200k x 4 slots
    m = ItemKNN(dense_items=1000, neighbours=4)
    m.add_items([Item(f"x{j}", "") for j in range(n)])
    m.learn_many([Interaction("u", "x7"), Interaction("v", "x199999")], [("x1", "x2"), ("x1",)])
    assert m.bounded is not None and m.bounded.nbytes < 20 * n * 4
    rec = m.recommend(Query("w", ("x1",), frozenset({"x1"})), k=3)
    assert [i for i, _ in rec][:2] in (["x7", "x199999"], ["x199999", "x7"])


def test_an_item_knn_pickled_before_bounded_counts_still_loads_and_grows() -> None:
    m = ItemKNN()
    m.add_items(CATALOG)
    learn(m, stream(400))
    for name in ("bounded", "neighbours", "dense_items"):
        m.__dict__.pop(name, None)  # as pickled by the dense-only version
    old = pickle.loads(pickle.dumps(m))
    qs = queries(stream(400))
    assert old.recommend_many(qs, 5) == m.recommend_many(qs, 5)
    old.dense_items = 100
    old.add_items([Item(f"n{j}", "") for j in range(1100)])  # past the 1,024 rows it had
    assert old.bounded is not None and len(old.recommend(qs[0], 5)) == 5


def adapter(**kw) -> AdapterRecommender:  # noqa: ANN003
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=10, device="cpu", seed=0,
                           training=TrainingConfig(replay_capacity=100), **kw)
    m.add_items(CATALOG)
    return m


def test_adapter_signal_bounded_with_room_for_every_neighbour_scores_as_the_dense_one() -> None:
    data = stream(600)
    dense, bounded = adapter(), adapter(cooccurrence=CooccurrenceConfig(dense_items=0, neighbours=N))
    assert dense._cooc is not None and bounded._cooc is not None and bounded._cooc.bounded is not None
    learn(dense, data)
    learn(bounded, data)
    qs = queries(data)
    assert np.allclose(bounded._score_all_many(qs), dense._score_all_many(qs), rtol=1e-4, atol=1e-4)
    assert [[i for i, _ in r] for r in bounded.recommend_many(qs, 10)] == \
        [[i for i, _ in r] for r in dense.recommend_many(qs, 10)]


def test_adapter_keeps_its_signal_past_the_dense_size(caplog: pytest.LogCaptureFixture) -> None:
    m = adapter(cooccurrence=CooccurrenceConfig(dense_items=100, neighbours=6))
    learn(m, stream(300))
    assert m._cooc is not None and m._cooc.bounded is None
    with caplog.at_level(logging.INFO, logger="learners.signals"):
        m.add_items([Item(f"n{j}", f"new thing {j}") for j in range(200)])  # 280 items: the old cliff
    assert m._cooc is not None and m._cooc.bounded is not None and m._cooc.counts.numel() == 0
    assert m._cooc.bounded.width == 6 and "neighbours per item" in caplog.text
    learn(m, stream(300, seed=1))
    restored = pickle.loads(pickle.dumps(m))
    qs = queries(stream(300, seed=1))
    assert restored.recommend_many(qs, 5) == m.recommend_many(qs, 5)


def test_an_adapter_pickled_before_bounded_counts_loads_with_its_own_dense_limit(
        caplog: pytest.LogCaptureFixture) -> None:
    m = adapter()
    learn(m, stream(200))
    state = pickled_before_parts(m)
    for name in ("cooccurrence_dense_items", "cooccurrence_neighbours"):
        del state[name]
    state["cooccurrence_max_items"] = 10000  # as the dense-only version saved it
    assert state["_cooc"] is not None and "bounded" not in state["_cooc"].__dict__  # a class default, as for old signals
    old = loaded(state)
    assert old.cooccurrence.dense_items == 10000 and old._cooc is not None and old._cooc.bounded is None
    qs = queries(stream(200))
    assert old.recommend_many(qs, 5) == m.recommend_many(qs, 5)
    gone = pickled_before_parts(adapter())  # one saved past 10,000 items, when the signal was dropped: it stays off
    del gone["cooccurrence_dense_items"]
    gone["_cooc"] = None
    with caplog.at_level(logging.WARNING, logger="learners.adapter"):
        back = loaded(gone)
    assert back._cooc is None and "without its co-occurrence signal" in caplog.text
    assert len(back.recommend(qs[0], 5)) == 5


def test_signal_bound_keeps_each_items_heaviest_dense_neighbours() -> None:
    s = CooccurrenceSignal(capacity=5, window=3, recent=3, device=torch.device("cpu"))
    s.update(torch.tensor([[0, 1, 2]]), torch.tensor([[True, True, True]]), torch.tensor([3]))
    s.update(torch.tensor([[0, 0, 2]]), torch.tensor([[False, True, True]]), torch.tensor([4]))
    dense = s.cosine(torch.tensor([[0, 2]]), torch.tensor([[True, True]]), 5, 2)
    s.bound(neighbours=4)
    assert isinstance(s.bounded, BoundedCooccurrence) and s.capacity == 5
    assert torch.allclose(s.cosine(torch.tensor([[0, 2]]), torch.tensor([[True, True]]), 5, 2), dense)


def test_an_emptied_bounded_signal_stays_bounded() -> None:
    m = adapter(cooccurrence=CooccurrenceConfig(dense_items=10, neighbours=5))
    learn(m, stream(100))
    m.reset_statistics()
    assert m._cooc is not None and m._cooc.bounded is not None and m._cooc.bounded.width == 5
    assert m._cooc.capacity >= N and not m._cooc.bounded.fill.any()


def test_a_bounded_signal_grows_by_a_quarter_so_single_arrivals_do_not_copy_it_each_time() -> None:
    s = CooccurrenceSignal(capacity=4, window=3, recent=3, device=torch.device("cpu"))
    s.bound(neighbours=2)
    s.grow(1000)
    assert s.capacity == 1000
    s.grow(1001)
    assert s.capacity == 1250
    before = s.bounded.ids if s.bounded is not None else None
    s.grow(1100)
    assert s.bounded is not None and s.bounded.ids is before
