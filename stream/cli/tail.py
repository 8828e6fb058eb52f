"""``streamrec tail``: print recommendations (or any topic) as JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from stream.cli.options import broker_errors, broker_option, client_kwargs, config_option, settings_from


@click.command("tail")
@broker_option
@click.option("--topic", default=None, help="Topic to read (default: recommendations).")
@click.option("--user", "user_id", default=None, metavar="U",
              help="Only user U's recommendations (on another topic: the messages keyed by U).")
@click.option("--from-beginning/--from-end", default=False, show_default=True, help="Where to start.")
@click.option("-n", "--max-messages", default=None, type=click.IntRange(min=1), help="Stop after N messages.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep waiting for new messages (else stop after 5 s idle).")
@click.option("--readable", is_flag=True,
              help="Recommendations as text for people: one line per list, then each item with its reason.")
@config_option
def command(broker_url: str | None, topic: str | None, user_id: str | None, from_beginning: bool,
            max_messages: int | None, follow: bool, readable: bool, config: str | None) -> None:
    """Print each message value as one JSON line, without a consumer group (every partition).

    Recommendations are checked against their schema; one that breaks it is skipped with a warning on stderr.
    With --readable they are printed for people instead (see :func:`readable_lines`).
    """
    from connectors.clients import RecommendationConsumer, TopicReader

    s = settings_from(config, broker_url=broker_url)
    name = topic or s.topic_recommendations
    common = {"from_beginning": from_beginning, "max_messages": max_messages,
              "idle_timeout_s": None if follow else 5.0, **client_kwargs(s)}
    try:
        with broker_errors(s):
            if name == s.topic_recommendations:
                with RecommendationConsumer(topic=name, user_id=user_id, on_invalid="skip", **common) as recs:
                    for rec in recs:
                        if readable:
                            sys.stdout.write("".join(f"{line}\n" for line in readable_lines(rec.value)))
                            sys.stdout.flush()
                        else:
                            emit(rec.value)
            else:
                with TopicReader(name, keys=None if user_id is None else [user_id], **common) as reader:
                    for r in reader:
                        if r.value is not None:
                            emit(r.value)
    except KeyboardInterrupt:
        pass


def emit(value: bytes | dict[str, Any]) -> None:
    """One JSON line on stdout (a value that is not JSON as ``{"raw": text}``)."""
    obj: Any = value
    if isinstance(value, bytes):
        try:
            obj = json.loads(value)
        except ValueError:
            obj = {"raw": value.decode("utf-8", "replace")}
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def reason_text(because: dict[str, Any] | None) -> str:
    """One item's ``because`` in words.

    >>> reason_text({"kind": "history", "item_id": "i7"}), reason_text({"kind": "new"}), reason_text(None)
    ('because of i7', 'new item', '')
    """
    if not because:
        return ""
    kind = because.get("kind")
    return {"history": f"because of {because.get('item_id')}", "intent": "matches the query",
            "popular": "popular", "new": "new item", "explore": "exploring"}.get(str(kind), str(kind))


def readable_lines(value: dict[str, Any]) -> list[str]:
    """A recommendation as lines for people: who, which event, which model, then each item with its reason.

    >>> for line in readable_lines({"user_id": "u1", "event_id": "e9", "rec_id": "r", "model_version": 4,
    ...         "event_ts": 0.0, "emitted_ts": 0.0, "items": [{"item_id": "i3", "score": 0.91,
    ...         "because": {"kind": "history", "item_id": "i7"}}, {"item_id": "i8", "score": 0.5}]}):
    ...     print(line)
    user u1  event e9  model v4  rec r
       1. i3  0.910  because of i7
       2. i8  0.500
    """
    head = f"user {value['user_id']}  event {value['event_id'] or '-'}  model v{value['model_version']}  " \
           f"rec {value['rec_id']}"
    return [head, *(f"  {n:>2}. {it['item_id']}  {it['score']:.3f}  {reason_text(it.get('because'))}".rstrip()
                    for n, it in enumerate(value["items"], 1))]
