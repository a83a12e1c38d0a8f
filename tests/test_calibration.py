"""Change weights: applied per lead and sign, chosen by the rule, carried by the checkpoint into forecasts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.baselines import extrapolation
from nowcast.errors import CheckpointError
from nowcast.models.calibration import (
    EXTRAPOLATION,
    TIE,
    ChangeWeights,
    as_candidate,
    choose_weights,
    score_grid,
    summarise,
)
from nowcast.models.skill import score_method, update_metadata
from nowcast.models.zoo import (
    Forecaster,
    describe_checkpoint,
    load_checkpoint,
    load_forecaster,
    save_checkpoint,
)
from tests.test_lagrangian import forecaster, lagrangian_config, moving_window


def test_growth_and_decay_take_their_own_lead_weights():
    change = np.array([[[1.0, -2.0]], [[3.0, -4.0]], [[5.0, -6.0]]])
    weights = ChangeWeights((0.5, 2.0), (0.0, 0.25))
    out = weights.apply(change)
    # lead 1: growth x0.5, decay x0; lead 2: x2, x0.25; lead 3 (past the calibration): lead 2's weights
    np.testing.assert_allclose(out, [[[0.5, 0.0]], [[6.0, -1.0]], [[10.0, -1.5]]])
    np.testing.assert_array_equal(ChangeWeights.constant(1, 1, 2).apply(change), change)
    assert not np.any(ChangeWeights.constant(0, 0, 3).apply(change))


@pytest.mark.parametrize("growth, decay", [((1.0,), (1.0, 1.0)), ((-0.1,), (1.0,)), ((np.nan,), (1.0,)), ((), ()),
                                           ((4.01,), (1.0,))])
def test_impossible_weights_are_refused(growth, decay):
    with pytest.raises(ValueError):
        ChangeWeights(growth, decay)


def test_largest_weight_is_allowed_exactly_at_the_limit():
    assert ChangeWeights((4.0,), (0.0,)).growth == (4.0,)


def test_a_broken_entry_names_the_checkpoint():
    with pytest.raises(CheckpointError, match="model.pt: invalid change_weights"):
        ChangeWeights.from_metadata({"growth": [1.0]}, "model.pt")
    assert ChangeWeights.from_metadata(None) is None


def _scores(c1: list[float], c5: list[float]) -> dict[str, list[float]]:
    return {"csi@1": c1, "csi@5": c5}


def test_rule_takes_the_best_worst_lead_and_breaks_ties_by_heavy_rain():
    """The thirteenth round's rule (``tie_break="csi5"``): any difference in mean CSI@5 breaks a tie."""
    ref = {"a": _scores([0.5, 0.5], [0.3, 0.3]), "b": _scores([0.5, 0.5], [0.3, np.nan])}
    grid = {
        (0.0, 0.0, 0.0): {"a": ref["a"], "b": ref["b"]},  # extrapolation itself: never a candidate
        (1.0, 1.0, 0.0): {"a": _scores([0.51, 0.48], [0.40, 0.40]), "b": _scores([0.5, 0.5], [0.35, np.nan])},  # worst -0.02
        (0.5, 0.0, 0.0): {"a": _scores([0.5, 0.499], [0.31, 0.31]), "b": _scores([0.5, 0.5], [0.3, np.nan])},  # worst -0.001: best
        # worst exactly TIE below the best: tied, and more CSI@5, so chosen
        (0.5, 0.5, 0.25): {"a": _scores([0.5, 0.499 - TIE], [0.32, 0.32]), "b": _scores([0.5, 0.5], [0.3, np.nan])},
        # just beyond the tie: not tied, although it has the most CSI@5
        (1.5, 0.0, 1.0): {"a": _scores([0.5, 0.499 - TIE - 1e-4], [0.39, 0.39]), "b": _scores([0.5, 0.5], [0.3, np.nan])},
    }
    weights, summaries = choose_weights(grid, ref, tie_break="csi5")
    assert EXTRAPOLATION not in summaries
    assert (weights.growth, weights.decay, weights.trend) == ((0.5, 0.5), (0.5, 0.5), (0.25, 0.25))
    assert weights.trend_decay == weights.trend and weights.trend_lifetime == 6.0  # a 3-tuple is the signed trend
    assert summaries[as_candidate((1.0, 1.0, 0.0))]["worst"] == pytest.approx(-0.02)
    assert summaries[as_candidate((0.5, 0.0, 0.0))]["worst"] == pytest.approx(-0.001)
    grid[(0.5, 0.5, 0.25)]["a"]["csi@1"][1] -= 2e-4  # now beyond the tie: the best worst lead wins
    weights, _ = choose_weights(grid, ref, tie_break="csi5")
    assert weights.key(0) == as_candidate((0.5, 0.0, 0.0)) and not weights.uses_trend


def _with_change(scores: dict[str, list[float]], change: float) -> dict:
    return {**scores, "change": change}


