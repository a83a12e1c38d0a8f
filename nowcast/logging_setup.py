"""Logging configuration shared by the CLI, pipelines and scheduled runs."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


NOISY = ("distributed", "fsspec", "numcodecs", "matplotlib", "PIL", "h5py")


class _QuietThirdParty(logging.Filter):
    """Drop records below WARNING from chatty third-party libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not record.name.split(".", 1)[0] in NOISY


def configure_logging(verbosity: int = 0) -> None:
    """Send library logs to stderr with timestamps in UTC-friendly form.

    Parameters
    ----------
    verbosity
        0 = INFO, 1 or more = DEBUG, -1 = WARNING (``--quiet``).
    """
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
    if verbosity <= 0:
        # dask.distributed configures its own loggers at INFO when it is first
        # imported (after this runs), which floods operator logs with cluster
        # start/stop chatter; a handler filter survives that reconfiguration.
        handler.addFilter(_QuietThirdParty())
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        # stderr: stdout carries command output (tables, JSON) that scripts parse.
        handlers=[handler],
        force=True,
    )
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
