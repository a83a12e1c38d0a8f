"""The operational forecast path: window selection, tiling, fallback, CF output."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.errors import ForecastError
from nowcast.forecast import predict_tiled, select_window, tile_layout

T0 = np.datetime64("2024-02-27T09:50", "ns")
STEP = np.timedelta64(5, "m")


def _times(*k: int) -> np.ndarray:
    return np.array([T0 + i * STEP for i in k], dtype="datetime64[ns]")


# ---------------------------------------------------------------- window
def test_window_ends_at_newest_frame_by_default():
    w = select_window(_times(0, 1, 2, 3, 4), None, 4, 5, 15, "r")
    np.testing.assert_array_equal(w, _times(1, 2, 3, 4))


def test_window_ends_at_newest_frame_before_requested_time():
    w = select_window(_times(0, 1, 2, 3, 4), T0 + 3 * STEP + np.timedelta64(2, "m"), 3, 5, 15, "r")
    np.testing.assert_array_equal(w, _times(1, 2, 3))


@pytest.mark.parametrize("present, missing", [((0, 2, 3), 1), ((3,), 3), ((0, 3), 2)])
def test_missing_frames_are_counted(present, missing):
    with pytest.raises(ForecastError, match=rf"region 'r': {missing} of 4 input frames missing"):
        select_window(_times(*present), None, 4, 5, 15, "r")


def test_stale_window_is_refused_and_says_how_many_frames():
    # newest frame 09:55, requested 10:20: 25 min old, 5 timesteps missing at the end.
    with pytest.raises(ForecastError, match=r"stale.*25 min older.*5 frame\(s\) missing"):
        select_window(_times(-2, -1, 0, 1), T0 + 6 * STEP, 4, 5, 15, "r")


def test_empty_archive_and_time_before_archive():
    with pytest.raises(ForecastError, match="4 of 4 input frames missing"):
        select_window(np.array([], dtype="datetime64[ns]"), None, 4, 5, 15, "r")
    with pytest.raises(ForecastError, match="no frame at or before"):
        select_window(_times(0, 1), T0 - STEP, 2, 5, 15, "r")


# ---------------------------------------------------------------- tiling
@pytest.mark.parametrize("size, tile, overlap", [(512, 256, 32), (128, 256, 32), (710, 256, 32), (300, 100, 10)])
def test_tile_layout_covers_with_overlap(size, tile, overlap):
    lay = tile_layout(size, tile, overlap)
    assert lay[0][0] == 0 and lay[-1][0] + lay[-1][1] == size
    assert all(length <= tile for _, length in lay)
    for (s0, l0), (s1, _) in zip(lay, lay[1:]):
        assert s0 + l0 - s1 >= overlap  # neighbours share at least `overlap` cells


def _persistence(window: np.ndarray, leads: int) -> np.ndarray:
    return np.repeat(window[-1:], leads, axis=0)


def _window(rng: np.random.Generator, ny: int, nx: int) -> np.ndarray:
    return rng.gamma(0.5, 2.0, size=(4, ny, nx)).astype(np.float32)


@pytest.mark.parametrize("shape, multiple", [((200, 300), 1), ((130, 250), 4), ((64, 64), 4)])
def test_tiled_pixelwise_predictor_reproduces_untiled_exactly(shape, multiple):
    rng = np.random.default_rng(0)
    window = _window(rng, *shape)
    calls = []

    def predict(w, leads):
        calls.append(w.shape)
        assert w.shape[1] % multiple == 0 and w.shape[2] % multiple == 0
        return _persistence(w, leads)

    out = predict_tiled(predict, window, 3, tile=96, overlap=16, multiple=multiple)
    np.testing.assert_array_equal(out, _persistence(window, 3))
    assert out.dtype == np.float32
    assert len(calls) > 1 or shape == (64, 64)  # really tiled


def test_small_domain_is_one_call():
    window = _window(np.random.default_rng(1), 40, 50)
    calls = []
    out = predict_tiled(lambda w, n: calls.append(w.shape) or _persistence(w, n), window, 2, tile=64)
    assert calls == [(4, 40, 50)]
    np.testing.assert_array_equal(out, _persistence(window, 2))


def test_blending_leaves_no_seams():
    """Each tile adds its own offset (a model whose output depends on context):
    hard tile edges would jump by the offset difference; ramps spread it."""
    window = np.zeros((4, 256, 256), dtype=np.float32)
    offsets = iter(range(100))
    overlap = 32

    def biased(w, leads):
        return np.full((leads, *w.shape[1:]), 10.0 * next(offsets), dtype=np.float32)

    out = predict_tiled(biased, window, 1, tile=96, overlap=overlap)
    lay = tile_layout(256, 96, overlap)
    jump = 10.0 * (len(lay) ** 2)  # the largest offset difference between two tiles
    step_x = np.abs(np.diff(out[0], axis=1)).max()
    step_y = np.abs(np.diff(out[0], axis=0)).max()
    # A linear ramp over >= `overlap` cells moves at most jump/overlap per cell.
    assert max(step_x, step_y) <= jump / overlap + 1e-3
    assert max(step_x, step_y) > 0  # the tiles really differed


def test_predictor_with_wrong_shape_is_an_error():
    window = _window(np.random.default_rng(2), 100, 100)
    with pytest.raises(ForecastError, match="shape"):
        predict_tiled(lambda w, n: np.zeros((n, 3, 3)), window, 2, tile=64, overlap=8)


# ---------------------------------------------------------------- run_forecast on a real archive
REGION = "swiss-south"


def _archive(home, files):
    from pipelines.ingest import ingest_files

    report = ingest_files(files, REGION, home=home, scheduler="synchronous", progress=False)
    assert not report.skipped
    return report


@pytest.fixture()
def moving_archive(home, odim_moving):
    """swiss-south archive of 7 frames of the real field moving 2 km east per 5 min."""
    _archive(home, odim_moving(7))
    return home


def _raw_attrs(path):
    """Attributes as stored in the file, before xarray's CF decoding."""
    import xarray as xr

    with xr.open_dataset(path, decode_times=False, decode_timedelta=False) as raw:
        return {name: dict(raw[name].attrs) for name in raw.variables}, dict(raw.attrs)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_forecast_file_is_cf_in_plain_xarray(moving_archive, tmp_path, suffix):
    import xarray as xr
    from pyproj import CRS

    from nowcast.config import load_region
    from nowcast.forecast import run_forecast

    out = tmp_path / f"fc{suffix}"
    result = run_forecast(REGION, home=moving_archive, time="2024-02-27T10:05:00Z", method="persistence", leads=6, out=out)
    assert result.path == out and result.method == "persistence" and result.fallback_reason is None
    ref = np.datetime64("2024-02-27T10:05", "ns")
    with xr.open_dataset(out, engine="zarr" if suffix == ".zarr" else None) as ds:
        da = ds["rain_rate"]
        assert da.dims == ("time", "y", "x") and da.dtype == np.float32
        assert da.attrs["units"] == "mm h-1" and da.attrs["standard_name"] == "rainfall_rate"
        np.testing.assert_array_equal(ds["time"].values, ref + np.arange(1, 7) * np.timedelta64(5, "m"))
        assert ds["forecast_reference_time"].values == ref
        assert ds["forecast_reference_time"].attrs["standard_name"] == "forecast_reference_time"
        np.testing.assert_array_equal(ds["lead_time"].values, np.arange(1, 7) * np.timedelta64(5, "m"))
        assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
        grid = load_region(REGION).grid
        np.testing.assert_allclose(ds["x"].values, grid.x)
        np.testing.assert_allclose(ds["y"].values, grid.y)
        assert CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]).equals(grid.crs)
        assert ds.attrs["Conventions"].startswith("CF-")
        assert ds.attrs["region"] == REGION and ds.attrs["method"] == "persistence"
        assert list(np.atleast_1d(ds.attrs["input_times"])) == [
            "2024-02-27T09:50:00Z", "2024-02-27T09:55:00Z", "2024-02-27T10:00:00Z", "2024-02-27T10:05:00Z"]
        # persistence really is the newest input frame, unchanged
        from nowcast.io.archive import Archive

        last = Archive.open(REGION, home=moving_archive).window("2024-02-27T10:05", 1).values[0]
        np.testing.assert_array_equal(da.values[3], last)
    variables, _ = _raw_attrs(out)
    assert variables["rain_rate"]["grid_mapping"] == "spatial_ref"
    assert variables["lead_time"]["units"].startswith("minutes")


