"""The ``nowcast`` command line: parse, call one library function, map errors.

Each command lives in ``nowcast/commands/<name>.py`` and registers itself on
:data:`app`; this module only wires them together and turns every failure
into ONE line on stderr and a documented exit code (never a traceback unless
``-v`` is given), as operators and cron mail expect:

====  ==========================================================================
code  when
====  ==========================================================================
0     success; ``--help``, ``--version``
1     internal error (a bug): ``nowcast: internal error: TYPE: message``
2     usage slip or bad input: :class:`~nowcast.errors.NowcastError`, unknown
      command or option, bad option value, bare ``nowcast`` (help on stdout)
3     partial run: :class:`~nowcast.errors.PartialRunError` (any
      ``NowcastError`` exits with its class's ``exit_code``)
4     fault of the machine (disk full, unwritable directory...):
      :func:`~nowcast.errors.is_environment_fault`
130   interrupted (Ctrl-C)
141   stdout/stderr closed by the reader (``nowcast ... | head``): quiet exit
====  ==========================================================================

See docs/operations.md, "Exit codes and errors".
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
import traceback
from typing import Annotated, Optional

import typer

from nowcast import interrupts
from nowcast.allocator import keep_freed_memory
from nowcast.errors import (
    EXIT_BUG,
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EnvironmentFault,
    NowcastError,
    is_environment_fault,
)

app = typer.Typer(
    name="nowcast",
    help="Short-term precipitation forecasting from weather radar.",
    no_args_is_help=True,
    add_completion=True,  # nowcast --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)

#: Command modules, imported for their side effect of registering on ``app``.
COMMAND_MODULES = [
    "nowcast.commands.ingest",
    "nowcast.commands.forecast",
    "nowcast.commands.schedule",
    "nowcast.commands.verify",
    "nowcast.commands.hindcast",
    "nowcast.commands.render",
    "nowcast.commands.demo",
    "nowcast.commands.train",
    "nowcast.commands.pretrain",
    "nowcast.commands.models",
]

#: Kept for the command modules that import it (``nowcast.commands.schedule``).
EXIT_USER_ERROR = EXIT_USAGE
#: Exit code after the reader of our output went away (128 + SIGPIPE, as a shell reports it).
EXIT_BROKEN_PIPE = 141

PROG = "nowcast"

log = logging.getLogger("nowcast")


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("nowcast")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover
        pass
    import nowcast

    return str(getattr(nowcast, "__version__", "unknown"))


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {_version()}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    # No docstring: the app's help= stays the program description.
    pass


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)


# --- click/typer exception classes ------------------------------------------------
# typer >= 0.2x bundles its own click copy (typer._click); older typer uses click.
# Collect the classes from whichever is installed so both are recognised.


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name in ("typer._click.exceptions", "click.exceptions", "typer.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


_CLICK_EXCEPTIONS = _exception_classes("ClickException")
_NO_ARGS_IS_HELP = _exception_classes("NoArgsIsHelpError")
_EXIT = _exception_classes("Exit")
_ABORT = _exception_classes("Abort")


def _is_click_error(exc: BaseException) -> bool:
    """A click/typer usage error: a known class, or anything that quacks like one."""
    if _CLICK_EXCEPTIONS and isinstance(exc, _CLICK_EXCEPTIONS):
        return True
    return isinstance(getattr(exc, "exit_code", None), int) and callable(getattr(exc, "format_message", None))


# --- output helpers ------------------------------------------------------------------


def _one_line(text: str) -> str:
    """Collapse a message to one line (click messages and wrapped errors may span several)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _error(line: str) -> None:
    print(_one_line(line), file=sys.stderr, flush=True)


def _wants_traceback(argv: list[str]) -> bool:
    """``-v``, ``-vv``, ``--verbose`` anywhere before ``--``."""
    for arg in argv:
        if arg == "--":
            break
        if arg == "--verbose" or (arg.startswith("-") and not arg.startswith("--") and len(arg) > 1
                                  and set(arg[1:]) <= {"v", "q"} and "v" in arg[1:]):
            return True
    return False


