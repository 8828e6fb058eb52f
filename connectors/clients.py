"""Producer and consumer helpers for the teams around the engine, on kafka-python (the project's client library).

* :class:`EventProducer` validates each event against the ``events`` wire schema before it leaves (the same
  :func:`~connectors.schemas.parse_event` the worker runs, on the very bytes sent) and keys it by user id.
* :class:`ItemProducer` does the same for catalog items (``items``, keyed by item id).
* :class:`RecommendationConsumer` yields parsed :class:`Recommendation` objects from ``recommendations``, in a
  consumer group or without one (every partition assigned), optionally for one user only.
* :class:`TopicReader` is the raw reader under it, for any topic (``streamrec tail --topic``).

A bad argument raises :class:`~connectors.schemas.SchemaError`, one line naming the field. A broker that cannot
be reached raises :class:`BrokerUnavailable`, one line naming its address. Delivery is at-least-once: a consumer
of recommendations deduplicates by ``event_id`` (after a worker crash an event may be answered twice).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from connectors.schemas import (
    RECOMMENDATION_JSON_SCHEMA,
    CatalogItem,
    Event,
    ItemEmbedding,
    Reason,
    Rejection,
    SchemaError,
    decode_object,
    event_json,
    item_json,
    parse_embedding,
    parse_event,
    parse_item,
)

log = logging.getLogger("streamrec.clients")

#: Consumer-group settings that join in ~3 s on the embedded broker (it completes a join after half the session
#: timeout; kafka-python's default of 45 s took 23 s) and are the smallest Apache Kafka accepts by default
#: (``group.min.session.timeout.ms`` = 6 s). See ``benchmarks/consumer_join.py`` and the README.
GROUP_SETTINGS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

Servers = str | Sequence[str]

#: Kafka's compression codecs and the package kafka-python needs for each (gzip is in the standard library).
CODEC_PACKAGES: dict[str, str | None] = {"gzip": None, "snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


class BrokerUnavailable(ConnectionError):
    """The broker could not be reached; the message is one line naming its address and what failed."""


class DeliveryError(RuntimeError):
    """Messages handed to a producer were not acknowledged by the broker."""


def _servers(bootstrap_servers: Servers) -> list[str]:
    if isinstance(bootstrap_servers, str):
        return [h.strip() for h in bootstrap_servers.replace(";", ",").split(",") if h.strip()]
    return list(bootstrap_servers)


def reachable(server: str, timeout: float = 3.0) -> str | None:
    """``None`` when ``host:port`` accepts TCP connections, else why not (one line).

    >>> reachable("no-port")
    "expected host:port, got 'no-port'"
    """
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit():
        return f"expected host:port, got {server!r}"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def wait_for_broker(bootstrap_servers: Servers, timeout_s: float = 0.0, *,
                    on_retry: Callable[[str, float, float], None] | None = None) -> str:
    """Block until one bootstrap server accepts TCP connections; return it.

    Retries with growing pauses (0.5 s doubling up to 5 s, the last one at ``timeout_s``; 0: one try), calling
    ``on_retry(reason, pause, elapsed)`` before each pause; then raises :class:`BrokerUnavailable`. A bare TCP
    check, so it says "not listening" without the Kafka clients' own retry logs.
    """
    servers = _servers(bootstrap_servers)
    t0 = time.monotonic()
    pause = 0.5
    while True:
        reasons = {}
        for server in servers:
            why = reachable(server)
            if why is None:
                return server
            reasons[server] = why
        reason = "; ".join(f"{s}: {w}" for s, w in reasons.items())
        elapsed = time.monotonic() - t0
        if elapsed >= timeout_s:
            waited = f" after {elapsed:.0f} s of retries" if timeout_s > 0 else ""
            raise BrokerUnavailable(f"broker {','.join(servers)}: not reachable{waited} ({reason})")
        wait = min(pause, timeout_s - elapsed)  # the last try at the deadline
        if on_retry is not None:
            on_retry(reason, wait, elapsed)
        time.sleep(wait)
        pause = min(5.0, pause * 2)


def check_codec(compression_type: str | None) -> None:
    """Raise ``ValueError`` (one line) unless kafka-python can compress with ``compression_type`` here.

    >>> check_codec("gzip"), check_codec(None)
    (None, None)
    >>> check_codec("brotli")
    Traceback (most recent call last):
    ...
    ValueError: compression_type: expected none, gzip, snappy, lz4 or zstd, got 'brotli'
    """
    if compression_type is None:
        return
    if compression_type not in CODEC_PACKAGES:
        raise ValueError(f"compression_type: expected none, gzip, snappy, lz4 or zstd, got {compression_type!r}")
    from kafka import codec

    if not getattr(codec, f"has_{compression_type}")():
        raise ValueError(f"compression_type: {compression_type} needs the {CODEC_PACKAGES[compression_type]} package "
                         f"(pip install 'kafka-python[{compression_type}]')")


def _connect(factory: Callable[[], Any], servers: list[str], what: str) -> Any:
    """Build a kafka-python client, turning its bootstrap failures into :class:`BrokerUnavailable`."""
    from kafka.errors import KafkaError

    try:
        return factory()
    except KafkaError as exc:
        raise BrokerUnavailable(f"broker {','.join(servers)}: {what} failed ({type(exc).__name__}: {exc})") from None


def make_event(user_id: str, item_id: str, event_type: str = "click", *, ts: float | None = None,
               event_id: str | None = None, context: Mapping[str, Any] | None = None,
               event_types: Collection[str] | None = None, max_bytes: int = 16384, max_id_length: int = 256) -> Event:
    """The event these arguments make, checked by the worker's own validator on the bytes that would be sent.

    ``ts`` defaults to now, ``event_id`` to a random UUID; ``event_types`` ``None`` accepts any non-empty string.
    Raises :class:`~connectors.schemas.SchemaError`, one line naming the field.

    >>> make_event("u1", "i9", ts=1.5, event_id="e1")
    Event(event_id='e1', user_id='u1', item_id='i9', event_type='click', ts=1.5, context={})
    >>> make_event("u1", "", ts=1.5)
    Traceback (most recent call last):
    ...
    connectors.schemas.SchemaError: empty_id: item_id: expected a non-empty string
    """
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex if event_id is None else event_id,
        "user_id": user_id, "item_id": item_id, "event_type": event_type,
        "ts": time.time() if ts is None else ts,
    }
    if context is not None:
        body["context"] = dict(context) if isinstance(context, Mapping) else context
    if isinstance(body["ts"], float) and not math.isfinite(body["ts"]):  # json.dumps would write NaN
        raise SchemaError(Rejection(Reason.INVALID_TIMESTAMP, f"ts: expected a finite number, got {ts!r}"))
    try:
        raw = json.dumps(body, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SchemaError(Rejection(Reason.WRONG_TYPE, f"context: expected JSON values ({exc})")) from None
    if event_types is None:  # any non-empty string
        if isinstance(event_type, str) and not event_type.strip():
            raise SchemaError(Rejection(Reason.EMPTY_ID, "event_type: expected a non-empty string"))
        event_types = {event_type} if isinstance(event_type, str) else set()
    parsed = parse_event(raw, event_types=set(event_types), max_bytes=max_bytes, max_id_length=max_id_length)
    if isinstance(parsed, Rejection):
        raise SchemaError(parsed)
    return parsed


def make_item(item_id: str, text: str, attributes: Mapping[str, Any] | None = None, *, max_bytes: int = 65536,
              max_id_length: int = 256, embedding: ItemEmbedding | None = None) -> CatalogItem:
    """The catalog item these arguments make, checked like :func:`make_event` (``text`` must not be blank;
    ``embedding``, the text already encoded, must hold finite numbers).

    >>> make_item("42", "Toy Story (1995)", {"year": 1995})
    CatalogItem(item_id='42', text='Toy Story (1995)', attributes={'year': 1995}, embedding=None)
    >>> make_item("42", "Toy Story", embedding=ItemEmbedding("m", (float("nan"),)))
    Traceback (most recent call last):
    ...
    connectors.schemas.SchemaError: invalid_embedding: embedding: values[0]: expected a finite number, got nan
    >>> make_item("42", " ")
    Traceback (most recent call last):
    ...
    connectors.schemas.SchemaError: missing_field: text: expected a non-empty string
    """
    if not isinstance(text, str) or not text.strip():
        raise SchemaError(Rejection(Reason.WRONG_TYPE if not isinstance(text, str) else Reason.MISSING_FIELD,
                                    "text: expected a non-empty string"))
    if attributes is not None and not isinstance(attributes, Mapping):
        raise SchemaError(Rejection(Reason.WRONG_TYPE, "attributes: expected an object"))
    if embedding is not None:  # NaN would reach the wire as a NaN literal: say what is wrong with it here
        checked = parse_embedding({"model": embedding.model, "values": list(embedding.values)})
        if isinstance(checked, Rejection):
            raise SchemaError(checked)
    try:
        raw = item_json(item_id, text, dict(attributes) if attributes else None, embedding)
    except (TypeError, ValueError) as exc:
        raise SchemaError(Rejection(Reason.WRONG_TYPE, f"attributes: expected JSON values ({exc})")) from None
    parsed = parse_item(raw, max_bytes=max_bytes, max_id_length=max_id_length)
    if isinstance(parsed, Rejection):
        raise SchemaError(parsed)
    return parsed


class _JsonProducer:
    """A kafka-python ``KafkaProducer`` that sends pre-validated JSON bytes and remembers failed deliveries."""

    def __init__(self, bootstrap_servers: Servers, topic: str, *, acks: int | str, compression_type: str | None,
                 connect_timeout_s: float, **config: Any) -> None:
        from kafka import KafkaProducer

        check_codec(compression_type)
        self.topic = topic
        self.servers = _servers(bootstrap_servers)
        self.sent = 0
        self._failed: list[BaseException] = []
        kw = {"acks": acks, "linger_ms": 5, "batch_size": 256 * 1024, "compression_type": compression_type,
              "bootstrap_timeout_ms": int(connect_timeout_s * 1000), **config}
        self._producer = _connect(lambda: KafkaProducer(bootstrap_servers=self.servers, **kw), self.servers,
                                  "connecting a producer")

    def _send(self, key: str, value: bytes) -> Any:
        fut = self._producer.send(self.topic, value=value, key=key.encode())
        fut.add_errback(self._failed.append)
        self.sent += 1
        return fut

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything sent so far is acknowledged; raise :class:`DeliveryError` if anything failed."""
        from kafka.errors import KafkaError

        try:
            self._producer.flush(timeout)
        except KafkaError as exc:
            raise DeliveryError(f"broker {','.join(self.servers)}: flushing {self.topic} failed ({exc})") from None
        if self._failed:
            first, n = self._failed[0], len(self._failed)
            self._failed = []
            raise DeliveryError(f"broker {','.join(self.servers)}: {n} of {self.sent} messages to {self.topic} "
                                f"were not delivered ({type(first).__name__}: {first})")

    def close(self, timeout: float | None = None) -> None:
        """Flush and close the producer (raises :class:`DeliveryError` if anything was not delivered)."""
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is None:
            self.close()
        else:  # do not hide the error with a flush failure
            self._producer.close(0)


