"""The cold-item gate: what it learns about users, and how it reshapes their lists."""

from __future__ import annotations

import pickle

import numpy as np

from learners.adapter import AdapterRecommender
from learners.cold import ColdConfig, ColdGate
from learners.encoder import HashingEncoder
from learners.types import Interaction, Item, Query

WARM = list(range(10))  # items 0..9 seen often
COLD = list(range(10, 1000))  # each picked once at most


def _gate_after_a_stream(seed: int = 0) -> ColdGate:
    """Users who have just had cold items pick cold items; users of warm items pick warm ones."""
    rng = np.random.default_rng(seed)
    g = ColdGate(threshold=5, min_probability=0.5, slots=2)
    g.grow(1000)
    g.counts[WARM] = 100
    fresh = iter(COLD)
    for _ in range(40):
        idx = np.zeros((20, 5), dtype=np.int64)
        targets = np.zeros(20, dtype=np.int64)
        for r in range(20):
            cold_user = r % 2 == 0
            idx[r] = rng.choice(COLD[:60], 5) if cold_user else rng.choice(WARM, 5)
            targets[r] = next(fresh) if cold_user else rng.choice(WARM)
        g.learn(idx, np.ones_like(idx, dtype=bool), targets)
    return g


def test_the_gate_learns_that_users_of_cold_items_pick_cold_items() -> None:
    g = _gate_after_a_stream()
    mask = np.ones((2, 5), dtype=bool)
    p_cold_user, p_warm_user = g.probability(np.array([[20, 21, 22, 23, 24], [0, 1, 2, 3, 4]]), mask)
    assert p_cold_user > 0.5 > p_warm_user
    assert g.counts[10] == 1 and g.counts[0] > 100  # every learned event is counted


def test_reshape_gives_the_last_slots_of_gated_lists_to_the_best_cold_items_not_excluded() -> None:
    g = _gate_after_a_stream()
    ids = [f"i{j}" for j in range(200)]
    scores = np.zeros((2, 200), dtype=np.float32)
    scores[:, 150:160] = np.arange(10, 0, -1)  # cold 150 best, then 151, ...
    scores[:, 0] = 50.0  # a warm item scores above all of them
    recs = [[(f"i{j}", 1.0 - j / 10) for j in range(5)] for _ in range(2)]
    qs = [Query("cold-user", exclude=frozenset({"i150"})), Query("warm-user")]
    idx = np.array([[20, 21, 22, 23, 24], [0, 1, 2, 3, 4]])
    out = g.reshape(recs, scores, idx, np.ones((2, 5), dtype=bool), qs, ids)
    assert out[0] == [("i0", 1.0), ("i1", 0.9), ("i2", 0.8), ("i151", 0.7), ("i152", 0.6)]  # i150 excluded
    assert out[1] == recs[1]  # a user of warm items keeps the model's list
    unchanged = ColdGate(slots=0)
    assert unchanged.reshape(recs, scores, idx, np.ones((2, 5), dtype=bool), qs, ids) == recs


def test_reshape_never_repeats_an_item_already_in_the_list() -> None:
    g = ColdGate(threshold=5, min_probability=0.0, slots=2)
    g.grow(4)
    g.counts[:] = [9, 0, 0, 9]
    recs = [[("a", 3.0), ("b", 2.0), ("d", 1.0)]]
    scores = np.array([[0.0, 5.0, 4.0, 0.0]], dtype=np.float32)  # b and c are cold; b is already listed first
    out = g.reshape(recs, scores, np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1), dtype=bool), [Query("u")],
                    ["a", "b", "c", "d"])
    assert out == [[("a", 3.0), ("b", 2.0), ("c", 1.0)]]


def test_the_default_learner_opens_cold_slots_and_keeps_them_across_a_checkpoint() -> None:
    enc = HashingEncoder(16)
    m = AdapterRecommender(enc, dim=8, seq_len=5, device="cpu", cold=ColdConfig(gate=0.0, slots=2), seed=0)
    items = [f"w{j}" for j in range(5)] + [f"c{j}" for j in range(30)]
    m.add_items([Item(i, f"film {i}") for i in items])
    for _ in range(10):  # the w items become warm
        m.learn_many([Interaction(f"u{j}", f"w{j}") for j in range(5)], [(f"w{(j + 1) % 5}",) for j in range(5)])
    q = Query("u", ("w0",), frozenset({"w0"}))
    rec = m.recommend(q, k=6)
    assert [i[0] for i in rec[-2:]] == [i for i in [r[0] for r in rec] if i.startswith("c")][-2:]
    assert all(i.startswith("c") for i, _ in rec[-2:]) and len({i for i, _ in rec}) == 6
    restored = pickle.loads(pickle.dumps(m))
    restored.attach_encoder(enc)
    assert restored.recommend(q, k=6) == rec
    off = AdapterRecommender(enc, dim=8, seq_len=5, device="cpu", cold=ColdConfig(slots=0), seed=0)
    assert off._gate is None
