"""Store layout of the region archive: names, encoding, dataset building, row I/O.

What a region archive *is* on disk (see docs/design.md, "The archive"): the
attribute names of the commit point and format, the data variable for each
kind of units, the chunking and codecs shared by the store and the ingest's
staging array, the CF dataset written when a store is created, and reads and
writes of rows along ``time`` (runs of consecutive rows become slices).
Kept apart from :mod:`nowcast.io.archive` so that the layout can be read
without the commit protocol and the checks on incoming frames.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast.config import Region
from nowcast.grid import GRID_MAPPING_NAME
from nowcast.units import DBZ, KELVIN, MMH, canonical_units

#: Root attribute holding the number of committed frames (the commit point).
COMMITTED_ATTR = "nowcast_committed_frames"
#: Version of the store layout, bumped on incompatible changes.
FORMAT_VERSION = 2
#: Root attribute holding the id of the last commit (a journal names the commit it precedes).
COMMIT_ID_ATTR = "nowcast_commit"
#: Root attribute telling external readers how rows are ordered.
ROW_ORDER_ATTR = "nowcast_row_order"
ROW_ORDER_NOTE = ("arrival: rows are in the order frames were written, not sorted by time; "
                  "open with xr.open_zarr(...).sortby('time') (nowcast's Archive does this itself)")
#: Largest spatial tile side of a chunk. Tiles divide the grid evenly (the
#: 640x710 MeteoSwiss grid gets 2x2 tiles of 320x355 cells, 440 KiB each
#: before compression): every chunk is one file written through a temporary
#: file and a rename, and that per-file cost, not compression, dominates
#: writing (measured: 15 ms/frame with ragged 256x256 tiles, 9 ms with 2x2,
#: see docs/benchmarks.md), while tiles still let a point or sub-area time
#: series read a quarter of each frame.
MAX_TILE = 384
#: Chunk length of the 1-D time coordinate (one small file for ~2 weeks of 5-min frames).
TIME_CHUNK = 4096
TIME_UNITS = "seconds since 1970-01-01"
#: Lines of ``history`` kept in the store's attributes.
HISTORY_LINES = 50


def data_encoding(grid_shape: tuple[int, int]) -> dict[str, Any]:
    """Chunks, codecs, dtype and fill of the archive's data array (one place for the store and :class:`Staging`)."""
    from zarr.codecs import BloscCodec

    return {
        "chunks": (1, *tile_shape(grid_shape)),
        # lz4 + byte shuffle: 1 ms/frame to compress against 4.4 ms for
        # zstd + bitshuffle, for 4 % more bytes on radar fields
        "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
        "dtype": "float32",
    }


@dataclass(frozen=True)
class VariableSpec:
    """CF description of the archive variable for one kind of units."""

    name: str
    units: str
    standard_name: str
    long_name: str


VARIABLES: dict[str, VariableSpec] = {
    MMH: VariableSpec("rain_rate", MMH, "rainfall_rate", "rain rate"),
    DBZ: VariableSpec("reflectivity", DBZ, "equivalent_reflectivity_factor", "equivalent reflectivity factor"),
    KELVIN: VariableSpec("brightness_temperature", KELVIN, "toa_brightness_temperature", "top-of-atmosphere brightness temperature"),
}


def variable_for(region: Region) -> VariableSpec:
    """The archive variable of a region (decided by ``region.units``)."""
    return VARIABLES[canonical_units(region.units)]


_COORDS_CACHE: dict[tuple, dict[str, xr.DataArray]] = {}


def grid_coords(grid: Any) -> dict[str, xr.DataArray]:
    """``grid.coords()``, cached per grid: building the CF grid mapping with
    pyproj costs milliseconds, which adds up at tens of frames per second."""
    key = grid.signature
    if key not in _COORDS_CACHE:
        with _no_zarr_warnings():
            _COORDS_CACHE[key] = grid.coords()
    return _COORDS_CACHE[key]


def _utc_iso(t: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(t, "s"), unit="s") + "Z"


