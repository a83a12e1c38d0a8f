"""ODIM_H5 composite reader on the real MeteoSwiss file and ODIM variants."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from pyproj import CRS, Transformer

from nowcast.config import load_region
from nowcast.grid import crs_of
from nowcast.io import odim
from nowcast.io.odim_write import write_odim_composite
from nowcast.io.readers import DBZ_UNDETECT, detect_reader, read_file
from nowcast.units import dbz_to_rainrate


@pytest.fixture(scope="module")
def swiss():
    return load_region("swiss")


@pytest.fixture(scope="module")
def composite(odim_composite: Path):
    return read_file(odim_composite)


def test_real_composite_follows_contract(composite, odim_composite: Path) -> None:
    da = composite
    assert detect_reader(odim_composite) == "odim_h5"
    assert da.name == "rain_rate" and da.dims == ("time", "y", "x") and da.shape == (1, 640, 710)
    assert da.dtype == np.float32
    assert da.attrs["units"] == "mm h-1" and da.attrs["standard_name"] == "rainfall_rate"
    assert da.attrs["quantity"] == "RATE" and "CHRFO" in da.attrs["product"]
    assert da.attrs["source_file"] == str(odim_composite)
    # time = end of the 09:45-09:50 interval, UTC
    assert da["time"].values[0] == np.datetime64("2024-02-27T09:50:00", "ns")
    values = da.values
    assert np.isnan(values).any() and (values == 0).any() and np.nanmax(values) > 1.0
    assert np.all(np.diff(da.x.values) > 0) and np.all(np.diff(da.y.values) < 0)


def test_real_composite_grid_is_the_swiss_region(composite, swiss) -> None:
    """Corners in this file are pixel centres and xscale=1.0: the grid must still be exact."""
    grid = swiss.grid
    np.testing.assert_array_equal(composite.x.values, grid.x)
    np.testing.assert_array_equal(composite.y.values, grid.y)
    assert crs_of(composite).equals(grid.crs)


def test_known_lonlat_lands_on_right_pixel(composite, odim_composite: Path) -> None:
    with h5py.File(odim_composite) as f:
        where = dict(f["where"].attrs)
    crs = crs_of(composite)
    to_xy = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)
    x, y = composite.x.values, composite.y.values
    # The file's lower-left corner is the centre of the bottom-left pixel.
    px, py = to_xy.transform(where["LL_lon"], where["LL_lat"])
    assert np.argmin(abs(x - px)) == 0 and np.argmin(abs(y - py)) == 639
    assert abs(x[0] - px) < 1 and abs(y[-1] - py) < 1
    # Bern old observatory (LV03 origin, 600 km E / 200 km N) nudged into a cell:
    # x=600 km is the edge between columns 344 and 345 of a grid starting at 255 km.
    px, py = to_xy.transform(7.4395833 + 0.003, 46.9524056 - 0.003)
    col, row = int(np.argmin(abs(x - px))), int(np.argmin(abs(y - py)))
    assert (col, row) == (345, 280)
    assert abs(x[col] - px) <= 500 and abs(y[row] - py) <= 500


def test_standard_edge_corners_give_the_same_grid(tmp_path: Path, composite, swiss) -> None:
    """A file written with ODIM-standard outer corners (and xscale quirk or not) reads identically."""
    data = composite.values[0]
    for xscale in (None, 1.0):
        path = write_odim_composite(
            tmp_path / f"edges_{xscale}.h5",
            data,
            "2024-02-27T09:50",
            swiss.crs,
            extent=swiss.extent,
            xscale=xscale,
            yscale=xscale,
        )
        da = read_file(path)
        np.testing.assert_array_equal(da.x.values, swiss.grid.x)
        np.testing.assert_array_equal(da.y.values, swiss.grid.y)
        np.testing.assert_array_equal(da.values, composite.values)


def test_xscale_disagreement_is_logged(odim_composite: Path, caplog: pytest.LogCaptureFixture) -> None:
    odim.grid_from_where.cache_clear()
    with caplog.at_level(logging.WARNING, logger="nowcast.io.odim"):
        read_file(odim_composite)
    assert any("xscale=1" in r.getMessage() for r in caplog.records)


def test_packed_dbzh_gain_offset_nodata_undetect(tmp_path: Path, swiss) -> None:
    raw = np.full((640, 710), 100, dtype=np.uint8)  # 100 * 0.5 - 32 = 18 dBZ
    raw[:10] = 255  # nodata
    raw[10:20] = 0  # undetect
    path = write_odim_composite(
        tmp_path / "dbzh.h5", raw, "2024-02-27T10:00", swiss.crs, extent=swiss.extent,
        quantity="DBZH", gain=0.5, offset=-32.0, nodata=255, undetect=0,
    )
    da = read_file(path)
    assert da.name == "reflectivity" and da.attrs["units"] == "dBZ"
    assert np.isnan(da.values[0, :10]).all()
    assert (da.values[0, 10:20] == DBZ_UNDETECT).all()
    assert dbz_to_rainrate(np.array([DBZ_UNDETECT]))[0] < 1e-3  # undetect counts as dry
    assert np.allclose(da.values[0, 20:], 18.0)


def test_acrr_is_converted_to_mm_per_hour(tmp_path: Path, swiss) -> None:
    acc = np.full((640, 710), 3.0, dtype=np.float32)  # 3 mm in 15 minutes
    path = write_odim_composite(
        tmp_path / "acrr.h5", acc, "2024-02-27T10:00", swiss.crs, extent=swiss.extent,
        quantity="ACRR", timestep_minutes=15,
    )
    da = read_file(path)
    assert da.name == "rain_rate" and da.attrs["quantity"] == "ACRR"
    assert np.allclose(da.values, 12.0)
    assert "15-minute" in da.attrs["comment"]


def test_time_falls_back_to_nominal_date_time(tmp_path: Path, odim_composite: Path) -> None:
    path = tmp_path / "noend.h5"
    shutil.copyfile(odim_composite, path)
    with h5py.File(path, "r+") as f:
        for key in ("enddate", "endtime", "startdate", "starttime"):
            del f["dataset1/what"].attrs[key]
        f["what"].attrs["time"] = np.bytes_(b"095500")
    da = read_file(path)
    assert da["time"].values[0] == np.datetime64("2024-02-27T09:55:00", "ns")
