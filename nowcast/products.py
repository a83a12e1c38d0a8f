"""The forecast dataset: the one product every forecaster writes and every consumer reads.

The layout is the contract of docs/design.md ("Forecast dataset"): a CF-1.8
``rain_rate(time, y, x)`` in mm/h where ``time`` is the *valid* time, with
``lead_time`` (``forecast_period``) along it and a scalar
``forecast_reference_time``, on the region grid's own ``x``/``y``/``spatial_ref``.
Keeping it CF means xarray, Panoply, GDAL and QGIS open a forecast without
nowcast installed, and verification/rendering never need to know which method
produced it.

Only :func:`make_forecast_dataset` builds it (so the layout lives in one
place); :func:`write_forecast` writes Zarr or netCDF atomically (a scheduled
run killed mid-write must not leave a half file that the next render reads);
:func:`open_forecast` reopens it and turns unreadable files into
:class:`~nowcast.errors.InputFileError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from nowcast.errors import ForecastError, InputFileError
from nowcast.grid import GRID_MAPPING_NAME, RegionGrid

log = logging.getLogger(__name__)

VARIABLE = "rain_rate"
#: Time encodings: integer seconds since the epoch for instants (radar times
#: are whole minutes, but a sub-minute reference time must still round-trip)
#: and integer minutes for lead times, as the design asks.
TIME_ENCODING = {"units": "seconds since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian", "dtype": "int64"}
LEAD_ENCODING = {"units": "minutes", "dtype": "int32"}
SUFFIXES = {".zarr": "zarr", ".nc": "netcdf4"}


def _as_utc_ns(value: np.datetime64 | str | pd.Timestamp) -> np.datetime64:
    """A naive UTC ``datetime64[ns]`` (aware inputs are converted to UTC)."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


def _iso(t: np.datetime64) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_forecast_dataset(
    values: np.ndarray,
    grid: RegionGrid,
    reference_time: np.datetime64 | str | pd.Timestamp,
    timestep_minutes: int,
    *,
    region: str,
    method: str,
    input_times: Sequence[str | np.datetime64],
    model: str | None = None,
    checkpoint_sha256: str | None = None,
    fallback_reason: str | None = None,
    model_attrs: dict[str, str] | None = None,
) -> xr.Dataset:
    """Wrap forecast fields in the CF forecast dataset of docs/design.md.

    Parameters
    ----------
    values
        ``(leads, ny, nx)`` rain rate in mm/h; lead ``k`` (0-based) is valid at
        ``reference_time + (k + 1) * timestep_minutes``. NaN means "no
        information": outside radar coverage, or where the rain could have
        come from outside the domain (the inflow edge of an advected
        forecast); never "dry".
    grid
        The region grid; its ``coords()`` are copied verbatim so that a
        forecast lines up with the archive exactly.
    reference_time
        Time of the newest input frame (UTC; aware times are converted).
    timestep_minutes
        Spacing of the lead times.
    region, method
        Region name and forecasting method (``tmu``, ``extrapolation``, ...).
    input_times
        Times of the input frames, stored as an ISO 8601 list so a reader can
        see exactly which radar frames the forecast used.
    model, checkpoint_sha256
        Model name and the checksum of its weights (reproducibility).
    fallback_reason
        Why the configured method could not run, if it could not.
    model_attrs
        What the model's checkpoint says about itself, copied as global
        attributes (``model_heldout_skill``: its measured skill against
        extrapolation on held-out data; ``model_training_data``: what it was
        trained on, e.g. "simulated from real seeds").

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ForecastError
        If ``values`` does not have the grid's shape or the timestep is not positive.
    """
    values = np.asarray(values)
    if values.ndim != 3 or values.shape[1:] != grid.shape or values.shape[0] < 1:
        raise ForecastError(
            f"region {region!r}: forecast values have shape {values.shape}, expected (leads >= 1, {grid.shape[0]}, {grid.shape[1]})"
        )
    if int(timestep_minutes) <= 0:
        raise ForecastError(f"region {region!r}: timestep_minutes must be positive, got {timestep_minutes}")
    leads = values.shape[0]
    ref = _as_utc_ns(reference_time)
    lead_time = (np.arange(1, leads + 1) * int(timestep_minutes)).astype("timedelta64[m]").astype("timedelta64[ns]")
    valid = ref + lead_time

    coords = dict(grid.coords())
    coords["time"] = xr.DataArray(valid, dims="time", attrs={"standard_name": "time", "long_name": "valid time", "axis": "T"})
    coords["lead_time"] = xr.DataArray(
        lead_time, dims="time", attrs={"standard_name": "forecast_period", "long_name": "lead time"}
    )
    coords["forecast_reference_time"] = xr.DataArray(
        ref, attrs={"standard_name": "forecast_reference_time", "long_name": "time of the newest input frame"}
    )
    rain = xr.DataArray(
        values.astype(np.float32, copy=False),
        dims=("time", "y", "x"),
        coords=coords,
        name=VARIABLE,
        attrs={
            "units": "mm h-1",
            "standard_name": "rainfall_rate",
            "long_name": "forecast rain rate",
            "grid_mapping": GRID_MAPPING_NAME,
            "coordinates": "lead_time forecast_reference_time",
            "comment": "NaN (the fill value) = no information: outside radar coverage, or at later leads where the "
                       "rain could have entered from outside the domain (inflow edge of the advection); not dry",
        },
    )
    from nowcast import __version__

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs: dict[str, object] = {
        "Conventions": "CF-1.8",
        "title": f"{method} precipitation nowcast for region {region}",
        "region": region,
        "method": method,
        "model": model if model else "none",
        "input_times": [t if isinstance(t, str) else _iso(t) for t in input_times],
        "history": f"{now} created by nowcast {__version__} ({method})",
        "source": f"nowcast {__version__}: {method} nowcast from weather radar rain rate",
    }
    if checkpoint_sha256:
        attrs["checkpoint_sha256"] = checkpoint_sha256
    if fallback_reason:
        attrs["fallback_reason"] = fallback_reason
    for key, value in (model_attrs or {}).items():
        attrs[key] = str(value)
    # ``coordinates`` must be an encoding, not an attribute, for xarray to write it.
    rain.encoding["coordinates"] = rain.attrs.pop("coordinates")
    return xr.Dataset({VARIABLE: rain}, attrs=attrs)


