"""The flicker diagnostic of the shipped trend reading (``benchmarks/gate_consistency.py``).

It counts, over a sequence's successive runs, those whose window opens the
reading, the changes of state and the isolated runs, and which limit decided
each change; and (twenty-eighth round) how much a candidate's added trend
jumps between runs, the flicker its selection limits, with the ramp's name and
tie-break in the choice files. Tested on hand-made run states, at each limit's
boundary.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.gate_consistency import limits_failed, run_states
from nowcast.models.calibration import ChangeWeights

SHIPPED_LIMITS = ChangeWeights.constant(0.0, 0.0, 12, trend=1.5, trend_frames=8, trend_persistence_min=0.65,
                                        trend_persistence_samples=5.0, trend_growth_min=0.006)


def _reading(rho: float | None = 0.8, samples: float = 10.0, growth: float = 0.01) -> dict:
    return {"rho": rho, "samples": samples, "growth": growth}


def test_a_window_exactly_at_every_limit_opens_and_one_below_any_does_not():
    assert limits_failed(_reading(0.65, 5.0, 0.006), SHIPPED_LIMITS) == []
    assert limits_failed(_reading(0.6499), SHIPPED_LIMITS) == ["rho"]
    assert limits_failed(_reading(samples=4.999), SHIPPED_LIMITS) == ["samples"]
    assert limits_failed(_reading(growth=0.0059), SHIPPED_LIMITS) == ["growth"]
    assert limits_failed(_reading(None, 1.0, 0.0), SHIPPED_LIMITS) == ["rho", "samples", "growth"]
    assert limits_failed(None, SHIPPED_LIMITS) == ["rain"]


def test_changes_isolated_runs_and_the_limit_that_decided_each():
    failed = [[], ["rho"], [], [], ["growth", "samples"], ["growth"], []]
    counts = run_states(failed)
    assert counts["runs"] == 7 and counts["opened"] == 4
    assert counts["changes"] == 4  # open -> shut -> open, open -> shut, shut -> open
    assert counts["isolated"] == 1  # the second run, shut between two open runs
    assert counts["deciding"] == {"rho": 2, "growth": 2, "samples": 1}
    steady = run_states([[]] * 5)
    assert steady == {"runs": 5, "opened": 5, "changes": 0, "isolated": 0, "deciding": {}}
    assert run_states([["rho"], []])["isolated"] == 0  # an end run has one neighbour: never isolated


def _consistency(*sequences: list[tuple[float | None, float, float]]) -> dict:
    """A consistency file of one set: per sequence, per run, ``(rho, samples, growth)``."""
    return {"sets": {"growth": {"per_sequence": [
        {"rho": [r for r, _, _ in runs], "samples": [s for _, s, _ in runs], "growth": [g for _, _, g in runs]}
        for runs in sequences]}}}


STEP = {"chosen": [0, 0, 1.5, 0, 12], "trend_persistence_min": 0.65, "trend_persistence_samples": 5.0,
        "trend_growth_min": 0.006}
RAMP = {**STEP, "trend_persistence_full": 0.85}


def test_the_weight_a_run_adds_is_the_step_or_the_ramp_and_nothing_where_a_limit_shuts_it():
    from benchmarks.gate_consistency import applied_weight

    limits = {"weight": 1.5, "gate": 0.65, "samples_min": 5.0, "growth_min": 0.006}
    assert applied_weight(0.65, 5.0, 0.006, **limits, full=-1.0) == 1.5  # a step: all of it at the gate
    assert applied_weight(0.6499, 5.0, 0.006, **limits, full=-1.0) == 0.0
    assert applied_weight(0.65, 5.0, 0.006, **limits, full=0.85) == 0.0  # a ramp: nothing at the gate
    assert applied_weight(0.75, 5.0, 0.006, **limits, full=0.85) == pytest.approx(0.75)  # halfway: half
    assert applied_weight(0.85, 5.0, 0.006, **limits, full=0.85) == pytest.approx(1.5)
    assert applied_weight(0.95, 5.0, 0.006, **limits, full=0.85) == pytest.approx(1.5)
    assert applied_weight(0.95, 4.9, 0.006, **limits, full=0.85) == 0.0
    assert applied_weight(0.95, 5.0, 0.0059, **limits, full=0.85) == 0.0
    assert applied_weight(None, 0.0, 0.0, **limits, full=0.85) == 0.0  # dry


def test_a_rho_wandering_across_the_gate_flickers_a_step_fully_and_a_ramp_a_little():
    from benchmarks.gate_consistency import flicker

    wandering = [(0.64, 10.0, 0.01), (0.66, 10.0, 0.01), (0.64, 10.0, 0.01), (0.66, 10.0, 0.01)]
    steady = [(0.9, 10.0, 0.01)] * 4
    results = _consistency(wandering, steady)
    assert flicker(results, STEP) == pytest.approx(0.5)  # 3 jumps of the whole weight over 6 pairs
    assert flicker(results, RAMP) == pytest.approx(3 * 1.5 * 0.05 / 6 / 1.5)  # each a twentieth of it
    assert flicker(_consistency(steady), STEP) == 0.0
    with pytest.raises(ValueError, match="no pair of successive runs"):
        flicker(_consistency([(0.9, 10.0, 0.01)]), STEP)


def test_a_ramp_is_read_from_its_name_and_the_later_ramp_end_wins_a_tie():
    import json

    from benchmarks.stress_rule import ranked_candidates, tie_break
    from benchmarks.trend_consistency import bounded_choice, gated_reading
    from benchmarks.trend_history import choice_weights

    name = "slope smoothed 4, persisting 0.6, aligned, evidence 5, growth 0.006, ramp 0.85"
    assert gated_reading(name) == ("slope", 4.0, 0.6, 5.0, 0.006, 0.85)
    assert gated_reading(name.replace(", ramp 0.85", ", ramp")) is None
    results = {"estimators": {
        name + ", ceiling scene": {"0/0/2/0/12": {"worst": 0.0, "growth_gain": 0.308}},
        name.replace("0.85", "0.75") + ", ceiling scene": {"0/0/2/0/12": {"worst": 0.0, "growth_gain": 0.309}},
        name.replace("0.6,", "0.55,") + ", ceiling scene": {"0/0/2/0/12": {"worst": 0.0, "growth_gain": 0.31}}}}
    ranked = ranked_candidates(results, floor=-0.0005)
    assert [c["trend_persistence_full"] for c in ranked] == [0.85, 0.75, 0.85]
    chosen = tie_break(ranked)  # all within 0.005: the stricter gate (0.6), then the later ramp end
    assert (chosen["trend_persistence_min"], chosen["trend_persistence_full"]) == (0.6, 0.85)
    assert bounded_choice(results, floor=-0.0005)["trend_persistence_full"] == 0.85
    weights = choice_weights(json.loads(json.dumps(chosen)))
    assert weights.trend_persistence_full == 0.85 and weights.trend_persistence_min == 0.6


def test_large_jumps_count_a_steps_whole_switches_and_not_a_ramps_small_moves():
    from benchmarks.gate_consistency import large_jumps

    wandering = [(0.64, 10.0, 0.01), (0.66, 10.0, 0.01), (0.64, 10.0, 0.01), (0.66, 10.0, 0.01)]
    results = _consistency(wandering, [(0.9, 10.0, 0.01)] * 4)
    assert large_jumps(results, STEP) == 3 and large_jumps(results, RAMP) == 0
    # exactly half the shipped weight is a large jump; a hair less is not
    half = _consistency([(0.85, 10.0, 0.01), (0.75, 10.0, 0.01)])  # 1.5 -> 0.75 on the ramp to 0.85
    assert large_jumps(half, RAMP) == 1
    assert large_jumps(_consistency([(0.85, 10.0, 0.01), (0.7501, 10.0, 0.01)]), RAMP) == 0
    shut = _consistency([(0.95, 10.0, 0.01), (0.95, 4.0, 0.01)])  # the samples limit shuts the next run
    assert large_jumps(shut, RAMP) == 1


def test_hysteresis_keeps_an_open_scene_open_down_to_the_hold_with_a_memory_and_one_run_without():
    from benchmarks.gate_consistency import hysteresis_jumps

    runs = [(0.7, 10.0, 0.01), (0.6, 10.0, 0.01), (0.6, 10.0, 0.01), (0.7, 10.0, 0.01)]
    results = _consistency(runs)
    limits = {"samples_min": 5.0, "growth_min": 0.006}
    assert hysteresis_jumps(results, 0.65, 0.65, memory=True, **limits) == 2  # a step: open, shut, shut, open
    assert hysteresis_jumps(results, 0.65, 0.55, memory=True, **limits) == 0  # kept open down to 0.55
    assert hysteresis_jumps(results, 0.65, 0.55, memory=False, **limits) == 2  # the third run's previous reads shut
    assert hysteresis_jumps(results, 0.65, 0.6, memory=True, **limits) == 0  # exactly at the hold: kept
    assert hysteresis_jumps(results, 0.65, 0.6001, memory=True, **limits) == 2
    shut = _consistency([(0.7, 10.0, 0.01), (0.6, 4.0, 0.01)])  # the samples limit shuts it whatever the hold
    assert hysteresis_jumps(shut, 0.65, 0.55, memory=True, **limits) == 1


def test_the_shipped_models_reading_as_a_choice_is_its_change_weights():
    from benchmarks.stress_rule import shipped_choice
    from nowcast.models.zoo import load_forecaster

    forecaster = load_forecaster("models/zoo/swiss-south-tmu.pt")
    choice = shipped_choice(forecaster)
    weights = forecaster.change_weights
    assert choice["chosen"][2] == weights.trend[0] and choice["trend_persistence_min"] == weights.trend_persistence_min
    assert choice["trend_persistence_samples"] == weights.trend_persistence_samples
    assert choice["trend_growth_min"] == weights.trend_growth_min
    assert choice["trend_persistence_full"] == weights.trend_persistence_full == -1.0  # the shipped model: a step


def test_the_growth_ratio_floor_is_a_limit_every_count_reads_and_a_choice_file_carries():
    """One place for the limits (failed_limits): the ratio floor shuts a run where the forecast does, and only there."""
    import json

    from benchmarks.gate_consistency import applied_weight, failed_limits, large_jumps
    from benchmarks.trend_history import choice_weights

    limits = {"gate": 0.65, "samples_min": 8.0, "growth_min": 0.006}
    assert failed_limits(0.8, 10.0, 0.01, 0.85, **limits, ratio_min=0.85) == []  # exactly at the floor
    assert failed_limits(0.8, 10.0, 0.01, 0.8499, **limits, ratio_min=0.85) == ["ratio"]
    assert failed_limits(0.8, 10.0, 0.01, None, **limits, ratio_min=0.85) == []  # undefined: passes
    assert failed_limits(0.8, 10.0, 0.01, 0.1, **limits) == []  # no floor
    assert applied_weight(0.9, 10.0, 0.01, weight=1.5, full=-1.0, ratio=0.6, ratio_min=0.85,
                          **limits) == 0.0
    floored = dict(STEP, trend_persistence_samples=8.0, trend_growth_ratio_min=0.85)
    slowing = {"sets": {"g": {"per_sequence": [
        {"rho": [0.9, 0.9], "samples": [10.0, 10.0], "growth": [0.01, 0.01], "growth_ratio": [1.2, 0.6]}]}}}
    assert large_jumps(slowing, floored) == 1 and large_jumps(slowing, STEP) == 0
    shipped = limits_failed({"rho": 0.9, "samples": 10.0, "growth": 0.01, "growth_ratio": 0.6},
                            replace(SHIPPED_LIMITS, trend_growth_ratio_min=0.85))
    assert shipped == ["ratio"]
    assert choice_weights(json.loads(json.dumps({**floored, "history": 8}))).trend_growth_ratio_min == 0.85