def test_extrapolation_finds_the_motion(moving_archive):
    """The field moves one cell east per step: extrapolation must beat persistence
    against the frames that really followed."""
    from nowcast.forecast import run_forecast
    from nowcast.io.archive import Archive
    from nowcast.products import open_forecast

    truth = Archive.open(REGION, home=moving_archive).window("2024-02-27T10:20", 3).values
    errors = {}
    for method in ("extrapolation", "persistence"):
        result = run_forecast(REGION, home=moving_archive, time="2024-02-27T10:05", method=method, leads=3)
        with open_forecast(result.path) as ds:
            fc = ds["rain_rate"].values
        ok = np.isfinite(fc) & np.isfinite(truth)
        errors[method] = float(np.mean((fc[ok] - truth[ok]) ** 2))
    assert errors["extrapolation"] < 0.7 * errors["persistence"], errors


def test_gap_in_window_is_refused_with_count(home, odim_moving):
    from nowcast.forecast import run_forecast

    files = odim_moving(5)
    _archive(home, [files[0], files[1], files[3], files[4]])
    with pytest.raises(ForecastError, match=r"1 of 4 input frames missing.*2024-02-27T10:00:00Z"):
        run_forecast(REGION, home=home, method="persistence")


def test_time_zone_is_honoured_and_stale_input_refused_through_the_cli(home, odim_moving, tmp_path, capsys):
    from nowcast.cli import main

    _archive(home, odim_moving(4))  # 09:50 ... 10:05 UTC
    out = tmp_path / "fc.nc"
    # 11:07+01:00 is 10:07 UTC: the window ends at 10:05, 2 min old, fine.
    code = main(["forecast", "--region", REGION, "--time", "2024-02-27T11:07:00+01:00", "--method", "persistence",
                 "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    assert "from 2024-02-27T10:05:00Z" in capsys.readouterr().out and out.exists()
    code = main(["forecast", "--region", REGION, "--time", "2024-02-27T10:30Z", "--method", "persistence", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    # 25 min old: the frames of 10:10, 10:15, 10:20, 10:25 and 10:30 are missing.
    assert "stale" in err and "5 frame(s) missing" in err and err.count("\n") == 1


def _fallback_region(home, model="no-such-model"):
    import yaml

    from nowcast.config import load_region, shipped_configs_dir

    data = yaml.safe_load((shipped_configs_dir() / "regions" / f"{REGION}.yaml").read_text())
    data["forecast"] = {**data["forecast"], "method": "tmu", "model": model}
    path = home / "configs" / "regions" / f"{REGION}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return load_region(REGION, home)


def test_missing_model_falls_back_to_extrapolation_and_says_why(moving_archive, caplog):
    import logging

    import xarray as xr

    from nowcast.forecast import run_forecast

    region = _fallback_region(moving_archive)
    with caplog.at_level(logging.WARNING, logger="nowcast.forecast"):
        result = run_forecast(region, home=moving_archive, leads=2)
    assert result.method == "extrapolation"
    assert result.fallback_reason and "model could not run" in result.fallback_reason
    assert "falling back" in caplog.text and result.fallback_reason in caplog.text
    with xr.open_zarr(result.path) as ds:
        assert ds.attrs["method"] == "extrapolation"
        assert ds.attrs["fallback_reason"] == result.fallback_reason


class _FakeForecaster:
    """Stands in for a loaded zoo model: persistence, counting its calls."""

    def __init__(self, patch_size: int = 4):
        from types import SimpleNamespace

        self.config = SimpleNamespace(name="fake-tmu", input_frames=4, patch_size=patch_size, timestep_minutes=5)
        self.sha256 = "ab" * 32
        self.calls: list[tuple[int, ...]] = []

    def predict(self, inputs, leads):
        self.calls.append(inputs.shape)
        return np.repeat(inputs[-1:], leads, axis=0)


def test_model_path_records_model_and_checkpoint_and_tiles(moving_archive, monkeypatch):
    import xarray as xr

    import nowcast.forecast as fc

    fake = _FakeForecaster()
    monkeypatch.setattr(fc, "load_model", lambda region, home=None: fake)
    region = _fallback_region(moving_archive, model="fake-tmu")
    result = fc.run_forecast(region, home=moving_archive, leads=3, tile=64, overlap=16)
    assert result.method == "tmu" and result.fallback_reason is None
    assert len(fake.calls) == 9 and all(s[1] % 4 == 0 and s[1] <= 64 for s in fake.calls)
    with xr.open_zarr(result.path) as ds:
        assert ds.attrs["method"] == "tmu" and ds.attrs["model"] == "fake-tmu"
        assert ds.attrs["checkpoint_sha256"] == fake.sha256
        assert "fallback_reason" not in ds.attrs
        values = ds["rain_rate"].values
    persistence = fc.run_forecast(region, home=moving_archive, leads=3, method="persistence")
    with xr.open_zarr(persistence.path) as ds:
        np.testing.assert_array_equal(values, ds["rain_rate"].values)


def test_model_that_does_not_fit_falls_back(moving_archive, monkeypatch):
    import nowcast.forecast as fc

    class Broken(_FakeForecaster):
        def predict(self, inputs, leads):
            raise RuntimeError("Given groups=1, weight of size [64, 20, 5, 5], expected input to have 20 channels")

    monkeypatch.setattr(fc, "load_model", lambda region, home=None: Broken())
    result = fc.run_forecast(_fallback_region(moving_archive), home=moving_archive, leads=2)
    assert result.method == "extrapolation" and "expected input" in result.fallback_reason


def test_forecast_finds_the_model_under_home(tmp_path, odim_moving) -> None:
    """``--home`` is searched for the region's model config, not only ``$NOWCAST_HOME``."""
    import yaml

    from nowcast.config import load_region
    from nowcast.forecast import run_forecast
    from nowcast.models.config import find_model_config
    from pipelines.ingest import ingest_files

    home = tmp_path / "elsewhere"
    (home / "configs" / "models").mkdir(parents=True)
    (home / "configs" / "regions").mkdir(parents=True)
    model = yaml.safe_load(find_model_config("swiss-south-tmu").read_text())
    model.update(name="my-tmu", checkpoint=str(find_region_yaml().parents[2] / "models" / "zoo" / "swiss-south-tmu.pt"))
    (home / "configs" / "models" / "my-tmu.yaml").write_text(yaml.safe_dump(model))
    region = yaml.safe_load(find_region_yaml().read_text())
    region["forecast"]["model"] = "my-tmu"
    (home / "configs" / "regions" / "swiss-south.yaml").write_text(yaml.safe_dump(region))
    ingest_files(odim_moving(4), load_region("swiss-south", home), home=home, scheduler="synchronous", progress=False)
    result = run_forecast("swiss-south", home=home, method="tmu", leads=2, out=tmp_path / "f.zarr")
    assert result.fallback_reason is None and result.method == "tmu"


def find_region_yaml():
    from nowcast.config import project_root

    return project_root() / "configs" / "regions" / "swiss-south.yaml"
