"""The selection rules of benchmarks/bias_selection.py, fixed before the runs they judge."""

from __future__ import annotations

import pytest

from benchmarks.bias_selection import TIE, choose, choose_smallest


def _runs(*worst: float, csi5: float = 0.3) -> list[dict[str, float]]:
    return [{"worst": w, "csi5": csi5} for w in worst]


def test_weight_rule_takes_the_best_mean_worst_lead_and_breaks_ties_by_csi5():
    assert choose({0.0: _runs(-0.02, -0.01), 0.1: _runs(-0.005, -0.005)}) == 0.1
    # within the tie: the larger CSI@5 wins even with a slightly worse worst lead
    assert choose({0.03: _runs(-0.006, csi5=0.35), 0.1: _runs(-0.004, csi5=0.34)}) == 0.03
    # outside it: the worst lead decides
    assert choose({0.03: _runs(-0.006 - 2 * TIE, csi5=0.35), 0.1: _runs(-0.004, csi5=0.34)}) == 0.1


def test_kernel_rule_prefers_the_smaller_kernel_only_within_the_tie():
    assert choose_smallest({5: _runs(-0.006, -0.003), 3: _runs(-0.006, -0.003)}) == 3  # equal: speed wins
    assert choose_smallest({5: _runs(-0.004), 3: _runs(-0.004 - TIE / 2)}) == 3
    assert choose_smallest({5: _runs(-0.004), 3: _runs(-0.004 - 2 * TIE)}) == 5
    assert choose_smallest({5: _runs(-0.010), 3: _runs(-0.002)}) == 3  # better and faster
    # the same rule whichever is the recipe: a larger kernel must be better by more than the tie
    assert choose_smallest({3: _runs(-0.010), 5: _runs(-0.010 + TIE / 2)}) == 3
    assert choose_smallest({3: _runs(-0.010), 5: _runs(-0.010 + 2 * TIE)}) == 5
    with pytest.raises(ValueError, match="no kernel"):
        choose_smallest({})


def test_rotation_candidates_are_named_apart_from_the_recipe():
    from benchmarks.bias_selection import candidate_config

    recipe = candidate_config(0.03, 0, 2000, "fp32")
    same = candidate_config(0.03, 0, 2000, "fp32", rotation=recipe.training.persistent_rotation_deg)
    other = candidate_config(0.03, 0, 2000, "fp32", rotation=0)
    assert same.checkpoint == recipe.checkpoint and "-rot" not in recipe.checkpoint
    assert other.training.persistent_rotation_deg == 0.0
    assert "-rot0-" in other.checkpoint and other.checkpoint != recipe.checkpoint
    assert other.training.area_bias_weight == recipe.training.area_bias_weight == 0.03


def test_known_motion_validation_uses_its_own_seed_and_is_made_once(tmp_path, monkeypatch):
    import inspect

    from benchmarks import bias_selection
    from nowcast.data import testcases

    # the test sets are seed 0 (make_test_sets' default): validation must draw other motions
    assert bias_selection.KNOWN_MOTION_SEED != inspect.signature(testcases.make_test_sets).parameters["seed"].default
    calls = []

    def fake_make(folder, seed, frames=16):
        assert frames == 16  # the validation twins' length: 4 inputs, 12 leads
        calls.append(seed)
        for name in ("swiss-south-rigid-64.zarr", "swiss-south-growth-64.zarr"):
            (folder / name).mkdir(parents=True)

    monkeypatch.setattr(testcases, "make_test_sets", fake_make)
    stores = bias_selection.known_motion_validation(tmp_path, seed=bias_selection.KNOWN_MOTION_SEED)
    assert [p.name for p in stores] == ["swiss-south-rigid-64.zarr", "swiss-south-growth-64.zarr"]
    assert bias_selection.known_motion_validation(tmp_path, seed=bias_selection.KNOWN_MOTION_SEED) == stores
    assert calls == [bias_selection.KNOWN_MOTION_SEED]  # made once, then reused


