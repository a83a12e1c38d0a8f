"""A trend applied only where the scene shows it persisting (sixteenth round, issue #8).

:func:`nowcast.models.calibration.scene_persistence` reads, from a forecast's
own moved frames, how far the trend of their older half went on into their
newer half; ``ChangeWeights.trend_persistence_min`` adds the trend only to a
scene at or above it. Tested: the measure on scenes whose answer is known,
the gate exactly at and just above a scene's persistence, in the functions
and in the forecast, the checkpoint entry, and the calibration.
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
    candidates,
    choose_weights,
    scene_persistence,
    window_trend,
)
from tests.test_calibration import growing_sequences
from tests.test_trend_history import (
    LEADS,
    _minmod_weights,
    _model,
    _same,
    calibratable_checkpoint,
)

SHAPE = (32, 40)


def _scene(older: np.ndarray, newer: np.ndarray, frames: int = 8) -> np.ndarray:
    """Moved frames (network units, dry 0) whose wet pixels change by ``older`` per step, then by ``newer``."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    wet = ((x - 20) ** 2 / 300.0 + (y - 16) ** 2 / 150.0) < 1.0
    half = frames // 2
    steps = [np.zeros(SHAPE)]
    for k in range(1, frames):
        steps.append(steps[-1] + (older if k < half else newer))
    base = 1.0 + 0.3 * np.cos(x / 5.0) * np.sin(y / 4.0)
    return np.stack([np.where(wet, base + s, 0.0) for s in steps]).astype(np.float32)


