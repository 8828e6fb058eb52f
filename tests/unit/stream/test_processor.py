"""The events agent's batch logic without a broker: validation, DLQ, per-event prefixes, test-then-learn."""

from __future__ import annotations

import json
import math

import pytest

from learners.adapter import AdapterRecommender
from learners.cold import ColdConfig
from learners.encoder import HashingEncoder
from learners.exploration import ExplorationConfig
from learners.history import UserState
from learners.types import Item
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor, RawMessage
from stream.settings import load_settings


def msg(d: dict | bytes, **kw) -> RawMessage:
    value = d if isinstance(d, bytes) else json.dumps(d).encode()
    return RawMessage(b"k", value, "events", 0, kw.get("offset", 0), 100.0)


def event(n: int, user: str, item: str, event_type: str = "click") -> dict:
    return {"event_id": f"e{n}", "user_id": user, "item_id": item, "event_type": event_type, "ts": float(n)}


def make(**settings) -> tuple[EventProcessor, AdapterRecommender, WorkerMetrics]:
    s = load_settings(**settings)
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=s.seq_len, device="cpu")
    m.add_items([Item(f"i{j}", f"item number {j}") for j in range(20)])
    metrics = WorkerMetrics()
    return EventProcessor(s, m, metrics, clock=lambda: 200.0), m, metrics


def test_bad_events_go_to_dlq_with_reason_and_batch_goes_on() -> None:
    p, m, metrics = make()
    batch = [msg(event(1, "u", "i1")), msg(b"{nope"), msg({**event(2, "u", "i2"), "ts": "yesterday"}),
             msg(event(3, "u", "i3"))]
    res = p.prepare(batch, lambda u: UserState())
    assert [r["event_id"] for _, r in res.recommendations] == ["e1", "e3"]
    assert [d["reason"] for _, d in res.dlq] == ["invalid_json", "wrong_type"]
    assert metrics.invalid.labels("invalid_json")._value.get() == 1  # noqa: SLF001
    p.learn(res)
    assert m.model_version == 1


def test_same_user_twice_in_a_batch_uses_per_event_prefixes() -> None:
    p, m, _ = make()
    res = p.prepare([msg(event(1, "u", "i1")), msg(event(2, "u", "i2"))], lambda u: UserState(["i0"], ["i0"], 1))
    assert res.histories == [("i0",), ("i0", "i1")]
    first, second = (r for _, r in res.recommendations)
    assert not {"i0", "i1"} & {i["item_id"] for i in first["items"]}
    assert not {"i0", "i1", "i2"} & {i["item_id"] for i in second["items"]}
    state, _ = res.states["u"]
    assert state.seq == ["i0", "i1", "i2"] and state.n == 3


def test_recommend_before_learning_and_version_carried() -> None:
    p, m, _ = make()
    res = p.prepare([msg(event(1, "u", "i1"))], lambda u: UserState())
    assert res.recommendations[0][1]["model_version"] == 0  # scored by the model before this batch
    p.learn(res)
    res2 = p.prepare([msg(event(2, "u", "i2"))], lambda u: UserState())
    assert res2.recommendations[0][1]["model_version"] == 1


def test_event_weights_by_type_and_unknown_type_rejected() -> None:
    p, _, _ = make(event_weights={"click": 1.0, "purchase": 3.0})
    res = p.prepare([msg(event(1, "u", "i1", "purchase")), msg(event(2, "u", "i2", "view"))], lambda u: UserState())
    assert [x.weight for x in res.examples] == [3.0]
    assert res.dlq[0][1]["reason"] == "unknown_event_type"


def test_unknown_item_kept_in_sequence_and_learned_when_it_arrives() -> None:
    """Issue 16, fault 3: an event about an item that arrives later is learned once the item arrives."""
    p, m, metrics = make()
    res = p.prepare([msg(event(1, "u", "not-in-catalog"))], lambda u: UserState())
    assert res.states["u"][0].seq == ["not-in-catalog"]
    p.learn(res)
    assert m.model_version == 0 and len(p.pending) == 1
    assert metrics.unknown_item_ratio._value.get() == 1.0  # noqa: SLF001
    assert metrics.pending_events._value.get() == 1  # noqa: SLF001
    m.add_items([Item("not-in-catalog", "a late item")])
    assert p.learn_arrived(["not-in-catalog"]) == 1
    assert m.model_version == 1 and len(p.pending) == 0
    assert metrics.pending_learned._value.get() == 1  # noqa: SLF001


