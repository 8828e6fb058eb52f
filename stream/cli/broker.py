"""``streamrec broker``: run the embedded Kafka-compatible broker (Tansu, memory storage) in the foreground."""

from __future__ import annotations

import signal
import time

import click

from connectors.broker import BrokerError, EmbeddedBroker


@click.command("broker")
@click.option("--port", default=9092, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address.")
def command(port: int, host: str) -> None:
    """Run Tansu on HOST:PORT until interrupted (topics live in memory only)."""
    broker = EmbeddedBroker(port=port, host=host)
    try:
        broker.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tansu broker listening on {broker.url} (memory storage; Ctrl-C stops it)")
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop["now"] and broker.running:
            time.sleep(0.2)
    finally:
        broker.stop()
    if not stop["now"]:
        raise click.ClickException("the broker exited unexpectedly")
