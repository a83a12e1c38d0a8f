"""A floor on how much a scene's growth slowed within its window (thirtieth round, issue #8).

``ChangeWeights.trend_growth_ratio_min`` (and ``window_trend(growth_ratio_min=)``)
shuts the window's trend where, over the pixels where the rate grows, the newer
half's rate averages less than that fraction of the older half's
(:func:`~nowcast.models.calibration.growth_ratio`): the "grew, then stopped"
kind. The costly read windows of that kind (seed 7 window 117, seed 20 window
33) read 0.79 and 0.60, the growth sets' windows 0.89 or more; the twenty-sixth
look named 0.85. Tested: the statistic on hand-made arrays, the floor exactly at
a scene's ratio and a hair above it, an undefined ratio, the rate unchanged bit
for bit without the floor, where the floor sits among the gate, the growth floor
and the ramp, the reading it fills, the refusals, the checkpoint entry and old
entries, what a product and a listing say, the calibration, the config and the
command line, and that the ratio is the one ``benchmarks/persistence_evidence.py``
reports for the shipped model's reading.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nowcast.errors import CheckpointError
from nowcast.models.calibration import (
    NO_GATE,
    ChangeWeights,
    calibrate,
    check_trend_reading,
    growth_ratio,
    half_rates,
    smooth_within_rain,
    window_trend,
)
from tests.test_trend_growth_floor import SHAPE, calibration_case
from tests.test_trend_history import LEADS, _minmod_weights, _model

READ = (4.0, "slope", 4.0)  # linearity power, estimator, smoothing: the shipped reading
SHIPPED = Path(__file__).resolve().parent.parent / "models/zoo/swiss-south-tmu.pt"
FLOOR = 0.85


def _window(older_db: float, newer_db: float, frames: int = 8, shape=(96, 96)) -> np.ndarray:
    """A moving rain area (mm/h) that grows ``older_db`` per step over its first 4 steps, ``newer_db`` after."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    steps = [older_db] * 4 + [newer_db] * (frames - 5)
    gain = np.concatenate([[0.0], np.cumsum(steps)])
    out = []
    for t, db in enumerate(gain):
        cx, cy = 40 + 1.0 * t, 44 + 0.5 * t
        field = (6.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 500.0)
                 + 3.0 * np.exp(-((x - cx - 20) ** 2 + (y - cy + 10) ** 2) / 120.0)) * 10.0 ** (0.1 * db)
        field[field < 0.1] = 0.0
        out.append(field)
    return np.stack(out).astype(np.float32)


def _moved(older_db: float, newer_db: float) -> np.ndarray:
    """The moved frames (network units) of :func:`_window`, as a forecast reads them."""
    from nowcast.models import lagrangian

    fc = _model(None)
    return lagrangian.prepare(_window(older_db, newer_db), LEADS, fc.normaliser, fc.config.motion.method,
                              motion_frames=4).inputs


def _slowing() -> tuple[np.ndarray, float]:
    """A growth that slowed within its window (1.5 dB per step, then 1): its moved frames and its growth ratio."""
    x = _moved(1.5, 1.0)
    reading: dict = {}
    assert window_trend(x, *READ, 0.0, True, reading).any()
    return x, reading["growth_ratio"]


def _floored(ratio_min: float, gate: float = 0.0) -> ChangeWeights:
    return replace(_minmod_weights(), trend_estimator="slope", trend=(2.0,) * LEADS, trend_lifetime=12.0,
                   trend_persistence_min=gate, trend_align=True, trend_ceiling="scene",
                   trend_growth_ratio_min=ratio_min)


# ------------------------------------------------------------------ the statistic
def test_growth_ratio_is_the_newer_halfs_mean_over_the_older_halfs_where_the_rate_grows():
    rate = np.array([[0.1, 0.2, -0.1, 0.0]], dtype=np.float32)
    older = np.array([[0.2, 0.2, 5.0, 5.0]], dtype=np.float32)
    newer = np.array([[0.1, 0.2, -9.0, 9.0]], dtype=np.float32)
    ratio = growth_ratio(rate, older, newer)
    assert ratio == pytest.approx(0.15 / 0.2) and isinstance(ratio, float)  # the decay and unread pixels: not read
    assert growth_ratio(rate, newer, older) == pytest.approx(0.2 / 0.15)  # which half is which matters
    assert growth_ratio(rate, older, -newer) == pytest.approx(-0.75)  # the newer half decayed: below any floor
    # undefined: nothing grows, or the older half did not grow (or decayed) there
    assert growth_ratio(-np.abs(rate), older, newer) is None and growth_ratio(np.zeros((2, 2)), older, newer) is None
    assert growth_ratio(rate, np.zeros_like(older), newer) is None
    assert growth_ratio(rate, -older, newer) is None


