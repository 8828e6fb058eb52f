"""A corpus of bad events: each kind is rejected with its machine-readable reason and a detail line."""

from __future__ import annotations

import json

import pytest

from connectors.schemas import Event, Reason, Rejection, parse_event

TYPES = {"click", "view"}
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "click", "ts": 1_700_000_000.5}


def j(**changes: object) -> bytes:
    d = {**GOOD, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


CORPUS: list[tuple[str, bytes | None, Reason]] = [
    ("no value", None, Reason.INVALID_JSON),
    ("invalid json", b'{"event_id": "e1", ', Reason.INVALID_JSON),
    ("not utf-8", b'{"event_id": "\xff\xfe"}', Reason.INVALID_UTF8),
    ("array", b'[1, 2, 3]', Reason.NOT_AN_OBJECT),
    ("string", b'"click"', Reason.NOT_AN_OBJECT),
    ("missing user_id", j(user_id=...), Reason.MISSING_FIELD),
    ("missing item_id", j(item_id=...), Reason.MISSING_FIELD),
    ("missing event_id", j(event_id=...), Reason.MISSING_FIELD),
    ("missing ts", j(ts=...), Reason.MISSING_FIELD),
    ("null event_type", j(event_type=None), Reason.MISSING_FIELD),
    ("user_id number", j(user_id=42), Reason.WRONG_TYPE),
    ("item_id list", j(item_id=["i1"]), Reason.WRONG_TYPE),
    ("ts string", j(ts="yesterday"), Reason.WRONG_TYPE),
    ("ts bool", j(ts=True), Reason.WRONG_TYPE),
    ("context list", j(context=[1]), Reason.WRONG_TYPE),
    ("event_type number", j(event_type=3), Reason.WRONG_TYPE),
    ("NaN ts", b'{"event_id":"e1","user_id":"u","item_id":"i","event_type":"click","ts":NaN}', Reason.INVALID_JSON),
    ("Infinity ts", b'{"event_id":"e1","user_id":"u","item_id":"i","event_type":"click","ts":Infinity}',
     Reason.INVALID_JSON),
    ("ts after 2100", j(ts=1e300), Reason.INVALID_TIMESTAMP),
    ("negative ts", j(ts=-5), Reason.INVALID_TIMESTAMP),
    ("over max bytes", j(context={"pad": "x" * 20_000}), Reason.TOO_LARGE),
    ("unknown event type", j(event_type="teleport"), Reason.UNKNOWN_EVENT_TYPE),
    ("control chars in user_id", j(user_id="u\x00\x1b[31m"), Reason.CONTROL_CHARACTERS),
    ("C1 control char in item_id", j(item_id="i\x85"), Reason.CONTROL_CHARACTERS),
    ("absurdly long id", j(item_id="i" * 10_000), Reason.ID_TOO_LONG),
    ("empty id", j(user_id="   "), Reason.EMPTY_ID),
]


@pytest.mark.parametrize(("raw", "reason"), [(raw, reason) for _, raw, reason in CORPUS],
                         ids=[name for name, _, _ in CORPUS])
def test_poison_is_rejected_with_reason(raw: bytes | None, reason: Reason) -> None:
    out = parse_event(raw, event_types=TYPES, max_bytes=16_384, max_id_length=256)
    assert isinstance(out, Rejection), out
    assert out.reason == reason
    assert out.detail and "\n" not in out.detail


def test_corpus_covers_at_least_twelve_reasons_and_kinds() -> None:
    assert len(CORPUS) >= 20
    assert len({r for _, _, r in CORPUS}) >= 11


@pytest.mark.parametrize("raw", [
    j(user_id="ユーザー🙂", item_id="électro"),
    j(ts=1_700_000_000),
    j(ts=0),
    j(context={"page": "home", "position": 3}),
    j(context=None),
], ids=["unicode ids", "integer ts", "epoch zero", "context object", "null context"])
def test_good_events_are_accepted(raw: bytes) -> None:
    assert isinstance(parse_event(raw, event_types=TYPES), Event)