def _field(seed: int) -> np.ndarray:
    """A smooth random rate field (network units per step), positive and negative."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.normal(size=SHAPE), 3.0)
    return (0.05 * f / f.std()).astype(np.float64)


# ------------------------------------------------------------------ the measure
def test_a_trend_that_went_on_reads_near_one_one_that_reversed_near_minus_one():
    rates = _field(0)
    assert scene_persistence(_scene(rates, rates)) > 0.9
    assert scene_persistence(_scene(rates, 0.5 * rates)) > 0.9  # slowing, in the same places: still persisting
    assert scene_persistence(_scene(rates, -rates)) < -0.9


def test_independent_halves_read_near_zero_and_smoothing_reads_the_same_kind_of_scene():
    values = [scene_persistence(_scene(_field(s), _field(s + 100))) for s in range(6)]
    assert abs(float(np.mean(values))) < 0.25
    rates = _field(1)
    assert scene_persistence(_scene(rates, rates), smoothing_px=4.0) > 0.8


def test_no_evidence_reads_zero_and_too_few_frames_are_refused():
    assert scene_persistence(np.zeros((8, *SHAPE), dtype=np.float32)) == 0.0  # dry
    rates = _field(2)
    small = _scene(rates, rates)
    small[:, :, 6:] = 0.0  # a few wet pixels only
    assert 0 < int((small[-1] > 0).sum()) < 50 and scene_persistence(small) == 0.0
    assert scene_persistence(small, min_pixels=1) > 0.9
    with pytest.raises(ValueError, match="at least 6 frames"):
        scene_persistence(_scene(rates, rates, frames=4))


# ------------------------------------------------------------------ the gate
def test_the_gate_opens_exactly_at_the_scenes_persistence_and_not_above_it():
    rates = _field(3)
    x = _scene(rates, 0.8 * rates + 0.3 * _field(4))
    rho = scene_persistence(x, smoothing_px=4.0)
    assert 0.3 < rho < 0.99
    open_ = window_trend(x, 4.0, "minmod", 4.0)
    assert np.abs(open_).max() > 0
    np.testing.assert_array_equal(window_trend(x, 4.0, "minmod", 4.0, persistence_min=rho), open_)
    assert not window_trend(x, 4.0, "minmod", 4.0, persistence_min=float(np.nextafter(rho, 2.0))).any()
    np.testing.assert_array_equal(window_trend(x, 4.0, "minmod", 4.0, persistence_min=NO_GATE), open_)
    # the slope estimator is gated by the same halves
    assert not window_trend(x, 4.0, "slope", 4.0, persistence_min=float(np.nextafter(rho, 2.0))).any()
    np.testing.assert_array_equal(window_trend(x, 4.0, "slope", 4.0, persistence_min=rho), window_trend(x, 4.0, "slope", 4.0))


def test_a_scene_that_reversed_gets_no_trend_one_that_went_on_gets_it():
    rates = _field(5)
    weights = replace(_minmod_weights(), trend_persistence_min=0.5)
    assert weights.rate(_scene(rates, rates)).any()
    assert not weights.rate(_scene(rates, -rates)).any()


def _gated(gate: float) -> ChangeWeights:
    return replace(_minmod_weights(), trend_persistence_min=gate)


def test_the_forecast_applies_the_gate_to_its_own_moved_frames():
    from nowcast.models import lagrangian

    window = growing_sequences(n=1, frames=8, db_per_step=1.0, seed=3)[0]
    fc = _model(_minmod_weights())
    prepared = lagrangian.prepare(window, LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4)
    rho = scene_persistence(prepared.inputs, smoothing_px=4.0)
    ungated = fc.predict(window, LEADS)
    extrapolated = _model(ChangeWeights.constant(0.0, 0.0, LEADS)).predict(window, LEADS)
    assert not np.array_equal(np.nan_to_num(ungated), np.nan_to_num(extrapolated))  # the trend does something here
    _same(_model(_gated(rho)).predict(window, LEADS), ungated)  # at the gate: the trend
    _same(_model(_gated(float(np.nextafter(rho, 2.0)))).predict(window, LEADS), extrapolated)  # above: none


# ------------------------------------------------------------------ the checkpoint
def test_the_gate_round_trips_and_old_entries_have_none():
    weights = _gated(0.7)
    entry = weights.to_metadata()
    assert entry["trend_persistence_min"] == 0.7 and ChangeWeights.from_metadata(entry) == weights
    old = {k: v for k, v in entry.items() if k != "trend_persistence_min"}
    assert ChangeWeights.from_metadata(old).trend_persistence_min == NO_GATE
    assert "only where the scene's trend persisted (rho >= 0.7)" in weights.brief()
    assert "persisted" not in _minmod_weights().brief()


@pytest.mark.parametrize("gate, frames, ok", [(-1.0, 8, True), (0.7, 8, True), (1.0, 8, True), (1.01, 8, False),
                                              (-1.01, 8, False), (float("nan"), 8, False), (0.7, 6, True),
                                              (-1.0, 4, True)])
def test_impossible_gates_are_refused(gate, frames, ok):
    estimator = "minmod" if frames >= 6 else "slope"

    def make() -> ChangeWeights:
        return ChangeWeights.constant(0.0, 0.0, LEADS, trend=0.5, trend_frames=frames, trend_estimator=estimator,
                                      trend_persistence_min=gate)

    if ok:
        assert make().trend_persistence_min == gate
    else:
        with pytest.raises(ValueError, match="trend_persistence_min"):
            make()


def test_a_gate_over_fewer_than_six_frames_is_refused():
    with pytest.raises(ValueError, match="persistence gate needs trend_frames >= 6"):
        ChangeWeights.constant(0.0, 0.0, LEADS, trend=0.5, trend_frames=4, trend_persistence_min=0.5)


def test_a_broken_gate_entry_names_the_checkpoint():
    entry = {**_gated(0.7).to_metadata(), "trend_persistence_min": "high"}
    with pytest.raises(CheckpointError, match="model.pt: invalid change_weights"):
        ChangeWeights.from_metadata(entry, "model.pt")


# ------------------------------------------------------------------ the calibration
def test_calibration_scores_the_gated_forecast_and_stores_the_gate():
    from nowcast.models.skill import score_method

    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS)}
    keys = candidates((0.0,), (0.0, 0.75), forms=("growth",), lifetimes=(3.0,))
    weights, _, grid, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                                    trend_smoothing_px=4.0, trend_persistence_min=0.99)
    assert weights.trend_persistence_min == 0.99
    gated = _model(_gated(0.99))
    own = score_method(gated.predict, seqs["growth"], 8, LEADS)
    assert grid[_gated(0.99).key(0)]["growth"]["csi@5"] == pytest.approx(own["csi@5"], abs=1e-12, nan_ok=True)
    with pytest.raises(ValueError, match="persistence gate needs trend_frames >= 6"):
        calibrate(_model(None), seqs, LEADS, keys=keys, trend_persistence_min=0.5)


def test_best_worst_lead_takes_the_best_worst_lead_where_rule_15_takes_the_least_change():
    refs = {"s": {"csi@1": [0.5, 0.5], "csi@5": [0.3, 0.3]}}
    grid = {(0.0, 0.0, 0.25, 0.0, 3.0): {"s": {"csi@1": [0.5, 0.5], "csi@5": [0.299, 0.3], "change": 0.01}},
            (0.0, 0.0, 1.0, 0.0, 3.0): {"s": {"csi@1": [0.5, 0.5], "csi@5": [0.3, 0.4], "change": 0.04}}}
    assert choose_weights(grid, refs)[0].trend[0] == 0.25  # rule 15: tied within 0.005, the least change
    assert choose_weights(grid, refs, tie=0.0)[0].trend[0] == 1.0  # best worst lead: 0.000 beats -0.001


# ------------------------------------------------------------------ the command and the model config
def test_the_model_configs_calibration_section_carries_the_gate_the_rule_and_the_weights():
    from nowcast.errors import ConfigError
    from nowcast.models.calibration import (
        NETWORK_GRID,
        SELECTION_RULES,
        TREND_FORMS,
        TREND_GRID,
        TREND_LIFETIMES,
    )
    from nowcast.models.config import CalibrationConfig
    from tests.test_lagrangian import lagrangian_config

    default = CalibrationConfig()  # the config's defaults are the calibration's own grid (written out, not imported)
    assert default.trend_weights == TREND_GRID and default.rule == "15" and default.trend_persistence_min == NO_GATE
    assert (default.network_weights, default.trend_forms, default.trend_lifetimes) == (
        NETWORK_GRID, TREND_FORMS, TREND_LIFETIMES)
    assert default.options() == []
    kwargs = CalibrationConfig(trend_frames=8, trend_estimator="minmod", trend_persistence_min=0.8,
                               rule="best-worst-lead", trend_weights=(0.0, 2.0)).calibrate_kwargs()
    assert (kwargs["tie_break"], kwargs["tie"]) == SELECTION_RULES["best-worst-lead"] == ("least-change", 0.0)
    assert kwargs["trend_persistence_min"] == 0.8 and kwargs["trend_grid"] == (0.0, 2.0)
    for bad in ({"trend_frames": 4, "trend_persistence_min": 0.5}, {"trend_weights": (0.0, 5.0)},
                {"trend_weights": ()}, {"rule": "16"}, {"trend_persistence_min": 1.5}):
        with pytest.raises(ConfigError):
            lagrangian_config(calibration=bad)


@pytest.mark.parametrize("args, message", [
    (["--trend-frames", "4", "--trend-estimator", "slope", "--trend-persistence-min", "0.5"],
     "persistence gate needs trend_frames >= 6"),
    (["--trend-weights", "0,5"], "trend weights must be one or more numbers in [0, 4]"),
    (["--trend-weights", "zero"], "--trend-weights 'zero': give comma-separated numbers"),
    (["--rule", "16"], "unknown rule '16'"),
    (["--trend-forms", "decay"], "trend forms must be one or more of"),
    (["--trend-lifetimes", "0"], "trend lifetimes must be one or more positive numbers"),
    (["--network-weights", "none"], "--network-weights 'none': give comma-separated numbers"),
    (["--trend-ceiling", "sky"], "unknown trend_ceiling 'sky': choose from ['none', 'scene', 'local']"),
])
def test_cli_refuses_an_impossible_calibration_in_one_line(args, message, capsys):
    from nowcast.cli import main

    assert main(["models", "calibrate", "swiss-south-tmu", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_calibrates_with_the_gate_and_the_rule_and_says_so(tmp_path, capsys):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    assert main(["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2",
                 "--trend-persistence-min", "0.8", "--rule", "best-worst-lead", "--trend-weights", "0,0.5,2"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert entry["trend_persistence_min"] == 0.8 and set(entry["trend"]) <= {0.0, 0.5, 2.0}
    assert entry["command"].endswith("--trend-frames 6 --trend-estimator minmod --trend-persistence-min 0.8 "
                                     "--rule best-worst-lead --trend-weights 0,0.5,2")
    assert "rho >= 0.8" in capsys.readouterr().out or entry["trend"][0] == 0.0


def test_a_cell_born_in_the_newer_half_is_not_evidence_of_persistence():
    """Pixels read by only one half (a cell born after the older half) are left out, not counted as a rate of 0."""
    rates = _field(6)
    scene = _scene(rates, rates + 0.3 * _field(7))
    born = scene.copy()
    born[:, 1:5, 1:5] = 0.0
    born[4:, 1:5, 1:5] = 1.2 + 0.05 * np.arange(4)[:, None, None]  # wet in the newer half only, growing
    assert not scene[-1, 1:5, 1:5].any() and born[-1, 1:5, 1:5].all()
    # the rates are smoothed over the rain (4 px), so the born cell nudges its neighbours a little; counted as
    # pixels whose older rate is 0 it would pull the correlation down by 0.03
    assert scene_persistence(born) == pytest.approx(scene_persistence(scene), abs=0.005)


def test_calibration_passes_the_rules_tolerance(monkeypatch):
    from nowcast.models import calibration

    seen = {}
    real = calibration.choose_weights

    def spy(grid, references, leads=None, tie_break="least-change", tie=calibration.TIE):
        seen["tie"], seen["tie_break"] = tie, tie_break
        return real(grid, references, leads, tie_break, tie)

    monkeypatch.setattr(calibration, "choose_weights", spy)
    seqs = {"growth": growing_sequences(n=1, frames=8 + LEADS)}
    keys = candidates((0.0,), (0.0, 0.75), forms=("growth",), lifetimes=(3.0,))
    calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod", tie=0.0)
    assert seen == {"tie": 0.0, "tie_break": "least-change"}


# ------------------------------------------------------------------ the benchmarks of the round
def test_trend_regime_finds_the_thresholds_that_separate_the_kinds():
    from benchmarks.trend_regime import separating_interval

    def rows(values):
        return [{"rho": v} for v in values]

    day = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.85]  # one window of 11 above: 9 %
    by_set = {"simulated day": rows(day), "other day": rows([0.1, 0.2]), "rigid": rows([0.9]),
              "growth": rows([0.8, 0.85, 0.9, 0.95])}
    low, high = separating_interval(by_set)
    assert low == pytest.approx(0.45, abs=1e-6) and low > 0.45 and high == pytest.approx(0.85)
    by_set["other day"] = rows([0.1, 0.9])  # half of the other day above every growth threshold: none separates
    assert separating_interval(by_set) is None


def test_step_2s_choice_takes_the_largest_growth_above_the_floor_ties_to_the_stricter_gate():
    from benchmarks.trend_consistency import gated_choice

    def est(rows):
        return {k: {"worst": w, "growth_gain": g} for k, (w, g) in rows.items()}

    results = {"estimators": {
        "minmod smoothed 4": est({"0/0/2/0/3": (-0.001, 0.9)}),  # not gated: not a candidate of the step
        "minmod smoothed 4, persisting 0.7": est({"0/0/1/0/6": (-0.003, 0.220), "0/0/2/0/3": (-0.006, 0.3)}),
        "minmod smoothed 4, persisting 0.8": est({"0/0/2/0/3": (-0.0033, 0.217)}),  # within 0.005: the stricter
        "minmod smoothed 4, persisting 0.8, network agrees": est({"0/0/2/0/3": (0.0, 0.5)}),
    }}
    choice = gated_choice(results, -0.0036)
    assert choice["trend_persistence_min"] == 0.8 and choice["chosen"] == [0.0, 0.0, 2.0, 0.0, 3.0]
    results["estimators"]["minmod smoothed 4, persisting 0.8"] = est({"0/0/2/0/3": (-0.0033, 0.21)})
    assert gated_choice(results, -0.0036)["trend_persistence_min"] == 0.7  # 0.010 behind: not tied
    with pytest.raises(ValueError, match="no gated candidate"):
        gated_choice(results, 0.01)


def test_a_choice_file_is_read_with_its_trend_reading_and_gate():
    from benchmarks.trend_history import choice_weights

    weights = choice_weights({"history": 8, "chosen": [0, 0, 2, 0, 3], "trend_estimator": "minmod",
                              "trend_smoothing_px": 4.0, "trend_persistence_min": 0.8})
    assert (weights.trend[0], weights.trend_decay[0], weights.trend_lifetime) == (2.0, 0.0, 3.0)
    assert (weights.trend_frames, weights.trend_estimator, weights.trend_smoothing_px,
            weights.trend_persistence_min) == (8, "minmod", 4.0, 0.8)
    old = choice_weights({"history": 4, "chosen": [0, 0, 0.5]})  # a fourteenth-round file: slope, every scene
    assert (old.trend_frames, old.trend_estimator, old.trend_persistence_min) == (0, "slope", NO_GATE)
    assert not weights.trend_network_agrees and not old.trend_network_agrees
    assert choice_weights({"history": 8, "chosen": [0, 0, 1.5, 0, 6], "trend_estimator": "minmod",
                           "trend_network_agrees": True}).trend_network_agrees
    assert choice_weights({"history": 8, "chosen": [0, 0, 2, 0, 12], "trend_estimator": "minmod",
                           "trend_align": True}).trend_align and not weights.trend_align


def test_the_network_agreeing_trend_keeps_the_rate_only_where_the_network_grows():
    from benchmarks.trend_consistency import network_agrees

    class Net:
        calls = 0

        def _raw_changes(self, x, leads):
            Net.calls += 1
            assert x.shape[0] == 4  # the network reads its own 4 frames
            out = np.ones((leads, *x.shape[1:]), dtype=np.float32)
            out[:, :, x.shape[2] // 2 :] = -1.0
            return out

    x = np.ones((8, 6, 8), dtype=np.float32)
    agreeing = network_agrees(lambda x, p: np.full(x.shape[1:], 0.3, dtype=np.float32), Net())
    out = agreeing(x, 4.0)
    assert np.all(out[:, :4] == 0.3) and not out[:, 4:].any()
    none = network_agrees(lambda x, p: np.zeros(x.shape[1:], dtype=np.float32), Net())
    calls = Net.calls
    assert not none(x, 4.0).any() and Net.calls == calls  # no trend: the network is not run


def test_wide_validation_stores_are_made_with_more_windows_of_the_days(tmp_path, monkeypatch):
    from nowcast.models.config import find_model_config, load_model_config
    from pipelines import validation

    made = {}
    monkeypatch.setattr("pipelines.simulate.simulate_dataset",
                        lambda domain, n, frames, path, seed, crop_size: made.update(day=(n, frames, seed)))
    monkeypatch.setattr(validation, "known_motion_validation", lambda folder, frames: [folder / "r", folder / "g"])
    monkeypatch.setattr(validation, "other_day_validation",
                        lambda path, domain, frames, sequences: made.update(other=(sequences, frames)) or path)
    config = load_model_config(find_model_config("swiss-south-tmu"))
    stores = validation.long_validation_stores(config, 20, tmp_path, day_sequences=validation.WIDE_DAY_SEQUENCES,
                                               other_day_sequences=validation.WIDE_OTHER_DAY_SEQUENCES)
    assert made == {"day": (128, 20, validation.VALIDATION_DAY_SEED), "other": (256, 20)} and len(stores) == 4
    made.clear()
    validation.long_validation_stores(config, 20, tmp_path / "long")
    assert made == {"day": (32, 20, validation.VALIDATION_DAY_SEED), "other": (64, 20)}


# ------------------------------------------------------------------ where the network agrees (step 5)
def test_the_trend_is_added_only_where_the_networks_own_change_grows():
    change = np.zeros((3, 4, 6), dtype=np.float32)
    change[:, :, :3] = 0.2  # grows on the left
    change[:, :, 3:5] = -0.2
    change[:, :, 5] = [[0.1], [0.0], [-0.1]]  # exactly 0 on average over the leads: does not grow
    rate = np.full((4, 6), 0.1, dtype=np.float32)
    agreeing = ChangeWeights.constant(0.0, 0.0, 3, trend=1.0, trend_decay=0.0, trend_lifetime=3.0,
                                      trend_network_agrees=True)
    out = agreeing.apply(change, rate)
    assert np.all(out[:, :, :3] > 0) and not out[:, :, 3:].any()
    everywhere = replace(agreeing, trend_network_agrees=False).apply(change, rate)
    assert np.all(everywhere > 0)
    np.testing.assert_array_equal(out[:, :, :3], everywhere[:, :, :3])
    assert agreeing.needs_network and not agreeing.uses_network
    assert not replace(agreeing, trend_network_agrees=False).needs_network


def _agreeing(gate: float = NO_GATE) -> ChangeWeights:
    return replace(_minmod_weights(), trend_persistence_min=gate, trend_network_agrees=True)


def test_an_agreeing_forecast_runs_the_network_and_is_the_benchmarks_estimator():
    from benchmarks.trend_consistency import network_agrees
    from nowcast.models import lagrangian

    window = growing_sequences(n=1, frames=8, db_per_step=1.0, seed=3)[0]
    calls: list = []
    fc = _model(_agreeing(), calls)
    forecast = fc.predict(window, LEADS)
    assert calls and set(calls) == {4}  # the network ran, on its own 4 frames
    calls.clear()
    _model(_minmod_weights(), calls).predict(window, LEADS)
    assert not calls  # weighed by 0 and not asked where it agrees: not run
    prepared = lagrangian.prepare(window, LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4)
    rate = network_agrees(lambda x, p: window_trend(x, p, "minmod", 4.0), fc)(prepared.inputs, 4.0)
    zeros = np.zeros((LEADS, *window.shape[1:]), dtype=np.float32)  # the network weighed by 0, in its dtype
    _same(forecast, lagrangian.finish(prepared, _minmod_weights().apply(zeros, rate)))


def test_calibration_scores_the_agreeing_forecast_and_stores_it():
    from nowcast.models.skill import score_method

    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS)}
    keys = candidates((0.0,), (0.0, 0.75), forms=("growth",), lifetimes=(3.0,))
    weights, _, grid, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                                    trend_smoothing_px=4.0, trend_network_agrees=True)
    assert weights.trend_network_agrees
    own = score_method(_model(_agreeing()).predict, seqs["growth"], 8, LEADS)
    key = _agreeing().key(0)
    for t in ("csi@1", "csi@5"):
        assert grid[key]["growth"][t] == pytest.approx(own[t], abs=1e-12, nan_ok=True)
    _, _, everywhere, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                                    trend_smoothing_px=4.0)
    assert 0 < grid[key]["growth"]["change"] < everywhere[key]["growth"]["change"]  # the edges the network decays


def test_the_agreement_round_trips_old_entries_do_not_ask_and_a_broken_one_names_the_checkpoint():
    weights = _agreeing(0.8)
    entry = weights.to_metadata()
    assert entry["trend_network_agrees"] is True and ChangeWeights.from_metadata(entry) == weights
    old = {k: v for k, v in entry.items() if k != "trend_network_agrees"}
    assert ChangeWeights.from_metadata(old).trend_network_agrees is False
    assert weights.brief().count("(rho >= 0.8) and the network grows") == 1
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights: trend_network_agrees must be true or false"):
        ChangeWeights.from_metadata({**entry, "trend_network_agrees": "yes"}, "m.pt")


def test_cli_records_the_agreement(tmp_path):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    assert main(["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2",
                 "--trend-network-agrees"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert entry["trend_network_agrees"] is True and entry["command"].endswith("--trend-network-agrees")


# ------------------------------------------------------------------ the residual displacement (step 6)
def _blobs(shift_x: float = 0.0, shift_y: float = 0.0) -> np.ndarray:
    """A smooth rain field (network units, dry 0) of a few cells, shifted by a sub-pixel amount."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(np.float64)
    field = np.zeros(SHAPE)
    for cy, cx, a in ((12, 14, 1.0), (20, 27, 0.8), (9, 30, 0.6)):
        field += a * np.exp(-((x - cx - shift_x) ** 2 + (y - cy - shift_y) ** 2) / 18.0)
    return np.where(field > 0.02, field, 0.0)  # network units: the rain starts near 0 at its edge


