"""The learner's parts: each config dataclass is the one source of its hyper-parameters (documented, checked, named
as the settings name them), and a learner pickled before the part configs loads with the same recommendations."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from learners.adapter import AdapterRecommender
from learners.attributes import AttributeConfig
from learners.cold import ColdConfig
from learners.encoder import HashingEncoder
from learners.exploration import ExplorationConfig
from learners.fusion import FusionConfig
from learners.migrate import FLAT_FIELDS, PART_CONFIGS
from learners.retrieval import RetrievalConfig
from learners.signals import CooccurrenceConfig
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query

CONFIGS = [*PART_CONFIGS.values(), RetrievalConfig, ExplorationConfig]


def pickled_before_parts(m: AdapterRecommender) -> dict[str, Any]:
    """``m``'s pickled state as a learner saved before the part configs held it: flat hyper-parameters and the
    attribute fields on the learner itself."""
    state = copy.deepcopy(m.__getstate__())
    for flat, (part, name, _) in FLAT_FIELDS.items():
        state[flat] = getattr(state[part], name)
    for part in PART_CONFIGS:
        del state[part]
    a = state.pop("_attributes", None)
    if a is not None:
        state.update(_attr_index=a.index, _attr_rows=a.rows, _attr_support=a.support, _attr_width=a.width)
    return state


def loaded(state: dict[str, Any]) -> AdapterRecommender:
    """What unpickling ``state`` gives."""
    m = AdapterRecommender.__new__(AdapterRecommender)
    m.__setstate__(state)
    return m


def trained(**kw: Any) -> AdapterRecommender:
    m = AdapterRecommender(HashingEncoder(32), dim=8, seq_len=6, device="cpu", text_dims=0, seed=1,
                           training=TrainingConfig(early_events=0), **kw)
    m.add_items([Item(f"i{j}", f"topic{j % 4} word{j % 7}", (f"brand=b{j % 3}",)) for j in range(40)])
    rng = np.random.default_rng(0)
    for _ in range(6):
        users = rng.integers(0, 30, size=24)
        m.learn_many([Interaction(f"u{u}", f"i{(u * 3 + int(rng.integers(0, 4))) % 40}") for u in users],
                     [[f"i{(u * 3 + j) % 40}" for j in range(3)] for u in users])
    return m


def queries() -> list[Query]:
    return [Query(f"q{j}", (f"i{j}", f"i{j + 1}"), frozenset({f"i{j}", f"i{j + 1}"})) for j in range(0, 30, 3)]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_of_every_part_config_has_its_one_line_doc(cls: type) -> None:
    missing = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("doc")]
    assert not missing


@pytest.mark.parametrize(("make", "message"), [
    (lambda: TrainingConfig(learning_rate=0.0), "training.learning_rate: expected a number > 0, got 0.0"),
    (lambda: TrainingConfig(early_steps=0), "training.early_steps: expected a number >= 1, got 0"),
    (lambda: CooccurrenceConfig(window=-1), "cooccurrence.window: expected a number >= 0, got -1"),
    (lambda: FusionConfig(weight=float("nan")), "fusion.weight: expected a number >= 0, got nan"),
    (lambda: ColdConfig(gate=1.5), "cold.gate: expected a number in [0, 1], got 1.5"),
    (lambda: AttributeConfig(scale=0), "attributes.scale: expected a number > 0, got 0"),
    (lambda: RetrievalConfig(ann_ef=0), "retrieval.ann_ef: expected a number >= 1, got 0"),
    (lambda: ExplorationConfig(epsilon=2), "exploration.epsilon: expected a number in [0, 1], got 2"),
])
def test_a_bad_value_names_its_part_and_field(make: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message


def test_the_learner_stores_each_part_config_under_its_argument_name() -> None:
    cold, fusion = ColdConfig(slots=2), FusionConfig(weight=0.1)
    m = AdapterRecommender(HashingEncoder(8), cold=cold, fusion=fusion, device="cpu")
    assert m.cold is cold and m.fusion is fusion and m.training == TrainingConfig()
    assert m._gate is not None and m._gate.slots == 2


def test_a_learner_pickled_before_the_part_configs_loads_with_the_same_lists() -> None:
    m = trained(cold=ColdConfig(threshold=3, gate=0.0, slots=2), attributes=AttributeConfig(slots=2),
                fusion=FusionConfig(weight=0.7, recent=4, popularity=0.2))
    old = loaded(pickled_before_parts(m))
    for part in PART_CONFIGS:
        assert getattr(old, part) == getattr(m, part), part
    assert old.attribute_values == m.attribute_values
    qs = queries()
    assert old.recommend_many(qs, 8) == m.recommend_many(qs, 8)
    x = [Interaction("u1", "i5")], [("i1", "i2")]
    old.learn_many(*x)
    m.learn_many(*x)  # and they go on learning alike
    assert old.recommend_many(qs, 8) == m.recommend_many(qs, 8)
    back = pickle.loads(pickle.dumps(old))
    assert back.recommend_many(qs, 8) == m.recommend_many(qs, 8)


def test_an_old_learner_that_lacked_a_mechanism_loads_with_it_off() -> None:
    """A hyper-parameter missing from an old pickle takes the value the learner had before it existed."""
    m = trained()
    state = pickled_before_parts(m)
    for flat in ("fusion_weight", "fusion_popularity", "ema_decay", "attribute_slots"):
        del state[flat]
    old = loaded(state)
    assert not old.fusion.on and old.training.ema_decay == 0.0 and old.attributes.slots == 0
