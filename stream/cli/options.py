"""Options shared by several subcommands, and the one-line error convention."""

from __future__ import annotations

from collections.abc import Callable
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
