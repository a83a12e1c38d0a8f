"""benchmarks/study_steadiness.py: an arm's worst lead against a baseline, and its seed spread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.study_steadiness import main, seed_spread, steadiness, worst_lead


def _method(per_seed: list[list[float]]) -> dict:
    arr = np.asarray(per_seed, dtype=float)
    entry = {"per_seed": arr.tolist(), "mean": arr.mean(0).tolist()}
    return {"scores": {"csi@1": entry, "csi@5": entry}}


def _leads(value: float, n: int = 12) -> list[float]:
    return [value] * n


def test_worst_lead_is_the_lowest_seed_mean_difference_and_its_lead():
    base = _method([_leads(0.5)])
    seeds = [_leads(0.52), _leads(0.52)]
    seeds[0][6] = 0.44  # seed mean at lead 7 (35 min): 0.48, 0.02 below the baseline
    out = worst_lead(_method(seeds), base)
    assert out["csi@1"] == (pytest.approx(-0.02), 6)
    assert out["worst"] == pytest.approx(-0.02)


def test_worst_lead_reads_only_the_first_hour_and_skips_unscored_leads():
    base = _method([_leads(0.5, 24)])
    arm = [_leads(0.51, 24)]
    arm[0][12] = 0.1  # +65 min: outside the hour
    arm[0][3] = float("nan")  # no rain to score at +20 min
    assert worst_lead(_method(arm), base)["worst"] == pytest.approx(0.01)


def test_seed_spread_is_half_the_range_of_the_hour_means():
    arm = _method([_leads(0.50), _leads(0.56), _leads(0.53)])
    assert seed_spread(arm, "csi@1") == pytest.approx(0.03)


def test_the_steadiest_arm_has_the_highest_worst_lead():
    results = {"set": {"extrapolation": _method([_leads(0.5)]),
                       "a": _method([_leads(0.53), _leads(0.47)]),  # mean 0.50 everywhere: worst 0
                       "b": _method([_leads(0.51)])}}
    results["set"]["b"]["scores"]["csi@5"] = _method([[0.49] + _leads(0.6, 11)])["scores"]["csi@5"]  # −0.01 at +5 min
    table = steadiness(results, ["a", "b"])
    assert table["set"]["steadiest"] == "a"
    assert table["set"]["a"]["spread"]["csi@1"] == pytest.approx(0.03)
    assert table["set"]["b"]["worst_lead"]["csi@5"] == (pytest.approx(-0.01), 0)


def test_a_missing_arm_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"set": {"extrapolation": _method([_leads(0.5)])}}))
    assert main([str(path), "--arms", "tmu"]) == 2
    err = capsys.readouterr().err
    assert "results.json" in err and "no tmu" in err and err.count("\n") == 1