def test_an_item_that_arrives_between_answer_and_learning_step_is_learned_not_held() -> None:
    """The answer and the learning step of a batch are apart (its sends; with learn_queue_batches, other batches):
    an event whose item arrived meanwhile is learned in the step, not held for an arrival that already happened."""
    p, m, _ = make()
    res = p.prepare([msg(event(1, "u", "late"))], lambda u: UserState())
    assert [x.item_id for x, _ in res.pending] == ["late"]
    m.add_items([Item("late", "a late item")])
    assert p.learn_arrived(["late"]) == 0  # nothing held yet
    p.learn(res)
    assert m.model_version == 1 and len(p.pending) == 0


def test_held_events_are_bounded_and_the_dropped_counted() -> None:
    p, m, metrics = make(pending_max_events=3)
    res = p.prepare([msg(event(n, "u", f"late{n}"), offset=n) for n in range(5)], lambda u: UserState())
    p.learn(res)
    assert len(p.pending) == 3 and metrics.pending_dropped._value.get() == 2  # noqa: SLF001
    m.add_items([Item("late0", "dropped"), Item("late4", "kept")])
    assert p.learn_arrived(["late0", "late4"]) == 1


def test_empty_lists_only_when_nothing_can_be_recommended_and_counted() -> None:
    s = load_settings()
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=s.seq_len, device="cpu")
    metrics = WorkerMetrics()
    p = EventProcessor(s, m, metrics, clock=lambda: 200.0)
    res = p.prepare([msg(event(1, "u", "i1"))], lambda u: UserState())  # an empty catalog
    p.observe_emitted(res)
    assert res.recommendations[0][1]["items"] == [] and metrics.empty_lists._value.get() == 1  # noqa: SLF001
    m.add_items([Item("i1", "one"), Item("i2", "two")])
    res = p.prepare([msg(event(2, "v", "i1"), offset=1)], lambda u: UserState())
    p.observe_emitted(res)
    assert [i["item_id"] for i in res.recommendations[0][1]["items"]] == ["i2"]
    assert metrics.empty_lists._value.get() == 1  # noqa: SLF001


def test_an_undecodable_record_is_a_dead_letter() -> None:
    p, _, metrics = make()
    bad = RawMessage(None, b"\x00garbled batch", "events", 0, 9, 100.0, undecodable="codec 0x07 unknown")
    res = p.prepare([bad, msg(event(1, "u", "i1"), offset=10)], lambda u: UserState())
    assert [(d["reason"], d["offset"], d["detail"]) for _, d in res.dlq] == [("undecodable", 9, "codec 0x07 unknown")]
    assert [r["event_id"] for _, r in res.recommendations] == ["e1"]


def test_online_hit_rate_counts_next_event_against_last_recommendation() -> None:
    p, m, metrics = make()
    res = p.prepare([msg(event(1, "u", "i1"))], lambda u: UserState())
    top = res.recommendations[0][1]["items"][0]["item_id"]
    p.prepare([msg(event(2, "u", top))], lambda u: res.states["u"][0])
    assert metrics.rolling_hit_rate == 1.0


def test_duplicate_event_id_goes_to_dlq_and_changes_nothing() -> None:
    p, m, metrics = make()
    res = p.prepare([msg(event(1, "u", "i1"), offset=1), msg(event(1, "u", "i1"), offset=2)], lambda u: UserState())
    assert [r["event_id"] for _, r in res.recommendations] == ["e1"]
    assert [d["reason"] for _, d in res.dlq] == ["duplicate"]  # a producer sending the id twice
    state = res.states["u"][0]
    assert state.seq == ["i1"] and state.n == 1


def test_a_redelivered_event_is_answered_again_without_a_state_change() -> None:
    """Issue 16, fault 8: the worker died after the user's state was written and before the answer went out.

    The first run prepares the batch and writes the state (as the agent does) but its recommendations are never
    sent; after the restart the same records come again: each is answered, from the history it had, and nothing
    else changes (no second state append, no DLQ, nothing learned twice).
    """
    p, m, _ = make()
    first = [msg(event(1, "u", "i1"), offset=1), msg(event(2, "u", "i2"), offset=2), msg(event(3, "v", "i3"), offset=3)]
    states: dict[str, UserState] = {}
    res = p.prepare(first, lambda u: UserState())
    states.update({u: st for u, (st, _) in res.states.items()})  # state written ... then kill -9, nothing sent
    saved = {u: st.to_dict() for u, st in states.items()}

    p2 = EventProcessor(load_settings(), m, WorkerMetrics(), clock=lambda: 300.0)  # the restarted worker
    again = p2.prepare(first, lambda u: UserState.from_dict(states[u].to_dict()) if u in states else UserState())
    assert [r["event_id"] for _, r in again.recommendations] == ["e1", "e2", "e3"]
    assert not again.dlq and not again.states and not again.examples
    assert again.answered_again == 3
    first_list = [i["item_id"] for i in again.recommendations[0][1]["items"]]
    assert "i1" not in first_list and "i2" not in first_list  # everything the user has stays excluded
    assert {u: st.to_dict() for u, st in states.items()} == saved


