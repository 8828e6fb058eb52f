"""``streamrec catalog``: publish catalog items from a dataset or file to the ``items`` topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from stream.cli.options import broker_option, config_option, settings_from


@click.command("catalog")
@click.argument("source", default="ml-100k")
@broker_option
@click.option("--data-dir", "dataset_dir", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Dataset cache folder.")
@config_option
def command(source: str, broker_url: str | None, dataset_dir: str, config: str | None) -> None:
    """Publish items of SOURCE (ml-100k, a GroupLens folder, or an items .jsonl/.csv file)."""
    from connectors.datasets import DatasetError, load_dataset, load_items_file
    from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items

    s = settings_from(config, broker_url=broker_url)
    try:
        p = Path(source)
        items = load_items_file(p) if p.is_file() and p.stem.startswith("items") else load_dataset(
            source, Path(dataset_dir)).items
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    cfg = KafkaClientConfig.from_settings(s)

    async def go() -> int:
        await ensure_topics(cfg, {s.topic_items: s.topic_partitions}, s.replication_factor)
        return await publish_items(cfg, s.topic_items, items)

    n = asyncio.run(go())
    click.echo(f"published {n} items to {s.topic_items} on {s.broker_url}")
