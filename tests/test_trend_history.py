"""The window trend read over a longer history than the network's window (fifteenth round, issue #8).

``ChangeWeights.trend_frames``: stored with the weights, read by the
forecaster (motion and network from its own window, the trend over more), by
the calibration that chooses the weights, by the held-out skill and by the
forecast path, which reads the older frames from the archive and falls back
to the region's window where they are missing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nowcast.baselines import extrapolation
from nowcast.errors import CheckpointError
from nowcast.models.calibration import (
    ChangeWeights,
    calibrate,
    candidates,
    score_grid,
    window_trend,
)
from nowcast.models.skill import score_method
from tests.test_calibration import _signed_changes, growing_sequences
from tests.test_lagrangian import forecaster, moving_window

LEADS = 3


def _weights(trend_frames: int, growth: float = 0.5, decay: float = 0.25) -> ChangeWeights:
    return ChangeWeights.constant(growth, decay, LEADS, trend=0.5, trend_decay=0.0, trend_lifetime=3.0,
                                  trend_frames=trend_frames)


def _model(weights: ChangeWeights | None, calls: list | None = None):
    fc = forecaster()
    fc._raw_changes = (_signed_changes if calls is None
                       else lambda x, n: (calls.append(x.shape[0]), _signed_changes(x, n))[1])
    fc.change_weights = weights
    return fc


def _same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.nan_to_num(a, nan=-1.0), np.nan_to_num(b, nan=-1.0))


def _history(frames: int = 12) -> np.ndarray:
    """A moving field that grew over its older frames and stopped: 4 and 8 frames read different trends."""
    window = growing_sequences(n=1, frames=frames, db_per_step=1.5)[0]
    window[-3:] = window[-4] * (window[-3:] > 0)  # the newest frames no longer grow (in place: not moved, but wet)
    return window


# ------------------------------------------------------------------ the weights
def test_trend_frames_round_trip_and_old_entries_read_the_networks_window():
    weights = _weights(8)
    entry = weights.to_metadata(command="x")
    assert entry["trend_frames"] == 8 and ChangeWeights.from_metadata(entry) == weights
    old = {k: v for k, v in entry.items() if k != "trend_frames"}
    assert ChangeWeights.from_metadata(old).trend_frames == 0
    assert "read over 8 frames" in weights.brief() and "read over" not in _weights(0).brief()
    assert weights.history_frames(4) == 8 and _weights(0).history_frames(4) == 4
    assert _weights(2).history_frames(4) == 4  # fewer than the network's: the network's window
    no_trend = ChangeWeights.constant(0.5, 0.0, LEADS, trend_frames=8)
    assert no_trend.history_frames(4) == 4  # no trend: nothing to read the older frames for


@pytest.mark.parametrize("frames, ok", [(0, True), (1, False), (2, True), (-8, False), (8.5, False)])
def test_impossible_trend_frames_are_refused(frames, ok):
    if ok:
        assert _weights(frames).trend_frames == frames
    else:
        with pytest.raises(ValueError, match="trend_frames"):
            _weights(frames)


@pytest.mark.parametrize("value", ["8.5", float("inf"), float("nan"), "eight", 1])
def test_a_broken_trend_frames_entry_names_the_checkpoint(value):
    entry = {**_weights(8).to_metadata(), "trend_frames": value}
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights"):
        ChangeWeights.from_metadata(entry, "m.pt")
    assert ChangeWeights.from_metadata({**entry, "trend_frames": 8.0}, "m.pt").trend_frames == 8


# ------------------------------------------------------------------ the forecaster
def test_the_forecast_reads_motion_and_network_from_its_window_and_the_trend_over_its_history():
    from nowcast.models import lagrangian

    window = _history(12)
    calls: list = []
    fc = _model(_weights(8), calls)
    assert fc.history_frames == 8
    forecast = fc.predict(window[-8:], LEADS)
    assert calls == [4]  # the network read its own 4 frames
    # the reference: motion from the newest 4, all 8 moved, the trend read over them
    prepared = lagrangian.prepare(window[-8:], LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4)
    change = _signed_changes(prepared.inputs[-4:], LEADS)
    expected = lagrangian.finish(prepared, fc.change_weights.apply(change, window_trend(prepared.inputs)))
    _same(forecast, expected)
    _same(fc.predict(window, LEADS), forecast)  # more frames than it reads: the newest 8
    four = _model(_weights(0)).predict(window[-4:], LEADS)
    assert not np.array_equal(np.nan_to_num(forecast), np.nan_to_num(four))  # the longer trend is another forecast


def test_given_only_its_network_window_it_forecasts_as_the_four_frame_weights_do():
    window = _history(8)
    _same(_model(_weights(8)).predict(window[-4:], LEADS), _model(_weights(0)).predict(window[-4:], LEADS))
    # weights without a longer history read the newest 4 even when given 8 (every checkpoint before)
    _same(_model(_weights(0)).predict(window, LEADS), _model(_weights(0)).predict(window[-4:], LEADS))
    _same(_model(None).predict(window, LEADS), _model(None).predict(window[-4:], LEADS))


def test_the_trend_over_8_frames_tells_an_ended_growth_from_a_lasting_one():
    """The newest 4 frames of an ended growth are flat: the 8-frame trend still sees the growth, by less."""
    from nowcast.models import lagrangian

    fc = forecaster()
    lasting = growing_sequences(n=1, frames=8, db_per_step=1.0)[0]
    ended = lasting.copy()
    ended[:4] = lasting[:4] / 10.0 ** (0.1 * 3.0)  # grew 3 dB per frame before the newest 4, then stopped
    ended[4:] = lasting[4]
    rates = {}
    for name, w in (("lasting", lasting), ("ended", ended)):
        prepared = lagrangian.prepare(w, LEADS, fc.normaliser, motion_frames=4)
        wet = prepared.inputs[-1] > 0
        rates[name] = (float(np.median(window_trend(prepared.inputs[-4:])[wet])),
                       float(np.median(window_trend(prepared.inputs)[wet])))
    assert rates["lasting"][0] > 0 and rates["lasting"][1] > 0
    assert abs(rates["ended"][0]) < 0.1 * rates["lasting"][0]  # 4 frames: no trend at all
    assert rates["ended"][1] != pytest.approx(rates["ended"][0], abs=1e-4)  # 8 frames read the older growth


# ------------------------------------------------------------------ the calibration
def test_calibration_scores_what_the_forecast_reads_and_stores_the_history():
    rng = np.random.default_rng(3)
    seqs = {"growth": growing_sequences(n=3, frames=8 + LEADS),
            "moving": np.stack([moving_window(shape=(32, 32), frames=8 + LEADS, u=u, v=v)
                                for u, v in rng.uniform(-1.2, 1.2, (3, 2))])}
    keys = candidates((0.0, 0.5), (0.0, 0.5), lifetimes=(3.0,))
    fc = _model(None)
    weights, _, grid, references = calibrate(fc, seqs, LEADS, keys=keys, trend_frames=8)
    assert weights.trend_frames == 8 and weights.key(0) in keys
    for name, v in seqs.items():  # extrapolation from the newest 4 frames, verified on the same leads
        assert references[name]["csi@1"] == score_method(extrapolation, v[:, 4:], 4, LEADS)["csi@1"]
    for key in keys[1:4]:  # every candidate's grid score is the forecaster's own under its weights
        fc.change_weights = ChangeWeights.from_key(key, LEADS, trend_frames=8)
        for name, v in seqs.items():
            own = score_method(fc.predict, v, 8, LEADS)
            assert grid[key][name]["csi@1"] == pytest.approx(own["csi@1"], abs=1e-12)
            assert grid[key][name]["csi@5"] == pytest.approx(own["csi@5"], abs=1e-12, nan_ok=True)
    four, _, four_grid, _ = calibrate(fc, seqs, LEADS, keys=keys)
    assert four.trend_frames == 0
    trended = next(k for k in keys if k[2] > 0)
    assert four_grid[trended]["growth"] != grid[trended]["growth"]  # the history changed what was scored


def test_calibration_refuses_sequences_too_short_for_the_history():
    seqs = {"short": growing_sequences(n=2, frames=4 + LEADS)}
    with pytest.raises(ValueError, match="validation set short: sequences of 7 frames, 11 needed"):
        calibrate(_model(None), seqs, LEADS, keys=candidates((0.0,), (0.0, 0.5), lifetimes=(3.0,)), trend_frames=8)


def test_grid_with_history_equals_the_old_benchmark_predictor():
    """benchmarks/trend_history.py's predictor is now the forecaster itself with ``trend_frames``."""
    from benchmarks.trend_history import predictor

    fc = _model(_weights(0))
    window = _history(8)
    _same(predictor(fc, fc.change_weights, 8)(window, LEADS), _model(_weights(8)).predict(window, LEADS))
    _same(predictor(fc, fc.change_weights, 4)(window, LEADS), _model(_weights(0)).predict(window[-4:], LEADS))
    # and score_grid, reading 8 frames with motion from the newest 4, forecasts the same
    seqs = {"s": np.stack([np.concatenate([window, growing_sequences(n=1, frames=LEADS)[0]])])}
    key = _weights(8).key(0)
    grid = score_grid(lambda x, n: _signed_changes(x[-4:], n), fc.normaliser, seqs, 8, LEADS, keys=[key],
                      motion_frames=4)
    own = score_method(_model(_weights(8)).predict, seqs["s"], 8, LEADS)
    assert grid[key]["s"]["csi@1"] == pytest.approx(own["csi@1"], abs=1e-12)