def test_flooding_user_is_capped_and_others_are_not() -> None:
    p, _, metrics = make(user_rate_per_s=1.0, user_burst=5)
    batch = [msg(event(n, "flood", f"i{n % 20}")) for n in range(50)] + [msg(event(99, "calm", "i3"))]
    res = p.prepare(batch, lambda u: UserState())
    assert sum(1 for _, r in res.recommendations if r["user_id"] == "flood") == 5
    assert any(r["user_id"] == "calm" for _, r in res.recommendations)
    assert metrics.invalid.labels("rate_limited")._value.get() == 45  # noqa: SLF001


def run_batches(p: EventProcessor, states: dict[str, UserState], msgs: list[RawMessage], size: int = 4) -> list:
    """Prepare, write states and learn in batches of ``size`` (as the agent does); returns the results."""
    out = []
    for k in range(0, len(msgs), size):
        res = p.prepare(msgs[k:k + size], lambda u: states.get(u) or UserState())
        states.update({u: st for u, (st, _) in res.states.items()})
        p.learn(res)
        out.append(res)
    return out


def test_restart_relearns_what_the_checkpoint_missed_without_touching_state() -> None:
    import pickle

    p, m, _ = make()
    stream = [msg(event(n, f"u{n % 3}", f"i{n % 20}"), offset=n) for n in range(24)]
    states: dict[str, UserState] = {}
    run_batches(p, states, stream[:8])
    checkpoint = pickle.dumps(m), dict(p.learned)  # saved after offset 7: learned up to 8
    run_batches(p, states, stream[8:20])  # processed, committed up to 16, then the worker dies
    before = {u: st.to_dict() for u, st in states.items()}
    assert checkpoint[1] == {("events", 0): 8}

    m2 = pickle.loads(checkpoint[0])  # noqa: S301 - our own bytes
    p2 = EventProcessor(load_settings(), m2, WorkerMetrics(), clock=lambda: 200.0)
    p2.learned.update(checkpoint[1])
    assert p2.rewind({("events", 0): 16}) == {("events", 0): 8}
    version = m2.model_version
    results = run_batches(p2, states, stream[8:24])  # 8..15 replayed, 16..19 redelivered, 20..23 new
    recs = [r["event_id"] for res in results for _, r in res.recommendations]
    dlq = [d["reason"] for res in results for _, d in res.dlq]
    assert recs == [f"e{n}" for n in range(16, 24)]  # the replay (below the commit) is not answered again
    assert dlq == []  # the redeliveries 16..19 (not committed: maybe never answered) are answered again
    assert sum(res.relearned for res in results) == 12  # 8..19 learned once each
    assert m2.model_version > version
    assert {u: states[u].to_dict()["seq"][: len(before[u]["seq"])] for u in before} == \
        {u: st["seq"] for u, st in before.items()}  # replay changed no state
    assert sum(st.n for st in states.values()) == 24

    # a producer re-sending an id at a new offset is a duplicate, never learned
    res = p2.prepare([msg(event(5, "u2", "i5"), offset=30)], lambda u: states[u])
    assert [d["reason"] for _, d in res.dlq] == ["duplicate"] and not res.examples
    # without a checkpoint's offsets nothing is rewound; nor without remembered event ids
    assert EventProcessor(load_settings(), m2, WorkerMetrics()).rewind({("events", 0): 16}) == {}
    no_ids = EventProcessor(load_settings(dedup_window=0), m2, WorkerMetrics())
    no_ids.learned.update(checkpoint[1])
    assert no_ids.rewind({("events", 0): 16}) == {}


def test_cold_places_are_counted_for_operators() -> None:
    """A young gate (weights 0: P(cold) = 0.5, at the default threshold) gives every list its 4 cold places."""
    p, m, metrics = make()
    res = p.prepare([msg(event(n, f"u{n}", "i1")) for n in range(3)], lambda u: UserState())
    assert len(res.recommendations) == 3
    assert metrics.cold_lists._value.get() == 3  # noqa: SLF001
    assert metrics.cold_items._value.get() == 12  # noqa: SLF001
    assert m.cold_places == (3, 12)
    off = AdapterRecommender(HashingEncoder(16), dim=8, device="cpu", cold=ColdConfig(slots=0))
    off.add_items([Item("a", "item a"), Item("b", "item b")])
    assert off.cold_places == (0, 0)


