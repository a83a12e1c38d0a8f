"""A trend bounded by the rain the scene already has (seventeenth round, issue #8).

``ChangeWeights.trend_ceiling`` lets the window trend lift a pixel's forecast
at most to the heaviest rain of the moved window: of the whole scene
(``scene``) or within :data:`~nowcast.models.calibration.LOCAL_CEILING_PX` of
the pixel (``local``). Tested: the headroom each reads, a lift exactly to the
ceiling and one that would pass it, the network's change counted toward it,
the decay left alone; the forecast never above the window's heaviest rain; the
checkpoint entry; the calibration and the benchmark scoring the bounded
forecast; the command line and the choice files.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from nowcast.errors import CheckpointError
from nowcast.models.calibration import (
    LOCAL_CEILING_PX,
    TREND_CEILINGS,
    ChangeWeights,
    calibrate,
    candidates,
)
from tests.test_calibration import growing_sequences
from tests.test_trend_history import (
    LEADS,
    _minmod_weights,
    _model,
    calibratable_checkpoint,
)

SHAPE = (40, 40)


def _bounded(ceiling: str = "scene", trend: float = 1.0, leads: int = 3) -> ChangeWeights:
    """The trend's growth x``trend``, a lifetime so long that lead k lifts k steps of its rate."""
    return ChangeWeights.constant(0.0, 0.0, leads, trend=trend, trend_decay=0.0, trend_lifetime=1e9,
                                  trend_ceiling=ceiling)


def _window() -> np.ndarray:
    """4 moved frames: dry 0, a pixel that grew 1, 2, 3, 4 (the scene's heaviest), and a weak one at 1."""
    x = np.zeros((4, *SHAPE), dtype=np.float32)
    x[:, 20, 20] = [1.0, 2.0, 3.0, 4.0]
    x[-1, 5, 5] = 1.0
    return x


# ------------------------------------------------------------------ the headroom
def test_the_scene_ceiling_is_the_windows_heaviest_rain_of_every_frame_and_pixel():
    x = _window()
    x[0, 30, 30] = 4.5  # heavier once, in the oldest frame
    headroom = _bounded("scene").headroom(x)
    assert headroom[20, 20] == pytest.approx(0.5) and headroom[5, 5] == pytest.approx(3.5)
    assert headroom[0, 0] == pytest.approx(4.5)


def test_the_local_ceiling_reaches_exactly_its_radius_and_no_further():
    x = np.zeros((4, *SHAPE), dtype=np.float32)
    x[1, 10, 10] = 5.0  # heaviest once, in an older frame
    headroom = _bounded("local").headroom(x)
    assert headroom[10, 10 + LOCAL_CEILING_PX] == 5.0 and headroom[10 + LOCAL_CEILING_PX, 10 - LOCAL_CEILING_PX] == 5.0
    assert headroom[10, 10 + LOCAL_CEILING_PX + 1] == 0.0


