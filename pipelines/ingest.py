"""Ingest radar/satellite files into a region's Zarr archive.

Reading, regridding and checking (:func:`~nowcast.io.archive.conform`) are
embarrassingly parallel and dominated by HDF5 decompression, so they run on
workers; the archive's commit (journal, resize, time values, metadata, the
commit point) is done by the driver alone, through
:class:`nowcast.io.archive.Archive`, so the commit protocol keeps one writer
and its lock stays uncontended.

Files are processed in batches, in the order given (a shell glob sorts radar
files, whose names carry their time, chronologically): while the driver
commits batch *k* (one metadata commit per batch), the workers already read
the next :data:`LOOKAHEAD` batches. Within a batch new frames are stored in
time order; for two files with the same time, ``ingest.duplicates`` decides
(the one given first wins by default, the other is refused unless identical).
Frames are conformed once, in the worker; the driver appends them through
the archive's already-conformed path.

Schedulers
----------
``scheduler=None``
    up to :data:`SMALL_INGEST` files: ``"synchronous"``; more: ``"processes"``
    where ``fork`` exists (Linux), else ``"threads"``.
``scheduler="processes"``
    a pool of worker processes, one per core, started with ``fork`` after
    the imports (so a worker is ready in milliseconds, with the parent's
    modules and caches). h5py holds the GIL, so only processes read files
    in parallel. Workers do not send frames back: each writes its frame,
    compressed, into its own slot of a :class:`~nowcast.io.archive.Staging`
    array beside the store and returns only the time; the driver's commit
    renames those chunk files into the archive's new rows. Nothing of the
    store changes before the driver's commit, so the archive's crash safety
    is unchanged (a killed ingest leaves only a staging folder, removed by
    the next one).
``scheduler="threads"``
    a ``distributed.LocalCluster`` with one worker of one thread per core,
    in the driver's process. h5py holds the GIL during every HDF5 call, so
    two files never decompress at once, but frames need no pickling or TCP
    copy, compression and file writes (which release the GIL) overlap with
    reading, and no worker process has to start and import the stack. On the
    2-vCPU machine of docs/benchmarks.md, where two busy processes get about
    one core's worth of CPU, this beat ``"processes"`` both end to end and in
    steady state.
``scheduler="synchronous"``
    no cluster, everything in the calling process (scheduled single-file
    ingests, tests, debugging);
``scheduler="tcp://host:8786"`` (any other string) or a ``distributed.Client``
    run on an existing cluster; its workers must have nowcast installed and
    see the same file paths. Frames travel back to the driver (compressed).
"""

from __future__ import annotations

import contextlib
import logging
import time as _time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from nowcast.cluster import CONNECT_TIMEOUT, LOCAL_CLUSTER_NETWORK  # noqa: F401 (re-exported)
from nowcast.config import Region, load_region
from nowcast.errors import EnvironmentFault, NowcastError, is_environment_fault
from nowcast.interrupts import raise_if_pending
from nowcast.io.archive import AppendResult, Archive, FrameBatch, Staging, conform, on_grid

log = logging.getLogger(__name__)

#: Files per driver append (one commit each) when frames travel to the driver.
BATCH_SIZE = 16
#: Files per commit with the process pool: frames stay on disk, so a batch costs no
#: memory, and fewer commits leave the cores to the workers (measured: 32 instead of 16
#: files per commit saved 0.1 s of driver time per 120 frames).
POOL_BATCH_SIZE = 32
#: Batches read ahead by the workers while the driver appends one.
LOOKAHEAD = 2
#: Up to this many files, ``scheduler=None`` reads in the calling process:
#: starting a LocalCluster costs more than reading them.
SMALL_INGEST = BATCH_SIZE
#: Where a LocalCluster listens, and how long to try an address: :mod:`nowcast.cluster`.


class SkippedFile(NamedTuple):
    """A file left out of the archive and the one-line reason."""

    path: Path
    reason: str


