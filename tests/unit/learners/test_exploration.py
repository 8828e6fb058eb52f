"""Exploration policies (learners.exploration) inside the default learner: seeded, bounded, marked."""

from __future__ import annotations

import pytest

from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.exploration import ExplorationConfig
from learners.retrieval import RetrievalConfig
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query

TWO_STAGE = RetrievalConfig(exact_max_items=0, refresh_in_background=False)


def trained(cfg: ExplorationConfig, seed: int = 0, retrieval: RetrievalConfig | None = None) -> AdapterRecommender:
    m = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=8, device="cpu", training=TrainingConfig(early_events=0),
                           exploration=cfg, seed=seed, retrieval=retrieval)
    m.add_items([Item(f"i{j}", f"topic{j % 5} thing{j}") for j in range(80)])
    for s in range(5):
        m.learn_many([Interaction(f"u{e}", f"i{(e * 7 + s) % 80}") for e in range(50)],
                     [(f"i{(e * 3) % 80}", f"i{(e * 5) % 80}") for e in range(50)])
    return m


def queries() -> list[Query]:
    return [Query(f"q{j}", (f"i{j}", f"i{j + 1}"), frozenset({f"i{j}", f"i{j + 1}", f"i{j + 2}"})) for j in range(30)]


@pytest.mark.parametrize("retrieval", [None, TWO_STAGE], ids=["exact", "two-stage"])
@pytest.mark.parametrize("policy", ["epsilon", "ucb", "thompson"])
def test_explored_places_are_marked_new_to_the_list_and_never_excluded(policy: str,
                                                                        retrieval: RetrievalConfig | None) -> None:
    """Also past retrieval.exact_max_items, where the exploration's ranking reuses the model's candidates."""
    cfg = ExplorationConfig(policy, epsilon=1.0, places=2, bonus=5.0)
    m, plain = trained(cfg, retrieval=retrieval), trained(ExplorationConfig(), retrieval=retrieval)
    qs = queries()
    model = plain.recommend_many(qs, 10)
    m.observe_feedback([[i for i, _ in r] for r in model] * 3, [])  # what the model shows has been shown
    recs = m.recommend_many(qs, 10)
    assert len(m.last_explored) == len(qs) and plain.last_explored == [{}] * len(qs)
    assert any(m.last_explored)
    for q, rec, own, marks in zip(qs, recs, model, m.last_explored, strict=True):
        ids = [i for i, _ in rec]
        assert len(ids) == len(set(ids)) == 10 and not set(ids) & q.exclude
        assert set(marks) <= {8, 9}  # the last `places` places; the first stay the model's
        assert ids[:8] == [i for i, _ in own][:8]
        assert {ids[p] for p in marks} == set(ids) - {i for i, _ in own}
        scores = [s for _, s in rec]
        assert scores == sorted(scores, reverse=True)  # an explored item takes its place's score
        for p in marks.values():
            assert (p is None) if policy == "thompson" else (0 < p <= 1)


def test_exploration_is_seeded() -> None:
    cfg = ExplorationConfig("thompson", places=3, bonus=5.0)
    assert trained(cfg, seed=3).recommend_many(queries(), 10) == trained(cfg, seed=3).recommend_many(queries(), 10)
    assert trained(cfg, seed=3).recommend_many(queries(), 10) != trained(cfg, seed=4).recommend_many(queries(), 10)


def test_ucb_favours_items_never_shown() -> None:
    m = trained(ExplorationConfig("ucb", places=2, bonus=50.0))
    qs = queries()
    shown = {i for r in trained(ExplorationConfig()).recommend_many(qs, 10) for i, _ in r}
    m.observe_feedback([sorted(shown)] * 50, [])  # everything the model shows has been shown often
    recs = m.recommend_many(qs, 10)
    explored = {rec[p][0] for rec, marks in zip(recs, m.last_explored, strict=True) for p in marks}
    assert explored and not explored & shown