# ------------------------------------------------------------------ held-out skill
def test_heldout_skill_gives_the_model_its_history_and_extrapolation_its_window():
    from nowcast.models.skill import heldout_skill

    seqs = growing_sequences(n=2, frames=8 + LEADS)
    fc = _model(_weights(8))
    skill = heldout_skill(fc, seqs, "t", "simulated", LEADS)
    assert skill["history_frames"] == 8
    assert skill["csi@1"]["model"] == [round(v, 4) for v in score_method(fc.predict, seqs, 8, LEADS)["csi@1"]]
    assert skill["csi@1"]["extrapolation"] == [round(v, 4) for v in
                                               score_method(extrapolation, seqs[:, 4:], 4, LEADS)["csi@1"]]
    assert "history_frames" not in heldout_skill(_model(_weights(0)), seqs[:, 4:], "t", "simulated", LEADS)
    with pytest.raises(ValueError, match="held-out t: sequences of 10 frames, the model reads 8"):
        heldout_skill(fc, seqs[:, 1:], "t", "simulated", LEADS)


def test_heldout_store_of_a_longer_history_is_its_own():
    from pipelines.pretrain import heldout_path
    from tests.test_lagrangian import lagrangian_config

    config = lagrangian_config()
    assert heldout_path(config, 4) == heldout_path(config) and heldout_path(config).name.endswith("-sameday.zarr")
    assert heldout_path(config, 8) == heldout_path(config).with_name(heldout_path(config).stem + "-h8.zarr")