@dataclass(frozen=True)
class PreparedFile:
    """A file read, regridded and conformed by a worker.

    Frames travel from worker processes to the driver Blosc/lz4-compressed
    (``packed``): radar fields are mostly NaN and zeros and shrink about six
    times, which on a 2-core machine saves more CPU in (de)serialisation and
    TCP copies than the 1 ms it costs to compress (see docs/benchmarks.md).
    """

    path: str
    order: int = 0
    times_ns: np.ndarray | None = None
    frames: np.ndarray | None = None
    packed: bytes | None = None
    shape: tuple[int, ...] | None = None
    error: str | None = None
    #: The error is a fault of the machine (disk full, permission...), not of the file.
    environment: bool = False
    #: Slot of the :class:`~nowcast.io.archive.Staging` array holding the (one) frame.
    staged: int | None = None

    @property
    def values(self) -> np.ndarray | None:
        """The ``(time, y, x)`` float32 frames, unpacked if they travelled packed (``None`` if staged)."""
        if self.staged is not None:
            return None
        if self.frames is not None:
            return self.frames
        out = np.empty(self.shape, dtype=np.float32)
        _codec().decode(self.packed, out=out)
        return out


def _codec():
    import numcodecs

    return numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)


@dataclass
class IngestReport:
    """What :func:`ingest_files` did."""

    region: str
    files: int = 0
    ingested: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    #: Files not ingested because of a fault of the machine (disk full...): not their fault, retry them.
    deferred: list[SkippedFile] = field(default_factory=list)
    result: AppendResult = field(default_factory=AppendResult)
    elapsed_s: float = 0.0
    #: Driver seconds spent waiting for workers and appending (profiling aid).
    wait_s: float = 0.0
    append_s: float = 0.0
    scheduler: str = ""

    @property
    def frames_per_second(self) -> float:
        n = len(self.result.added) + len(self.result.unchanged) + len(self.result.replaced)
        return n / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    def summary(self) -> str:
        """One line for logs and the CLI."""
        r = self.result
        line = (
            f"region {self.region}: {self.files} file(s): {len(r.added)} frame(s) added, "
            f"{len(r.unchanged)} unchanged, {len(r.replaced)} replaced, {len(self.skipped)} file(s) skipped"
            + (f", {len(self.deferred)} deferred (machine fault)" if self.deferred else "")
            + f" in {self.elapsed_s:.1f} s"
        )
        return line


def prepare_file(
    path: str | Path, region: Region, reader: str | None = None, order: int = 0, pack: bool = False,
    staging: Staging | None = None,
) -> PreparedFile:
    """Read one file, put it on the region grid and into archive form.

    Runs on a worker. With ``staging``, a one-frame file is written into slot
    ``order`` of the staging array and only its time comes back. Expected failures (:class:`NowcastError`, and
    ``OSError`` from a file that vanished or cannot be opened) come back as
    ``error`` rather than as exceptions, so the driver can skip the file and
    go on, and so no custom exception has to survive pickling.
    """
    from nowcast.io.readers import read_file

    try:
        da = read_file(path, reader=reader)
        if not on_grid(da, region.grid):
            from nowcast.regrid import regrid

            da = regrid(da, region.grid)
        da = conform(da, region, source=str(path))
        values = np.ascontiguousarray(da.values, dtype=np.float32)
        times = da["time"].values.astype("int64")
        if staging is not None and times.size == 1:
            staging.write(order, values[0])
            return PreparedFile(str(path), order, times_ns=times, staged=order)
    except Exception as exc:  # noqa: BLE001 - one strange file must never take its batch down
        if is_environment_fault(exc):  # the machine, not the file: keep it, retry later
            return PreparedFile(str(path), order, error=f"machine fault, not the file: {_text(exc)}", environment=True)
        if isinstance(exc, NowcastError):
            return PreparedFile(str(path), order, error=_problem(exc, path))
        if isinstance(exc, OSError):
            return PreparedFile(str(path), order, error=f"cannot read file ({exc.strerror or exc})")
        log.debug("reader crash on %s", path, exc_info=True)
        return PreparedFile(str(path), order, error=f"reader failed: {type(exc).__name__}: {exc}")
    if pack:
        return PreparedFile(str(path), order, times_ns=times, packed=bytes(_codec().encode(values)), shape=values.shape)
    return PreparedFile(str(path), order, times_ns=times, frames=values)


def _prepare_numbered(order: int, path: str, region: Region, reader: str | None, pack: bool) -> PreparedFile:
    """:func:`prepare_file` with the file's position first (for ``Client.map``)."""
    return prepare_file(path, region, reader, order, pack=pack)


def _text(exc: BaseException) -> str:
    """``OSError`` as ``[Errno 28] No space left on device: 'path'``, anything else as its text."""
    return str(exc) or type(exc).__name__


