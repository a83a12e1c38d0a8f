"""The flicker diagnostic of the shipped trend reading (``benchmarks/gate_consistency.py``).

It counts, over a sequence's successive runs, those whose window opens the
reading, the changes of state and the isolated runs, and which limit decided
each change. Tested on hand-made run states, at each limit's boundary.
"""

from __future__ import annotations

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