def test_growth_ratio_is_the_persistence_evidence_computation():
    rng = np.random.default_rng(0)
    rate, older, newer = (rng.normal(0.01, 0.02, SHAPE).astype(np.float32) for _ in range(3))
    grows = rate > 0
    before = float(older[grows].mean()) if grows.any() else 0.0
    expected = float(newer[grows].mean()) / before if before > 0 else None  # benchmarks/persistence_evidence.py
    assert expected is not None and growth_ratio(rate, older, newer) == expected


# ------------------------------------------------------------------ window_trend
def test_the_floor_passes_a_scene_exactly_at_it_and_shuts_one_a_hair_below():
    x, ratio = _slowing()
    assert 0.5 < ratio < FLOOR  # a growth that slowed: newer half about 0.7 of the older
    rate = window_trend(x, *READ, 0.0, True)
    at: dict = {}
    np.testing.assert_array_equal(window_trend(x, *READ, 0.0, True, at, growth_ratio_min=ratio), rate)
    assert at["growth_ratio"] == ratio
    above: dict = {}
    shut = window_trend(x, *READ, 0.0, True, above, growth_ratio_min=float(np.nextafter(ratio, np.inf)))
    assert not shut.any() and shut.shape == rate.shape and shut.dtype == rate.dtype and above["growth_ratio"] == ratio
    assert not window_trend(x, *READ, 0.0, True, growth_ratio_min=FLOOR).any()
    # a steady growth passes the floor
    assert window_trend(_moved(1.0, 1.0), *READ, 0.0, True, growth_ratio_min=FLOOR).any()


def test_the_reading_carries_the_ratio_of_the_unfloored_rate_and_the_gates_halves():
    x, ratio = _slowing()
    rate = window_trend(x, *READ, 0.0, True)
    older, newer = half_rates(smooth_within_rain(np.asarray(x, dtype=np.float32), 4.0), 4.0, True)
    assert ratio == growth_ratio(rate, older, newer)
    shut: dict = {}
    window_trend(x, *READ, 0.0, True, shut, growth_ratio_min=FLOOR)
    assert shut["growth_ratio"] == ratio and shut["growth"] > 0 and "persistence" in shut


def test_an_undefined_ratio_a_growth_that_began_in_the_newer_half_passes():
    x = _moved(0.0, 1.5)  # the older half does not grow
    rate = window_trend(x, *READ, NO_GATE, True)
    assert rate.any()
    reading: dict = {}
    np.testing.assert_array_equal(window_trend(x, *READ, NO_GATE, True, reading, growth_ratio_min=100.0), rate)
    assert reading["growth_ratio"] is None  # computed without a gate when the floor is on


def test_without_the_floor_the_rate_is_todays_bit_for_bit():
    x, _ = _slowing()
    for estimator, gate in (("slope", NO_GATE), ("slope", 0.0), ("minmod", 0.0), ("minmod", NO_GATE)):
        before: dict = {}
        rate = window_trend(x, 4.0, estimator, 4.0, gate, True, before)
        after: dict = {}
        same = window_trend(x, 4.0, estimator, 4.0, gate, True, after, growth_ratio_min=0.0)
        np.testing.assert_array_equal(same, rate)
        assert same.dtype == rate.dtype and after == before and rate.any()
        np.testing.assert_array_equal(window_trend(x, 4.0, estimator, 4.0, gate, True), rate)
    no_halves: dict = {}
    window_trend(x, *READ, NO_GATE, True, no_halves)
    assert "growth_ratio" not in no_halves  # no gate, no minmod, no floor: the halves are not read for it


def test_the_floor_is_read_after_the_gate_and_the_growth_floor():
    x, _ = _slowing()
    shut_gate: dict = {}
    assert not window_trend(x, *READ, 1.0, True, shut_gate, growth_ratio_min=FLOOR).any()
    assert "persistence" in shut_gate and "growth_ratio" not in shut_gate
    starved: dict = {}
    assert not window_trend(x, *READ, 0.0, True, starved, growth_min=1.0, growth_ratio_min=FLOOR).any()
    assert "growth" in starved and "growth_ratio" not in starved