def test_no_ceiling_has_no_headroom_and_adds_the_trend_as_before():
    weights = _bounded("none")
    assert weights.headroom(_window()) is None
    rate = np.full(SHAPE, 2.0, dtype=np.float32)
    out = weights.apply(np.zeros((3, *SHAPE), dtype=np.float32), rate)
    np.testing.assert_allclose(out[:, 0, 0], [2.0, 4.0, 6.0], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the bound
def test_a_lift_exactly_to_the_ceiling_stays_one_that_would_pass_it_stops_there():
    weights = _bounded("scene")
    x = _window()
    headroom = weights.headroom(x)  # 3 at the weak pixel, 0 at the heaviest, 4 where dry
    rate = np.zeros(SHAPE, dtype=np.float32)
    rate[5, 5] = 1.0  # lifts 1, 2, 3 over three leads: reaches the ceiling exactly at the last
    rate[6, 6] = 1.5  # lifts 1.5, 3, 4.5: would pass a headroom of 4
    rate[20, 20] = 1.0  # the heaviest pixel: no headroom at all
    out = weights.apply(np.zeros((3, *SHAPE), dtype=np.float32), rate, headroom)
    np.testing.assert_allclose(out[:, 5, 5], [1.0, 2.0, 3.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[:, 6, 6], [1.5, 3.0, 4.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[:, 20, 20], [0.0, 0.0, 0.0])


def test_the_networks_change_counts_toward_the_ceiling_and_is_never_cut():
    weights = replace(_bounded("scene"), growth=(1.0,) * 3, decay=(1.0,) * 3)
    headroom = np.full(SHAPE, 2.0, dtype=np.float32)
    rate = np.full(SHAPE, 1.0, dtype=np.float32)
    change = np.zeros((3, *SHAPE), dtype=np.float32)
    change[:, 0, 0] = 1.5  # the network lifts 1.5: the trend may add 0.5 more
    change[:, 1, 1] = 3.0  # the network alone passes the ceiling: kept, the trend adds nothing
    change[:, 2, 2] = -1.0  # the network decays: the trend may lift 3
    out = weights.apply(change, rate, headroom)
    np.testing.assert_allclose(out[:, 0, 0], [2.0, 2.0, 2.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[:, 1, 1], [3.0, 3.0, 3.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[:, 2, 2], [0.0, 1.0, 2.0], rtol=1e-6, atol=1e-6)


def test_the_trends_decay_is_not_bounded():
    weights = ChangeWeights.constant(0.0, 0.0, 3, trend=1.0, trend_lifetime=1e9, trend_ceiling="scene")  # signed
    rate = np.full(SHAPE, -1.0, dtype=np.float32)
    out = weights.apply(np.zeros((3, *SHAPE), dtype=np.float32), rate, np.zeros(SHAPE, dtype=np.float32))
    np.testing.assert_allclose(out[:, 0, 0], [-1.0, -2.0, -3.0], rtol=1e-6, atol=1e-6)


def test_a_bounded_trend_needs_its_headroom_of_the_changes_shape():
    weights = _bounded("local")
    change, rate = np.zeros((3, *SHAPE), dtype=np.float32), np.ones(SHAPE, dtype=np.float32)
    with pytest.raises(ValueError, match="bound the trend by the local ceiling: pass its headroom"):
        weights.apply(change, rate)
    with pytest.raises(ValueError, match=r"trend headroom of shape \(4, 4\)"):
        weights.apply(change, rate, np.ones((4, 4), dtype=np.float32))


def test_the_forecast_never_lifts_rain_above_the_windows_heaviest():
    window = growing_sequences(n=1, frames=8, db_per_step=1.0, seed=3)[0]
    unbounded = replace(_minmod_weights(), trend=(2.0,) * LEADS, trend_lifetime=12.0)
    free = _model(unbounded).predict(window, LEADS)
    bounded = _model(replace(unbounded, trend_ceiling="scene")).predict(window, LEADS)
    heaviest = float(np.nanmax(window))
    assert np.nanmax(free) > 1.5 * heaviest  # the trend alone would carry it well above
    assert np.nanmax(bounded) <= heaviest * (1 + 1e-4)
    assert np.nansum(bounded) > np.nansum(_model(ChangeWeights.constant(0.0, 0.0, LEADS)).predict(window, LEADS))


# ------------------------------------------------------------------ the checkpoint
@pytest.mark.parametrize("ceiling", TREND_CEILINGS)
def test_the_ceiling_round_trips_and_says_so(ceiling):
    weights = replace(_minmod_weights(), trend_ceiling=ceiling)
    entry = weights.to_metadata()
    assert entry["trend_ceiling"] == ceiling and ChangeWeights.from_metadata(entry) == weights
    assert (f"bounded by the {ceiling} ceiling" in weights.brief()) == (ceiling != "none")


def test_old_entries_have_no_ceiling_and_a_broken_one_names_the_checkpoint():
    entry = replace(_minmod_weights(), trend_ceiling="scene").to_metadata()
    old = {k: v for k, v in entry.items() if k != "trend_ceiling"}
    assert ChangeWeights.from_metadata(old).trend_ceiling == "none"
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights: unknown trend_ceiling 'sky'"):
        ChangeWeights.from_metadata({**entry, "trend_ceiling": "sky"}, "m.pt")


# ------------------------------------------------------------------ the calibration
def test_calibration_scores_the_bounded_forecast_and_stores_the_ceiling():
    from nowcast.models.skill import score_method

    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS, db_per_step=1.0)}
    keys = candidates((0.0,), (2.0,), forms=("growth",), lifetimes=(12.0,))
    weights, _, grid, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                                    trend_smoothing_px=4.0, trend_ceiling="scene")
    assert weights.trend_ceiling == "scene"
    key = keys[0]
    bounded = replace(ChangeWeights.from_key(key, LEADS), trend_frames=8, trend_estimator="minmod",
                      trend_smoothing_px=4.0, trend_ceiling="scene")
    own = score_method(_model(bounded).predict, seqs["growth"], 8, LEADS)
    for t in ("csi@1", "csi@5"):
        assert grid[key]["growth"][t] == pytest.approx(own[t], abs=1e-12, nan_ok=True)
    _, _, free, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                              trend_smoothing_px=4.0)
    assert grid[key]["growth"]["change"] < 0.9 * free[key]["growth"]["change"]  # the bound cut what was applied
    with pytest.raises(ValueError, match="unknown trend_ceiling 'sky'"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_ceiling="sky")


def test_the_model_configs_calibration_section_carries_the_ceiling():
    from nowcast.models.config import CalibrationConfig

    settings = CalibrationConfig(trend_ceiling="local")
    assert settings.options() == ["--trend-ceiling local"]
    assert settings.calibrate_kwargs()["trend_ceiling"] == "local"
    with pytest.raises(ValueError, match="unknown trend_ceiling 'sky'"):
        CalibrationConfig().resolve(trend_ceiling="sky").check()


def test_cli_calibrates_with_the_ceiling_and_records_it(tmp_path, capsys):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    assert main(["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2",
                 "--trend-ceiling", "scene", "--network-weights", "0", "--trend-weights", "2",
                 "--trend-forms", "growth", "--trend-lifetimes", "12"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert entry["trend_ceiling"] == "scene" and "--trend-ceiling scene" in entry["command"]
    assert "bounded by the scene ceiling" in capsys.readouterr().out


# ------------------------------------------------------------------ the benchmarks
def test_an_estimators_ceiling_is_read_from_its_name():
    from benchmarks.trend_consistency import split_ceiling

    assert split_ceiling("minmod smoothed 4, persisting 0.8, aligned, ceiling local") == (
        "minmod smoothed 4, persisting 0.8, aligned", "local")
    assert split_ceiling("minmod smoothed 4") == ("minmod smoothed 4", "none")


def _rows(best_gain: float) -> dict:
    return {"0/0/2/0/12": {"worst": -0.0001, "growth_gain": best_gain},
            "0/0/1/0/3": {"worst": -0.0001, "growth_gain": best_gain - 0.05},
            "0/0/4/0/12": {"worst": -0.01, "growth_gain": best_gain + 0.2}}  # below the floor


@pytest.mark.parametrize("scene, local, chosen", [(0.20, 0.205, "scene"), (0.20, 0.2051, "local"),
                                                  (0.20, 0.10, "scene")])
def test_the_ceiling_choice_takes_the_largest_growth_above_the_floor_ties_to_scene(scene, local, chosen):
    from benchmarks.trend_consistency import ceiling_choice

    base = "minmod smoothed 4, persisting 0.8, aligned"
    results = {"estimators": {base: _rows(0.5), f"{base}, ceiling scene": _rows(scene),
                              f"{base}, ceiling local": _rows(local),
                              "minmod smoothed 4, ceiling scene": _rows(0.9)}}  # not gated: not a candidate
    choice = ceiling_choice(results, floor=-0.0005)
    assert choice["trend_ceiling"] == chosen and choice["chosen"] == [0.0, 0.0, 2.0, 0.0, 12.0]
    assert choice["trend_align"] is True and choice["trend_persistence_min"] == 0.8


def test_a_choice_file_is_read_with_its_ceiling(tmp_path):
    from benchmarks.trend_history import choice_weights

    choice = {"history": 8, "chosen": [0, 0, 2, 0, 12], "trend_estimator": "minmod", "trend_smoothing_px": 4.0,
              "trend_persistence_min": 0.8, "trend_align": True, "trend_ceiling": "scene"}
    path = tmp_path / "choice.json"
    path.write_text(json.dumps(choice))
    weights = choice_weights(json.loads(path.read_text()))
    assert weights.trend_ceiling == "scene" and weights.trend_align and weights.trend_frames == 8


# ------------------------------------------------------------------ what a product says
def _gated_bounded(gate: float) -> ChangeWeights:
    return replace(_minmod_weights(), trend=(2.0,) * LEADS, trend_lifetime=12.0, trend_persistence_min=gate,
                   trend_ceiling="scene")


def test_the_forecast_says_whether_it_added_the_trend_exactly_at_the_gate_and_above_it():
    from nowcast.models import lagrangian
    from nowcast.models.calibration import scene_persistence

    window = growing_sequences(n=1, frames=8, db_per_step=1.0, seed=3)[0]
    fc = _model(_gated_bounded(0.0))
    prepared = lagrangian.prepare(window, LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4)
    rho = scene_persistence(prepared.inputs, smoothing_px=4.0)
    at = _model(_gated_bounded(rho))
    at.predict(window, LEADS)
    assert at.last_trend_note.startswith("added: growth of the last 40 min continued with a 60-min lifetime")
    assert f"where the scene's growth persisted (rho {rho:.2f} >= {rho:g})" in at.last_trend_note
    heaviest = float(fc.normaliser.inverse(np.float32(prepared.inputs.max())))
    assert at.last_trend_note.endswith(f"capped at the window's heaviest rain, {heaviest:.1f} mm/h")
    above = _model(_gated_bounded(float(np.nextafter(rho, 2.0))))
    above.predict(window, LEADS)
    assert above.last_trend_note.startswith("not added: the scene's growth did not persist through the last 40 min")
    above.predict(np.zeros_like(window), LEADS)  # a dry window: no trend read, no note of the earlier forecast
    assert above.last_trend_note is None


def test_a_window_without_growth_says_so():
    weights = _gated_bounded(-1.0)
    note = weights.trend_note(np.zeros(SHAPE), {}, 3.0)
    assert note == "not added: no steady growth in the last 40 min"
    decaying = -np.ones(SHAPE)  # decay only, and the trend's decay is weighed by 0
    assert weights.trend_note(decaying, {}, 3.0) == note
    assert weights.trend_note(np.ones(SHAPE), {}, 3.0, timestep_minutes=10, frames=6) == (
        "added: growth of the last 60 min continued with a 120-min lifetime, capped at the window's heaviest rain, "
        "3.0 mm/h")
    signed = replace(weights, trend_decay=weights.trend, trend_ceiling="local")
    assert signed.trend_note(decaying, {}, None).startswith("added: decay of the last 40 min")
    assert signed.trend_note(np.where(np.eye(*SHAPE) > 0, 1.0, -1.0), {}, None).endswith(
        "capped at the window's heaviest rain within 8 grid cells")


def _bounded_results(rows_by_name: dict) -> dict:
    return {"estimators": {f"{name}, aligned, ceiling scene": rows for name, rows in rows_by_name.items()}}


def test_the_eighteenth_rounds_choice_ties_to_the_stricter_gate_then_minmod_then_less():
    from benchmarks.trend_consistency import bounded_choice

    rows = {"0/0/2/0/12": {"worst": -0.0001, "growth_gain": 0.300},
            "0/0/3/0/12": {"worst": -0.0004, "growth_gain": 0.304},
            "0/0/4/0/24": {"worst": -0.0006, "growth_gain": 0.400}}  # below the floor
    results = _bounded_results({"minmod smoothed 4, persisting 0.7": rows, "slope smoothed 4, persisting 0.8": rows,
                                "minmod smoothed 4, persisting 0.8": {"0/0/1/0/6": {"worst": 0.0, "growth_gain": 0.2}}})
    choice = bounded_choice(results, floor=-0.0005)
    # 0.304 and 0.300 are tied; the stricter gate (0.8, slope) wins over 0.7, then the smaller weight
    assert (choice["trend_persistence_min"], choice["trend_estimator"], choice["chosen"]) == (
        0.8, "slope", [0.0, 0.0, 2.0, 0.0, 12.0])
    assert choice["trend_ceiling"] == "scene" and choice["trend_align"] is True
    results["estimators"]["minmod smoothed 4, persisting 0.8, aligned, ceiling scene"] = rows
    assert bounded_choice(results, floor=-0.0005)["trend_estimator"] == "minmod"  # same gate: minmod first
    outside = {"0/0/2/0/12": {"worst": -0.0001, "growth_gain": 0.295}, **rows}
    results = _bounded_results({"minmod smoothed 4, persisting 0.6": {"0/0/3/0/24": {"worst": 0.0, "growth_gain": 0.31}},
                                "minmod smoothed 4, persisting 0.8": outside})
    assert bounded_choice(results, floor=-0.0005)["trend_persistence_min"] == 0.6  # 0.31 - 0.304 > 0.005
    with pytest.raises(ValueError, match="no aligned gated candidate with the scene ceiling"):
        bounded_choice(_bounded_results({"minmod smoothed 4, persisting 0.8": {"0/0/4/0/24": rows["0/0/4/0/24"]}}),
                       floor=-0.0005)


def test_the_baselines_row_scores_the_lagrangian_trend_against_extrapolation():
    from benchmarks.trend_consistency import (
        HISTORY,
        LEADS,
        NETWORK_FRAMES,
        lagrangian_trend_row,
    )
    from nowcast.models.calibration import extrapolation_references

    seqs = {"growth": growing_sequences(n=2, frames=HISTORY + LEADS, db_per_step=0.5)}
    references = extrapolation_references(seqs, NETWORK_FRAMES, LEADS, HISTORY)
    row = lagrangian_trend_row(seqs, references, "growth")
    assert row["growth_gain"] > 0.05 and set(row["by_set"]) == {"growth"}  # a steady growth is what it continues
    assert row["worst"] == pytest.approx(min(np.nanmin(np.asarray(row["by_set"]["growth"][t]) -
                                                       np.asarray(references["growth"][t])) for t in ("csi@1", "csi@5")))


def test_a_gated_reading_is_read_from_its_name_and_the_larger_smoothing_wins_a_tie():
    from benchmarks.trend_consistency import bounded_choice, gated_reading

    assert gated_reading("slope smoothed 16, persisting 0.6, aligned") == ("slope", 16.0, 0.6, 0.0, 0.0, -1.0)
    assert gated_reading("minmod smoothed 4, persisting 0.8, aligned, evidence 5") == (
        "minmod", 4.0, 0.8, 5.0, 0.0, -1.0)
    assert gated_reading("minmod smoothed 4, persisting 0.8") is None  # not aligned
    row = {"0/0/1.5/0/24": {"worst": 0.0, "growth_gain": 0.31}}
    results = _bounded_results({"slope smoothed 4, persisting 0.6": row, "slope smoothed 16, persisting 0.6": row,
                                "slope smoothed 8, persisting 0.6": row})
    choice = bounded_choice(results, floor=-0.0005)
    assert choice["trend_smoothing_px"] == 16.0 and choice["trend_estimator"] == "slope"


def test_window_losses_read_a_choice_file(tmp_path, monkeypatch):
    import xarray as xr

    from benchmarks import window_losses

    choice = {"history": 8, "chosen": [0, 0, 1.5, 0, 24], "trend_estimator": "slope", "trend_smoothing_px": 8.0,
              "trend_persistence_min": 0.6, "trend_align": True, "trend_ceiling": "scene"}
    (tmp_path / "choice.json").write_text(json.dumps(choice))
    seqs = growing_sequences(n=2, frames=window_losses.HISTORY + window_losses.LEADS, db_per_step=0.5)
    store = tmp_path / "s.zarr"
    xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), seqs)}).to_zarr(store)
    out = tmp_path / "out.json"
    assert window_losses.main(["--choice", str(tmp_path / "choice.json"), "--store", str(store), "--top", "2",
                               "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["candidate"] == "choice choice.json" and result["stores"]["s.zarr"]["windows"] == 2


# ------------------------------------------------------------------ evidence (twentieth round)
def test_the_evidence_floor_is_its_samples_over_the_smoothings_correlation_area():
    from nowcast.models.calibration import MIN_PERSISTENCE_PIXELS, persistence_pixels

    assert persistence_pixels(0, 4.0) == MIN_PERSISTENCE_PIXELS
    assert persistence_pixels(5, 4.0) == int(np.ceil(5 * 4 * np.pi * 16))  # 1006 pixels
    assert persistence_pixels(5, 0.0) == persistence_pixels(5, 1.0) == int(np.ceil(20 * np.pi))
    assert persistence_pixels(0.1, 1.0) == MIN_PERSISTENCE_PIXELS  # never below the old floor


def test_the_gate_needs_its_evidence_exactly_at_the_floor_and_not_one_pixel_less(monkeypatch):
    from nowcast.models import calibration, lagrangian
    from nowcast.models.calibration import window_trend

    window = growing_sequences(n=1, frames=8, db_per_step=1.0, seed=3)[0]
    fc = _model(None)
    x = lagrangian.prepare(window, LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4).inputs
    reading: dict = {}
    assert window_trend(x, 4.0, "minmod", 4.0, 0.0, True, reading).any() and reading["pixels_needed"] == 50
    used = reading["pixels"]
    # one sample needs exactly the pixels this scene reads, two need one more
    monkeypatch.setattr(calibration, "persistence_pixels", lambda samples, smoothing: used - 1 + int(samples))
    assert window_trend(x, 4.0, "minmod", 4.0, 0.0, True, persistence_samples=1).any()
    shut: dict = {}
    assert not window_trend(x, 4.0, "minmod", 4.0, 0.0, True, shut, persistence_samples=2).any()
    assert (shut["pixels"], shut["pixels_needed"]) == (used, used + 1)


def test_a_scene_without_enough_evidence_says_so():
    weights = replace(_gated_bounded(0.6), trend_persistence_samples=5.0)
    note = weights.trend_note(np.ones(SHAPE), {"persistence": 0.0, "pixels": 339, "pixels_needed": 1006}, 3.0)
    assert note == ("not added: too little steadily changing rain to tell whether its growth persisted through the "
                    "last 40 min (339 of the 1006 pixels needed)")
    assert "over 5+ independent samples" in weights.brief()


def test_the_evidence_floor_round_trips_old_entries_have_none_and_bad_ones_are_refused():
    weights = replace(_gated_bounded(0.6), trend_persistence_samples=5.0)
    entry = weights.to_metadata()
    assert entry["trend_persistence_samples"] == 5.0 and ChangeWeights.from_metadata(entry) == weights
    old = {k: v for k, v in entry.items() if k != "trend_persistence_samples"}
    assert ChangeWeights.from_metadata(old).trend_persistence_samples == 0.0
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights: trend_persistence_samples must be"):
        ChangeWeights.from_metadata({**entry, "trend_persistence_samples": -1}, "m.pt")


def test_the_calibration_and_the_config_carry_the_evidence_floor():
    from nowcast.models.config import CalibrationConfig

    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS, db_per_step=1.0)}
    keys = candidates((0.0,), (2.0,), forms=("growth",), lifetimes=(12.0,))
    weights, _, _, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                                 trend_smoothing_px=4.0, trend_persistence_min=0.5, trend_persistence_samples=5.0)
    assert weights.trend_persistence_samples == 5.0
    settings = CalibrationConfig(trend_frames=8, trend_estimator="minmod", trend_persistence_min=0.6,
                                 trend_persistence_samples=5)
    assert "--trend-persistence-samples 5" in settings.options()
    assert settings.calibrate_kwargs()["trend_persistence_samples"] == 5.0
    with pytest.raises(ValueError, match="trend_persistence_samples must be"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_persistence_samples=-2.0)


