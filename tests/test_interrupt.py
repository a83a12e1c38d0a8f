"""Ctrl-C during ``nowcast ingest`` and ``nowcast hindcast`` (issue #9, item 10).

A terminal's Ctrl-C sends SIGINT to the whole foreground process group:
the command *and* its dask worker processes. The contract: exit code 130,
one ``nowcast: interrupted`` line and nothing else on stderr after the
interrupt (before the fix: worker ``KeyboardInterrupt`` tracebacks, nanny
tracebacks, "still alive, killing" and cancelled-task warnings, worker
clients failing in ``__del__``, the resource tracker's leaked-semaphore
warning: 19 to 72 lines), no process left behind, an archive that opens and
reads, and no half-written output.

Each command runs in a process group of its own, started with
``start_new_session``; the test waits for a log line that says the work is
under way, then signals the group as a terminal would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REGION = "swiss-south"
#: Seconds to wait for the marker line and then for the exit (a loaded CI machine is slow to start dask).
START_TIMEOUT, EXIT_TIMEOUT = 180, 90


def _interrupt_when(cmd: list[str], marker: str, env: dict[str, str]) -> tuple[int, list[str], list[str], int]:
    """Run ``cmd`` in its own process group, SIGINT the group once ``marker`` is on stderr.

    Returns the exit code, the stderr lines up to and including the marker
    line, those after it, and the number of processes of the group still
    alive a few seconds after the exit.
    """
    # A command started from a terminal has SIGINT's default disposition. A test
    # run started in the background by a non-interactive shell (CI scripts,
    # `nohup pytest &`) has SIGINT ignored, children inherit that, and Python
    # then installs no KeyboardInterrupt handler: reset it, as a terminal would.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    before: list[str] = []
    after: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            (after if seen.is_set() else before).append(line.rstrip("\n"))
            if marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not seen.wait(START_TIMEOUT):
            pytest.fail(f"no {marker!r} on stderr within {START_TIMEOUT} s: {before[-5:]}")
        assert proc.poll() is None, "the command finished before it could be interrupted: give it more work"
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(EXIT_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(10)
    return code, before, after, _alive_in_group(proc.pid)


def _alive_in_group(pgid: int, wait_s: float = 10.0) -> int:
    """Processes of group ``pgid`` still running (zombies excluded), after waiting up to ``wait_s`` for them."""
    import psutil

    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for p in psutil.process_iter(["status"]):
            try:
                if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(p.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        if not alive or time.monotonic() > deadline:
            return len(alive)
        time.sleep(0.2)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "NOWCAST_HOME": str(home), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _nowcast() -> list[str]:
    return [sys.executable, "-m", "nowcast"]


def _check_clean(code: int, after: list[str]) -> None:
    assert code == 130, after
    assert after == ["nowcast: interrupted"], "\n".join(after)


def _archive_reads(home: Path, expected_times: np.ndarray) -> np.ndarray:
    """Open the archive as the next command would; every frame it holds is one of ours and reads."""
    from nowcast.config import load_region
    from nowcast.io.archive import Archive

    archive = Archive.open(load_region(REGION, home), home=home, create=False)
    times = archive.times
    assert np.isin(times, expected_times).all() and np.all(np.diff(times.astype("int64")) > 0)
    if times.size:
        values = archive.read(times[0], times[-1]).load().values
        assert values.shape[0] == times.size and np.isfinite(values).any(axis=(1, 2)).all()
    return times


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_ctrl_c_during_ingest(tmp_path: Path, odim_composite: Path, scheduler: str) -> None:
    """64 ODIM files, on an in-process dask cluster and on worker processes: interrupted after the first commit."""
    import h5py

    from nowcast.io.odim_write import write_odim_composite

    with h5py.File(odim_composite, "r") as f:
        field = f["dataset1/data1/data"][()]
        where = dict(f["where"].attrs)
    projdef = where["projdef"].decode() if isinstance(where["projdef"], bytes) else str(where["projdef"])
    corners = {k: float(v) for k, v in where.items() if k[:2] in ("LL", "UL", "UR", "LR")}
    times = np.datetime64("2024-02-27T09:50", "s") + np.arange(64) * np.timedelta64(5, "m")
    files = [str(write_odim_composite(tmp_path / "in" / f"RFO{k:03d}.h5", np.roll(field, (0, 2 * k), axis=(0, 1)),
                                      t, projdef, corners, quantity="RATE", xscale=1000.0, yscale=1000.0,
                                      timestep_minutes=5))
             for k, t in enumerate(times)]
    home = tmp_path / "home"
    code, _, after, alive = _interrupt_when(
        [*_nowcast(), "ingest", "--region", REGION, "--no-progress", "--scheduler", scheduler, *files], "created with", _env(home))
    _check_clean(code, after)
    assert alive == 0
    held = _archive_reads(home, times.astype("datetime64[ns]"))
    assert 0 < held.size < times.size  # the first commit is in, the run did not finish


def test_ctrl_c_during_hindcast_on_worker_processes(tmp_path: Path, swiss_south_moving) -> None:
    """A hindcast on its default LocalCluster of worker processes: interrupted once the cluster runs."""
    import xarray as xr

    from nowcast.io.archive import Archive, grid_coords

    home = tmp_path / "home"
    frames, times, region = swiss_south_moving(60)
    da = xr.DataArray(frames, dims=("time", "y", "x"), coords={"time": times, **grid_coords(region.grid)},
                      attrs={"units": "mm h-1"}, name="rain_rate")
    Archive.open(region, home=home, create=True).append(da, source="moving-test")
    code, before, after, alive = _interrupt_when(
        [*_nowcast(), "hindcast", "--region", REGION, "--start", "2024-02-27T10:05", "--end", "2024-02-27T14:40",
         "--methods", "extrapolation", "persistence", "sprog", "--scheduler", "processes"],
        "running on LocalCluster (processes", _env(home))
    _check_clean(code, after)
    assert not any("Traceback" in line for line in before)
    assert alive == 0
    assert not (home / "hindcasts").exists() or not any((home / "hindcasts").rglob("*.*"))  # nothing half-written
    held = _archive_reads(home, times)
    assert held.size == times.size  # a hindcast only reads the archive
