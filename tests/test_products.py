"""The forecast dataset: CF layout, Zarr/netCDF round trips, atomic writes, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast.config import load_region
from nowcast.errors import ForecastError, InputFileError
from nowcast.products import DEFAULT_DATA_ORIGIN, lead_minutes, make_forecast_dataset, open_forecast, write_forecast

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
        assert coord.attrs.items() <= ds[name].attrs.items(), name  # the grid's own, plus CF axis etc.
    assert ds.attrs["checkpoint_sha256"] == "ab" * 32 and ds.attrs["model"] == "tmu-swiss"
    assert "fallback_reason" not in ds.attrs
    assert ds.attrs["input_times"] == INPUTS


def test_provenance_attributes(grid):
    ds = _dataset(grid, method="tmu", model="tmu-swiss", checkpoint_sha256="cd" * 32)
    assert ds.attrs["nowcast_method"] == ds.attrs["method"] == "tmu"
    assert ds.attrs["checkpoint_sha256"] == "cd" * 32
    assert ds.attrs["data_origin"] == DEFAULT_DATA_ORIGIN
    assert "tmu" in ds.attrs["history"] and INPUTS[0] in ds.attrs["history"] and INPUTS[-1] in ds.attrs["history"]
    assert "nowcast" in ds.attrs["source"] and DEFAULT_DATA_ORIGIN in ds.attrs["source"]
    sim = _dataset(grid, data_origin="simulated from real seeds: test")
    assert sim.attrs["data_origin"] == "simulated from real seeds: test"
    assert "simulated from real seeds" in sim.attrs["source"]


def test_axes_and_lat_lon_auxiliary_coordinates(grid):
    from pyproj import Transformer

    ds = _dataset(grid)
    assert ds["x"].attrs["axis"] == "X" and ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert ds["y"].attrs["axis"] == "Y" and ds["y"].attrs["standard_name"] == "projection_y_coordinate"
    assert ds["time"].attrs["axis"] == "T"
    lat, lon = ds["lat"], ds["lon"]
    assert lat.dims == lon.dims == ("y", "x")
    assert lat.attrs["standard_name"] == "latitude" and lat.attrs["units"] == "degrees_north"
    assert lon.attrs["standard_name"] == "longitude" and lon.attrs["units"] == "degrees_east"
    assert set(ds["rain_rate"].encoding["coordinates"].split()) >= {"lat", "lon", "lead_time", "forecast_reference_time"}
    # one cell centre, independently: pyproj from the swiss grid's CRS to WGS 84
    row, col = 17, 101
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    want_lon, want_lat = tr.transform(grid.x[col], grid.y[row])
    assert float(lon[row, col]) == pytest.approx(want_lon, abs=1e-9)
    assert float(lat[row, col]) == pytest.approx(want_lat, abs=1e-9)
    # swiss-south: 256 km square from the Alps into the Po valley; rows run north to south, columns west to east
    assert 44.0 < float(lat.min()) < float(lat.max()) < 47.0 and 7.5 < float(lon.min()) < float(lon.max()) < 11.5
    assert (np.diff(lat.values, axis=0) < 0).all() and (np.diff(lon.values, axis=1) > 0).all()


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_written_coordinates_are_cf(grid, tmp_path: Path, suffix: str):
    path = write_forecast(_dataset(grid), tmp_path / f"fc{suffix}")
    with xr.open_dataset(path, decode_times=False, decode_timedelta=False, decode_coords=False,
                         engine="zarr" if suffix == ".zarr" else None) as raw:
        for name in ("x", "y", "lat", "lon", "time", "forecast_reference_time", "lead_time"):
            assert "_FillValue" not in raw[name].attrs, name
        # CF-1.8 knows no int64: instants are doubles, exact to the second
        assert raw["time"].dtype == np.float64 and raw["forecast_reference_time"].dtype == np.float64
        assert raw["rain_rate"].attrs["coordinates"].split()[-2:] == ["lat", "lon"]
        assert raw["x"].attrs["axis"] == "X" and raw["y"].attrs["axis"] == "Y"
    with open_forecast(path) as back:
        np.testing.assert_allclose(back["lat"].values, grid.lonlat()[1])
        assert back["lat"].dims == ("y", "x")


def test_sub_minute_reference_time_round_trips(grid, tmp_path: Path):
    ds = make_forecast_dataset(_values(grid, 2), grid, "2024-02-27T10:05:37Z", 5, region="swiss-south",
                               method="persistence", input_times=INPUTS)
    with open_forecast(write_forecast(ds, tmp_path / "fc.nc")) as back:
        assert back["forecast_reference_time"].values == np.datetime64("2024-02-27T10:05:37", "ns")
        assert back["time"].values[0] == np.datetime64("2024-02-27T10:10:37", "ns")


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


# ---------------------------------------------------------------- pysteps
def _obs(grid, n: int = 6) -> xr.DataArray:
    """Observed frames as the archive holds them: (time, y, x) mm/h on the grid."""
    rng = np.random.default_rng(2)
    values = rng.gamma(0.4, 2.0, size=(n, *grid.shape)).astype(np.float32)
    values[:, -3:, :] = np.nan  # a coverage gap along the southern edge
    times = REF + np.arange(1, n + 1) * np.timedelta64(5, "m")
    return xr.DataArray(values, dims=("time", "y", "x"), name="rain_rate", attrs={"units": "mm h-1"},
                        coords={"time": times, **grid.coords()})


def test_to_pysteps_gives_array_and_pysteps_metadata(grid):
    from nowcast.products import to_pysteps

    ds = _dataset(grid)
    precip, meta = to_pysteps(ds, threshold=0.2)
    assert precip.shape == (6, *grid.shape) and precip.dtype == np.float64
    np.testing.assert_array_equal(precip, ds["rain_rate"].values)  # NaN included
    xmin, ymin, xmax, ymax = grid.extent
    assert (meta["x1"], meta["y1"], meta["x2"], meta["y2"]) == (xmin, ymin, xmax, ymax)
    assert meta["xpixelsize"] == meta["ypixelsize"] == 2000.0 and meta["cartesian_unit"] == "m"
    assert meta["yorigin"] == "upper"  # row 0 is the northern edge
    assert meta["unit"] == "mm/h" and meta["transform"] is None and meta["zerovalue"] == 0.0
    assert meta["threshold"] == 0.2 and meta["accutime"] == 5.0 and meta["leadtimes"] == [5, 10, 15, 20, 25, 30]
    assert meta["institution"] == "nowcast"
    assert [t.isoformat() for t in meta["timestamps"][:2]] == ["2024-02-27T10:10:00", "2024-02-27T10:15:00"]
    from pyproj import CRS

    assert CRS.from_proj4(meta["projection"]).equals(grid.crs, ignore_axis_order=True)
    assert to_pysteps(ds)[1]["threshold"] == 0.1
    # the archive's frames come out the same way (no lead times), so both sides of a verification match
    obs, obs_meta = to_pysteps(_obs(grid))
    assert obs.shape == precip.shape and "leadtimes" not in obs_meta
    assert {k: v for k, v in obs_meta.items() if k not in ("institution", "threshold")} == {
        k: v for k, v in meta.items() if k not in ("institution", "threshold", "leadtimes")}


def test_to_pysteps_refuses_what_it_cannot_describe(grid):
    from nowcast.products import to_pysteps

    with pytest.raises(ForecastError, match="no 'rain_rate' variable"):
        to_pysteps(xr.Dataset({"precip": (("y", "x"), np.zeros((2, 2)))}))
    dbz = _obs(grid).assign_attrs(units="dBZ")
    with pytest.raises(ForecastError, match="'dBZ'; expected a rain rate in mm/h"):
        to_pysteps(dbz)
    with pytest.raises(ForecastError, match=r"dims \('y', 'x'\)"):
        to_pysteps(_obs(grid).isel(time=0))


def test_to_pysteps_output_feeds_pysteps_verification(grid, tmp_path: Path):
    import nowcast._pysteps  # noqa: F401
    from pysteps.verification.detcatscores import det_cat_fct
    from pysteps.verification.spatialscores import fss

    from nowcast.products import to_pysteps

    raw_fc, raw_obs = _values(grid), _obs(grid).values
    with open_forecast(write_forecast(_dataset(grid), tmp_path / "fc.nc")) as ds:
        fc, meta = to_pysteps(ds)
    obs, _ = to_pysteps(_obs(grid))
    thr = meta["threshold"]
    for k in (0, 5):
        assert fss(fc[k], obs[k], thr, 5) == pytest.approx(fss(raw_fc[k], raw_obs[k], thr, 5), rel=1e-12)
        ok = np.isfinite(fc[k]) & np.isfinite(obs[k])
        got = det_cat_fct(fc[k][ok], obs[k][ok], thr, scores=("CSI", "POD", "FAR"))
        ok_raw = np.isfinite(raw_fc[k]) & np.isfinite(raw_obs[k])
        want = det_cat_fct(raw_fc[k][ok_raw], raw_obs[k][ok_raw], thr, scores=("CSI", "POD", "FAR"))
        assert got == pytest.approx(want) and 0 < got["CSI"] < 1
    # the whole sequence at once, as pysteps' own verification examples pass it
    assert det_cat_fct(fc, obs, thr, scores=("CSI",))["CSI"] == pytest.approx(
        det_cat_fct(raw_fc, raw_obs, thr, scores=("CSI",))["CSI"])


@pytest.mark.filterwarnings("ignore:The set_.* function will be deprecated:PendingDeprecationWarning")
def test_to_pysteps_metadata_is_pysteps_geodata(grid):
    """plot_precip_field takes the metadata as geodata: north up, on the grid's own extent.

    The axes are made here in the projection pysteps derives from the metadata,
    so pysteps draws no Natural Earth basemap (which it would download)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nowcast._pysteps  # noqa: F401
    from pysteps.visualization import plot_precip_field
    from pysteps.visualization.utils import get_geogrid, proj4_to_cartopy

    from nowcast.products import to_pysteps

    values = np.zeros((1, *grid.shape), dtype=np.float32)
    values[0, :10, :] = 5.0  # rain along the northern edge only
    ds = make_forecast_dataset(values, grid, REF, 5, region="swiss-south", method="persistence", input_times=INPUTS)
    precip, meta = to_pysteps(ds)
    x_grid, y_grid, extent, regular, origin = get_geogrid(*precip.shape[1:], meta)
    np.testing.assert_allclose(x_grid[0], grid.x)
    np.testing.assert_allclose(y_grid[:, 0], grid.y)  # row 0 = northernmost cell centre
    assert extent == (meta["x1"], meta["x2"], meta["y1"], meta["y2"]) and regular and origin == "upper"

    fig = plt.figure()
    try:
        ax = fig.add_subplot(projection=proj4_to_cartopy(meta["projection"]))
        assert plot_precip_field(precip[0], geodata=meta, ax=ax, title="nowcast") is ax
        (image,) = ax.get_images()
        assert tuple(image.get_extent()) == extent and image.origin == "upper"
        shown = np.ma.filled(image.get_array().astype(float), np.nan)
        assert (shown[:10] == 5.0).all() and (shown[10:] == 0.0).all()  # the rain is drawn at the top
        # without a map projection at all (map_kwargs plot_map=None) the same metadata serve too
        fig2 = plt.figure()
        ax2 = plot_precip_field(precip[0], geodata=meta, map_kwargs={"plot_map": None})
        assert ax2.get_xlim() == (meta["x1"], meta["x2"]) and ax2.get_ylim() == (meta["y1"], meta["y2"])
        plt.close(fig2)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- data origin through run_forecast
