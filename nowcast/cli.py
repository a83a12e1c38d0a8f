"""The ``nowcast`` command line: parse, call one library function, map errors.

Each command lives in ``nowcast/commands/<name>.py`` and registers itself on
:data:`app`; this module only wires them together and turns
:class:`~nowcast.errors.NowcastError` into one readable line and exit code 2
(never a traceback), as operators and cron mail expect.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from nowcast.errors import NowcastError

app = typer.Typer(
    name="nowcast",
    help="Short-term precipitation forecasting from weather radar.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, imported for their side effect of registering on ``app``.
COMMAND_MODULES = [
    "nowcast.commands.ingest",
    "nowcast.commands.forecast",
    "nowcast.commands.schedule",
    "nowcast.commands.verify",
    "nowcast.commands.render",
    "nowcast.commands.demo",
    "nowcast.commands.train",
]

EXIT_USER_ERROR = 2

log = logging.getLogger("nowcast")


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    _register_commands()
    try:
        # With standalone_mode=False click returns the exit code of typer.Exit
        # instead of calling sys.exit, so commands can signal partial failure.
        rc = app(args=argv, standalone_mode=False)
    except NowcastError as exc:
        typer.echo(f"nowcast: error: {exc}", err=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        typer.echo("nowcast: interrupted", err=True)
        return 130
    except SystemExit as exc:  # raised by typer for --help etc.
        return int(exc.code or 0)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            exc.show()
            return EXIT_USER_ERROR
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("nowcast: aborted", err=True)
            return 130
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover  (python -m nowcast.cli)
    # Run as __main__, this module is a second copy of nowcast.cli; the command
    # modules register on the imported one, so call *its* main.
    from nowcast.cli import main as _main

    sys.exit(_main())
