"""Entry point of the ``streamrec`` console script; each subcommand lives in its own module."""

from __future__ import annotations

import importlib
import os
import sys

import click

#: subcommand name -> module under ``stream.cli`` exposing a click command named ``command``.
SUBCOMMANDS: dict[str, str] = {
    "broker": "broker",
    "worker": "worker",
    "catalog": "catalog",
    "replay": "replay",
    "tail": "tail",
    "demo": "demo",
    "evaluate": "evaluate",
    "config": "config",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so ``streamrec tail`` does not load torch."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        mod = SUBCOMMANDS.get(cmd_name)
        if mod is None:
            return None
        try:
            module = importlib.import_module(f"stream.cli.{mod}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name == f"stream.cli.{mod}":
                return None
            raise
        cmd: click.Command = module.command
        return cmd

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand; a broker that cannot be reached ends it with one line naming the broker, a setting
        that does not fit the broker found (``stream.worker``) with one line naming the setting."""
        from connectors.clients import BrokerUnavailable
        from stream.settings import ConfigError

        try:
            return super().invoke(ctx)
        except (BrokerUnavailable, ConfigError) as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """streamrec: a streaming, incrementally-learning recommender on Kafka."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