# ------------------------------------------------------------------ the forecast path
class _Reader:
    def __init__(self, longer: np.ndarray | None):
        self.longer, self.asked = longer, []

    def __call__(self, frames: int):
        self.asked.append(frames)
        return None if self.longer is None else self.longer[-frames:]


def test_model_window_reads_the_history_only_for_a_model_that_wants_it():
    from types import SimpleNamespace

    from nowcast.forecast import model_window

    window, longer = np.zeros((4, 8, 8)), np.ones((9, 8, 8))
    reader = _Reader(longer)
    frames, attrs = model_window(SimpleNamespace(history_frames=8), window, reader)
    assert frames.shape[0] == 8 and reader.asked == [8] and attrs == {"model_history_frames": "8"}
    reader = _Reader(None)
    frames, attrs = model_window(SimpleNamespace(history_frames=8), window, reader)
    assert frames is window and "wanted 8: older frames missing" in attrs["model_history_frames"]
    for model in (SimpleNamespace(history_frames=4), SimpleNamespace()):  # wants no more than the window
        reader = _Reader(longer)
        assert model_window(model, window, reader) == (window, {}) and reader.asked == []


def test_forecast_reads_the_older_frames_from_the_archive_or_says_it_could_not(home, odim_moving, monkeypatch):
    import xarray as xr

    import nowcast.forecast as fc
    from tests.test_forecast import _archive, _FakeForecaster, _fallback_region

    fake = _FakeForecaster()
    fake.history_frames = 8
    monkeypatch.setattr(fc, "load_model", lambda region, home=None: fake)
    _archive(home, odim_moving(9))  # 09:50 ... 10:30
    region = _fallback_region(home, model="fake-tmu")
    result = fc.run_forecast(region, home=home, leads=2, tile=1024)
    assert result.method == "tmu" and result.fallback_reason is None
    assert {shape[0] for shape in fake.calls} == {8} and len(result.input_times) == 4  # the product's window: 4
    with xr.open_zarr(result.path) as ds:
        assert ds.attrs["model_history_frames"] == "8"
    fake.calls.clear()  # ending 10:20, 8 frames would start 09:45: not archived, the region's window is read
    result = fc.run_forecast(region, home=home, time="2024-02-27T10:20Z", leads=2, tile=1024)
    assert result.method == "tmu" and result.fallback_reason is None and {shape[0] for shape in fake.calls} == {4}
    with xr.open_zarr(result.path) as ds:
        assert ds.attrs["model_history_frames"].startswith("4 (wanted 8: older frames missing")


