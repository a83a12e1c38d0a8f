"""Logging configuration shared by the CLI, pipelines and scheduled runs.

On a terminal, log records go through rich (colours, aligned columns, the
terminal's width). Anywhere else (cron mail, ``>> file 2>&1``, a pipe, systemd's
journal) they are plain lines that never wrap, each starting with an ISO-8601
UTC timestamp::

    2026-11-25T21:44:56Z INFO nowcast.ingest: 7 frame(s) added
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO


NOISY = ("distributed", "fsspec", "numcodecs", "matplotlib", "PIL", "h5py")

#: Format of plain (non-terminal) log lines.
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: ISO-8601 UTC, second resolution (``time.gmtime`` converter, hence the literal ``Z``).
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


class _QuietThirdParty(logging.Filter):
    """Drop records below WARNING from chatty third-party libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not record.name.split(".", 1)[0] in NOISY


class UTCFormatter(logging.Formatter):
    """``2026-11-25T21:44:56Z LEVEL logger: message``: timestamps in UTC whatever the machine's zone."""

    converter = time.gmtime

    def __init__(self, fmt: str = PLAIN_FORMAT, datefmt: str = ISO_UTC) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt)


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real file
        return False


def make_handler(stream: IO[str] | None = None) -> logging.Handler:
    """A handler for ``stream`` (default: the current ``sys.stderr``).

    rich's :class:`~rich.logging.RichHandler` on a terminal (at the terminal's
    width); elsewhere a plain :class:`logging.StreamHandler` with
    :class:`UTCFormatter`, so lines are never wrapped at 80 columns.
    """
    stream = sys.stderr if stream is None else stream
    if _is_terminal(stream):
        from rich.console import Console
        from rich.logging import RichHandler

        # width=None: the terminal's own width (rich falls back to 80 only without a terminal).
        console = Console(file=stream, width=None)
        rich_handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
        rich_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # rich adds time and level
        return rich_handler
    handler = logging.StreamHandler(stream)
    handler.setFormatter(UTCFormatter())
    return handler


def configure_logging(verbosity: int = 0) -> None:
    """Send library logs to stderr (stdout carries command output that scripts parse).

    Parameters
    ----------
    verbosity
        0 = INFO, 1 or more = DEBUG, -1 = WARNING (``--quiet``).
    """
    handler = make_handler()
    if verbosity <= 0:
        # dask.distributed configures its own loggers at INFO when it is first
        # imported (after this runs), which floods operator logs with cluster
        # start/stop chatter; a handler filter survives that reconfiguration.
        handler.addFilter(_QuietThirdParty())
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    # force=True: replace handlers of an earlier call (each CLI run, tests calling main() again).
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