# ------------------------------------------------------------------ the rule that sees the read days
def test_the_stress_rule_ranks_the_gated_candidates_above_the_floor_and_breaks_ties_as_before():
    from benchmarks.stress_rule import passes, ranked_candidates, tie_break

    rows = {"0/0/1.5/0/24": {"worst": 0.0, "growth_gain": 0.35}, "0/0/1.5/0/12": {"worst": 0.0, "growth_gain": 0.346},
            "0/0/2/0/6": {"worst": -0.001, "growth_gain": 0.4}}  # below the floor
    results = {"estimators": {"slope smoothed 4, persisting 0.6, aligned, evidence 5, ceiling scene": rows,
                              "minmod smoothed 4, persisting 0.8, aligned, evidence 5, ceiling scene":
                                  {"0/0/2/0/12": {"worst": 0.0, "growth_gain": 0.22}},
                              "minmod smoothed 4, persisting 0.8": rows}}  # not aligned, no ceiling: not a candidate
    ranked = ranked_candidates(results, floor=-0.0005)
    assert [c["validation_growth_gain"] for c in ranked] == [0.35, 0.346, 0.22]
    assert ranked[0]["trend_persistence_samples"] == 5.0 and ranked[0]["trend_estimator"] == "slope"
    assert tie_break(ranked[:2])["chosen"][4] == 12.0  # within 0.005: the shorter lifetime
    assert tie_break(ranked[1:])["validation_growth_gain"] == 0.346  # 0.346 - 0.22 > 0.005
    assert tie_break([]) is None
    shipped = {"s7": -0.1295, "s9": 0.0}
    assert passes({"s7": -0.1345, "s9": -0.005}, shipped, 0.005)  # exactly at the margin on both
    assert not passes({"s7": -0.1346, "s9": 0.0}, shipped, 0.005)


