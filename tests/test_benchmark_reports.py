"""The speed report's ratios rest on pairs from the same round (benchmarks/forecast.py --rounds)."""

from __future__ import annotations

from benchmarks.forecast import ratio_table


def test_ratio_is_taken_within_each_round_not_across_medians():
    # round 0: tmu 3.0 / ext 1.5 = 2.0; round 1: tmu 2.0 / ext 2.5 = 0.8; round 2: 2.4 / 2.0 = 1.2
    times = [(3.0, 1.5), (2.0, 2.5), (2.4, 2.0)]
    rows = [{"region": "r", "method": m, "round": k, "compute_s": t}
            for k, (tmu, ext) in enumerate(times) for m, t in (("tmu", tmu), ("extrapolation", ext))]
    table = ratio_table(rows)
    tmu_row = next(line for line in table.splitlines() if line.startswith("| r | tmu"))
    assert "2.00 0.80 1.20" in tmu_row
    assert tmu_row.endswith("| 1.20 |")  # the median of the per-round ratios
    # (the ratio of medians would be 2.4 / 2.0 = 1.20 here too, but 3.0/1.5 alone would say 2.00)
    assert "| r | tmu | 3 | 2.40 |" in tmu_row


def test_a_method_without_an_extrapolation_run_in_its_round_has_no_ratio():
    rows = [{"region": "r", "method": "tmu", "round": 0, "compute_s": 2.0}]
    assert ratio_table(rows).splitlines()[-1] == "| r | tmu | 1 | 2.00 | - | - |"