def _is_broken_pipe(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _silence_broken_pipe() -> int:
    """The reader of stdout/stderr went away: point both at /dev/null so that the
    interpreter's final flush cannot print "Exception ignored ... BrokenPipeError"
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # pragma: no cover
        return EXIT_BROKEN_PIPE
    for stream in (sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass  # not a real file (pytest's capture, typer's flush wrapper): nothing to flush there
    return EXIT_BROKEN_PIPE


def _environment_message(exc: BaseException) -> str:
    """The most telling text of a machine fault: the EnvironmentFault's own message, or
    the ``OSError`` in the chain (``[Errno 28] No space left on device: '/x'``)."""
    if isinstance(exc, EnvironmentFault):
        return str(exc) or type(exc).__name__
    cur: BaseException | None = exc
    for _ in range(10):
        if cur is None:
            break
        if isinstance(cur, OSError) and cur.errno is not None:
            if cur is exc or not str(exc) or str(cur) in str(exc):
                return str(cur)
            return f"{exc} ({cur})"
        cur = cur.__cause__ or cur.__context__
    return str(exc) or type(exc).__name__


def _usage_error(exc: BaseException) -> int:
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or PROG
    if _NO_ARGS_IS_HELP and isinstance(exc, _NO_ARGS_IS_HELP):
        # Bare `nowcast` (or `nowcast GROUP`): the help on stdout, one line on stderr.
        typer.echo(exc.format_message())
        _error(f"{PROG}: error: missing command: pick one of the commands above (see '{path} COMMAND --help')")
        return EXIT_USAGE
    message = _one_line(exc.format_message()).rstrip()
    if ctx is not None:
        if not message.endswith((".", "?", "!")):
            message += "."
        message += f" Try '{path} --help'."
    _error(f"{PROG}: error: {message}")
    return EXIT_USAGE


def _exit_code(value: object) -> int:
    if value is None:
        return EXIT_OK
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    _error(f"{PROG}: error: {value}")  # sys.exit("message")
    return EXIT_USAGE


def _run(argv: list[str] | None) -> int:
    _register_commands()
    # With standalone_mode=False click returns the exit code of typer.Exit
    # instead of calling sys.exit, so commands can signal partial failure.
    rc = app(args=argv, prog_name=PROG, standalone_mode=False)
    if rc == EXIT_INTERRUPTED:
        # typer >= 0.2x turns KeyboardInterrupt into Exit(130) before we see it.
        _error(f"{PROG}: interrupted")
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Every failure ends as one line on stderr starting with ``nowcast: error:``
    (or ``nowcast: internal error:`` / ``nowcast: interrupted``) and the exit
    code documented in the module docstring; ``-v`` adds the traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = _wants_traceback(args)
    keep_freed_memory()  # numpy's large temporaries reuse the heap instead of faulting pages in again (nowcast.allocator)
    with interrupts.installed():
        return _main(args, verbose)


def _main(args: list[str], verbose: bool) -> int:
    """:func:`main` under :func:`nowcast.interrupts.installed`."""
    try:
        try:
            rc = _run(args)
            if interrupts.pending() and rc != EXIT_INTERRUPTED:  # a Ctrl-C a finaliser swallowed
                _error(f"{PROG}: interrupted")
                return EXIT_INTERRUPTED
            return rc
        except SystemExit as exc:  # sys.exit() in a command; typer's own broken-pipe exit
            if _is_broken_pipe(exc.__context__):
                return _silence_broken_pipe()
            return _exit_code(exc.code)
        except KeyboardInterrupt:
            _error(f"{PROG}: interrupted")
            return EXIT_INTERRUPTED
        except BaseException as exc:
            if _EXIT and isinstance(exc, _EXIT):  # older click: ctx.exit() escaping
                return int(getattr(exc, "exit_code", 0) or 0)
            if _ABORT and isinstance(exc, _ABORT):  # older click: KeyboardInterrupt -> Abort
                _error(f"{PROG}: interrupted")
                return EXIT_INTERRUPTED
            if not isinstance(exc, Exception):
                raise
            if _is_broken_pipe(exc):
                return _silence_broken_pipe()
            if _is_click_error(exc) and not isinstance(exc, NowcastError):
                return _usage_error(exc)
            if verbose:
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            if is_environment_fault(exc):
                _error(f"{PROG}: error: machine fault (not the input): {_environment_message(exc)}")
                return EXIT_ENVIRONMENT
            if isinstance(exc, NowcastError):
                # EXIT_USAGE, or the class's own code (PartialRunError: EXIT_PARTIAL).
                _error(f"{PROG}: error: {exc}")
                return int(getattr(exc, "exit_code", EXIT_USAGE))
            hint = "" if verbose else " (run with -v for the traceback)"
            _error(f"{PROG}: internal error: {type(exc).__name__}: {_one_line(str(exc))}{hint}")
            return EXIT_BUG
    except BrokenPipeError:  # writing the error line itself failed: the reader is gone
        return _silence_broken_pipe()


if __name__ == "__main__":  # pragma: no cover  (python -m nowcast.cli)
    # Run as __main__, this module is a second copy of nowcast.cli; the command
    # modules register on the imported one, so call *its* main.
    from nowcast.cli import main as _main

    sys.exit(_main())
