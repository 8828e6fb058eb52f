"""Recommendations on demand against running workers: both routes, no side effects, forwarding, schemathesis."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, replay_events
from connectors.schemas import RECOMMENDATION_JSON_SCHEMA, schema_errors
from stream.demo import scrape_all
from tests.conftest import make_catalog
from tests.integration.test_engine import ev, read_json, start_ready

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, Any]:
    """(status, parsed JSON body) of a GET on a worker's web server."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def counters(port: int) -> dict[str, float]:
    """The worker's samples that move when it publishes, learns or rejects anything."""
    watched = ("streamrec_recommendations_total", "streamrec_model_version", "streamrec_model_updates_total",
               "streamrec_cold_slot", "streamrec_events_invalid_total", "streamrec_events_total")
    return {k: v for k, v in scrape_all(port).items() if k.startswith(watched)}


def settled_counters(port: int, events: int) -> dict[str, float]:
    """:func:`counters` once the worker has taken ``events`` events and learned from them (nothing moved for half
    a second): their answers may be read back while the learning step after them still runs."""
    last: dict[str, float] = {}
    for _ in range(60):
        now = counters(port)
        taken = sum(v for k, v in now.items() if k.startswith("streamrec_events_total"))
        if now == last and taken >= events and now.get("streamrec_model_updates_total", 0) >= 1:
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError(f"the worker did not settle after {events} events: {last}")


def test_routes_on_a_running_worker(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    app = "t-web"
    w = start_ready(worker_factory, kafka, app)
    # before any event: the worker never wrote to the user table's changelog, yet places the user
    status, body = get(w.web_port, "/users/alice/recommendations")
    assert status == 200 and len(body["items"]) == 10 and body["event_id"] is None
    assert get(w.web_port, "/readyz")[0] == 200 and get(w.web_port, "/healthz") == (200, {"status": "ok"})

    history = [ev(i, "alice", f"space-{i}") for i in range(5)]
    asyncio.run(replay_events(kafka, f"{app}-events", history))
    sent = asyncio.run(read_json(kafka, f"{app}-recommendations", len(history)))
    before = settled_counters(w.metrics_port, len(history))

    status, body = get(w.web_port, "/users/alice/recommendations?k=5")
    assert status == 200 and schema_errors(body, RECOMMENDATION_JSON_SCHEMA) == []
    assert body["user_id"] == "alice" and body["event_id"] is None and len(body["items"]) == 5
    assert body["model_version"] == before["streamrec_model_version"]
    ids = [i["item_id"] for i in body["items"]]
    assert not set(ids) & {e["item_id"] for e in history}  # alice's own items are never offered
    assert "space-5" in ids  # a space item she has not seen, found from her history
    status, similar = get(w.web_port, "/items/space-0/similar?k=3")
    assert status == 200 and len(similar["items"]) == 3 and "space-0" not in {i["item_id"] for i in similar["items"]}
    assert get(w.web_port, "/items/no-such-item/similar")[0] == 404
    status, error = get(w.web_port, "/users/alice/recommendations?k=0")
    assert status == 400 and error["error"].startswith("k: ")

    for n in range(30):  # no message, no learning, no counter moves, however often it is asked
        get(w.web_port, f"/users/{['alice', 'bob', 'carol'][n % 3]}/recommendations?k={1 + n}")
        get(w.web_port, f"/items/space-{n % 8}/similar")
    assert counters(w.metrics_port) == before
    again = asyncio.run(read_json(kafka, f"{app}-recommendations", len(sent) + 1, timeout=5.0))
    assert len(again) == len(sent)
    assert get(w.web_port, "/users/alice/recommendations?k=5")[1]["items"] == body["items"]


def test_openapi_document_holds_against_the_worker(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    """schemathesis generates requests from /openapi.json and checks every answer against it."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    app = "t-openapi"
    w = start_ready(worker_factory, kafka, app)
    asyncio.run(replay_events(kafka, f"{app}-events", [ev(i, f"u{i % 3}", f"sports-{i % 8}") for i in range(9)]))
    asyncio.run(read_json(kafka, f"{app}-recommendations", 9))
    base = f"http://127.0.0.1:{w.web_port}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/users/{user_id}/recommendations", "/items/{item_id}/similar"}
    calls: list[tuple[str, int]] = []
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]  # negative: bad k, ids
    for op, mode in [(op, mode) for op in operations for mode in modes if "{" in op.path or mode == modes[0]]:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def conforms(case: Any) -> None:
            calls.append((case.operation.path, case.call_and_validate(base_url=base).status_code))

        conforms()
    users = [status for path, status in calls if path.startswith("/users/")]
    assert len(users) >= 40 and {200, 400} <= set(users), "schemathesis sent good and bad user requests"


def test_any_worker_answers_for_any_user(worker_factory: Any, kafka: KafkaClientConfig, tmp_path: Any) -> None:
    """Two workers split the users' partitions; asked either one, the owner of the user's state answers."""
    app = "t-web-route"
    asyncio.run(ensure_topics(kafka, {f"{app}-events": 4, f"{app}-items": 4}))
    a = worker_factory(app, tmp_path / "a")
    b = worker_factory(app, tmp_path / "b")
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    for w in (a, b):
        w.wait_ready(len(make_catalog()), timeout=240)
    users = [f"user{i}" for i in range(8)]
    events = [ev(n, u, f"cooking-{(n + k) % 8}") for n in range(3) for k, u in enumerate(users)]
    asyncio.run(replay_events(kafka, f"{app}-events", events))
    asyncio.run(read_json(kafka, f"{app}-recommendations", len(events)))
    served = [counters(w.metrics_port).get("streamrec_recommendations_total", 0) for w in (a, b)]
    assert all(n > 0 for n in served), f"both workers should own some users: {served}"
    for u in users:
        seen = {e["item_id"] for e in events if e["user_id"] == u}
        # The answers go out before their learning step and the user's state write: a step or a write may land
        # between two requests. So ask a, b, then a again: when a's two answers agree, nothing changed meanwhile,
        # and b's (forwarded to the same owner, or answered by it) must be the same list.
        for _ in range(40):
            answers = [get(w.web_port, f"/users/{u}/recommendations") for w in (a, b, a)]
            assert [s for s, _ in answers] == [200, 200, 200]
            lists = [[i["item_id"] for i in body["items"]] for _, body in answers]
            if lists[0] == lists[2] and answers[0][1]["model_version"] == answers[2][1]["model_version"]:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"{u}: the owner's answer kept changing between two requests")
        assert lists[0] == lists[1], f"{u}: the two workers answered differently"
        assert not set(lists[0]) & seen, f"{u}: answered without the user's state"