def test_the_forecast_and_the_calibration_read_the_evidence_floor():
    from nowcast.models.skill import score_method

    window = growing_sequences(n=1, frames=8, db_per_step=1.0, seed=3)[0]
    opened = replace(_gated_bounded(0.0), trend_align=True)
    starved = replace(opened, trend_persistence_samples=1000.0)  # far more pixels than the scene has
    extrapolated = _model(ChangeWeights.constant(0.0, 0.0, LEADS)).predict(window, LEADS)
    assert not np.array_equal(np.nan_to_num(_model(opened).predict(window, LEADS)), np.nan_to_num(extrapolated))
    np.testing.assert_array_equal(np.nan_to_num(_model(starved).predict(window, LEADS)), np.nan_to_num(extrapolated))
    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS, db_per_step=1.0)}
    keys = candidates((0.0,), (2.0,), forms=("growth",), lifetimes=(12.0,))
    reading = {"trend_frames": 8, "trend_estimator": "minmod", "trend_smoothing_px": 4.0, "trend_persistence_min": 0.0,
               "trend_align": True, "trend_ceiling": "scene"}
    _, _, starved_grid, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_persistence_samples=1000.0,
                                               **reading)
    _, _, open_grid, _ = calibrate(_model(None), seqs, LEADS, keys=keys, **reading)
    key = keys[0]
    own = score_method(_model(replace(starved, trend=(2.0,) * LEADS, trend_lifetime=12.0)).predict, seqs["growth"],
                       8, LEADS)
    assert starved_grid[key]["growth"]["csi@5"] == pytest.approx(own["csi@5"], abs=1e-12, nan_ok=True)
    assert starved_grid[key]["growth"]["change"] == 0.0 < open_grid[key]["growth"]["change"]


