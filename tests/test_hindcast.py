"""``nowcast hindcast``: reference times, accumulation, schedulers, outputs and errors.

The archive is 10 frames (09:50 .. 10:35 UTC) of the real MeteoSwiss field
moving 0.5 cells south and 1.5 cells east per 5 min on the ``swiss-south``
grid (simulated from a real seed): with 4 input frames the complete windows
end at 10:05 .. 10:35, and 10:35 has nothing after it to verify against, so a
period covering the archive has 6 reference times (10:05 .. 10:30).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from nowcast.errors import ForecastError

REGION = "swiss-south"
T = "2024-02-27T"


@pytest.fixture(scope="module")
def archive_home(tmp_path_factory, swiss_south_moving):
    """A data home holding the swiss-south archive of 10 moving frames."""
    import xarray as xr

    from nowcast.io.archive import Archive, grid_coords

    home = tmp_path_factory.mktemp("hindcast") / "home"
    frames, times, region = swiss_south_moving(10)
    da = xr.DataArray(frames, dims=("time", "y", "x"), coords={"time": times, **grid_coords(region.grid)},
                      attrs={"units": "mm h-1"}, name="rain_rate")
    Archive.open(region, home=home, create=True).append(da, source="moving-test")
    return home


def _run(home, start=f"{T}09:50", end=f"{T}10:35", methods=("persistence",), leads=6, **kwargs):
    from nowcast.hindcast import run_hindcast

    kwargs.setdefault("scheduler", "synchronous")
    kwargs.setdefault("write", False)
    return run_hindcast(REGION, start, end, methods, home=home, leads=leads, **kwargs)


# ---------------------------------------------------------------- reference times
def test_reference_times_are_those_select_window_accepts():
    """The vectorised rule equals select_window (max age 0) plus "some lead observed", frame by frame."""
    from nowcast.forecast import select_window
    from nowcast.hindcast import reference_times

    base = np.datetime64(f"{T}09:00", "ns")
    step = np.timedelta64(5, "m")
    present = [k for k in range(30) if k not in (7, 8, 15, 22)]
    times = base + np.array(present) * step
    start, end = base + 2 * step, base + 27 * step
    got = reference_times(times, start, end, input_frames=4, leads=3, timestep_minutes=5)
    want = []
    for t in times[(times >= start) & (times <= end)]:
        try:
            select_window(times, t, 4, 5, 0, REGION)
        except ForecastError:
            continue
        if np.isin(t + np.arange(1, 4) * step, times).any():
            want.append(t)
    np.testing.assert_array_equal(got, np.array(want, dtype="datetime64[ns]"))
    assert got.size and base + 3 * step in got  # 09:15: window 09:00 .. 09:15, complete
    assert base + 10 * step not in got  # window reaches back into the gap at 09:35, 09:40
    assert base + 29 * step not in got  # after the period


def test_period_boundaries_are_inclusive_reference_times(archive_home):
    # The first complete window ends at 10:05: a period starting there holds it ...
    assert _run(archive_home, f"{T}10:05", f"{T}10:10", leads=2).reference_times.size == 2
    # ... one starting a window earlier (10:00, incomplete) holds nothing more ...
    assert _run(archive_home, f"{T}10:00", f"{T}10:10", leads=2).reference_times.size == 2
    # ... and one starting just after 10:05 loses it.
    result = _run(archive_home, f"{T}10:05:01", f"{T}10:10", leads=2)
    assert list(result.reference_times) == [np.datetime64(f"{T}10:10", "ns")]
    # The whole archive: 10:05 .. 10:30; 10:35 has no observation after it.
    full = _run(archive_home, leads=2)
    assert full.reference_times.size == 6 and full.reference_times[-1] == np.datetime64(f"{T}10:30", "ns")
    # A time zone offset is honoured: 11:05+01:00 is 10:05 UTC.
    assert _run(archive_home, f"{T}11:05:00+01:00", f"{T}11:10+01:00", leads=2).reference_times.size == 2


# ---------------------------------------------------------------- schedulers and skill
METHODS = ("extrapolation", "persistence", "tmu")


@pytest.fixture(scope="module")
def model_region(tmp_path_factory):
    """swiss-south with its shipped TMU model *copied* (the zoo's file may be rewritten by a training run)."""
    import shutil

    from nowcast.models.zoo import load_forecaster

    home = tmp_path_factory.mktemp("model") / "confhome"
    copy = home / "swiss-south-tmu.pt"
    copy.parent.mkdir(parents=True)
    shutil.copy(load_forecaster("swiss-south-tmu").path, copy)
    return _region_with_model(home, str(copy))


@pytest.fixture(scope="module")
def synchronous(archive_home, model_region):
    from nowcast.hindcast import run_hindcast

    return run_hindcast(model_region, f"{T}09:50", f"{T}10:35", METHODS, home=archive_home, leads=6,
                        scheduler="synchronous", write=False)


def test_scores_are_identical_under_every_scheduler(archive_home, model_region, synchronous):
    """An in-process dask cluster on loopback (2 threads) gives bit-for-bit the synchronous scores, model included."""
    import xarray as xr
    from distributed import Client, LocalCluster

    from nowcast.hindcast import run_hindcast

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING) as cluster, \
            Client(cluster) as client:
        clustered = run_hindcast(model_region, f"{T}09:50", f"{T}10:35", METHODS, home=archive_home, leads=6,
                                 scheduler=client, write=False)
    assert clustered.scheduler.startswith("dask client")
    assert synchronous.failures == clustered.failures == {m: 0 for m in METHODS}  # the model ran too
    xr.testing.assert_identical(synchronous.scores, clustered.scores)
    for name in ("csi", "pod", "far", "fss", "mse", "mae"):  # exactly, NaN where NaN
        np.testing.assert_array_equal(synchronous.scores[name].values, clustered.scores[name].values)
    np.testing.assert_array_equal(synchronous.reference_times, clustered.reference_times)


