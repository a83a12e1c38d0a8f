"""Single-radar polar data: the lowest sweep's reflectivity, georeferenced.

Polar volumes (ODIM_H5 ``PVOL``/``SCAN``, CfRadial 1, NEXRAD Level II) are
opened with xradar, the field's reader for radar volumes, and georeferenced
with ``xradar.georeference`` (4/3 effective earth radius beam model, x/y in the
radar-centred azimuthal-equidistant projection). NEXRAD Level III products
(single-elevation, already 2-D) go through Py-ART's
``pyart.io.read_nexrad_level3``, which xradar cannot read; Py-ART comes with the
optional ``samples`` extra and is imported only when such a file is read.

Nowcasting needs the field closest to the ground, so only the lowest sweep
is returned, as ``(time, azimuth, range)`` with 2-D ``x``/``y`` coordinates,
ready for :func:`nowcast.regrid.regrid`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS

from nowcast.errors import InputFileError
from nowcast.io.readers import DBZ_UNDETECT, make_dataarray, one_line
from nowcast.units import DBZ, MMH

log = logging.getLogger(__name__)

#: Reflectivity moment names, in order of preference (ODIM, CfRadial, Py-ART).
REFLECTIVITY_MOMENTS: tuple[str, ...] = (
    "DBZH",
    "TH",
    "DBZ",
    "reflectivity",
    "reflectivity_horizontal",
    "corrected_reflectivity",
    "DBZH_CLEAN",
    "DBZV",
)

#: Millimetres per inch, to convert NEXRAD DPR (inches per hour) to mm/h.
MM_PER_INCH = 25.4


def read_odim_pvol(path: str | Path) -> xr.DataArray:
    """Lowest sweep of an ODIM_H5 polar volume (``PVOL``/``SCAN``)."""
    import xradar

    path = Path(path)
    tree = _open(path, xradar.io.open_odim_datatree, "ODIM_H5 polar volume")
    return _lowest_sweep(tree, path, "ODIM")


def read_cfradial(path: str | Path) -> xr.DataArray:
    """Lowest sweep of a CfRadial 1 file."""
    import xradar

    path = Path(path)
    tree = _open(path, xradar.io.open_cfradial1_datatree, "CfRadial")
    return _lowest_sweep(tree, path, "CfRadial")


def read_nexrad_level2(path: str | Path) -> xr.DataArray:
    """Lowest sweep of a NEXRAD Level II archive volume."""
    import xradar

    path = Path(path)
    tree = _open(path, xradar.io.open_nexradlevel2_datatree, "NEXRAD Level II")
    return _lowest_sweep(tree, path, "NEXRAD L2")


def _open(path: Path, opener, what: str):
    try:
        return opener(str(path))
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, RuntimeError) as exc:
        raise InputFileError(path, f"cannot open as {what}, truncated or corrupt ({one_line(exc)})") from None


def _lowest_sweep(tree, path: Path, family: str) -> xr.DataArray:
    sweeps = [name for name in tree.children if name.startswith("sweep")]
    if not sweeps:
        raise InputFileError(path, "polar file has no sweeps")
    angles = {name: float(tree[name].ds["sweep_fixed_angle"].values) for name in sweeps}
    name = min(sweeps, key=lambda s: (angles[s], s))
    ds = tree[name].to_dataset(inherit=True)
    # DataTree inherits only indexed coordinates; the radar site lives at the root.
    root = tree.ds
    site = {k: root[k] for k in ("latitude", "longitude", "altitude") if k in root and k not in ds.coords}
    ds = ds.assign_coords(site)
    if not {"latitude", "longitude"} <= set(ds.coords):
        raise InputFileError(path, "polar file has no radar latitude/longitude")
    moment = next((m for m in REFLECTIVITY_MOMENTS if m in ds.data_vars), None)
    if moment is None:
        moment = next(
            (v for v, var in ds.data_vars.items() if var.ndim == 2 and str(var.attrs.get("units", "")).lower() == "dbz"),
            None,
        )
    if moment is None:
        moments = sorted(v for v, var in ds.data_vars.items() if var.ndim == 2)
        raise InputFileError(path, f"no reflectivity moment in the lowest sweep (has {', '.join(moments) or 'none'})")
    ds = ds.sortby("azimuth").xradar.georeference()
    import xradar

    crs = xradar.georeference.get_crs(ds)
    var = ds[moment].transpose("azimuth", "range")
    values = np.asarray(var.values, dtype=np.float32)
    if family == "ODIM":
        values = _odim_undetect(path, var, values)
    units = str(var.attrs.get("units", DBZ))
    time = _volume_time(tree, ds, path)
    angle = angles[name]
    return make_dataarray(
        values,
        time,
        crs,
        path,
        units=units,
        product=f"lowest sweep {angle:g} deg {moment}",
        quantity=moment,
        x=ds["x"].transpose("azimuth", "range").values,
        y=ds["y"].transpose("azimuth", "range").values,
        dims=("azimuth", "range"),
        extra_attrs={
            "elevation_deg": angle,
            "radar_longitude": float(ds["longitude"].values),
            "radar_latitude": float(ds["latitude"].values),
            "source_format": family,
        },
    ).assign_coords(azimuth=var["azimuth"].values, range=var["range"].values.astype(np.float64))


def _odim_undetect(path: Path, var: xr.DataArray, values: np.ndarray) -> np.ndarray:
    """Mark ODIM ``undetect`` bins as dry (:data:`DBZ_UNDETECT`).

    xradar decodes ``nodata`` to NaN but leaves ``undetect`` as an ordinary
    number, and it invents ``_Undetect = 0`` when the file has none; only an
    ``undetect`` attribute actually present in the file is trusted, read from
    the file with h5py. Bins whose decoded value equals the decoded marker
    (``undetect * gain + offset``) are the undetect bins, whatever the ray order.
    """
    group = var.encoding.get("group")
    if not group:
        return values
    import h5py

    with h5py.File(path, "r") as f:
        node = f[group]
        what = {**dict(f[group.rsplit("/", 1)[0]]["what"].attrs), **dict(node["what"].attrs)}
    if "undetect" not in what:
        return values
    gain, offset = float(what.get("gain", 1.0)), float(what.get("offset", 0.0))
    marker = np.float32(float(what["undetect"]) * gain + offset)
    values = values.copy()
    values[np.isclose(values, marker, atol=1e-6 * max(1.0, abs(gain)))] = DBZ_UNDETECT
    return values


def _volume_time(tree, ds: xr.Dataset, path: Path) -> np.datetime64:
    """Nominal volume time (``time_coverage_start``), else the sweep's first ray."""
    root = tree.ds
    if "time_coverage_start" in root:
        text = str(root["time_coverage_start"].values).rstrip("Z")
        try:
            return np.datetime64(text, "ns")
        except ValueError:
            pass
    if "time" in ds.coords:
        return np.asarray(ds["time"].values).min().astype("datetime64[ns]")
    raise InputFileError(path, "polar file has no volume or ray times")