def test_fourteenth_rule_counts_heavy_rain_only_beyond_the_tie_then_takes_the_least_change():
    ref = {"a": _scores([0.5, 0.5], [0.3, 0.3])}
    small, large, trend_growth = (0.0, 0.5, 0.0, 0.0, 6.0), (0.0, 0.5, 0.25, 0.25, 6.0), (0.0, 0.0, 0.25, 0.0, 12.0)
    grid = {
        EXTRAPOLATION: {"a": _with_change(ref["a"], 0.0)},
        # the best worst lead, the least CSI@5
        (0.0, 0.25, 0.0, 0.0, 6.0): {"a": _with_change(_scores([0.5, 0.5], [0.30, 0.30]), 0.01)},
        # tied on the worst lead; CSI@5 exactly TIE below the most: tied again, and it changes the least
        small: {"a": _with_change(_scores([0.5, 0.499], [0.32 - TIE, 0.32 - TIE]), 0.02)},
        large: {"a": _with_change(_scores([0.5, 0.499], [0.32, 0.32]), 0.05)},
        trend_growth: {"a": _with_change(_scores([0.5, 0.498], [0.318, 0.318]), 0.03)},
    }
    weights, summaries = choose_weights(grid, ref, tie_break="csi5-then-least-change")
    assert weights.key(0) == small and summaries[small]["change"] == pytest.approx(0.02)
    grid[small]["a"]["csi@5"] = [0.32 - TIE - 1e-4] * 2  # just beyond: the next least change among the rest
    assert choose_weights(grid, ref, tie_break="csi5-then-least-change")[0].key(0) == trend_growth
    # rule 15 (the default): no second tie on CSI@5, the least change among all tied on the worst lead
    assert choose_weights(grid, ref)[0].key(0) == (0.0, 0.25, 0.0, 0.0, 6.0)
    assert choose_weights(grid, ref, tie_break="csi5")[0].key(0) == large  # the thirteenth round's rule
    with pytest.raises(ValueError, match="tie_break"):
        choose_weights(grid, ref, tie_break="mean")


def test_rule_15_takes_the_least_change_among_those_tied_on_the_worst_lead():
    ref = {"a": _scores([0.5, 0.5], [0.3, 0.3])}
    best, small = (0.0, 0.0, 0.5, 0.5, 3.0), (0.0, 0.0, 0.25, 0.0, 3.0)
    grid = {
        EXTRAPOLATION: {"a": _with_change(ref["a"], 0.0)},
        best: {"a": _with_change(_scores([0.5, 0.5], [0.40, 0.40]), 0.05)},  # the best worst lead, much heavy rain
        # exactly TIE below the best worst lead: tied, and it changes the least (its lower CSI@5 does not count)
        small: {"a": _with_change(_scores([0.5, 0.5 - TIE], [0.31, 0.31]), 0.01)},
    }
    assert choose_weights(grid, ref)[0].key(0) == small
    grid[small]["a"]["csi@1"][1] -= 1e-4  # just beyond the tie: the best worst lead wins
    assert choose_weights(grid, ref)[0].key(0) == best


def test_a_lead_without_heavy_rain_has_no_difference():
    ref = {"a": _scores([0.5], [np.nan])}
    assert summarise({"a": _scores([0.6], [np.nan])}, ref)["worst"] == pytest.approx(0.1)


def test_rule_needs_extrapolation_in_the_grid_and_a_candidate():
    ref = {"a": _scores([0.5], [0.3])}
    with pytest.raises(ValueError, match="no candidate"):
        choose_weights({(0.0, 0.0, 0.0): {"a": ref["a"]}}, ref)


def _signed_changes(x: np.ndarray, leads: int) -> np.ndarray:
    """A network that grows the cores and decays the edges (normalised units), more with lead."""
    last = np.asarray(x[-1], dtype=np.float32)
    ramp = np.arange(1, leads + 1, dtype=np.float32)[:, None, None] / leads
    return (np.where(last > 0.6, 0.3, np.where(last > 0, -0.2, 0.0)) * ramp).astype(np.float32)


def test_weights_reach_the_forecast_and_zero_weights_are_extrapolation():
    window = moving_window(shape=(32, 32))
    fc = forecaster()
    fc._raw_changes = _signed_changes
    plain = fc.predict(window, 4)
    fc.change_weights = ChangeWeights.constant(0.0, 0.0, 4)
    np.testing.assert_array_equal(np.nan_to_num(fc.predict(window, 4), nan=-1),
                                  np.nan_to_num(extrapolation(window, 4), nan=-1))
    fc.change_weights = ChangeWeights.constant(1.0, 0.0, 4)  # growth only: at least the network's rain where it grows
    grown = fc.predict(window, 4)
    ref = extrapolation(window, 4)
    assert np.nansum(grown) > np.nansum(plain)
    assert np.nansum(grown) > np.nansum(ref)
    assert np.all(np.nan_to_num(grown) >= np.nan_to_num(ref) - 1e-5)  # no decay anywhere


