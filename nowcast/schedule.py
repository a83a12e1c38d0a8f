"""Scheduled runs: ingest what arrives, forecast when a window completes.

One pass (:func:`run_once`) is the unit of work, shared by ``nowcast
run-once`` (cron, systemd timers) and ``nowcast watch`` (a polling loop).
Guarantees operators rely on (docs/operations.md says the same in their words):

* one instance per region: an exclusive ``flock`` on ``HOME/runs/REGION/lock``
  (released by the kernel if the process dies, so no stale-lock clean-up);
* a bad file is moved to ``INCOMING/rejected/`` with a log line naming it and
  the reason, and the loop goes on;
* a forecast that fails is retried once, then logged, recorded and skipped:
  it never blocks the next frame;
* each reference time is forecast once, never backwards in time; only the
  newest ``keep`` runs (forecast dataset + animation) are kept on disk;
* Ctrl-C (or SIGTERM from systemd) stops between steps, leaving the archive
  consistent (the archive's own commit protocol covers an interruption
  inside a write).

Polling rather than inotify: it works on NFS and object-store mounts where
radar files usually land, and a 10 s poll is far below the 5 min cadence.
Everything a pass does is also appended to ``HOME/runs/REGION/runs.log``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nowcast.config import Region
from nowcast.errors import ConfigError, EnvironmentFault, LockError, NowcastError, is_environment_fault
from nowcast.paths import renders_dir, runs_dir

log = logging.getLogger(__name__)

#: Sub-folder of the incoming directory where rejected files are moved.
REJECTED = "rejected"
STATE_FILE = "state.json"
LOG_FILE = "runs.log"
#: Default seconds a file must have been left alone before it is read (a
#: file younger than this may still be being copied in).
SETTLE_SECONDS = 2.0
#: Animation settings for scheduled runs: small and quick, one per run.
RENDER_DPI = 80


@contextmanager
def region_lock(region: str, home: str | Path | None = None) -> Iterator[Path]:
    """Hold the region's run lock, or raise :class:`LockError` at once.

    ``flock`` locks belong to an open file description, so a second holder
    is refused even inside the same process (which is what the tests use),
    and the kernel drops the lock when its holder dies.
    """
    path = runs_dir(region, home) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LockError(f"{path}: region {region!r} is already being processed by {holder}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield path
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextmanager
def _run_log(region: str, home: str | Path | None) -> Iterator[None]:
    """Also append the ``nowcast`` loggers' records to ``HOME/runs/REGION/runs.log``."""
    runs_dir(region, home).mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(runs_dir(region, home) / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    roots = [logging.getLogger("nowcast"), logging.getLogger("pipelines")]
    for logger in roots:
        # No level change here: the file gets what the console gets (so
        # ``--quiet`` keeps warnings and errors only in both).
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in roots:
            logger.removeHandler(handler)
        handler.close()


@dataclass
class RunState:
    """What a region's scheduled runs have already done (persisted as JSON).

    Deleting the file is safe: re-ingesting a file is idempotent and only
    windows newer than the archive's last ``keep`` frames are forecast again.
    """

    seen: dict[str, list[float]] = field(default_factory=dict)  # file name -> [size, mtime]
    forecasts: list[dict] = field(default_factory=list)  # oldest first

    @classmethod
    def load(cls, path: Path) -> "RunState":
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(seen=dict(data.get("seen", {})), forecasts=list(data.get("forecasts", [])))
        except (OSError, ValueError, AttributeError):
            log.warning("%s: unreadable run state, starting afresh (files will be re-ingested idempotently)", path)
            return cls()

    def save(self, path: Path) -> None:
        """Write through a temporary file and a rename, so a crash leaves the old state."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seen": self.seen, "forecasts": self.forecasts}, indent=1))
        os.replace(tmp, path)

    def forecast_done(self, reference_time: str) -> bool:
        return any(f["reference_time"] == reference_time for f in self.forecasts)

    @property
    def last_reference(self) -> str | None:
        return self.forecasts[-1]["reference_time"] if self.forecasts else None


@dataclass
class PassReport:
    """Outcome of one pass, for logs, the CLI and tests."""

    ingested: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    #: Files left for the next pass (the archive was busy or broken, not the file).
    deferred: list[str] = field(default_factory=list)
    forecasts: list[str] = field(default_factory=list)
    animations: list[str] = field(default_factory=list)
    failed_forecasts: list[str] = field(default_factory=list)
    #: Forecasts made by the fallback method instead of the configured one (reference times).
    fallbacks: list[str] = field(default_factory=list)
    #: Newest frames that could not be forecast from because of a gap in the frames before them.
    skipped_windows: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.ingested or self.rejected or self.deferred or self.forecasts or self.failed_forecasts
                    or self.skipped_windows)

    @property
    def degraded(self) -> bool:
        """Whether anything was rejected, deferred, skipped, fell back or failed (exit code 3)."""
        return bool(self.rejected or self.deferred or self.failed_forecasts or self.fallbacks or self.skipped_windows)

    def summary(self) -> str:
        return (
            f"{len(self.ingested)} ingested, {len(self.rejected)} rejected, {len(self.deferred)} deferred, "
            f"{len(self.forecasts)} forecast(s), {len(self.fallbacks)} fallback(s), "
            f"{len(self.skipped_windows)} window(s) skipped (gaps), {len(self.failed_forecasts)} failed"
        )


def _new_files(incoming: Path, state: RunState, settle_seconds: float) -> list[Path]:
    """Files not seen before (or changed since) and not still being written.

    Hidden files (``.name``) are skipped: copying to a hidden temporary name
    and renaming is the atomic hand-over docs/operations.md recommends.
    """
    now = time.time()
    found = []
    names = set()
    for path in sorted(p for p in incoming.iterdir() if p.is_file() and not p.name.startswith(".")):
        names.add(path.name)
        st = path.stat()
        if now - st.st_mtime < settle_seconds:
            log.debug("%s: modified %.1f s ago, leaving it for the next pass", path, now - st.st_mtime)
            continue
        if state.seen.get(path.name) == [st.st_size, st.st_mtime]:
            continue
        found.append(path)
    # Forget files the operator removed, so the state does not grow forever.
    for name in [n for n in state.seen if n not in names]:
        del state.seen[name]
    return found


def _reject(path: Path, reason: str, report: PassReport) -> Path | None:
    """Move a bad file to ``rejected/`` beside it, with the reason in ``NAME.reason.txt``.

    Only faults of the file itself come here. If the move itself fails (a
    fault of the machine), the file stays in incoming and is tried again.
    """
    target_dir = path.parent / REJECTED
    target = target_dir / path.name
    reason_file = target_dir / f"{path.name}.reason.txt"
    try:
        # The reason first (a small write that can fail on a full disk), then
        # the move (a rename, which cannot): never a rejected file without its reason.
        target_dir.mkdir(exist_ok=True)
        reason_file.write_text(reason + "\n")
        shutil.move(str(path), target)
    except OSError as exc:
        reason_file.unlink(missing_ok=True)
        log.error("%s: bad file (%s), but it could not be moved to %s (%s); left in place", path, reason, target_dir, exc)
        report.deferred.append(path.name)
        if is_environment_fault(exc):
            raise EnvironmentFault(f"{path}: could not be moved to {target_dir}: {exc}") from exc
        return None
    log.error("%s: rejected (%s); moved to %s", path, reason, target)
    report.rejected.append(path.name)
    return target


def _ingest_new(region: Region, incoming: Path, home: str | Path | None, state: RunState, state_path: Path,
                settle_seconds: float, report: PassReport) -> None:
    """Ingest new files one at a time, so one bad file cannot take its batch down with it."""
    from pipelines.ingest import ingest_files

    for path in _new_files(incoming, state, settle_seconds):
        st = path.stat()
        try:
            result = ingest_files([path], region, home=home, scheduler="synchronous", progress=False)
        except Exception as exc:  # noqa: BLE001 - sorted below: the machine's fault, the archive's, or the file's
            if isinstance(exc, EnvironmentFault) or is_environment_fault(exc):
                # Disk full, unwritable home...: never the file's fault. It stays in
                # incoming, and the pass stops (the next file would fail the same way).
                report.deferred.append(path.name)
                raise EnvironmentFault(f"{path}: not ingested, left in place for the next run: {exc}") from exc
            if isinstance(exc, NowcastError):
                # The archive refused as a whole (locked by a manual ingest, broken
                # store...): not the file's fault, so it stays for the next pass.
                log.error("%s: not ingested, will retry next pass: %s", path, exc)
                report.deferred.append(path.name)
                continue
            log.debug("ingest crash", exc_info=True)  # a reader crashing on a strange file must not stop the loop
            _reject(path, f"reader failed: {type(exc).__name__}: {exc}", report)
            continue
        if result.deferred:
            report.deferred.append(path.name)
            raise EnvironmentFault(f"{path}: not ingested, left in place for the next run: {result.deferred[0].reason}")
        if result.skipped:
            _reject(path, "; ".join(s.reason for s in result.skipped), report)
            continue
        state.seen[path.name] = [st.st_size, st.st_mtime]
        report.ingested.append(path.name)
        state.save(state_path)


def _render(forecast_path: Path, region: Region, home: str | Path | None) -> Path:
    """Animate one forecast into ``HOME/renders/REGION/``."""
    from nowcast.render import render_forecast_animation

    out = renders_dir(region.name, home) / (Path(forecast_path).stem + ".gif")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(render_forecast_animation(forecast_path, region, home=home, out=out, observed=True, dpi=RENDER_DPI))


def _forecast_with_retry(region: Region, home: str | Path | None, reference: str, render: bool,
                         method: str | None) -> dict:
    """Forecast (and render) one reference time, retrying once on failure.

    Raises
    ------
    NowcastError
        After the second failure, naming the reference time and the last error.
    """
    from nowcast.forecast import run_forecast

    last_exc: Exception | None = None
    for attempt in (1, 2):
        try:
            result = run_forecast(region, home=home, time=reference, method=method)
            entry = {"reference_time": reference, "forecast": str(result.path), "method": result.method}
            if result.fallback_reason:
                entry["fallback_reason"] = result.fallback_reason
            if render:
                entry["animation"] = str(_render(result.path, region, home))
            return entry
        except Exception as exc:  # noqa: BLE001 - a failed run must not stop the loop
            last_exc = exc
            log.warning("region %s: forecast for %s failed (attempt %d of 2): %s", region.name, reference, attempt, exc)
            log.debug("forecast failure", exc_info=True)
    raise NowcastError(f"region {region.name!r}: forecast for {reference} failed twice: {last_exc}")


def _remove(path_text: str | None) -> None:
    p = Path(path_text or "")
    if p.name and p.exists():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        log.info("removed old run output %s", p)


def _prune(state: RunState, keep: int) -> None:
    """Keep the outputs of the newest ``keep`` successful runs and ``keep`` failure records."""
    done = [e for e in state.forecasts if "forecast" in e]
    failed = [e for e in state.forecasts if "forecast" not in e]
    for old in done[:-keep]:
        _remove(old.get("forecast"))
        _remove(old.get("animation"))
    kept = {id(e) for e in done[-keep:]} | {id(e) for e in failed[-keep:]}
    state.forecasts = [e for e in state.forecasts if id(e) in kept]


def run_once(
    region: Region,
    incoming: Path | None,
    home: str | Path | None = None,
    keep: int = 12,
    render: bool = True,
    settle_seconds: float = SETTLE_SECONDS,
    method: str | None = None,
) -> PassReport:
    """One scheduled pass: ingest new files, forecast every newly completed window.

    Call it with the region lock held (:func:`region_lock`); ``nowcast
    run-once`` and :func:`watch` do.

    Parameters
    ----------
    region
        The region.
    incoming
        Directory where new files arrive; ``None`` only forecasts (files
        ingested by other means).
    keep
        Newest runs whose outputs are kept; also the look-back: only windows
        ending at one of the archive's newest ``keep`` frames are candidates,
        so an archive filled long before the first pass does not trigger a
        backlog of old forecasts.
    render
        Animate each forecast.
    settle_seconds
        Files modified more recently than this are left for the next pass.
    method
        Override the region's forecast method.
    """
    from nowcast.forecast import iso, select_window
    from nowcast.io.archive import Archive

    if keep < 1:
        raise ConfigError(f"--keep {keep}: must keep at least one run")
    report = PassReport()
    state_path = runs_dir(region.name, home) / STATE_FILE
    state = RunState.load(state_path)
    if incoming is not None:
        incoming = Path(incoming)
        if not incoming.is_dir():
            raise ConfigError(f"--incoming {incoming}: directory does not exist")
        _ingest_new(region, incoming, home, state, state_path, settle_seconds, report)

    archive = Archive.open(region, home=home, create=True)
    times = np.sort(archive.times)
    n = region.forecast.input_frames
    for end in times[-keep:]:
        reference = iso(end)
        if state.forecast_done(reference):
            continue
        if state.last_reference and reference < state.last_reference:
            continue  # never forecast backwards in time after a newer run
        try:
            select_window(times, end, n, region.timestep_minutes, 0.0, region.name)
        except NowcastError:
            if int(np.searchsorted(times, end)) >= n - 1:  # enough frames before it: a gap, not a young archive
                log.warning("region %s: no forecast from %s: frames missing in its %d-frame window", region.name,
                            reference, n)
                report.skipped_windows.append(reference)
                state.forecasts.append({"reference_time": reference, "failed": "gap in the input window"})
            continue  # this frame does not complete a window (yet)
        try:
            entry = _forecast_with_retry(region, home, reference, render, method)
        except NowcastError as exc:
            log.error("%s", exc)
            report.failed_forecasts.append(reference)
            state.forecasts.append({"reference_time": reference, "failed": str(exc)})
        else:
            report.forecasts.append(entry["forecast"])
            if "fallback_reason" in entry:
                report.fallbacks.append(reference)
            if "animation" in entry:
                report.animations.append(entry["animation"])
            state.forecasts.append(entry)
        _prune(state, keep)
        state.save(state_path)
    state.save(state_path)
    if report.busy:
        log.info("region %s: pass: %s", region.name, report.summary())
    return report


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let systemd's SIGTERM stop the loop like Ctrl-C (between steps, cleanly)."""
    def _raise(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def watch(
    region: Region,
    incoming: Path,
    home: str | Path | None = None,
    keep: int = 12,
    interval: float = 10.0,
    render: bool = True,
    max_passes: int | None = None,
    method: str | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    on_pass: Callable[[PassReport], None] | None = None,
) -> int:
    """Poll ``incoming`` and run :func:`run_once` until Ctrl-C (or ``max_passes``).

    A pass that fails as a whole (e.g. the archive is locked by a manual
    ingest) is logged and the loop goes on with the next one.

    Returns
    -------
    int
        The number of passes made.

    Raises
    ------
    LockError
        If another instance already processes the region.
    ConfigError
        If ``incoming`` is not a directory.
    """
    incoming = Path(incoming)
    if not incoming.is_dir():
        raise ConfigError(f"--incoming {incoming}: directory does not exist")
    passes = 0
    with region_lock(region.name, home), _run_log(region.name, home), _sigterm_as_interrupt():
        log.info("watching %s for region %s every %g s (Ctrl-C stops)", incoming, region.name, interval)
        try:
            while max_passes is None or passes < max_passes:
                try:
                    report = run_once(region, incoming, home=home, keep=keep, render=render,
                                      settle_seconds=settle_seconds, method=method)
                except NowcastError as exc:
                    log.error("region %s: pass failed, trying again next pass: %s", region.name, exc)
                    report = PassReport()
                except Exception:  # noqa: BLE001 - keep serving; the traceback goes to the log
                    log.exception("region %s: pass crashed, trying again next pass", region.name)
                    report = PassReport()
                passes += 1
                if on_pass is not None:
                    on_pass(report)
                if max_passes is None or passes < max_passes:
                    time.sleep(interval)
        except KeyboardInterrupt:
            log.info("region %s: stopped after %d pass(es); archive and run state are consistent", region.name, passes)
    return passes


def run_once_locked(
    region: Region,
    incoming: Path | None,
    home: str | Path | None = None,
    **kwargs,
) -> PassReport:
    """:func:`run_once` under the region lock and with the run log (for cron)."""
    with region_lock(region.name, home), _run_log(region.name, home):
        return run_once(region, incoming, home=home, **kwargs)