def test_a_displacement_read_as_growth_is_removed_and_a_growth_is_kept():
    from nowcast.models.calibration import remove_displacement

    field = _blobs()
    wet = field > 0
    both = wet & (_blobs(0.3, -0.2) > 0)
    shifted = (field - _blobs(0.3, -0.2)) * both  # rain moved by (0.3, -0.2) px: "growth" on one side only
    wet = both
    kept = remove_displacement(shifted.astype(np.float32), field, sigma=0.0)  # a rate not smoothed
    assert np.abs(kept[wet]).mean() < 0.2 * np.abs(shifted[wet]).mean()
    growth = (0.05 * wet).astype(np.float32)  # the whole scene grows
    assert remove_displacement(growth, field)[wet].mean() > 0.8 * 0.05
    assert not remove_displacement(growth, field)[~wet].any()  # dry stays dry
    few = np.zeros(SHAPE, dtype=np.float32)
    few[1, 1:5] = 0.1
    np.testing.assert_array_equal(remove_displacement(few, field), few)  # too few pixels: unchanged


def test_a_field_that_only_moves_reads_persistent_growth_and_aligned_far_less_of_it():
    """Older frames moved by a motion slightly wrong: displaced by k x the error, the same in both halves."""
    frames = np.stack([_blobs(0.15 * (7 - k), 0.1 * (7 - k)) for k in range(8)]).astype(np.float32)
    assert scene_persistence(frames) > 0.8  # the misalignment persists: it opens the gate
    wet = frames[-1] > 0
    plain = np.abs(window_trend(frames, 4.0, "minmod"))[wet].mean()
    aligned = np.abs(window_trend(frames, 4.0, "minmod", align=True))[wet].mean()
    assert aligned < 0.3 * plain
    rates = _field(8)
    growing = _scene(rates, rates)
    assert scene_persistence(growing, align=True) > 0.8  # a growth that goes on still persists
    rotated = np.stack([np.rot90(_blobs(), 0) for _ in range(8)]).astype(np.float32)  # nothing moves: no rate at all
    assert not window_trend(rotated, 4.0, "minmod", align=True).any()


