"""The study's fresh-test skill, carried in the checkpoint (issue #8, item 8).

The region's default follows the study: the model only where it is not
measurably worse than extrapolation at any lead of any fresh test set (no cell
whose whole sampling interval lies below 0, none below -0.001 CSI:
:func:`nowcast.models.skill.not_measurably_worse`); the strict verdict (no
worse at every lead, no tolerance) is kept beside it. ``study_skill`` is that
record (:func:`nowcast.models.skill.study_skill`), written by
``benchmarks/trend_history.py record`` only into a checkpoint holding the model
that was scored, dropped when the change weights are chosen again, and said
in every product (``model_study_skill``) and listing. Tested at the boundary:
a model exactly at extrapolation at every lead is no worse; one a hair below
at one lead of one set is worse there.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from nowcast.models.skill import (
    DEFAULT_TOLERANCE,
    not_measurably_worse,
    study_skill,
    study_summary,
)

LEADS = 4


def _scores(model_shift: dict[tuple[str, str, int], float] | None = None) -> dict:
    """Two test sets, extrapolation and a model equal to it except where ``model_shift`` says."""
    out = {}
    for test_set in ("same-day", "growth"):
        ref = {"csi@1": [0.8, 0.7, 0.6, 0.5], "csi@5": [0.5, 0.4, float("nan"), 0.2]}
        model = {k: list(v) for k, v in ref.items()}
        for (s, key, lead), shift in (model_shift or {}).items():
            if s == test_set:
                model[key][lead] += shift
        out[test_set] = {"extrapolation": ref, "model": model, "Lagrangian trend": ref}
    return out


def _study(scores: dict) -> dict:
    return study_skill(scores, "model", fresh_seed=10, command="score", provenance="simulated from real seeds")


def test_a_model_exactly_at_extrapolation_everywhere_is_no_worse():
    study = _study(_scores())
    assert study["no_worse_at_every_lead"] and study["worst"]["difference"] == 0.0
    assert study["lead_minutes"] == [5, 10, 15, 20] and list(study["test_sets"]) == ["same-day", "growth"]
    assert "no worse than extrapolation at every lead" in study_summary(study)


def test_a_hair_below_at_one_lead_of_one_set_is_worse_and_named():
    study = _study(_scores({("growth", "csi@1", 2): +0.1, ("same-day", "csi@5", 3): -0.00006}))
    assert not study["no_worse_at_every_lead"]
    assert study["worst"] == {"test_set": "same-day", "lead_minutes": 20, "threshold_mm_h": 5.0,
                              "difference": pytest.approx(-0.00006)}
    line = study_summary(study)
    assert "worst lead -0.00006 CSI 5 mm/h at 20 min (same-day)" in line and "worse than extrapolation at some" in line


def test_a_lead_without_events_is_no_evidence_and_a_missing_model_is_refused():
    study = _study(_scores({("growth", "csi@5", 2): -1.0}))  # NaN - 1 is still NaN: not a lead that scored
    assert study["no_worse_at_every_lead"]
    first_without_events = _scores({("same-day", "csi@1", 1): -0.01})
    for methods in first_without_events.values():  # the very first lead read has no events at all
        methods["extrapolation"] = {**methods["extrapolation"], "csi@1": [float("nan"), *methods["extrapolation"]["csi@1"][1:]]}
    study = _study(first_without_events)
    assert study["worst"]["lead_minutes"] == 10 and study["worst"]["difference"] == pytest.approx(-0.01)
    with pytest.raises(ValueError, match="test set same-day: no scores of 'other'"):
        study_skill(_scores(), "other", fresh_seed=1, command="x", provenance="p")
    with pytest.raises(ValueError, match="at least one test set"):
        study_skill({}, "model", fresh_seed=1, command="x", provenance="p")


def test_products_and_listings_say_the_study_or_that_there_is_none():
    from nowcast.forecast import model_product_attrs

    study = _study(_scores({("growth", "csi@1", 0): -0.01}))
    assert model_product_attrs({"study_skill": study})["model_study_skill"] == study_summary(study)
    assert model_product_attrs({})["model_study_skill"].startswith("not measured")


@pytest.fixture
def two_checkpoints(tmp_path):
    """A candidate as scored and its copy (the checkpoint it is promoted to), with a score file naming it."""
    from benchmarks.trend_history import scored_label
    from nowcast.models.zoo import load_forecaster

    scored, target = tmp_path / "cand.pt", tmp_path / "shipped.pt"
    shutil.copy("models/zoo/swiss-south-tmu.pt", scored)
    shutil.copy("models/zoo/swiss-south-tmu.pt", target)
    label = scored_label(load_forecaster(scored), scored)
    results = {"bootstrap": {}, **{s: {"extrapolation": m["extrapolation"], label: m["model"]}
                                   for s, m in _scores({("growth", "csi@1", 1): -0.002}).items()}}
    path = tmp_path / "fresh.json"
    path.write_text(json.dumps(results))
    return scored, target, path


def test_record_writes_the_study_of_the_model_scored_into_its_copy(two_checkpoints):
    from benchmarks.trend_history import main
    from nowcast.models.zoo import describe_checkpoint, load_checkpoint

    scored, target, results = two_checkpoints
    assert main(["record", str(results), "--fresh", "10", "--scored", str(scored), "--checkpoint", str(target)]) == 0
    ckpt = load_checkpoint(target)
    study = ckpt.metadata["study_skill"]
    assert study["fresh_seeds"] == [10] and f"--also {scored}" in study["command"]
    assert study["worst"]["difference"] == pytest.approx(-0.002) and not study["no_worse_at_every_lead"]
    info = describe_checkpoint(ckpt)
    assert info["study_no_worse_at_every_lead"] is False and info["study_skill"] == study_summary(study)
    assert info["study_not_measurably_worse"] is False  # recorded without intervals: read strictly


def test_record_refuses_a_checkpoint_with_other_change_weights(two_checkpoints):
    from benchmarks.trend_history import record
    from nowcast.models.calibration import ChangeWeights
    from nowcast.models.skill import update_metadata
    from nowcast.models.zoo import load_checkpoint

    scored, target, results = two_checkpoints
    weights = ChangeWeights.from_metadata(load_checkpoint(target).metadata["change_weights"])
    update_metadata(target, change_weights=replace(weights, trend_ceiling="none").to_metadata(), study_skill=None)
    with pytest.raises(ValueError, match="its change weights are not those of"):
        record([results], [scored], target, [10])
    assert load_checkpoint(target).metadata["study_skill"] is None  # nothing written


def test_choosing_the_weights_again_drops_the_study(two_checkpoints):
    from benchmarks.trend_history import record
    from nowcast.models.calibration import ChangeWeights
    from nowcast.models.zoo import load_checkpoint
    from pipelines.pretrain import record_change_weights

    scored, target, results = two_checkpoints
    record([results], [scored], target, [10])
    weights = ChangeWeights.constant(0.0, 0.0, 12, trend=0.25, trend_decay=0.0)
    summaries = {weights.key(0): {"worst": 0.0, "csi5": 0.3}}
    record_change_weights(target, weights, summaries, [], {}, command="x")
    assert load_checkpoint(target).metadata.get("study_skill") is None


def test_the_shipped_forecaster_carries_the_study_its_default_follows():
    from nowcast.models.zoo import load_checkpoint

    study = load_checkpoint("models/zoo/swiss-south-tmu.pt").metadata["study_skill"]
    assert min(study["fresh_seeds"]) >= 10 and len(study["test_sets"]) == 4 * len(study["fresh_seeds"])
    assert np.isfinite(study["worst"]["difference"])


def test_a_study_over_two_seeds_holds_both_and_its_worst_lead(two_checkpoints, tmp_path):
    from benchmarks.trend_history import record
    from nowcast.models.zoo import load_checkpoint

    scored, target, first = two_checkpoints
    results = json.loads(first.read_text())
    label = next(k for k in results["same-day"] if k != "extrapolation")
    second = {"bootstrap": {}, "checkpoints": {label: load_checkpoint(scored).sha256},
              **{f"{name}-s11": methods for name, methods in results.items() if name != "bootstrap"}}
    second["growth-s11"][label] = {**second["growth-s11"][label],
                                   "csi@5": [0.5, 0.4, float("nan"), 0.19]}  # 0.01 below at 20 min
    path = tmp_path / "fresh11.json"
    path.write_text(json.dumps(second))
    study = record([first, path], [scored], target, [10, 11])
    assert study["fresh_seeds"] == [10, 11] and set(study["test_sets"]) == {"same-day", "growth", "same-day-s11",
                                                                              "growth-s11"}
    assert study["worst"]["test_set"] == "growth-s11" and study["worst"]["difference"] == pytest.approx(-0.01)
    assert "(seeds 10, 11: same-day, growth, same-day-s11, growth-s11)" in study_summary(study)
    with pytest.raises(ValueError, match="2 results files for 1 fresh seeds and 2 scored checkpoints"):
        record([first, path], [scored], target, [10])
    second["checkpoints"][label] = "0" * 64  # the name was another file when it was scored
    path.write_text(json.dumps(second))
    with pytest.raises(ValueError, match=re.escape(f"fresh11.json: {label!r} was 000000000000")):
        record([first, path], [scored], target, [10, 11])


def test_record_finds_the_shipped_model_by_its_digest_where_it_was_not_scored_with_also(two_checkpoints, tmp_path):
    from benchmarks.trend_history import record
    from nowcast.models.zoo import load_checkpoint

    _, target, first = two_checkpoints
    results = json.loads(first.read_text())
    label = next(k for k in results["same-day"] if k != "extrapolation")
    shipped = {"bootstrap": {}, "checkpoints": {"shipped (trend over 8)": load_checkpoint(target).sha256,
                                                "other": "0" * 64},
               **{name: {"extrapolation": m["extrapolation"], "shipped (trend over 8)": m[label], "other": m[label]}
                  for name, m in results.items() if name != "bootstrap"}}
    path = tmp_path / "fresh15.json"
    path.write_text(json.dumps(shipped))
    study = record([path], [target], target, [15])
    assert study["fresh_seeds"] == [15] and study["worst"]["difference"] == pytest.approx(-0.002)
    assert study["command"] == f"python benchmarks/trend_history.py score --fresh 15 --json {path}"
    shipped["checkpoints"]["other"] = shipped["checkpoints"]["shipped (trend over 8)"]  # two names, one digest
    path.write_text(json.dumps(shipped))
    with pytest.raises(ValueError, match="no scores of"):
        record([path], [target], target, [15])


def test_the_study_says_whether_a_loss_is_beyond_its_sampling_interval_and_keeps_its_verdict():
    scores = _scores({("same-day", "csi@5", 3): -0.00001})
    quiet = study_skill(scores, "model", fresh_seed=17, command="score", provenance="p",
                        beyond_interval={"same-day": [], "growth": []}, interval_level=0.9)
    assert not quiet["no_worse_at_every_lead"]  # the rule has no tolerance: the verdict is the same
    assert quiet["worse_beyond_interval"] == {"same-day": [], "growth": []} and quiet["interval_level"] == 0.9
    assert study_summary(quiet).endswith("worse than extrapolation at some leads; below it beyond its 90 % "
                                         "sampling interval at no lead; not measurably worse (the default's rule: "
                                         "no loss beyond that interval, none over 0.001 CSI) (p)")
    loud = study_skill(scores, "model", fresh_seed=17, command="score", provenance="p",
                       beyond_interval={"same-day": [[4, 5.0]], "growth": []}, interval_level=0.9)
    assert loud["worse_beyond_interval"]["same-day"] == [[20, 5.0]]  # lead 4 of 5-min steps
    assert "beyond its 90 % sampling interval at same-day 20 min @5; measurably worse" in study_summary(loud)
    fine = study_skill(_scores(), "model", fresh_seed=17, command="score", provenance="p",
                       beyond_interval={"same-day": [], "growth": []}, interval_level=0.9)
    assert "sampling interval" not in study_summary(fine)  # no worse: nothing to qualify
    assert "sampling interval" not in study_summary(_study(scores))  # recorded without intervals: as before
    with pytest.raises(ValueError, match="intervals must name every test set"):
        study_skill(scores, "model", fresh_seed=17, command="score", provenance="p",
                    beyond_interval={"same-day": []}, interval_level=0.9)
    with pytest.raises(ValueError, match="a level in"):
        study_skill(scores, "model", fresh_seed=17, command="score", provenance="p",
                    beyond_interval={"same-day": [], "growth": []}, interval_level=90)


def test_record_carries_the_bootstrap_cells_where_every_set_has_them(two_checkpoints):
    from benchmarks.trend_history import record

    scored, target, first = two_checkpoints
    results = json.loads(first.read_text())
    label = next(k for k in results["same-day"] if k != "extrapolation")
    results["bootstrap"] = {"same-day": {label: {"worse": [], "level": 0.9}},
                            "growth": {label: {"worse": [[1, 1.0]], "level": 0.9}}}
    first.write_text(json.dumps(results))
    study = record([first], [scored], target, [10])
    assert study["worse_beyond_interval"] == {"same-day": [], "growth": [[5, 1.0]]}
    del results["bootstrap"]["growth"]  # one set without its cells: the study says nothing of intervals
    first.write_text(json.dumps(results))
    assert "worse_beyond_interval" not in record([first], [scored], target, [10])


def _judged(difference: float, beyond: dict[str, list] | None) -> dict:
    """A recorded study whose worst cell is ``difference``, with the cells beyond their interval ``beyond``."""
    study = {"worst": {"test_set": "same-day", "lead_minutes": 20, "threshold_mm_h": 1.0, "difference": difference},
             "no_worse_at_every_lead": difference >= -1e-9}
    if beyond is not None:
        study.update(worse_beyond_interval=beyond, interval_level=0.9)
    return study


def test_the_default_rule_lets_through_a_loss_within_sampling_and_the_tolerance_and_nothing_more():
    """The region's default rule (twenty-seventh round), at both sides of each of its two limits."""
    quiet = {"same-day": [], "growth": []}
    assert DEFAULT_TOLERANCE == 0.001
    assert not_measurably_worse(_judged(0.0, quiet))
    assert not_measurably_worse(_judged(-0.0000096, quiet))  # seed 17's one pixel
    assert not_measurably_worse(_judged(-DEFAULT_TOLERANCE, quiet))  # exactly at the tolerance
    assert not not_measurably_worse(_judged(float(np.nextafter(-DEFAULT_TOLERANCE, -1.0)), quiet))
    assert not not_measurably_worse(_judged(-0.0018, quiet))  # the gate-0.7 model's rigid-field loss, seed 16
    # one cell whose whole interval is below 0 refuses it, however small its loss
    assert not not_measurably_worse(_judged(-0.0000096, {"same-day": [], "growth": [[20, 1.0]]}))
    assert not not_measurably_worse(_judged(0.0, {"same-day": [[60, 5.0]], "growth": []}))
    # recorded without intervals: read strictly, as before the rule
    assert not_measurably_worse(_judged(0.0, None))
    assert not not_measurably_worse(_judged(-0.0000096, None))
    assert not_measurably_worse({"worst": None, "no_worse_at_every_lead": True, "worse_beyond_interval": quiet})
    assert not not_measurably_worse(_judged(-0.0018, quiet), tolerance=0.0015)
    assert not_measurably_worse(_judged(-0.0018, quiet), tolerance=0.002)
    for bad in (-0.001, float("nan")):
        with pytest.raises(ValueError, match="tolerance must be a CSI difference >= 0"):
            not_measurably_worse(_judged(0.0, quiet), tolerance=bad)


