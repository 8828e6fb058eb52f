"""Explicit, versioned wire schemas for every topic, and the validator that routes bad input to the DLQ.

All messages are UTF-8 JSON.

* ``events`` (key = user id): ``{"event_id", "user_id", "item_id", "event_type", "ts"}`` + optional ``context``.
* ``items`` (key = item id): ``{"item_id", "text"}`` + optional ``attributes`` and ``embedding``
  (``{"model", "values"}``: the item's text already encoded, see :class:`ItemEmbedding`).
* ``recommendations`` (key = user id): ``{"user_id", "event_id", "rec_id", "items": [{"item_id", "score"}
  + optional "because", "explore", "propensity"], "model_version", "event_ts", "emitted_ts"}``; header ``schema`` =
  ``streamrec.recommendations.v1``.
* ``events-dlq`` (key = the rejected message's key): a JSON wrapper (:func:`dlq_record`) holding the reason, a
  detail line, where it came from and the rejected bytes (base64, plus the text when it decodes); header
  ``reason`` carries the reason code too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

EVENTS_SCHEMA = "streamrec.events.v1"
ITEMS_SCHEMA = "streamrec.items.v1"
RECOMMENDATIONS_SCHEMA = "streamrec.recommendations.v1"
DLQ_SCHEMA = "streamrec.dlq.v1"
DLQ_MAX_KEPT_BYTES = 64 * 1024  # rejected bytes kept whole in a dead-letter record; the rest is cut
MAX_TS = 4_102_444_800.0  # 2100-01-01: later event times are rejected as invalid_timestamp


class Reason(StrEnum):
    """Machine-readable reasons an input message is rejected (label values of the invalid-events counter)."""

    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    EMPTY_ID = "empty_id"
    ID_TOO_LONG = "id_too_long"
    CONTROL_CHARACTERS = "control_characters"
    INVALID_TIMESTAMP = "invalid_timestamp"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    UNDECODABLE = "undecodable"  # a record batch the consumer could not decompress or parse
    EMPTY_TEXT = "empty_text"  # a catalog item whose text is empty or blank (items-dlq only)
    INVALID_EMBEDDING = "invalid_embedding"  # a catalog item's embedding is malformed (items-dlq only)


@dataclass(frozen=True, slots=True)
class Event:
    """A validated user event."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    ts: float
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was rejected."""

    reason: Reason
    detail: str


class SchemaError(ValueError):
    """Raised by strict parsers; carries a :class:`Rejection`."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.detail}")
        self.rejection = rejection


_ID_FIELDS = ("event_id", "user_id", "item_id")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 controls, DEL and C1 controls


def _check_id(name: str, v: Any, max_len: int) -> Rejection | None:
    if not isinstance(v, str):
        return Rejection(Reason.WRONG_TYPE, f"{name}: expected a string, got {type(v).__name__}")
    if not v.strip():
        return Rejection(Reason.EMPTY_ID, f"{name}: expected a non-empty string")
    if len(v) > max_len:
        return Rejection(Reason.ID_TOO_LONG, f"{name}: {len(v)} characters, at most {max_len} allowed")
    if _CONTROL.search(v):
        return Rejection(Reason.CONTROL_CHARACTERS, f"{name}: contains control characters")
    return None


def _check_attribution(ctx: dict[str, Any], max_id_length: int) -> Rejection | None:
    """``context.rec_id`` (the list a click came from), ``context.position`` (its 0-based place there) and
    ``context.query`` (what the user typed, or the page they are on), when given, must be an id, a whole number
    >= 0 and a string.

    >>> _check_attribution({"rec_id": "r1", "position": 2}, 64) is None, _check_attribution({"position": "2"}, 64).detail
    (True, 'context.position: expected a whole number >= 0, got str')
    """
    rec_id = ctx.get("rec_id")
    if rec_id is not None:
        rej = _check_id("context.rec_id", rec_id, max_id_length)
        if rej is not None:
            return rej
    pos = ctx.get("position")
    query = ctx.get("query")
    if query is not None and not isinstance(query, str):
        return Rejection(Reason.WRONG_TYPE, f"context.query: expected a string, got {type(query).__name__}")
    whole = isinstance(pos, int) and not isinstance(pos, bool)
    if pos is not None and (not whole or pos < 0):
        got = pos if whole else type(pos).__name__
        return Rejection(Reason.WRONG_TYPE, f"context.position: expected a whole number >= 0, got {got}")
    return None