# ------------------------------------------------------------------ the aligned trend and the candidates (step 7)
def _aligned(gate: float = 0.8) -> ChangeWeights:
    return replace(_minmod_weights(), trend_persistence_min=gate, trend_align=True)


def test_the_aligned_trend_round_trips_old_entries_do_not_align_and_a_broken_one_names_the_checkpoint():
    weights = _aligned()
    entry = weights.to_metadata()
    assert entry["trend_align"] is True and ChangeWeights.from_metadata(entry) == weights
    old = {k: v for k, v in entry.items() if k != "trend_align"}
    assert ChangeWeights.from_metadata(old).trend_align is False
    assert "residual displacement removed" in weights.brief() and "displacement" not in _minmod_weights().brief()
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights: trend_align must be true or false"):
        ChangeWeights.from_metadata({**entry, "trend_align": 1}, "m.pt")


def test_the_forecast_and_the_calibration_read_the_aligned_trend():
    from nowcast.models import lagrangian
    from nowcast.models.skill import score_method

    window = growing_sequences(n=1, frames=8, db_per_step=1.0, seed=3)[0]
    fc = _model(_aligned(NO_GATE))
    prepared = lagrangian.prepare(window, LEADS, fc.normaliser, fc.config.motion.method, motion_frames=4)
    rate = window_trend(prepared.inputs, 4.0, "minmod", 4.0, align=True)
    assert not np.allclose(rate, window_trend(prepared.inputs, 4.0, "minmod", 4.0))  # aligning changes the rate
    zeros = np.zeros((LEADS, *window.shape[1:]), dtype=np.float32)
    _same(fc.predict(window, LEADS), lagrangian.finish(prepared, _minmod_weights().apply(zeros, rate)))
    seqs = {"growth": growing_sequences(n=2, frames=8 + LEADS)}
    keys = candidates((0.0,), (0.0, 0.75), forms=("growth",), lifetimes=(3.0,))
    weights, _, grid, _ = calibrate(_model(None), seqs, LEADS, keys=keys, trend_frames=8, trend_estimator="minmod",
                                    trend_smoothing_px=4.0, trend_align=True)
    assert weights.trend_align
    own = score_method(_model(_aligned(NO_GATE)).predict, seqs["growth"], 8, LEADS)
    for t in ("csi@1", "csi@5"):
        assert grid[_aligned(NO_GATE).key(0)]["growth"][t] == pytest.approx(own[t], abs=1e-12, nan_ok=True)


