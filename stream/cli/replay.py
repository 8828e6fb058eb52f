"""``streamrec replay``: publish a dataset's events to ``events`` in timestamp order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from stream.cli.options import broker_option, config_option, settings_from


@click.command("replay")
@click.argument("source", default="ml-100k")
@broker_option
@click.option("--rate", default=0.0, type=click.FloatRange(min=0), show_default=True,
              help="Events per second (0: as fast as possible).")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--data-dir", "dataset_dir", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Dataset cache folder.")
@config_option
def command(source: str, broker_url: str | None, rate: float, limit: int | None, dataset_dir: str,
            config: str | None) -> None:
    """Publish the events of SOURCE (ml-100k, a GroupLens folder, or an events .csv/.jsonl)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from connectors.datasets import DatasetError, load_dataset
    from connectors.kafka import KafkaClientConfig, ensure_topics, replay_events

    s = settings_from(config, broker_url=broker_url)
    try:
        ds = load_dataset(source, Path(dataset_dir))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    cfg = KafkaClientConfig.from_settings(s)
    total = min(len(ds.events), limit or len(ds.events))
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("replay", total=total)

        async def go() -> int:
            await ensure_topics(cfg, {s.topic_events: s.topic_partitions}, s.replication_factor)
            return await replay_events(cfg, s.topic_events, ds.events, rate=rate or None, limit=limit,
                                       progress=lambda n: bar.update(task, completed=n))

        n = asyncio.run(go())
    click.echo(f"published {n} events to {s.topic_events} on {s.broker_url}")
