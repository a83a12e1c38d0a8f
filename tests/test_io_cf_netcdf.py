"""CF netCDF reader: the real EUMETSAT IR grid and CF variants built with xarray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS

from nowcast.errors import InputFileError
from nowcast.grid import RegionGrid, crs_of
from nowcast.io.readers import detect_reader, read_file
from nowcast.regrid import regrid
from nowcast.samples import sample_path

LV03 = "EPSG:21781"


@pytest.fixture(scope="module")
def satellite() -> xr.DataArray:
    return read_file(sample_path("eumetsat_ir_brightness"))


def test_real_satellite_brightness_temperature(satellite) -> None:
    path = sample_path("eumetsat_ir_brightness")
    assert detect_reader(path) == "cf_netcdf"
    da = satellite
    assert da.name == "brightness_temperature" and da.attrs["units"] == "K"
    assert da.attrs["standard_name"] == "toa_brightness_temperature"
    assert da.dims == ("time", "y", "x") and da.shape == (1, 160, 256) and da.dtype == np.float32
    assert 150 < np.nanmin(da.values) < np.nanmax(da.values) < 350
    assert np.all(np.diff(da.x.values) > 0) and np.all(np.diff(da.y.values) < 0)
    assert da["time"].values[0].astype("datetime64[D]") == np.datetime64("2016-05-16")
    crs = crs_of(da)
    assert crs.to_cf()["grid_mapping_name"] == "polar_stereographic" or "Stereographic" in crs.to_wkt()


def test_satellite_regrids_onto_a_european_grid(satellite) -> None:
    grid = RegionGrid.from_extent("EPSG:3035", (2500000, 1500000, 6500000, 5500000), 20000, "europe")
    out = regrid(satellite, grid).values[0]
    finite = out[np.isfinite(out)]
    assert finite.size > 0.5 * out.size
    assert np.nanmin(satellite.values) - 1e-3 <= finite.min() and finite.max() <= np.nanmax(satellite.values) + 1e-3


def _write_projected(path: Path, values: np.ndarray, units: str = "mm/h", ascending_y: bool = True) -> RegionGrid:
    grid = RegionGrid.from_extent(LV03, (600000, 100000, 640000, 130000), 1000, "small")
    crs = CRS.from_user_input(LV03)
    y = grid.y[::-1] if ascending_y else grid.y
    data = values[::-1] if ascending_y else values
    ds = xr.Dataset(
        {
            "precip": (("time", "y", "x"), data[np.newaxis].astype(np.float32),
                       {"units": units, "standard_name": "rainfall_rate", "grid_mapping": "crs"}),
            "crs": ((), np.int32(0), crs.to_cf()),
        },
        coords={
            "time": [np.datetime64("2024-03-01T12:05")],
            "x": ("x", grid.x, {"standard_name": "projection_x_coordinate", "units": "m"}),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m"}),
        },
    )
    ds.to_netcdf(path)
    return grid


def test_projected_grid_is_flipped_north_up(tmp_path: Path) -> None:
    values = np.arange(30 * 40, dtype=np.float32).reshape(30, 40) / 100.0
    grid = _write_projected(tmp_path / "rr.nc", values, ascending_y=True)
    da = read_file(tmp_path / "rr.nc")
    assert da.name == "rain_rate" and da.attrs["units"] == "mm h-1"
    np.testing.assert_allclose(da.y.values, grid.y)
    np.testing.assert_allclose(da.values[0], values)
    # The file's grid is the region grid: regridding is the identity.
    np.testing.assert_array_equal(regrid(da, grid).values[0], da.values[0])


def test_curvilinear_latlon_grid(tmp_path: Path) -> None:
    lon, lat = np.meshgrid(np.linspace(6.0, 10.0, 41), np.linspace(47.5, 45.5, 21))
    lon = lon + 0.05 * (lat - 46.5)  # skewed: not separable, genuinely 2-D
    rate = (lon - 6.0).astype(np.float32)
    ds = xr.Dataset(
        {"rr": (("time", "j", "i"), rate[np.newaxis], {"units": "mm h-1", "standard_name": "rainfall_rate",
                                                         "coordinates": "lat lon"})},
        coords={
            "time": [np.datetime64("2024-03-01T12:00")],
            "lat": (("j", "i"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": (("j", "i"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    ds.to_netcdf(tmp_path / "curv.nc")
    da = read_file(tmp_path / "curv.nc")
    assert da.x.ndim == 2 and da.dims == ("time", "row", "col")
    assert crs_of(da).to_epsg() == 4326
    grid = RegionGrid.from_extent(LV03, (500000, 100000, 700000, 250000), 10000, "box")
    out = regrid(da, grid).values[0]
    lon_t, _ = grid.lonlat()
    ok = np.isfinite(out)
    assert ok.mean() > 0.9
    # values are longitude - 6, so they track the target's own longitudes
    assert np.abs(out[ok] - (lon_t[ok] - 6.0)).max() < 0.2


def test_unknown_units_are_rejected(tmp_path: Path) -> None:
    _write_projected(tmp_path / "bad_units.nc", np.ones((30, 40)), units="furlongs per fortnight")
    with pytest.raises(InputFileError) as err:
        read_file(tmp_path / "bad_units.nc")
    assert "bad_units.nc" in str(err.value) and "furlongs" in str(err.value)
