"""``streamrec catalog``: publish catalog items from a dataset or file to the ``items`` topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from stream.cli.options import broker_errors, broker_option, client_kwargs, config_option, settings_from


@click.command("catalog")
@click.argument("source", default="ml-100k")
@broker_option
@click.option("--data-dir", "dataset_dir", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Dataset cache folder.")
@config_option
def command(source: str, broker_url: str | None, dataset_dir: str, config: str | None) -> None:
    """Publish the items of SOURCE: ml-100k, a GroupLens folder, or any .jsonl/.csv file of items
    (item_id, text, optional attributes)."""
    from connectors.clients import ItemProducer
    from connectors.datasets import DatasetError, load_catalog
    from connectors.kafka import KafkaClientConfig, ensure_topics

    s = settings_from(config, broker_url=broker_url)
    try:
        items = load_catalog(source, Path(dataset_dir))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    with broker_errors(s):
        asyncio.run(ensure_topics(KafkaClientConfig.from_settings(s), {s.topic_items: s.topic_partitions},
                                  s.replication_factor))
        with ItemProducer(topic=s.topic_items, **client_kwargs(s)) as producer:
            for item in items:
                producer.send_item(item)
    click.echo(f"published {len(items)} items to {s.topic_items} on {s.broker_url}")
