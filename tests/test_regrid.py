"""Reprojection onto region grids: identity, averaging, nearest, coverage, cache, speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast.config import load_region
from nowcast.errors import GridError
from nowcast.grid import RegionGrid, spatial_ref_coord
from nowcast.io.readers import read_file
from nowcast.regrid import clear_cache, get_mapping, regrid


@pytest.fixture(scope="module")
def composite(odim_composite: Path) -> xr.DataArray:
    return read_file(odim_composite)


def _wet(a: np.ndarray, thr: float = 0.1) -> float:
    return float((a[np.isfinite(a)] >= thr).mean())


def test_identity_on_the_swiss_region(composite) -> None:
    grid = load_region("swiss").grid
    out = regrid(composite, grid)
    assert get_mapping(composite, grid).kind == "identity"
    assert out.dims == ("time", "y", "x") and out.name == composite.name
    assert out.attrs["source_file"] == composite.attrs["source_file"]
    np.testing.assert_array_equal(out.values, composite.values)
    np.testing.assert_array_equal(out.x.values, grid.x)
    assert out["time"].values[0] == composite["time"].values[0]


def test_averaging_onto_swiss_south_matches_block_means(composite) -> None:
    """2 km cells aligned on the 1 km grid: each is the NaN-aware mean of 2x2 source cells."""
    grid = load_region("swiss-south").grid
    out = regrid(composite, grid).values[0]
    window = composite.sel(x=slice(grid.extent[0], grid.extent[2]), y=slice(grid.extent[3], grid.extent[1]))
    assert window.shape[1:] == (2 * grid.shape[0], 2 * grid.shape[1])
    expected = window.coarsen(x=2, y=2).mean().values[0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, equal_nan=True)
    # mass, maximum and wet fraction are preserved within averaging tolerance
    assert np.nanmean(out) == pytest.approx(float(np.nanmean(window.values)), rel=0.02)
    src_max = float(np.nanmax(window.values))
    assert 0.5 * src_max <= np.nanmax(out) <= src_max
    assert abs(_wet(out) - _wet(window.values[0])) < 0.05


def test_refining_is_nearest_neighbour(composite) -> None:
    grid = RegionGrid.from_extent(composite.spatial_ref.attrs["crs_wkt"], (600000, 100000, 700000, 200000), 500)
    out = regrid(composite, grid).values[0]
    src = composite.sel(x=slice(600000, 700000), y=slice(200000, 100000)).values[0]
    np.testing.assert_array_equal(out, np.repeat(np.repeat(src, 2, axis=0), 2, axis=1))


def test_partial_overlap_is_nan_outside_coverage(composite) -> None:
    crs = composite.spatial_ref.attrs["crs_wkt"]
    grid = RegionGrid.from_extent(crs, (900000, 400000, 1100000, 600000), 2000, "east")
    out = regrid(composite, grid).values[0]
    inside = (grid.x[None, :] < 965000) & (grid.y[:, None] < 480000)
    assert np.isnan(out[~inside]).all()
    assert np.isfinite(out[inside]).any()


def test_reflectivity_is_averaged_as_power() -> None:
    crs = "EPSG:3035"
    src = RegionGrid.from_extent(crs, (0, 0, 4000, 4000), 1000)
    dst = RegionGrid.from_extent(crs, (0, 0, 4000, 4000), 2000)
    data = np.full((1, 4, 4), 20.0, dtype=np.float32)
    data[0, 0, 0] = 40.0
    da = xr.DataArray(
        data, dims=("time", "y", "x"),
        coords={"time": [np.datetime64("2024-01-01", "ns")], "x": src.x, "y": src.y,
                "spatial_ref": spatial_ref_coord(src.crs)},
        name="reflectivity", attrs={"units": "dBZ", "source_file": "synthetic"},
    )
    out = float(regrid(da, dst).values[0, 0, 0])
    expected = 10 * np.log10((1e4 + 3 * 1e2) / 4)
    assert out == pytest.approx(expected, abs=1e-3) and out > 25.0  # a dB mean would give 25


def test_no_overlap_raises_grid_error_naming_file(composite) -> None:
    grid = RegionGrid.from_extent("EPSG:32618", (500000, 4000000, 600000, 4100000), 1000, "new-york")
    with pytest.raises(GridError) as err:
        regrid(composite, grid)
    msg = str(err.value)
    assert composite.attrs["source_file"] in msg and "overlap" in msg and "\n" not in msg


def test_mapping_is_cached_and_fast(composite) -> None:
    clear_cache()
    grid = load_region("swiss-south").grid
    t0 = time.perf_counter()
    regrid(composite, grid)
    first = time.perf_counter() - t0
    mapping = get_mapping(composite, grid)
    assert get_mapping(composite.copy(), grid) is mapping  # same signature, no rebuild
    n = 20
    for grid_name in ("swiss", "swiss-south"):
        g = load_region(grid_name).grid
        regrid(composite, g)
        t0 = time.perf_counter()
        for _ in range(n):
            regrid(composite, g)
        rate = n / (time.perf_counter() - t0)
        assert rate > 50, f"{grid_name}: {rate:.0f} frames/s"
    assert first > 0