def _problem(exc: NowcastError, path: str | Path) -> str:
    """The error text without a leading ``path:`` (the report adds it back)."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


# ---------------------------------------------------------------- executors
def _mode(scheduler: Any, n_files: int) -> str:
    """``"synchronous"``, ``"processes"`` (the fork pool) or ``"dask"`` for a ``scheduler`` value."""
    if scheduler == "synchronous" or (scheduler is None and n_files <= SMALL_INGEST):
        return "synchronous"
    if scheduler == "processes" or (scheduler is None and _can_fork()):
        return "processes"
    return "dask"


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


@contextlib.contextmanager
def _executor(
    scheduler: Any, region: Region, reader: str | None, n_files: int, staging: Staging | None = None
) -> Iterator[tuple[Callable[[list[Path]], Any], Callable[[Any], Iterable[PreparedFile]], str]]:
    """Yield ``(submit, collect, description)`` for the chosen scheduler.

    ``submit(batch)`` starts work on a batch of ``(order, path)`` and returns
    a handle; ``collect(handle)`` yields its :class:`PreparedFile` as they
    complete.
    """
    mode = _mode(scheduler, n_files)
    if mode == "synchronous":
        yield (
            (lambda batch: batch),
            (lambda batch: (prepare_file(p, region, reader, k) for k, p in batch)),
            "synchronous",
        )
        return
    if mode == "processes":
        with _process_pool(region, reader, staging) as executor:
            yield executor
        return

    from distributed import as_completed

    from nowcast.cluster import dask_client

    with dask_client("threads" if scheduler is None else scheduler) as (client, description, same_process):
        pack = not same_process  # frames cross a process boundary
        yield _distributed_executor(client, description, region, reader, pack, as_completed)


#: What a pool worker process needs, set once per process by :func:`_pool_init`.
_WORKER: dict[str, Any] = {}


def _pool_init(region: Region, reader: str | None, staging: Staging | None, parent: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle (it stops the pool)
    _die_with_parent(parent)
    _WORKER.update(region=region, reader=reader, staging=staging)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when the driver dies (even by SIGKILL).

    A forked worker holds both ends of the pool's pipes, so it would never
    see the driver go and would wait forever; elsewhere, nothing is done.
    """
    import ctypes
    import os
    import signal
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the driver died before the line above
        os._exit(1)


def _pool_task(order: int, path: str) -> PreparedFile:
    return prepare_file(path, _WORKER["region"], _WORKER["reader"], order, pack=True, staging=_WORKER["staging"])


@contextlib.contextmanager
def _process_pool(region: Region, reader: str | None, staging: Staging | None) -> Iterator[tuple[Callable, Callable, str]]:
    """The ``(submit, collect, description)`` of :func:`_executor` on a pool of worker processes.

    ``fork`` (where it exists) after importing what the workers run, so each
    worker starts in milliseconds with the modules, the grid's coordinates
    and the CRS caches of the parent; ``spawn`` elsewhere. Frames come back
    only for files of several frames (packed); one-frame files are staged.
    """
    import concurrent.futures as cf
    import multiprocessing as mp
    import os

    import nowcast.io.readers  # noqa: F401 - imported before forking, so workers need not
    import nowcast.regrid  # noqa: F401
    from nowcast.io.archive import grid_coords

    grid_coords(region.grid)
    n = _n_workers()
    ctx = mp.get_context("fork" if _can_fork() else "spawn")
    pool = cf.ProcessPoolExecutor(n, mp_context=ctx, initializer=_pool_init,
                                  initargs=(region, reader, staging, os.getpid()))
    try:
        def submit(batch: list[tuple[int, Path]]) -> list[cf.Future]:
            return [pool.submit(_pool_task, k, str(p)) for k, p in batch]

        def collect(futures: list[cf.Future]) -> Iterator[PreparedFile]:
            for fut in cf.as_completed(futures):
                yield fut.result()

        yield submit, collect, f"process pool ({n} workers, {ctx.get_start_method()})"
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _distributed_executor(client: Any, description: str, region: Region, reader: str | None, pack: bool,
                          as_completed: Callable) -> tuple[Callable, Callable, str]:
    """The ``(submit, collect, description)`` of :func:`_executor` on a dask client."""
    # Ship the region once per worker, not once per task.
    region_on_workers = client.scatter(region, broadcast=True, hash=False)

    def submit(batch: list[tuple[int, Path]]) -> list[Any]:
        return client.map(
            _prepare_numbered,
            [k for k, _ in batch],
            [str(p) for _, p in batch],
            region=region_on_workers,
            reader=reader,
            pack=pack,
            pure=False,
        )

    def collect(futures: list[Any]) -> Iterator[PreparedFile]:
        for fut in as_completed(futures):
            yield fut.result()
            fut.release()

    return submit, collect, description