def test_forecast_copies_the_archive_data_origin(home, odim_moving, tmp_path: Path):
    from nowcast.forecast import run_forecast
    from nowcast.io.archive import Archive
    from pipelines.ingest import ingest_files

    assert not ingest_files(odim_moving(4), "swiss-south", home=home, scheduler="synchronous", progress=False).skipped
    out = run_forecast("swiss-south", home=home, method="persistence", leads=2, out=tmp_path / "a.nc").path
    with open_forecast(out) as ds:
        assert ds.attrs["data_origin"] == DEFAULT_DATA_ORIGIN
        assert list(np.atleast_1d(ds.attrs["input_times"]))[-1] == "2024-02-27T10:05:00Z"

    archive = Archive.open("swiss-south", home=home, create=False)
    archive.set_attrs(data_origin="simulated from real seeds: a test")
    reopened = Archive.open("swiss-south", home=home, create=False)
    assert reopened.attrs["data_origin"] == "simulated from real seeds: a test" and len(reopened) == 4
    out = run_forecast("swiss-south", home=home, method="persistence", leads=2, out=tmp_path / "b.nc").path
    with open_forecast(out) as ds:
        assert ds.attrs["data_origin"] == "simulated from real seeds: a test"
        assert "simulated from real seeds" in ds.attrs["source"]