def test_the_floor_reads_the_unscaled_rate_before_the_ramp():
    x, ratio = _slowing()
    reading: dict = {}
    window_trend(x, *READ, 0.0, True, reading)
    rho = reading["persistence"]
    gate, full = rho - 0.1, rho + 0.15  # a ramp of 0.4
    unramped = window_trend(x, *READ, gate, True)
    ramped: dict = {}
    rate = window_trend(x, *READ, gate, True, ramped, persistence_full=full, growth_ratio_min=ratio)
    assert ramped["growth_ratio"] == ratio and ramped["ramp"] == pytest.approx(0.4)
    np.testing.assert_array_equal(rate, unramped * np.float32(ramped["ramp"]))
    # at the gate the ramp weighs the rate by 0, but the ratio is still the scene's, and the floor still shuts
    at_gate: dict = {}
    assert not window_trend(x, *READ, rho, True, at_gate, persistence_full=rho + 0.2, growth_ratio_min=ratio).any()
    assert at_gate["ramp"] == 0.0 and at_gate["growth_ratio"] == ratio
    assert not window_trend(x, *READ, gate, True, persistence_full=full,
                            growth_ratio_min=float(np.nextafter(ratio, np.inf))).any()


def test_window_trend_refuses_a_floor_that_is_not_a_ratio():
    x, _ = _slowing()
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="growth-ratio floor must be a ratio >= 0"):
            window_trend(x, *READ, 0.0, True, growth_ratio_min=bad)


# ------------------------------------------------------------------ the weights
def test_the_weights_read_their_floor_and_refuse_impossible_ones_in_one_line():
    x, ratio = _slowing()
    reading: dict = {}
    assert not _floored(FLOOR).rate(x, reading).any() and reading["growth_ratio"] == ratio
    np.testing.assert_array_equal(_floored(ratio).rate(x), window_trend(x, *READ, 0.0, True))
    np.testing.assert_array_equal(_floored(0.0).rate(x), window_trend(x, *READ, 0.0, True))
    assert _floored(FLOOR, gate=NO_GATE).trend_growth_ratio_min == FLOOR  # no gate needed
    assert ChangeWeights.constant(0.0, 0.0, 1, trend_frames=8,
                                  trend_growth_ratio_min=FLOOR).trend_growth_ratio_min == FLOOR
    assert ChangeWeights.constant(0.0, 0.0, 1).trend_growth_ratio_min == 0.0
    for bad in (-0.1, float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match="trend_growth_ratio_min must be a ratio >= 0") as exc:
            _floored(bad)
        assert "\n" not in str(exc.value)
        with pytest.raises(ValueError, match="trend_growth_ratio_min must be a ratio >= 0"):
            check_trend_reading(8, trend_growth_ratio_min=bad)
    with pytest.raises(ValueError, match="needs trend_frames >= 6") as exc:
        check_trend_reading(4, trend_growth_ratio_min=FLOOR)
    assert "\n" not in str(exc.value) and "trend_growth_ratio_min" in str(exc.value)
    check_trend_reading(4, trend_growth_ratio_min=0.0)  # off: any window


def test_the_floor_round_trips_old_entries_have_none_and_bad_ones_are_refused():
    weights = _floored(FLOOR)
    entry = weights.to_metadata()
    assert entry["trend_growth_ratio_min"] == FLOOR and ChangeWeights.from_metadata(entry) == weights
    assert _floored(0.0).to_metadata()["trend_growth_ratio_min"] == 0.0
    old = {k: v for k, v in entry.items() if k != "trend_growth_ratio_min"}
    assert ChangeWeights.from_metadata(old).trend_growth_ratio_min == 0.0
    assert ChangeWeights.from_metadata(old) == replace(weights, trend_growth_ratio_min=0.0)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(CheckpointError, match="m.pt: invalid change_weights: trend_growth_ratio_min must"):
            ChangeWeights.from_metadata({**entry, "trend_growth_ratio_min": bad}, "m.pt")


def test_the_listing_mentions_the_floor_only_when_there_is_one():
    assert (", only where the growth did not slow within the window (newer half >= 0.85 of the older)"
            in _floored(FLOOR).brief())
    assert "slow" not in _floored(0.0).brief() and "newer half" not in _floored(0.0).brief()
    assert _floored(0.0).brief() == replace(_floored(FLOOR), trend_growth_ratio_min=0.0).brief()