def test_calibration_tries_the_candidates_it_is_given():
    seqs = {"growth": growing_sequences(n=1, frames=8 + LEADS)}
    _, summaries, grid, _ = calibrate(_model(None), seqs, LEADS, trend_frames=8, trend_estimator="minmod",
                                      network_grid=(0.0,), trend_grid=(2.0,), trend_forms=("growth",),
                                      trend_lifetimes=(12.0,))
    assert list(grid) == [(0.0, 0.0, 2.0, 0.0, 12.0)] and list(summaries) == list(grid)


@pytest.mark.parametrize("grid, message", [
    ({"network_grid": ()}, "network weights must be one or more numbers"),
    ({"network_grid": (-0.5,)}, "network weights must be one or more numbers"),
    ({"trend_forms": ("decay",)}, "trend forms must be one or more of"),
    ({"trend_lifetimes": (0.0,)}, "trend lifetimes must be one or more positive numbers"),
    ({"network_grid": (0.0,), "trend_grid": (0.0,)}, "no candidate but extrapolation"),
])
def test_impossible_candidates_are_refused_before_any_scoring(grid, message):
    seqs = {"growth": growing_sequences(n=1, frames=8 + LEADS)}
    with pytest.raises(ValueError, match=message):
        calibrate(_model(None), seqs, LEADS, trend_frames=8, trend_estimator="minmod", **grid)


