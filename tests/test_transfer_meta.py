"""benchmarks/transfer_meta.py: paired seed differences, their pooling over settings, what seeds resolve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.radar_transfer import transfer_order
from benchmarks.transfer_meta import (
    COMPARISONS,
    IMG,
    SETTINGS,
    Comparison,
    Setting,
    Source,
    analyse,
    load_setting,
    markdown,
    paired,
    pooled,
    seeds_needed,
)

SETS = ("a", "b")


def _arm(values: dict[str, list[float]]) -> dict[str, dict[str, np.ndarray]]:
    return {t: {"csi@1": np.asarray(v, dtype=float), "csi@5": np.asarray(v, dtype=float)} for t, v in values.items()}


def test_differences_are_paired_seed_by_seed():
    a = _arm({"a": [0.60, 0.70, 0.80]})
    b = _arm({"a": [0.55, 0.75, 0.70]})
    out = paired(a, b, "csi@1")["a"]
    assert out["per_seed"] == pytest.approx([0.05, -0.05, 0.10])
    assert out["mean"] == pytest.approx(0.1 / 3)
    assert out["sd"] == pytest.approx(np.std([0.05, -0.05, 0.10], ddof=1))


def test_verdict_is_transfer_orders_at_both_sides_of_the_margin():
    d = 2.0 ** -10  # values exact in binary, so "exactly at the margin" is exact
    b = _arm({"a": [0.5, 0.625, 0.75]})  # seed mean 0.625, half range 0.125: the larger of the two spreads
    at = _arm({"a": [0.6875, 0.75, 0.8125]})  # seed mean 0.125 above: exactly at the margin, a tie
    assert paired(at, b, "csi@1")["a"]["margin"] == 0.125
    assert paired(at, b, "csi@1")["a"]["verdict"] == "="
    assert paired(_arm({"a": [0.6875 + d, 0.75 + d, 0.8125 + d]}), b, "csi@1")["a"]["verdict"] == ">"
    assert paired(_arm({"a": [0.375 - d, 0.5 - d, 0.625 - d]}), b, "csi@1")["a"]["verdict"] == "<"
    assert paired(_arm({"a": [0.375, 0.5, 0.625]}), b, "csi@1")["a"]["verdict"] == "="


def test_arms_scored_on_different_seeds_are_refused():
    with pytest.raises(ValueError, match="cannot pair"):
        paired(_arm({"a": [0.5, 0.6, 0.7]}), _arm({"a": [0.5, 0.6]}), "csi@1")


def test_seeds_needed_follows_the_paired_t_test():
    assert seeds_needed(1.0, 1.0) == 8  # one standard deviation: 8 seeds (power 0.81; 7 give 0.76)
    assert seeds_needed(2.0, 1.0) < seeds_needed(1.0, 1.0) < seeds_needed(0.5, 1.0)
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(-1.0, 1.0) is None
    assert seeds_needed(1e-6, 1.0, most=100) is None


def test_pooled_counts_settings_not_cells():
    p = pooled([0.01, 0.02, -0.01])
    assert p["n"] == 3 and p["positive"] == 2 and p["negative"] == 1
    assert p["mean"] == pytest.approx(0.02 / 3)
    assert p["se"] == pytest.approx(np.std([0.01, 0.02, -0.01], ddof=1) / np.sqrt(3))


def test_pooled_interval_is_students_t_around_the_mean():
    """Three settings: the 90 % interval is mean ± t(0.95, 2) s.e. (t = 2.9200), wider at 95 % (4.3027)."""
    p = pooled([0.01, 0.02, -0.01])
    low, high = p["ci"]
    assert (low + high) / 2 == pytest.approx(p["mean"])
    assert (high - low) / 2 == pytest.approx(2.919986 * p["se"], rel=1e-5)
    wide = pooled([0.01, 0.02, -0.01], confidence=0.95)["ci"]
    assert (wide[1] - wide[0]) / 2 == pytest.approx(4.302653 * p["se"], rel=1e-5)
    assert pooled([0.001, 0.002, 0.003])["ci"][0] > 0 > pooled([-0.001, 0.0, 0.001])["ci"][0]


def _study_file(path, arms: dict[str, list[list[float]]]):
    """A radar_transfer.py results file: per set and arm, per-seed scores over 12 leads (the same on every set)."""
    body = {t: {arm: {"scores": {k: {"per_seed": per_seed} for k in ("csi@1", "csi@5")}}
                for arm, per_seed in arms.items()} for t in SETS}
    path.write_text(json.dumps(body))
    return path


def test_a_setting_reads_each_arm_once_and_pools_one_comparison_per_setting(tmp_path):
    leads = np.linspace(0.8, 0.4, 14)  # 14 leads: only the first 12 (0-60 min) count
    base = [list(leads + s * 0.01) for s in range(3)]
    settings, comparisons = [], []
    for i, lift in enumerate((0.010, 0.020)):
        f = _study_file(tmp_path / f"s{i}.json", {
            "scratch": base,
            "finetune": [list(np.asarray(r) + 0.005) for r in base],
            "tmu": [list(np.asarray(r) + 0.005 + lift) for r in base]})
        settings.append(Setting(f"s{i}", "test", (Source(f, {"scratch": "scratch", "finetune": "finetune", "tmu": "tmu"}),)))
        comparisons.append(Comparison(f"s{i}", "tmu", "finetune", primary=True))
    assert load_setting(settings[0], SETS)["scratch"]["a"]["csi@1"] == pytest.approx(leads[:12].mean() + [0, 0.01, 0.02])
    result = analyse(settings, comparisons, sets=SETS)
    p = result["pooled"]["tmu-finetune csi@1"]
    assert p["n"] == 2 and p["mean"] == pytest.approx(0.015) and p["positive"] == 2
    assert result["pooled"]["finetune-scratch csi@5"]["mean"] == pytest.approx(0.005)
    assert result["comparisons"][1]["tmu-scratch csi@1"]["over_sets"] == pytest.approx(0.025)
    assert "| **s0** | tmu | finetune | +0.0100" in markdown(result)
    twice = Setting("s", "test", (Source(settings[0].sources[0].path, {"tmu": "tmu"}),
                                  Source(settings[1].sources[0].path, {"tmu": "tmu"})))
    with pytest.raises(ValueError, match="read twice"):
        load_setting(twice, SETS)
    with pytest.raises(ValueError, match="no 'persistence'"):
        load_setting(Setting("s", "test", (Source(settings[0].sources[0].path, {"persistence": "p"}),)), SETS)


def test_the_recorded_studies_read_as_transfer_order_reads_them():
    """The catalogue names arms its files hold, and each seed mean is the study's own (thirty-fifth round, 2000 it)."""
    by_name = {s.name: s for s in SETTINGS}
    assert all(c.setting in by_name for c in COMPARISONS)
    assert len({(c.setting, c.tmu, c.finetune) for c in COMPARISONS}) == len(COMPARISONS)  # none listed twice
    assert {c.setting for c in COMPARISONS if c.primary} == set(by_name)  # every setting pooled
    setting = by_name["stratiform archive without trend samples, 2000 it"]
    arms = load_setting(setting)
    results = json.loads((IMG / "radar_study35_top_it2000_results.json").read_text())["swiss-south-growth-64"]
    order = transfer_order(results, "csi@5", ("tmu-split", "finetune-korpo-convective", "scratch"))
    assert arms["tmu-split"]["swiss-south-growth-64"]["csi@5"].mean() == pytest.approx(order["means"]["tmu-split"])
    assert arms["tmu-split"]["swiss-south-growth-64"]["csi@5"].mean() == pytest.approx(0.227, abs=5e-4)  # the doc's table
    result = analyse()
    assert {r["setting"] for r in result["comparisons"]} == set(by_name)


