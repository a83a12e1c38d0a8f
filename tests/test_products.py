"""The forecast dataset: CF layout, Zarr/netCDF round trips, atomic writes, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast.config import load_region
from nowcast.errors import ForecastError, InputFileError
from nowcast.products import lead_minutes, make_forecast_dataset, open_forecast, write_forecast

REF = np.datetime64("2024-02-27T10:05", "ns")
INPUTS = ["2024-02-27T09:50:00Z", "2024-02-27T09:55:00Z", "2024-02-27T10:00:00Z", "2024-02-27T10:05:00Z"]


@pytest.fixture(scope="module")
def grid():
    return load_region("swiss-south").grid


def _values(grid, leads: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1)
    values = rng.gamma(0.4, 2.0, size=(leads, *grid.shape)).astype(np.float32)
    values[:, :5, :7] = np.nan  # outside coverage
    return values


def _dataset(grid, **kwargs):
    args = dict(region="swiss-south", method="extrapolation", input_times=INPUTS)
    args.update(kwargs)
    return make_forecast_dataset(_values(grid), grid, "2024-02-27T11:05:00+01:00", 5, **args)


def test_layout_follows_the_design(grid):
    ds = _dataset(grid, model="tmu-swiss", checkpoint_sha256="ab" * 32, fallback_reason=None)
    da = ds["rain_rate"]
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32
    assert da.attrs["grid_mapping"] == "spatial_ref" and da.attrs["standard_name"] == "rainfall_rate"
    # an aware reference time is converted to UTC; valid times follow at the timestep
    assert ds["forecast_reference_time"].values == REF
    np.testing.assert_array_equal(ds["time"].values, REF + np.arange(1, 7) * np.timedelta64(5, "m"))
    np.testing.assert_array_equal(lead_minutes(ds), [5, 10, 15, 20, 25, 30])
    for name, coord in grid.coords().items():
        np.testing.assert_array_equal(ds[name].values, coord.values)
        assert ds[name].attrs == coord.attrs, name
    assert ds.attrs["checkpoint_sha256"] == "ab" * 32 and ds.attrs["model"] == "tmu-swiss"
    assert "fallback_reason" not in ds.attrs
    assert ds.attrs["input_times"] == INPUTS


def test_wrong_shape_is_refused(grid):
    with pytest.raises(ForecastError, match=r"swiss-south.*shape \(3, 10, 10\)"):
        make_forecast_dataset(np.zeros((3, 10, 10)), grid, REF, 5, region="swiss-south", method="x", input_times=[])


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_round_trip_keeps_values_and_cf_encoding(grid, tmp_path: Path, suffix: str):
    ds = _dataset(grid, fallback_reason="model could not run: checkpoint missing")
    path = write_forecast(ds, tmp_path / f"fc{suffix}")
    with open_forecast(path) as back:
        np.testing.assert_array_equal(back["rain_rate"].values, ds["rain_rate"].values)  # NaN included
        np.testing.assert_array_equal(back["lead_time"].values, ds["lead_time"].values)
        assert back["forecast_reference_time"].values == REF
        assert back.attrs["fallback_reason"].startswith("model could not run")
        assert list(np.atleast_1d(back.attrs["input_times"])) == INPUTS
    with xr.open_dataset(path, decode_times=False, decode_timedelta=False,
                         engine="zarr" if suffix == ".zarr" else None) as raw:
        assert raw["lead_time"].attrs["units"] == "minutes"
        assert np.issubdtype(raw["lead_time"].dtype, np.integer)
        np.testing.assert_array_equal(raw["lead_time"].values, [5, 10, 15, 20, 25, 30])
        assert raw["lead_time"].attrs["standard_name"] == "forecast_period"


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_rewrite_replaces_atomically_and_leaves_no_debris(grid, tmp_path: Path, suffix: str):
    path = tmp_path / f"fc{suffix}"
    write_forecast(_dataset(grid, method="persistence"), path)
    write_forecast(_dataset(grid, method="sprog"), path)
    with open_forecast(path) as ds:
        assert ds.attrs["method"] == "sprog"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_failed_write_keeps_the_previous_forecast(grid, tmp_path: Path, monkeypatch):
    path = tmp_path / "fc.nc"
    write_forecast(_dataset(grid, method="persistence"), path)

    def disk_full(self, target, *args, **kwargs):
        Path(target).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", disk_full)
    with pytest.raises(InputFileError, match=r"fc\.nc: cannot write forecast \(No space left"):
        write_forecast(_dataset(grid, method="sprog"), path)
    monkeypatch.undo()
    with open_forecast(path) as ds:
        assert ds.attrs["method"] == "persistence"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fc.nc"]


def test_bad_files_raise_input_file_error_naming_the_file(grid, tmp_path: Path):
    with pytest.raises(InputFileError, match=r"missing\.nc: .*does not exist"):
        open_forecast(tmp_path / "missing.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(InputFileError, match=r"junk\.nc: not a readable"):
        open_forecast(junk)
    with pytest.raises(InputFileError, match=r"fc\.tif: unknown forecast format"):
        open_forecast(tmp_path / "fc.tif")
    other = tmp_path / "other.nc"
    xr.Dataset({"precip": (("y", "x"), np.zeros((2, 2)))}).to_netcdf(other)
    with pytest.raises(InputFileError, match=r"other\.nc: no 'rain_rate' variable"):
        open_forecast(other)
