"""Item attributes shared across items: a learned vector per attribute value, used by every item with the value."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from learners.adapter import AdapterRecommender
from learners.attributes import AttributeConfig
from learners.cold import ColdConfig
from learners.encoder import HashingEncoder
from learners.sharing import Contribution
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query, attribute_object, attribute_values

DIRECTORS = 6


def catalog(n: int = 120) -> list[Item]:
    """Films whose text says nothing of their director; users of group g watch director g's films."""
    return [Item(f"i{j}", f"film number {j}", (f"director=d{j % DIRECTORS}", f"genre=g{j % 4}")) for j in range(n)]


def learner(slots: int, seed: int = 0) -> AdapterRecommender:
    return AdapterRecommender(HashingEncoder(32), dim=16, seq_len=8, device="cpu",
                              attributes=AttributeConfig(slots=slots), training=TrainingConfig(early_events=0),
                              cold=ColdConfig(slots=0), text_dims=0, seed=seed)


def teach(m: AdapterRecommender, steps: int = 60, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    films = {g: [j for j in range(120) if j % DIRECTORS == g] for g in range(DIRECTORS)}
    for _ in range(steps):
        groups = rng.integers(0, DIRECTORS, size=32)
        xs = [Interaction(f"u{g}", f"i{rng.choice(films[g])}") for g in groups]
        hs = [tuple(f"i{j}" for j in rng.choice(films[g], 5)) for g in groups]
        m.learn_many(xs, hs)


def fan_of(g: int) -> Query:
    return Query(f"u{g}", tuple(f"i{j}" for j in range(g, 40, DIRECTORS)))


@pytest.mark.parametrize("slots", [8, 0])
def test_a_new_item_by_a_known_director_starts_from_what_was_learned_about_the_director(slots: int) -> None:
    """Two new films with the same text: the one by director 3 scores higher for director 3's fans than the one by
    an unknown director, and lower for another group's fans; without attributes they score the same."""
    m = learner(slots)
    m.add_items(catalog())
    teach(m)
    m.add_items([Item("new-d3", "brand new film", ("director=d3",)), Item("new-dx", "brand new film", ("director=dx",))])
    fan, other = m.score(fan_of(3), ["new-d3", "new-dx"]), m.score(fan_of(1), ["new-d3", "new-dx"])
    if slots:
        assert fan[0] > fan[1] + 0.05
        assert other[0] < other[1]
        assert m.attribute_count == DIRECTORS + 4 + 1
    else:
        assert fan[0] == pytest.approx(fan[1], abs=1e-6)
        assert m.attribute_count == 0


def test_values_past_the_slots_are_left_out_and_a_known_item_takes_new_values() -> None:
    """An item keeps its first ``attributes.slots`` values; a value counts once two items have it."""
    m = learner(2)
    m.add_items([Item("a", "a film", ("director=x", "writer=y", "actor=z")), Item("b", "b film")])
    assert m.attribute_values == ["", "director=x", "writer=y"]
    assert m._attributes.rows[:2].tolist()  # type: ignore[union-attr] == [[1, 2], [0, 0]]
    assert m._attrs(n=2).tolist() == [[0, 0], [0, 0]]  # each value only one item's so far
    emb = np.zeros((1, 32), dtype=np.float32)
    m.add_item_embeddings(["b"], emb, [("writer=y", "writer=y", "actor=z")])  # known item: values replaced, each once
    assert m._attrs(n=2).tolist() == [[0, 2], [2, 0]]  # writer=y now two items'; actor=z still one's
    m.add_item_embeddings(["b"], emb, [("actor=z",)])  # and again: writer=y is back to one item
    assert m._attrs(n=2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="attributes: expected one entry per item"):
        m.add_item_embeddings(["b", "c"], np.zeros((2, 32), dtype=np.float32), [()])


def test_the_value_tables_grow_with_their_optimizer_state_and_survive_a_checkpoint() -> None:
    m = learner(4)
    m.add_items(catalog())
    teach(m, steps=5)
    before = m._head.attr_vec.detach().clone()
    many = [Item(f"n{j}", f"new film {j}", (f"actor=a{j}", f"actor=b{j}", "director=d1")) for j in range(700)]
    m.add_items(many)  # 1,400 more values: past the first 1,024 rows
    assert m.attribute_count == DIRECTORS + 4 + 1400
    assert m._head.attr_vec.shape[0] >= m.attribute_count + 1
    assert torch.equal(m._head.attr_vec.detach()[: before.shape[0]], before)
    state = m._opt.state[m._head.attr_vec]
    assert state["exp_avg"].shape == m._head.attr_vec.shape  # Adam's moments moved to the grown table
    teach(m, steps=3)
    q = fan_of(2)
    back = pickle.loads(pickle.dumps(m))
    assert back.attribute_values == m.attribute_values
    assert back.score(q, ["n5", "i2"]) == pytest.approx(m.score(q, ["n5", "i2"]))


def test_slots_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="attributes.slots"):
        learner(-1)


def test_a_peers_value_vectors_merge_by_value_not_by_row() -> None:
    """Two workers that met the values in different orders: a merge moves each value's vector by the peer's
    delta for that value."""
    items = catalog()
    a, b = learner(4, seed=3), learner(4, seed=3)
    a.add_items(items)
    b.add_items(items[::-1])  # other rows for the same values
    assert a.attribute_values != b.attribute_values
    for m, name in ((a, "a"), (b, "b")):
        m.start_sharing(name)
    teach(a, steps=5)
    c = Contribution.from_bytes(a.contribution().to_bytes())
    ids, delta = c.rows["head.attr_vec"]
    assert "director=d3" in ids and "" not in ids
    row_b = b._attributes.index["director=d3"]  # type: ignore[union-attr]
    start = b._head.attr_vec.detach()[row_b].clone()
    assert b.merge([c]) == 1
    moved = b._head.attr_vec.detach()[row_b] - start
    assert torch.allclose(moved, torch.as_tensor(delta[ids.index("director=d3")]), atol=1e-6)


def test_attribute_values_and_object_are_inverse_for_strings() -> None:
    attrs = {"brand": "Acme", "tags": ["red", "kettle"], "size": 2, "sale": True, "none": None, "blank": " "}
    values = attribute_values(attrs)
    assert values == ("brand=Acme", "tags=red", "tags=kettle", "size=2", "sale=true")
    assert attribute_object(values) == {"brand": ["Acme"], "tags": ["red", "kettle"], "size": ["2"], "sale": ["true"]}