def test_cli_calibrates_one_candidate_and_says_how(tmp_path, capsys):
    from nowcast.cli import main
    from nowcast.models.zoo import load_checkpoint

    config, store = calibratable_checkpoint(tmp_path)
    assert main(["models", "calibrate", str(config.checkpoint_path), "--validation", str(store), "--sequences", "2",
                 "--trend-persistence-min", "0.8", "--trend-align", "--network-weights", "0", "--trend-weights", "2",
                 "--trend-forms", "growth", "--trend-lifetimes", "12"]) == 0
    entry = load_checkpoint(config.checkpoint_path).metadata["change_weights"]
    assert entry["trend_align"] is True and entry["trend"][0] == 2.0 and entry["trend_lifetime_steps"] == 12.0
    assert entry["network_worst_lead_difference"] is None  # the network as trained was not a candidate
    assert entry["command"].endswith("--trend-persistence-min 0.8 --trend-align --trend-weights 2 "
                                     "--network-weights 0 --trend-forms growth --trend-lifetimes 12")
    out = capsys.readouterr().out
    assert "residual displacement removed" in out and "the network as trained" not in out


def test_a_residual_rotation_read_as_growth_is_removed_too():
    from scipy.ndimage import rotate

    frames = np.stack([rotate(_blobs(), 1.0 * (7 - k), reshape=False, order=1) for k in range(8)])
    frames = np.where(frames > 0.02, frames, 0.0).astype(np.float32)
    wet = frames[-1] > 0
    plain = np.abs(window_trend(frames, 4.0, "minmod"))[wet].mean()
    aligned = np.abs(window_trend(frames, 4.0, "minmod", align=True))[wet].mean()
    assert plain > 0 and aligned < 0.3 * plain