def test_grid_scores_are_those_of_the_weighted_forecast():
    """The grid reuses one network run and one motion per sequence; it must score what predict() forecasts."""
    rng = np.random.default_rng(3)
    seqs = np.stack([moving_window(shape=(32, 32), frames=8, u=u, v=v) for u, v in rng.uniform(-1.5, 1.5, (3, 2))])
    fc = forecaster()
    fc._raw_changes = _signed_changes
    keys = [as_candidate(k) for k in [(0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.5, 1.5, 0.0), (0.5, 0.0, 1.0),
                                      (0.0, 0.0, 0.75), (0.5, 0.0, 1.0, 0.0, 3.0), (0.0, 0.5, 0.75, 0.75, 12.0)]]
    grid = score_grid(fc._raw_changes, fc.normaliser, {"s": seqs}, 4, 4, keys=keys)
    changes, applied = fc._changes, []

    def recording(x, leads, **kwargs):  # what predict applies, to compare with the grid's measure of it
        out = changes(x, leads, **kwargs)
        applied.append(float(np.abs(out).mean()))
        return out

    fc._changes = recording
    for weights in keys:
        fc.change_weights = ChangeWeights.from_key(weights, 4)
        applied.clear()
        direct = score_method(fc.predict, seqs, 4, 4)
        for key in ("csi@1", "csi@5"):
            np.testing.assert_allclose(grid[weights]["s"][key], direct[key], equal_nan=True)
        assert len(applied) == len(seqs)
        assert grid[weights]["s"]["change"] == pytest.approx(np.mean(applied), rel=1e-5, abs=1e-9)
    assert grid[keys[1]]["s"]["csi@1"] != grid[keys[2]]["s"]["csi@1"]
    assert grid[keys[0]]["s"]["change"] == 0.0 < grid[keys[1]]["s"]["change"]


def _saved(tmp_path, frame="lagrangian"):
    config = lagrangian_config(checkpoint=str(tmp_path / "m.pt"), frame=frame)
    torch.manual_seed(0)
    from nowcast.models.predictor import Predictor

    save_checkpoint(config.checkpoint_path, Predictor.from_config(config.architecture), config, iterations=1, metrics={})
    return config.checkpoint_path


def test_checkpoint_carries_the_weights_into_forecaster_listing_and_product(tmp_path):
    from nowcast.forecast import model_product_attrs

    path = _saved(tmp_path)
    assert load_forecaster(path).change_weights is None
    update_metadata(path, change_weights=ChangeWeights.constant(0.25, 0.0, 6).to_metadata(calibrated_from="x.pt"))
    fc = load_forecaster(path)
    assert fc.change_weights == ChangeWeights.constant(0.25, 0.0, 6)
    brief = "network growth x0.25, decay x0 at every lead"
    assert describe_checkpoint(load_checkpoint(path))["change_weights"] == brief
    assert model_product_attrs(fc.metadata)["model_change_weights"].startswith(brief)
    assert "model_change_weights" not in model_product_attrs({})


def test_broken_or_misplaced_weights_in_a_checkpoint_are_refused(tmp_path):
    path = _saved(tmp_path)
    update_metadata(path, change_weights={"growth": [1.0, -1.0], "decay": [1.0, 1.0]})
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights"):
        load_forecaster(path)
    eulerian = _saved(tmp_path / "e", frame="eulerian")
    update_metadata(eulerian, change_weights=ChangeWeights.constant(1.0, 1.0, 6).to_metadata())
    with pytest.raises(CheckpointError, match="are for Lagrangian models"):
        load_forecaster(eulerian)


def test_a_forecaster_without_weights_applies_the_network_as_trained():
    fc = forecaster()
    assert isinstance(fc, Forecaster) and fc.change_weights is None
    fc._raw_changes = _signed_changes
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(fc._changes(x, 3), _signed_changes(x, 3))


# ------------------------------------------------------------------ the bootstrap of "no worse at any lead"
def test_counts_give_the_csi_of_the_scores_everywhere_else():
    from nowcast.models.skill import LeadScores, csi_counts, csi_from_counts

    rng = np.random.default_rng(0)
    scores, counts = LeadScores(3), []
    for _ in range(4):
        obs = rng.gamma(0.6, 3.0, (3, 16, 16))
        pred = obs * rng.uniform(0.5, 1.5, obs.shape)
        pred[:, :3, :3] = np.nan
        obs[1, 5, 5] = np.nan
        scores.add(pred, obs)
        counts.append(csi_counts(pred, obs, (1.0, 5.0)))
    result = scores.result()
    csi = csi_from_counts(np.sum(counts, axis=0))
    np.testing.assert_allclose(csi[:, 0], result["csi@1"])
    np.testing.assert_allclose(csi[:, 1], result["csi@5"])


def test_rain_exactly_at_the_threshold_is_not_rain():
    from nowcast.models.skill import csi_counts

    obs = np.array([[[1.0, 1.0001, 0.0]]])
    pred = np.array([[[1.0001, 1.0, 2.0]]])
    assert csi_counts(pred, obs, (1.0,))[0, 0].tolist() == [0, 1, 2]  # hits, misses, false alarms


def test_bootstrap_pairs_the_forecasts():
    from nowcast.models.skill import bootstrap_csi_difference

    rng = np.random.default_rng(1)
    ref = rng.integers(1, 50, (20, 4, 2, 3))
    diff, resampled = bootstrap_csi_difference(ref, ref.copy(), samples=50)
    assert not np.any(diff) and not np.any(resampled)
    better = ref.copy()
    better[..., 0] += 5  # more hits in every forecast: better in every resample, whichever forecasts it draws
    diff, resampled = bootstrap_csi_difference(better, ref, samples=200)
    assert np.all(diff > 0) and np.all(resampled > 0)
    with pytest.raises(ValueError, match="paired"):
        bootstrap_csi_difference(better[:5], ref)