class EventProducer(_JsonProducer):
    """Publish user events to ``events`` in the wire format, keyed by user id.

    Parameters
    ----------
    bootstrap_servers
        ``host:port`` (comma-separated) or a list of them.
    topic
        The events topic.
    event_types
        Accepted ``event_type`` values (the worker's ``event_weights`` keys); ``None``: any non-empty string.
    max_event_bytes, max_id_length
        The worker's limits (settings of the same names); a larger event or id is refused here.
    compression_type
        ``None``, ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"`` (the last three need kafka-python's codec
        packages: ``python-snappy``, ``lz4``, ``zstandard``).
    acks
        Broker acknowledgements per message (``1``, ``"all"`` or ``0``).
    connect_timeout_s
        How long to wait for the broker at start.
    **config
        Passed to ``kafka.KafkaProducer`` (security settings, ``linger_ms``, ...).
    """

    def __init__(self, bootstrap_servers: Servers = "127.0.0.1:9092", *, topic: str = "events",
                 event_types: Collection[str] | None = None, max_event_bytes: int = 16384, max_id_length: int = 256,
                 compression_type: str | None = None, acks: int | str = 1, connect_timeout_s: float = 10.0,
                 **config: Any) -> None:
        self.event_types = frozenset(event_types) if event_types is not None else None
        self.max_event_bytes = max_event_bytes
        self.max_id_length = max_id_length
        super().__init__(bootstrap_servers, topic, acks=acks, compression_type=compression_type,
                         connect_timeout_s=connect_timeout_s, **config)

    def send(self, user_id: str, item_id: str, event_type: str = "click", *, ts: float | None = None,
             event_id: str | None = None, context: Mapping[str, Any] | None = None) -> Any:
        """Validate and send one event (key = user id); returns kafka-python's future of its record metadata."""
        ev = make_event(user_id, item_id, event_type, ts=ts, event_id=event_id, context=context,
                        event_types=self.event_types, max_bytes=self.max_event_bytes, max_id_length=self.max_id_length)
        return self._send(ev.user_id, event_json(ev))

    def send_event(self, event: Event) -> Any:
        """Send an event :func:`make_event` already validated (key = its user id)."""
        return self._send(event.user_id, event_json(event))


