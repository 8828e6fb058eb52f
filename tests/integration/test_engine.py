"""The engine end to end on a real Tansu broker, with real worker processes, RocksDB and the MiniLM encoder."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, read_topic, replay_events
from connectors.schemas import DLQ_JSON_SCHEMA, RECOMMENDATION_JSON_SCHEMA, schema_errors
from stream.demo import scrape, scrape_all
from tests.conftest import make_catalog, wait_for

pytestmark = pytest.mark.integration


def ev(n: int, user: str, item: str, event_type: str = "click", ts: float | None = None) -> dict[str, Any]:
    return {"event_id": f"{user}-{n}", "user_id": user, "item_id": item, "event_type": event_type,
            "ts": float(ts if ts is not None else 1_700_000_000 + n)}


async def read_json(cfg: KafkaClientConfig, topic: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async for _, value, _ in read_topic(cfg, topic, until_count=count, idle_timeout=timeout):
        if value is not None:
            out.append(json.loads(value))
    return out


async def setup_topics(cfg: KafkaClientConfig, app: str, events_partitions: int = 4) -> None:
    await ensure_topics(cfg, {f"{app}-events": events_partitions})


def start_ready(worker_factory: Any, cfg: KafkaClientConfig, app: str, data_dir: Path | None = None,
                publish: bool = True) -> Any:
    w = worker_factory(app, data_dir)
    if publish:
        asyncio.run(publish_items(cfg, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    return w


def test_events_in_recommendations_out_with_schema_and_dlq(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    app = "t-e2e"
    # producers created `events` first with their own partition count: the worker must adopt it
    asyncio.run(setup_topics(kafka, app, events_partitions=3))
    start_ready(worker_factory, kafka, app)
    good = [ev(i, f"u{i % 5}", f"space-{i % 8}") for i in range(20)]
    bad = [b"{not json", json.dumps({"event_id": "x1", "user_id": "u1"}).encode(),
           json.dumps({**ev(99, "u1", "space-1"), "event_type": "teleport"}).encode()]

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await replay_events(kafka, f"{app}-events", good[:10])
        from aiokafka import AIOKafkaProducer

        prod = AIOKafkaProducer(bootstrap_servers=list(kafka.bootstrap_servers))
        await prod.start()
        for b in bad:
            await prod.send_and_wait(f"{app}-events", b, key=b"u1")
        await prod.stop()
        await replay_events(kafka, f"{app}-events", good[10:])  # the worker keeps going after poison
        recs = await read_json(kafka, f"{app}-recommendations", len(good))
        dlq = await read_json(kafka, f"{app}-events-dlq", len(bad))
        return recs, dlq

    recs, dlq = asyncio.run(go())
    assert {r["event_id"] for r in recs} == {e["event_id"] for e in good}
    for r in recs:
        assert schema_errors(r, RECOMMENDATION_JSON_SCHEMA) == []
        assert set(r) == {"user_id", "event_id", "rec_id", "items", "model_version", "event_ts", "emitted_ts"}
        assert isinstance(r["model_version"], int) and r["emitted_ts"] >= time.time() - 600
        assert len(r["items"]) == 10
        assert all(set(i) == {"item_id", "score", "because"} and isinstance(i["score"], float) for i in r["items"])
    # items the user already has are never recommended; a reason from the history names one of the user's items
    seen: dict[str, set[str]] = {}
    by_id = {r["event_id"]: r for r in recs}
    for e in good:
        seen.setdefault(e["user_id"], set()).add(e["item_id"])
        items = by_id[e["event_id"]]["items"]
        assert not seen[e["user_id"]] & {i["item_id"] for i in items}
        cited = {i["because"]["item_id"] for i in items if i["because"]["kind"] == "history"}
        assert cited <= seen[e["user_id"]], (cited, seen[e["user_id"]])
    assert any(i["because"]["kind"] == "history" for r in recs for i in r["items"])
    assert sorted(d["reason"] for d in dlq) == ["invalid_json", "missing_field", "unknown_event_type"]
    assert all(d["detail"] and d["value_b64"] for d in dlq)
    assert all(schema_errors(d, DLQ_JSON_SCHEMA) == [] for d in dlq)


def settled_version(port: int, timeout: float = 60.0) -> float:
    """The worker's model version once it has learned something and stopped changing for a second."""
    deadline = time.monotonic() + timeout
    last = scrape(port, "streamrec_model_version") or 0.0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = scrape(port, "streamrec_model_version") or 0.0
        if now >= 1 and now == last:
            return now
        last = now
    return last


