"""The ``qkdnet`` command: one entry point, one sub-command per job.

Each sub-command lives in ``qkdnet._commands.<name>`` and exposes ``register(app)``.
Errors that qkdnet raises on purpose (:class:`qkdnet.errors.QkdnetError`) become a one-line
message and exit code 2, never a stack trace.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from qkdnet import __version__
from qkdnet.errors import QkdnetError

app = typer.Typer(
    name="qkdnet",
    help="qkdnet — plan, simulate and run quantum key distribution networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The order here is the order in `qkdnet --help`.
_COMMAND_MODULES = (
    "keyrate",
    "link",
    "postprocess",
    "simulate",
    "sweep",
    "serve",
    "keys",
    "certs",
    "demo",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"qkdnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """qkdnet — plan, simulate and run quantum key distribution networks."""


def _register_commands() -> None:
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"qkdnet._commands.{name}")
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a QkdnetError becomes ``error: <message>`` on stderr and exit code 2."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        app(args=argv, standalone_mode=True)
    except QkdnetError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
