"""streamrec-retrain-N (learners/baselines/retrain.py): retrained from scratch every N events, frozen in between."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Sequence

import pytest

from learners.adapter import AdapterRecommender
from learners.baselines import PeriodicRetrain
from learners.encoder import HashingEncoder
from learners.types import Interaction, Item, Query
from tests.unit.learners.test_learner_checks import CATALOG, stream  # the same catalog and interaction stream

QUERIES = [Query("u1", ("i0", "i3"), frozenset({"i0", "i3"})), Query("u2", ("i7",), frozenset({"i7"})), Query("new")]


class RecordingAdapter(AdapterRecommender):
    """The adapter, remembering the events each learn_many call got (copies made by the retrain keep their own)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.calls: list[list[Interaction]] = []

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        self.calls.append(list(xs))
        super().learn_many(xs, histories)


def adapter(seed: int = 0, cls: type[AdapterRecommender] = AdapterRecommender) -> AdapterRecommender:
    return cls(HashingEncoder(16), dim=8, seq_len=10, device="cpu", seed=seed)


def feed(m: PeriodicRetrain, data: list[tuple[Interaction, tuple[str, ...]]], batch: int = 8) -> None:
    for start in range(0, len(data), batch):
        chunk = data[start : start + batch]
        m.learn_many([x for x, _ in chunk], [h for _, h in chunk])


def retrainer(every: int = 40, epochs: int = 2, batch_size: int = 16, seed: int = 0,
              cls: type[AdapterRecommender] = AdapterRecommender) -> PeriodicRetrain:
    m = PeriodicRetrain(adapter(seed, cls), every=every, epochs=epochs, batch_size=batch_size, seed=seed)
    m.add_items(CATALOG)
    return m


def test_serves_a_frozen_model_between_retrains() -> None:
    m = retrainer(every=40)
    data = stream(120)
    feed(m, data[:40])
    assert m.retrains == m.model_version == 1
    first = m.recommend_many(QUERIES, 5)
    for start in range(40, 80, 8):  # 39 events after the retrain: nothing the server sees changes
        feed(m, data[start : min(start + 8, 79)])
        assert m.recommend_many(QUERIES, 5) == first and m.model_version == 1
    feed(m, data[79:80])  # the 80th event: the second retrain
    assert m.model_version == 2
    assert m.recommend_many(QUERIES, 5) != first


def test_the_untrained_model_is_served_before_the_first_retrain() -> None:
    m = retrainer(every=40)
    untrained = m.recommend_many(QUERIES, 5)
    feed(m, stream(39))
    assert m.model_version == 0 and m.steps == 0 and m.recommend_many(QUERIES, 5) == untrained


def test_a_retrain_learns_every_event_so_far_once_per_epoch_in_shuffled_batches() -> None:
    m = retrainer(every=40, epochs=3, batch_size=16, cls=RecordingAdapter)
    data = stream(88)
    feed(m, data)  # retrains after 40 and 80 events; 8 more logged
    served = m.model
    assert isinstance(served, RecordingAdapter)
    so_far = [x for x, _ in data[:80]]
    learned = [x for call in served.calls for x in call]
    assert Counter(learned) == Counter(so_far * 3)  # every event so far, once per epoch, nothing else
    assert all(len(call) <= 16 for call in served.calls) and len(served.calls) == 3 * 5
    epochs = [learned[e * 80 : (e + 1) * 80] for e in range(3)]
    assert all(sorted(ep, key=lambda x: x.ts) == so_far for ep in epochs)  # each epoch is one pass
    assert all(ep != so_far for ep in epochs) and epochs[0] != epochs[1]  # shuffled, afresh each epoch
    assert m.steps == 3 * 3 + 3 * 5  # both retrains' steps
    assert len(m.log) == 88


def test_a_retrain_starts_from_scratch_and_counts_statistics_once_in_time_order() -> None:
    m = retrainer(every=40, epochs=3)
    data = stream(80)
    feed(m, data)
    served = m.model
    assert served.model_version == 3 * 5  # one version per mini-batch of this retrain only: a fresh model
    # the side statistics hold the 80 events once each (not once per epoch), in time order: the same counts as
    # counting them straight into an untrained copy
    reference = adapter()
    reference.add_items(CATALOG)
    for start in range(0, 80, 256):
        reference.count_many([x for x, _ in data[start : start + 256]], [h for _, h in data[start : start + 256]])
    assert served._cooc is not None and reference._cooc is not None
    assert float(served._cooc.item_counts.sum()) == 80.0
    assert bool((served._cooc.counts == reference._cooc.counts).all())
    assert served._pop is not None and reference._pop is not None
    assert bool((served._pop.decayed == reference._pop.decayed).all())


def test_pickle_round_trip_serves_and_retrains_identically() -> None:
    m = retrainer(every=40)
    data = stream(120)
    feed(m, data[:64])
    clone = pickle.loads(pickle.dumps(m))
    assert clone.recommend_many(QUERIES, 5) == m.recommend_many(QUERIES, 5)
    assert (clone.model_version, len(clone.log)) == (m.model_version, len(m.log))
    feed(m, data[64:])
    feed(clone, data[64:])  # the shuffles' random state came along: the next retrains are the same
    assert clone.model_version == m.model_version == 3
    assert clone.recommend_many(QUERIES, 5) == m.recommend_many(QUERIES, 5)
    clone.attach_encoder(HashingEncoder(16))  # the encoder is not pickled: attached again to add items by text
    clone.add_items([Item("fresh", "space rocket sequel")])
    assert clone.score(Query("u1", ("i0",)), ["fresh"])[0] > float("-inf")


def test_a_trained_template_or_a_bad_period_is_refused() -> None:
    trained = adapter()
    trained.add_items(CATALOG)
    trained.learn_one(Interaction("u", "i1"), ("i0",))
    with pytest.raises(ValueError, match="template: expected an untrained learner"):
        PeriodicRetrain(trained)
    for bad in ({"every": 0}, {"epochs": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PeriodicRetrain(adapter(), **bad)