# ------------------------------------------------------------------ the stress set (step 8)
def test_the_stress_set_keeps_the_windows_either_reading_opens_at_the_gate(monkeypatch):
    from benchmarks import stress_windows
    from nowcast.models import calibration
    from tests.test_lagrangian import moving_window

    readings = iter([(0.9, 0.1), (0.1, 0.75), (0.69, 0.69), (0.7, -0.2)])  # (plain, aligned) per wet window
    current: dict = {}

    def fake(x, smoothing_px=0.0, align=False):
        if not align:
            current["pair"] = next(readings)
        return current["pair"][int(align)]

    monkeypatch.setattr(calibration, "scene_persistence", fake)
    fc = _model(None)
    wet = moving_window(shape=(32, 32), frames=20)
    seqs = np.stack([wet, wet, np.zeros_like(wet), wet, wet])  # the third is dry: never read
    assert stress_windows.stress_indices(seqs, fc.normaliser, fc.config.motion.method) == [0, 1, 4]


def test_the_stress_sets_candidates_are_valid_weights_of_the_shipped_reading():
    from benchmarks import stress_windows
    from nowcast.models.calibration import ChangeWeights

    for key, reading in stress_windows.CANDIDATES.values():
        weights = replace(ChangeWeights.from_key(key, LEADS),
                          **{"trend_frames": 8, "trend_estimator": "minmod", "trend_smoothing_px": 4.0, **reading})
        assert weights.trend_persistence_min >= 0.6 and weights.uses_trend and not weights.uses_network