def test_history_only_removes_what_does_not_depend_on_the_window():
    import numpy as np

    from benchmarks.heldout_skill import history_only

    class Static:
        """A change of +0.5 everywhere (a static correction) plus the window's last-minus-first."""

        def _changes(self, x, leads):
            return np.full((leads, *x.shape[1:]), 0.5) + (x[-1] - x[0])[None]

    model = Static()
    view = history_only(model)
    x = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(view._changes(x, 3), np.broadcast_to(x[-1] - x[0], (3, 8, 8)), atol=1e-6)
    frozen = np.repeat(x[-1:], 4, axis=0)
    assert np.abs(view._changes(frozen, 3)).max() == 0.0  # no history: exactly extrapolation
    np.testing.assert_allclose(model._changes(frozen, 3), 0.5)  # the model itself is untouched


def test_history_predictability_sees_a_persisting_trend_and_not_noise():
    import numpy as np

    from benchmarks.history_predictability import block_means, predictability

    rng = np.random.default_rng(0)
    rate = rng.normal(0.0, 1.0, 5000)  # dB per step, a different trend per cell
    persisting = predictability(3 * rate, 6 * rate, 12 * rate)  # 4 inputs, +30 and +60 min
    assert persisting["corr_60"] > 0.999 and abs(persisting["slope_60"] - 4.0) < 1e-6
    noise = predictability(rng.normal(size=5000), rng.normal(size=5000), rng.normal(size=5000))
    assert abs(noise["corr_60"]) < 0.05 and abs(noise["slope_60"]) < 0.1
    field = np.arange(36.0).reshape(6, 6)
    np.testing.assert_allclose(block_means(field, 2), [[3.5, 5.5, 7.5], [15.5, 17.5, 19.5], [27.5, 29.5, 31.5]])
    assert block_means(np.ones((7, 9)), 4).shape == (1, 2)  # a ragged edge is dropped


@pytest.mark.parametrize("argv", [
    ["--candidates-only", "--score-only", "--candidate", "shipped", "a.pt"],  # nothing to choose against
    ["--candidates-only", "--candidate", "shipped", "a.pt", "--candidate", "new", "b.pt"],  # would train the grid
])
def test_candidates_only_needs_two_candidates_and_scoring_alone(argv):
    from benchmarks.bias_selection import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_fresh_test_stores_use_unused_seeds_and_are_made_once(tmp_path):
    """Fresh test sets: the four kinds of test set, drawn with a seed no test set or twin used."""
    import xarray as xr

    from pipelines.validation import USED_SEEDS, fresh_test_stores

    for used in USED_SEEDS:
        with pytest.raises(ValueError, match=f"seed {used}"):
            fresh_test_stores(tmp_path, used)
    stores = fresh_test_stores(tmp_path, 2, day_sequences=2, known_motion_cases=4)
    assert [p.name for p in stores] == ["swiss-south-sameday-s2.zarr", "swiss-south-test-s2.zarr",
                                        "swiss-south-growth-64-s2.zarr", "swiss-south-rigid-64-s2.zarr"]
    with xr.open_zarr(stores[0]) as same, xr.open_zarr(stores[1]) as other:
        assert same.attrs["rng_seed"] == 90_002 and same.attrs["split"] == "train"  # the same-day set is 90_001
        assert other.attrs["rng_seed"] == 2 and other.attrs["split"] == "test"
        assert same.sizes["sequence"] == other.sizes["sequence"] == 2 and same.sizes["time"] == 16
    with xr.open_zarr(stores[2]) as growth:
        assert growth.sizes["y"] == growth.sizes["x"] == 64 and growth.sizes["time"] == 16
    stamps = [p.stat().st_mtime_ns for p in stores]
    assert fresh_test_stores(tmp_path, 2, day_sequences=2, known_motion_cases=4) == stores
    assert [p.stat().st_mtime_ns for p in stores] == stamps  # made once, then reused