class ItemProducer(_JsonProducer):
    """Publish catalog items to ``items`` (``{"item_id", "text"}`` + optional ``attributes`` and ``embedding``),
    keyed by item id.

    Parameters are those of :class:`EventProducer`; ``acks`` defaults to ``"all"`` (a catalog is small and must
    not be lost).
    """

    def __init__(self, bootstrap_servers: Servers = "127.0.0.1:9092", *, topic: str = "items",
                 max_item_bytes: int = 65536, max_id_length: int = 256, compression_type: str | None = None,
                 acks: int | str = "all", connect_timeout_s: float = 10.0, **config: Any) -> None:
        self.max_item_bytes = max_item_bytes
        self.max_id_length = max_id_length
        super().__init__(bootstrap_servers, topic, acks=acks, compression_type=compression_type,
                         connect_timeout_s=connect_timeout_s, **config)

    def send(self, item_id: str, text: str, attributes: Mapping[str, Any] | None = None, *,
             embedding: ItemEmbedding | None = None) -> Any:
        """Validate and send one item (``embedding``: its text already encoded); raises
        :class:`~connectors.schemas.SchemaError` naming a bad field."""
        item = make_item(item_id, text, attributes, max_bytes=self.max_item_bytes, max_id_length=self.max_id_length,
                         embedding=embedding)
        return self._send(item.item_id, item_json(item.item_id, item.text, item.attributes or None, item.embedding))

    def send_item(self, item: CatalogItem) -> Any:
        """:meth:`send` for a :class:`~connectors.schemas.CatalogItem` (with its embedding, if it has one)."""
        return self.send(item.item_id, item.text, item.attributes or None, embedding=item.embedding)


