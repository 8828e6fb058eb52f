"""Options shared by several subcommands, and the one-line error convention."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from stream.settings import ConfigError, Settings, load_settings


def broker_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--broker", "broker_url", default=None, metavar="URL",
                        help="Broker URL, kafka://host:port (env STREAMREC_BROKER_URL).")(f)


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config", default=None, type=click.Path(dir_okay=False),
                        help="TOML settings file (env STREAMREC_CONFIG).")(f)


def settings_from(config: str | None, **overrides: Any) -> Settings:
    """Load settings or exit with a one-line message naming the field."""
    try:
        return load_settings(Path(config) if config else None, **overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def client_kwargs(s: Settings) -> dict[str, Any]:
    """Where and how the kafka-python clients of ``connectors.clients`` connect: servers plus security settings."""
    return {"bootstrap_servers": s.bootstrap_servers, **s.kafka_client_kwargs()}


@contextlib.contextmanager
def broker_errors(s: Settings) -> Iterator[None]:
    """Check that the broker listens, and turn any broker failure inside into one line naming its address.

    The Kafka clients' own logs (reconnect warnings, errors already reported by the exception) are silenced:
    this process is a one-shot command whose one line says what failed.
    """
    import logging

    from aiokafka.errors import KafkaError as AIOKafkaError
    from kafka.errors import KafkaError

    from connectors.clients import BrokerUnavailable, DeliveryError, wait_for_broker

    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        wait_for_broker(s.bootstrap_servers)
        yield
    except (BrokerUnavailable, DeliveryError) as exc:
        raise click.ClickException(str(exc)) from None
    except (KafkaError, AIOKafkaError) as exc:
        raise click.ClickException(f"broker {','.join(s.bootstrap_servers)}: {type(exc).__name__}: {exc}") from None
