"""The region archive: one Zarr v3 store of frames on the region grid.

Layout (``HOME/archives/REGION.zarr``, see docs/design.md)
------------------------------------------------------------
One data variable named by the region's units (``rain_rate`` for ``mm h-1``,
``reflectivity`` for ``dBZ``, ``brightness_temperature`` for ``K``), dims
``(time, y, x)``, float32, chunks of one frame in time and 256x256 tiles in
space (see :data:`MAX_TILE`; reading the latest window touches only the
newest chunks), Blosc/lz4 compressed, CF-1.8 attributes and a ``spatial_ref`` grid mapping.
``time`` is stored as int64 seconds since 1970-01-01 UTC. Metadata are
consolidated into the root ``zarr.json`` so that opening the store reads a
single small file.

Rows are in **arrival order** (format version 2): a new frame is always
written to a new row at the end, whatever its time, so a frame that arrives
late costs the same as one that arrives on time (one row, no matter how long
the archive). Times are unique but the stored ``time`` coordinate is not
necessarily sorted; every reader of this module (:meth:`Archive.read`,
:meth:`Archive.window`, :attr:`Archive.times`, :meth:`Archive.info`, the
idempotency lookup, :meth:`Archive.drop`) sees the frames sorted by time
through a permutation of the rows (chunks are one frame each, so the
permutation only reorders chunks). Other readers (plain ``xr.open_zarr``)
must ``sortby("time")``: the store says so in its ``nowcast_row_order``
attribute. A version-1 store (kept sorted by rewriting the tail) is a valid
arrival-order store and is read and written unchanged; its first write by
this version marks it version 2.

Commit protocol (crash safety)
------------------------------
Zarr's ``LocalStore`` writes every key through a temporary file and an atomic
rename, so each individual file is either old or new, never torn. A write of
several frames touches many files, though, so the archive adds a commit
point on top: the root attribute ``nowcast_committed_frames`` (``C``). Only
rows ``[0, C)`` exist for nowcast; anything beyond is debris of an
interrupted write. Every write runs under an exclusive ``flock`` on
``archives/.REGION.zarr.lock`` (the kernel releases it when a process dies,
even by SIGKILL), in this order:

1. *(only when committed rows change: an ``overwrite`` of an archived time,
   or a ``drop``)* **journal**: the raw values and raw times of exactly the
   committed rows that will change or disappear are written to
   ``archives/.REGION.zarr.journal.npz`` (temporary file + atomic rename, so
   the journal either exists completely or not at all), together with ``C``
   before and after and the id of the commit about to be made;
2. **resize** the ``time``-dimensioned arrays to their new length;
3. **write data and time** of the affected rows only;
4. **consolidate** metadata (readers of the consolidated view still bound
   themselves by ``C``);
5. **commit**: set ``nowcast_committed_frames`` to the new length and
   ``nowcast_commit`` to a fresh id (one atomic rewrite of the root
   ``zarr.json``);
6. delete the journal.

A new frame (late or not) is steps 2-5 for one row: no journal, no other row
touched. An overwrite journals and rewrites only the replaced rows. A drop
fills each hole with one of the last rows (swap-remove) and shrinks the
arrays, journaling the holes and the rows beyond the new end: its cost is
proportional to the number of frames dropped, not to the archive.

Recovery (on :meth:`Archive.open` and before every write, under the lock):
a journal whose commit id is not the store's means the crash came before
step 5, so its rows are written back (roll back); one whose commit id is the
store's means the commit happened and the journal is simply deleted (roll
forward). (Journals of version-1 writers carry no id and are told apart by
``C`` before and after.) Then every time-dimensioned array longer than ``C``
is truncated to ``C`` (zarr deletes the chunks beyond), metadata are
reconsolidated, and leftover ``*.partial`` temporary files are removed. A
brand-new store is built in a temporary folder and renamed into place, so a
crash while creating leaves no store at all. What this does not cover: power
loss without the file system's own journaling (nothing is fsync'ed), and lazy
readers that hold the store open *while* an overwrite or a drop runs (they
may see new values of rows that changed; readers that open after the commit
are consistent).

Where the code lives
--------------------
This module holds :class:`Archive` (opening, the sorted view, append, drop)
and the checks on incoming frames (:func:`conform`). The store layout
(attribute names, variables, chunking and codecs, the CF dataset, row I/O)
is in :mod:`nowcast.io.archive_layout`, the commit protocol and recovery in
:mod:`nowcast.io.archive_commit`, the write lock in
:mod:`nowcast.io.archive_lock`, and frames on their way in (in memory, or
staged by ingest workers) in :mod:`nowcast.io.archive_staging`. Their public
names are importable from here as before.

Idempotency
-----------
A frame whose time is already archived is compared with the stored field
(float tolerance, NaN equal to NaN): equal means *unchanged* and nothing at
all is written (not even metadata); different is *refused* with an
:class:`~nowcast.errors.ArchiveError` naming the time and both sources,
unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time as _time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from nowcast.config import Region, load_region
from nowcast.errors import ArchiveError, ForecastError, InputFileError, LockError, NowcastError
from nowcast.grid import GRID_MAPPING_NAME, crs_of
from nowcast.io.archive_commit import CommitProtocol
from nowcast.io.archive_layout import (  # noqa: F401 - names of the layout, re-exported here
    COMMIT_ID_ATTR,
    COMMITTED_ATTR,
    FORMAT_VERSION,
    HISTORY_LINES,
    MAX_TILE,
    ROW_ORDER_ATTR,
    ROW_ORDER_NOTE,
    TIME_CHUNK,
    TIME_UNITS,
    VARIABLES,
    VariableSpec,
    _no_zarr_warnings,
    _read_rows,
    _utc_iso,
    data_encoding,
    grid_coords,
    tile_shape,
    variable_for,
)
from nowcast.io.archive_lock import LOCK_TIMEOUT_S, exclusive_lock
from nowcast.io.archive_staging import FrameBatch, Staging, _alive
from nowcast.paths import archive_path
from nowcast.units import DBZ, MMH, canonical_units, dbz_to_rainrate, rainrate_to_dbz

log = logging.getLogger(__name__)

#: Reflectivity written for dry pixels when a rain-rate frame enters a dBZ
#: archive (0 mm/h is -inf dBZ); -32 dBZ is the usual ODIM DBZH floor.
DBZ_DRY = -32.0
#: Relative/absolute tolerance under which two fields count as the same.
RTOL = 1e-5
ATOL = 1e-6


def _fault_point(step: str) -> None:
    """No-op marker between the steps of the commit protocol.

    Fault-injection tests monkeypatch it to raise (or to kill the process)
    at a given ``step`` to prove every step is crash safe.
    """


_SAME_CRS: dict[tuple[str, str], bool] = {}


def _same_crs(da: xr.DataArray, grid: Any) -> bool:
    """CRS of ``da`` equals the grid's; cached per WKT pair because parsing a
    WKT with pyproj costs about a millisecond per frame."""
    attrs = da[GRID_MAPPING_NAME].attrs
    key = (str(attrs.get("crs_wkt") or attrs.get("spatial_ref") or sorted(attrs.items())), grid.signature[0])
    if key not in _SAME_CRS:
        _SAME_CRS[key] = bool(crs_of(da).equals(grid.crs, ignore_axis_order=True))
    return _SAME_CRS[key]


def on_grid(da: xr.DataArray, grid: Any) -> bool:
    """Whether ``da`` already lies on ``grid`` (same x/y cell centres and CRS).

    The ingest pipeline skips regridding such frames: a region defined on its
    radar composite's own grid then costs no interpolation at all.
    """
    for axis, want in (("x", grid.x), ("y", grid.y)):
        if axis not in da.coords or da[axis].ndim != 1 or da[axis].size != want.size:
            return False
        if not np.allclose(da[axis].values, want, rtol=0, atol=1e-3 * grid.resolution):
            return False
    if GRID_MAPPING_NAME not in da.coords:
        return False
    return _same_crs(da, grid)


def convert_units(values: np.ndarray, units: str, region: Region, source: str) -> np.ndarray:
    """Convert ``values`` from ``units`` to the region's units (float32).

    Rain rate and reflectivity convert through the region's Z-R relation;
    brightness temperature only to itself.

    Raises
    ------
    InputFileError
        If the units are unknown or cannot become the region's.
    """
    try:
        have = canonical_units(units)
    except NowcastError as exc:
        raise InputFileError(source, str(exc)) from None
    want = canonical_units(region.units)
    if have == want:
        return np.asarray(values, dtype=np.float32)
    a, b = region.zr.a, region.zr.b
    if have == DBZ and want == MMH:
        # Undetect (the -32 dBZ floor readers write) is dry: exactly 0 mm/h.
        out = dbz_to_rainrate(values, a, b)
        with np.errstate(invalid="ignore"):
            return np.where(np.asarray(values) <= DBZ_DRY, np.float32(0.0), out).astype(np.float32)
    if have == MMH and want == DBZ:
        with np.errstate(invalid="ignore"):
            out = rainrate_to_dbz(np.clip(values, 0.0, None), a, b)
        return np.where(np.isneginf(out), np.float32(DBZ_DRY), out).astype(np.float32)
    raise InputFileError(source, f"units {units!r} cannot be converted to region {region.name!r} units {region.units!r}")


def utc_now() -> np.datetime64:
    """The current time (UTC, ns); one place for tests to move the clock."""
    return np.datetime64(_time.time_ns(), "ns")


def check_times(times: np.ndarray, region: Region, source: str) -> None:
    """Refuse frames stamped in the future (beyond the tolerance) or before the region's earliest time.

    Raises
    ------
    InputFileError
        Naming the offending time, the limit and the setting that sets it.
    """
    settings = region.ingest
    latest = utc_now() + np.timedelta64(int(round(settings.future_tolerance_minutes * 60)), "s")
    earliest = np.datetime64(settings.earliest_time.rstrip("Z"), "s").astype("datetime64[ns]")
    for t in np.asarray(times, dtype="datetime64[ns]"):
        if t > latest:
            raise InputFileError(source, f"frame time {_utc_iso(t)} is in the future (now {_utc_iso(utc_now())}, "
                                         f"tolerance {settings.future_tolerance_minutes:g} min: ingest.future_tolerance_minutes); "
                                         f"check the sender's clock")
        if t < earliest:
            raise InputFileError(source, f"frame time {_utc_iso(t)} is before the archive's earliest time "
                                         f"{_utc_iso(earliest)} (ingest.earliest_time)")


def mask_implausible(values: np.ndarray, region: Region, source: str) -> np.ndarray:
    """Mask physically impossible values to NaN ("no data"), or refuse the file if they are too many.

    Rain rate: negative, infinite, or above ``ingest.max_rain_rate``;
    reflectivity: infinite or above ``ingest.max_reflectivity_dbz``;
    brightness temperature: non-positive, infinite, or above 400 K. NaN
    stays NaN (no coverage). Why mask and not clip: a -999 is a fill value
    and a 1e6 mm/h a decoding error; neither says anything about the rain
    there, so "no data" is the honest value.

    Raises
    ------
    InputFileError
        More than ``ingest.max_implausible_fraction`` of the covered cells of
        a frame are implausible.
    """
    settings = region.ingest
    values = np.asarray(values, dtype=np.float32)
    unit = canonical_units(region.units)
    low, high_limit = {MMH: (0.0, settings.max_rain_rate), DBZ: (-np.inf, settings.max_reflectivity_dbz)}.get(unit, (1e-30, 400.0))
    if values.size and not np.isnan(values).all():
        # Fast path (the usual frame): two reductions instead of five masks. +-inf
        # show up as the min or max, NaN (no data) is ignored by both.
        vmin, vmax = float(np.nanmin(values)), float(np.nanmax(values))
        if vmin >= low and vmax <= high_limit and np.isfinite(vmin) and np.isfinite(vmax):
            return values
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        if unit == MMH:
            negative, high = values < 0, values > settings.max_rain_rate
            limit = f"above {settings.max_rain_rate:g} mm/h"
        elif unit == DBZ:
            negative, high = np.zeros_like(infinite), values > settings.max_reflectivity_dbz
            limit = f"above {settings.max_reflectivity_dbz:g} dBZ"
        else:  # brightness temperature
            negative, high = values <= 0, values > 400.0
            limit = "above 400 K"
    bad = infinite | negative | high
    if not bad.any():
        return values
    covered = np.maximum(1, np.count_nonzero(~np.isnan(values), axis=(-2, -1)))
    fraction = np.count_nonzero(bad, axis=(-2, -1)) / covered
    counts = f"{int(negative.sum())} negative, {int(infinite.sum())} infinite, {int((high & ~infinite).sum())} {limit}"
    if np.max(fraction) > settings.max_implausible_fraction:
        raise InputFileError(source, f"{100 * float(np.max(fraction)):.0f} % of the covered cells are physically impossible "
                                     f"({counts}; limit ingest.max_implausible_fraction = "
                                     f"{100 * settings.max_implausible_fraction:g} %): wrong units or a corrupt file?")
    log.warning("%s: %d implausible cell(s) masked as no data (%s)", source, int(bad.sum()), counts)
    out = values.copy()
    out[bad] = np.nan
    return out


def conform(frames: xr.DataArray, region: Region, source: str | None = None) -> xr.DataArray:
    """Check that ``frames`` fit the region's archive and put them in its form.

    This is what :meth:`Archive.append` stores; the ingest pipeline calls it
    in its workers so the single writer only compares and writes.

    Parameters
    ----------
    frames
        ``(time, y, x)`` (or ``(y, x)`` with a scalar ``time``) on the region
        grid, with a ``units`` attribute, as readers + ``regrid`` produce.
    region
        The archive's region.
    source
        Name used in messages; default the ``source_file`` attribute.

    Returns
    -------
    xarray.DataArray
        float32 in region units, named after the region's variable, with
        exactly the region grid's coordinates and a ``source_file`` attribute.

    Raises
    ------
    InputFileError
        Wrong dims, not on the region grid, unconvertible units, a frame
        with no valid value (all NaN), times that are not whole seconds, in
        the future or before the region's earliest time, or too many
        physically impossible values (a few are masked: :func:`mask_implausible`).
    """
    src = source or str(frames.attrs.get("source_file") or frames.name or "<frames>")
    grid = region.grid
    if "time" not in frames.dims:
        if "time" not in frames.coords or frames["time"].ndim != 0:
            raise InputFileError(src, "frames have no time coordinate")
        frames = frames.expand_dims("time")
    if set(frames.dims) != {"time", "y", "x"}:
        raise InputFileError(src, f"frames must have dims (time, y, x), got {frames.dims}; regrid polar data first")
    if frames.dims != ("time", "y", "x"):
        frames = frames.transpose("time", "y", "x")
    for axis, want in (("x", grid.x), ("y", grid.y)):
        have = np.asarray(frames[axis].values) if axis in frames.coords else None
        if have is None or have.shape != want.shape or not np.allclose(have, want, rtol=0, atol=1e-3 * grid.resolution):
            raise InputFileError(
                src,
                f"not on the grid of region {region.name!r} ({axis}: "
                f"{'missing' if have is None else f'{have.size} cells from {have[0]:g} to {have[-1]:g}'}, "
                f"expected {want.size} cells from {want[0]:g} to {want[-1]:g}); regrid it first",
            )
    if GRID_MAPPING_NAME in frames.coords and not _same_crs(frames, grid):
        raise InputFileError(src, f"CRS {crs_of(frames).name!r} differs from region {region.name!r} CRS {grid.crs.name!r}")
    units = frames.attrs.get("units")
    if not units:
        raise InputFileError(src, "frames have no 'units' attribute")
    values = convert_units(np.asarray(frames.values), str(units), region, src)
    times = np.asarray(frames["time"].values).astype("datetime64[ns]")
    if np.isnat(times).any():
        raise InputFileError(src, "a frame has no valid time (NaT)")
    if (times.astype("int64") % 1_000_000_000).any():
        raise InputFileError(src, f"times {[_utc_iso(t) for t in times]} are not whole seconds")
    check_times(times, region, src)
    values = mask_implausible(values, region, src)
    empty = np.isnan(values).all(axis=(1, 2))
    if empty.any():
        bad = ", ".join(_utc_iso(t) for t in times[empty])
        raise InputFileError(src, f"frame at {bad} holds no valid value (all NaN); refusing to archive it")
    spec = variable_for(region)
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": times, **grid_coords(grid)},
        name=spec.name,
        attrs={"units": spec.units, "source_file": src},
    )


@dataclass
class RefusedFrame:
    """A frame :meth:`Archive.append` did not store, and why."""

    time: np.datetime64
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {_utc_iso(self.time)}: {self.reason}"


@dataclass
class AppendResult:
    """What one :meth:`Archive.append` did, time by time."""

    added: list[np.datetime64] = field(default_factory=list)
    unchanged: list[np.datetime64] = field(default_factory=list)
    replaced: list[np.datetime64] = field(default_factory=list)
    refused: list[RefusedFrame] = field(default_factory=list)
    #: Number of committed frames rewritten (journaled): replaced, or moved into a dropped frame's row.
    #: 0 for new frames, late or not.
    rewritten: int = 0

    @property
    def changed(self) -> bool:
        """Whether the store was written at all."""
        return bool(self.added or self.replaced)

    def merge(self, other: "AppendResult") -> None:
        """Accumulate another result into this one (for batched ingests)."""
        self.added += other.added
        self.unchanged += other.unchanged
        self.replaced += other.replaced
        self.refused += other.refused
        self.rewritten += other.rewritten


@dataclass(frozen=True)
class FrameStats:
    """Value summary of one archived frame."""

    time: np.datetime64
    minimum: float
    maximum: float
    mean: float
    wet_fraction: float | None
    valid_fraction: float


@dataclass(frozen=True)
class Gap:
    """Missing frames between two archived times (relative to the timestep)."""

    after: np.datetime64
    before: np.datetime64
    missing: int


@dataclass(frozen=True)
class ArchiveInfo:
    """Summary of an archive for ``nowcast archive info``."""

    region: str
    path: Path
    variable: str
    units: str
    timestep_minutes: int
    frames: list[FrameStats]
    gaps: list[Gap]

    @property
    def times(self) -> np.ndarray:
        return np.array([f.time for f in self.frames], dtype="datetime64[ns]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 UTC times)."""
        return {
            "region": self.region,
            "path": str(self.path),
            "variable": self.variable,
            "units": self.units,
            "timestep_minutes": self.timestep_minutes,
            "n_frames": len(self.frames),
            "first": _utc_iso(self.frames[0].time) if self.frames else None,
            "last": _utc_iso(self.frames[-1].time) if self.frames else None,
            "missing_frames": sum(g.missing for g in self.gaps),
            "gaps": [{"after": _utc_iso(g.after), "before": _utc_iso(g.before), "missing": g.missing} for g in self.gaps],
            "frames": [
                {
                    "time": _utc_iso(f.time),
                    "min": f.minimum,
                    "max": f.maximum,
                    "mean": f.mean,
                    "wet_fraction": f.wet_fraction,
                    "valid_fraction": f.valid_fraction,
                }
                for f in self.frames
            ],
        }


