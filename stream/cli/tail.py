"""``streamrec tail``: print recommendations (or any topic) as JSON lines."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from stream.cli.options import broker_option, config_option, settings_from


@click.command("tail")
@broker_option
@click.option("--topic", default=None, help="Topic to read (default: recommendations).")
@click.option("--from-beginning/--from-end", default=False, show_default=True, help="Where to start.")
@click.option("-n", "--max-messages", default=None, type=click.IntRange(min=1), help="Stop after N messages.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep waiting for new messages (else stop after 5 s idle).")
@config_option
def command(broker_url: str | None, topic: str | None, from_beginning: bool, max_messages: int | None,
            follow: bool, config: str | None) -> None:
    """Print each message value as one JSON line."""
    from connectors.kafka import KafkaClientConfig, read_topic

    s = settings_from(config, broker_url=broker_url)
    name = topic or s.topic_recommendations

    async def go() -> None:
        async for _, value, _ in read_topic(KafkaClientConfig.from_settings(s), name, until_count=max_messages,
                                            from_beginning=from_beginning, follow=follow):
            if value is None:
                continue
            try:
                line = json.dumps(json.loads(value), separators=(",", ":"))
            except ValueError:
                line = json.dumps({"raw": value.decode("utf-8", "replace")})
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
