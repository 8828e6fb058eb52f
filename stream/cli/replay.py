"""``streamrec replay``: publish a dataset's events to ``events`` in timestamp order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from stream.cli.options import broker_errors, broker_option, client_kwargs, config_option, settings_from


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
    """Publish the events of SOURCE (ml-100k, a GroupLens folder, or an events .csv/.jsonl).

    Every event is checked against the wire schema and the worker's settings (event types, limits) before the
    first one is sent.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from connectors.clients import EventProducer, make_event
    from connectors.datasets import DatasetError, load_dataset
    from connectors.kafka import KafkaClientConfig, ensure_topics
    from connectors.schemas import SchemaError

    s = settings_from(config, broker_url=broker_url)
    try:
        ds = load_dataset(source, Path(dataset_dir))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    events = []
    for e in ds.events[:limit] if limit else ds.events:
        try:
            events.append(make_event(e["user_id"], e["item_id"], e["event_type"], ts=e["ts"], event_id=e["event_id"],
                                     context=e.get("context"), event_types=s.event_weights,
                                     max_bytes=s.max_event_bytes, max_id_length=s.max_id_length))
        except SchemaError as exc:
            raise click.ClickException(f"{ds.name}: event {len(events) + 1} (event_id {e['event_id']!r}): "
                                       f"{exc}") from None
    with broker_errors(s), Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn()) as bar:
        task = bar.add_task("replay", total=len(events))
        asyncio.run(ensure_topics(KafkaClientConfig.from_settings(s), {s.topic_events: s.topic_partitions},
                                  s.replication_factor))
        with EventProducer(topic=s.topic_events, **client_kwargs(s)) as producer:
            t0 = time.monotonic()
            for n, ev in enumerate(events, start=1):
                producer.send_event(ev)
                if rate:
                    ahead = n / rate - (time.monotonic() - t0)
                    if ahead > 0.002:
                        time.sleep(ahead)
                if n % 2000 == 0:
                    producer.flush()
                    bar.update(task, completed=n)
            producer.flush()
            bar.update(task, completed=len(events))
    click.echo(f"published {len(events)} events to {s.topic_events} on {s.broker_url}")
