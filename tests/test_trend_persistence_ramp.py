"""A ramp on the scene's persistence instead of a step at the gate (twenty-eighth round, issue #8).

``ChangeWeights.trend_persistence_full`` (and ``window_trend(persistence_full=)``)
weighs the window's trend by :func:`~nowcast.models.calibration.persistence_ramp`
of the scene's persistence rho: nothing at the gate, rising linearly to the
whole trend at ``full``. Why: rho moves by 0.02-0.03 between runs 5 min apart,
and the hard step turned those moves into the whole growth or none, so growth
flickered on and off between successive forecasts. Tested: the factor at and
around both ends, the rate unchanged bit for bit without a ramp and scaled by
the reported factor with one, the growth floor still read on the unscaled rate,
the refusals, the checkpoint entry and old entries, what a product and a
listing say, the calibration, the config and the command line.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nowcast.errors import CheckpointError
from nowcast.models.calibration import (
    NO_GATE,
    ChangeWeights,
    calibrate,
    check_trend_reading,
    persistence_ramp,
    window_trend,
)
from tests.test_trend_growth_floor import SHAPE, _moved_window, calibration_case
from tests.test_trend_history import LEADS, _minmod_weights, _model

READ = (4.0, "slope", 4.0)  # linearity power, estimator, smoothing: the shipped reading


def _ramped(gate: float, full: float = NO_GATE, samples: float = 0.0) -> ChangeWeights:
    return replace(_minmod_weights(), trend_estimator="slope", trend=(2.0,) * LEADS, trend_lifetime=12.0,
                   trend_persistence_min=gate, trend_align=True, trend_ceiling="scene",
                   trend_persistence_samples=samples, trend_persistence_full=full)


def _rho() -> tuple[np.ndarray, float]:
    """The moved window of :func:`_moved_window` and its persistence (0.66: a growth that went on)."""
    _, x = _moved_window()
    reading: dict = {}
    window_trend(x, *READ, 0.0, True, reading)
    return x, reading["persistence"]


# ------------------------------------------------------------------ the factor
def test_the_ramp_is_0_at_the_gate_half_halfway_and_1_from_full_on():
    assert persistence_ramp(0.6, 0.6, 0.8) == 0.0  # exactly at the gate
    assert persistence_ramp(0.8, 0.6, 0.8) == 1.0  # exactly at full
    assert persistence_ramp(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert persistence_ramp(0.95, 0.6, 0.8) == 1.0 and persistence_ramp(1.0, 0.6, 0.8) == 1.0  # above: clipped
    assert persistence_ramp(0.3, 0.6, 0.8) == 0.0  # below the gate: clipped (window_trend shuts it anyway)
    hair = float(np.nextafter(0.6, 1.0))
    assert 0.0 < persistence_ramp(hair, 0.6, 0.8) < 1e-12  # a hair above the gate: a hair of the trend
    below_full = float(np.nextafter(0.8, 0.0))
    assert 1.0 - 1e-12 < persistence_ramp(below_full, 0.6, 0.8) < 1.0
    assert persistence_ramp(0.65, 0.6, 0.85) == pytest.approx(0.2)
    assert isinstance(persistence_ramp(np.float64(0.7), 0.6, 0.8), float)


def test_no_ramp_is_1_when_full_is_at_or_below_the_gate_and_nan_is_no_evidence():
    for full in (NO_GATE, 0.0, 0.6):  # -1, below the gate, exactly at it: the step
        assert persistence_ramp(0.61, 0.6, full) == 1.0 and persistence_ramp(0.6, 0.6, full) == 1.0
    assert persistence_ramp(0.0, NO_GATE, NO_GATE) == 1.0
    assert persistence_ramp(float("nan"), 0.6, 0.8) == 0.0


# ------------------------------------------------------------------ window_trend
def test_without_a_ramp_the_rate_is_the_steps_bit_for_bit_and_the_reading_says_1():
    x, rho = _rho()
    for gate in (NO_GATE, 0.0, rho):  # no gate, an open gate, the gate exactly at rho (still open)
        before: dict = {}
        rate = window_trend(x, *READ, gate, True, before)
        assert rate.any()
        for full in (NO_GATE, gate, gate - 0.5):  # -1, at the gate, below it: no ramp
            if full < NO_GATE:
                continue
            after: dict = {}
            same = window_trend(x, *READ, gate, True, after, persistence_full=full)
            np.testing.assert_array_equal(same, rate)
            assert same.dtype == rate.dtype and after == before and after["ramp"] == 1.0


def test_a_shut_gate_puts_no_ramp_in_the_reading():
    x, rho = _rho()
    reading: dict = {}
    assert not window_trend(x, *READ, float(np.nextafter(rho, 1.0)), True, reading, persistence_full=1.0).any()
    assert "persistence" in reading and "ramp" not in reading and "growth" not in reading


def test_with_a_ramp_the_rate_is_the_unramped_rate_times_the_factor_the_reading_reports():
    x, rho = _rho()
    gate, full = rho - 0.1, rho + 0.15
    unramped = window_trend(x, *READ, gate, True)
    reading: dict = {}
    rate = window_trend(x, *READ, gate, True, reading, persistence_full=full)
    assert reading["persistence"] == rho and reading["ramp"] == persistence_ramp(rho, gate, full)
    assert reading["ramp"] == pytest.approx(0.4)
    np.testing.assert_array_equal(rate, unramped * np.float32(reading["ramp"]))
    assert rate.dtype == unramped.dtype
    np.testing.assert_allclose(rate, 0.4 * unramped, rtol=1e-6)
    # at the gate exactly: nothing; at full exactly and above: the whole rate
    at_gate: dict = {}
    assert not window_trend(x, *READ, rho, True, at_gate, persistence_full=rho + 0.2).any() and at_gate["ramp"] == 0.0
    at_full: dict = {}
    np.testing.assert_array_equal(window_trend(x, *READ, rho - 0.2, True, at_full, persistence_full=rho),
                                  window_trend(x, *READ, rho - 0.2, True))
    assert at_full["ramp"] == 1.0
    np.testing.assert_array_equal(window_trend(x, *READ, rho - 0.2, True, persistence_full=rho - 0.1),
                                  window_trend(x, *READ, rho - 0.2, True))
    # the minmod reading is weighed the same way
    minmod = window_trend(x, 4.0, "minmod", 4.0, gate, True)
    np.testing.assert_array_equal(window_trend(x, 4.0, "minmod", 4.0, gate, True, persistence_full=full),
                                  minmod * np.float32(reading["ramp"]))


def test_the_growth_floor_reads_the_unscaled_rate():
    x, rho = _rho()
    gate, full = rho - 0.1, rho + 0.15  # a ramp of 0.4
    reading: dict = {}
    unramped = window_trend(x, *READ, gate, True, reading)
    growth = reading["growth"]
    # a floor above the ramped growth (0.4 of it) but at the unscaled one: the trend passes, ramped
    floored: dict = {}
    rate = window_trend(x, *READ, gate, True, floored, growth_min=growth, persistence_full=full)
    assert rate.any() and floored["growth"] == growth
    np.testing.assert_array_equal(rate, unramped * np.float32(floored["ramp"]))
    # a hair above the unscaled growth: shut, the ramp notwithstanding
    shut = window_trend(x, *READ, gate, True, growth_min=float(np.nextafter(growth, 1.0)), persistence_full=full)
    assert not shut.any()


def test_window_trend_refuses_a_ramp_without_a_gate():
    x, _ = _rho()
    with pytest.raises(ValueError, match="a persistence ramp .* needs a persistence gate"):
        window_trend(x, *READ, NO_GATE, True, persistence_full=0.8)


# ------------------------------------------------------------------ the weights
def test_the_weights_read_their_ramp_and_refuse_impossible_ones_in_one_line():
    x, rho = _rho()
    weights = _ramped(rho - 0.1, rho + 0.15)
    reading: dict = {}
    np.testing.assert_array_equal(weights.rate(x, reading), window_trend(x, *READ, rho - 0.1, True,
                                                                          persistence_full=rho + 0.15))
    assert reading["ramp"] == pytest.approx(0.4)
    assert ChangeWeights.constant(0.0, 0.0, 1, trend_frames=8, trend_persistence_min=0.6,
                                  trend_persistence_full=0.85).trend_persistence_full == 0.85
    assert _ramped(0.6, 1.0).trend_persistence_full == 1.0 and _ramped(0.6).trend_persistence_full == NO_GATE
    refusals = {(0.6, 0.6): "must lie above trend_persistence_min", (0.6, 0.5): "must lie above trend_persistence_min",
                (0.6, -0.99): "must lie above trend_persistence_min",
                (NO_GATE, 0.8): "needs a persistence gate", (0.6, float("nan")): "must be a correlation in",
                (0.6, 1.5): "must be a correlation in", (0.6, -1.5): "must be a correlation in",
                (0.6, float("inf")): "must be a correlation in"}
    for (gate, full), message in refusals.items():
        with pytest.raises(ValueError, match=message) as exc:
            _ramped(gate, full)
        assert "\n" not in str(exc.value) and "trend_persistence_full" in str(exc.value)
        with pytest.raises(ValueError, match=message):
            check_trend_reading(8, trend_persistence_min=gate, trend_persistence_full=full)


def test_the_ramp_round_trips_old_entries_read_a_step_and_bad_ones_are_refused():
    weights = _ramped(0.6, 0.85, samples=5.0)
    entry = weights.to_metadata()
    assert entry["trend_persistence_full"] == 0.85 and ChangeWeights.from_metadata(entry) == weights
    assert _ramped(0.6).to_metadata()["trend_persistence_full"] == NO_GATE
    old = {k: v for k, v in entry.items() if k != "trend_persistence_full"}
    assert ChangeWeights.from_metadata(old).trend_persistence_full == NO_GATE
    assert ChangeWeights.from_metadata(old) == replace(weights, trend_persistence_full=NO_GATE)
    for bad in (0.5, 1.5, float("nan")):
        with pytest.raises(CheckpointError, match="m.pt: invalid change_weights: trend_persistence_full must"):
            ChangeWeights.from_metadata({**entry, "trend_persistence_full": bad}, "m.pt")


def test_the_listing_mentions_the_ramp_only_when_there_is_one():
    assert "(rho >= 0.6, weight rising to full at rho 0.85, over 5+ independent samples)" in _ramped(
        0.6, 0.85, samples=5.0).brief()
    assert "(rho >= 0.6, weight rising to full at rho 0.85)" in _ramped(0.6, 0.85).brief()
    for unramped in (_ramped(0.6, samples=5.0).brief(), _ramped(0.6).brief()):
        assert "rising" not in unramped and "full at" not in unramped
    assert "(rho >= 0.6 over 5+ independent samples)" in _ramped(0.6, samples=5.0).brief()


def test_the_note_says_the_share_below_full_and_nothing_new_otherwise():
    ramped, step = _ramped(0.6, 0.85), _ramped(0.6)
    grows = np.ones(SHAPE)
    note = ramped.trend_note(grows, {"persistence": 0.7, "growth": 0.01, "ramp": 0.4}, 3.0)
    assert "where the scene's growth persisted (rho 0.70 >= 0.6; x0.40 of it, full at rho 0.85)," in note
    assert note.startswith("added: growth of the last 40 min")
    full = ramped.trend_note(grows, {"persistence": 0.9, "growth": 0.01, "ramp": 1.0}, 3.0)
    unramped = step.trend_note(grows, {"persistence": 0.9, "growth": 0.01, "ramp": 1.0}, 3.0)
    assert full == unramped and "(rho 0.90 >= 0.6), capped" in full and "full at" not in full
    assert "x0" not in step.trend_note(grows, {"persistence": 0.7, "growth": 0.01}, 3.0)
    assert step.trend_note(grows, {"persistence": 0.7, "growth": 0.01}, 3.0) == step.trend_note(
        grows, {"persistence": 0.7, "growth": 0.01, "ramp": 1.0}, 3.0)
    nothing = ramped.trend_note(np.zeros(SHAPE), {"persistence": 0.6, "growth": 0.01, "ramp": 0.0}, 3.0)
    assert nothing == ("not added: the scene's growth persisted too little through the last 40 min to add any "
                       "(rho 0.60; none at 0.6, full at rho 0.85)")
    shut = ramped.trend_note(np.zeros(SHAPE), {"persistence": 0.5, "growth": 0.01}, 3.0)
    assert shut == "not added: the scene's growth did not persist through the last 40 min (rho 0.50 < 0.6)"


def test_the_forecast_adds_the_ramped_trend_and_says_how_much():
    window, _ = _moved_window()
    _, rho = _rho()
    extrapolated = _model(ChangeWeights.constant(0.0, 0.0, LEADS)).predict(window, LEADS)
    ramped = _model(_ramped(rho - 0.1, rho + 0.15))
    forecast = ramped.predict(window, LEADS)
    assert f"(rho {rho:.2f} >= {rho - 0.1:g}; x0.40 of it, full at rho {rho + 0.15:g})" in ramped.last_trend_note
    whole = _model(_ramped(rho - 0.1)).predict(window, LEADS)
    lift, whole_lift = (np.nansum(np.nan_to_num(f) - np.nan_to_num(extrapolated)) for f in (forecast, whole))
    assert 0.0 < lift < whole_lift  # some of the growth, not all of it
    at_gate = _model(_ramped(rho, rho + 0.2))
    np.testing.assert_array_equal(np.nan_to_num(at_gate.predict(window, LEADS)), np.nan_to_num(extrapolated))
    assert at_gate.last_trend_note.startswith("not added: the scene's growth persisted too little")


# ------------------------------------------------------------------ calibration, config, command line
def test_the_calibration_and_the_config_carry_the_ramp():
    from nowcast.models.config import CalibrationConfig

    seqs, keys, reading = calibration_case()
    weights, _, ramped, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_persistence_full=1.0, **reading)
    assert weights.trend_persistence_full == 1.0 and weights.trend_persistence_min == 0.0
    _, _, stepped, _ = calibrate(_model(None), seqs, LEADS, keys=keys, **reading)
    assert 0.0 < ramped[keys[0]]["growth"]["change"] < stepped[keys[0]]["growth"]["change"]
    with pytest.raises(ValueError, match="trend_persistence_full must be"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_persistence_full=float("nan"), **reading)
    with pytest.raises(ValueError, match="needs a persistence gate"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_persistence_full=0.85)

    settings = CalibrationConfig(trend_frames=8, trend_persistence_min=0.6, trend_persistence_full=0.85)
    assert "--trend-persistence-full 0.85" in settings.options()
    assert settings.calibrate_kwargs()["trend_persistence_full"] == 0.85
    assert CalibrationConfig.model_validate(settings.model_dump()) == settings
    default = CalibrationConfig(trend_frames=8, trend_persistence_min=0.6)
    assert default.trend_persistence_full == NO_GATE and default.calibrate_kwargs()["trend_persistence_full"] == -1.0
    assert not any("--trend-persistence-full" in option for option in default.options())
    for bad in ({"trend_persistence_full": 1.5}, {"trend_persistence_full": 0.85},
                {"trend_frames": 8, "trend_persistence_min": 0.6, "trend_persistence_full": 0.6}):
        with pytest.raises(ValueError, match="trend_persistence_full"):
            CalibrationConfig(**bad)


def test_cli_calibrates_with_the_ramp_records_it_and_refuses_a_bad_one_in_one_line(tmp_path, capsys):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint
    from tests.test_trend_history import calibratable_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    options = ["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2",
               "--network-weights", "0", "--trend-weights", "2", "--trend-forms", "growth", "--trend-lifetimes", "12",
               "--trend-persistence-min", "0.5"]
    assert main([*options, "--trend-persistence-full", "0.85"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert entry["trend_persistence_full"] == 0.85 and "--trend-persistence-full 0.85" in entry["command"]
    assert "weight rising to full at rho 0.85" in capsys.readouterr().out
    for bad, message in (("0.5", "must lie above trend_persistence_min"), ("0.3", "must lie above"),
                         ("1.5", "must be a correlation in"), ("nan", "must be a correlation in")):
        assert main([*options, "--trend-persistence-full", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and "trend_persistence_full" in err and err.count("\n") == 1, err
    assert main([*options[:-2], "--trend-persistence-full", "0.85"]) == 2  # the checkpoint's config has no gate
    err = capsys.readouterr().err
    assert "needs a persistence gate" in err and err.count("\n") == 1
    assert load_checkpoint(config.checkpoint_path).metadata["change_weights"]["trend_persistence_full"] == 0.85


def test_the_note_says_near_the_gate_within_the_run_to_run_move_of_rho_and_not_beyond():
    """A forecaster is told when the next run may decide otherwise: |rho - gate| < 0.1 (RHO_RUN_TO_RUN)."""
    from nowcast.models.calibration import RHO_RUN_TO_RUN

    step, grows = _ramped(0.6), np.ones(SHAPE)

    def note(rho: float) -> str:
        rate = grows if rho >= 0.6 else np.zeros(SHAPE)
        return step.trend_note(rate, {"persistence": rho, "growth": 0.01}, 3.0)

    assert RHO_RUN_TO_RUN == 0.1
    assert "(rho 0.60 >= 0.6), near the gate (the next run may not add it), capped" in note(0.6)  # at the gate
    assert "near the gate (the next run may not add it)" in note(0.6999)
    assert "near the gate" not in note(0.7)  # exactly the run-to-run move away
    assert note(0.55).endswith("(rho 0.55 < 0.6), near the gate (the next run may add it)")
    assert note(0.5001).endswith("near the gate (the next run may add it)")
    assert note(0.5).endswith("(rho 0.50 < 0.6)")
    no_gate = replace(step, trend_persistence_min=NO_GATE)
    assert "near the gate" not in no_gate.trend_note(grows, {"growth": 0.01}, 3.0)
