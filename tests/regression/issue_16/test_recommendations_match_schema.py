"""Issue 16, fault 1: every recommendation the worker publishes holds to the README's schema.

The cold gate's re-rank put a displaced ``(item_id, score)`` pair where an item id belonged when fewer cold items
than cold places could be found, so a consumer saw ``{"item_id": ["71", 5.13], ...}``. The first test is that
case by hand; the property tests generate catalogs, histories, settings and batches (unknown items, repeated
users, cold gates that fire on every list, tiny catalogs) and hold every outgoing message, recommendations and
dead letters alike, to the JSON schemas in ``connectors.schemas``.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.schemas import DLQ_JSON_SCHEMA, RECOMMENDATION_JSON_SCHEMA, schema_errors
from learners.adapter import AdapterRecommender
from learners.cold import ColdConfig, ColdGate
from learners.encoder import HashingEncoder
from learners.exploration import POLICIES, ExplorationConfig
from learners.history import UserState
from learners.training import TrainingConfig
from learners.types import Item, Query
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, RawMessage
from stream.settings import load_settings


def test_cold_places_that_cannot_all_be_filled_keep_plain_item_ids() -> None:
    g = ColdGate(threshold=1, min_probability=0.0, slots=3)
    g.grow(4)
    g.counts[:] = [5, 5, 5, 0]  # one cold item for three cold places
    recs = [[("a", 0.9), ("b", 0.8), ("c", 0.7)]]
    out = g.reshape(recs, np.array([[4.0, 3.0, 2.0, 1.0]]), np.zeros((1, 1), int), np.zeros((1, 1), bool),
                    [Query("u")], ["a", "b", "c", "d"])
    assert out == [[("d", 0.9), ("a", 0.8), ("b", 0.7)]]
    assert all(isinstance(i, str) for i, _ in out[0])


def _check_outgoing(res) -> None:  # noqa: ANN001 - a BatchResult
    for user, record in res.recommendations:
        wire = json.dumps(record, allow_nan=False)  # what the agent sends; NaN/inf would raise here
        assert schema_errors(wire, RECOMMENDATION_JSON_SCHEMA) == [], wire
        ids = [i["item_id"] for i in record["items"]]
        assert all("because" in i for i in record["items"]), wire  # explain is on by default
        assert all((i["because"] == {"kind": "explore"}) == i.get("explore", False) for i in record["items"]), wire
        assert len(ids) == len(set(ids)), wire
        assert record["user_id"] == user
    for _, record in res.dlq:
        assert schema_errors(json.dumps(record, allow_nan=False), DLQ_JSON_SCHEMA) == []


ids = st.text(alphabet="abcxyz019-_é", min_size=1, max_size=6)
events = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3", "ü"]), st.integers(0, 40), st.sampled_from(["click", "view", "buy"])),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_items=st.integers(1, 25),
    top_k=st.integers(1, 12),
    cold_slots=st.integers(0, 12),
    cold_gate=st.sampled_from([0.0, 0.5, 1.0]),
    history=st.lists(st.integers(0, 40), max_size=30),
    batches=st.lists(events, min_size=1, max_size=4),
    seed=st.integers(0, 3),
    policy=st.sampled_from(POLICIES),
)
def test_every_outgoing_message_matches_its_schema(n_items: int, top_k: int, cold_slots: int, cold_gate: float,
                                                   history: list[int], batches: list, seed: int, policy: str) -> None:
    cold = ColdConfig(gate=cold_gate, slots=cold_slots)
    s = load_settings(top_k=top_k, cold=cold, seq_len=8, seed=seed)
    learner = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=8, cold=cold, training=TrainingConfig(early_events=0),
                                 device="cpu", seed=seed,
                                 exploration=ExplorationConfig(policy, epsilon=0.5, places=2, bonus=2.0))
    learner.add_items([Item(f"i{j}", f"item number {j}") for j in range(n_items)])
    proc = EventProcessor(s, learner, WorkerMetrics(), clock=lambda: 1000.0)
    states: dict[str, UserState] = {}
    pre = UserState()
    for j in history:  # a stored history that may name items the catalog lacks
        pre.append(f"i{j}", s.seq_len, s.seen_max)
    states["u1"] = pre
    offset = 0
    for batch in batches:
        msgs = []
        for user, item, etype in batch:
            offset += 1
            value = {"event_id": f"e{offset % 7}" if item % 5 == 0 else f"e{offset}", "user_id": user,
                     "item_id": f"i{item}", "event_type": etype, "ts": float(offset)}
            msgs.append(RawMessage(user.encode(), json.dumps(value).encode(), "events", 0, offset, 999.0))
        res = proc.prepare(msgs, lambda u: UserState.from_dict(states[u].to_dict()) if u in states else UserState())
        _check_outgoing(res)
        for user, (state, _) in res.states.items():
            states[user] = state
        proc.learn(res)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode), key=st.none() | st.binary(max_size=20))
def test_dead_letters_of_arbitrary_bytes_match_their_schema(raw: bytes, key: bytes | None) -> None:
    s = load_settings(max_event_bytes=128)
    learner = AdapterRecommender(HashingEncoder(8), dim=4, seq_len=4, device="cpu")
    learner.add_items([Item("i0", "only item")])
    proc = EventProcessor(s, learner, WorkerMetrics(), clock=lambda: 1.0)
    res = proc.prepare([RawMessage(key, raw, "events", 0, 1, 1.0)], lambda u: UserState())
    _check_outgoing(res)


def test_reasons_the_schema_refuses() -> None:
    """A history reason names its item; a reason is one of the README's kinds."""
    def record(because: object) -> dict:
        return {"user_id": "u", "event_id": None, "rec_id": "r", "model_version": 1, "event_ts": 1.0,
                "emitted_ts": 1.0, "items": [{"item_id": "i", "score": 1.0, "because": because}]}

    assert schema_errors(record({"kind": "history", "item_id": "j"}), RECOMMENDATION_JSON_SCHEMA) == []
    assert schema_errors(record({"kind": "new"}), RECOMMENDATION_JSON_SCHEMA) == []
    assert schema_errors(record({"kind": "history"}), RECOMMENDATION_JSON_SCHEMA) != []
    assert schema_errors(record({"kind": "because"}), RECOMMENDATION_JSON_SCHEMA) != []
    assert schema_errors(record("history"), RECOMMENDATION_JSON_SCHEMA) != []