def test_bootstrap_report_names_the_leads_worse_beyond_doubt():
    from benchmarks.heldout_skill import bootstrap_summary, bootstrap_table

    rng = np.random.default_rng(2)
    ref = rng.integers(20, 40, (30, 3, 2, 3))
    model = ref.copy()
    model[:, 1, 1, 0] -= 10  # lead 2 at 5 mm/h: fewer hits in every forecast
    model[:, 1, 1, 1] += 10
    model[:, 2, 0, 2] += np.tile([-3, 3], 15)  # lead 3 at 1 mm/h: noise in both directions, none on average
    summary = bootstrap_summary(model, ref, 500)
    assert summary["worse"] == [(2, 5.0)]
    assert summary["worst"]["lead"] == 2 and summary["worst"]["threshold"] == 5.0
    assert summary["worst"]["high"] < 0 < summary["high"][2][0]
    row = bootstrap_table({"set": {"m": summary}}).splitlines()[-1]
    assert "| 10 min @5 |" in row and row.endswith("| 0 of 6 |")


# ------------------------------------------------------------------ in the pipeline and the CLI
def _store(path, seqs: np.ndarray):
    import xarray as xr

    xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), seqs)}).to_zarr(path)
    return path


def _validation(tmp_path, n=3, frames=10):
    rng = np.random.default_rng(4)
    seqs = np.stack([moving_window(shape=(32, 32), frames=frames, u=u, v=v) for u, v in rng.uniform(-1.5, 1.5, (n, 2))])
    return _store(tmp_path / "val.zarr", seqs)


def test_pipeline_stores_the_chosen_weights_with_how_they_were_chosen(tmp_path):
    from pipelines.pretrain import calibrate_target

    path = _saved(tmp_path)
    store = _validation(tmp_path)
    entry = calibrate_target(path, 2, stores=[store], command="test")
    fc = load_forecaster(path)
    assert fc.change_weights == ChangeWeights.from_metadata(entry)
    assert len(fc.change_weights.growth) == 6  # the model's output frames
    assert entry["validation"] == ["val.zarr"] and entry["sequences"] == {"val.zarr": 2} and entry["command"] == "test"
    assert entry["worst_lead_difference"] >= entry["network_worst_lead_difference"] - 1e-12
    assert calibrate_target(_saved(tmp_path / "e", frame="eulerian"), 2, stores=[store]) is None


def test_unreadable_or_short_validation_stores_are_named(tmp_path):
    from nowcast.errors import InputFileError
    from pipelines.validation import read_validation

    store = _validation(tmp_path, frames=10)
    assert read_validation([store], 2, 10)["val.zarr"].shape == (2, 10, 32, 32)
    with pytest.raises(InputFileError, match="val.zarr: validation sequences of 10 frames, 11 needed"):
        read_validation([store], 2, 11)
    with pytest.raises(InputFileError, match="missing.zarr: not a readable validation store"):
        read_validation([tmp_path / "missing.zarr"], 2, 10)


def test_validation_sets_never_include_training_sequences(tmp_path, monkeypatch):
    from nowcast.data import testcases
    from pipelines import validation

    made = []
    monkeypatch.setattr(validation, "known_motion_validation", lambda folder: made.append(folder) or [folder / "k.zarr"])
    monkeypatch.setattr(validation, "other_day_validation",
                        lambda path, domain, sequences: made.append(path) or path)
    train = tmp_path / "swiss-south-train.zarr"
    with_val = lagrangian_config(data={**lagrangian_config().data.model_dump(mode="json"), "path": str(train),
                                       "val_path": str(tmp_path / "v.zarr"), "domain": testcases.REGION})
    assert [p.name for p in validation.validation_stores(with_val)] == ["v.zarr", "k.zarr", "swiss-south-otherday.zarr"]
    assert made[-1].parent == tmp_path / "val-known"
    without = lagrangian_config(data={**lagrangian_config().data.model_dump(mode="json"), "path": str(train),
                                      "val_path": None, "domain": "elsewhere"})
    assert [p.name for p in validation.validation_stores(without)] == ["elsewhere-otherday.zarr"]


def test_cli_calibrates_and_marks_a_stale_skill(tmp_path, capsys):
    from nowcast.cli import main

    path = _saved(tmp_path)
    update_metadata(path, heldout_skill={"test_set": "x", "lead_minutes": [5]})
    store = _validation(tmp_path)
    assert main(["models", "calibrate", str(path), "--validation", str(store), "--sequences", "2"]) == 0
    assert "network growth x" in capsys.readouterr().out
    meta = load_checkpoint(path).metadata
    assert meta["change_weights"]["command"].startswith(f"nowcast models calibrate {path} --validation")
    assert meta["heldout_skill"] is None  # measured without the weights, and no held-out store here to measure again


def test_cli_full_disk_is_the_machines_fault(tmp_path, monkeypatch, capsys):
    from nowcast.cli import main
    from nowcast.errors import EXIT_ENVIRONMENT
    from nowcast.models import skill

    path = _saved(tmp_path)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(skill, "update_metadata", full)
    code = main(["models", "calibrate", str(path), "--validation", str(_validation(tmp_path)), "--sequences", "2"])
    assert code == EXIT_ENVIRONMENT
    assert "No space left on device" in capsys.readouterr().err
    assert path.read_bytes() == before  # the checkpoint is untouched