class Archive(CommitProtocol):
    """The Zarr archive of one region (see the module docstring for the protocol).

    Use :meth:`open`; one instance keeps the store's time axis in memory
    between appends and re-reads it only when another writer committed.
    """

    def __init__(self, region: Region, path: Path) -> None:
        self.region = region
        self.path = Path(path)
        self.spec = variable_for(region)
        #: Committed times in row (arrival) order, ns.
        self._times_ns: np.ndarray = np.empty(0, dtype="int64")
        #: Rows in time order (``argsort`` of ``_times_ns``) and the sorted times.
        self._order: np.ndarray = np.empty(0, dtype="int64")
        self._sorted_ns: np.ndarray = np.empty(0, dtype="int64")
        self._committed = 0
        self._commit_id: str | None = None
        self._lock_held = False

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, region: str | Region, home: str | Path | None = None, create: bool = True) -> "Archive":
        """Open a region's archive, recovering from an interrupted write.

        Parameters
        ----------
        region
            Region name, YAML path or :class:`~nowcast.config.Region`.
        home
            Data home (default ``$NOWCAST_HOME`` or ``~/.nowcast``).
        create
            Allow a missing store (it is created by the first append). With
            ``False`` a missing store is an :class:`ArchiveError`.
        """
        reg = region if isinstance(region, Region) else load_region(region, home)
        path = archive_path(reg.name, home)
        if not create and not (path / "zarr.json").is_file():
            raise ArchiveError(f"{path}: no archive for region {reg.name!r}; run 'nowcast ingest --region {reg.name}' first")
        archive = cls(reg, path)
        archive._remove_dead_staging()
        if archive.exists:
            archive._check_store()
            if archive._needs_recovery():
                try:
                    with archive._locked(timeout=0.0):
                        archive._recover()
                except LockError:
                    log.info("%s: another process is writing; reading its committed frames only", path)
        archive._load_state()
        return archive

    @property
    def exists(self) -> bool:
        return (self.path / "zarr.json").is_file()

    @property
    def grid(self):  # -> RegionGrid
        return self.region.grid

    def __len__(self) -> int:
        return self._committed

    def __repr__(self) -> str:
        return f"Archive({self.region.name!r}, {self.path}, {self._committed} frames)"

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes of the store (``{}`` before the first append)."""
        return dict(self._root_meta().get("attributes", {})) if self.exists else {}

    def set_attrs(self, **attrs: Any) -> None:
        """Set root attributes, e.g. ``data_origin`` (where the frames came from,
        copied into every forecast made from the archive), under the write lock.

        Raises
        ------
        ArchiveError
            If the store does not exist yet, or for the commit attribute.
        """
        if not self.exists:
            raise ArchiveError(f"{self.path}: no archive yet; ingest frames before setting its attributes")
        if COMMITTED_ATTR in attrs:
            raise ArchiveError(f"{self.path}: {COMMITTED_ATTR!r} is the commit point and cannot be set")
        with self._locked():
            if self._needs_recovery():
                self._recover()
            with _no_zarr_warnings():
                # the group returned by consolidation carries the consolidated metadata it rewrites
                self._consolidate().update_attributes(attrs)  # one root write

    # ----------------------------------------------------------- low level
    def _check_store(self) -> None:
        attrs = self._root_meta().get("attributes", {})
        if attrs.get("region") not in (None, self.region.name):
            raise ArchiveError(f"{self.path}: archive belongs to region {attrs.get('region')!r}, not {self.region.name!r}")
        meta = self._array_meta(self.spec.name)
        if meta is None:
            raise ArchiveError(
                f"{self.path}: no variable {self.spec.name!r} (region units {self.region.units!r}); "
                "the region's units changed since the archive was made"
            )
        if tuple(meta["shape"][1:]) != self.grid.shape:
            raise ArchiveError(f"{self.path}: frames are {tuple(meta['shape'][1:])}, region grid is {self.grid.shape}")
        version = int(attrs.get("nowcast_format_version", 1))
        if version > FORMAT_VERSION:
            raise ArchiveError(f"{self.path}: archive format version {version} was written by a newer nowcast "
                               f"(this one reads up to {FORMAT_VERSION}); upgrade nowcast")

    def _load_state(self) -> None:
        """Read committed length and the committed time axis (raw seconds, row order)."""
        if not self.exists:
            self._set_times(np.empty(0, dtype="int64"))
            return
        committed = self._committed_in_store()
        commit_id = self._root_meta().get("attributes", {}).get(COMMIT_ID_ATTR)
        # Another writer may have committed as many frames as before (a drop and an append): the id tells.
        if committed == self._committed and self._times_ns.size == committed and commit_id == self._commit_id:
            return
        raw = np.asarray(self._group("r")["time"][:committed], dtype="int64")
        self._set_times(raw * 1_000_000_000)
        self._commit_id = commit_id

    def _set_times(self, times_ns: np.ndarray) -> None:
        """Set the committed rows' times (row order) and the sorted view of them."""
        self._times_ns = np.asarray(times_ns, dtype="int64")
        self._order = np.argsort(self._times_ns, kind="stable")
        self._sorted_ns = self._times_ns[self._order]
        self._committed = int(self._times_ns.size)

    @contextlib.contextmanager
    def _locked(self, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Exclusive, process-death-safe write lock (re-entrant per instance; :mod:`nowcast.io.archive_lock`)."""
        if self._lock_held:
            yield
            return
        with exclusive_lock(self.path.parent / f".{self.path.name}.lock", self.path.name, timeout):
            self._lock_held = True
            try:
                yield
            finally:
                self._lock_held = False

    def _row_of(self, t_ns: int) -> int | None:
        """Row holding time ``t_ns`` (ns), or ``None`` (binary search in the sorted view)."""
        k = int(np.searchsorted(self._sorted_ns, t_ns))
        if k < self._sorted_ns.size and self._sorted_ns[k] == t_ns:
            return int(self._order[k])
        return None


    # -------------------------------------------------------------- reading
    @property
    def times(self) -> np.ndarray:
        """Committed frame times, sorted (whatever the row order), ``datetime64[ns]`` (UTC)."""
        self._load_state()
        return self._sorted_ns.astype("datetime64[ns]")

    @property
    def latest_time(self) -> np.datetime64 | None:
        """Newest archived time, or ``None`` for an empty archive."""
        times = self.times
        return times[-1] if times.size else None

    def _open_dataset(self, rows: np.ndarray | None = None) -> xr.Dataset:
        """The committed frames, lazily, in the order of ``rows`` (default: all, sorted by time).

        The row permutation is an ``isel``; rows that are consecutive and
        increasing (the whole of a store written in time order, or any run of
        frames that arrived in order) become a slice, so a sorted store is
        read exactly as before.
        """
        self._load_state()
        with _no_zarr_warnings():
            ds = xr.open_zarr(str(self.path), consolidated=True, chunks={})
        ds = ds.isel(time=slice(0, min(self._committed, ds.sizes["time"])))
        rows = self._order if rows is None else np.asarray(rows, dtype="int64")
        if rows.size and rows[-1] - rows[0] == rows.size - 1 and (rows.size == 1 or bool((np.diff(rows) == 1).all())):
            return ds.isel(time=slice(int(rows[0]), int(rows[-1]) + 1))
        return ds.isel(time=rows)

    def _rows_between(self, start: np.datetime64 | None, end: np.datetime64 | None) -> np.ndarray:
        """Rows with ``start <= time <= end``, in time order."""
        self._load_state()
        lo = 0 if start is None else int(np.searchsorted(self._sorted_ns, np.datetime64(start, "ns").astype("int64"), "left"))
        hi = self._sorted_ns.size if end is None else int(np.searchsorted(self._sorted_ns, np.datetime64(end, "ns").astype("int64"), "right"))
        return self._order[lo:max(lo, hi)]

    def read(self, start: np.datetime64 | str | None = None, end: np.datetime64 | str | None = None) -> xr.DataArray:
        """Lazy (dask) frames with ``start <= time <= end`` (UTC, inclusive).

        Raises
        ------
        ArchiveError
            If the archive holds no frames yet.
        """
        if not self.exists:
            raise ArchiveError(f"{self.path}: archive of region {self.region.name!r} is empty; ingest files first")
        lo = None if start is None else np.datetime64(start, "ns")
        hi = None if end is None else np.datetime64(end, "ns")
        return self._open_dataset(self._rows_between(lo, hi))[self.spec.name]

    def window(self, end_time: np.datetime64 | str | None, n_frames: int) -> xr.DataArray:
        """The ``n_frames`` consecutive frames (region timestep) ending at ``end_time``.

        ``end_time=None`` means the latest archived frame. The result is
        loaded into memory (a window is small and about to be used).

        Raises
        ------
        ForecastError
            If any frame of the window is missing; the message says how many
            and which.
        """
        if n_frames < 1:
            raise ForecastError(f"window of {n_frames} frames: need at least 1")
        self._load_state()
        end = self.latest_time if end_time is None else np.datetime64(end_time, "ns")
        if end is None:
            raise ForecastError(f"archive {self.path}: empty; need {n_frames} frames, {n_frames} missing")
        step = np.timedelta64(self.region.timestep_minutes, "m").astype("timedelta64[ns]")
        wanted = end - step * np.arange(n_frames - 1, -1, -1)
        rows = [self._row_of(int(t)) for t in wanted.astype("int64")]
        present = np.array([r is not None for r in rows])
        if not present.all():
            missing = wanted[~present]
            raise ForecastError(
                f"archive {self.path}: window of {n_frames} frames ending {_utc_iso(end)}: "
                f"{missing.size} frame(s) missing ({', '.join(_utc_iso(t) for t in missing[:6])}"
                f"{', ...' if missing.size > 6 else ''})"
            )
        return self._open_dataset(np.array(rows, dtype="int64"))[self.spec.name].load()

    def info(self) -> ArchiveInfo:
        """Times, gaps (relative to the region timestep) and per-frame value ranges."""
        import dask

        frames: list[FrameStats] = []
        gaps: list[Gap] = []
        times = self.times
        if times.size:
            da = self.read()
            valid = da.notnull()
            threshold = self._wet_threshold()
            stats = [da.min(("y", "x")), da.max(("y", "x")), da.mean(("y", "x")), valid.mean(("y", "x"))]
            if threshold is not None:
                stats.append((da >= threshold).sum(("y", "x")) / valid.sum(("y", "x")))
            with np.errstate(invalid="ignore", divide="ignore"):
                values = dask.compute(*[s.data for s in stats])
            for k, t in enumerate(times):
                frames.append(
                    FrameStats(
                        time=t,
                        minimum=float(values[0][k]),
                        maximum=float(values[1][k]),
                        mean=float(values[2][k]),
                        valid_fraction=float(values[3][k]),
                        wet_fraction=float(values[4][k]) if threshold is not None else None,
                    )
                )
            step = np.timedelta64(self.region.timestep_minutes, "m").astype("timedelta64[ns]")
            for a, b in zip(times[:-1], times[1:]):
                missing = int((b - a) // step) - 1
                if missing > 0 or (b - a) % step:
                    gaps.append(Gap(a, b, max(missing, 0)))
        return ArchiveInfo(
            region=self.region.name,
            path=self.path,
            variable=self.spec.name,
            units=self.spec.units,
            timestep_minutes=self.region.timestep_minutes,
            frames=frames,
            gaps=gaps,
        )

    def _wet_threshold(self) -> float | None:
        units = canonical_units(self.region.units)
        if units == MMH:
            return self.region.rain_threshold
        if units == DBZ:
            return float(rainrate_to_dbz(np.array([max(self.region.rain_threshold, 1e-6)]), self.region.zr.a, self.region.zr.b)[0])
        return None

    # -------------------------------------------------------------- writing
    def append(
        self,
        frames: xr.DataArray,
        overwrite: bool = False,
        source: str | Sequence[str] | None = None,
        errors: Literal["raise", "skip"] = "raise",
    ) -> AppendResult:
        """Add frames: new times to new rows (late or not), archived times compared (see the module docstring).

        Parameters
        ----------
        frames
            ``(time, y, x)`` on the region grid, in units convertible to the
            region's (see :func:`conform`).
        overwrite
            Replace archived frames whose field differs (default: refuse).
        source
            File name(s) for messages: one for all frames or one per frame;
            default the ``source_file`` attribute.
        errors
            ``"raise"``: any refused frame raises :class:`ArchiveError` and
            nothing is written. ``"skip"``: refused frames are listed in the
            result and the others are written (what the ingest pipeline does).

        Returns
        -------
        AppendResult
            Times added, unchanged, replaced and refused.
        """
        if isinstance(source, str) or source is None:
            one = source or str(frames.attrs.get("source_file") or "<frames>")
            frames = conform(frames, self.region, one)
            sources = [one] * frames.sizes["time"]
        else:
            sources = [str(s) for s in source]
            frames = conform(frames, self.region, sources[0] if len(set(sources)) == 1 else "<frames>")
            if len(sources) != frames.sizes["time"]:
                raise ArchiveError(f"{self.path}: {len(sources)} sources given for {frames.sizes['time']} frames")
        batch = FrameBatch(frames["time"].values.astype("int64"), sources, list(frames.values))
        return self._append_prepared(batch, overwrite, errors)

    def _append_prepared(self, batch: FrameBatch, overwrite: bool = False, errors: Literal["raise", "skip"] = "raise") -> AppendResult:
        """:meth:`append` of frames that already went through :func:`conform` (not checked again).

        The ingest pipeline's workers conform every frame where they read it;
        running the checks a second time here cost about 3 ms per frame on
        the driver, the one process that cannot run in parallel. External
        callers use :meth:`append`, which always conforms.
        """
        with self._locked():
            if self.exists:
                if self._needs_recovery():
                    self._recover()
                self._load_state()
            else:
                self._set_times(np.empty(0, dtype="int64"))
            return self._append_locked(batch, overwrite, errors)

    @contextlib.contextmanager
    def staging(self, n_slots: int) -> Iterator[Staging]:
        """A :class:`Staging` array of ``n_slots`` frames beside the store, removed on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_dead_staging()
        staging = Staging(self.path.parent / f".{self.path.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}", self.spec.name)
        try:
            staging.create(n_slots, self.grid.shape)
            yield staging
        finally:
            staging.remove()

    def _remove_dead_staging(self) -> None:
        """Remove staging folders of ingests whose process is gone (killed: up to one frame per file they had)."""
        if not self.path.parent.is_dir():
            return
        for stale in self.path.parent.glob(f".{self.path.name}.staging-*"):
            pid = stale.name.rsplit(".staging-", 1)[1].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                log.warning("%s: removing the staging folder of an interrupted ingest", stale)
                shutil.rmtree(stale, ignore_errors=True)

    def drop(self, start: np.datetime64 | str, end: np.datetime64 | str | None = None) -> list[np.datetime64]:
        """Remove the frames from ``start`` to ``end`` (inclusive; ``end=None``: only ``start``), crash-safely.

        Each removed row is filled with one of the last rows (swap-remove)
        and the arrays shrink by the number removed, under the commit
        protocol (journal of the holes and of the rows beyond the new end,
        resize, write, consolidate, commit): a kill at any point leaves the
        archive as it was or with the frames removed, never in between, and
        the cost is proportional to the number of frames removed, not to the
        archive's length.

        Returns
        -------
        list of numpy.datetime64
            The times removed, sorted (empty if none matched).

        Raises
        ------
        ArchiveError
            The archive does not exist.
        """
        t0 = np.datetime64(str(start).rstrip("Z"), "ns") if isinstance(start, str) else np.datetime64(start, "ns")
        t1 = t0 if end is None else (np.datetime64(str(end).rstrip("Z"), "ns") if isinstance(end, str) else np.datetime64(end, "ns"))
        if t1 < t0:
            raise ArchiveError(f"{self.path}: drop range ends ({_utc_iso(t1)}) before it starts ({_utc_iso(t0)})")
        if not self.exists:
            raise ArchiveError(f"{self.path}: archive does not exist")
        with self._locked():
            if self._needs_recovery():
                self._recover()
            self._load_state()
            gone_rows = np.sort(self._rows_between(t0, t1))
            if not gone_rows.size:
                return []
            old = self._times_ns
            n_after = old.size - gone_rows.size
            holes = gone_rows[gone_rows < n_after]
            beyond = np.arange(n_after, old.size)
            movers = np.setdiff1d(beyond, gone_rows)  # kept rows past the new end fill the holes
            values = _read_rows(self._group("r")[self.spec.name], movers)
            result = AppendResult(rewritten=int(holes.size))
            removed = sorted(np.datetime64(int(t), "ns") for t in old[gone_rows])
            self._write_tail(
                n_after, holes, FrameBatch.from_values(old[movers], values), result,
                journal_rows=np.union1d(holes, beyond),
                line=f"dropped {len(removed)} frame(s) {_utc_iso(removed[0])} .. {_utc_iso(removed[-1])}",
            )
            merged = old.copy()
            merged[holes] = old[movers]
            self._set_times(merged[:n_after])
        log.info("%s: dropped %d frame(s) from %s to %s", self.path, len(removed), _utc_iso(removed[0]), _utc_iso(removed[-1]))
        return removed

    def _stored_frame(self, row: int) -> np.ndarray:
        return np.asarray(self._group("r")[self.spec.name][row])

    def _append_locked(self, batch: FrameBatch, overwrite: bool, errors: str) -> AppendResult:
        """Classify each frame (new, unchanged, replacing, refused), then write new ones to new rows."""
        result = AppendResult()
        times_ns = batch.times_ns
        sources = batch.sources
        new: dict[int, int] = {}  # time -> index in `batch`
        replace: dict[int, int] = {}  # store row -> index in `batch`
        first_row: dict[int, int] = {}
        for row, t in enumerate(times_ns):
            t = int(t)
            t64 = np.datetime64(t, "ns")
            if t in first_row:
                ref = first_row[t]
                if _same(batch.frame(row), batch.frame(ref)):
                    result.unchanged.append(t64)
                else:
                    result.refused.append(
                        RefusedFrame(t64, sources[row], f"same time as {sources[ref]} in this batch but a different field")
                    )
                continue
            first_row[t] = row
            stored = self._row_of(t)
            if stored is not None:
                if _same(batch.frame(row), self._stored_frame(stored)):
                    result.unchanged.append(t64)
                elif overwrite:
                    replace[stored] = row
                    result.replaced.append(t64)
                else:
                    result.refused.append(
                        RefusedFrame(t64, sources[row], "archive already holds a different field at this time (use --overwrite to replace it)")
                    )
            else:
                new[t] = row
                result.added.append(t64)
        if result.refused and errors == "raise":
            first = result.refused[0]
            more = f" (and {len(result.refused) - 1} more)" if len(result.refused) > 1 else ""
            raise ArchiveError(f"{first.source}: frame at {_utc_iso(first.time)} refused by {self.path}: {first.reason}{more}")
        for t in result.unchanged:
            log.debug("%s: %s unchanged", self.path.name, _utc_iso(t))
        if not new and not replace:
            return result
        # New frames go to new rows at the end, in time order among themselves
        # (an in-order stream stays physically sorted); replaced ones stay in their row.
        new_times = np.array(sorted(new), dtype="int64")
        n_old = self._committed
        if not self.exists:
            self._create(batch.take([new[int(t)] for t in new_times]), result)
            self._set_times(new_times)
            return result
        replaced_rows = np.array(sorted(replace), dtype="int64")
        rows = np.concatenate([replaced_rows, np.arange(n_old, n_old + new_times.size)])
        frames = batch.take([replace[int(r)] for r in replaced_rows] + [new[int(t)] for t in new_times])
        result.rewritten = int(replaced_rows.size)
        self._write_tail(n_old + new_times.size, rows, frames, result, journal_rows=replaced_rows)
        self._set_times(np.concatenate([self._times_ns, new_times]))
        return result


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same field within float tolerance, NaN (no data) equal to NaN."""
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))