def test_a_click_naming_a_list_it_was_sent_is_attributed_to_its_position() -> None:
    p, m, metrics = make(attribution_lists=2)
    states: dict[str, UserState] = {}

    def step(*events: dict) -> object:
        res = p.prepare([msg(e, offset=n) for n, e in enumerate(events)], lambda u: states.get(u) or UserState())
        states.update({u: st for u, (st, _) in res.states.items()})
        p.observe_emitted(res)
        p.learn(res)
        return res

    first = step(event(1, "u", "i1")).recommendations[0][1]
    rec_id, shown = first["rec_id"], [it["item_id"] for it in first["items"]]
    assert states["u"].find_list(rec_id) == (shown, [])
    step({**event(2, "u", shown[3]), "context": {"rec_id": rec_id, "position": 3}},
         {**event(3, "v", "i5"), "context": {"rec_id": rec_id}},  # not v's list
         {**event(4, "u", "i1"), "context": {"rec_id": rec_id}})  # not in it (u had it)
    assert metrics.clicks.labels("exploit", "3")._value.get() == 1  # noqa: SLF001
    assert [metrics.attributions.labels(o)._value.get() for o in ("attributed", "unknown_list", "not_in_list")] \
        == [1, 1, 1]  # noqa: SLF001
    assert metrics.shown.labels("exploit", "0")._value.get() == 4  # noqa: SLF001 - one list per event
    assert m.feedback == (4, 1)  # the learner saw every list sent and the attributed click
    for _ in range(2):  # only the last attribution_lists lists are remembered
        step(event(10 + _, "u", f"i{12 + _}"))
    assert states["u"].find_list(rec_id) is None
    assert UserState.from_dict(states["u"].to_dict()) == states["u"]


def test_attribution_and_query_fields_of_the_wrong_type_are_dead_letters() -> None:
    p, _, _ = make()
    res = p.prepare([msg({**event(1, "u", "i1"), "context": {"rec_id": 7}}),
                     msg({**event(2, "u", "i1"), "context": {"position": -1}}),
                     msg({**event(3, "u", "i1"), "context": {"query": ["sci-fi"]}})], lambda u: UserState())
    assert [d["detail"].split(":")[0] for _, d in res.dlq] == ["context.rec_id", "context.position", "context.query"]
    assert res.recommendations == []


def test_the_query_of_an_event_reaches_the_learner_as_its_intent() -> None:
    p, m, _ = make()
    asked: list = []
    recommend = m.recommend_many
    m.recommend_many = lambda qs, k: asked.extend(qs) or recommend(qs, k)  # type: ignore[method-assign]
    p.prepare([msg({**event(1, "u", "i1"), "context": {"query": "  item number 7 "}}), msg(event(2, "v", "i2"))],
              lambda u: UserState())
    assert [q.intent for q in asked] == ["item number 7", ""]


@pytest.mark.parametrize(("position", "places"), [(-1, [8, 9]), (0, [0, 1])], ids=["last", "top"])
def test_explored_places_are_marked_and_their_clicks_counted_as_explore(position: int, places: list[int]) -> None:
    """Wherever the policy puts them (``exploration.position``), the explored places are marked and counted."""
    p, m, metrics = make()
    m.exploration = ExplorationConfig("epsilon", epsilon=1.0, places=2, position=position)
    states: dict[str, UserState] = {}
    res = p.prepare([msg(event(1, "u", "i1"))], lambda u: UserState())
    states.update({u: st for u, (st, _) in res.states.items()})
    p.observe_emitted(res)
    p.learn(res)
    record = res.recommendations[0][1]
    explored = [pos for pos, it in enumerate(record["items"]) if it.get("explore")]
    assert explored == places
    assert all(record["items"][pos]["because"] == {"kind": "explore"} for pos in explored)
    assert all(0 < record["items"][pos]["propensity"] <= 1 for pos in explored)
    last = str(places[-1])
    assert metrics.shown.labels("explore", last)._value.get() == 1  # noqa: SLF001
    click = {**event(2, "u", record["items"][places[-1]]["item_id"]), "context": {"rec_id": record["rec_id"]}}
    p.prepare([msg(click, offset=1)], lambda u: states[u])
    assert metrics.clicks.labels("explore", last)._value.get() == 1  # noqa: SLF001


