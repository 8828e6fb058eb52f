"""``streamrec config``: print the effective settings (secrets masked)."""

from __future__ import annotations

import json

import click

from stream.cli.options import config_option, settings_from


@click.command("config")
@config_option
def command(config: str | None) -> None:
    """Show every setting with its effective value."""
    s = settings_from(config)
    click.echo(json.dumps(s.public_dict(), indent=2, default=str))