def _n_workers() -> int:
    """CPU cores this process may use (:func:`nowcast.cluster.n_cores`)."""
    from nowcast.cluster import n_cores

    return n_cores()


# ------------------------------------------------------------------ pipeline
def ingest_files(
    files: Sequence[str | Path],
    region: str | Region,
    home: str | Path | None = None,
    scheduler: Any = None,
    overwrite: bool = False,
    reader: str | None = None,
    progress: bool = True,
    batch_size: int | None = None,
) -> IngestReport:
    """Read, regrid and archive ``files`` for ``region``.

    Parameters
    ----------
    files
        Radar/satellite files in any format :func:`nowcast.io.readers.read_file` knows.
    region
        Region name, YAML path or :class:`~nowcast.config.Region`.
    home
        Data home (default ``$NOWCAST_HOME`` or ``~/.nowcast``).
    scheduler
        See the module docstring (``None``: a LocalCluster of processes).
    overwrite
        Replace archived frames whose field differs instead of refusing them.
    reader
        Force a reader by name instead of detecting the format.
    progress
        Show a rich progress bar on stderr.
    batch_size
        Files per archive commit (default :data:`BATCH_SIZE`, or
        :data:`POOL_BATCH_SIZE` with the process pool).

    Returns
    -------
    IngestReport
        Frames added/unchanged/replaced and the files skipped with reasons.
        Bad files never stop the batch: each is logged in one line and
        listed in ``skipped``.
    """
    started = _time.perf_counter()
    reg = region if isinstance(region, Region) else load_region(region, home)
    paths = [Path(f) for f in files]
    report = IngestReport(region=reg.name, files=len(paths))
    if reader is not None:
        from nowcast.io.readers import get_reader

        get_reader(reader)  # an unknown name is a usage error, before any work
    staged = _mode(scheduler, len(paths)) == "processes"
    if batch_size is None:
        batch_size = POOL_BATCH_SIZE if staged else BATCH_SIZE
    with contextlib.ExitStack() as stack:
        try:
            archive = Archive.open(reg, home=home, create=True)
            staging = stack.enter_context(archive.staging(len(paths))) if staged else None
        except Exception as exc:
            if not is_environment_fault(exc):
                raise
            raise EnvironmentFault(f"region {reg.name}: cannot open its archive: machine fault ({_text(exc)}); "
                                   f"no file was touched") from exc
        # The pool forks here, before the progress bar starts its thread.
        submit, collect, description = stack.enter_context(_executor(scheduler, reg, reader, len(paths), staging))
        advance = stack.enter_context(_progress(progress, len(paths), reg.name))
        _run_batches(paths, batch_size, archive, staging, submit, collect, description, advance, overwrite, report, reg,
                     started)
    report.elapsed_s = _time.perf_counter() - started
    log.debug("%s", report.summary())
    log.debug("driver: %.2f s waiting for workers, %.2f s appending", report.wait_s, report.append_s)
    return report