def read_nexrad_level3(path: str | Path) -> xr.DataArray:
    """NEXRAD Level III base reflectivity (msg 19/94) or precipitation rate (msg 176).

    Masked bins within the product's range mean "below threshold" and are
    written as dry (:data:`DBZ_UNDETECT` for reflectivity, 0 for rain rate).
    Product 176 (DPR) is in inches per hour (Py-ART labels it "inches"); it is
    converted to mm/h.
    """
    path = Path(path)
    try:
        import pyart
    except ImportError:
        raise InputFileError(
            path, "reading NEXRAD Level III needs Py-ART (optional): pip install 'nowcast[samples]'"
        ) from None
    try:
        radar = pyart.io.read_nexrad_level3(str(path))
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, NotImplementedError) as exc:
        raise InputFileError(path, f"cannot open as NEXRAD Level III ({one_line(exc)})") from None
    if radar.nsweeps != 1:
        raise InputFileError(path, f"NEXRAD Level III with {radar.nsweeps} sweeps; expected 1")
    field = next(iter(radar.fields))
    meta = radar.fields[field]
    data = np.ma.masked_invalid(meta["data"])
    units = str(meta.get("units", ""))
    if "rain_rate" in field or units == "inches":
        values = np.ma.filled(data.astype(np.float32) * np.float32(MM_PER_INCH), 0.0)
        units, quantity = MMH, "DPR"
    else:
        values = np.ma.filled(data.astype(np.float32), DBZ_UNDETECT)
        quantity = field
    order = np.argsort(radar.azimuth["data"], kind="stable")
    lat = float(radar.latitude["data"][0])
    lon = float(radar.longitude["data"][0])
    crs = CRS(proj="aeqd", lon_0=lon, lat_0=lat)  # as xradar.georeference does
    start = np.datetime64(radar.time["units"].split("since")[-1].strip().rstrip("Z"), "ns")
    angle = float(radar.fixed_angle["data"][0])
    return make_dataarray(
        values[order],
        start,
        crs,
        path,
        units=units,
        product=f"lowest sweep {angle:g} deg NEXRAD L3 {quantity}",
        quantity=quantity,
        x=np.asarray(radar.gate_x["data"], dtype=np.float64)[order],
        y=np.asarray(radar.gate_y["data"], dtype=np.float64)[order],
        dims=("azimuth", "range"),
        extra_attrs={"elevation_deg": angle, "radar_longitude": lon, "radar_latitude": lat, "source_format": "NEXRAD L3"},
    ).assign_coords(
        azimuth=np.asarray(radar.azimuth["data"], dtype=np.float64)[order],
        range=np.asarray(radar.range["data"], dtype=np.float64),
    )