def test_cli_refuses_a_model_it_cannot_calibrate(tmp_path, capsys):
    from nowcast.cli import main

    path = _saved(tmp_path, frame="eulerian")
    assert main(["models", "calibrate", str(path), "--validation", str(_validation(tmp_path))]) == 2
    assert "not a Lagrangian rain model" in capsys.readouterr().out


def test_cross_validation_scores_each_half_s_choice_on_the_other_half():
    from benchmarks.change_calibration import cross_validate
    from nowcast.models.calibration import calibrate, candidates, summarise

    rng = np.random.default_rng(5)
    seqs = np.stack([moving_window(shape=(32, 32), frames=16, u=u, v=v) for u, v in rng.uniform(-1.5, 1.5, (4, 2))])
    fc = forecaster()
    fc._raw_changes = _signed_changes
    keys = candidates((0.0, 0.5, 1.0), (0.0, 0.5), lifetimes=(3.0,))  # a small grid: the full one takes a minute here
    rows = cross_validate(fc, {"s": seqs}, keys).splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| even", "| odd"]
    weights, summaries, _, _ = calibrate(fc, {"s": seqs[0::2]}, keys=keys)
    _, _, grid, refs = calibrate(fc, {"s": seqs[1::2]}, keys=keys)
    key = weights.key(0)
    assert (f"| {' / '.join(f'{w:g}' for w in key)} | {summaries[key]['worst']:+.4f} | "
            f"{summarise(grid[key], refs)['worst']:+.4f} |") in rows[0]


def test_training_a_lagrangian_forecaster_alone_points_to_its_calibration():
    from nowcast.commands.train import calibration_hint

    assert calibration_hint(lagrangian_config(), "m.pt").startswith("next: nowcast models calibrate m.pt")
    assert calibration_hint(lagrangian_config(frame="eulerian"), "m.pt") is None
    assert calibration_hint(lagrangian_config(role="source"), "m.pt") is None


# ------------------------------------------------------------------ the window's own trend (thirteenth round)
def growing_sequences(n: int = 6, frames: int = 10, db_per_step: float = 1.0, seed: int = 0) -> np.ndarray:
    """Moving fields whose rain grows steadily in dB, before and after the analysis (a lasting trend)."""
    rng = np.random.default_rng(seed)
    out = []
    for u, v in rng.uniform(-1.0, 1.0, (n, 2)):
        seq = moving_window(shape=(48, 56), frames=frames, u=u, v=v)
        growth = 10.0 ** (0.1 * db_per_step * (np.arange(frames) - 3))[:, None, None]
        out.append((seq * growth * 0.4).astype(np.float32))
    return np.stack(out)


def test_trend_ramp_is_the_lagrangian_trend_baselines_damping():
    from nowcast.baselines import TREND_DAMPING_STEPS
    from nowcast.models.calibration import trend_ramp

    ramp = trend_ramp(12)
    assert ramp[0] == pytest.approx(TREND_DAMPING_STEPS * (1 - np.exp(-1 / TREND_DAMPING_STEPS)))
    assert np.all(np.diff(ramp) > 0) and ramp[-1] < TREND_DAMPING_STEPS  # grows, but less than linearly
    assert ramp[-1] == pytest.approx(6.0 * (1 - np.exp(-2.0)))


def test_trend_weights_add_the_ramped_rate_per_lead():
    from nowcast.models.calibration import trend_ramp

    change = np.array([[[1.0, -2.0]], [[3.0, -4.0]], [[5.0, -6.0]]])
    rate = np.array([[0.1, -0.2]])
    weights = ChangeWeights((1.0, 1.0), (0.5, 0.5), (0.0, 2.0))
    ramp = trend_ramp(3)
    expected = np.where(change > 0, change, 0.5 * change) + (np.array([0.0, 2.0, 2.0]) * ramp)[:, None, None] * rate
    np.testing.assert_allclose(weights.apply(change, rate), expected)
    with pytest.raises(ValueError, match="pass its rate"):
        weights.apply(change)
    with pytest.raises(ValueError, match="shape"):
        weights.apply(change, np.zeros((2, 2)))
    # without trend weights the rate is not needed and changes nothing
    np.testing.assert_array_equal(ChangeWeights((1.0,), (0.5,)).apply(change, rate), ChangeWeights((1.0,), (0.5,)).apply(change))


@pytest.mark.parametrize("trend, power", [((-0.25,), 4.0), ((4.5,), 4.0), ((0.5, 0.5), 4.0), ((0.5,), -1.0),
                                          ((0.5,), float("nan"))])
def test_impossible_trend_weights_are_refused(trend, power):
    with pytest.raises(ValueError):
        ChangeWeights((1.0,), (1.0,), trend, power)


def test_weights_calibrated_before_the_trend_add_none_and_new_ones_round_trip():
    old = ChangeWeights.from_metadata({"growth": [0.25, 0.25], "decay": [0.0, 0.0]})  # the twelfth round's entry
    assert old.trend == (0.0, 0.0) and not old.uses_trend
    assert old.brief() == "network growth x0.25, decay x0 at every lead"
    new = ChangeWeights.constant(0.25, 0.0, 3, trend=0.5, trend_linearity_power=2.0)
    assert ChangeWeights.from_metadata(new.to_metadata(command="x")) == new
    assert new.brief() == "network growth x0.25, decay x0, window trend (R^2-weighted) x0.5 at every lead"
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights"):
        ChangeWeights.from_metadata({"growth": [1.0], "decay": [1.0], "trend": [1.0, 1.0]}, "m.pt")


