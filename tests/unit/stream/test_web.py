"""The HTTP routes (stream/web.py) through aiohttp's test client on the app's own web server, no broker.

User state is written the real way, by the events agent (``agent.test_context()``, ``store="memory://"``). With no
broker there is no consumer group, so Faust's router cannot know who owns a user: :func:`one_worker` stands in for
a group of one worker, which owns every user (the router then answers here, as it does in a one-worker group).
"""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from faust.exceptions import SameNode

from connectors.schemas import RECOMMENDATION_JSON_SCHEMA, schema_errors
from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.types import Item, Query
from stream.app import StreamrecApp, create_app
from stream.settings import load_settings

CATALOG = [Item(f"i{j}", f"{['space rocket', 'cooking pasta', 'tennis match'][j % 3]} number {j}") for j in range(24)]
POPULAR = ["i1", "i2"]  # clicked by every user below; the other items stay cold (fewer than 5 interactions)


def build(tmp_path: Path, **overrides: Any) -> tuple[StreamrecApp, list[tuple[str, bytes | None]]]:
    """An app whose every outgoing message (recommendations, DLQ, table changelogs) is recorded in the list."""
    s = load_settings(store_url="memory://", data_dir=tmp_path, app_id="unit-web", batch_within_s=0.01,
                      **{"web_port": 6066, **overrides})
    enc = HashingEncoder(16)
    learner = AdapterRecommender(enc, dim=8, seq_len=s.seq_len, device="cpu")
    learner.add_items(CATALOG)
    sr = create_app(s, learner, enc, events_partitions=1, items_partitions=1)
    sr.catalog_read.set()  # the catalog went to the learner above: the events agent need not wait for it
    sr.on_fatal = crashed.append  # an agent crash fails the test instead of ending pytest
    sent: list[tuple[str, bytes | None]] = []
    topics = [sr.events_topic, sr.items_topic, sr.recommendations_topic, sr.dlq_topic,
              *(t.changelog_topic for t in sr.tables())]
    for topic in topics:
        name = topic.get_topic_name()

        async def send(*, value: Any = None, _n: str = name, **kw: Any) -> None:
            sent.append((_n, value))

        def send_soon(*, value: Any = None, _n: str = name, _send: Any = topic.send_soon, **kw: Any) -> Any:
            sent.append((_n, value))
            return _send(value=value, **kw)  # buffered by Faust's producer, which never starts here

        topic.send = send
        topic.send_soon = send_soon
    return sr, sent


crashed: list[str] = []


@pytest.fixture(autouse=True)
def no_agent_crashed() -> Any:
    yield
    found = list(crashed)
    crashed.clear()
    assert not found, found


def one_worker(sr: StreamrecApp) -> None:
    """A group of one worker: Faust's router finds this node owns every key (there is no broker to ask)."""

    async def owned_here(table_name: str, key: Any, web: Any, request: Any) -> Any:
        raise SameNode()

    sr.app.router.route_req = owned_here


def click(n: int, user: str, item: str) -> bytes:
    return json.dumps({"event_id": f"{user}-{n}", "user_id": user, "item_id": item, "event_type": "click",
                       "ts": 1_700_000_000.0 + n}).encode()


def serve(sr: StreamrecApp, requests: Callable[[TestClient], Any], events: list[tuple[str, bytes]] = ()) -> Any:
    """Feed ``events`` through the events agent, then run ``requests(client)`` against the app's web server."""

    async def go() -> Any:
        async with sr.events_agent.test_context() as agent:
            for user, value in events:
                await agent.put(value, key=user.encode())
            for _ in range(200):
                if sr.processor.learned or not events:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # the last batch's learning step
            async with TestClient(TestServer(await sr.app.web.wsgi())) as client:
                return await requests(client)

    return asyncio.run(go())


def stream_of_clicks() -> list[tuple[str, bytes]]:
    out = []
    for u in range(6):
        for n, item in enumerate([*POPULAR, f"i{3 + u}"]):
            out.append((f"u{u}", click(n, f"u{u}", item)))
    return out


async def get_json(client: TestClient, path: str) -> tuple[int, Any]:
    r = await client.get(path)
    assert r.content_type == "application/json"
    return r.status, await r.json()


def test_user_route_answers_with_a_recommendations_message(tmp_path: Path) -> None:
    sr, _ = build(tmp_path)
    one_worker(sr)

    async def requests(client: TestClient) -> list[tuple[int, Any]]:
        return [await get_json(client, "/users/u0/recommendations?k=5"),
                await get_json(client, "/users/u0/recommendations")]

    (status, body), (_, default_k) = serve(sr, requests, stream_of_clicks())
    assert status == 200 and schema_errors(body, RECOMMENDATION_JSON_SCHEMA) == []
    assert body["user_id"] == "u0" and body["event_id"] is None and body["model_version"] == sr.learner.model_version
    assert len(body["items"]) == 5 and len(default_k["items"]) == sr.settings.top_k
    assert body["rec_id"] != default_k["rec_id"]
    state = sr.user_table["u0"]
    assert not {i["item_id"] for i in body["items"]} & set(state["seen"])  # what the user has is never offered
    expected = sr.learner.recommend_readonly(Query("u0", tuple(state["seq"]), frozenset(state["seen"])), 5)
    assert [(i["item_id"], i["score"]) for i in body["items"]] == expected