def test_the_heavy_windows_are_those_with_rain_at_or_above_5_mm_h_at_the_analysis_time():
    from benchmarks.stress_windows import HISTORY, heavy_indices

    seqs = np.zeros((4, 20, 6, 6), dtype=np.float32)
    seqs[0, HISTORY - 1, 2, 2] = 5.0  # exactly at the threshold: heavy
    seqs[1, HISTORY - 1, 2, 2] = 4.99
    seqs[2, HISTORY, 2, 2] = 50.0  # heavy only after the analysis: not selected by the rain it shows
    seqs[3, HISTORY - 1] = np.nan
    seqs[3, HISTORY - 1, 0, 0] = 7.0
    assert heavy_indices(seqs) == [0, 3]


def test_window_losses_put_the_cost_on_the_window_that_made_it():
    from benchmarks.window_losses import HISTORY, LEADS, contributions, window_counts

    reference = np.array([[10, 5, 5], [20, 0, 0], [0, 0, 0]])
    candidate = reference.copy()
    candidate[1, 2] += 30  # 30 false alarms in window 1 only
    share = contributions(candidate, reference)
    assert share[1] < 0 and share[0] == 0 and share[2] == 0
    candidate[0, 0] += 5  # window 0 now gains hits (its misses caught): a positive share
    candidate[0, 1] -= 5
    assert contributions(candidate, reference)[0] > 0

    seqs = np.zeros((2, HISTORY + LEADS, 4, 4), dtype=np.float32)
    seqs[:, HISTORY:, 0, 0] = 10.0  # heavy rain observed at one pixel every lead
    counts = window_counts(lambda x, n: np.full((n, 4, 4), 6.0, dtype=np.float32), seqs)  # heavy everywhere
    assert counts.tolist() == [[LEADS, 0, 15 * LEADS]] * 2


def test_calibration_sequences_read_the_stores_of_the_models_window_or_of_its_history(monkeypatch):
    from nowcast.models.config import find_model_config, load_model_config
    from pipelines import validation

    made: dict = {}
    monkeypatch.setattr(validation, "validation_stores", lambda config, sequences: made.update(short=sequences) or ["v"])
    monkeypatch.setattr(validation, "long_validation_stores", lambda config, frames: made.update(long=frames) or ["l"])
    monkeypatch.setattr(validation, "read_validation", lambda stores, n, frames: {"read": (stores, n, frames)})
    config = load_model_config(find_model_config("swiss-south-tmu"))
    assert validation.calibration_sequences(config, 0, 16, 12) == (["v"], {"read": (["v"], 16, 4 + 12)})
    assert made == {"short": 16}  # the other day's twin made as large as what is read, unless told
    validation.calibration_sequences(config, 0, 16, 12, other_day_sequences=64)
    assert made == {"short": 64}
    assert validation.calibration_sequences(config, 8, 16, 12) == (["l"], {"read": (["l"], 16, 8 + 12)})
    assert made["long"] == 20
    assert validation.calibration_sequences(config, 8, 16, 12, stores=["s"])[0] == ["s"]  # given stores are read


def test_the_stress_sets_candidates_keep_their_own_reading_whatever_the_shipped_model_reads(monkeypatch):
    """A candidate's name means what it was scored as: the shipped model's reading changed since (the slope)."""
    from types import SimpleNamespace

    from benchmarks import stress_windows, trend_history

    monkeypatch.setattr(trend_history, "predictor", lambda forecaster, weights, history: weights)
    shipped = SimpleNamespace(change_weights=replace(_minmod_weights(), trend_estimator="slope", trend_smoothing_px=0.0),
                              predict=lambda x, n: x, history_frames=8)
    seen = stress_windows.methods(shipped)
    assert seen["step 7: aligned, gate 0.8, x2, 60 min"].trend_estimator == "minmod"
    assert seen["step 7: aligned, gate 0.8, x2, 60 min"].trend_smoothing_px == 4.0
    assert seen["round 18: slope, aligned, gate 0.6, x1.5, 120 min, scene ceiling"].trend_estimator == "slope"