def test_window_trend_reads_a_steady_growth_and_not_a_zigzag():
    from nowcast.models.calibration import window_trend

    base = np.zeros((4, 16, 16), dtype=np.float32)
    base[:, 4:12, 4:12] = 1.0
    steady = base + np.arange(4, dtype=np.float32)[:, None, None] * 0.05 * (base > 0)
    zigzag = base + np.array([0.0, 0.1, 0.0, 0.1], dtype=np.float32)[:, None, None] * (base > 0)
    assert window_trend(steady)[8, 8] == pytest.approx(0.05, rel=1e-3)
    assert abs(window_trend(zigzag)[8, 8]) < 0.05 * abs(window_trend(zigzag, 0.0)[8, 8])  # R^4 damps it
    assert window_trend(steady)[0, 0] == 0.0  # dry at the analysis: no trend


def test_trend_weight_beats_extrapolation_on_a_lasting_growth_and_keeps_a_steady_field():
    """A forecasting method's skill test: on held-out growing fields the trend adds heavy-rain skill."""
    fc = forecaster()  # untrained: no network change, so the trend is all that differs from extrapolation
    seqs = growing_sequences()
    fc.change_weights = ChangeWeights.constant(0.0, 0.0, 6, trend=1.0)
    with_trend = score_method(fc.predict, seqs, 4, 6)
    ref = score_method(extrapolation, seqs, 4, 6)
    assert np.nanmean(with_trend["csi@5"]) > np.nanmean(ref["csi@5"]) + 0.05
    assert np.all(np.asarray(with_trend["csi@1"]) >= np.asarray(ref["csi@1"]) - 1e-9)
    steady = growing_sequences(db_per_step=0.0)
    kept, ref = score_method(fc.predict, steady, 4, 6), score_method(extrapolation, steady, 4, 6)
    for key in ("csi@1", "csi@5"):  # a field that neither grows nor decays: no worse than extrapolation at any lead
        assert np.all(np.asarray(kept[key]) >= np.asarray(ref[key]) - 1e-9)
        np.testing.assert_allclose(kept[key], ref[key], atol=0.03)


def test_cross_validation_and_grid_carry_the_trend():
    fc = forecaster()
    seqs = growing_sequences(n=3)
    grid = score_grid(fc._raw_changes, fc.normaliser, {"g": seqs}, 4, 6, keys=[(0.0, 0.0, 0.0), (0.0, 0.0, 1.0)])
    trend, none = as_candidate((0.0, 0.0, 1.0)), as_candidate((0.0, 0.0, 0.0))
    assert np.nanmean(grid[trend]["g"]["csi@5"]) > np.nanmean(grid[none]["g"]["csi@5"])


def test_the_trend_is_read_on_the_whole_region_not_per_tile():
    fc = forecaster()  # untrained: tiles change nothing in the network's (zero) change
    fc.change_weights = ChangeWeights.constant(0.0, 0.0, 6, trend=1.0)
    window = np.tile(growing_sequences(n=1)[0, :4], (1, 2, 2))
    whole = fc.predict_region(window, 6, tile=None)
    np.testing.assert_array_equal(np.nan_to_num(fc.predict_region(window, 6, tile=48, overlap=16), nan=-1),
                                  np.nan_to_num(whole, nan=-1))


def test_the_candidates_and_the_earlier_rounds_grids():
    from nowcast.models.calibration import (
        EXTRAPOLATION,
        GRID,
        NETWORK,
        NETWORK_GRID,
        TREND_FORMS,
        TREND_GRID,
        TREND_LIFETIMES,
        candidates,
    )

    keys = candidates()
    with_trend = (len(TREND_GRID) - 1) * len(TREND_FORMS) * len(TREND_LIFETIMES)
    assert len(keys) == len(set(keys)) == len(NETWORK_GRID) ** 2 * (1 + with_trend) == 625
    assert EXTRAPOLATION in keys and NETWORK in keys
    assert (0.0, 0.5, 0.25, 0.25, 6.0) in keys and (0.0, 0.0, 0.25, 0.0, 12.0) in keys
    assert all(td in (0.0, t) for _, _, t, td, _ in keys)  # signed or growth only
    thirteenth = candidates(GRID, TREND_GRID, ["signed"], [6.0])
    assert thirteenth == [as_candidate(k) for k in thirteenth] and len(thirteenth) == 245
    pairs = candidates(GRID, [0.0])
    assert len(pairs) == 49 and all(k[2:4] == (0.0, 0.0) for k in pairs)
    with pytest.raises(ValueError, match="trend form"):
        candidates(forms=["decay"])
    with pytest.raises(ValueError, match="candidate"):
        as_candidate((1.0,))