def test_the_note_says_the_growth_slowed_only_where_the_floor_shut_it():
    floored, unfloored = _floored(FLOOR), _floored(0.0)
    shut = floored.trend_note(np.zeros(SHAPE), {"persistence": 0.9, "growth": 0.01, "growth_ratio": 0.6}, 3.0)
    assert shut == ("not added: the scene's growth slowed within the last 40 min (its newer half grew 0.60 as fast "
                    "as its older half; at least 0.85 needed)")
    grows = np.ones(SHAPE)
    for ratio in (FLOOR, 0.95, None):  # at the floor, above it, undefined: today's notes
        reading = {"persistence": 0.9, "growth": 0.01, "growth_ratio": ratio}
        note = floored.trend_note(grows, reading, 3.0)
        assert note == unfloored.trend_note(grows, {"persistence": 0.9, "growth": 0.01}, 3.0)
        assert note.startswith("added: growth of the last 40 min") and "slowed" not in note
    off = unfloored.trend_note(np.zeros(SHAPE), {"persistence": 0.9, "growth": 0.01, "growth_ratio": 0.6}, 3.0)
    assert off == unfloored.trend_note(np.zeros(SHAPE), {"persistence": 0.9, "growth": 0.01}, 3.0)
    assert "slowed" not in off
    # a gate or a growth floor that shut it first says so, as before
    assert floored.trend_note(np.zeros(SHAPE), {"persistence": -0.5, "growth_ratio": 0.6}, 3.0).endswith(
        "(rho -0.50 < 0)")


def test_the_forecast_adds_no_trend_to_a_slowing_growth_and_says_why():
    window = _window(1.5, 1.0)
    extrapolated = _model(ChangeWeights.constant(0.0, 0.0, LEADS)).predict(window, LEADS)
    open_ = _model(_floored(0.0))
    assert not np.array_equal(np.nan_to_num(open_.predict(window, LEADS)), np.nan_to_num(extrapolated))
    floored = _model(_floored(FLOOR))
    np.testing.assert_array_equal(np.nan_to_num(floored.predict(window, LEADS)), np.nan_to_num(extrapolated))
    assert floored.last_trend_note.startswith("not added: the scene's growth slowed within the last 40 min (its "
                                              "newer half grew 0.")
    assert floored.last_trend_note.endswith("as fast as its older half; at least 0.85 needed)")
    steady = _model(_floored(FLOOR))
    steady.predict(_window(1.0, 1.0), LEADS)
    assert steady.last_trend_note.startswith("added: growth of the last 40 min")


# ------------------------------------------------------------------ the shipped reading and the evidence benchmark
@pytest.fixture(scope="module")
def shipped():
    from nowcast.models.zoo import load_forecaster

    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} is not here")
    return load_forecaster(SHIPPED)


def test_the_ratio_is_what_persistence_evidence_reports_for_the_shipped_reading(shipped):
    from benchmarks.persistence_evidence import (
        HISTORY,
        NETWORK_FRAMES,
        SMOOTHING,
        evidence,
    )
    from benchmarks.persistence_evidence import LEADS as EVIDENCE_LEADS
    from nowcast.models import lagrangian
    from nowcast.models.calibration import TREND_LINEARITY_POWER

    weights = replace(shipped.change_weights, trend_growth_ratio_min=FLOOR)
    # the halves persistence_evidence reads (half_rates' defaults) are the shipped reading's
    assert weights.trend_linearity_power == TREND_LINEARITY_POWER == 4.0 and weights.trend_align
    assert weights.trend_smoothing_px == SMOOTHING and weights.trend_frames == HISTORY
    assert weights.trend_estimator == "slope"
    method, seen = shipped.config.motion.method, []
    for older_db, newer_db in ((1.5, 1.0), (1.5, 0.5), (1.0, 1.0), (0.0, 2.0)):
        sequence = _window(older_db, newer_db, frames=HISTORY + EVIDENCE_LEADS)
        expected = evidence(sequence, shipped.normaliser, method)
        prepared = lagrangian.prepare(sequence[:HISTORY], EVIDENCE_LEADS, shipped.normaliser, method,
                                      motion_frames=NETWORK_FRAMES)
        reading: dict = {}
        rate = weights.rate(prepared.inputs, reading)
        assert reading["persistence"] == expected["rho"]
        shut = (reading["persistence"] < weights.trend_persistence_min
                or reading.get("growth", 0.0) < weights.trend_growth_min)
        if shut:
            assert "growth_ratio" not in reading and not rate.any()  # shut before the ratio is read
            continue
        assert reading["growth"] == expected["growth"]
        assert reading["growth_ratio"] == expected["growth_ratio"]  # exactly, not approximately
        ratio = expected["growth_ratio"]
        assert rate.any() == (ratio is None or ratio >= FLOOR)  # undefined: a growth that began in the newer half
        seen.append(ratio)
    defined = [r for r in seen if r is not None]
    assert None in seen and min(defined) < FLOOR <= max(defined)  # both sides of the floor and undefined read