def test_unknown_user_gets_popular_and_fresh_items(tmp_path: Path) -> None:
    sr, _ = build(tmp_path)
    one_worker(sr)
    status, body = serve(sr, lambda c: get_json(c, "/users/nobody-at-all/recommendations"), stream_of_clicks())
    assert status == 200 and schema_errors(body, RECOMMENDATION_JSON_SCHEMA) == []
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 10 and set(POPULAR) <= set(ids[:6])  # the two items every user clicked lead
    clicked = {f"i{3 + u}" for u in range(6)} | set(POPULAR)
    assert set(ids[-sr.settings.cold.slots:]).isdisjoint(POPULAR)
    assert set(ids) - clicked, "never-clicked (fresh) items get places too"


def test_answering_changes_nothing(tmp_path: Path) -> None:
    """Many requests later: the learner (pickled), its version and cold-gate counters, the user table, the rate
    limiter, the metrics and the topics are as they were."""
    sr, sent = build(tmp_path)
    one_worker(sr)
    paths = [f"/users/{u}/recommendations?k={k}" for u in ("u0", "u3", "stranger", "u5") for k in (1, 10, 40)]
    paths += [f"/items/i{j}/similar?k=7" for j in range(4)] + ["/items/nope/similar", "/users/u1/recommendations?k=0"]

    async def requests(client: TestClient) -> tuple[Any, ...]:
        before = snapshot(sr), list(sent)
        statuses = [(await client.get(p)).status for _ in range(5) for p in paths]
        return before, statuses

    (before, sent_before), statuses = serve(sr, requests, stream_of_clicks())
    assert set(statuses) == {200, 400, 404}
    assert sent_before and sent == sent_before  # the agent did send; the routes sent nothing
    after = snapshot(sr)
    for key in before:
        assert after[key] == before[key], key


def snapshot(sr: StreamrecApp) -> dict[str, Any]:
    m = sr.metrics
    return {
        "learner": pickle.dumps(sr.learner),
        "model_version": sr.learner.model_version,
        "cold_places": sr.learner.cold_places,
        "user_table": {k: json.dumps(v, sort_keys=True) for k, v in sr.user_table.items()},
        "rate_limiter": dict(sr.processor.limiter._buckets),
        "last_recs": dict(sr.processor._last_recs),
        "metrics": [(s.name, tuple(s.labels.items()), s.value) for fam in (m.recommendations, m.cold_lists,
                    m.cold_items, m.model_updates) for s in fam.collect()[0].samples],
    }


@pytest.mark.parametrize("k", ["0", "1001", "abc", "-3", "2.5", "", " 5", "1_0", "٥"])
def test_bad_k_is_a_400_naming_k(tmp_path: Path, k: str) -> None:
    sr, _ = build(tmp_path)
    one_worker(sr)

    async def requests(client: TestClient) -> list[tuple[int, Any]]:
        return [await get_json(client, f"/users/u0/recommendations?k={k}"),
                await get_json(client, f"/items/i1/similar?k={k}")]

    for status, body in serve(sr, requests):
        assert status == 400 and list(body) == ["error"]
        assert body["error"].startswith("k: ") and "\n" not in body["error"]


def test_similar_items(tmp_path: Path) -> None:
    sr, _ = build(tmp_path)

    async def requests(client: TestClient) -> list[tuple[int, Any]]:
        return [await get_json(client, "/items/i3/similar?k=4"), await get_json(client, "/items/unknown/similar")]

    (status, body), (missing, error) = serve(sr, requests, stream_of_clicks())
    assert status == 200 and body["item_id"] == "i3" and body["model_version"] == sr.learner.model_version
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 4 and "i3" not in ids
    assert ids == [i for i, _ in sr.learner.similar_items("i3", 4)]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert missing == 404 and error["error"].startswith("item_id: ")


def test_openapi_document_describes_the_routes(tmp_path: Path) -> None:
    import schemathesis

    sr, _ = build(tmp_path)
    status, doc = serve(sr, lambda c: get_json(c, "/openapi.json"))
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {"/users/{user_id}/recommendations", "/items/{item_id}/similar", "/openapi.json", "/healthz",
            "/readyz"} == set(doc["paths"])
    assert doc["components"]["schemas"]["Recommendation"]["properties"] == RECOMMENDATION_JSON_SCHEMA["properties"]
    operations = [op.ok() for op in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert len(operations) == 5


def test_health_routes_follow_worker_health(tmp_path: Path) -> None:
    sr, _ = build(tmp_path)

    async def requests(client: TestClient) -> list[tuple[int, Any]]:
        out = [await get_json(client, "/healthz"), await get_json(client, "/readyz")]
        sr.health.set_ready(catalog_items=len(CATALOG), partitions=[0], model_version=0)
        out.append(await get_json(client, "/readyz"))
        return out

    (live, _), (waiting, _), (ready, body) = serve(sr, requests)
    assert (live, waiting, ready) == (200, 503, 200) and body["catalog_items"] == len(CATALOG)


def test_user_route_before_the_producer_started_is_503(tmp_path: Path) -> None:
    """Faust's own router (no stand-in): with no producer yet it cannot place the user; 503, not a crash."""
    sr, _ = build(tmp_path)
    status, body = serve(sr, lambda c: get_json(c, "/users/u0/recommendations"))
    assert status == 503 and "error" in body


def test_web_port_zero_turns_the_server_off(tmp_path: Path) -> None:
    sr, _ = build(tmp_path, web_port=0)
    assert sr.app.conf.web_enabled is False
    assert not [r for r in sr.app.web.web_app.router.routes() if "/users/" in str(r.resource)]
