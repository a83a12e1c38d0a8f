"""The archive's write lock: an exclusive ``flock`` beside the store.

The kernel releases an ``flock`` when its process dies, even by SIGKILL, so a
crashed writer never leaves the archive locked; the next writer then finds
the debris of its interrupted write and recovers (:mod:`nowcast.io.archive_commit`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time as _time
from collections.abc import Iterator
from pathlib import Path

from nowcast.errors import LockError

LOCK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``, waiting up to ``timeout`` seconds.

    Raises
    ------
    LockError
        Another process holds it for longer than ``timeout``.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = _time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if _time.monotonic() >= deadline:
                os.close(fd)
                raise LockError(f"{lock_path}: another process is writing archive {what}") from None
            _time.sleep(0.05)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