def test_the_shipped_forecast_with_the_floor_says_the_ratio_evidence_reports(shipped):
    from benchmarks.persistence_evidence import HISTORY, evidence
    from benchmarks.persistence_evidence import LEADS as EVIDENCE_LEADS

    sequence = _window(1.5, 1.0, frames=HISTORY + EVIDENCE_LEADS)
    ratio = evidence(sequence, shipped.normaliser, shipped.config.motion.method)["growth_ratio"]
    assert ratio < FLOOR
    weights = shipped.change_weights
    # the shipped reading with the floor off (since the thirtieth round it has it on), at the twenty-fifth
    # round's evidence floor, so that this test does not follow the shipped calibration
    base = replace(weights, trend_growth_ratio_min=0.0, trend_persistence_samples=5.0)
    leads = 6
    try:
        shipped.change_weights = ChangeWeights.constant(0.0, 0.0, leads)
        extrapolated = shipped.predict(sequence[:HISTORY], leads)
        shipped.change_weights = base
        unfloored = shipped.predict(sequence[:HISTORY], leads)
        assert shipped.last_trend_note.startswith("added: growth of the last 40 min")
        shipped.change_weights = replace(base, trend_growth_ratio_min=FLOOR)
        floored = shipped.predict(sequence[:HISTORY], leads)
    finally:
        shipped.change_weights = weights
    assert not np.array_equal(np.nan_to_num(unfloored), np.nan_to_num(extrapolated))
    np.testing.assert_array_equal(np.nan_to_num(floored, nan=-1.0), np.nan_to_num(extrapolated, nan=-1.0))
    assert f"(its newer half grew {ratio:.2f} as fast as its older half; at least 0.85 needed)" in \
        shipped.last_trend_note


# ------------------------------------------------------------------ calibration, config, command line
def test_the_calibration_and_the_config_carry_the_floor():
    from nowcast.models.config import CalibrationConfig

    seqs, keys, reading = calibration_case()
    weights, _, starved, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_growth_ratio_min=100.0, **reading)
    assert weights.trend_growth_ratio_min == 100.0  # no scene grew 100 times faster in its newer half: none added
    _, _, opened, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_growth_ratio_min=FLOOR, **reading)
    assert starved[keys[0]]["growth"]["change"] == 0.0 < opened[keys[0]]["growth"]["change"]
    with pytest.raises(ValueError, match="trend_growth_ratio_min must be"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_growth_ratio_min=float("nan"), **reading)

    settings = CalibrationConfig(trend_frames=8, trend_persistence_min=0.65, trend_growth_ratio_min=FLOOR)
    assert "--trend-growth-ratio-min 0.85" in settings.options()
    assert settings.calibrate_kwargs()["trend_growth_ratio_min"] == FLOOR
    assert CalibrationConfig.model_validate(settings.model_dump()) == settings
    default = CalibrationConfig(trend_frames=8)
    assert default.trend_growth_ratio_min == 0.0 and default.calibrate_kwargs()["trend_growth_ratio_min"] == 0.0
    assert not any("--trend-growth-ratio-min" in option for option in default.options())
    for bad in ({"trend_frames": 8, "trend_growth_ratio_min": -0.1}, {"trend_growth_ratio_min": FLOOR},
                {"trend_frames": 8, "trend_growth_ratio_min": float("inf")}):
        with pytest.raises(ValueError, match="trend_growth_ratio_min"):
            CalibrationConfig(**bad)


def test_cli_calibrates_with_the_floor_records_it_and_refuses_a_negative_one_in_one_line(tmp_path, capsys):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint
    from tests.test_trend_history import calibratable_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    options = ["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2",
               "--network-weights", "0", "--trend-weights", "2", "--trend-forms", "growth", "--trend-lifetimes", "12"]
    assert main([*options, "--trend-growth-ratio-min", "0.85"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert entry["trend_growth_ratio_min"] == FLOOR and "--trend-growth-ratio-min 0.85" in entry["command"]
    assert "newer half >= 0.85 of the older" in capsys.readouterr().out
    for bad in ("-1", "nan", "inf"):
        code = main([*options, "--trend-growth-ratio-min", bad])
        assert code not in (0, None)
        err = capsys.readouterr().err
        assert "trend_growth_ratio_min must be a ratio >= 0" in err and err.count("\n") == 1, err
    short = ["--trend-frames", "4", "--trend-estimator", "slope"]
    assert main([*options, *short, "--trend-growth-ratio-min", "0.85"]) == 2
    err = capsys.readouterr().err
    assert "needs trend_frames >= 6" in err and err.count("\n") == 1, err
    assert load_checkpoint(config.checkpoint_path).metadata["change_weights"]["trend_growth_ratio_min"] == FLOOR
