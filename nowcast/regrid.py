"""Put any reader output on a region's grid, fast enough for a file stream.

The geometry work (projecting every source cell centre with pyproj, finding
which target cell it falls in, a nearest-neighbour search for the cells that
received none) is done once per pair (source grid, target grid) and kept in a
small LRU cache; applying it to a frame is then a gather plus two
``np.bincount`` calls, a few milliseconds for 640x710 cells.

One mapping covers coarsening and refining alike:

* every source cell centre is binned into the target cell that contains it and
  target values are the NaN-aware *mean* of their source cells (area
  averaging where the source is finer; reflectivity is averaged in linear Z,
  as power, not in dB);
* target cells that received no source centre but lie inside the source's
  coverage take the *nearest* source cell (refining, or a slightly coarser
  source). For regular sources "inside" is the source extent; for polar and
  curvilinear sources the nearest centre must lie within half the local cell
  diagonal, so cells beyond a radar's range stay NaN;
* everything else is NaN.

When the source grid *is* the target grid (same CRS and cell centres to 1e-6
cells) the data are passed through untouched (identity fast path).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xarray as xr
from pyproj import CRS, Transformer

from nowcast.errors import GridError
from nowcast.grid import GRID_MAPPING_NAME, RegionGrid

log = logging.getLogger(__name__)

#: Number of (source, target) mappings kept; each holds a few index arrays.
CACHE_SIZE = 16


@dataclass(frozen=True)
class Mapping:
    """Precomputed source -> target correspondence.

    Attributes
    ----------
    kind
        ``"identity"`` (grids coincide) or ``"general"``.
    bin_src, bin_tgt
        Flat source indices whose centres fall in a target cell, and that cell.
    nn_tgt, nn_src
        Target cells with no source centre inside but within coverage, and the
        nearest source cell for each.
    single
        True when every covered target cell gets exactly one source cell
        (an aligned sub-window, pure nearest): a gather suffices.
    gather
        For ``single``: source index per target cell, -1 outside coverage.
    """

    kind: str
    shape: tuple[int, int]
    bin_src: np.ndarray | None = None
    bin_tgt: np.ndarray | None = None
    nn_tgt: np.ndarray | None = None
    nn_src: np.ndarray | None = None
    single: bool = False
    gather: np.ndarray | None = None

    @property
    def coverage(self) -> int:
        """Number of target cells that can receive data."""
        if self.kind == "identity":
            return self.shape[0] * self.shape[1]
        n = 0 if self.nn_tgt is None else self.nn_tgt.size
        return n + (0 if self.bin_tgt is None else np.unique(self.bin_tgt).size)

    def apply(self, frame: np.ndarray, linear_z: bool = False) -> np.ndarray:
        """Regrid one 2-D (or flattened) float32 frame to the target shape."""
        if self.kind == "identity":
            return np.asarray(frame, dtype=np.float32).reshape(self.shape)
        flat = np.asarray(frame, dtype=np.float32).ravel()
        size = self.shape[0] * self.shape[1]
        if self.single:
            out = flat[np.maximum(self.gather, 0)]
            out[self.gather < 0] = np.nan
            return out.reshape(self.shape)
        out = np.full(size, np.nan, dtype=np.float32)
        if self.bin_src is not None and self.bin_src.size:
            vals = flat[self.bin_src].astype(np.float64)
            if linear_z:
                vals = np.power(10.0, vals / 10.0)
            ok = ~np.isnan(vals)
            tgt = self.bin_tgt[ok]
            sums = np.bincount(tgt, weights=vals[ok], minlength=size)
            counts = np.bincount(tgt, minlength=size)
            has = counts > 0
            mean = sums[has] / counts[has]
            if linear_z:
                mean = 10.0 * np.log10(mean)
            out[has] = mean
        if self.nn_tgt is not None and self.nn_tgt.size:
            out[self.nn_tgt] = flat[self.nn_src]
        return out.reshape(self.shape)


_cache: OrderedDict[tuple, Mapping] = OrderedDict()
_lock = threading.Lock()


def regrid(da: xr.DataArray, grid: RegionGrid) -> xr.DataArray:
    """Put a reader's DataArray on ``grid``.

    Parameters
    ----------
    da
        Reader output: ``(time, y, x)`` with 1-D ``x``/``y``, or any
        ``(time, a, b)`` with 2-D ``x``/``y`` coordinates (polar sweeps,
        curvilinear lat/lon), plus a ``spatial_ref`` coordinate.
    grid
        Target region grid.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` on ``grid.coords()``, same name and attrs, float32.

    Raises
    ------
    GridError
        If the source does not overlap ``grid`` at all, or has no CRS; the
        message names the source file.
    """
    source = da.attrs.get("source_file", da.name or "data")
    if GRID_MAPPING_NAME not in da.coords:
        raise GridError(f"{source}: no '{GRID_MAPPING_NAME}' coordinate; cannot georeference")
    mapping = get_mapping(da, grid)
    linear_z = da.attrs.get("units") == "dBZ" and mapping.kind != "identity" and not mapping.single
    frames = da.transpose("time", ...).values if "time" in da.dims else da.values[np.newaxis]
    out = np.empty((frames.shape[0], *grid.shape), dtype=np.float32)
    for i, frame in enumerate(frames):
        out[i] = mapping.apply(frame, linear_z=linear_z)
    coords = dict(_grid_coords(grid))
    if "time" in da.coords:
        coords["time"] = da["time"] if "time" in da.dims else ("time", np.atleast_1d(da["time"].values))
    attrs = dict(da.attrs)
    attrs["grid_mapping"] = GRID_MAPPING_NAME
    return xr.DataArray(out, dims=("time", "y", "x"), coords=coords, name=da.name, attrs=attrs)


_coords_cache: dict[tuple, dict[str, xr.DataArray]] = {}


def _grid_coords(grid: RegionGrid) -> dict[str, xr.DataArray]:
    """``grid.coords()``, built once per grid (CF/WKT export costs ~ms)."""
    coords = _coords_cache.get(grid.signature)
    if coords is None:
        if len(_coords_cache) >= CACHE_SIZE:
            _coords_cache.clear()
        coords = _coords_cache[grid.signature] = grid.coords()
    return {name: value.copy(deep=False) for name, value in coords.items()}


def get_mapping(da: xr.DataArray, grid: RegionGrid) -> Mapping:
    """The cached mapping from ``da``'s grid to ``grid`` (built on first use)."""
    key = (source_signature(da), grid.signature)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    mapping = _build(da, grid)
    with _lock:
        _cache[key] = mapping
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return mapping


def clear_cache() -> None:
    """Forget every mapping (tests, or after changing a region's grid)."""
    with _lock:
        _cache.clear()


def source_signature(da: xr.DataArray) -> tuple:
    """Hashable identity of a source grid: CRS text plus coordinates.

    1-D coordinates are summarised by size and end points (regular grids);
    2-D ones by a BLAKE2 digest of their bytes (~1 ms for a radar sweep).
    """
    sref = da.coords[GRID_MAPPING_NAME].attrs
    wkt = sref.get("crs_wkt") or sref.get("spatial_ref") or repr(sorted(sref.items()))
    x, y = da["x"].values, da["y"].values
    if x.ndim == 1:
        return (wkt, x.size, float(x[0]), float(x[-1]), y.size, float(y[0]), float(y[-1]))
    digest = hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16)
    digest.update(np.ascontiguousarray(y).tobytes())
    return (wkt, x.shape, digest.hexdigest())


@lru_cache(maxsize=32)
def _crs_from_text(text: str) -> CRS:
    return CRS.from_user_input(text)


def _source_crs(da: xr.DataArray) -> CRS:
    attrs = da.coords[GRID_MAPPING_NAME].attrs
    text = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    return _crs_from_text(text) if text else CRS.from_cf(attrs)


def _build(da: xr.DataArray, grid: RegionGrid) -> Mapping:
    source = da.attrs.get("source_file", da.name or "data")
    src_crs = _source_crs(da)
    x, y = da["x"].values.astype(np.float64), da["y"].values.astype(np.float64)
    ny, nx = grid.shape
    tx, ty = grid.x, grid.y
    if tx.size < 2 or ty.size < 2:
        raise GridError(f"{grid.name}: a target grid needs at least 2 x 2 cells, got {ny} x {nx}")
    dx_t, dy_t = abs(tx[1] - tx[0]), abs(ty[1] - ty[0])
    regular = x.ndim == 1

    if regular and src_crs == grid.crs and x.size == nx and y.size == ny:
        tol = 1e-6 * dx_t
        if np.allclose(x, tx, rtol=0, atol=tol) and np.allclose(y, ty, rtol=0, atol=tol):
            log.debug("regrid %s -> %s: identity", source, grid.name)
            return Mapping("identity", grid.shape)

    # --- bin every source centre into the target cell containing it ---
    if regular:
        xx, yy = np.meshgrid(x, y)
    else:
        xx, yy = x, y
    if src_crs == grid.crs:
        px, py = xx.ravel(), yy.ravel()
    else:
        to_tgt = Transformer.from_crs(src_crs, grid.crs, always_xy=True)
        px, py = to_tgt.transform(xx.ravel(), yy.ravel())
        px, py = np.asarray(px), np.asarray(py)
    xmin, _, _, ymax = grid.extent
    with np.errstate(invalid="ignore"):
        col = np.floor((px - xmin) / dx_t)
        row = np.floor((ymax - py) / dy_t)
    inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    bin_src = np.flatnonzero(inside)
    bin_tgt = (row[inside].astype(np.int64) * nx + col[inside].astype(np.int64))
    counts = np.bincount(bin_tgt, minlength=ny * nx)

    # --- nearest source cell for covered target cells left empty ---
    empty = np.flatnonzero(counts == 0)
    nn_tgt, nn_src = _nearest(da, src_crs, grid, empty, x, y, px, py)
    if bin_src.size == 0 and nn_tgt.size == 0:
        raise GridError(f"{source}: grid does not overlap region '{grid.name}' (no source cell falls on it)")

    single = bool(counts.max(initial=0) <= 1)
    gather = None
    if single:
        gather = np.full(ny * nx, -1, dtype=np.int64)
        gather[bin_tgt] = bin_src
        gather[nn_tgt] = nn_src
    log.debug(
        "regrid %s -> %s: %d target cells averaged, %d nearest", source, grid.name, np.unique(bin_tgt).size, nn_tgt.size
    )
    return Mapping(
        "general",
        grid.shape,
        bin_src=bin_src,
        bin_tgt=bin_tgt,
        nn_tgt=nn_tgt,
        nn_src=nn_src,
        single=single,
        gather=gather,
    )


def _nearest(
    da: xr.DataArray,
    src_crs: CRS,
    grid: RegionGrid,
    empty: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest source index for the empty target cells inside coverage."""
    none = (np.empty(0, np.int64), np.empty(0, np.int64))
    if empty.size == 0:
        return none
    nx = grid.shape[1]
    gx = grid.x[empty % nx]
    gy = grid.y[empty // nx]
    if x.ndim == 1:
        # Regular source: exact arithmetic in the source CRS.
        if src_crs == grid.crs:
            sx, sy = gx, gy
        else:
            to_src = Transformer.from_crs(grid.crs, src_crs, always_xy=True)
            sx, sy = (np.asarray(v) for v in to_src.transform(gx, gy))
        dx_s, dy_s = x[1] - x[0], y[1] - y[0]
        with np.errstate(invalid="ignore"):
            ci = np.rint((sx - x[0]) / dx_s)
            ri = np.rint((sy - y[0]) / dy_s)
        ok = np.isfinite(ci) & np.isfinite(ri) & (ci >= 0) & (ci < x.size) & (ri >= 0) & (ri < y.size)
        return empty[ok], (ri[ok].astype(np.int64) * x.size + ci[ok].astype(np.int64))
    # Polar / curvilinear: KD-tree in target coordinates, capped per source
    # point at half its local cell diagonal so nothing leaks past coverage.
    from scipy.spatial import cKDTree

    shape = x.shape
    qx = px.reshape(shape)
    qy = py.reshape(shape)
    da0 = np.hypot(np.gradient(qx, axis=0), np.gradient(qy, axis=0))
    da1 = np.hypot(np.gradient(qx, axis=1), np.gradient(qy, axis=1))
    cap = 0.5 * np.hypot(da0, da1).ravel() * 1.05
    finite = np.isfinite(px) & np.isfinite(py) & np.isfinite(cap)
    idx = np.flatnonzero(finite)
    if idx.size == 0:
        return none
    tree = cKDTree(np.column_stack([px[idx], py[idx]]))
    dist, j = tree.query(np.column_stack([gx, gy]), distance_upper_bound=float(np.nanmax(cap[idx])))
    hit = np.isfinite(dist)
    src = idx[np.minimum(j, idx.size - 1)]
    ok = hit & (dist <= cap[src])
    return empty[ok], src[ok]