@contextlib.contextmanager
def _no_zarr_warnings() -> Iterator[None]:
    """Silence zarr's note that consolidated metadata is not in the v3 spec
    (known and intended: the design asks for it) and pyproj's CF export note."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*angle from rectified to skew grid.*")
        yield


def _runs(rows: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """``(k0, k1, row0)``: maximal stretches ``rows[k0:k1] == row0 + arange(k1 - k0)``."""
    k0 = 0
    for k in range(1, rows.size + 1):
        if k == rows.size or rows[k] != rows[k - 1] + 1:
            yield k0, k, int(rows[k0])
            k0 = k


def _write_rows(arr: Any, rows: np.ndarray, values: np.ndarray) -> None:
    """``arr[rows] = values`` along the first axis, one slice write per run of consecutive rows."""
    rows = np.asarray(rows, dtype="int64")
    for k0, k1, r0 in _runs(rows):
        arr[r0 : r0 + k1 - k0] = values[k0:k1]


def _read_rows(arr: Any, rows: np.ndarray) -> np.ndarray:
    """``arr[rows]`` along the first axis, one slice read per run of consecutive rows."""
    rows = np.asarray(rows, dtype="int64")
    out = np.empty((rows.size, *arr.shape[1:]), dtype=arr.dtype)
    for k0, k1, r0 in _runs(rows):
        out[k0:k1] = arr[r0 : r0 + k1 - k0]
    return out


def tile_shape(shape: tuple[int, int], max_tile: int = MAX_TILE) -> tuple[int, int]:
    """Spatial chunk shape: the fewest tiles per axis of at most ``max_tile``
    cells, sized so they divide the axis as evenly as possible."""
    return tuple(-(-n // -(-n // max_tile)) for n in shape)  # type: ignore[return-value]


def _describe(sources: Sequence[str]) -> str:
    unique = list(dict.fromkeys(Path(s).name for s in sources))
    return ", ".join(unique[:3]) + (f" and {len(unique) - 3} more" if len(unique) > 3 else "")


def build_dataset(spec: VariableSpec, region: Region, times_ns: np.ndarray, values: Any, with_grid: bool) -> xr.Dataset:
    """The CF dataset of ``values`` (numpy or dask) at ``times_ns`` as the archive stores it."""
    coords: dict[str, Any] = {"time": times_ns.astype("datetime64[ns]")}
    if with_grid:
        coords.update(grid_coords(region.grid))
    da = xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords=coords,
        name=spec.name,
        attrs={
            "units": spec.units,
            "standard_name": spec.standard_name,
            "long_name": spec.long_name,
            "grid_mapping": GRID_MAPPING_NAME,
            "region": region.name,
        },
    )
    ds = da.to_dataset()
    ds["time"].attrs.update({"standard_name": "time", "long_name": "time (end of the radar interval), UTC", "axis": "T"})
    return ds


def write_skeleton(path: Path, spec: VariableSpec, region: Region, times_ns: np.ndarray, attrs: dict[str, Any]) -> None:
    """Write a store of ``len(times_ns)`` frames at ``path``: metadata, coordinates, no data chunks."""
    import zarr

    data = data_encoding(region.grid.shape)
    # One all-NaN frame (the fill value: zarr writes no chunk for it, and no dask is
    # needed, whose import cost the first ingest of a process 0.4 s), then the time
    # axis is resized to its length: metadata and coordinates only.
    empty = np.broadcast_to(np.float32(np.nan), (1, *region.grid.shape))
    ds = build_dataset(spec, region, times_ns[:1], empty, with_grid=True)
    ds.attrs.update(attrs)
    encoding = {
        spec.name: {**data, "_FillValue": np.float32(np.nan)},
        "time": {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64", "chunks": (TIME_CHUNK,)},
    }
    with _no_zarr_warnings():
        ds.to_zarr(str(path), mode="w-", encoding=encoding, zarr_format=3, consolidated=False)
        group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        for name in (spec.name, "time"):
            group[name].resize((times_ns.size, *group[name].shape[1:]))
        group["time"][:] = np.asarray(times_ns, dtype="int64") // 1_000_000_000
        zarr.consolidate_metadata(str(path))