def _encoding(ds: xr.Dataset, engine: str) -> dict[str, dict]:
    ny, nx = ds[VARIABLE].shape[1:]
    var: dict[str, object] = {"dtype": "float32", "_FillValue": np.float32(np.nan)}
    if engine == "netcdf4":
        var.update(zlib=True, complevel=4, chunksizes=(1, ny, nx))
    else:
        var.update(chunks=(1, ny, nx))
    return {
        VARIABLE: var,
        "time": dict(TIME_ENCODING),
        "forecast_reference_time": dict(TIME_ENCODING),
        "lead_time": dict(LEAD_ENCODING),
    }


def _engine_for(path: Path) -> str:
    engine = SUFFIXES.get(path.suffix.lower())
    if engine is None:
        raise InputFileError(path, f"unknown forecast format {path.suffix!r}: use .zarr (Zarr) or .nc (netCDF)")
    return engine


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Zarr v3 warns that consolidated metadata are not yet in its spec; we want them anyway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="zarr")
        yield


def write_forecast(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a forecast dataset as Zarr (``.zarr``) or netCDF-4 (``.nc``), atomically.

    The dataset is written to a hidden temporary sibling and renamed into
    place, so a reader (the renderer, a scheduled run, a GIS) sees either the
    previous complete file or the new complete one, never a torn one. An
    existing forecast at ``path`` is replaced.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputFileError
        For an unknown suffix or when the file cannot be written.
    """
    path = Path(path)
    engine = _engine_for(path)
    if VARIABLE not in ds:
        raise ForecastError(f"{path}: dataset has no {VARIABLE!r} variable; build it with make_forecast_dataset")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    encoding = _encoding(ds, engine)
    try:
        if engine == "zarr":
            with _quiet_zarr():
                ds.to_zarr(str(tmp), mode="w", encoding=encoding, consolidated=True)
        else:
            ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        _replace(tmp, path)
    except OSError as exc:
        raise InputFileError(path, f"cannot write forecast ({exc.strerror or exc})") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink(missing_ok=True)
    log.debug("wrote forecast %s (%s)", path, engine)
    return path


def _replace(new: Path, target: Path) -> None:
    """Move ``new`` onto ``target``; a directory (Zarr) target is swapped out first,
    since ``rename`` cannot replace a non-empty directory."""
    if target.is_dir():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def open_forecast(path: str | Path) -> xr.Dataset:
    """Open a forecast dataset written by :func:`write_forecast` (lazily).

    Use it as a context manager (``with open_forecast(p) as ds:``) to close
    the file afterwards.

    Raises
    ------
    InputFileError
        If the file does not exist, is not Zarr/netCDF, or lacks the
        ``rain_rate(time, y, x)`` variable with ``lead_time`` and
        ``forecast_reference_time``.
    """
    path = Path(path)
    engine = _engine_for(path)
    if not path.exists():
        raise InputFileError(path, "forecast file does not exist")
    try:
        if engine == "zarr":
            with _quiet_zarr():
                ds = xr.open_zarr(str(path), consolidated=None, decode_timedelta=True, chunks=None)
        else:
            ds = xr.open_dataset(path, engine="netcdf4", decode_timedelta=True)
    except Exception as exc:  # noqa: BLE001 - any backend failure means an unreadable file
        raise InputFileError(path, f"not a readable {engine} forecast ({type(exc).__name__}: {exc})") from None
    problem = _layout_problem(ds)
    if problem:
        ds.close()
        raise InputFileError(path, problem)
    return ds


def _layout_problem(ds: xr.Dataset) -> str | None:
    """What is missing for ``ds`` to be a forecast dataset, or ``None``."""
    if VARIABLE not in ds:
        return f"no {VARIABLE!r} variable (variables: {', '.join(map(str, ds.data_vars)) or 'none'})"
    if ds[VARIABLE].dims != ("time", "y", "x"):
        return f"{VARIABLE!r} has dims {ds[VARIABLE].dims}, expected ('time', 'y', 'x')"
    for name in ("lead_time", "forecast_reference_time", GRID_MAPPING_NAME):
        if name not in ds.variables:
            return f"no {name!r} coordinate: not a nowcast forecast dataset"
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        return "'time' is not a decodable CF time coordinate"
    if not np.issubdtype(ds["lead_time"].dtype, np.timedelta64):
        return "'lead_time' is not a decodable lead time (expected integer minutes)"
    return None


def lead_minutes(ds: xr.Dataset) -> np.ndarray:
    """Lead times of a forecast dataset in whole minutes (``int``)."""
    return (ds["lead_time"].values / np.timedelta64(1, "m")).astype(int)


def forecast_grid(ds: xr.Dataset | xr.DataArray, name: str | None = None) -> RegionGrid:
    """The :class:`RegionGrid` a forecast (or any archive-style array) lies on."""
    from nowcast.grid import crs_of

    return RegionGrid(crs_of(ds), np.asarray(ds["x"].values), np.asarray(ds["y"].values),
                      name or str(ds.attrs.get("region", "grid")))