def test_a_setting_scored_on_its_own_sets_pools_over_them(tmp_path):
    """A setting with its own test sets (thirty-seventh round: the fresh draws) is read and pooled over those only."""
    leads = [list(np.full(12, 0.5 + 0.01 * s)) for s in range(3)]
    lifted = [list(np.asarray(r) + 0.02) for r in leads]
    common = _study_file(tmp_path / "common.json", {"scratch": leads, "finetune": leads, "tmu": lifted})
    own = tmp_path / "own.json"
    body = {t: {arm: {"scores": {k: {"per_seed": v} for k in ("csi@1", "csi@5")}} for arm, v in
                (("scratch", leads), ("finetune", leads), ("tmu", leads if t == "x" else lifted))} for t in ("x", "y", "z")}
    own.write_text(json.dumps(body))
    names = {"scratch": "scratch", "finetune": "finetune", "tmu": "tmu"}
    settings = [Setting("common", "t", (Source(common, names),)), Setting("own", "t", (Source(own, names),), sets=("x", "y", "z"))]
    result = analyse(settings, [Comparison("common", "tmu", "finetune", primary=True),
                                Comparison("own", "tmu", "finetune", primary=True)], sets=SETS)
    rows = {r["setting"]: r for r in result["comparisons"]}
    assert rows["own"]["sets"] == ["x", "y", "z"] and rows["common"]["sets"] == list(SETS)
    assert rows["own"]["tmu-finetune csi@1"]["over_sets"] == pytest.approx(0.02 * 2 / 3)  # level on x, +0.02 on y, z
    assert rows["own"]["tmu-finetune csi@1"]["above"] == 2
    pool = result["pooled"]["tmu-finetune csi@1"]
    assert pool["cells"] == 5 and pool["mean"] == pytest.approx((0.02 + 0.02 * 2 / 3) / 2)
    assert result["settings"]["own"]["sets"] == ["x", "y", "z"]
