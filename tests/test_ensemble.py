"""Probabilistic nowcasts (issue #12): ensembles, their products, maps and scores.

Small cases only (a 64x64 crop of the real MeteoSwiss field moving at a known
sub-cell speed, few members and leads); the CLI runs on the 128x128
``swiss-south`` archive with 3-4 members and 2-3 leads.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nowcast.cli import main

REGION = "swiss-south"
N_IN, LEADS, MEMBERS = 4, 4, 5


@pytest.fixture(scope="module")
def case(swiss_south_moving):
    """Window (4 frames) and the 4 frames that followed, 64x64 cells of real rain, plus the extrapolation forecast."""
    from nowcast.baselines import extrapolation

    frames, _, _ = swiss_south_moving(N_IN + LEADS)
    crop = frames[:, 32:96, 48:112].copy()
    crop[:, :6, :5] = np.nan  # a corner without radar coverage
    window, truth = crop[:N_IN], crop[N_IN:]
    det = extrapolation(window, LEADS)
    assert np.isnan(det).any() and np.nanmax(det) > 1.0
    return window, truth, det


@pytest.fixture(scope="module")
def model(case):
    from nowcast.ensemble import noise_model

    window, _, _ = case
    return noise_model(window, LEADS)


# ------------------------------------------------------------------ members
def test_same_seed_same_members_bit_for_bit_other_seed_other_members(case, model):
    from nowcast.ensemble import perturb

    _, _, det = case
    a = perturb(det, model, MEMBERS, seed=7)
    b = perturb(det, model, MEMBERS, seed=7)
    c = perturb(det, model, MEMBERS, seed=8)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(c))
    # a member depends on (seed, member number) only: the first members of a larger ensemble are the same
    d = perturb(det, model, MEMBERS + 2, seed=7)
    assert d[:MEMBERS].tobytes() == a.tobytes()
    # members differ from each other
    assert not np.array_equal(np.nan_to_num(a[0]), np.nan_to_num(a[1]))


def test_members_have_the_shape_are_non_negative_and_nan_exactly_where_the_forecast_is(case, model):
    from nowcast.ensemble import perturb

    _, _, det = case
    members = perturb(det, model, MEMBERS, seed=1)
    assert members.shape == (MEMBERS, *det.shape) and members.dtype == np.float32
    for m in members:
        np.testing.assert_array_equal(np.isnan(m), np.isnan(det))
    assert np.nanmin(members) >= 0.0
    # probability matching keeps the forecast's rain area and distribution at every lead
    for t in range(LEADS):
        ok = ~np.isnan(det[t])
        for m in members:
            np.testing.assert_allclose(np.sort(m[t][ok]), np.sort(det[t][ok]), rtol=1e-5, atol=1e-6)
    # the noise grows with lead time: members spread more at the last lead than at the first
    spread = [np.nanmean(np.nanstd(np.log1p(members[:, t]), axis=0)) for t in range(LEADS)]
    assert spread[-1] > spread[0] > 0


def test_noise_weight_zero_gives_the_deterministic_forecast_in_every_member(case):
    from nowcast.ensemble import noise_model, perturb

    window, _, det = case
    quiet = noise_model(window, LEADS, correlations=1.0)
    assert not quiet.has_noise and np.all(quiet.weights[1] == 0)
    members = perturb(det, quiet, 3, seed=3)
    for m in members:
        np.testing.assert_array_equal(m, det)


def test_weights_follow_the_skill_per_scale_and_lead(model):
    w_model, w_noise = model.weights
    assert w_model.shape == (LEADS, 6)
    np.testing.assert_allclose(w_model**2 + w_noise**2, 1.0)  # each level keeps its variance
    assert np.all(np.diff(w_model, axis=0) <= 1e-9)  # skill only decreases with lead
    assert w_model[0, 0] > w_model[0, -1]  # large scales are more predictable than small ones
    assert "STEPS cascade noise" in model.describe()


def test_a_dry_window_gives_the_deterministic_forecast(case):
    from nowcast.ensemble import noise_model, perturb

    window, _, det = case
    dry = np.zeros_like(window)
    quiet = noise_model(dry, LEADS)
    assert not quiet.has_noise and "wet pixel" in quiet.note
    zeros = np.zeros_like(det)
    assert np.array_equal(perturb(zeros, quiet, 2, seed=0), np.stack([zeros, zeros]))


def test_rank_matching_is_pysteps_empirical_cdf_matching():
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.postprocessing.probmatching import nonparam_match_empirical_cdf

    from nowcast.ensemble import _match

    rng = np.random.default_rng(0)
    values, target = rng.normal(size=500), rng.gamma(2.0, size=500)
    np.testing.assert_array_equal(_match(np.sort(target), values), nonparam_match_empirical_cdf(values, target))


def test_default_seed_is_fixed_per_reference_time():
    from nowcast.ensemble import default_seed, member_seeds

    assert default_seed("2024-02-27T10:05Z") == default_seed(np.datetime64("2024-02-27T10:05"))
    assert default_seed("2024-02-27T10:05Z") != default_seed("2024-02-27T10:10Z")
    seeds = member_seeds(5, 4)
    assert seeds == member_seeds(5, 4) and len(set(seeds)) == 4


# ------------------------------------------------------------------ products
def test_probabilities_are_in_0_1_monotone_in_threshold_and_the_mean_is_the_members_mean(case, model):
    from nowcast.ensemble import ensemble_mean, exceedance_probability, perturb

    _, _, det = case
    members = perturb(det, model, MEMBERS, seed=2)
    thresholds = (0.5, 1.0, 5.0, 10.0)
    p = exceedance_probability(members, thresholds)
    assert p.shape == (4, *det.shape)
    ok = ~np.isnan(det)
    assert np.all(np.isnan(p[:, ~ok]))
    valid = p[:, ok]
    assert valid.min() >= 0.0 and valid.max() <= 1.0
    assert np.all(np.diff(valid, axis=0) <= 0.0)
    np.testing.assert_allclose(valid[1], np.mean(members[:, ok] >= 1.0, axis=0))
    np.testing.assert_allclose(ensemble_mean(members), members.mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_ensemble_product_is_cf_with_realization_probability_and_mean(case, model, tmp_path, suffix):
    from nowcast.config import load_region
    from nowcast.ensemble import perturb
    from nowcast.grid import RegionGrid
    from nowcast.products import (
        is_ensemble,
        make_ensemble_dataset,
        open_forecast,
        to_pysteps,
        write_forecast,
    )

    _, _, det = case
    members = perturb(det, model, 3, seed=2)
    grid = load_region(REGION).grid
    sub = RegionGrid(grid.crs, grid.x[48:112], grid.y[32:96], "crop")
    ds = make_ensemble_dataset(members, sub, "2024-02-27T10:05Z", 5, thresholds=(0.5, 1.0, 5.0, 10.0), seed=2,
                               noise=model.describe(), region=REGION, method="extrapolation",
                               input_times=["2024-02-27T10:05:00Z"])
    path = write_forecast(ds, tmp_path / f"ens{suffix}")
    with xr.open_dataset(path, engine="zarr" if suffix == ".zarr" else None) as raw:  # plain xarray
        assert raw["rain_rate"].dims == ("realization", "time", "y", "x")
        assert raw["realization"].attrs["standard_name"] == "realization"
        assert raw["probability_of_exceedance"].dims == ("threshold", "time", "y", "x")
        assert raw["probability_of_exceedance"].attrs["units"] == "1"
        assert raw["threshold"].attrs["units"] == "mm h-1"
        assert "mean of the 3 members" in raw["rain_rate_mean"].attrs["comment"]
        assert int(raw.attrs["ensemble_members"]) == 3 and int(raw.attrs["ensemble_seed"]) == 2
        np.testing.assert_array_equal(raw["rain_rate"].values, members)
        chunks = (raw["rain_rate"].encoding.get("chunksizes") or raw["rain_rate"].encoding.get("chunks"))
        assert tuple(chunks) == (1, 1, 64, 64)  # one member, one lead per chunk: bounded memory on any grid
    with open_forecast(path) as reopened:
        assert is_ensemble(reopened)
        precip, meta = to_pysteps(reopened)
        assert precip.shape == (3, LEADS, 64, 64) and meta["leadtimes"] == [5, 10, 15, 20]


def test_ensemble_netcdf_has_no_cf_errors_or_warnings(case, model, tmp_path):
    pytest.importorskip("compliance_checker")
    from nowcast.config import load_region
    from nowcast.ensemble import perturb
    from nowcast.products import make_ensemble_dataset, write_forecast
    from tests.test_cf_compliance import _check, _failures

    _, _, det = case
    grid = load_region(REGION).grid
    full = np.full((LEADS, *grid.shape), np.nan, dtype=np.float32)
    full[:, 32:96, 48:112] = det
    members = np.full((2, *full.shape), np.nan, dtype=np.float32)
    members[:, :, 32:96, 48:112] = perturb(det, model, 2, seed=0)
    ds = make_ensemble_dataset(members, grid, "2024-02-27T10:05Z", 5, thresholds=(0.5, 1.0), seed=0, noise="test",
                               region=REGION, method="tmu", input_times=["2024-02-27T10:05:00Z"],
                               data_origin="simulated from real seeds: a test")
    result = _check(write_forecast(ds, tmp_path / "ens.nc"), tmp_path)
    assert result["scored_points"] > 100
    assert _failures(result, "high") == [] and result["high_count"] == 0
    assert _failures(result, "medium") == [] and result["medium_count"] == 0


# ------------------------------------------------------------------ scores
def test_crps_of_a_perfect_ensemble_is_zero_and_of_a_worse_one_larger(case):
    from nowcast.verify import EnsembleScores

    _, truth, _ = case
    obs = np.nan_to_num(truth)
    perfect, worse, worst = (EnsembleScores(LEADS, 4, (1.0,)) for _ in range(3))
    perfect.add_forecast(np.repeat(obs[None], 4, axis=0), obs)
    rng = np.random.default_rng(0)
    worse.add_forecast(obs[None] * rng.uniform(0.8, 1.2, size=(4, *obs.shape)), obs)
    worst.add_forecast(obs[None] * rng.uniform(0.2, 3.0, size=(4, *obs.shape)), obs)
    p, w, ww = perfect.result(), worse.result(), worst.result()
    np.testing.assert_allclose(p["crps"], 0.0, atol=1e-12)
    assert np.all(w["crps"] > 0) and np.all(ww["crps"] > w["crps"])
    assert np.all(p["roc_area"] > 0.99)
    assert np.nanmax(p["reliability_deviation"]) < 1e-12  # probability 1 exactly where it rains >= 1 mm/h


def test_scores_merge_like_one_accumulation_and_spread_skill_is_one_for_a_reliable_ensemble():
    from nowcast.verify import EnsembleScores

    rng = np.random.default_rng(1)
    M, n = 10, (40, 40)
    centre = rng.gamma(1.0, 2.0, size=(3, *n))
    draws = centre[None] + rng.normal(0, 1.0, size=(M + 1, 3, *n))  # truth: one more draw from the same spread
    members, obs = draws[:M], draws[M]
    one = EnsembleScores(1, M, (1.0,))
    halves = [EnsembleScores(1, M, (1.0,)) for _ in range(2)]
    for k in range(3):
        one.add(0, members[:, k], obs[k])
        halves[k % 2].add(0, members[:, k], obs[k])
    a, b = one.result(), halves[0].merge(halves[1]).result()
    for key in ("crps", "spread", "rmse", "spread_skill", "roc_area", "reliability_observed"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12)
    assert 0.9 < a["spread_skill"][0] < 1.1
    hist = a["rank_histogram"][0]
    assert hist.shape == (M + 1,) and abs(hist.sum() - 1) < 1e-12 and hist.max() < 2.0 / (M + 1)


# ------------------------------------------------------------------ command line
@pytest.fixture()
def archive(home, odim_moving):
    assert main(["ingest", "--region", REGION, "--scheduler", "synchronous", "--no-progress", "-q",
                 *map(str, odim_moving(7))]) == 0
    return home


@pytest.mark.parametrize("method", ["extrapolation", "tmu"])
def test_forecast_members_writes_an_ensemble_product_that_verify_scores(archive, tmp_path, method, capsys):
    out = tmp_path / f"{method}.zarr"
    argv = ["forecast", "--region", REGION, "--time", "2024-02-27T10:05Z", "--leads", "3", "--method", method,
            "--members", "4", "--out", str(out), "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{method} ensemble of 4 members" in printed and str(out) in printed
    with xr.open_zarr(out) as ds:
        assert ds["rain_rate"].dims == ("realization", "time", "y", "x")
        assert ds["rain_rate"].shape == (4, 3, 128, 128)
        assert ds.attrs["method"] == method and int(ds.attrs["ensemble_members"]) == 4
        first = ds["rain_rate"].values
    # the default seed is fixed per reference time: a re-run gives the same members
    assert main(argv) == 0
    with xr.open_zarr(out) as ds:
        assert ds["rain_rate"].values.tobytes() == first.tobytes()
    capsys.readouterr()
    assert main(["verify", str(out), "--region", REGION, "--out", str(tmp_path / "v"), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "crps" in printed and "spread_skill" in printed and "ensemble (4 members)" in printed
    assert "Pysteps configuration" not in printed  # stdout is for results
    assert (tmp_path / "v" / f"{method}_scores.json").is_file()


def test_method_steps_is_pysteps_steps(archive, tmp_path, capsys):
    out = tmp_path / "steps.nc"
    assert main(["forecast", "--region", REGION, "--time", "2024-02-27T10:05Z", "--leads", "2", "--method", "steps",
                 "--members", "3", "--seed", "11", "--out", str(out), "-q"]) == 0
    assert "steps ensemble of 3 members (seed 11)" in capsys.readouterr().out
    with xr.open_dataset(out) as ds:
        assert ds["rain_rate"].shape == (3, 2, 128, 128) and ds.attrs["method"] == "steps"
        assert "pysteps STEPS" in ds.attrs["ensemble_noise"]
        assert np.nanmax(ds["rain_rate"].values) > 1.0 and np.nanmin(ds["rain_rate"].values) >= 0.0


@pytest.mark.parametrize("value", ["0", "-2"])
def test_members_below_one_is_a_one_line_usage_error(home, value, capsys):
    assert main(["forecast", "--region", REGION, "--members", value]) == 2
    err = capsys.readouterr().err
    assert "--members" in err and err.count("\n") == 1


def test_probability_maps_and_postage_stamps(archive, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "ens.zarr"
    assert main(["forecast", "--region", REGION, "--time", "2024-02-27T10:05Z", "--leads", "2", "--method",
                 "extrapolation", "--members", "3", "--out", str(out), "-q"]) == 0
    png = tmp_path / "p.png"
    assert main(["render", str(out), "--observed", "--probability", "1", "--lead", "10", "--out", str(png), "-q"]) == 0
    stamps = tmp_path / "stamps.png"
    assert main(["render", str(out), "--observed", "--stamps", "--out", str(stamps), "-q"]) == 0
    gif = tmp_path / "p.gif"
    assert main(["render", str(out), "--out", str(gif), "-q"]) == 0  # an ensemble is drawn as probabilities
    for path in (png, stamps, gif):
        with Image.open(path) as im:
            assert im.size[0] > 600
    capsys.readouterr()
    det = tmp_path / "det.zarr"
    assert main(["forecast", "--region", REGION, "--time", "2024-02-27T10:05Z", "--leads", "2", "--method",
                 "persistence", "--out", str(det), "-q"]) == 0
    capsys.readouterr()
    assert main(["render", str(det), "--probability", "1", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "ensemble" in err and err.count("\n") == 1


def test_probability_figure_texts(archive, tmp_path):
    from nowcast.render import forecast_figure

    out = tmp_path / "ens.zarr"
    assert main(["forecast", "--region", REGION, "--time", "2024-02-27T10:05Z", "--leads", "2", "--method",
                 "extrapolation", "--members", "3", "--out", str(out), "-q"]) == 0
    figure, frames = forecast_figure(out, REGION, archive, observed=True, probability=5.0)
    try:
        assert [f.lead for f in frames] == [5, 10] and not any(f.is_input for f in frames)
        assert frames[0].observed is not None and 0.0 <= np.nanmin(frames[0].main) <= np.nanmax(frames[0].main) <= 1.0
        figure.update(frames[0])
        texts = " | ".join(figure.texts())
        assert "P(rain >= 5 mm/h)" in texts and "Probability of rain rate >= 5 mm/h (%)" in texts
        assert "observed >= 5 mm/h" in texts and "Radar observation" in texts
    finally:
        figure.fig.clear()
