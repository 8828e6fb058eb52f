"""``streamrec worker``: run a worker against any Kafka broker."""

from __future__ import annotations

import click

from stream.cli.options import broker_option, config_option, settings_from


@click.command("worker")
@broker_option
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="RocksDB/state folder.")
@click.option("--metrics-port", default=None, type=int, help="Port of /metrics (0: off).")
@click.option("--web-port", default=None, type=int,
              help="Port of the HTTP routes: recommendations on demand, /openapi.json, /healthz (0: off).")
@click.option("--log-level", default=None, help="debug, info, warning, error.")
@config_option
def command(broker_url: str | None, data_dir: str | None, metrics_port: int | None, web_port: int | None,
            log_level: str | None, config: str | None) -> None:
    """Consume events and items, learn online, publish recommendations; answer HTTP requests on demand."""
    settings = settings_from(config, broker_url=broker_url, data_dir=data_dir, metrics_port=metrics_port,
                             web_port=web_port, log_level=log_level)
    from stream.worker import run_worker

    run_worker(settings)
