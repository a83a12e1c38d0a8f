"""The forecast dataset: the one product every forecaster writes and every consumer reads.

The layout is the contract of docs/design.md ("Forecast dataset"): a CF-1.8
``rain_rate(time, y, x)`` in mm/h where ``time`` is the *valid* time, with
``lead_time`` (``forecast_period``) along it and a scalar
``forecast_reference_time``, on the region grid's own ``x``/``y``/``spatial_ref``.
Keeping it CF means xarray, Panoply, GDAL and QGIS open a forecast without
nowcast installed, and verification/rendering never need to know which method
produced it. The netCDF product passes the IOOS compliance-checker at CF-1.8
without errors (``tests/test_cf_compliance.py``): ``x``/``y`` carry ``axis``
and no fill value, 2-D ``lat``/``lon`` (WGS 84) are auxiliary coordinates,
and instants are stored as ``double`` seconds since the epoch (CF-1.8 has no
64-bit integers). Global attributes record the provenance: method, model and
its checksum, input frame times and where those frames came from
(``data_origin``, e.g. "simulated from real seeds" for the demo's frames).

Only :func:`make_forecast_dataset` builds it (so the layout lives in one
place; :func:`make_ensemble_dataset` wraps it for ensembles: members along
``realization``, their mean and exceedance probabilities); :func:`write_forecast` writes Zarr or netCDF atomically (a scheduled
run killed mid-write must not leave a half file that the next render reads);
:func:`open_forecast` reopens it and turns unreadable files into
:class:`~nowcast.errors.InputFileError`; :func:`to_pysteps` hands it to
pysteps as the ``(precip, metadata)`` pair of pysteps' importers.
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
#: Ensemble products (``nowcast forecast --members N``): the member dimension,
#: the ensemble mean and the exceedance probabilities.
REALIZATION = "realization"
MEAN_VARIABLE = "rain_rate_mean"
PROBABILITY_VARIABLE = "probability_of_exceedance"
THRESHOLD = "threshold"
#: Time encodings: seconds since the epoch for instants, as ``double`` (CF-1.8
#: allows no int64, and int32 seconds end in 2038; a double holds every whole
#: second exactly, so a sub-minute reference time still round-trips) and
#: integer minutes for lead times, as the design asks.
TIME_ENCODING = {"units": "seconds since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian", "dtype": "float64"}
LEAD_ENCODING = {"units": "minutes", "dtype": "int32"}
#: ``data_origin`` of a forecast whose archive does not say where its frames came from.
DEFAULT_DATA_ORIGIN = "radar composites ingested by nowcast"
#: Names of the 2-D auxiliary latitude/longitude coordinates.
LAT, LON = "lat", "lon"
#: The pysteps rain/no-rain threshold (mm/h) when the caller does not give the region's.
PYSTEPS_THRESHOLD = 0.1
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
    data_origin: str | None = None,
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
        extrapolation on held-out data; ``model_study_skill``: the fresh-test
        study its weights were judged on; ``model_trend``: whether this
        forecast added the window's trend; ``model_training_data``: what it was
        trained on, e.g. "simulated from real seeds").
    data_origin
        Where the input frames came from (the archive's ``data_origin``
        attribute: "simulated from real seeds" for the demo's frames);
        default :data:`DEFAULT_DATA_ORIGIN`.

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

    coords = _spatial_coords(grid)
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
            "coordinates": " ".join(["lead_time", "forecast_reference_time", *(c for c in (LAT, LON) if c in coords)]),
            "comment": "NaN (the fill value) = no information: outside radar coverage, or at later leads where the "
                       "rain could have entered from outside the domain (inflow edge of the advection); not dry",
        },
    )
    from nowcast import __version__

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    origin = data_origin or DEFAULT_DATA_ORIGIN
    times = [t if isinstance(t, str) else _iso(t) for t in input_times]
    attrs: dict[str, object] = {
        "Conventions": "CF-1.8",
        "title": f"{method} precipitation nowcast for region {region}",
        "institution": "nowcast",
        "region": region,
        "method": method,
        # the same, under a name no other convention claims (``method`` is kept for existing readers)
        "nowcast_method": method,
        "model": model if model else "none",
        "input_times": times,
        "data_origin": origin,
        "history": f"{now} created by nowcast {__version__} ({method} from {len(times)} input frame(s)"
                   f"{', ' + times[0] + ' to ' + times[-1] if times else ''})",
        "source": f"nowcast {__version__}: {method} nowcast from radar rain rate ({origin})",
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


def make_ensemble_dataset(
    members: np.ndarray,
    grid: RegionGrid,
    reference_time: np.datetime64 | str | pd.Timestamp,
    timestep_minutes: int,
    *,
    thresholds: Sequence[float],
    seed: int,
    noise: str,
    region: str,
    method: str,
    input_times: Sequence[str | np.datetime64],
    probabilities: np.ndarray | None = None,
    mean: np.ndarray | None = None,
    **kwargs,
) -> xr.Dataset:
    """The CF dataset of an ensemble forecast (docs/design.md, "Ensembles").

    The deterministic layout (:func:`make_forecast_dataset`: coordinates,
    grid mapping, provenance attributes) with:

    * ``rain_rate(realization, time, y, x)``: the members (mm/h; NaN = no
      information, as in a deterministic product), ``realization`` being the
      CF ``realization`` coordinate (member number 0 .. N-1);
    * ``rain_rate_mean(time, y, x)``: their mean;
    * ``probability_of_exceedance(threshold, time, y, x)``: the fraction of
      members with rain rate >= each ``threshold`` (a coordinate in mm h-1,
      ``standard_name`` rainfall_rate), units "1", NaN where the members are.

    Stored in chunks of one member and one lead (:func:`write_forecast`).

    Parameters
    ----------
    members
        ``(members, leads, ny, nx)`` mm/h.
    thresholds
        Rain rates (mm/h) of the exceedance probabilities.
    seed, noise
        The ensemble's seed and a line on its noise (global attributes
        ``ensemble_seed``, ``ensemble_noise``).
    probabilities, mean
        Already computed (``(thresholds, leads, ny, nx)``, ``(leads, ny,
        nx)``); default from ``members`` (:func:`nowcast.ensemble.exceedance_probability`,
        :func:`nowcast.ensemble.ensemble_mean`).
    region, method, input_times, **kwargs
        As :func:`make_forecast_dataset`.
    """
    from nowcast.ensemble import ensemble_mean, exceedance_probability

    members = np.asarray(members)
    if members.ndim != 4 or members.shape[0] < 1:
        raise ForecastError(f"region {region!r}: ensemble members have shape {members.shape}, "
                            "expected (members >= 1, leads, ny, nx)")
    thresholds = [float(t) for t in thresholds]
    mean = ensemble_mean(members) if mean is None else np.asarray(mean, dtype=np.float32)
    probabilities = exceedance_probability(members, thresholds) if probabilities is None else probabilities
    base = make_forecast_dataset(mean, grid, reference_time, timestep_minutes, region=region, method=method,
                                 input_times=input_times, **kwargs)
    det = base[VARIABLE]
    coordinates = det.encoding["coordinates"]
    n = members.shape[0]
    coords = {name: c for name, c in det.coords.items()}
    coords[REALIZATION] = xr.DataArray(np.arange(n, dtype=np.int32), dims=REALIZATION, attrs={
        "standard_name": "realization", "long_name": "ensemble member number", "units": "1"})
    coords[THRESHOLD] = xr.DataArray(np.asarray(thresholds, dtype=np.float32), dims=THRESHOLD, attrs={
        "standard_name": "rainfall_rate", "long_name": "rain rate threshold of the exceedance probability",
        "units": "mm h-1"})
    rain = xr.DataArray(
        members.astype(np.float32, copy=False), dims=(REALIZATION, "time", "y", "x"),
        coords={k: v for k, v in coords.items() if k != THRESHOLD}, name=VARIABLE,
        attrs={**det.attrs, "long_name": "forecast rain rate of each ensemble member"},
    )
    rain.encoding["coordinates"] = coordinates
    mean_da = det.copy()
    # No ``cell_methods: "realization: mean"``: CF-1.8 wants its name to be a dimension or scalar
    # coordinate of the variable itself, which ``realization`` is not here (the IOOS checker says so).
    mean_da.attrs.update(long_name="ensemble mean forecast rain rate",
                         comment=f"mean of the {members.shape[0]} members of rain_rate over realization; "
                                 "NaN = no information, as for the members")
    mean_da.encoding["coordinates"] = coordinates
    prob = xr.DataArray(
        np.asarray(probabilities, dtype=np.float32), dims=(THRESHOLD, "time", "y", "x"),
        coords={k: v for k, v in coords.items() if k != REALIZATION}, name=PROBABILITY_VARIABLE,
        attrs={
            "long_name": "probability of rain rate at or above the threshold",
            "units": "1",
            "valid_min": np.float32(0.0),
            "valid_max": np.float32(1.0),
            "grid_mapping": GRID_MAPPING_NAME,
            "comment": f"fraction of the {n} ensemble members with rain rate >= threshold (pysteps "
                       "ensemblestats.excprob convention); NaN = no information",
        },
    )
    prob.encoding["coordinates"] = coordinates
    attrs = dict(base.attrs)
    attrs["title"] = f"{method} ensemble precipitation nowcast ({n} members) for region {region}"
    attrs["ensemble_members"] = np.int32(n)
    attrs["ensemble_seed"] = np.int64(seed)
    attrs["ensemble_noise"] = str(noise)
    attrs["probability_thresholds"] = np.asarray(thresholds, dtype=np.float64)
    return xr.Dataset({VARIABLE: rain, MEAN_VARIABLE: mean_da, PROBABILITY_VARIABLE: prob}, attrs=attrs)


def is_ensemble(ds: xr.Dataset | xr.DataArray) -> bool:
    """Whether a forecast dataset (or its ``rain_rate``) holds ensemble members."""
    da = ds[VARIABLE] if isinstance(ds, xr.Dataset) else ds
    return REALIZATION in da.dims


def _spatial_coords(grid: RegionGrid) -> dict[str, xr.DataArray]:
    """The grid's ``x``/``y``/``spatial_ref`` with CF ``axis`` attributes, plus 2-D
    ``lat``/``lon`` of the cell centres when the grid is projected.

    ``lat``/``lon`` are WGS 84 (EPSG:4326, what maps and GPS use), transformed
    by pyproj from the projected cell centres; for a geographic grid ``x``/``y``
    already are longitude/latitude and no auxiliary pair is added.
    """
    coords = dict(grid.coords())
    coords["x"] = coords["x"].copy()
    coords["y"] = coords["y"].copy()
    coords["x"].attrs["axis"] = "X"
    coords["y"].attrs["axis"] = "Y"
    sref = coords[GRID_MAPPING_NAME]
    if sref.attrs.get("grid_mapping_name") == "oblique_mercator" and "azimuth_of_central_line" in sref.attrs:
        # The IOOS compliance-checker (6.1, appendix_f.py) requires ``azimuth`` where CF's
        # Appendix F names it ``azimuth_of_central_line``: carry both (readers take the CF
        # name or crs_wkt; the extra attribute is harmless).
        coords[GRID_MAPPING_NAME] = sref = sref.copy()
        sref.attrs.setdefault("azimuth", sref.attrs["azimuth_of_central_line"])
    if not grid.crs.is_geographic:
        lon, lat = _lonlat(grid)
        note = "WGS 84 (EPSG:4326) of the cell centre, transformed by pyproj from x/y in the grid mapping"
        coords[LAT] = xr.DataArray(lat, dims=("y", "x"), attrs={
            "standard_name": "latitude", "long_name": "latitude of cell centre", "units": "degrees_north", "comment": note})
        coords[LON] = xr.DataArray(lon, dims=("y", "x"), attrs={
            "standard_name": "longitude", "long_name": "longitude of cell centre", "units": "degrees_east", "comment": note})
    return coords


_LONLAT_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _lonlat(grid: RegionGrid) -> tuple[np.ndarray, np.ndarray]:
    """``grid.lonlat()``, read-only and kept per grid: 0.3 s for 512 x 512 cells
    that a scheduler forecasting every 5 minutes need not pay each time."""
    key = grid.signature
    if key not in _LONLAT_CACHE:
        lon, lat = grid.lonlat()
        lon.setflags(write=False)
        lat.setflags(write=False)
        if len(_LONLAT_CACHE) >= 8:
            _LONLAT_CACHE.pop(next(iter(_LONLAT_CACHE)))
        _LONLAT_CACHE[key] = (lon, lat)
    return _LONLAT_CACHE[key]


def _field_encoding(da: xr.DataArray, engine: str) -> dict[str, object]:
    """float32 with NaN fill, in chunks of one field (one lead; one member and one lead of an ensemble)."""
    chunks = (1,) * (da.ndim - 2) + tuple(da.shape[-2:])
    var: dict[str, object] = {"dtype": "float32", "_FillValue": np.float32(np.nan)}
    if engine == "netcdf4":
        var.update(zlib=True, complevel=4, chunksizes=chunks)
    else:
        var.update(chunks=chunks)
    return var


def _encoding(ds: xr.Dataset, engine: str) -> dict[str, dict]:
    encoding: dict[str, dict] = {
        VARIABLE: _field_encoding(ds[VARIABLE], engine),
        "time": dict(TIME_ENCODING),
        "forecast_reference_time": dict(TIME_ENCODING),
        "lead_time": dict(LEAD_ENCODING),
    }
    for name in (MEAN_VARIABLE, PROBABILITY_VARIABLE):
        if name in ds.data_vars:
            encoding[name] = _field_encoding(ds[name], engine)
    for name in (REALIZATION, THRESHOLD):
        if name in ds.variables:
            encoding[name] = {"_FillValue": None}
    # CF: coordinates hold no missing values, so no _FillValue (xarray adds NaN to floats by default).
    for name in ("x", "y", LAT, LON):
        if name in ds.variables:
            encoding[name] = {"_FillValue": None}
            if engine == "netcdf4" and name in (LAT, LON):
                encoding[name].update(zlib=True, complevel=4)
    for name in ("time", "forecast_reference_time", "lead_time"):
        encoding[name]["_FillValue"] = None
    return encoding


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
    if ds[VARIABLE].dims not in (("time", "y", "x"), (REALIZATION, "time", "y", "x")):
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


def to_pysteps(
    forecast: xr.Dataset | xr.DataArray, threshold: float | None = None
) -> tuple[np.ndarray, dict[str, object]]:
    """The forecast as pysteps' importers return a field: ``(precip, metadata)``.

    ``precip`` feeds :mod:`pysteps.verification` directly and ``metadata`` is
    the ``geodata`` of :func:`pysteps.visualization.plot_precip_field` (a
    DataArray is not: pysteps indexes it like an array and fails).

    Parameters
    ----------
    forecast
        A forecast dataset (:func:`make_forecast_dataset`, :func:`open_forecast`),
        its ``rain_rate`` variable, or any ``(time, y, x)`` rain rate on a
        region grid, such as archived frames (``Archive.window``), so that the
        observations for a verification come out the same way.
    threshold
        The rain/no-rain threshold in mm/h, normally the region's
        ``rain_threshold``; default :data:`PYSTEPS_THRESHOLD` (0.1).

    Returns
    -------
    precip : numpy.ndarray
        ``(time, y, x)`` float64 rain rate in mm/h; NaN = no information;
        for an ensemble product ``(members, time, y, x)``, pysteps' own
        ensemble layout (``pysteps.nowcasts.steps.forecast`` returns it).
        Row 0 is the grid's first ``y`` (the northern edge for nowcast grids,
        ``metadata["yorigin"] == "upper"``).
    metadata : dict
        pysteps metadata: ``projection`` (PROJ string), ``x1``/``y1``/``x2``/
        ``y2`` (cell-edge bounds), ``xpixelsize``/``ypixelsize``,
        ``cartesian_unit``, ``yorigin``, ``unit`` ("mm/h"), ``transform``
        (None), ``zerovalue`` (0.0), ``threshold``, ``accutime`` (the
        timestep in minutes), ``institution``, ``timestamps`` (naive UTC
        :class:`datetime.datetime` of the valid times) and, for a forecast,
        ``leadtimes`` (minutes).

    Raises
    ------
    ForecastError
        If ``forecast`` is not a ``(time, y, x)`` rain rate on a regular grid.
    """
    from nowcast.units import MMH, UNIT_ALIASES

    if isinstance(forecast, xr.Dataset):
        problem = _layout_problem(forecast)
        if problem:
            raise ForecastError(f"to_pysteps: {problem}")
        da, attrs = forecast[VARIABLE], forecast.attrs
    else:
        da, attrs = forecast, {}
    if da.dims not in (("time", "y", "x"), (REALIZATION, "time", "y", "x")):
        raise ForecastError(f"to_pysteps: {da.name!r} has dims {da.dims}, expected ('time', 'y', 'x')")
    units = str(da.attrs.get("units", MMH))
    if UNIT_ALIASES.get(units.strip()) != MMH:
        raise ForecastError(f"to_pysteps: {da.name!r} is in {units!r}; expected a rain rate in mm/h")
    x, y = np.asarray(da["x"].values, dtype=float), np.asarray(da["y"].values, dtype=float)
    if x.size < 2 or y.size < 2:
        raise ForecastError("to_pysteps: need at least 2 cells along x and y to know the cell size")
    dx, dy = np.diff(x), np.diff(y)
    if not (np.allclose(dx, dx[0]) and np.allclose(dy, dy[0])) or dx[0] <= 0:
        raise ForecastError("to_pysteps: x/y are not a regular grid with x ascending")
    grid = forecast_grid(da)
    cartesian_unit = str(da["x"].attrs.get("units", "m"))
    cartesian_unit = "m" if cartesian_unit in ("m", "metre", "meter", "metres", "meters") else cartesian_unit
    xmin, ymin, xmax, ymax = grid.extent
    with warnings.catch_warnings():
        # "You will likely lose important projection information": pysteps takes PROJ strings only.
        warnings.filterwarnings("ignore", message=".*lose important projection information.*")
        projection = grid.crs.to_proj4()
    times = np.asarray(da["time"].values, dtype="datetime64[ns]")
    timestamps = [pd.Timestamp(t).to_pydatetime() for t in times]
    leads = lead_minutes(da) if "lead_time" in da.coords else None
    if times.size > 1:
        accutime = float((times[1] - times[0]) / np.timedelta64(1, "m"))
    elif leads is not None:  # lead k is valid at reference + (k + 1) * timestep
        accutime = float(leads[0])
    else:
        accutime = float("nan")
    metadata: dict[str, object] = {
        "projection": projection,
        "x1": xmin,
        "y1": ymin,
        "x2": xmax,
        "y2": ymax,
        "xpixelsize": float(abs(dx[0])),
        "ypixelsize": float(abs(dy[0])),
        "cartesian_unit": cartesian_unit,
        "yorigin": "upper" if dy[0] < 0 else "lower",
        "unit": "mm/h",
        "transform": None,
        "zerovalue": 0.0,
        "threshold": float(PYSTEPS_THRESHOLD if threshold is None else threshold),
        "accutime": accutime,
        "institution": str(attrs.get("institution", "nowcast")),
        "timestamps": timestamps,
    }
    if leads is not None:
        metadata["leadtimes"] = [int(v) for v in leads]
    return np.asarray(da.values, dtype=np.float64), metadata