# -- reading ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One place of a recommendation list."""

    item_id: str
    score: float
    because: dict[str, Any] | None = None  # why it is in the list (see the README), when the worker says


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A ``recommendations`` message that conforms to the schema; ``value`` is the whole JSON object.

    ``event_id`` is the event that triggered the list (deduplicate by it); ``rec_id`` names the list itself.
    """

    user_id: str
    event_id: str | None
    rec_id: str
    items: tuple[ScoredItem, ...]
    model_version: int
    event_ts: float
    emitted_ts: float
    value: dict[str, Any] = field(repr=False, compare=False)


def _path(parts: Iterable[Any]) -> str:
    """``items[0].item_id`` from jsonschema's ``absolute_path``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out


def recommendation_validator() -> Any:
    """A ``jsonschema`` validator of :data:`~connectors.schemas.RECOMMENDATION_JSON_SCHEMA`."""
    import jsonschema

    return jsonschema.Draft202012Validator(RECOMMENDATION_JSON_SCHEMA)


def parse_recommendation(raw: bytes | str | None, validator: Any = None) -> Recommendation:
    """Check one ``recommendations`` message against :data:`~connectors.schemas.RECOMMENDATION_JSON_SCHEMA`;
    raise a one-line :class:`~connectors.schemas.SchemaError` naming the first bad field.

    ``validator``: a :func:`recommendation_validator` to reuse (one is built when ``None``).

    >>> ok = (b'{"user_id": "u", "event_id": "e", "rec_id": "r", "items": [{"item_id": "i", "score": 0.5}],'
    ...       b' "model_version": 3, "event_ts": 1.0, "emitted_ts": 2.0}')
    >>> parse_recommendation(ok).items
    (ScoredItem(item_id='i', score=0.5, because=None),)
    >>> parse_recommendation(ok.replace(b'"item_id": "i"', b'"item_id": ["71", 5.1]'))
    Traceback (most recent call last):
    ...
    connectors.schemas.SchemaError: wrong_type: items[0].item_id: ['71', 5.1] is not of type 'string'
    """
    obj = decode_object(raw, max_bytes=64 * 1024 * 1024)
    if isinstance(obj, Rejection):
        raise SchemaError(obj)
    errors = list((validator or recommendation_validator()).iter_errors(obj))
    if errors:
        first = min(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        path = list(first.absolute_path)
        if first.validator == "required":  # name the missing field itself
            missing = next(p for p in first.validator_value if p not in first.instance)
            raise SchemaError(Rejection(Reason.MISSING_FIELD, f"{_path([*path, missing])}: required field is missing"))
        raise SchemaError(Rejection(Reason.WRONG_TYPE, f"{_path(path) or 'message'}: {first.message}"[:300]))
    return Recommendation(obj["user_id"], obj["event_id"], obj["rec_id"],
                          tuple(ScoredItem(it["item_id"], float(it["score"]), it.get("because"))
                                for it in obj["items"]),
                          obj["model_version"], float(obj["event_ts"]), float(obj["emitted_ts"]), obj)


class TopicReader:
    """Records of one topic through a kafka-python consumer, in a group or on every partition without one.

    Parameters
    ----------
    topic
        Topic to read.
    bootstrap_servers
        ``host:port`` (comma-separated) or a list of them.
    group_id
        Consumer group (offsets committed, partitions shared with the group's other members; the group settings
        default to :data:`GROUP_SETTINGS`); ``None``: no group, every partition assigned to this reader.
    from_beginning
        Start at the oldest message (else only new ones); in a group, only where it has no committed offset.
    keys
        Only records with one of these keys (for ``recommendations`` and ``events`` the key is the user id).
    max_messages, idle_timeout_s
        Stop after this many records, or once nothing arrived for this long (``None``: keep waiting).
    topic_wait_s
        Without a group: how long to wait for the topic to exist.
    **config
        Passed to ``kafka.KafkaConsumer`` (security settings, ``fetch_max_wait_ms``, group settings, ...).
    """

    def __init__(self, topic: str, bootstrap_servers: Servers = "127.0.0.1:9092", *, group_id: str | None = None,
                 from_beginning: bool = False, keys: Collection[str] | None = None, max_messages: int | None = None,
                 idle_timeout_s: float | None = None, connect_timeout_s: float = 10.0, topic_wait_s: float = 10.0,
                 **config: Any) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.servers = _servers(bootstrap_servers)
        self.keys = None if keys is None else {k.encode() for k in keys}
        self.max_messages = max_messages
        self.idle_timeout_s = idle_timeout_s
        kw: dict[str, Any] = {"group_id": group_id, "auto_offset_reset": "earliest" if from_beginning else "latest",
                              "fetch_max_wait_ms": 100, "bootstrap_timeout_ms": int(connect_timeout_s * 1000)}
        if group_id is not None:
            kw.update(GROUP_SETTINGS)
        else:
            kw["enable_auto_commit"] = False
        kw.update(config)
        self._consumer = _connect(lambda: KafkaConsumer(bootstrap_servers=self.servers, **kw), self.servers,
                                  "connecting a consumer")
        try:
            if group_id is not None:
                self._consumer.subscribe([topic])
                return
            deadline = time.monotonic() + topic_wait_s
            parts = self._consumer.partitions_for_topic(topic)  # a metadata request for all topics: creates none
            while not parts and time.monotonic() < deadline:
                time.sleep(0.2)
                parts = self._consumer.partitions_for_topic(topic)
            if not parts:
                raise BrokerUnavailable(f"broker {','.join(self.servers)}: topic {topic} does not exist "
                                        f"(waited {topic_wait_s:.0f} s)")
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            self._consumer.assign(tps)
            if from_beginning:
                self._consumer.seek_to_beginning(*tps)
            else:
                self._consumer.seek_to_end(*tps)
        except BaseException:
            self._consumer.close()
            raise

    def records(self) -> Iterator[Any]:
        """kafka-python ``ConsumerRecord`` objects with a wanted key, until ``idle_timeout_s`` (if set)."""
        last = time.monotonic()
        while True:
            batch = self._consumer.poll(timeout_ms=200, max_records=1000)
            if batch:
                last = time.monotonic()
            elif self.idle_timeout_s is not None and time.monotonic() - last > self.idle_timeout_s:
                return
            for records in batch.values():
                for r in records:
                    if self.keys is not None and r.key not in self.keys:
                        continue
                    yield r

    def __iter__(self) -> Iterator[Any]:
        """:meth:`records`, at most ``max_messages`` of them."""
        for n, r in enumerate(self.records(), start=1):
            yield r
            if self.max_messages is not None and n >= self.max_messages:
                return

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class RecommendationConsumer(TopicReader):
    """Parsed, validated :class:`Recommendation` objects from ``recommendations``.

    Takes the parameters of :class:`TopicReader` (``topic`` defaults to ``"recommendations"``), plus ``user_id``
    (follow one user: records keyed by that user id whose ``user_id`` is that user) and ``on_invalid``: a message
    that breaks the schema raises :class:`~connectors.schemas.SchemaError` naming the field and where the message
    lies (``"raise"``, the default: the contract is broken, better loud), or is logged as one warning line and
    skipped (``"skip"``; counted in :attr:`skipped`). Delivery is at-least-once: deduplicate by ``event_id``.
    """

    def __init__(self, bootstrap_servers: Servers = "127.0.0.1:9092", *, topic: str = "recommendations",
                 user_id: str | None = None, on_invalid: Literal["raise", "skip"] = "raise", **kw: Any) -> None:
        if on_invalid not in ("raise", "skip"):
            raise ValueError(f"on_invalid: expected 'raise' or 'skip', got {on_invalid!r}")
        self.user_id = user_id
        self.on_invalid = on_invalid
        self.skipped = 0
        self._validator = recommendation_validator()
        super().__init__(topic, bootstrap_servers, keys=None if user_id is None else [user_id], **kw)

    def __iter__(self) -> Iterator[Recommendation]:
        """Valid recommendations (of ``user_id``, if set), at most ``max_messages`` of them."""
        n = 0
        for r in self.records():
            try:
                rec = parse_recommendation(r.value, self._validator)
            except SchemaError as exc:
                where = f"{r.topic}[{r.partition}]@{r.offset}"
                if self.on_invalid == "raise":
                    raise SchemaError(Rejection(exc.rejection.reason, f"{where}: {exc.rejection.detail}")) from None
                self.skipped += 1
                log.warning("skipped an invalid recommendation at %s: %s", where, exc)
                continue
            if self.user_id is None or rec.user_id == self.user_id:
                yield rec
                n += 1
                if self.max_messages is not None and n >= self.max_messages:
                    return
