"""Benchmark reports: the speed ratios rest on pairs from the same round (benchmarks/forecast.py --rounds); the network timer times what it names."""

from __future__ import annotations

from benchmarks.forecast import ratio_table


def test_ratio_is_taken_within_each_round_not_across_medians():
    # per round tmu / extrapolation: 4.0/2.0 = 2.0, 2.0/1.0 = 2.0, 3.0/3.0 = 1.0 -> median 2.0;
    # the ratio of the medians (3.0 / 2.0 = 1.5) would pair runs from different rounds
    times = [(4.0, 2.0), (2.0, 1.0), (3.0, 3.0)]
    rows = [{"region": "r", "method": m, "round": k, "compute_s": t}
            for k, (tmu, ext) in enumerate(times) for m, t in (("tmu", tmu), ("extrapolation", ext))]
    table = ratio_table(rows)
    tmu_row = next(line for line in table.splitlines() if line.startswith("| r | tmu"))
    assert "2.00 2.00 1.00" in tmu_row
    assert tmu_row.endswith("| 2.00 |")
    assert "| r | tmu | 3 | 3.00 |" in tmu_row  # the median time itself is still shown


def test_a_method_without_an_extrapolation_run_in_its_round_has_no_ratio():
    rows = [{"region": "r", "method": "tmu", "round": 0, "compute_s": 2.0}]
    assert ratio_table(rows).splitlines()[-1] == "| r | tmu | 1 | 2.00 | - | - |"


def test_network_speed_times_every_variant_it_was_given(capsys):
    from benchmarks.network_speed import main

    assert main(["--hidden", "8", "4", "--size", "32", "--leads", "2", "--rounds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "random weights" in line]
    assert [row.split(",")[1].split("(")[0].strip() for row in rows] == ["8 ch", "4 ch"]
    assert all(float(row.split("|")[2]) > 0.0 for row in rows)