def test_the_rigid_stress_reads_the_worst_lead_at_either_threshold():
    from benchmarks.stress_rule import worst_lead

    reference = {"csi@1": [0.8, 0.7], "csi@5": [0.4, float("nan")]}
    assert worst_lead({"csi@1": [0.8, 0.699], "csi@5": [0.401, 0.2]}, reference) == pytest.approx(-0.001)
    assert worst_lead({"csi@1": [0.8, 0.7], "csi@5": [0.397, 0.0]}, reference) == pytest.approx(-0.003)
    assert worst_lead({"csi@1": [float("nan")] * 2, "csi@5": [float("nan")] * 2}, reference) == 0.0


def test_a_window_too_short_for_the_gate_says_so():
    weights = replace(_gated_bounded(0.7), trend_persistence_samples=5.0)
    note = weights.trend_note(np.zeros(SHAPE), {"persistence": 0.0, "pixels": 0, "pixels_needed": 1006}, None,
                              frames=4)
    assert note == "not added: 4 frames are too few to tell whether the growth persisted (the gate reads 8; older " \
                   "frames missing)"
    assert weights.trend_note(np.zeros(SHAPE), {"persistence": 0.0, "pixels": 0, "pixels_needed": 1006}, None,
                              frames=6).startswith("not added: too little steadily changing rain")