def test_a_window_computes_in_its_task_not_on_the_cluster(archive_home):
    """S-PROG calls dask.compute itself: in a worker it must not start a client of the cluster.

    Before, such a client tied up the worker's thread waiting for its own
    sub-tasks and failed in ``Client.__del__`` (tracebacks) when an
    interrupted hindcast closed the workers.
    """
    from distributed import Client, LocalCluster

    from nowcast.config import load_region
    from nowcast.hindcast import score_window

    region = load_region(REGION, archive_home)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING) as cluster, \
            Client(cluster) as client:
        result = client.submit(score_window, region, str(archive_home), np.datetime64(f"{T}10:10", "ns"),
                               ("sprog",), 2, pure=False).result()
        assert result.failures == {} and "sprog" in result.states
        assert all(getattr(w, "_client", None) is None for w in cluster.workers.values())


def test_extrapolation_beats_persistence_on_the_moving_field(synchronous):
    s = synchronous.scores
    assert synchronous.reference_times.size == 6 and list(s["forecast_method"].values) == list(METHODS)
    np.testing.assert_array_equal(s["lead_time"].values, [5, 10, 15, 20, 25, 30])
    # Lead k is verifiable from the reference times up to 10:35 - k x 5 min.
    np.testing.assert_array_equal(s["forecasts"].values, [[6, 5, 4, 3, 2, 1]] * 3)
    at30 = s.sel(lead_time=30, threshold=1.0)
    assert float(at30["csi"].sel(forecast_method="extrapolation")) > float(at30["csi"].sel(forecast_method="persistence")) + 0.05
    assert (s["mse"].sel(forecast_method="extrapolation") < s["mse"].sel(forecast_method="persistence")).all()
    assert np.isfinite(s["fss"].values).all() and ((s["fss"].values >= 0) & (s["fss"].values <= 1)).all()


def test_accumulated_scores_are_those_of_the_pooled_pixels(archive_home):
    """Merging per-window states equals one contingency table over all pixels (pysteps' accumulators)."""
    from nowcast.verify import DeterministicScores

    rng = np.random.default_rng(0)
    fields = [(rng.gamma(0.5, 2.0, (2, 16, 16)), rng.gamma(0.5, 2.0, (2, 16, 16))) for _ in range(3)]
    fields[1][1][0, :4] = np.nan  # no coverage: not scored
    pooled = DeterministicScores(2, (1.0,), fss_threshold=1.0, fss_pixels=(1,))
    merged = DeterministicScores(2, (1.0,), fss_threshold=1.0, fss_pixels=(1,))
    for pred, obs in fields:
        pooled.add_forecast(pred, obs)
        one = DeterministicScores(2, (1.0,), fss_threshold=1.0, fss_pixels=(1,))
        one.add_forecast(pred, obs)
        merged.merge(one)
    a, b = pooled.result(), merged.result()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12)
    p = np.concatenate([f[0][0].ravel() for f in fields])
    o = np.concatenate([f[1][0].ravel() for f in fields])
    ok = np.isfinite(o)
    hits = np.sum((p > 1) & (o > 1) & ok)
    csi = hits / np.sum(((p > 1) | (o > 1)) & ok)
    assert a["csi"][0, 0] == pytest.approx(csi) and a["n_valid"][0] == ok.sum()
    assert a["mse"][0] == pytest.approx(np.mean((p[ok] - o[ok]) ** 2))