# ------------------------------------------------------------------ how the trend is read (minmod, smoothing)
def _minmod_weights(smoothing: float = 4.0, frames: int = 8) -> ChangeWeights:
    return ChangeWeights.constant(0.0, 0.0, LEADS, trend=0.75, trend_decay=0.0, trend_lifetime=3.0,
                                  trend_frames=frames, trend_estimator="minmod", trend_smoothing_px=smoothing)


def test_trend_estimator_round_trips_and_old_entries_read_a_slope():
    weights = _minmod_weights()
    entry = weights.to_metadata()
    assert entry["trend_estimator"] == "minmod" and entry["trend_smoothing_px"] == 4.0
    assert ChangeWeights.from_metadata(entry) == weights
    old = {k: v for k, v in entry.items() if k not in ("trend_estimator", "trend_smoothing_px")}
    assert ChangeWeights.from_metadata(old) == replace(weights, trend_estimator="slope", trend_smoothing_px=0.0)
    assert "as the minmod of its halves, rain smoothed 4 px" in weights.brief()
    assert "minmod" not in _weights(8).brief() and "smoothed" not in _weights(8).brief()


@pytest.mark.parametrize("change, ok", [({"trend_frames": 6}, True), ({"trend_frames": 5}, False),
                                        ({"trend_frames": 0}, False), ({"trend_smoothing_px": 0.0}, True),
                                        ({"trend_smoothing_px": -1.0}, False),
                                        ({"trend_smoothing_px": float("inf")}, False),
                                        ({"trend_estimator": "median"}, False)])
def test_impossible_trend_readings_are_refused(change, ok):
    if ok:
        replace(_minmod_weights(), **change)
    else:
        with pytest.raises(ValueError, match="minmod|trend_smoothing_px|trend_estimator"):
            replace(_minmod_weights(), **change)
    entry = {**_minmod_weights().to_metadata(), **change}
    if not ok:
        with pytest.raises(CheckpointError, match="m.pt: invalid change_weights"):
            ChangeWeights.from_metadata(entry, "m.pt")