def test_a_study_built_from_scores_is_judged_by_the_rule_as_recorded():
    scores = _scores({("same-day", "csi@5", 3): -0.0005, ("growth", "csi@1", 0): +0.05})
    study = study_skill(scores, "model", fresh_seed=18, command="score", provenance="p",
                        beyond_interval={"same-day": [], "growth": []}, interval_level=0.9)
    assert not study["no_worse_at_every_lead"] and not_measurably_worse(study)
    stored = json.loads(json.dumps(study))  # as a checkpoint holds it
    assert not_measurably_worse(stored) and "; not measurably worse" in study_summary(stored)
    larger = study_skill(_scores({("growth", "csi@1", 1): -0.0011}), "model", fresh_seed=18, command="score",
                         provenance="p", beyond_interval={"same-day": [], "growth": []}, interval_level=0.9)
    assert not not_measurably_worse(larger) and "; measurably worse" in study_summary(larger)


def test_the_heldout_record_carries_its_bootstrap_and_the_rule_reads_it_as_it_reads_a_study():
    """heldout_skill: worst and the cells beyond their interval; a small loss passes, a measured one does not."""
    from nowcast.models.calibration import ChangeWeights
    from nowcast.models.skill import heldout_skill, skill_summary
    from nowcast.models.zoo import describe_checkpoint, load_checkpoint
    from tests.test_trend_history import LEADS as H_LEADS
    from tests.test_trend_history import _model, growing_sequences

    seqs = growing_sequences(n=4, frames=4 + H_LEADS, db_per_step=0.5)
    nothing = ChangeWeights.constant(0.0, 0.0, H_LEADS)  # no change applied: extrapolation itself
    same = heldout_skill(_model(nothing), seqs, "t", "simulated", H_LEADS)
    assert same["no_worse_at_every_lead"] and same["worse_beyond_interval"] == {"t": []}
    assert same["interval_level"] == 0.9 and same["worst"]["difference"] == 0.0 and not_measurably_worse(same)
    record = dict(same, no_worse_at_every_lead=False,
                  worst={"test_set": "t", "lead_minutes": 10, "threshold_mm_h": 1.0, "difference": -0.0004})
    assert not_measurably_worse(record)
    assert "; not measurably worse (the default's rule" in skill_summary(record)
    assert not not_measurably_worse(dict(record, worse_beyond_interval={"t": [[10, 1.0]]}))
    assert "beyond its 90 % sampling interval at t 10 min @1; measurably worse" in skill_summary(
        dict(record, worse_beyond_interval={"t": [[10, 1.0]]}))
    legacy = {k: v for k, v in record.items() if k not in ("worse_beyond_interval", "interval_level")}
    assert not not_measurably_worse(legacy)  # measured before the bootstrap: read strictly
    assert "sampling interval" not in skill_summary(legacy)
    info = describe_checkpoint(load_checkpoint("models/zoo/swiss-south-tmu.pt"))
    assert info["heldout_not_measurably_worse"] is not None
    from types import SimpleNamespace

    dry = SimpleNamespace(config=SimpleNamespace(input_frames=4), predict=lambda w, n: np.zeros((n, *w.shape[1:])))
    lost = heldout_skill(dry, seqs, "t", "simulated", H_LEADS)  # forecasts the rain away: worse beyond doubt
    assert not lost["no_worse_at_every_lead"] and not not_measurably_worse(lost)
    assert [5, 1.0] in lost["worse_beyond_interval"]["t"] and lost["worst"]["difference"] < -0.1
    lowest = min(np.nanmin(np.subtract(lost[k]["model"], lost[k]["extrapolation"])) for k in ("csi@1", "csi@5"))
    assert lost["worst"]["difference"] == pytest.approx(lowest, abs=1e-4)  # the lowest cell, not any
