"""User intent from text (Query.intent): the request's text moves that request's user vector, and nothing else."""

from __future__ import annotations

import numpy as np

from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.intent import IntentConfig
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query

TOPICS = ["space rocket", "cooking recipe", "football match", "jazz music"]


def trained(**kw: object) -> AdapterRecommender:
    """Items of four topics; users who stay within the topic of their history (a strong taste: the text needs a
    weight of 3 here to outweigh it)."""
    rng = np.random.default_rng(0)
    m = AdapterRecommender(HashingEncoder(64), dim=16, seq_len=8, device="cpu", training=TrainingConfig(early_events=0),
                           text_dims=0, **{"intent": IntentConfig(weight=3.0), **kw})  # type: ignore[arg-type]
    m.add_items([Item(f"{t.split()[0]}{j}", f"{t} number {j}") for t in TOPICS for j in range(20)])
    for s in range(8):
        xs, hs = [], []
        for e in range(64):
            t = TOPICS[(s + e) % 4].split()[0]
            hs.append([f"{t}{int(j)}" for j in rng.integers(0, 20, size=4)])
            xs.append(Interaction(f"u{s}-{e}", f"{t}{int(rng.integers(0, 20))}"))
        m.learn_many(xs, hs)
    return m


def space_fan(intent: str = "") -> Query:
    h = ("space1", "space2", "space3")
    return Query("u", h, frozenset(h), intent)


def test_the_text_of_a_request_brings_its_topic_into_the_list() -> None:
    m = trained()
    plain = [i for i, _ in m.recommend_readonly(space_fan(), k=10)]
    asked = [i for i, _ in m.recommend_readonly(space_fan("cooking recipe"), k=10)]
    assert sum(i.startswith("cooking") for i in asked) > sum(i.startswith("cooking") for i in plain)
    assert m.recommend_readonly(space_fan(), k=10) == m.recommend_readonly(space_fan(""), k=10)


def test_a_weight_of_zero_or_no_encoder_ignores_the_text() -> None:
    m = trained(intent=IntentConfig(weight=0.0))
    assert m.recommend_readonly(space_fan("cooking recipe"), k=10) == m.recommend_readonly(space_fan(), k=10)


def test_texts_are_encoded_once_and_explained_as_intent() -> None:
    m = trained()
    calls: list[list[str]] = []
    encode = m.encoder.encode

    def counting(texts):  # noqa: ANN001, ANN202
        calls.append(list(texts))
        return encode(texts)

    m.encoder.encode = counting  # type: ignore[method-assign, union-attr]
    m.encode_intents(["cooking recipe", "cooking recipe"])
    qs = [space_fan("cooking recipe"), space_fan()]
    recs = m.recommend_many(qs, k=10)
    assert calls == [["cooking recipe"]]  # one batch, once: recommending found it cached
    why = m.explain_many(qs, recs)
    kinds = {b["kind"] for (i, _), b in zip(recs[0], why[0], strict=True) if i.startswith("cooking")}
    assert kinds == {"intent"}
    assert all(b["kind"] != "intent" for b in why[1])
