"""One exception hierarchy for everything a user can get wrong, and the CLI's exit codes.

The CLI turns any :class:`NowcastError` into a single line on stderr and a
documented exit code, so every message must stand on its own: name the file
or setting, then say what was wrong with it.

Exit codes (documented in docs/operations.md; cron and systemd act on them):

====  =====================  ==========================================================
code  name                   meaning
====  =====================  ==========================================================
0     :data:`EXIT_OK`        everything asked was done
1     :data:`EXIT_BUG`       an internal error (a bug: please report it, with ``-v``)
2     :data:`EXIT_USAGE`     usage error or bad input (a file, a setting, a config)
3     :data:`EXIT_PARTIAL`   partial or degraded run: some files skipped, a fallback used
4     :data:`EXIT_ENVIRONMENT` a fault of the machine (disk full, unwritable directory):
                             nothing was lost, the next run retries
130   :data:`EXIT_INTERRUPTED` interrupted (Ctrl-C / SIGINT)
====  =====================  ==========================================================
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_ENVIRONMENT = 4
EXIT_INTERRUPTED = 130


class NowcastError(Exception):
    """Base class: an expected failure caused by input, configuration or state."""

    #: What the CLI exits with when this error ends a command.
    exit_code: int = EXIT_USAGE


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


class EnvironmentFault(NowcastError):
    """A fault of the machine, not of the input: disk full, unwritable directory, transient I/O.

    Never a reason to quarantine or drop an input file: the file stays where
    it is and the next run retries it. The CLI exits with
    :data:`EXIT_ENVIRONMENT`.
    """

    exit_code = EXIT_ENVIRONMENT


class PartialRunError(NowcastError):
    """A run did part of its work: files skipped, windows skipped, a fallback used.

    What was done is kept (and summarised before this is raised); the CLI
    exits with :data:`EXIT_PARTIAL` so cron and systemd notice.
    """

    exit_code = EXIT_PARTIAL


#: ``errno`` values that mean "the machine", not "the file".
ENVIRONMENT_ERRNOS = frozenset({28, 122, 13, 30, 5, 12, 24, 23})  # ENOSPC EDQUOT EACCES EROFS EIO ENOMEM EMFILE ENFILE


def is_environment_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a fault of the machine.

    ``OSError`` with an errno such as ENOSPC (disk full), EDQUOT, EACCES,
    EROFS, EIO or ENOMEM, ``MemoryError``, or an :class:`EnvironmentFault`.
    Any other :class:`NowcastError` was classified where it was raised (a
    :class:`LockError` is not a machine fault, whatever its cause).
    h5py, netCDF and zarr often wrap the ``OSError``; the chain
    (``__cause__``/``__context__``) is followed, and h5py's own text
    ("No space left on device", "Permission denied") is recognised.
    """
    if isinstance(exc, NowcastError):  # already classified by whoever raised it
        return isinstance(exc, EnvironmentFault)
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, (EnvironmentFault, MemoryError)):
            return True
        if isinstance(cur, OSError) and getattr(cur, "errno", None) in ENVIRONMENT_ERRNOS:
            return True
        text = str(cur)
        if any(k in text for k in ("No space left on device", "Disk quota exceeded", "Read-only file system",
                                    "Permission denied", "Cannot allocate memory")):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False
