"""Polar readers: the real Finnish ODIM volume (xradar) and NEXRAD Level III (Py-ART)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS, Transformer

from nowcast.grid import RegionGrid, crs_of
from nowcast.io.readers import detect_reader, read_file
from nowcast.regrid import regrid
from nowcast.samples import sample_path


@pytest.fixture(scope="module")
def sweep() -> xr.DataArray:
    return read_file(sample_path("finland_odim_pvol"))


def test_odim_volume_lowest_sweep(sweep) -> None:
    assert detect_reader(sample_path("finland_odim_pvol")) == "odim_pvol"
    da = sweep
    assert da.name == "reflectivity" and da.attrs["units"] == "dBZ"
    assert da.dims == ("time", "azimuth", "range") and da.shape == (1, 360, 500)
    assert da.attrs["product"] == "lowest sweep 0.5 deg DBZH"
    assert da.x.dims == ("azimuth", "range") and da.y.dims == ("azimuth", "range")
    assert da["time"].values[0] == np.datetime64("2023-08-07T16:10:08", "ns")
    assert np.all(np.diff(da.azimuth.values) > 0)
    # radar-centred AEQD: the origin is the Korpo radar, gates reach ~250 km
    lon, lat = Transformer.from_crs(crs_of(da), CRS.from_epsg(4326), always_xy=True).transform(0.0, 0.0)
    assert lon == pytest.approx(21.643, abs=1e-3) and lat == pytest.approx(60.128, abs=1e-3)
    r = np.hypot(da.x.values, da.y.values)
    assert 245e3 < r.max() < 251e3
    assert -40 < np.nanmin(da.values) < np.nanmax(da.values) < 80


def test_sweep_regrids_with_nan_beyond_range(sweep) -> None:
    # ETRS-TM35FIN (Finland's national grid), 2 km, 700 km square around the radar
    crs = CRS.from_epsg(3067)
    x0, y0 = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True).transform(21.6434, 60.1285)
    grid = RegionGrid.from_extent(crs, (x0 - 350e3, y0 - 350e3, x0 + 350e3, y0 + 350e3), 2000, "korpo")
    out = regrid(sweep, grid).values[0]
    dist = np.hypot(*np.meshgrid(grid.x - x0, grid.y - y0))
    assert np.isnan(out[dist > 255e3]).all()
    assert np.isfinite(out[dist < 240e3]).any()
    assert np.nanmax(out) <= np.nanmax(sweep.values) + 1e-3


def test_nexrad_level3_reflectivity_and_rate() -> None:
    pytest.importorskip("pyart")
    refl = read_file(sample_path("nexrad_l3_reflectivity"))
    assert detect_reader(sample_path("nexrad_l3_reflectivity")) == "nexrad_level3"
    assert refl.name == "reflectivity" and refl.shape == (1, 360, 230)
    assert np.nanmax(refl.values) == pytest.approx(45.0) and refl.attrs["product"].startswith("lowest sweep 0.5 deg")
    rate = read_file(sample_path("nexrad_l3_precip_rate"))
    assert rate.name == "rain_rate" and rate.attrs["units"] == "mm h-1" and rate.shape == (1, 360, 920)
    # DPR is in inches per hour: 4.048 in/h is the file's maximum
    assert np.nanmax(rate.values) == pytest.approx(4.048 * 25.4, rel=1e-3)
    # masked bins are "below threshold" (dry), not missing data
    assert np.isfinite(rate.values).all() and (rate.values == 0).any()


def test_cfradial_is_detected_and_read() -> None:
    pyart = pytest.importorskip("pyart")
    path = Path(str(importlib.resources.files(pyart) / "testing" / "data" / "example_cfradial_ppi.nc"))
    assert detect_reader(path) == "cfradial"
    da = read_file(path)
    assert da.name == "reflectivity" and da.attrs["product"].startswith("lowest sweep")
    assert da.x.ndim == 2
