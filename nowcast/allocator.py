"""Keep freed memory in the process: glibc malloc settings for numpy's large, short-lived arrays.

Why this exists. A forecast allocates and frees hundreds of MB of temporary
arrays: pysteps' Lucas-Kanade interpolation (``idwinterp2d``) alone makes
40-80 MB temporaries per call on a 512x512 grid, and every warp, mask and
dB transform a few MB more. With glibc's defaults, free memory at the top of
the heap is handed back to the system as soon as it exceeds the trim
threshold (128 kB, raised dynamically only up to twice the mmap threshold),
so the next array faults every page in again, freshly zeroed by the kernel.
On the 2-core machine of docs/benchmarks.md that made the *same*
Lucas-Kanade call take 0.8 s or 1.2-1.5 s depending on the state of the heap,
and a 512x512 extrapolation 1.6-2.0 s. Keeping up to :data:`TRIM_THRESHOLD`
of freed memory, padding each heap growth by :data:`TOP_PAD` and serving
arrays up to :data:`MMAP_THRESHOLD` from the heap made both methods faster
and steady (docs/benchmarks.md, "Speed of the Lagrangian forecaster").

The cost: after a forecast the process keeps up to ``TRIM_THRESHOLD`` of
freed memory for the next one instead of returning it (peak memory does not
change). A long-running ``nowcast watch`` holds it between runs.

Only the application's entry points call :func:`keep_freed_memory` (the CLI,
and the benchmarks that time what the CLI does): importing :mod:`nowcast` as
a library never changes the host process's allocator. Set
``NOWCAST_KEEP_FREED_MEMORY=0`` to keep glibc's defaults; any ``MALLOC_*``
tuning of one's own in the environment is respected and left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc ``<malloc.h>``).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

#: Free memory at the top of the heap kept for reuse before any is returned to the system.
TRIM_THRESHOLD = 256 << 20
#: Extra memory taken with each heap growth, so a run of growing arrays does not grow it step by step.
TOP_PAD = 64 << 20
#: Arrays up to this size come from the heap (and are reused) instead of a fresh ``mmap`` each time:
#: glibc's largest allowed default (32 MiB on 64-bit), which covers a 2048x2048 float64 field.
MMAP_THRESHOLD = 32 << 20

#: Environment variables with which a user tunes glibc malloc directly: if any is set, it wins.
USER_TUNING = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_")
OPT_OUT = "NOWCAST_KEEP_FREED_MEMORY"


def _glibc() -> Any | None:
    """glibc, or None on another C library (musl, macOS, Windows), where ``mallopt`` differs or is absent."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(environ: Mapping[str, str] | None = None, libc: Any | None = None) -> bool:
    """Tune glibc malloc to keep and reuse freed memory (see the module docstring); True if applied.

    Parameters
    ----------
    environ
        The environment to read the opt-out and the user's own tuning from (default ``os.environ``).
    libc
        The C library to tune (default: this process's glibc; tests pass a recorder).

    Returns
    -------
    bool
        False where nothing was changed: opted out, the user's own ``MALLOC_*`` /
        ``GLIBC_TUNABLES`` malloc tuning, not glibc, or a setting glibc refused.
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        log.debug("allocator: glibc defaults kept (%s=%s)", OPT_OUT, env[OPT_OUT])
        return False
    if any(name in env for name in USER_TUNING) or "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        log.debug("allocator: the environment's own malloc tuning is kept")
        return False
    libc = _glibc() if libc is None else libc
    if libc is None:
        log.debug("allocator: not glibc, defaults kept")
        return False
    applied = all([libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1,
                   libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1,
                   libc.mallopt(M_TOP_PAD, TOP_PAD) == 1])
    log.debug("allocator: keep %d MiB of freed memory, heap arrays up to %d MiB: %s",
              TRIM_THRESHOLD >> 20, MMAP_THRESHOLD >> 20, "applied" if applied else "refused")
    return applied
