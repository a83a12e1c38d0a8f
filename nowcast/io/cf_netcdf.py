"""CF-convention netCDF grids: radar rain rate/reflectivity, satellite IR.

Opened with xarray (netCDF4 engine; netCDF-3 and netCDF-4 alike) because CF
decoding (scale/offset, ``_FillValue``, time units) is exactly what CF files
need. The data variable is chosen by ``standard_name`` first, then by units,
among the quantities nowcast handles; georeferencing comes from either

* a ``grid_mapping`` variable (``pyproj.CRS.from_cf``, or its ``crs_wkt``)
  with 1-D projection ``x``/``y`` coordinates, flipped if needed so that ``x``
  ascends and ``y`` descends (north-up, as the archive wants), or
* 1-D ``lat``/``lon`` coordinates (regular lat-lon grid, EPSG:4326), or
* 2-D ``lat``/``lon`` coordinates (curvilinear): the result then keeps dims
  ``(time, row, col)`` with 2-D ``x`` = longitude, ``y`` = latitude in
  EPSG:4326, like a polar sweep, and :func:`nowcast.regrid.regrid` handles it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS
from pyproj.exceptions import CRSError

from nowcast.errors import InputFileError, NowcastError
from nowcast.io.readers import make_dataarray, one_line
from nowcast.units import canonical_units

log = logging.getLogger(__name__)

#: CF standard names nowcast reads, in order of preference.
STANDARD_NAMES: tuple[str, ...] = (
    "rainfall_rate",
    "equivalent_reflectivity_factor",
    "radar_equivalent_reflectivity_factor",
    "toa_brightness_temperature",
    "brightness_temperature",
)

_X_NAMES = ("projection_x_coordinate", "grid_longitude")
_Y_NAMES = ("projection_y_coordinate", "grid_latitude")
_LENGTH_FACTORS = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0, "km": 1000.0}


def read_cf_netcdf(path: str | Path) -> xr.DataArray:
    """Read the supported variable of a CF netCDF grid.

    Raises
    ------
    InputFileError
        Unreadable file, no supported variable, unknown units, missing or
        invalid grid mapping, no time, or no valid data.
    """
    path = Path(path)
    try:
        ds = xr.open_dataset(path, engine="netcdf4", decode_times=True, mask_and_scale=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputFileError(path, f"unreadable netCDF file, truncated or corrupt ({one_line(exc)})") from None
    with ds:
        var = _pick_variable(ds, path)
        return _to_contract(ds, var, path)


def _pick_variable(ds: xr.Dataset, path: Path) -> xr.DataArray:
    candidates = [v for v in ds.data_vars.values() if v.ndim >= 2]
    for std in STANDARD_NAMES:
        for var in candidates:
            if var.attrs.get("standard_name") == std:
                return var
    unknown: list[str] = []
    for var in candidates:
        units = var.attrs.get("units")
        if units is None:
            continue
        try:
            canonical_units(str(units))
            return var
        except NowcastError:
            unknown.append(f"{var.name} [{units}]")
    if unknown:
        raise InputFileError(path, f"unsupported units for {', '.join(unknown)}: expected mm/h, dBZ or K")
    raise InputFileError(path, "no rain-rate, reflectivity or brightness-temperature variable with units")


def _to_contract(ds: xr.Dataset, var: xr.DataArray, path: Path) -> xr.DataArray:
    units = var.attrs.get("units")
    if units is None:
        raise InputFileError(path, f"variable {var.name!r} has no units")
    times = _times(var, path)
    spatial = [d for d in var.dims if d != "time"]
    if len(spatial) != 2:
        raise InputFileError(path, f"variable {var.name!r} has dims {var.dims}; expected (time,) y, x")
    var = var.transpose(*(["time"] if "time" in var.dims else []), *spatial)
    values = np.asarray(var.values, dtype=np.float32)
    if "time" not in var.dims:
        values = values[np.newaxis]
    product = str(ds.attrs.get("title") or var.attrs.get("long_name") or var.name)
    common = dict(units=str(units), product=product, quantity=str(var.attrs.get("standard_name", var.name)))

    gm_name = var.attrs.get("grid_mapping")
    xdim, ydim = _projection_axes(ds, var, spatial)
    if gm_name is not None and xdim is not None:
        if gm_name not in ds.variables:
            raise InputFileError(path, f"missing projection: grid_mapping variable {gm_name!r} is absent")
        crs = _crs(ds[gm_name].attrs, path)
        x = ds[xdim].values.astype(np.float64) * _length_factor(ds[xdim], path)
        y = ds[ydim].values.astype(np.float64) * _length_factor(ds[ydim], path)
        values, x, y = _north_up(values, var.dims.index(ydim) - var.ndim, var.dims.index(xdim) - var.ndim, x, y)
        return _finish(values, times, crs, path, x, y, ("y", "x"), common)

    lat, lon = _latlon(ds, var)
    if lat is None or lon is None:
        raise InputFileError(path, f"missing projection: {var.name!r} has no grid_mapping with x/y nor lat/lon coordinates")
    wgs84 = CRS.from_epsg(4326)
    if lat.ndim == 1 and lon.ndim == 1:
        x = lon.values.astype(np.float64)
        y = lat.values.astype(np.float64)
        values, x, y = _north_up(values, var.dims.index(lat.dims[0]) - var.ndim, var.dims.index(lon.dims[0]) - var.ndim, x, y)
        return _finish(values, times, wgs84, path, x, y, ("y", "x"), common)
    lon2 = lon.transpose(*spatial).values.astype(np.float64)
    lat2 = lat.transpose(*spatial).values.astype(np.float64)
    return _finish(values, times, wgs84, path, lon2, lat2, ("row", "col"), common)


def _finish(values, times, crs, path, x, y, dims, common) -> xr.DataArray:
    frames = [
        make_dataarray(frame, t, crs, path, x=x, y=y, dims=dims, **common) for frame, t in zip(values, times)
    ]
    return frames[0] if len(frames) == 1 else xr.concat(frames, dim="time")


def _times(var: xr.DataArray, path: Path) -> np.ndarray:
    if "time" not in var.coords:
        raise InputFileError(path, f"variable {var.name!r} has no time coordinate")
    t = np.atleast_1d(var["time"].values)
    if not np.issubdtype(t.dtype, np.datetime64):
        raise InputFileError(path, "time coordinate could not be decoded to dates (check its units)")
    return t.astype("datetime64[ns]")


def _projection_axes(ds: xr.Dataset, var: xr.DataArray, spatial: list[str]) -> tuple[str | None, str | None]:
    xdim = ydim = None
    for dim in spatial:
        if dim not in ds.coords:
            continue
        attrs = ds[dim].attrs
        std, axis = attrs.get("standard_name"), str(attrs.get("axis", "")).upper()
        if std in _X_NAMES or axis == "X" or (std is None and dim == "x"):
            xdim = dim
        elif std in _Y_NAMES or axis == "Y" or (std is None and dim == "y"):
            ydim = dim
    return (xdim, ydim) if xdim and ydim else (None, None)


def _latlon(ds: xr.Dataset, var: xr.DataArray) -> tuple[xr.DataArray | None, xr.DataArray | None]:
    names = set(var.coords) | set(str(var.attrs.get("coordinates", "")).split())
    lat = lon = None
    for name in names:
        if name not in ds.variables:
            continue
        attrs = ds[name].attrs
        std, units = attrs.get("standard_name"), str(attrs.get("units", ""))
        if std == "latitude" or units.startswith("degree") and units.endswith(("north", "N")):
            lat = ds[name]
        elif std == "longitude" or units.startswith("degree") and units.endswith(("east", "E")):
            lon = ds[name]
    return lat, lon


def _crs(attrs: dict, path: Path) -> CRS:
    try:
        wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
        return CRS.from_wkt(wkt) if wkt else CRS.from_cf(attrs)
    except (CRSError, KeyError, ValueError) as exc:
        raise InputFileError(path, f"invalid grid mapping ({one_line(exc)})") from None


def _length_factor(coord: xr.DataArray, path: Path) -> float:
    units = str(coord.attrs.get("units", "m")).strip().lower()
    if units not in _LENGTH_FACTORS:
        raise InputFileError(path, f"coordinate {coord.name!r} has units {units!r}; expected m or km")
    return _LENGTH_FACTORS[units]


def _north_up(values: np.ndarray, yaxis: int, xaxis: int, x: np.ndarray, y: np.ndarray):
    """Flip so that ``x`` ascends and ``y`` descends; axes are negative indices."""
    if x.size > 1 and x[1] < x[0]:
        values, x = np.flip(values, axis=xaxis), x[::-1]
    if y.size > 1 and y[1] > y[0]:
        values, y = np.flip(values, axis=yaxis), y[::-1]
    if yaxis > xaxis:  # stored (x, y): make it (y, x)
        values = np.swapaxes(values, yaxis, xaxis)
    return np.ascontiguousarray(values), x, y