def parse_event(
    raw: bytes | str | None,
    *,
    event_types: frozenset[str] | set[str],
    max_bytes: int = 16384,
    max_id_length: int = 256,
) -> Event | Rejection:
    """Validate one raw ``events`` message; return the :class:`Event` or the :class:`Rejection`.

    >>> types = {"click"}
    >>> parse_event(b'{"event_id":"e1","user_id":"u","item_id":"i","event_type":"click","ts":1.5}', event_types=types)
    Event(event_id='e1', user_id='u', item_id='i', event_type='click', ts=1.5, context={})
    >>> parse_event(b'{"event_id":"e1"', event_types=types).reason
    <Reason.INVALID_JSON: 'invalid_json'>
    >>> parse_event(b'{"event_id":"e1","user_id":"u","item_id":"i","event_type":"buy","ts":1}', event_types=types).detail
    "event_type: 'buy' is not one of click"
    """
    obj = decode_object(raw, max_bytes)
    if isinstance(obj, Rejection):
        return obj
    for name in (*_ID_FIELDS, "event_type", "ts"):
        if name not in obj or obj[name] is None:
            return Rejection(Reason.MISSING_FIELD, f"{name}: required field is missing")
    for name in _ID_FIELDS:
        rej = _check_id(name, obj[name], max_id_length)
        if rej is not None:
            return rej
    et = obj["event_type"]
    if not isinstance(et, str):
        return Rejection(Reason.WRONG_TYPE, f"event_type: expected a string, got {type(et).__name__}")
    if et not in event_types:
        return Rejection(Reason.UNKNOWN_EVENT_TYPE, f"event_type: {et[:64]!r} is not one of {', '.join(sorted(event_types))}")
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return Rejection(Reason.WRONG_TYPE, f"ts: expected a number (epoch seconds), got {type(ts).__name__}")
    if not math.isfinite(ts) or ts < 0 or ts > MAX_TS:
        return Rejection(Reason.INVALID_TIMESTAMP, f"ts: expected epoch seconds in [0, {MAX_TS:.0f}], got {ts!r}")
    ctx = obj.get("context", {})
    if ctx is None:
        ctx = {}
    if not isinstance(ctx, dict):
        return Rejection(Reason.WRONG_TYPE, f"context: expected an object, got {type(ctx).__name__}")
    rej = _check_attribution(ctx, max_id_length)
    if rej is not None:
        return rej
    return Event(obj["event_id"], obj["user_id"], obj["item_id"], et, float(ts), ctx)


