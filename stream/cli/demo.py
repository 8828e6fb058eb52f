"""``streamrec demo``: the whole pipeline on MovieLens-100K and the embedded broker, with a summary table."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--dataset", default="ml-100k", show_default=True, help="Dataset to replay (see `replay`).")
@click.option("--rate", default=1200.0, type=click.FloatRange(min=0), show_default=True,
              help="Replay rate in events/s, below the worker's capacity so latency is not queueing "
                   "(0: as fast as possible).")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Replay only the first N events.")
@click.option("--data-dir", "dataset_dir", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Dataset cache folder.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="Where broker/worker logs and worker state go (default: a temp folder).")
def command(dataset: str, rate: float, limit: int | None, dataset_dir: str, workdir: str | None) -> None:
    """Start broker + worker, publish the catalog, replay events, score the recommendations, stop."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from connectors.datasets import DatasetError, load_dataset
    from stream.demo import run_demo

    console = Console()
    try:
        ds = load_dataset(dataset, Path(dataset_dir))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    events = ds.events[:limit] if limit else ds.events
    console.print(f"[bold]streamrec demo[/]: {len(ds.items):,} items, {len(events):,} events from {ds.name}; "
                  f"replay {'as fast as possible' if not rate else f'at {rate:,.0f} events/s'}")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[eps]:>7,.0f} ev/s  online HR@10 {task.fields[hr]:.3f}"),
                        TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task("events -> recommendations", total=len(events), eps=0.0, hr=0.0)

        def on_progress(_: str, done: int, total: int, info: dict[str, float]) -> None:
            progress.update(task, completed=done, eps=info.get("events_per_s", 0.0), hr=info.get("hit_rate", 0.0))

        res = run_demo(events, ds.items, rate=rate or None, workdir=Path(workdir) if workdir else None,
                       on_progress=on_progress)
    table = Table(title="streamrec demo summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in res.rows():
        table.add_row(k, v)
    console.print(table)
    if res.recommendations_out + res.dlq_out < res.events_in:
        raise click.ClickException(
            f"{res.events_in - res.recommendations_out - res.dlq_out} events got no recommendation or DLQ entry")