def _run_batches(paths: list[Path], batch_size: int, archive: Archive, staging: Staging | None, submit: Callable,
                 collect: Callable,
                 description: str, advance: Callable[[int], None], overwrite: bool, report: IngestReport,
                 reg: Region, started: float) -> None:
    """The driver's loop: keep :data:`LOOKAHEAD` batches queued, commit each batch in order."""
    numbered = list(enumerate(paths))
    batches = [numbered[i : i + batch_size] for i in range(0, len(numbered), max(1, batch_size))]
    report.scheduler = description
    log.debug("ingesting %d file(s) into %s on %s", len(paths), archive.path, description)
    # Keep LOOKAHEAD batches queued on the workers while the driver appends.
    pending = deque(submit(b) for b in batches[: LOOKAHEAD + 1])
    for k in range(len(batches)):
        raise_if_pending()  # a Ctrl-C a finaliser swallowed stops the run here, between commits
        current = pending.popleft()
        if k + LOOKAHEAD + 1 < len(batches):
            pending.append(submit(batches[k + LOOKAHEAD + 1]))
        prepared: list[PreparedFile] = []
        t_wait = _time.perf_counter()
        for item in collect(current):
            if item.environment:
                log.error("not ingested, retry later: %s: %s", item.path, item.error)
                report.deferred.append(SkippedFile(Path(item.path), item.error))
            elif item.error is not None:
                log.warning("skipped %s: %s", item.path, item.error)
                report.skipped.append(SkippedFile(Path(item.path), item.error))
            else:
                prepared.append(item)
            advance(1)
        t_append = _time.perf_counter()
        report.wait_s += t_append - t_wait
        try:
            _append_batch(archive, prepared, overwrite, report, reg, staging)
        except Exception as exc:
            if not is_environment_fault(exc):
                raise
            # The archive's commit protocol left it at its last commit; nothing of this
            # batch (or later ones) went in, and nothing is the files' fault.
            not_done = [p for b in batches[k:] for _, p in b]
            report.deferred += [SkippedFile(p, f"not ingested: machine fault: {_text(exc)}") for p in not_done
                                if p not in {s.path for s in report.skipped}]
            report.elapsed_s = _time.perf_counter() - started
            raise EnvironmentFault(
                f"{archive.path}: machine fault while writing ({_text(exc)}); the archive is unchanged since its "
                f"last commit and {len(not_done)} file(s) were left where they are for the next run") from exc
        report.append_s += _time.perf_counter() - t_append


def _append_batch(archive: Archive, prepared: list[PreparedFile], overwrite: bool, report: IngestReport, region: Region,
                  staging: Staging | None = None) -> None:
    """Append one batch in time order; two files for one time follow ``ingest.duplicates``.

    ``first``: the file archived (or given) first wins, the other is refused;
    ``newest``: the file given later wins and replaces an archived field;
    ``reject``: both are refused and an archived frame of that time is
    removed. Every conflict is reported (skipped file with the reason).
    """
    if not prepared:
        return
    policy = region.ingest.duplicates
    rows = [(int(t), p.order, p, i) for p in prepared for i, t in enumerate(p.times_ns)]
    # time order; the winner of a tie within the batch comes first
    rows.sort(key=lambda r: (r[0], -r[1] if policy == "newest" else r[1]))
    unpacked = {id(p): p.values for p in prepared}
    batch = FrameBatch(
        np.array([r[0] for r in rows], dtype="int64"),
        [r[2].path for r in rows],
        [None if r[2].staged is not None else unpacked[id(r[2])][r[3]] for r in rows],
        [r[2].staged for r in rows],
        staging,
    )
    # conform already ran in the worker: the archive's already-conformed path, not append()
    result = archive._append_prepared(batch, overwrite=overwrite or policy == "newest", errors="skip")
    if policy == "reject" and result.refused:
        # Neither file can be trusted: remove what the archive holds at those times too.
        for refused in result.refused:
            dropped = archive.drop(refused.time)
            if dropped:
                log.warning("%s: duplicate-time conflict (ingest.duplicates: reject): archived frame removed", _iso(refused.time))
                result.added = [t for t in result.added if t != refused.time]
    if policy == "newest" and not overwrite:
        for t in result.replaced:
            log.warning("%s: duplicate-time conflict: the archived field was replaced by the newer file "
                        "(ingest.duplicates: newest)", _iso(t))
    report.result.merge(result)
    refused_files = set()
    for refused in result.refused:
        reason = f"{_iso(refused.time)}: {refused.reason} (ingest.duplicates: {policy})"
        log.warning("skipped %s: frame at %s refused: %s", refused.source, _iso(refused.time), reason)
        report.skipped.append(SkippedFile(Path(refused.source), reason))
        refused_files.add(refused.source)
    report.ingested += [Path(p.path) for p in prepared if p.path not in refused_files]


def _iso(t: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(t, "s"), unit="s") + "Z"


@contextlib.contextmanager
def _progress(enabled: bool, total: int, region: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (a no-op when disabled)."""
    import sys

    if not enabled or total == 0 or not sys.stderr.isatty():  # cron logs and pipes get the summary line only
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"ingest {region}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("files", total=total)
        yield lambda n: bar.advance(task, n)
