"""Checks applied to every learner (river-style): no input mutation, pickle round trip, seeding, unknowns."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest

from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.training import TrainingConfig
from learners.types import BaseLearner, Interaction, Item, Query

CATALOG = [Item(f"i{j}", f"{['space rocket', 'cooking pasta', 'tennis match'][j % 3]} number {j}") for j in range(30)]


def stream(n: int = 120) -> list[tuple[Interaction, tuple[str, ...]]]:
    out, hist = [], {}
    for t in range(n):
        u = f"u{t % 7}"
        item = f"i{(t * 3 + t % 7) % 30}"
        h = tuple(hist.get(u, ()))
        out.append((Interaction(u, item, float(t)), h))
        hist[u] = [*h, item][-10:]
    return out


def factories() -> dict[str, Callable[[int], BaseLearner]]:
    out: dict[str, Callable[[int], BaseLearner]] = {
        "adapter": lambda seed: AdapterRecommender(HashingEncoder(16), dim=8, seq_len=10, device="cpu", seed=seed,
                                                   training=TrainingConfig(replay_capacity=50)),
    }
    try:
        from learners.baselines import BASELINES, PeriodicRetrain
    except ImportError:
        return out
    out["retrain"] = lambda seed: PeriodicRetrain(  # type: ignore[assignment,return-value]  # a wrapper, no BaseLearner
        AdapterRecommender(HashingEncoder(16), dim=8, seq_len=10, device="cpu", seed=seed), every=40, epochs=2,
        seed=seed)
    for name, make in BASELINES.items():
        if name != "river-mf":
            out[name] = lambda seed, make=make: make(seed=seed)
    return out


def trained(make: Callable[[int], BaseLearner], seed: int = 0) -> BaseLearner:
    m = make(seed)
    m.add_items(CATALOG)
    data = stream()
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        m.learn_many([x for x, _ in chunk], [h for _, h in chunk])
    return m


QUERIES = [Query("u1", ("i0", "i3"), frozenset({"i0", "i3"})), Query("stranger"), Query("u2", ("nope",))]


@pytest.mark.parametrize("name", sorted(factories()))
def test_input_not_mutated(name: str) -> None:
    m = factories()[name](0)
    m.add_items(CATALOG)
    data = stream(40)
    before = copy.deepcopy(data)
    m.learn_many([x for x, _ in data], [h for _, h in data])
    assert data == before


@pytest.mark.parametrize("name", sorted(factories()))
def test_pickle_round_trip_gives_identical_recommendations(name: str) -> None:
    m = trained(factories()[name])
    clone = pickle.loads(pickle.dumps(m))
    assert clone.recommend_many(QUERIES, 5) == m.recommend_many(QUERIES, 5)


@pytest.mark.parametrize("name", sorted(factories()))
def test_seeding_is_deterministic(name: str) -> None:
    a = trained(factories()[name], seed=3)
    b = trained(factories()[name], seed=3)
    assert a.recommend_many(QUERIES, 5) == b.recommend_many(QUERIES, 5)


@pytest.mark.parametrize("name", sorted(factories()))
def test_unknown_users_and_items_are_handled(name: str) -> None:
    m = trained(factories()[name])
    recs = m.recommend_many(QUERIES, 5)
    assert all(len(r) == 5 for r in recs)
    assert not {"i0", "i3"} & {i for i, _ in recs[0]}  # exclusion honoured
    m.learn_one(Interaction("new-user", "unknown-item"), ("also-unknown",))  # must not raise
    assert m.score(Query("x"), ["i1", "missing"])[1] == float("-inf")


def test_adapter_learns_the_pattern() -> None:
    """After training on 'space -> space' sequences the adapter ranks space items first."""
    m = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=5, device="cpu",
                           training=TrainingConfig(learning_rate=0.02))
    m.add_items(CATALOG)
    q = Query("v", ("i0",), frozenset({"i0"}))
    before = m.score(q, ["i3"])[0] - max(m.score(q, [f"i{j}" for j in range(1, 30) if j % 3])) 
    space = [it.item_id for it in CATALOG if "space" in it.text]
    xs, hs = [], []
    for t in range(300):
        a, b = space[t % len(space)], space[(t + 1) % len(space)]
        xs.append(Interaction(f"u{t}", b))
        hs.append((a,))
    for s in range(0, 300, 20):
        m.learn_many(xs[s : s + 20], hs[s : s + 20])
    after = m.score(q, ["i3"])[0] - max(m.score(q, [f"i{j}" for j in range(1, 30) if j % 3]))
    assert after > before and after > 0  # the learned next item now beats every non-space item
    assert m.recommend(q, k=3)[0][0] == "i3"


def test_adapter_catalog_growth_keeps_training() -> None:
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu")
    m.add_items(CATALOG[:3])
    m.learn_one(Interaction("u", "i1"), ("i0",))
    m.add_items([Item(f"n{j}", f"new thing {j}") for j in range(2000)])  # forces the per-item tensors to grow
    m.learn_one(Interaction("u", "n5"), ("i0", "i1"))
    assert m.model_version == 2 and len(m.item_ids) == 2003
    assert len(m.recommend(Query("u", ("n5",)), k=10)) == 10


def test_replay_examples_are_mixed_in() -> None:
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu",
                           training=TrainingConfig(replay_capacity=10, replay_ratio=1.0))
    m.add_items(CATALOG)
    for t in range(30):
        m.learn_one(Interaction("u", f"i{t % 30}"), ())
    assert len(m.replay) == 10 and m.replay.seen == 30


@pytest.mark.parametrize("name", sorted(factories()))
def test_on_demand_calls_change_nothing(name: str) -> None:
    """recommend_readonly and similar_items (the worker's HTTP routes) leave the learner exactly as it was."""
    m = trained(factories()[name])
    before = pickle.dumps(m)
    for _ in range(3):
        lists = [m.recommend_readonly(q, 5) for q in QUERIES]
        similar = m.similar_items("i3", 4)
    assert pickle.dumps(m) == before
    assert lists[0] == m.recommend(QUERIES[0], 5)  # a known user: the list an event would have got
    assert all(lists) and m.similar_items("nope") is None
    assert similar is not None and "i3" not in {i for i, _ in similar} and len(similar) <= 4
