"""Logging configuration shared by the CLI, pipelines and scheduled runs."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


def configure_logging(verbosity: int = 0) -> None:
    """Send library logs to stderr with timestamps in UTC-friendly form.

    Parameters
    ----------
    verbosity
        0 = INFO, 1 or more = DEBUG, -1 = WARNING (``--quiet``).
    """
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        # stderr: stdout carries command output (tables, JSON) that scripts parse.
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)],
        force=True,
    )
    for noisy in ("distributed", "fsspec", "numcodecs", "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