def test_the_trends_growth_and_decay_take_their_own_weights_and_lifetime():
    from nowcast.models.calibration import trend_ramp

    change = np.zeros((3, 1, 2))
    rate = np.array([[0.1, -0.2]])
    growth_only = ChangeWeights.constant(0.0, 0.0, 3, trend=1.0, trend_decay=0.0, trend_lifetime=3.0)
    ramp = trend_ramp(3, 3.0)
    np.testing.assert_allclose(growth_only.apply(change, rate)[:, 0, 0], ramp * 0.1)
    np.testing.assert_array_equal(growth_only.apply(change, rate)[:, 0, 1], 0.0)  # no decay of the trend
    decay_only = ChangeWeights.constant(0.0, 0.0, 3, trend=0.0, trend_decay=0.5)
    assert decay_only.uses_trend
    np.testing.assert_allclose(decay_only.apply(change, rate)[:, 0], np.stack([0 * ramp, -0.1 * trend_ramp(3)], 1))
    # a shorter lifetime continues less of the same rate at every lead, and the difference grows with lead
    short, long = (ChangeWeights.constant(0, 0, 12, trend=1.0, trend_lifetime=t).apply(np.zeros((12, 1, 1)), np.ones((1, 1)))
                   for t in (3.0, 12.0))
    assert np.all(short < long) and np.all(np.diff((long - short).ravel()) > 0)
    assert trend_ramp(12)[5] == pytest.approx(ChangeWeights.constant(0, 0, 12, trend=1.0).apply(
        np.zeros((12, 1, 1)), np.ones((1, 1)))[5, 0, 0])  # default lifetime: the baseline's 6 steps
    with pytest.raises(ValueError, match="lifetime"):
        trend_ramp(3, 0.0)


@pytest.mark.parametrize("lifetime", [0.0, -3.0, float("inf"), float("nan")])
def test_impossible_trend_lifetimes_are_refused(lifetime):
    with pytest.raises(ValueError, match="trend_lifetime"):
        ChangeWeights.constant(0.0, 0.0, 2, trend=0.5, trend_lifetime=lifetime)
    with pytest.raises(CheckpointError, match="m.pt: invalid change_weights"):
        ChangeWeights.from_metadata({"growth": [0.0], "decay": [0.0], "trend": [0.5], "trend_lifetime_steps": lifetime},
                                    "m.pt")


def test_thirteenth_round_entries_load_as_the_signed_trend_and_new_ones_round_trip():
    old = ChangeWeights.from_metadata({"growth": [0.0], "decay": [0.5], "trend": [0.25], "trend_linearity_power": 4.0})
    assert old.trend_decay == (0.25,) and old.trend_lifetime == 6.0
    assert old.brief() == "network growth x0, decay x0.5, window trend (R^4-weighted) x0.25 at every lead"
    new = ChangeWeights.constant(0.0, 0.25, 2, trend=0.5, trend_decay=0.0, trend_lifetime=12.0)
    assert ChangeWeights.from_metadata(new.to_metadata(command="x")) == new
    assert new.brief() == ("network growth x0, decay x0.25, window trend (R^4-weighted, lifetime 12 steps) x0.5 "
                           "where it grows, x0 where it decays at every lead")
    with pytest.raises(CheckpointError, match="m.pt"):
        ChangeWeights.from_metadata({"growth": [0.0], "decay": [0.0], "trend": [0.5], "trend_decay": [0.5, 0.5]}, "m.pt")


def test_growth_only_trend_keeps_a_decaying_field_as_extrapolation_does():
    """A skill test: where the window decays steadily, the signed trend removes rain, the growth part alone does not."""
    fc = forecaster()  # untrained: the trend is all that differs from extrapolation
    decaying = growing_sequences(db_per_step=-1.0)
    ref = score_method(extrapolation, decaying, 4, 6)
    fc.change_weights = ChangeWeights.constant(0.0, 0.0, 6, trend=1.0, trend_decay=0.0)
    growth_only = score_method(fc.predict, decaying, 4, 6)
    for key in ("csi@1", "csi@5"):
        np.testing.assert_allclose(growth_only[key], ref[key], atol=0.02, equal_nan=True)
    fc.change_weights = ChangeWeights.constant(0.0, 0.0, 6, trend=1.0)  # signed: the decay reaches the forecast
    signed = score_method(fc.predict, decaying, 4, 6)
    assert np.nanmean(signed["csi@1"]) > np.nanmean(ref["csi@1"]) + 0.02  # and on a lasting decay it is right to


def test_calibration_benchmark_refuses_a_trend_grid_without_the_network(capsys):
    from benchmarks.change_calibration import main

    with pytest.raises(SystemExit) as exc:
        main(["m.pt", "--trend-weights", "0.5"])
    assert exc.value.code == 2 and "must include 0" in capsys.readouterr().err


def test_the_history_experiments_four_frame_predictor_is_the_forecasters_own():
    """benchmarks/trend_history.py: with a 4-frame history its predictor must be what predict() forecasts."""
    from benchmarks.trend_history import predictor

    fc = forecaster()
    fc._raw_changes = _signed_changes
    fc.change_weights = ChangeWeights.constant(0.5, 0.25, 3, trend=0.5, trend_decay=0.0, trend_lifetime=3.0)
    window = growing_sequences(n=1, frames=8)[0]
    np.testing.assert_array_equal(np.nan_to_num(predictor(fc, fc.change_weights, 4)(window, 3), nan=-1),
                                  np.nan_to_num(fc.predict(window[-4:], 3), nan=-1))
    longer = predictor(fc, fc.change_weights, 8)(window, 3)  # the trend over 8 frames: another forecast
    assert longer.shape == (3, *window.shape[1:]) and not np.array_equal(np.nan_to_num(longer), np.nan_to_num(
        fc.predict(window[-4:], 3)))


