"""A trend added only to a scene that grew more than a moving field reads (twenty-fourth round, issue #8).

``ChangeWeights.trend_growth_min`` (and ``window_trend(growth_min=)``) shuts the
trend where the rate, where it grows, averages less than the floor
(:func:`~nowcast.models.calibration.scene_growth`): on the read rigid fields the
windows that opened the persistence gate read 0.0007-0.0038 per step, the growth
sets' most above 0.006. Tested: the statistic, the floor exactly at the scene's
growth and a hair above it, the reading it fills, the product's note, the
checkpoint entry and old entries, the config and command line, and the
benchmarks that name and choose it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nowcast.errors import CheckpointError
from nowcast.models.calibration import (
    ChangeWeights,
    calibrate,
    candidates,
    scene_growth,
    window_trend,
)
from tests.test_calibration import growing_sequences
from tests.test_trend_history import LEADS, _minmod_weights, _model

SHAPE = (40, 40)


def _moved_window(db_per_step: float = 1.0):
    from nowcast.models import lagrangian

    window = growing_sequences(n=1, frames=8, db_per_step=db_per_step, seed=3)[0]
    fc = _model(None)
    return window, lagrangian.prepare(window, LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4).inputs


def _floored(growth_min: float) -> ChangeWeights:
    return replace(_minmod_weights(), trend_estimator="slope", trend=(2.0,) * LEADS, trend_lifetime=12.0,
                   trend_persistence_min=0.0, trend_align=True, trend_ceiling="scene", trend_growth_min=growth_min)


def test_scene_growth_is_the_mean_where_the_rate_grows_and_0_where_nothing_does():
    rate = np.array([[0.002, 0.004, -0.5], [0.0, 0.0, -0.1]], dtype=np.float32)
    assert scene_growth(rate) == pytest.approx(0.003)  # the decay and the unread pixels do not count
    assert scene_growth(-np.abs(rate)) == 0.0 and scene_growth(np.zeros(SHAPE)) == 0.0


def test_the_floor_passes_a_scene_exactly_at_it_and_shuts_one_a_hair_above():
    _, x = _moved_window()
    reading: dict = {}
    rate = window_trend(x, 4.0, "slope", 4.0, 0.0, True, reading)
    growth = reading["growth"]
    assert growth == pytest.approx(scene_growth(rate)) and growth > 0
    at: dict = {}
    np.testing.assert_array_equal(window_trend(x, 4.0, "slope", 4.0, 0.0, True, at, growth_min=growth), rate)
    assert at["growth"] == growth
    above: dict = {}
    shut = window_trend(x, 4.0, "slope", 4.0, 0.0, True, above, growth_min=float(np.nextafter(growth, 1.0)))
    assert not shut.any() and shut.shape == rate.shape and above["growth"] == growth
    # the minmod reading is floored the same way, on its own rate
    minmod = window_trend(x, 4.0, "minmod", 4.0, 0.0, True)
    assert minmod.any()
    assert not window_trend(x, 4.0, "minmod", 4.0, 0.0, True, growth_min=scene_growth(minmod) * 1.001).any()


def test_a_shut_gate_is_read_before_the_floor_and_leaves_no_growth_reading():
    _, x = _moved_window()
    reading: dict = {}
    assert not window_trend(x, 4.0, "slope", 4.0, 1.0, True, reading, growth_min=1e-9).any()
    assert "persistence" in reading and "growth" not in reading


def test_the_forecast_adds_the_trend_only_above_the_floor_and_says_why_not(tmp_path):
    window, x = _moved_window()
    growth = scene_growth(window_trend(x, 4.0, "slope", 4.0, 0.0, True))
    extrapolated = _model(ChangeWeights.constant(0.0, 0.0, LEADS)).predict(window, LEADS)
    at = _model(_floored(growth))
    assert not np.array_equal(np.nan_to_num(at.predict(window, LEADS)), np.nan_to_num(extrapolated))
    assert at.last_trend_note.startswith("added: growth of the last 40 min")
    above = _model(_floored(growth * 1.01))
    np.testing.assert_array_equal(np.nan_to_num(above.predict(window, LEADS)), np.nan_to_num(extrapolated))
    per_hour = 15.0 * 60.0 / 5.0  # the db normaliser's 15 dB per unit, 5-min steps
    assert above.last_trend_note == (
        f"not added: the scene grew too little in the last 40 min to tell from rain that only moves "
        f"({growth * per_hour:.2f} dB/h < {growth * 1.01 * per_hour:.2f} dB/h where it grew)")


def test_the_note_without_a_db_scale_says_network_units_and_a_floor_of_0_never_speaks():
    weights = _floored(0.004)
    assert weights.trend_note(np.zeros(SHAPE), {"persistence": 0.9, "growth": 0.003}, None).endswith(
        "(0.0030 < 0.0040 where it grew)")
    unfloored = _floored(0.0)
    assert unfloored.trend_note(np.ones(SHAPE), {"persistence": 0.9, "growth": 0.0}, 3.0).startswith("added")
    assert "grew at least 0.004 units per step" in weights.brief() and "grew at least" not in unfloored.brief()


def test_the_floor_round_trips_old_entries_have_none_and_bad_ones_are_refused():
    weights = _floored(0.004)
    entry = weights.to_metadata()
    assert entry["trend_growth_min"] == 0.004 and ChangeWeights.from_metadata(entry) == weights
    old = {k: v for k, v in entry.items() if k != "trend_growth_min"}
    assert ChangeWeights.from_metadata(old).trend_growth_min == 0.0
    for bad in (-0.001, float("nan"), float("inf")):
        with pytest.raises(CheckpointError, match="m.pt: invalid change_weights: trend_growth_min must be"):
            ChangeWeights.from_metadata({**entry, "trend_growth_min": bad}, "m.pt")


def calibration_case() -> tuple[dict, list, dict]:
    """Two steadily growing sequences, one growth-only candidate and the shipped reading with an open gate.

    Shared by the tests that check a trend limit travels through ``calibrate``: each calls it with and without
    its own limit and compares what the candidate added.
    """
    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS, db_per_step=1.0)}
    keys = candidates((0.0,), (2.0,), forms=("growth",), lifetimes=(12.0,))
    reading = {"trend_frames": 8, "trend_estimator": "slope", "trend_smoothing_px": 4.0, "trend_persistence_min": 0.0,
               "trend_align": True, "trend_ceiling": "scene"}
    return seqs, keys, reading


def test_the_calibration_the_config_and_the_command_line_carry_the_floor():
    from nowcast.models.config import CalibrationConfig

    seqs, keys, reading = calibration_case()
    weights, _, starved, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_growth_min=1.0, **reading)
    assert weights.trend_growth_min == 1.0  # more than any scene grows: every candidate is extrapolation
    _, _, opened, _ = calibrate(_model(None), seqs, LEADS, keys=keys, **reading)
    assert starved[keys[0]]["growth"]["change"] == 0.0 < opened[keys[0]]["growth"]["change"]
    settings = CalibrationConfig(trend_frames=8, trend_persistence_min=0.6, trend_growth_min=0.004)
    assert "--trend-growth-min 0.004" in settings.options()
    assert settings.calibrate_kwargs()["trend_growth_min"] == 0.004
    with pytest.raises(ValueError, match="trend_growth_min"):
        CalibrationConfig(trend_growth_min=-0.001)
    with pytest.raises(ValueError, match="trend_growth_min must be"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_growth_min=float("nan"))


def test_the_benchmarks_read_the_floor_from_the_name_and_the_stricter_floor_wins_a_tie(tmp_path):
    import json

    from benchmarks.stress_rule import ranked_candidates, tie_break
    from benchmarks.trend_consistency import bounded_choice, gated_reading
    from benchmarks.trend_history import choice_weights

    assert gated_reading("slope smoothed 4, persisting 0.6, aligned, evidence 5, growth 0.004") == (
        "slope", 4.0, 0.6, 5.0, 0.004, -1.0)
    assert gated_reading("slope smoothed 4, persisting 0.6, aligned, growth 0.006") == (
        "slope", 4.0, 0.6, 0.0, 0.006, -1.0)
    assert gated_reading("slope smoothed 4, persisting 0.6, aligned, growth") is None
    rows = {"0/0/1.5/0/12": {"worst": 0.0, "growth_gain": 0.33}}
    results = {"estimators": {
        "slope smoothed 4, persisting 0.6, aligned, evidence 5, ceiling scene": rows,
        "slope smoothed 4, persisting 0.6, aligned, evidence 5, growth 0.004, ceiling scene":
            {"0/0/1.5/0/12": {"worst": 0.0, "growth_gain": 0.327}},
        "slope smoothed 4, persisting 0.7, aligned, evidence 5, growth 0.004, ceiling scene":
            {"0/0/1.5/0/12": {"worst": 0.0, "growth_gain": 0.2}}}}
    ranked = ranked_candidates(results, floor=-0.0005)
    assert [c["trend_growth_min"] for c in ranked] == [0.0, 0.004, 0.004]
    chosen = tie_break(ranked)  # 0.33 and 0.327 tie at the same gate: the higher floor
    assert chosen["trend_growth_min"] == 0.004 and chosen["trend_persistence_min"] == 0.6
    assert bounded_choice(results, floor=-0.0005)["trend_growth_min"] == 0.004
    path = tmp_path / "choice.json"
    path.write_text(json.dumps(chosen))
    assert choice_weights(json.loads(path.read_text())).trend_growth_min == 0.004


def test_cli_calibrates_with_the_floor_records_it_and_refuses_a_negative_one(tmp_path, capsys):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint
    from tests.test_trend_history import calibratable_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    options = ["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2",
               "--network-weights", "0",
               "--trend-weights", "2", "--trend-forms", "growth", "--trend-lifetimes", "12"]
    assert main([*options, "--trend-growth-min", "0.004"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert entry["trend_growth_min"] == 0.004 and "--trend-growth-min 0.004" in entry["command"]
    assert "grew at least 0.004 units per step" in capsys.readouterr().out
    assert main([*options, "--trend-growth-min", "-0.001"]) != 0
    assert load_checkpoint(config.checkpoint_path).metadata["change_weights"]["trend_growth_min"] == 0.004


# ------------------------------------------------------------------ the twenty-fifth round's rule
def test_lead_counts_pool_to_the_scores_of_score_method_and_to_window_counts():
    from benchmarks.stress_rule import counts_worst_lead, heavy
    from benchmarks.window_losses import HISTORY, lead_counts, window_counts
    from benchmarks.window_losses import LEADS as HOUR
    from nowcast.baselines import persistence
    from nowcast.models.skill import csi_from_counts, score_method

    seqs = growing_sequences(n=3, frames=HISTORY + HOUR, db_per_step=1.0, seed=5)
    counts = lead_counts(persistence, seqs)
    scores = score_method(persistence, seqs, HISTORY, HOUR)
    pooled = csi_from_counts(counts.sum(axis=0))
    np.testing.assert_allclose(pooled[:, 0], scores["csi@1"], equal_nan=True)
    np.testing.assert_allclose(pooled[:, 1], scores["csi@5"], equal_nan=True)
    np.testing.assert_array_equal(heavy(counts), window_counts(persistence, seqs))
    assert counts_worst_lead(counts, counts) == 0.0


def test_counts_worst_lead_reads_either_threshold_and_skips_leads_without_events():
    from benchmarks.stress_rule import counts_worst_lead

    reference = np.zeros((1, 2, 2, 3), dtype=np.int64)
    reference[0, :, :, 0], reference[0, :, :, 1] = 8, 2  # CSI 0.8 at both leads and thresholds
    candidate = reference.copy()
    candidate[0, 1, 1] = [7, 3, 0]  # 0.7 at the second lead, 5 mm/h
    assert counts_worst_lead(candidate, reference) == pytest.approx(-0.1)
    light = reference.copy()
    light[0, 0, 0] = [6, 4, 0]  # 0.6 at the first lead, 1 mm/h
    assert counts_worst_lead(light, reference) == pytest.approx(-0.2)
    empty = np.zeros_like(reference)
    assert counts_worst_lead(empty, empty) == 0.0  # no events anywhere: no evidence


def test_the_lead_floor_is_the_floor_or_the_shipped_models_own_worst_lead_where_lower():
    from benchmarks.stress_rule import lead_floor_passes

    shipped = {"day s7": -0.3, "day s15": 0.0}
    assert lead_floor_passes({"day s7": -0.3, "day s15": -0.002}, shipped, -0.002)  # exactly at both
    assert not lead_floor_passes({"day s7": -0.3, "day s15": -0.0021}, shipped, -0.002)
    assert not lead_floor_passes({"day s7": -0.31, "day s15": 0.0}, shipped, -0.002)  # worse than shipped on s7
