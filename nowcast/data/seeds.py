"""Real fields that seed the sequence simulator, on a regular grid.

Each seed is one real radar or satellite file shipped by a registry package
(:mod:`nowcast.samples`), turned into a regular north-up grid in physical
units: rain rate (mm/h) for radar, brightness temperature (K) for satellite
IR, with a coverage mask (True = the instrument observed the pixel).

Reading goes through the project's reader registry
(:func:`nowcast.io.readers.read_file`) and :func:`nowcast.regrid.regrid`
whenever they handle the file. For formats whose reader is not (yet) in the
registry -- NEXRAD Level-III and ODIM polar volumes (``nowcast.io.polar``),
CF netCDF (``nowcast.io.cf_netcdf``), METRANET -- a minimal reader here
builds the same contract-shaped DataArray (``docs/design.md``) with the
field's own library (``pyart``, ``xradar``, ``netCDF4``), so the gridding
and unit handling downstream are shared.

Polar data are gridded onto a local azimuthal-equidistant grid centred on
the radar, at ``resolution_m`` (1-2 km), covering the radar's range.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from pyproj import CRS

from nowcast.errors import InputFileError, NowcastError
from nowcast.grid import RegionGrid, crs_of
from nowcast.samples import sample_path
from nowcast.units import DBZ, KELVIN, MMH, canonical_units, dbz_to_rainrate

log = logging.getLogger(__name__)

Kind = Literal["rain", "brightness_temperature"]

#: Metres per inch, for NEXRAD's digital precipitation rate (in/h).
INCH_MM = 25.4


@dataclass(frozen=True)
class Seed:
    """A real field ready for :func:`nowcast.simulate.simulate_sequence`.

    Attributes
    ----------
    values
        ``(ny, nx)`` float32 in ``units``; NaN outside coverage.
    mask
        ``(ny, nx)`` bool, True where the instrument observed.
    resolution_m
        Grid spacing.
    kind, units
        ``"rain"`` with ``mm h-1`` or ``"brightness_temperature"`` with ``K``.
    sample, source_file, product
        Provenance: registry sample name, file path, what the file holds.
    crs_wkt, x, y
        Georeferencing of the grid (cell centres, ``y`` descending).
    """

    values: np.ndarray
    mask: np.ndarray
    resolution_m: float
    kind: Kind
    units: str
    sample: str
    source_file: str
    product: str
    crs_wkt: str
    x: np.ndarray
    y: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def wet_fraction(self, threshold: float = 0.1) -> float:
        """Fraction of covered pixels at or above ``threshold`` (rain only)."""
        return float(np.mean(self.values[self.mask] >= threshold))


def load_seed(
    sample: str,
    *,
    region: str | None = None,
    resolution_m: float = 1000.0,
    coverage_from: str | None = None,
    zr: tuple[float, float] = (200.0, 1.6),
) -> Seed:
    """Read a real sample file and grid it as a simulator seed.

    Parameters
    ----------
    sample
        Name in :data:`nowcast.samples.SAMPLES`.
    region
        For composites: region config name (e.g. ``swiss-south``) to regrid
        onto; ``None`` keeps the file's own grid.
    resolution_m
        For polar volumes: cell size of the local grid around the radar.
    coverage_from
        Sample whose coverage mask replaces this one's (for products that
        cannot tell "dry" from "not observed", such as METRANET RZC, whose
        network coverage equals that of the CHRFO composite on the same grid).
    zr
        Z-R relation ``(a, b)`` for reflectivity (Marshall-Palmer default).

    Raises
    ------
    InputFileError
        If the file does not hold a usable field.
    NowcastError
        For an unknown sample name or a missing package.
    """
    path = sample_path(sample)
    da = _read(path, sample)
    if da.ndim == 3 and da.dims[1:] != ("y", "x"):
        da = _regrid_polar(_no_echo_as_dry(da), resolution_m)
    elif region is not None:
        from nowcast.config import load_region
        from nowcast.regrid import regrid

        da = regrid(da, RegionGrid.from_region(load_region(region)))
    units = canonical_units(da.attrs.get("units", ""))
    values = np.asarray(da.values[0] if da.ndim == 3 else da.values, dtype=np.float64)
    if units == DBZ:
        values = dbz_to_rainrate(values, *zr).astype(np.float64)
        units = MMH
    kind: Kind = "brightness_temperature" if units == KELVIN else "rain"
    mask = np.isfinite(values)
    if coverage_from is not None:
        other = load_seed(coverage_from, region=region, resolution_m=resolution_m, zr=zr)
        if other.shape != values.shape:
            raise NowcastError(f"seed {sample}: coverage_from={coverage_from} has grid {other.shape}, not {values.shape}")
        mask = other.mask
        values = np.where(mask, np.nan_to_num(values), np.nan)
    if not mask.any():
        raise InputFileError(path, "no covered pixel after gridding")
    x = np.asarray(da["x"].values, dtype=np.float64)
    y = np.asarray(da["y"].values, dtype=np.float64)
    res = float(abs(x[1] - x[0]))
    log.info("seed %s: %s grid %s at %.0f m, %.1f%% covered", sample, kind, values.shape, res, 100 * mask.mean())
    return Seed(
        values=values.astype(np.float32),
        mask=mask,
        resolution_m=res,
        kind=kind,
        units=units,
        sample=sample,
        source_file=path.name,
        product=str(da.attrs.get("product", "")),
        crs_wkt=crs_of(da).to_wkt(),
        x=x,
        y=y,
    )


# ---------------------------------------------------------------- reading --


def _read(path: Path, sample: str) -> xr.DataArray:
    """Reader registry first; a minimal library reader where it has none yet."""
    from nowcast.io.readers import read_file

    fallbacks = {
        "nexrad_l3_reflectivity": _read_nexrad_level3,
        "nexrad_l3_precip_rate": _read_nexrad_level3,
        "finland_odim_pvol": _read_odim_pvol,
        "eumetsat_ir_brightness": _read_cf_netcdf,
        "meteoswiss_metranet_rzc": _read_metranet,
    }
    try:
        return read_file(path)
    except ModuleNotFoundError as exc:
        if sample not in fallbacks:
            raise
        log.info("seed %s: reader registry cannot read it yet (%s); using the minimal seed reader", sample, exc)
    except InputFileError:
        if sample not in fallbacks:
            raise
        log.info("seed %s: reader registry does not recognise it; using the minimal seed reader", sample)
    return fallbacks[sample](path)


def _datetime64(value: object) -> np.datetime64:
    """UTC ``datetime64[ns]`` from a datetime or cftime datetime (pyart returns either)."""
    return np.datetime64(str(value)[:19].replace(" ", "T"), "ns")


def _polar_dataarray(values: np.ndarray, x: np.ndarray, y: np.ndarray, lat: float, lon: float, path: Path, *, units: str, product: str, quantity: str, time: np.datetime64) -> xr.DataArray:
    from nowcast.io.readers import make_dataarray

    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +ellps=WGS84 +units=m +no_defs")
    return make_dataarray(values, time, crs, path, units=units, product=product, quantity=quantity, x=x, y=y, dims=("azimuth", "range"))


def _read_nexrad_level3(path: Path) -> xr.DataArray:
    """NEXRAD Level-III reflectivity (dBZ) or digital precipitation rate (in/h -> mm/h)."""
    from nowcast.io.readers import DBZ_UNDETECT

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyart

        try:
            radar = pyart.io.read_nexrad_level3(str(path))
        except Exception as exc:  # pyart raises bare ValueError/struct errors on bad files
            raise InputFileError(path, f"cannot read as NEXRAD Level-III ({exc})") from None
    name = next(iter(radar.fields))
    field = radar.fields[name]
    data = np.ma.asarray(field["data"])
    x, y, _ = radar.get_gate_x_y_z(0)
    time = _datetime64(pyart.util.datetime_from_radar(radar))
    units = str(field.get("units", ""))
    if units == "inches":  # digital precipitation rate: masked = no precipitation
        values = data.filled(0.0) * INCH_MM
        units, quantity = MMH, "RATE"
    else:  # base reflectivity: masked = below the 5 dBZ threshold, i.e. dry
        values = data.filled(DBZ_UNDETECT)
        units, quantity = DBZ, "DBZH"
    lat = float(radar.latitude["data"][0])
    lon = float(radar.longitude["data"][0])
    return _polar_dataarray(values, x, y, lat, lon, path, units=units, product=f"NEXRAD Level-III {name}", quantity=quantity, time=time)


def _read_odim_pvol(path: Path) -> xr.DataArray:
    """Lowest sweep DBZH of an ODIM_H5 polar volume (xradar); NaN in range = undetect."""
    import xradar

    from nowcast.io.readers import DBZ_UNDETECT

    try:
        tree = xradar.io.open_odim_datatree(str(path))
    except Exception as exc:
        raise InputFileError(path, f"cannot read as ODIM polar volume ({exc})") from None
    sweeps = [k for k in tree.children if k.startswith("sweep")]
    if not sweeps:
        raise InputFileError(path, "ODIM polar volume without sweeps")
    lowest = min(sweeps, key=lambda k: float(tree[k].ds["sweep_fixed_angle"]))
    ds = tree[lowest].ds
    if "DBZH" not in ds:
        raise InputFileError(path, f"sweep {lowest} has no DBZH moment")
    root = tree.ds
    ds = ds.assign_coords({k: root[k] for k in ("latitude", "longitude", "altitude") if k in root and k not in ds.coords})
    ds = ds.xradar.georeference()
    values = np.where(np.isfinite(ds["DBZH"].values), ds["DBZH"].values, DBZ_UNDETECT)
    time = np.datetime64(np.asarray(ds["time"].values).min(), "ns")
    angle = float(ds["sweep_fixed_angle"])
    return _polar_dataarray(
        values, ds["x"].values, ds["y"].values, float(ds["latitude"]), float(ds["longitude"]), path,
        units=DBZ, product=f"lowest sweep {angle:g} deg", quantity="DBZH", time=time,
    )


def _read_cf_netcdf(path: Path) -> xr.DataArray:
    """A CF netCDF grid with one 2-D variable and a grid mapping (EUMETSAT IR sample)."""
    from nowcast.io.readers import make_dataarray

    try:
        ds = xr.open_dataset(path, decode_times=False)
    except Exception as exc:
        raise InputFileError(path, f"cannot read as CF netCDF ({exc})") from None
    with ds:
        names = [n for n, v in ds.data_vars.items() if v.ndim == 2 and "grid_mapping" in v.attrs]
        if not names:
            raise InputFileError(path, "no 2-D variable with a grid_mapping")
        var = ds[names[0]]
        crs = CRS.from_cf(ds[var.attrs["grid_mapping"]].attrs)
        values = var.values.astype(np.float32)
        x, y = ds["x"].values, ds["y"].values
        if y[0] < y[-1]:
            values, y = values[::-1], y[::-1]
        return make_dataarray(
            values, np.datetime64("NaT", "ns"), crs, path, units=var.attrs.get("units", ""),
            product=str(ds.attrs.get("title", names[0])), quantity=str(var.attrs.get("standard_name", names[0])), x=x, y=y,
        )


def _read_metranet(path: Path) -> xr.DataArray:
    """MeteoSwiss METRANET Cartesian composite (RZC) via pyart; masked = dry or unobserved."""
    from nowcast.config import load_region
    from nowcast.io.readers import make_dataarray

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyart

        try:
            grid = pyart.aux_io.read_cartesian_metranet(str(path), reader="python")
        except Exception as exc:
            raise InputFileError(path, f"cannot read as METRANET ({exc})") from None
    name = next(iter(grid.fields))
    values = np.ma.asarray(grid.fields[name]["data"])[0].filled(0.0)
    x, y = grid.x["data"] + 0.0, grid.y["data"] + 0.0
    if y[0] < y[-1]:
        values, y = values[::-1], y[::-1]
    crs = CRS.from_user_input(load_region("swiss").crs)  # METRANET composites use the Swiss grid
    time = _datetime64(pyart.util.datetime_from_grid(grid))
    return make_dataarray(values, time, crs, path, units=MMH, product="METRANET RZC", quantity="RATE", x=x, y=y)


def _no_echo_as_dry(da: xr.DataArray) -> xr.DataArray:
    """Within a single sweep's range, a bin without data is a bin without echo.

    The reader contract keeps ``nodata`` as NaN, which is right for an
    archive; but some exporters write "no echo" as ``nodata`` (the Finnish
    sample volume has no ``undetect`` attribute and 81% of its DBZH bins are
    ``nodata``), and a seed whose dry area is "unobserved" would have its wet
    fraction inflated several-fold. The sweep's range circle is the coverage.
    """
    from nowcast.io.readers import DBZ_UNDETECT

    dry = DBZ_UNDETECT if da.attrs.get("units") == DBZ else 0.0
    return da.fillna(dry)


def _regrid_polar(da: xr.DataArray, resolution_m: float) -> xr.DataArray:
    """Polar sweep -> local azimuthal-equidistant grid covering the radar's range."""
    from nowcast.regrid import regrid

    reach = float(np.nanmax(np.hypot(da["x"].values, da["y"].values)))
    half = resolution_m * np.ceil(reach / resolution_m)
    grid = RegionGrid.from_extent(crs_of(da), (-half, -half, half, half), resolution_m, name="radar")
    return regrid(da, grid)