def test_rule_cv_counts_reproduce_the_grid_and_its_rules_the_calibrations():
    """benchmarks/rule_cv.py: summaries from per-sequence counts are the grid's; its rules 13/14 are choose_weights'."""
    from benchmarks import rule_cv
    from nowcast.models.calibration import EXTRAPOLATION, candidates, summarise

    rng = np.random.default_rng(7)
    seqs = {"swiss-south-growth-64.zarr": growing_sequences(n=4, frames=10),
            "other": np.stack([moving_window(shape=(32, 32), frames=10, u=u, v=v) for u, v in rng.uniform(-1, 1, (3, 2))])}
    fc = forecaster()
    fc._raw_changes = _signed_changes
    keys = candidates((0.0, 0.5, 1.0), (0.0, 0.5), lifetimes=(3.0, 12.0))
    per: dict = {}
    grid = score_grid(fc._raw_changes, fc.normaliser, seqs, 4, 6, keys=keys, per_sequence=per)
    data = {"keys": np.asarray(keys), "counts": {s: v["counts"] for s, v in per.items()},
            "change": {s: v["change"] for s, v in per.items()}}
    ext = keys.index(EXTRAPOLATION)
    everything = {s: np.arange(len(v)) for s, v in seqs.items()}
    s = rule_cv.summaries(data, everything, ext)
    references = {name: {t: grid[EXTRAPOLATION][name][t] for t in ("csi@1", "csi@5")} for name in seqs}
    for k, key in enumerate(keys):
        expected = summarise(grid[key], references)
        assert s["worst"][k] == pytest.approx(expected["worst"], abs=1e-9)
        assert s["csi5"][k] == pytest.approx(expected["csi5"], abs=1e-9, nan_ok=True)
        assert s["change"][k] == pytest.approx(expected["change"], rel=1e-9, abs=1e-12)
    others = np.asarray([k for k in range(len(keys)) if k != ext])
    for rule, tie_break in (("13: ties to CSI@5", "csi5"), ("14: two-stage, least change", "csi5-then-least-change"),
                            ("least change within the tie", "least-change")):
        chosen, _ = choose_weights(grid, references, 6, tie_break)
        assert keys[rule_cv.choose(s, data["keys"], others, rule)] == chosen.key(0)
    results = rule_cv.cross_validate(data, splits=3)
    assert set(results) == set(rule_cv.RULES) and all(len(r["worst"]) == 6 for r in results.values())
    assert rule_cv.meta_choice(results) in rule_cv.RULES


def test_rule_cv_meta_rule_ties_within_its_tolerance_only():
    from benchmarks.rule_cv import META_TIE, meta_choice

    results = {"a": {"worst": [-0.010], "growth": [0.05]}, "b": {"worst": [-0.010 - META_TIE], "growth": [0.09]}}
    assert meta_choice(results) == "b"  # exactly at the tolerance: tied, and more growth
    results["b"]["worst"] = [-0.010 - META_TIE - 1e-4]
    assert meta_choice(results) == "a"  # beyond it: the better worst lead wins


def test_zero_network_weights_do_not_run_the_network_and_forecast_the_same():
    fc = forecaster()
    fc._raw_changes = _signed_changes
    window = growing_sequences(n=1, frames=4)[0]
    fc.change_weights = ChangeWeights.constant(0.0, 0.0, 3, trend=0.25, trend_decay=0.0, trend_lifetime=3.0)
    assert not fc.change_weights.uses_network and ChangeWeights.constant(0.0, 0.25, 3).uses_network
    calls = []
    fc._raw_changes = lambda x, leads: (calls.append(1), _signed_changes(x, leads))[1]
    skipped = fc.predict(window, 3)
    assert calls == []
    fc.change_weights = ChangeWeights.constant(1e-12, 0.0, 3, trend=0.25, trend_decay=0.0, trend_lifetime=3.0)
    run = fc.predict(window, 3)  # the network run, and weighed by (almost) nothing: the same forecast
    assert calls and np.allclose(np.nan_to_num(run), np.nan_to_num(skipped), atol=1e-6)


def test_a_network_reading_more_frames_is_calibrated_against_extrapolation_from_its_motion_frames():
    """motion.frames (thirty-sixth round): the references and every candidate read the motion over the same newest frames."""
    from nowcast.models.calibration import calibrate, candidates, summarise
    from tests.test_lagrangian import _longer_window_config

    rng = np.random.default_rng(3)
    seqs = []
    for u, v in rng.uniform(-1.5, 1.5, (3, 2)):
        seq = moving_window(shape=(32, 32), frames=12, u=u, v=v)
        seq[:2] = np.roll(seq[:2], 5, axis=2)  # the two oldest frames move otherwise: a 6-frame motion differs
        seqs.append(seq)
    fc = forecaster(_longer_window_config(motion_frames=4))  # reads 6 frames, untrained: extrapolation from 4
    keys = candidates((0.0, 1.0), (0.0,), lifetimes=(3.0,))
    _, _, grid, refs = calibrate(fc, {"s": np.stack(seqs)}, leads=6, keys=keys)
    assert all(summarise(grid[k], refs)["worst"] == 0.0 for k in keys)  # no change: exactly its reference
