"""Explanations (learners.explain): each recommended item's ``because``, faithful to the model's score."""

from __future__ import annotations

import numpy as np
import pytest

from learners.adapter import AdapterRecommender
from learners.cold import ColdConfig
from learners.encoder import HashingEncoder
from learners.explain import recent_distinct
from learners.retrieval import RetrievalConfig
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query

N_ITEMS = 200


def trained(retrieval: RetrievalConfig) -> AdapterRecommender:
    """Items in 10 topics; users whose next item follows the topic of their latest items."""
    rng = np.random.default_rng(0)
    m = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=8, device="cpu", text_dims=0,
                           training=TrainingConfig(early_events=0), retrieval=retrieval, cold=ColdConfig(threshold=2))
    m.add_items([Item(f"i{j}", f"topic{j % 10} word{j % 7} thing{j}") for j in range(N_ITEMS)])
    for s in range(12):
        xs, hs = [], []
        for e in range(100):
            topic = (s * 100 + e) % 10
            hs.append([f"i{topic + 10 * int(x)}" for x in rng.integers(0, N_ITEMS // 10, size=5)])
            xs.append(Interaction(f"u{s}-{e}", f"i{topic + 10 * int(rng.integers(0, N_ITEMS // 10))}"))
        m.learn_many(xs, hs)
    m.wait_for_index()
    return m


def queries() -> list[Query]:
    """Histories of two topics each (so the lists mix items explained by different history items)."""
    rng = np.random.default_rng(1)
    out = []
    for q in range(40):
        a, b = q % 10, (q + 3) % 10
        h = tuple(f"i{t + 10 * int(x)}" for t in (a, b, a, b) for x in rng.integers(0, N_ITEMS // 10, size=2))
        out.append(Query(f"q{q}", h, frozenset(h)))
    return out


SIZES = [pytest.param(RetrievalConfig(), id="exact"),
         pytest.param(RetrievalConfig(exact_max_items=0, refresh_in_background=False), id="two-stage")]


@pytest.mark.parametrize("retrieval", SIZES)
def test_removing_the_cited_history_item_lowers_the_items_score(retrieval: RetrievalConfig) -> None:
    m = trained(retrieval)
    qs = queries()
    recs = m.recommend_many(qs, k=10)
    reasons = m.explain_many(qs, recs)
    cited = 0
    for q, rec, why in zip(qs, recs, reasons, strict=True):
        assert len(why) == len(rec)
        for (item, _), because in zip(rec, why, strict=True):
            if because["kind"] != "history":
                continue
            cited += 1
            j = because["item_id"]
            assert j in q.history
            shorter = Query(q.user_id, tuple(x for x in q.history if x != j), q.exclude)
            assert m.score(shorter, [item])[0] < m.score(q, [item])[0], (q.history, item, j)
    assert cited >= 0.8 * sum(len(r) for r in recs)  # users with a history: their items are mostly theirs


def test_explaining_changes_nothing() -> None:
    m = trained(RetrievalConfig())
    qs = queries()
    version, before = m.model_version, m.recommend_readonly(qs[0])
    m.explain_many(qs, m.recommend_many(qs, k=10))
    assert (m.model_version, m.recommend_readonly(qs[0])) == (version, before)


def test_new_and_popular_items() -> None:
    """With no history to credit, an item with no interaction is ``new`` and a known one ``popular``."""
    m = trained(RetrievalConfig())
    m.add_items([Item("fresh", "topic1 word1 brand new")])
    stranger = Query("stranger")
    reasons = m.explain_many([stranger], [[("i1", 1.0), ("fresh", 0.5)]])
    assert reasons == [[{"kind": "popular"}, {"kind": "new"}]]
    untrained = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=8, device="cpu")
    untrained.add_items([Item("a", "a thing"), Item("b", "b thing")])
    assert untrained.explain_many([queries()[0]], [[("a", 0.0)]]) == [[{"kind": "new"}]]


def test_recent_distinct_items_newest_first() -> None:
    idx, mask = np.array([[0, 1, 0, 2]]), np.ones((1, 4), dtype=bool)
    assert recent_distinct(idx, mask, 5) == [[2, 0, 1]]