def decode_object(raw: bytes | str | None, max_bytes: int) -> dict[str, Any] | Rejection:
    """The JSON object in ``raw``, or why it is not one (size, UTF-8, JSON syntax incl. NaN, not an object).

    >>> decode_object(b'[1]', 100).reason
    <Reason.NOT_AN_OBJECT: 'not_an_object'>
    """
    if raw is None:
        return Rejection(Reason.INVALID_JSON, "empty message (no value)")
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        return Rejection(Reason.TOO_LARGE, f"{len(data)} bytes, at most {max_bytes} allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(Reason.INVALID_UTF8, f"not UTF-8 at byte {exc.start}")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        return Rejection(Reason.INVALID_JSON, str(exc)[:200])
    if not isinstance(obj, dict):
        return Rejection(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True, slots=True, repr=False)
class ItemEmbedding:
    """An item's text already encoded by ``model`` (a pre-computed embedding carried in the ``items`` message).

    ``values`` are finite numbers; the worker uses them instead of encoding the text when ``model`` names its own
    encoder and their count is the encoder's width (otherwise it encodes the text and counts the mismatch).

    >>> ItemEmbedding.from_floats("all-MiniLM-L6-v2", [0.1234567890123, -1.0])
    ItemEmbedding(model='all-MiniLM-L6-v2', 2 values)
    >>> ItemEmbedding.from_floats("m", [0.1234567890123]).values
    (0.123456789,)
    """

    model: str
    values: tuple[float, ...]

    @classmethod
    def from_floats(cls, model: str, values: Sequence[float]) -> ItemEmbedding:
        """The embedding of these values with 9 significant digits each: exact for float32, half the JSON bytes
        of a float64's 17."""
        return cls(model, tuple(float(f"{float(v):.9g}") for v in values))

    def __repr__(self) -> str:
        return f"ItemEmbedding(model={self.model!r}, {len(self.values)} values)"


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """A validated catalog item (``embedding``: its text already encoded, when the message carried one)."""

    item_id: str
    text: str
    attributes: dict[str, Any] = field(default_factory=dict)
    embedding: ItemEmbedding | None = None


def parse_item(raw: bytes | str | None, *, max_bytes: int = 65536, max_id_length: int = 256) -> CatalogItem | Rejection:
    """Validate one raw ``items`` message.

    >>> parse_item(b'{"item_id": "42", "text": "Toy Story (1995)"}')
    CatalogItem(item_id='42', text='Toy Story (1995)', attributes={}, embedding=None)
    >>> parse_item(b'{"item_id": "42", "text": "Toy Story", "embedding": {"model": "m", "values": [0.5, 1]}}').embedding
    ItemEmbedding(model='m', 2 values)
    >>> parse_item(b'{"item_id": "42", "text": "Toy Story", "embedding": {"model": "m", "values": [1e999]}}').detail
    'embedding: values[0]: expected a finite number, got inf'
    >>> parse_item(b'{"item_id": "42", "text": "Toy Story", "attributes": []}').detail
    'attributes: expected an object, got list'
    >>> parse_item(b'{"item_id": "42"}').reason
    <Reason.MISSING_FIELD: 'missing_field'>
    >>> parse_item(b'{"item_id": "42", "text": "  "}').reason
    <Reason.EMPTY_TEXT: 'empty_text'>
    """
    obj = decode_object(raw, max_bytes)
    if isinstance(obj, Rejection):
        return obj
    for name in ("item_id", "text"):
        if name not in obj or obj[name] is None:
            return Rejection(Reason.MISSING_FIELD, f"{name}: required field is missing")
    rej = _check_id("item_id", obj["item_id"], max_id_length)
    if rej is not None:
        return rej
    if not isinstance(obj["text"], str):
        return Rejection(Reason.WRONG_TYPE, f"text: expected a string, got {type(obj['text']).__name__}")
    if not obj["text"].strip():
        return Rejection(Reason.EMPTY_TEXT, "text: expected a non-blank description (the encoder embeds it)")
    attrs = obj.get("attributes")
    attrs = {} if attrs is None else attrs
    if not isinstance(attrs, dict):
        return Rejection(Reason.WRONG_TYPE, f"attributes: expected an object, got {type(attrs).__name__}")
    embedding = parse_embedding(obj.get("embedding"))
    if isinstance(embedding, Rejection):
        return embedding
    return CatalogItem(obj["item_id"], obj["text"], attrs, embedding)


def parse_embedding(raw: Any) -> ItemEmbedding | Rejection | None:
    """The ``embedding`` field of an ``items`` message: ``None`` when absent (or null), else the
    :class:`ItemEmbedding`, or an ``invalid_embedding`` :class:`Rejection` naming what is wrong.

    Whether the model and width suit the worker is not checked here (the worker does, and encodes the text when
    they do not): only that the field is well formed, with finite numbers.

    >>> parse_embedding({"model": "m", "values": [0.5, "x"]}).detail
    "embedding: values[1]: expected a number, got str ('x')"
    >>> parse_embedding({"values": [0.5]}).detail
    'embedding: model: expected the name of the encoder (a non-empty string), got None'
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        return Rejection(Reason.INVALID_EMBEDDING,
                         f'embedding: expected an object {{"model": str, "values": [numbers]}}, got {type(raw).__name__}')
    model, values = raw.get("model"), raw.get("values")
    if not isinstance(model, str) or not model.strip():
        return Rejection(Reason.INVALID_EMBEDDING,
                         f"embedding: model: expected the name of the encoder (a non-empty string), got {model!r:.64}")
    if not isinstance(values, list) or not values:
        got = f"an empty {type(values).__name__}" if values == [] else type(values).__name__
        return Rejection(Reason.INVALID_EMBEDDING, f"embedding: values: expected a non-empty array of numbers, got {got}")
    for n, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            return Rejection(Reason.INVALID_EMBEDDING,
                             f"embedding: values[{n}]: expected a number, got {type(v).__name__} ({v!r:.32})")
        if not math.isfinite(v):  # 1e999 parses as infinity
            return Rejection(Reason.INVALID_EMBEDDING, f"embedding: values[{n}]: expected a finite number, got {v!r}")
    return ItemEmbedding(model, tuple(float(v) for v in values))


def event_json(e: Event | dict[str, Any]) -> bytes:
    """Serialise an event for the ``events`` topic."""
    if isinstance(e, Event):
        d: dict[str, Any] = {"event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id,
                             "event_type": e.event_type, "ts": e.ts}
        if e.context:
            d["context"] = e.context
    else:
        d = e
    return json.dumps(d, separators=(",", ":")).encode()


def item_json(item_id: str, text: str, attributes: dict[str, Any] | None = None,
              embedding: ItemEmbedding | None = None) -> bytes:
    """Serialise a catalog item for the ``items`` topic (:data:`ITEM_JSON_SCHEMA`).

    >>> item_json("42", "Toy Story", embedding=ItemEmbedding("m", (0.5, -1.0)))
    b'{"item_id":"42","text":"Toy Story","embedding":{"model":"m","values":[0.5,-1.0]}}'
    """
    d: dict[str, Any] = {"item_id": item_id, "text": text}
    if attributes:
        d["attributes"] = attributes
    if embedding is not None:
        d["embedding"] = {"model": embedding.model, "values": list(embedding.values)}
    return json.dumps(d, separators=(",", ":")).encode()


def new_rec_id() -> str:
    """A unique id for one recommendation list (``rec_id``), 32 hex digits."""
    return uuid.uuid4().hex


def recommendation_record(
    user_id: str, event_id: str | None, items: Sequence[tuple[str, float]], model_version: int, event_ts: float,
    emitted_ts: float | None = None, rec_id: str | None = None, because: Sequence[dict[str, Any]] | None = None,
    explored: dict[int, float | None] | None = None,
) -> dict[str, Any]:
    """The ``recommendations`` message body (:data:`RECOMMENDATION_JSON_SCHEMA`).

    An item whose score is not a finite number (a place the learner could not fill) is left out: JSON has no
    NaN or infinity, and such a place means "nothing here". ``because``: one reason per item of ``items``
    (``items[].because``), or None for none. ``explored``: the places of ``items`` an exploration policy filled,
    each with its propensity (None: not known): those items carry ``"explore": true`` (and ``propensity``).

    >>> r = recommendation_record("u", "e1", [("i1", 0.5), ("i2", float("-inf"))], 3, 10.0, emitted_ts=11.0)
    >>> r["items"], r["model_version"], r["emitted_ts"], len(r["rec_id"])
    ([{'item_id': 'i1', 'score': 0.5}], 3, 11.0, 32)
    >>> recommendation_record("u", "e1", [("i1", 0.5)], 3, 10.0, because=[{"kind": "new"}])["items"]
    [{'item_id': 'i1', 'score': 0.5, 'because': {'kind': 'new'}}]
    >>> recommendation_record("u", "e1", [("i1", 0.5), ("i2", 0.4)], 3, 10.0, explored={1: 0.05})["items"][1]
    {'item_id': 'i2', 'score': 0.4, 'explore': True, 'propensity': 0.05}
    """
    reasons: Sequence[dict[str, Any] | None] = because if because is not None else [None] * len(items)
    marks = explored or {}
    out = []
    for pos, ((i, s), why) in enumerate(zip(items, reasons, strict=True)):
        if not math.isfinite(s):
            continue
        item: dict[str, Any] = {"item_id": str(i), "score": float(s)}
        if why:
            item["because"] = why
        if pos in marks:
            item["explore"] = True
            propensity = marks[pos]
            if propensity is not None:
                item["propensity"] = float(propensity)
        out.append(item)
    return {
        "user_id": user_id,
        "event_id": event_id,
        "rec_id": rec_id or new_rec_id(),
        "items": out,
        "model_version": int(model_version),
        "event_ts": float(event_ts),
        "emitted_ts": float(time.time() if emitted_ts is None else emitted_ts),
    }


def dlq_record(
    raw: bytes | str | None, rejection: Rejection, *, topic: str, partition: int | None = None,
    offset: int | None = None, key: bytes | None = None, max_kept_bytes: int = DLQ_MAX_KEPT_BYTES,
) -> dict[str, Any]:
    """The dead-letter wrapper: reason, detail, origin and the rejected bytes.

    The rejected bytes are kept whole up to ``max_kept_bytes``; a larger message keeps its first
    ``max_kept_bytes`` (``truncated`` true, ``value_bytes`` its full size, ``value_sha256`` its digest), so a
    dead-letter record always fits the producer's request limit, whatever a producer sent.

    >>> d = dlq_record(b"{oops", Rejection(Reason.INVALID_JSON, "bad"), topic="events", partition=0, offset=7)
    >>> d["reason"], base64.b64decode(d["value_b64"]), d["value"], d["truncated"]
    ('invalid_json', b'{oops', '{oops', False)
    >>> d = dlq_record(b"x" * 10, Rejection(Reason.TOO_LARGE, "big"), topic="events", max_kept_bytes=4)
    >>> base64.b64decode(d["value_b64"]), d["value"], d["truncated"], d["value_bytes"]
    (b'xxxx', 'xxxx', True, 10)
    """
    data = b"" if raw is None else (raw.encode() if isinstance(raw, str) else bytes(raw))
    kept = data[:max_kept_bytes]
    try:
        text: str | None = kept.decode("utf-8")
    except UnicodeDecodeError as exc:  # a cut through a multi-byte character still gives the text before it
        text = kept[: exc.start].decode("utf-8") if len(kept) < len(data) and exc.start >= len(kept) - 3 else None
    key_text = None if key is None else key[:max_kept_bytes].decode("utf-8", "replace")
    return {
        "schema": DLQ_SCHEMA,
        "reason": str(rejection.reason),
        "detail": rejection.detail[:1000],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key_text,
        "value_b64": base64.b64encode(kept).decode(),
        "value": text,
        "truncated": len(kept) < len(data),
        "value_bytes": len(data),
        "value_sha256": hashlib.sha256(data).hexdigest(),
        "rejected_ts": time.time(),
    }


_NUMBER = {"type": "number"}
_ITEM_ID = {"type": "string", "minLength": 1}

#: JSON Schema of an ``items`` message value (what :func:`parse_item` accepts, less its size and id limits).
ITEM_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": ITEMS_SCHEMA,
    "type": "object",
    "required": ["item_id", "text"],
    "properties": {
        "item_id": _ITEM_ID,
        "text": {"type": "string", "pattern": r"\S"},
        "attributes": {"type": ["object", "null"]},
        "embedding": {
            "type": ["object", "null"],
            "required": ["model", "values"],
            "properties": {
                "model": {"type": "string", "pattern": r"\S"},
                "values": {"type": "array", "minItems": 1, "items": _NUMBER},
            },
        },
    },
}

#: Kinds of ``items[].because``: a history item (with its ``item_id``), the request's text query, popularity, a new
#: item (text only, no interactions yet), an exploration place.
BECAUSE_KINDS = ("history", "intent", "popular", "new", "explore")
_BECAUSE = {
    "type": "object",
    "required": ["kind"],
    "properties": {"kind": {"enum": list(BECAUSE_KINDS)}, "item_id": _ITEM_ID},
    "if": {"properties": {"kind": {"const": "history"}}},
    "then": {"required": ["item_id"]},
}

#: JSON Schema of a ``recommendations`` message value (the README's schema; outside consumers hold us to it).
RECOMMENDATION_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": RECOMMENDATIONS_SCHEMA,
    "type": "object",
    "required": ["user_id", "event_id", "rec_id", "items", "model_version", "event_ts", "emitted_ts"],
    "properties": {
        "user_id": {"type": "string", "minLength": 1},
        "event_id": {"type": ["string", "null"]},
        "rec_id": {"type": "string", "minLength": 1},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["item_id", "score"],
                "properties": {"item_id": _ITEM_ID, "score": _NUMBER, "because": _BECAUSE,
                               "explore": {"type": "boolean"},
                               "propensity": {"type": "number", "minimum": 0, "maximum": 1}},
            },
        },
        "model_version": {"type": "integer", "minimum": 0},
        "event_ts": _NUMBER,
        "emitted_ts": _NUMBER,
    },
}

#: JSON Schema of a dead-letter record (``events-dlq`` and ``items-dlq``).
DLQ_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": DLQ_SCHEMA,
    "type": "object",
    "required": ["schema", "reason", "detail", "topic", "partition", "offset", "key", "value_b64", "value",
                 "truncated", "value_bytes", "value_sha256", "rejected_ts"],
    "properties": {
        "schema": {"const": DLQ_SCHEMA},
        "reason": {"enum": [str(r) for r in Reason]},
        "detail": {"type": "string"},
        "topic": {"type": "string"},
        "partition": {"type": ["integer", "null"]},
        "offset": {"type": ["integer", "null"]},
        "key": {"type": ["string", "null"]},
        "value_b64": {"type": "string", "contentEncoding": "base64"},
        "value": {"type": ["string", "null"]},
        "truncated": {"type": "boolean"},
        "value_bytes": {"type": "integer", "minimum": 0},
        "value_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "rejected_ts": _NUMBER,
    },
}


def schema_errors(value: bytes | str | dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every way ``value`` (a message value or its parsed JSON) breaks ``schema``: empty when it conforms.

    Strict JSON: NaN and infinities are errors, as they are for any outside consumer.

    >>> schema_errors(b'{"user_id": "u"}', RECOMMENDATION_JSON_SCHEMA)[:1]
    ["'event_id' is a required property"]
    """
    import jsonschema

    if not isinstance(value, dict):
        try:
            value = json.loads(value, parse_constant=_reject_constant)
        except ValueError as exc:
            return [f"not JSON: {exc}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(value)]