def test_user_sequences_survive_restart(worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Path) -> None:
    app = "t-restart"
    data = tmp_path / "state"
    w = start_ready(worker_factory, kafka, app, data)
    first = [ev(i, "alice", f"cooking-{i}") for i in range(6)]
    asyncio.run(replay_events(kafka, f"{app}-events", first))
    asyncio.run(read_json(kafka, f"{app}-recommendations", len(first)))
    version_before = settled_version(w.metrics_port)  # the answers are out before their learning step is done
    assert version_before >= 1
    assert w.stop() == 0
    assert any(data.rglob("*.sst")) or any(data.rglob("CURRENT")), "RocksDB files expected in the data dir"
    assert list((data / "checkpoints").glob("model-*.pkl")), "a final model checkpoint is written at shutdown"
    w2 = start_ready(worker_factory, kafka, app, data, publish=False)
    # the model resumes from its checkpoint instead of from scratch
    assert scrape(w2.metrics_port, "streamrec_model_version") == version_before
    asyncio.run(replay_events(kafka, f"{app}-events", [ev(100, "alice", "cooking-6")]))
    recs = asyncio.run(read_json(kafka, f"{app}-recommendations", len(first) + 1))
    last = next(r for r in recs if r["event_id"] == "alice-100")
    rec_ids = {i["item_id"] for i in last["items"]}
    # the restarted worker still knows everything alice had before the restart
    assert not rec_ids & ({e["item_id"] for e in first} | {"cooking-6"})
    assert "cooking-7" in rec_ids  # the one cooking item she has not seen, found by text similarity


