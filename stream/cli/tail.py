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
@config_option
def command(broker_url: str | None, topic: str | None, user_id: str | None, from_beginning: bool,
            max_messages: int | None, follow: bool, config: str | None) -> None:
    """Print each message value as one JSON line, without a consumer group (every partition).

    Recommendations are checked against their schema; one that breaks it is skipped with a warning on stderr.
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