def _moved(rates_db: list[float], shape=(24, 24)) -> np.ndarray:
    """Frames already moved to the analysis time (network units, dry 0): a blob changing by ``rates_db`` per step."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    blob = 1.0 + 0.5 * np.exp(-((x - 12) ** 2 + (y - 12) ** 2) / 30.0)
    blob[blob < 1.05] = 0.0
    level = np.concatenate([[0.0], np.cumsum(rates_db)])
    return np.stack([np.where(blob > 0, blob + lv, 0.0) for lv in level]).astype(np.float32)


def test_minmod_reads_a_growth_both_halves_show_and_not_one_that_ended():
    from nowcast.models.calibration import window_trend

    lasting = _moved([0.05] * 7)
    ended = _moved([0.1] * 4 + [0.0] * 3)
    reversed_ = _moved([0.08] * 4 + [-0.04] * 3)
    wet = lasting[-1] > 0
    for x in (lasting, ended, reversed_):
        assert np.all(window_trend(x, 4.0, "minmod")[~wet] == 0)  # dry stays dry
    assert np.median(window_trend(lasting, 4.0, "minmod")[wet]) == pytest.approx(0.05, rel=0.05)
    assert np.median(window_trend(ended, 4.0)[wet]) > 0.03  # the slope over 8 still reads the ended growth
    assert np.abs(window_trend(ended, 4.0, "minmod")[wet]).max() < 1e-6  # minmod: the newer half is flat
    assert np.abs(window_trend(reversed_, 4.0, "minmod")[wet]).max() < 1e-6  # halves disagree: no trend
    slowing = _moved([0.1] * 4 + [0.03] * 3)  # both halves grow, the newer slower: the rate both support
    assert np.median(window_trend(slowing, 4.0, "minmod")[wet]) == pytest.approx(0.03, rel=0.1)


def test_smoothing_within_the_rain_keeps_dry_dry_and_edges_whole():
    from nowcast.models.calibration import smooth_within_rain

    x = np.zeros((2, 20, 20), dtype=np.float32)
    x[:, 5:15, 5:15] = 1.0
    x[1, 10, 10] = 3.0  # a one-pixel peak
    out = smooth_within_rain(x, 2.0)
    assert np.all(out[x == 0] == 0)
    np.testing.assert_allclose(out[0][x[0] > 0], 1.0, rtol=1e-6)  # a uniform block, edges included, unchanged
    assert 1.0 < out[1, 10, 10] < 1.5 and out[1, 10, 11] > 1.0  # the peak spread over its neighbours


def test_the_forecast_and_the_calibration_read_the_trend_as_the_weights_say():
    from nowcast.models import lagrangian
    from nowcast.models.calibration import window_trend

    window = _history(8)
    fc = _model(_minmod_weights())
    prepared = lagrangian.prepare(window, LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4)
    rate = window_trend(prepared.inputs, 4.0, "minmod", 4.0)
    expected = lagrangian.finish(prepared, fc.change_weights.apply(np.zeros((LEADS, *window.shape[1:])), rate))
    _same(fc.predict(window, LEADS), expected)
    assert not np.array_equal(rate, window_trend(prepared.inputs, 4.0))  # another rate than the slope's
    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS)}
    keys = candidates((0.0,), (0.0, 0.75), forms=("growth",), lifetimes=(3.0,))
    weights, _, grid, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                                    trend_smoothing_px=4.0)
    assert (weights.trend_estimator, weights.trend_smoothing_px, weights.trend_frames) == ("minmod", 4.0, 8)
    own = score_method(_model(_minmod_weights()).predict, seqs["growth"], 8, LEADS)
    assert grid[_minmod_weights().key(0)]["growth"]["csi@5"] == pytest.approx(own["csi@5"], abs=1e-12, nan_ok=True)
    with pytest.raises(ValueError, match="minmod trend needs trend_frames >= 6"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_estimator="minmod")


def test_cli_refuses_an_impossible_trend_reading_in_one_line(capsys):
    from nowcast.cli import main

    assert main(["models", "calibrate", "swiss-south-tmu", "--trend-frames", "4", "--trend-estimator", "minmod"]) == 2
    err = capsys.readouterr().err
    assert "minmod trend needs trend_frames >= 6" in err and err.count("\n") == 1


def test_a_minmod_model_given_only_its_network_window_reads_no_trend():
    """The archive's fallback for a minmod model (4 frames, halves of 2: no R²) is extrapolation's forecast."""
    window = growing_sequences(n=1, frames=8, db_per_step=1.0)[0]  # a lasting growth: minmod over 8 reads it
    fc = _model(_minmod_weights())
    _same(fc.predict(window[-4:], LEADS), _model(ChangeWeights.constant(0.0, 0.0, LEADS)).predict(window[-4:], LEADS))
    assert not np.array_equal(np.nan_to_num(fc.predict(window, LEADS)),
                              np.nan_to_num(fc.predict(window[-4:], LEADS)))  # with its 8 frames it does add one


def test_the_demo_archives_the_history_its_model_reads(home):
    from nowcast.config import load_region
    from nowcast.demo import history_frames
    from tests.test_forecast import _fallback_region

    region = load_region("swiss-south")
    assert history_frames(region, "tmu") == 8  # the shipped model's trend reads 8 frames
    assert history_frames(region, "extrapolation") == region.forecast.input_frames == 4
    assert history_frames(_fallback_region(home, model="no-such-model"), "tmu") == 4  # the forecast falls back


def test_the_model_configs_calibration_section_sets_how_calibration_reads_the_trend(tmp_path, monkeypatch):
    from nowcast.errors import ConfigError
    from nowcast.models import calibration
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import config_difference, load_checkpoint
    from pipelines import pretrain
    from tests.test_lagrangian import lagrangian_config

    shipped = load_model_config(find_model_config("swiss-south-tmu"))
    assert (shipped.calibration.trend_frames, shipped.calibration.trend_estimator,
            shipped.calibration.trend_smoothing_px) == (8, "slope", 4.0)  # the twenty-first round's reading
    with pytest.raises(ConfigError, match="minmod trend needs trend_frames >= 6"):
        lagrangian_config(calibration={"trend_frames": 4, "trend_estimator": "minmod"})
    # a stored config that differs only in calibration is the same run
    ckpt = load_checkpoint("models/zoo/swiss-south-tmu.pt")
    assert config_difference(ckpt, shipped.model_copy(update={"calibration": type(shipped.calibration)()})) is None
    # calibrate_target takes the stored config's settings unless told otherwise
    seen = {}

    def fake(forecaster, sequences, leads, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(calibration, "calibrate", fake)
    monkeypatch.setattr("pipelines.validation.long_validation_stores", lambda config, frames: [])
    monkeypatch.setattr("pipelines.validation.validation_stores", lambda config, sequences: [])  # nothing is made
    monkeypatch.setattr("pipelines.validation.read_validation", lambda stores, n, frames: {})
    with pytest.raises(RuntimeError, match="stop"):
        pretrain.calibrate_target("models/zoo/swiss-south-tmu.pt", 2)
    reading = ("trend_frames", "trend_estimator", "trend_smoothing_px")
    assert {k: seen[k] for k in reading} == {"trend_frames": 8, "trend_estimator": "slope", "trend_smoothing_px": 4.0}
    assert seen == shipped.calibration.calibrate_kwargs()
    with pytest.raises(RuntimeError, match="stop"):
        pretrain.calibrate_target("models/zoo/swiss-south-tmu.pt", 2, settings=shipped.calibration.resolve(
            trend_frames=0, trend_estimator="slope", trend_smoothing_px=0.0, trend_persistence_min=-1.0))
    assert {k: seen[k] for k in reading} == {"trend_frames": 0, "trend_estimator": "slope", "trend_smoothing_px": 0.0}


def test_trend_persistence_measures_the_change_the_future_shows():
    """benchmarks/trend_persistence.py: no change for a rigidly moving field, k x the growth for a growing one."""
    from benchmarks.trend_persistence import realized_change
    from nowcast.models import lagrangian

    fc = forecaster()
    steady = moving_window(shape=(48, 56), frames=8 + LEADS, u=1.0, v=0.0)  # whole-pixel motion: no interpolation
    growing = steady * (10.0 ** (0.1 * 1.5 * np.arange(8 + LEADS)))[:, None, None]  # +1.5 dB per step
    _, _, scale = lagrangian.db_params(fc.normaliser)
    for seqs, per_step in ((steady, 0.0), (growing, 1.5 / scale)):
        prepared = lagrangian.prepare(seqs[:8], LEADS, fc.normaliser, motion_frames=4)
        change, known = realized_change(prepared, seqs[8:])
        core = known & (prepared.inputs[-1] > 0.5)[None] & (seqs[8:] > 1.0)
        for k in range(LEADS):
            assert np.median(change[k][core[k]]) == pytest.approx(per_step * (k + 1), abs=0.02)


def test_trend_persistence_correlations_are_bounded_and_the_intensity_row_is_there():
    from benchmarks.trend_persistence import ESTIMATORS, INTENSITY, NETWORK, persistence

    fc = forecaster()
    seqs = growing_sequences(n=2, frames=8 + 12, db_per_step=1.0)
    calls: list = []
    out = persistence(seqs, fc.normaliser, fc.config.motion.method,
                      network=lambda x, n: (calls.append(x.shape[0]), _signed_changes(x, n))[1])
    assert set(out) == {*ESTIMATORS, INTENSITY, NETWORK} and set(calls) == {4}  # the network reads its own 4
    for r in out.values():
        assert len(r["correlation"]) == 12 and all(-1.0 - 1e-9 <= c <= 1.0 + 1e-9 for c in r["correlation"])
    assert np.mean(out["slope over 8"]["correlation"]) > 0.3  # a lasting growth: the trend explains its change


def calibratable_checkpoint(tmp_path):
    """An untrained Lagrangian checkpoint whose config reads its trend over 6 frames (minmod), and a validation store.

    For the ``nowcast models calibrate`` tests: 2 sequences of 6 + 6 frames.
    """
    import torch

    from nowcast.models.predictor import Predictor
    from nowcast.models.zoo import save_checkpoint
    from tests.test_calibration import _validation
    from tests.test_lagrangian import lagrangian_config

    config = lagrangian_config(checkpoint=str(tmp_path / "m.pt"), calibration={"trend_frames": 6,
                                                                                "trend_estimator": "minmod"})
    torch.manual_seed(0)
    save_checkpoint(config.checkpoint_path, Predictor.from_config(config.architecture), config, iterations=1, metrics={})
    return config, _validation(tmp_path, n=2, frames=6 + 6)


def test_cli_calibrates_as_the_model_configs_calibration_section_says(tmp_path, capsys):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    assert main(["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert (entry["trend_frames"], entry["trend_estimator"]) == (6, "minmod")
    assert entry["command"].endswith("--sequences 2 --trend-frames 6 --trend-estimator minmod")
    capsys.readouterr()


def test_trend_persistence_at_larger_scales():
    from benchmarks.trend_persistence import scale_correlation

    fc = forecaster()
    seqs = growing_sequences(n=2, frames=8 + 12, db_per_step=1.0)
    corr = scale_correlation(seqs, fc.normaliser, fc.config.motion.method, [0, 4])
    assert set(corr) == {0, 4} and all(0.3 < c <= 1.0 + 1e-9 for c in corr.values())  # a lasting growth persists


def test_network_gate_applies_the_change_only_below_the_rain_rate():
    from benchmarks.network_gate import gated
    from nowcast.models.lagrangian import db_params

    fc = forecaster()
    _, zero, scale = db_params(fc.normaliser)
    x = np.zeros((8, 4, 4), dtype=np.float32)
    x[-1, 0, :2] = (10.0 * np.log10([1.9, 2.0]) - zero) / scale  # just below and exactly at 2 mm/h
    x[-1, 1, 0] = (10.0 * np.log10(50.0) - zero) / scale
    seen: list = []

    def network(frames, leads):
        seen.append(frames.shape[0])
        return np.ones((leads, 4, 4), dtype=np.float32)

    out = gated(network, fc.normaliser, 2.0)(x, 3)
    assert seen == [4] and out.shape == (3, 4, 4)
    assert np.all(out[:, 0, 0] == 1) and np.all(out[:, 0, 1] == 0) and np.all(out[:, 1, 0] == 0)  # at 2: gated
    assert np.all(out[:, 2:] == 1)  # dry analysis: below any rate
    assert np.all(gated(network, fc.normaliser, float("inf"))(x, 3) == 1)
