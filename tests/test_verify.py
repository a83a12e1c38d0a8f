"""Verification scores per lead time, their files, and ``nowcast verify``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast.errors import GridError, NowcastError
from nowcast.products import make_forecast_dataset, write_forecast
from nowcast.verify import fss_scales, scores_table, verify_forecast, write_scores

N_IN, LEADS = 4, 6


@pytest.fixture(scope="module")
def case(swiss_south_moving):
    """Observations (10 frames) as an archive-like DataArray and a persistence forecast."""
    frames, times, region = swiss_south_moving(N_IN + LEADS)
    grid = region.grid
    observed = xr.DataArray(frames, dims=("time", "y", "x"), coords={"time": times, **grid.coords()},
                            name="rain_rate", attrs={"units": "mm h-1"})
    return observed, grid


def _forecast(values, grid, observed, method="persistence"):
    times = observed["time"].values
    return make_forecast_dataset(values, grid, times[N_IN - 1], 5, region="swiss-south", method=method,
                                 input_times=[str(t) for t in times[:N_IN]])


def test_perfect_forecast_scores_perfectly(case):
    observed, grid = case
    truth = observed.values[N_IN:]
    scores = verify_forecast(_forecast(truth, grid, observed), observed)
    wet = [j for j, thr in enumerate(scores["threshold"].values) if (np.nan_to_num(truth) > thr).any()]
    assert wet, "the real field must rain above some threshold"
    np.testing.assert_allclose(scores["csi"].values[:, wet], 1.0)
    np.testing.assert_allclose(scores["pod"].values[:, wet], 1.0)
    np.testing.assert_allclose(scores["far"].values[:, wet], 0.0)
    np.testing.assert_allclose(scores["fss"].values, 1.0)
    np.testing.assert_allclose(scores["mse"].values, 0.0)


def test_scores_match_a_hand_made_contingency_table_and_ignore_nodata(case):
    observed, grid = case
    fc = np.repeat(observed.values[N_IN - 1 : N_IN], LEADS, axis=0).copy()
    fc[:, :20, :] = np.nan  # no forecast in the north
    scores = verify_forecast(_forecast(fc, grid, observed), observed)
    obs = observed.values[N_IN + 2]  # lead 15 min
    ok = np.isfinite(fc[2]) & np.isfinite(obs)
    p, o = fc[2][ok] > 1.0, obs[ok] > 1.0
    hits, misses, false = (p & o).sum(), (~p & o).sum(), (p & ~o).sum()
    j = list(scores["threshold"].values).index(1.0)
    assert scores["csi"].values[2, j] == pytest.approx(hits / (hits + misses + false))
    assert scores["pod"].values[2, j] == pytest.approx(hits / (hits + misses))
    assert scores["far"].values[2, j] == pytest.approx(false / (hits + false))
    assert scores["n_valid"].values[2] == ok.sum()
    assert scores["mae"].values[2] == pytest.approx(np.mean(np.abs(fc[2][ok] - obs[ok])), rel=1e-6)
    # persistence of a moving field loses skill with lead time
    assert scores["csi"].values[0, j] > scores["csi"].values[-1, j]
    assert scores["mse"].values[0] < scores["mse"].values[-1]
    # larger FSS neighbourhoods forgive displacement errors
    assert (np.diff(scores["fss"].values[-1]) > 0).all()


def test_fss_scales_are_whole_pixels_of_the_grid():
    assert fss_scales(1000.0) == [(1, 1.0), (4, 4.0), (16, 16.0)]
    assert fss_scales(2000.0) == [(1, 2.0), (2, 4.0), (8, 16.0)]
    assert fss_scales(8000.0, (1, 4, 16)) == [(1, 8.0), (2, 16.0)]


def test_only_observed_leads_are_verified_and_none_is_an_error(case):
    observed, grid = case
    fc = _forecast(np.repeat(observed.values[N_IN - 1 : N_IN], LEADS, axis=0), grid, observed)
    scores = verify_forecast(fc, observed.isel(time=slice(0, N_IN + 3)))
    np.testing.assert_array_equal(scores["lead_time"].values, [5, 10, 15])
    with pytest.raises(NowcastError, match="observations: none at the forecast's valid times"):
        verify_forecast(fc, observed.isel(time=slice(0, N_IN)))
    with pytest.raises(GridError, match="x axis"):
        verify_forecast(fc, observed.isel(x=slice(0, 64)))


def test_dbz_observations_are_converted(case):
    from nowcast.units import rainrate_to_dbz

    observed, grid = case
    truth = observed.values[N_IN:]
    dbz = observed.copy(data=rainrate_to_dbz(observed.values))
    dbz.attrs["units"] = "dBZ"
    scores = verify_forecast(_forecast(truth, grid, observed), dbz)
    assert np.nanmax(scores["mse"].values) < 1e-6


def test_written_files(case, tmp_path: Path):
    observed, grid = case
    fc = _forecast(np.repeat(observed.values[N_IN - 1 : N_IN], LEADS, axis=0), grid, observed)
    scores = verify_forecast(fc, observed)
    paths = write_scores(scores, tmp_path, "fc")
    table = pd.read_csv(paths["csv"])
    assert list(table["lead_minutes"]) == [5, 10, 15, 20, 25, 30]
    assert {"csi_0.5mmh", "csi_10mmh", "pod_1mmh", "far_2mmh", "fss_1mmh_4km", "mse", "mae"} <= set(table)
    pd.testing.assert_series_equal(table["csi_1mmh"], scores_table(scores)["csi_1mmh"], rtol=1e-5)
    doc = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert doc["method"] == "persistence" and doc["forecast_reference_time"] == "2024-02-27T10:05:00Z"
    assert doc["leads"][0]["csi"]["1"] == pytest.approx(table["csi_1mmh"][0], rel=1e-5)
    from PIL import Image

    with Image.open(paths["png"]) as im:
        assert im.size == (1300, 400)
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 50


def test_verify_command_reads_the_archive(case, home: Path, tmp_path: Path, capsys):
    from nowcast.cli import main
    from nowcast.io.archive import Archive

    observed, grid = case
    Archive.open("swiss-south", home=home).append(observed, source="moving-test")
    fc_path = write_forecast(_forecast(np.repeat(observed.values[N_IN - 1 : N_IN], LEADS, axis=0), grid, observed),
                             tmp_path / "fc.zarr")
    out = tmp_path / "scores"
    assert main(["verify", str(fc_path), "--region", "swiss-south", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "csi_1mmh" in printed and "6 lead time(s) verified" in printed
    assert sorted(p.name for p in out.iterdir()) == ["fc_scores.csv", "fc_scores.json", "fc_skill.png"]
    # without --out: HOME/verification/REGION; a missing forecast is one line, exit 2
    assert main(["verify", str(fc_path), "-q"]) == 0
    assert (home / "verification" / "swiss-south" / "fc_scores.csv").is_file()
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "nope.nc"), "--region", "swiss-south"]) == 2
    err = capsys.readouterr().err
    assert "nope.nc" in err and err.count("\n") == 1


def test_lattice_power_ratio_sees_a_patch_lattice_and_not_a_smooth_field():
    from nowcast.verify import lattice_power_ratio

    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(rng.gamma(1.0, 1.0, (64, 64)), 3.0)
    lattice = smooth * (1.0 + 0.3 * (np.indices((64, 64))[1] % 4 == 0))
    assert lattice_power_ratio(smooth) < 3.0
    assert lattice_power_ratio(lattice) > 10.0
