"""``streamrec catalog``: publish catalog items from a dataset or file to the ``items`` topic.

With ``--encode`` the item texts are encoded here first, in batches, through a resumable on-disk cache
(:mod:`stream.embedding_cache`), and every item is published with its embedding, so the worker does not encode it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stream.cli.options import broker_errors, broker_option, client_kwargs, config_option, settings_from

if TYPE_CHECKING:
    from rich.console import Console

    from connectors.schemas import CatalogItem
    from learners.encoder import FrozenTransformerEncoder
    from stream.settings import Settings


@click.command("catalog")
@click.argument("source", default="ml-100k")
@broker_option
@click.option("--data-dir", "dataset_dir", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Dataset cache folder.")
@click.option("--encode", is_flag=True, help="Encode the item texts here (CUDA when present) and publish each item "
              "with its embedding.")
@click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the embedding cache for --encode (default: DATA_DIR/embedding-cache).")
@config_option
def command(source: str, broker_url: str | None, dataset_dir: str, encode: bool, cache_dir: str | None,
            config: str | None) -> None:
    """Publish the items of SOURCE: ml-100k, a GroupLens folder, or any .jsonl/.csv file of items
    (item_id, text, optional attributes).

    With --encode, texts not in the cache are encoded first (a second run, or one after an interruption,
    encodes only what is missing; no broker is needed for that part), then every item is published with
    its embedding.
    """
    from rich.console import Console

    from connectors.clients import ItemProducer
    from connectors.datasets import DatasetError, load_catalog
    from connectors.kafka import KafkaClientConfig, ensure_topics
    from connectors.schemas import SchemaError

    s = settings_from(config, broker_url=broker_url)
    try:
        items = load_catalog(source, Path(dataset_dir))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    console = Console()
    if encode:
        cache = Path(cache_dir) if cache_dir else Path(dataset_dir) / "embedding-cache"
        items_out = encoded_items(items, s, cache, console)
    else:
        items_out = iter(items)
    with broker_errors(s):
        asyncio.run(ensure_topics(KafkaClientConfig.from_settings(s), {s.topic_items: s.topic_partitions},
                                  s.replication_factor))
        with ItemProducer(topic=s.topic_items, **client_kwargs(s)) as producer:
            for item in items_out:
                try:
                    producer.send_item(item)
                except SchemaError as exc:
                    raise click.ClickException(f"item {item.item_id!r}: {exc}") from None
    with_emb = " with embeddings" if encode else ""
    click.echo(f"published {len(items)} items{with_emb} to {s.topic_items} on {s.broker_url}")


def encoded_items(items: list[CatalogItem], s: Settings, cache_dir: Path, console: Console) -> Iterator[CatalogItem]:
    """Encode the texts of ``items`` not cached yet (progress bar, summary table), then return an iterator over
    the items with their embeddings, read back from the cache a chunk at a time."""
    import dataclasses

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from connectors.schemas import ItemEmbedding
    from stream.catalog import encoder_name
    from stream.embedding_cache import EmbeddingCache, cached_embeddings, encode_texts
    from stream.worker import build_encoder

    name = encoder_name(s.encoder_model)
    model_key = f"{name} max_length={s.encoder_max_length}"  # truncation changes the vectors of long texts
    cache = EmbeddingCache(cache_dir)
    texts = [it.text for it in items]
    devices: list[str] = []

    def load_encoder() -> FrozenTransformerEncoder:  # only when a text is not cached
        encoder = build_encoder(s)  # the worker's encoder: the device setting (auto: CUDA when present)
        devices.append(str(encoder.device))
        return encoder

    with Progress(TextColumn("encode"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("encode", total=len(set(texts)))
        summary = encode_texts(texts, load_encoder, cache, model_key, batch_size=s.encoder_batch_size,
                               on_progress=lambda n: bar.update(task, completed=n))
    table = Table(title=f"streamrec catalog --encode ({name})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in (("items", f"{len(items):,}"), ("distinct texts", f"{summary.unique:,}"),
                 ("already cached", f"{summary.cached:,}"), ("encoded now", f"{summary.encoded:,}"),
                 ("encode seconds", f"{summary.seconds:,.1f}"), ("texts/s", f"{summary.per_second:,.0f}"),
                 ("device", devices[0] if devices else "(nothing to encode)"), ("cache", str(cache.path))):
        table.add_row(k, v)
    console.print(table)

    def with_embeddings() -> Iterator[CatalogItem]:
        try:
            for item, vec in zip(items, cached_embeddings(texts, cache, model_key), strict=True):
                yield dataclasses.replace(item, embedding=ItemEmbedding.from_floats(name, vec.tolist()))
        finally:
            cache.close()

    return with_embeddings()
