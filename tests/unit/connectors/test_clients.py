"""connectors.clients without a broker: what a bad argument or message says, and a broker nobody listens on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.broker import free_port
from connectors.clients import (
    BrokerUnavailable,
    EventProducer,
    RecommendationConsumer,
    make_event,
    make_item,
    parse_recommendation,
    wait_for_broker,
)
from connectors.schemas import Event, Reason, SchemaError

TYPES = {"click", "view"}


def event_error(**kw: Any) -> SchemaError:
    args = {"user_id": "u1", "item_id": "i1", "event_type": "click", "ts": 1.0, "event_types": TYPES, **kw}
    with pytest.raises(SchemaError) as exc:
        make_event(args.pop("user_id"), args.pop("item_id"), args.pop("event_type"), **args)
    assert "\n" not in str(exc.value)
    return exc.value


@pytest.mark.parametrize(("kw", "field", "reason"), [
    ({"user_id": 42}, "user_id", Reason.WRONG_TYPE),
    ({"user_id": " "}, "user_id", Reason.EMPTY_ID),
    ({"item_id": ""}, "item_id", Reason.EMPTY_ID),
    ({"item_id": None}, "item_id", Reason.MISSING_FIELD),
    ({"event_id": "e\x00"}, "event_id", Reason.CONTROL_CHARACTERS),
    ({"user_id": "u" * 300}, "user_id", Reason.ID_TOO_LONG),
    ({"event_type": "buy"}, "event_type", Reason.UNKNOWN_EVENT_TYPE),
    ({"event_type": 3}, "event_type", Reason.WRONG_TYPE),
    ({"ts": -1.0}, "ts", Reason.INVALID_TIMESTAMP),
    ({"ts": float("nan")}, "ts", Reason.INVALID_TIMESTAMP),
    ({"ts": "yesterday"}, "ts", Reason.WRONG_TYPE),
    ({"context": ["a"]}, "context", Reason.WRONG_TYPE),
    ({"context": {"when": object()}}, "context", Reason.WRONG_TYPE),
])
def test_bad_event_argument_names_the_field(kw: dict[str, Any], field: str, reason: Reason) -> None:
    err = event_error(**kw)
    assert err.rejection.reason == reason
    assert err.rejection.detail.startswith(f"{field}:"), err.rejection.detail


def test_event_too_large_for_the_worker() -> None:
    err = event_error(context={"blob": "x" * 20_000}, max_bytes=16_384)
    assert err.rejection.reason == Reason.TOO_LARGE


def test_event_defaults_and_any_type_without_a_list() -> None:
    ev = make_event("u1", "i1", "add_to_wishlist", context={"page": "home"})
    assert isinstance(ev, Event) and ev.event_type == "add_to_wishlist" and ev.context == {"page": "home"}
    assert len(ev.event_id) == 32 and ev.ts > 1.7e9
    assert make_event("u1", "i1", ts=5, event_id="e1").ts == 5.0
    assert event_error(event_type=" ", event_types=None).rejection.detail.startswith("event_type:")


@pytest.mark.parametrize(("args", "field"), [
    (("i1", " "), "text"),
    (("i1", None), "text"),
    (("", "a kettle"), "item_id"),
    (("i1", "a kettle", ["red"]), "attributes"),
])
def test_bad_item_argument_names_the_field(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(SchemaError) as exc:
        make_item(*args)
    assert exc.value.rejection.detail.startswith(f"{field}:")


GOOD = {"user_id": "u1", "event_id": "e1", "rec_id": "r1", "items": [{"item_id": "i1", "score": 0.5}],
        "model_version": 3, "event_ts": 1.0, "emitted_ts": 2.0}


def test_a_recommendation_that_conforms() -> None:
    rec = parse_recommendation(json.dumps({**GOOD, "extra": 1}).encode())
    assert (rec.user_id, rec.event_id, rec.rec_id, rec.model_version) == ("u1", "e1", "r1", 3)
    assert rec.items[0].item_id == "i1" and rec.items[0].score == 0.5 and rec.value["extra"] == 1
    assert parse_recommendation(json.dumps({**GOOD, "event_id": None, "items": []})).event_id is None


@pytest.mark.parametrize(("change", "start"), [
    ({"items": [{"item_id": ["71", 5.13], "score": 5.13}]}, "wrong_type: items[0].item_id:"),  # fault 1's shape
    ({"items": [{"item_id": "i1", "score": "high"}]}, "wrong_type: items[0].score:"),
    ({"items": [{"item_id": "i1"}]}, "missing_field: items[0].score:"),
    ({"rec_id": None}, "missing_field: rec_id:"),
    ({"model_version": -1}, "wrong_type: model_version:"),
    ({"model_version": 1.5}, "wrong_type: model_version:"),
    ({"user_id": ""}, "wrong_type: user_id:"),
])
def test_a_recommendation_that_breaks_the_schema_names_the_field(change: dict[str, Any], start: str) -> None:
    value = {**GOOD, **change}
    if change.get("rec_id", "") is None:
        del value["rec_id"]
    with pytest.raises(SchemaError) as exc:
        parse_recommendation(json.dumps(value))
    assert str(exc.value).startswith(start), str(exc.value)
    assert "\n" not in str(exc.value)


def test_nan_in_a_recommendation_is_not_json() -> None:
    with pytest.raises(SchemaError, match="^invalid_json"):
        parse_recommendation(json.dumps({**GOOD, "event_ts": float("nan")}))


def test_wait_for_broker_retries_then_one_line() -> None:
    server = f"127.0.0.1:{free_port()}"
    retries: list[float] = []
    with pytest.raises(BrokerUnavailable) as exc:
        wait_for_broker(server, 1.0, on_retry=lambda reason, pause, elapsed: retries.append(pause))
    # tries at 0, 0.5 and 1 s: the second pause is cut to what is left of the 1 s budget
    assert len(retries) == 2 and retries[0] == 0.5 and 0 < retries[1] <= 0.5
    assert str(exc.value).startswith(f"broker {server}: not reachable after ") and "\n" not in str(exc.value)


@pytest.mark.parametrize("client", ["producer", "consumer"])
def test_clients_say_in_one_line_that_the_broker_is_unreachable(client: str) -> None:
    server = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnavailable) as exc:
        if client == "producer":
            EventProducer(server, connect_timeout_s=0.5)
        else:
            RecommendationConsumer(server, connect_timeout_s=0.5)
    assert str(exc.value).startswith(f"broker {server}: connecting a {client} failed")
    assert "\n" not in str(exc.value)
