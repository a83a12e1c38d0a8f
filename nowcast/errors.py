"""One exception hierarchy for everything a user can get wrong.

The CLI turns any :class:`NowcastError` into exit code 2 and a single line on
stderr, so every message must stand on its own: name the file or setting, then
say what was wrong with it.
"""

from __future__ import annotations

from pathlib import Path


class NowcastError(Exception):
    """Base class: an expected failure caused by input, configuration or state."""


class ConfigError(NowcastError):
    """A configuration file or setting is missing or invalid."""


class InputFileError(NowcastError):
    """An input file cannot be read or does not hold what it claims.

    Parameters
    ----------
    path
        The offending file; it is put first in the message so a batch log
        shows at a glance which file to move aside.
    problem
        What is wrong, in words a radar operator understands.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class GridError(NowcastError):
    """A grid does not fit a region (no overlap, unknown projection...)."""


class ArchiveError(NowcastError):
    """The region's Zarr archive refuses an operation or is inconsistent."""


class CheckpointError(NowcastError):
    """A model checkpoint is missing, corrupt, or does not match its config."""


class ForecastError(NowcastError):
    """A forecast cannot be made (missing/stale input frames, bad window...)."""


class LockError(NowcastError):
    """Another instance already holds the lock for this region."""