def test_one_reference_time_scores_as_nowcast_verify(archive_home, tmp_path):
    """A hindcast of one window is ``nowcast forecast`` + ``nowcast verify`` of that window."""
    from nowcast.forecast import run_forecast
    from nowcast.verify import verify_forecast_against_archive

    hind = _run(archive_home, f"{T}10:10", f"{T}10:10", methods=("extrapolation",), leads=4).scores
    product = run_forecast(REGION, home=archive_home, time=f"{T}10:10", method="extrapolation", leads=4,
                           out=tmp_path / "fc.zarr")
    single = verify_forecast_against_archive(product.path, REGION, archive_home)
    np.testing.assert_array_equal(hind["lead_time"].values, single["lead_time"].values)
    np.testing.assert_array_equal(hind["scale"].values, single["scale"].values)
    for name in ("csi", "pod", "far", "fss", "mse", "mae", "n_valid"):
        np.testing.assert_allclose(hind[name].sel(forecast_method="extrapolation").values, single[name].values,
                                   rtol=1e-9, err_msg=name)


# ---------------------------------------------------------------- the model, failures
def _region_with_model(home, model):
    import yaml

    from nowcast.config import load_region, shipped_configs_dir

    data = yaml.safe_load((shipped_configs_dir() / "regions" / f"{REGION}.yaml").read_text())
    data["forecast"] = {**data["forecast"], "model": model}
    path = home / "configs" / "regions" / f"{REGION}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return load_region(REGION, home)


def test_model_loaded_once_per_worker_and_failures_are_counted(tmp_path, archive_home, monkeypatch):
    """A fake model (persistence) is loaded once for all windows; a missing model fails every window, recorded."""
    from types import SimpleNamespace

    import nowcast.forecast as fc
    import nowcast.hindcast as hc
    from nowcast.hindcast import run_hindcast

    calls = []

    class Fake:
        config = SimpleNamespace(name="fake-tmu", input_frames=4, patch_size=4, timestep_minutes=5)

        def predict(self, inputs, leads):
            return np.repeat(inputs[-1:], leads, axis=0)

    def load(region, home=None):
        calls.append(region.forecast.model)
        return Fake()

    monkeypatch.setattr(fc, "load_model", load)
    monkeypatch.setattr(hc, "_MODELS", {})
    other = tmp_path / "confhome"
    region = _region_with_model(other, "fake-tmu")
    result = run_hindcast(region, f"{T}10:05", f"{T}10:20", ("tmu", "persistence"), home=archive_home, leads=3,
                          scheduler="synchronous", write=False)
    assert calls == ["fake-tmu"] and result.reference_times.size == 4
    s = result.scores
    np.testing.assert_array_equal(s["csi"].sel(forecast_method="tmu").values, s["csi"].sel(forecast_method="persistence").values)

    monkeypatch.undo()
    region = _region_with_model(other, "no-such-model")
    result = run_hindcast(region, f"{T}10:05", f"{T}10:20", ("tmu", "persistence"), home=archive_home, leads=3,
                          scheduler="synchronous", write=False)
    assert result.failures == {"tmu": 4, "persistence": 0}
    assert "no-such-model" in next(iter(result.failure_reasons["tmu"]))
    assert (result.scores["forecasts"].sel(forecast_method="tmu") == 0).all()
    assert np.isnan(result.scores["csi"].sel(forecast_method="tmu").values).all()
    assert (result.scores["forecasts"].sel(forecast_method="persistence") > 0).all()