@pytest.mark.parametrize("retrieval", [None, TWO_STAGE], ids=["exact", "two-stage"])
@pytest.mark.parametrize("policy", ["epsilon", "ucb", "thompson"])
def test_explored_items_go_to_the_position_and_the_model_moves_down(policy: str,
                                                                     retrieval: RetrievalConfig | None) -> None:
    cfg = ExplorationConfig(policy, epsilon=1.0, places=2, bonus=5.0, position=1)
    m, plain = trained(cfg, retrieval=retrieval), trained(ExplorationConfig(), retrieval=retrieval)
    qs = queries()
    model = plain.recommend_many(qs, 10)
    m.observe_feedback([[i for i, _ in r] for r in model] * 3, [])
    recs = m.recommend_many(qs, 10)
    assert any(m.last_explored)
    for q, rec, own, marks in zip(qs, recs, model, m.last_explored, strict=True):
        ids, own_ids = [i for i, _ in rec], [i for i, _ in own]
        assert len(ids) == len(set(ids)) == 10 and not set(ids) & q.exclude
        assert set(marks) == set(range(1, 1 + len(marks)))  # from place 1 on, one after another
        assert {ids[p] for p in marks} == set(ids) - set(own_ids)
        rest = [i for p, i in enumerate(ids) if p not in marks]
        assert rest[:8] == own_ids[:8]  # the model's first items, in its order, around the explored ones
        scores = [s for _, s in rec]
        assert scores == sorted(scores, reverse=True)


def test_fresh_events_keeps_the_bonus_to_items_added_lately() -> None:
    """``fresh_events``: items in the catalog through many learned events get no bonus, however rarely shown;
    without it (0) they do."""
    def new_share(fresh_events: int) -> float:
        """The share of the explored places that went to the items added last."""
        m = trained(ExplorationConfig("ucb", places=2, bonus=50.0, position=0, fresh_events=fresh_events))
        m.add_items([Item(f"new{j}", f"topic{j % 5} novel{j}") for j in range(4)])  # after 250 learned events
        m.observe_feedback([[i for i, _ in r] for r in m.recommend_many(queries()[:3], 10)], [])  # lists sent
        recs = m.recommend_many(queries(), 10)
        placed = [rec[p][0] for rec, marks in zip(recs, m.last_explored, strict=True) for p in marks]
        assert len(placed) >= 20
        return sum(i.startswith("new") for i in placed) / len(placed)

    assert new_share(100) >= 0.9  # an old item only where the model's own list already held the new ones
    assert new_share(0) <= 0.5  # the old items rarely shown get places too


@pytest.mark.parametrize("bad", [{"policy": "greedy"}, {"epsilon": 2.0}, {"places": -1}, {"bonus": -0.1},
                                 {"ridge": 0.0}, {"decay": 0.0}, {"decay": 1.5}, {"item_noise": -1.0},
                                 {"position": -2}, {"fresh_events": -1}])
def test_bad_settings_name_the_field(bad: dict) -> None:
    with pytest.raises(ValueError, match=rf"exploration\.{next(iter(bad))}: expected"):
        ExplorationConfig(**bad)


def topic_share(m: AdapterRecommender, recs: list, topic: str) -> float:
    placed = [rec[p][0] for rec, marks in zip(recs, m.last_explored, strict=True) for p in marks]
    return sum(int(i[1:]) % 5 == int(topic) for i in placed) / max(1, len(placed))


def test_thompson_fits_the_clicks_on_what_it_showed_and_leans_to_what_paid_off() -> None:
    """Two learners alike but for the feedback: users clicked only topic-0 items for one and only topic-1 items for
    the other (every other place shown was not clicked). Thompson's explored places follow the clicks."""
    qs = queries()
    cfg = ExplorationConfig("thompson", places=4, bonus=20.0, item_noise=0.0)
    shares = []
    for liked in ("0", "1"):
        m = trained(cfg)
        for _ in range(20):
            recs = m.recommend_many(qs, 10)
            shown = [[i for i, _ in r] for r in recs]
            clicks = [(i, p) for lst in shown for p, i in enumerate(lst) if int(i[1:]) % 5 == int(liked)]
            hist = [next(q.history for q, lst in zip(qs, shown, strict=True) if i in lst) for i, _ in clicks]
            m.observe_feedback(shown, clicks, [q.history for q in qs], hist)
        recs = m.recommend_many(qs, 10)
        shares.append((topic_share(m, recs, "0"), topic_share(m, recs, "1")))
    (zero_for_zero, one_for_zero), (zero_for_one, one_for_one) = shares
    assert zero_for_zero > zero_for_one and one_for_one > one_for_zero, shares


def test_without_the_histories_thompson_counts_exposures_only() -> None:
    m = trained(ExplorationConfig("thompson", places=2))
    recs = m.recommend_many(queries(), 10)
    m.observe_feedback([[i for i, _ in r] for r in recs], [])
    assert m.feedback == (30, 0)
    assert m.recommend_many(queries(), 10)  # its draws come from the prior