def test_retrieval_counters_reach_the_metrics_past_exact_max_items() -> None:
    """Below retrieval.exact_max_items the learner has no retriever and the gauges stay 0; past it a learning step
    reports the index's items, rebuilds and (with the probe on) the probed recall."""
    from learners.retrieval import RetrievalConfig

    small, _, before = make()
    small.learn(small.prepare([msg(event(1, "u", "i1"))], lambda u: UserState()))
    assert before.index_items._value.get() == 0  # noqa: SLF001
    assert math.isnan(before.index_recall._value.get())  # noqa: SLF001 - no probe ran: unknown, not 0
    s = load_settings()
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=s.seq_len, device="cpu",
                           retrieval=RetrievalConfig(exact_max_items=0, ann_candidates=5, refresh_in_background=False,
                                                     probe_updates=1, rebuild_below=0.01, rebuild_updates=1))
    m.add_items([Item(f"i{j}", f"item number {j}") for j in range(40)])
    metrics = WorkerMetrics()
    p = EventProcessor(s, m, metrics, clock=lambda: 200.0)
    for b in range(2):  # the probe and the rebuild count events in 256s: two batches of 256
        p.learn(p.prepare([msg(event(256 * b + n, f"u{n}", f"i{n % 40}"), offset=256 * b + n) for n in range(256)],
                          lambda u: UserState(["i7", "i9"], [], 2)))
    state = m.retrieval_state
    assert state is not None and state.index_items == 40 and state.rebuilds >= 1 and state.index_recall is not None
    assert metrics.index_items._value.get() == 40  # noqa: SLF001
    assert metrics.index_rebuilds._value.get() == state.rebuilds  # noqa: SLF001
    assert metrics.index_recall._value.get() == state.index_recall  # noqa: SLF001


def test_a_restarted_sharing_worker_learns_nothing_twice_that_it_had_contributed_before_it_died() -> None:
    """Events a worker contributed after its checkpoint are in its model again once it has read its own
    contribution back (restored); read again after the restart, they are not learned a second time, which would
    count them twice in every model. Those it learned but had not contributed it learns again."""
    import pickle

    p, m, _ = make()
    m.start_sharing("a")
    stream = [msg(event(n, f"u{n % 3}", f"i{n % 20}"), offset=n) for n in range(24)]
    states: dict[str, UserState] = {}

    run_batches(p, states, stream[:8], size=4)
    assert len(m.contribution(p.marks())) == 8
    checkpoint = pickle.dumps(m), dict(p.learned)
    run_batches(p, states, stream[8:16], size=4)
    sent = m.contribution(p.marks())  # events 8..15 reach the peers
    assert len(sent) == 8 and sent.marks == {"events:0": 16}
    run_batches(p, states, stream[16:20], size=4)  # learned, not contributed yet: then the worker dies

    m2 = pickle.loads(checkpoint[0])  # noqa: S301 - our own bytes
    metrics = WorkerMetrics()
    p2 = EventProcessor(load_settings(), m2, metrics, clock=lambda: 200.0)
    p2.learned.update(checkpoint[1])
    assert m2.merge([sent]) == 1 and m2.shared_marks == {"events:0": 16}  # its own, read back from the topic
    assert m2.events_learned == 16
    assert p2.rewind({("events", 0): 20}) == {("events", 0): 8}
    results = run_batches(p2, states, stream[8:24], size=4)
    assert [res.already_shared for res in results] == [4, 4, 0, 0]
    assert metrics.shared_events.labels("already_shared")._value.get() == 8  # noqa: SLF001
    assert sum(res.relearned for res in results) == 4  # 16..19
    assert m2.events_learned == 24  # every event once
    nxt = m2.contribution(p2.marks())
    assert nxt is not None and nxt.seq == 3 and [e[0] for e in nxt.events] == [f"i{n % 20}" for n in range(16, 24)]


def test_thompson_learns_from_every_place_sent_and_the_click_on_its_list() -> None:
    """The processor hands the learner each list's history and each attributed click's: the ``thompson`` click
    posterior counts every place of the lists sent and the one click."""
    p, m, _ = make()
    m.exploration = ExplorationConfig("thompson")
    states: dict[str, UserState] = {}

    def step(e: dict) -> dict:
        res = p.prepare([msg(e)], lambda u: states.get(u) or UserState())
        states.update({u: st for u, (st, _) in res.states.items()})
        p.observe_emitted(res)
        p.learn(res)
        return res.recommendations[0][1]

    first = step(event(1, "u", "i1"))
    step({**event(2, "u", first["items"][3]["item_id"]), "context": {"rec_id": first["rec_id"], "position": 3}})
    post = m._posterior  # noqa: SLF001
    assert post is not None and (post.places, post.clicks) == (20, 1)
    assert post.mean().any()  # the click moved it off the prior's mean (0)