def test_hindcast_finds_the_model_under_home(tmp_path, swiss_south_moving, monkeypatch, capsys):
    """``--home H`` is searched for the region's model config and checkpoint, not only ``$NOWCAST_HOME``.

    The model is named by a config that exists only under H (``$NOWCAST_HOME``
    is another, empty folder): before the fix every window failed with
    "unknown model" and ``tmu`` had no scores.
    """
    import xarray as xr
    import yaml

    import nowcast.hindcast as hc
    from nowcast.cli import main
    from nowcast.config import load_region
    from nowcast.io.archive import Archive, grid_coords
    from nowcast.models.config import find_model_config
    from nowcast.models.zoo import load_forecaster

    monkeypatch.setattr(hc, "_MODELS", {})
    home = tmp_path / "elsewhere"
    (home / "configs" / "models").mkdir(parents=True)
    model = yaml.safe_load(find_model_config("swiss-south-tmu").read_text())
    model.update(name="my-tmu", checkpoint=str(load_forecaster("swiss-south-tmu").path))
    (home / "configs" / "models" / "my-tmu.yaml").write_text(yaml.safe_dump(model))
    _region_with_model(home, "my-tmu")
    frames, times, region = swiss_south_moving(7)
    da = xr.DataArray(frames, dims=("time", "y", "x"), coords={"time": times, **grid_coords(region.grid)},
                      attrs={"units": "mm h-1"}, name="rain_rate")
    Archive.open(load_region(REGION, home), home=home, create=True).append(da, source="moving-test")

    code = main(["hindcast", "--region", REGION, "--start", f"{T}10:05", "--end", f"{T}10:10", "--methods", "tmu",
                 "--leads", "2", "--scheduler", "synchronous", "--home", str(home), "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stem = home / "hindcasts" / REGION / f"{REGION}_hindcast_20240227T1005Z_20240227T1010Z"
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["results"]["tmu"]["failures"] == 0, doc["results"]["tmu"]["failure_reasons"]
    assert [lead["forecasts"] for lead in doc["results"]["tmu"]["leads"]] == [2, 2]


# ---------------------------------------------------------------- the command
def test_cli_writes_table_json_and_plot(archive_home, capsys):
    from nowcast.cli import main

    code = main(["hindcast", "--region", REGION, "--start", f"{T}10:05", "--end", f"{T}10:30",
                 "--methods", "extrapolation", "persistence", "--leads", "3", "--scheduler", "threads",
                 "--home", str(archive_home), "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| method | lead (min) | forecasts | CSI 0.5 |" in captured.out
    assert "| extrapolation | 15 | 4 |" in captured.out and "| persistence | 5 | 6 |" in captured.out
    stem = archive_home / "hindcasts" / REGION / f"{REGION}_hindcast_20240227T1005Z_20240227T1030Z"
    for suffix in (".csv", ".json", ".png"):
        assert stem.with_suffix(suffix).is_file(), suffix
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["reference_times"] == 6 and doc["methods"] == ["extrapolation", "persistence"]
    assert doc["scheduler"].startswith("LocalCluster (threads")
    assert doc["results"]["persistence"]["failures"] == 0
    assert len(doc["results"]["extrapolation"]["leads"]) == 3
    header = stem.with_suffix(".csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["method", "lead_minutes", "forecasts"] and "csi_1mmh" in header and "fss_1mmh_4km" in header
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--start", f"{T}10:30", "--end", f"{T}10:05"], "--start 2024-02-27T10:30:00Z is after --end"),
        (["--start", f"{T}09:50", "--end", f"{T}10:00"], "no reference time in"),
        (["--start", f"{T}10:05", "--end", f"{T}10:30", "--methods", "magic"], "unknown method 'magic'"),
        (["--start", "yesterday-ish", "--end", f"{T}10:30"], "--start 'yesterday-ish': not an ISO 8601 time"),
    ],
)
def test_cli_errors_are_one_line_exit_2(archive_home, capsys, args, message):
    from nowcast.cli import main

    code = main(["hindcast", "--region", REGION, *args, "--scheduler", "synchronous", "--home", str(archive_home)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and err.startswith("nowcast: error:")


# ---------------------------------------------------------------- ensembles
ENSEMBLE_METHODS = ("extrapolation", "persistence")


@pytest.fixture(scope="module")
def ensemble_synchronous(archive_home):
    return _run(archive_home, methods=ENSEMBLE_METHODS, leads=3, members=4, seed=7)


def test_ensemble_scores_are_identical_under_every_scheduler(archive_home, ensemble_synchronous):
    """members=4: an in-process cluster (2 threads) gives bit-for-bit the synchronous ensemble scores."""
    import xarray as xr
    from distributed import Client, LocalCluster

    sync = ensemble_synchronous
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING) as cluster, \
            Client(cluster) as client:
        clustered = _run(archive_home, methods=ENSEMBLE_METHODS, leads=3, members=4, seed=7, scheduler=client)
    assert sync.ensemble_methods == clustered.ensemble_methods == ("extrapolation",)  # persistence makes none
    assert sync.ensemble_failures == clustered.ensemble_failures == {"extrapolation": 0}
    xr.testing.assert_identical(sync.ensemble_scores, clustered.ensemble_scores)
    for name in sync.ensemble_scores.data_vars:  # exactly, NaN where NaN
        np.testing.assert_array_equal(sync.ensemble_scores[name].values, clustered.ensemble_scores[name].values)
    xr.testing.assert_identical(sync.scores, clustered.scores)


def test_ensemble_crps_is_finite_and_positive(ensemble_synchronous, tmp_path):
    from nowcast.hindcast import ensemble_table, markdown_table, write_hindcast

    e = ensemble_synchronous.ensemble_scores
    crps = e["crps"].sel(forecast_method="extrapolation").values
    assert np.isfinite(crps).all() and (crps > 0).all()
    assert (e["forecasts"].values > 0).all() and e.attrs["members"] == 4
    table = ensemble_table(ensemble_synchronous)
    assert list(table.columns[:4]) == ["method", "members", "lead_minutes", "forecasts"]
    assert {"crps", "roc_area_1mmh", "reliability_deviation_1mmh", "spread_skill"} <= set(table.columns)
    assert "| ensemble | lead (min) | forecasts | CRPS |" in markdown_table(ensemble_synchronous)
    paths = write_hindcast(ensemble_synchronous, tmp_path)
    assert paths["ensemble_csv"].name.endswith("_ensemble.csv") and paths["ensemble_csv"].is_file()
    doc = json.loads(paths["json"].read_text())
    assert doc["members"] == 4 and doc["ensemble_methods"] == ["extrapolation"]
    lead = doc["ensemble_results"]["extrapolation"]["leads"][0]
    assert lead["crps"] > 0 and len(lead["rank_histogram"]) == 5


def test_cli_members_below_zero_is_one_line_exit_2(archive_home, capsys):
    from nowcast.cli import main

    code = main(["hindcast", "--region", REGION, "--start", f"{T}10:05", "--end", f"{T}10:30", "--members", "-1",
                 "--scheduler", "synchronous", "--home", str(archive_home)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--members -1" in err and err.count("\n") == 1 and err.startswith("nowcast: error:")


def test_hindcast_gives_the_model_its_history_where_the_archive_has_it(tmp_path, archive_home, monkeypatch):
    """A model whose trend reads 8 frames (fifteenth round) gets them where archived, else the region's 4."""
    from types import SimpleNamespace

    import nowcast.forecast as fc
    import nowcast.hindcast as hc
    from nowcast.hindcast import run_hindcast

    frames: list[int] = []

    class Fake:
        config = SimpleNamespace(name="fake-tmu", input_frames=4, patch_size=4, timestep_minutes=5)
        history_frames = 8

        def predict(self, inputs, leads):
            frames.append(inputs.shape[0])
            return np.repeat(inputs[-1:], leads, axis=0)

    monkeypatch.setattr(fc, "load_model", lambda region, home=None: Fake())
    monkeypatch.setattr(hc, "_MODELS", {})
    region = _region_with_model(tmp_path / "confhome", "fake-tmu")
    result = run_hindcast(region, f"{T}10:15", f"{T}10:25", ("tmu",), home=archive_home, leads=2,
                          scheduler="synchronous", write=False)
    assert result.reference_times.size == 3 and result.failures == {"tmu": 0}
    # the archive starts 09:50: 8 frames end no earlier than 10:25; the model is called once per tile
    assert set(frames) == {4, 8} and frames[-1] == 8 and frames.count(8) == len(frames) // 3