def test_new_item_recommended_from_text_alone(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    app = "t-cold"
    w = start_ready(worker_factory, kafka, app)
    history = [ev(i, "bob", f"space-{i}") for i in range(8)]
    asyncio.run(replay_events(kafka, f"{app}-events", history))
    asyncio.run(read_json(kafka, f"{app}-recommendations", len(history)))
    from learners.types import Item

    new = Item("brand-new", "A space story about the rocket and the galaxy, a new episode.")
    asyncio.run(publish_items(kafka, f"{app}-items", [new]))
    w.wait_ready(len(make_catalog()) + 1, timeout=60)  # the items agent embedded it (no event mentions it)
    asyncio.run(replay_events(kafka, f"{app}-events", [ev(50, "bob", "space-0")]))
    recs = asyncio.run(read_json(kafka, f"{app}-recommendations", len(history) + 1))
    last = next(r for r in recs if r["event_id"] == "bob-50")
    assert "brand-new" in [i["item_id"] for i in last["items"]][:5]


def test_clicks_on_a_list_reach_the_metrics_and_the_learner(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    """A consumer reads a list, the user clicks its third item and the producer names the list in
    context.rec_id: the worker counts the click at that place and its learner takes it in (under the thompson
    policy, which fits its click posterior on the lists sent and the clicks on them; the first places stay the
    model's)."""
    app = "t-attr"
    asyncio.run(setup_topics(kafka, app))
    w = worker_factory(app, None, STREAMREC_EXPLORATION='{"policy": "thompson"}')
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    first = [ev(i, f"u{i}", f"space-{i}") for i in range(3)]

    async def go() -> None:
        await replay_events(kafka, f"{app}-events", first)
        recs = await read_json(kafka, f"{app}-recommendations", len(first))
        clicks = [{**ev(10, r["user_id"], r["items"][2]["item_id"]), "context": {"rec_id": r["rec_id"], "position": 2}}
                  for r in recs]
        stray = {**ev(11, "u0", "space-7"), "context": {"rec_id": "no-such-list"}}
        await replay_events(kafka, f"{app}-events", [*clicks, stray])
        await read_json(kafka, f"{app}-recommendations", len(first) * 2 + 1)

    asyncio.run(go())
    wait_for(lambda: scrape(w.metrics_port, "streamrec_model_feedback_clicks") == 3, 30,
             "the learner to count 3 attributed clicks", every=0.5)
    samples = scrape_all(w.metrics_port)
    assert samples['streamrec_recommendation_clicks_total{arm=exploit,position=2}'] == 3
    assert samples['streamrec_attributions_total{outcome=attributed}'] == 3
    assert samples['streamrec_attributions_total{outcome=unknown_list}'] == 1
    assert samples['streamrec_recommendation_shown_total{arm=exploit,position=0}'] == 7
    # a place shown and never clicked has its click series at 0 (a rate over it exists from the first list)
    assert samples['streamrec_recommendation_clicks_total{arm=exploit,position=0}'] == 0
    assert samples["streamrec_model_feedback_clicks"] == 3


def test_a_query_and_exploration_show_in_the_lists(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    """An event's context.query brings its topic into that list (because: intent); with an exploration policy the
    places it fills (here the first two: ``position`` 0) are marked explore, and a click on one counts under
    arm=explore at its place."""
    app = "t-intent"
    asyncio.run(setup_topics(kafka, app))
    w = worker_factory(app, None,
                       STREAMREC_EXPLORATION='{"policy": "epsilon", "epsilon": 1.0, "places": 2, "position": 0}')
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    history = [ev(i, "fan", f"space-{i}") for i in range(3)]
    asked = {**ev(3, "fan", "space-3"), "context": {"query": "cooking: recipes, pasta and soup in the kitchen"}}

    async def go() -> list[dict[str, Any]]:
        await replay_events(kafka, f"{app}-events", [*history, asked])
        return await read_json(kafka, f"{app}-recommendations", 4)

    recs = {r["event_id"]: r for r in asyncio.run(go())}
    for r in recs.values():
        assert schema_errors(r, RECOMMENDATION_JSON_SCHEMA) == []
        marked = [p for p, it in enumerate(r["items"]) if it.get("explore")]
        assert marked == [0, 1], r
        assert all(r["items"][p]["because"] == {"kind": "explore"} and 0 < r["items"][p]["propensity"] <= 1
                   for p in marked)
    plain, with_query = recs["fan-2"]["items"][2:], recs["fan-3"]["items"][2:]  # the model's eight
    cooking = [it for it in with_query if it["item_id"].startswith("cooking")]
    assert len(cooking) > sum(it["item_id"].startswith("cooking") for it in plain)
    assert any(it["because"] == {"kind": "intent"} for it in cooking)
    r = recs["fan-3"]
    click = {**ev(4, "fan", r["items"][1]["item_id"]), "context": {"rec_id": r["rec_id"], "position": 1}}

    async def click_it() -> None:
        await replay_events(kafka, f"{app}-events", [click])
        await read_json(kafka, f"{app}-recommendations", 5)

    asyncio.run(click_it())
    wait_for(lambda: scrape(w.metrics_port, "streamrec_model_feedback_clicks") == 1, 30,
             "the learner to count 1 attributed click", every=0.5)
    assert scrape_all(w.metrics_port)["streamrec_recommendation_clicks_total{arm=explore,position=1}"] == 1


def test_item_attributes_reach_the_model_and_come_back_from_the_item_table(worker_factory: Any,
                                                                          kafka: KafkaClientConfig,
                                                                          tmp_path: Path) -> None:
    """Items' ``attributes`` on the items topic become the model's shared attribute values; an item sent again with
    other values takes them; a worker that starts without a model checkpoint gets them back from its item table."""
    import dataclasses
    import shutil

    app = "t-attributes"
    data = tmp_path / "state"
    asyncio.run(setup_topics(kafka, app))
    w = worker_factory(app, data, STREAMREC_ATTRIBUTES__SLOTS="32")  # off by default
    items = [dataclasses.replace(it, attributes=(f"theme={it.item_id.split('-')[0]}", f"episode={it.item_id[-1]}"))
             for it in make_catalog()]
    asyncio.run(publish_items(kafka, f"{app}-items", items))
    w.wait_ready(len(items), timeout=180)
    themes, episodes = len({it.attributes[0] for it in items}), len({it.attributes[1] for it in items})

    def attribute_values(worker: Any, want: int) -> float | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and scrape(worker.metrics_port, "streamrec_catalog_attribute_values") != want:
            time.sleep(0.5)
        return scrape(worker.metrics_port, "streamrec_catalog_attribute_values")

    assert attribute_values(w, themes + episodes) == themes + episodes
    asyncio.run(publish_items(kafka, f"{app}-items", [dataclasses.replace(items[0], attributes=("studio=acme",))]))
    assert attribute_values(w, themes + episodes + 1) == themes + episodes + 1
    assert w.stop() == 0
    shutil.rmtree(data / "checkpoints", ignore_errors=True)  # (a worker that learned nothing wrote none)
    assert not list(data.rglob("model-*.pkl"))  # so the next worker's model starts from the item table alone
    w2 = worker_factory(app, data, STREAMREC_ATTRIBUTES__SLOTS="32")
    w2.wait_ready(len(items), timeout=180)
    assert attribute_values(w2, themes + episodes + 1) == themes + episodes + 1
