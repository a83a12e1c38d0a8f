"""One implementation of the per-lead deterministic scores, with one default threshold set.

``nowcast verify`` (one forecast), ``nowcast hindcast`` (a period) and the
held-out skill recorded in checkpoints (``nowcast.models.skill``, also the
studies') used to accumulate CSI, FSS and MSE in two classes with different
default thresholds (0.5/1/5/10 vs 0.5/1/2/5/10 mm/h): a "CSI" could mean two
things. These tests pin that all three go through
:class:`nowcast.verify.DeterministicScores` with :data:`nowcast.verify.THRESHOLDS`.
"""

from __future__ import annotations

import numpy as np
import pytest

N_IN, LEADS = 4, 6


@pytest.fixture(scope="module")
def case(swiss_south_moving):
    """Persistence of the real MeteoSwiss field moving on the swiss-south grid, and what was observed."""
    import xarray as xr

    from nowcast.products import make_forecast_dataset

    frames, times, region = swiss_south_moving(N_IN + LEADS)
    observed = xr.DataArray(frames, dims=("time", "y", "x"), coords={"time": times, **region.grid.coords()},
                            name="rain_rate", attrs={"units": "mm h-1"})
    pred = np.repeat(frames[N_IN - 1 : N_IN], LEADS, axis=0)
    pred[:, :20, :] = np.nan  # no forecast in the north: scored nowhere
    product = make_forecast_dataset(pred, region.grid, times[N_IN - 1], 5, region="swiss-south", method="persistence",
                                    input_times=[str(t) for t in times[:N_IN]])
    return product, observed, pred, frames[N_IN:], region


def test_one_default_threshold_set():
    """The held-out skill, the hindcast and nowcast verify report the same thresholds by default."""
    import inspect

    from nowcast.hindcast import score_window
    from nowcast.models.skill import LeadScores
    from nowcast.verify import THRESHOLDS, DeterministicScores, verify_forecast

    assert THRESHOLDS == (0.5, 1.0, 2.0, 5.0, 10.0)  # docs/guide/maps-and-scores.md, docs/guide/hindcast.md
    assert LeadScores(2).thresholds == DeterministicScores(2).thresholds == THRESHOLDS
    assert inspect.signature(verify_forecast).parameters["thresholds"].default == THRESHOLDS
    assert inspect.signature(score_window).parameters["thresholds"].default == THRESHOLDS
    assert [k for k in LeadScores(2).result() if k.startswith("csi@")] == [f"csi@{t:g}" for t in THRESHOLDS]


def test_skill_scores_are_those_of_nowcast_verify(case):
    """The same forecast scored for a checkpoint's held-out skill and by ``nowcast verify`` gives the same numbers."""
    from nowcast.models.skill import LeadScores
    from nowcast.verify import verify_forecast

    product, observed, pred, truth, region = case
    verified = verify_forecast(product, observed)
    skill = LeadScores(LEADS, resolution_km=region.resolution / 1000.0)
    skill.add(pred, truth)
    named = skill.result()
    for j, thr in enumerate(verified["threshold"].values):
        np.testing.assert_array_equal(named[f"csi@{thr:g}"], verified["csi"].values[:, j], err_msg=f"csi@{thr:g}")
    for k, km in enumerate(verified["scale"].values):
        np.testing.assert_array_equal(named[f"fss@{km:g}km"], verified["fss"].values[:, k], err_msg=f"fss@{km:g}km")
    np.testing.assert_array_equal(named["mse"], verified["mse"].values)
    np.testing.assert_array_equal(named["mae"], verified["mae"].values)


def test_one_accumulator_class():
    """skill.LeadScores is a view of verify.DeterministicScores; the hindcast has no accumulator of its own."""
    import nowcast.hindcast as hc
    from nowcast.models.skill import LeadScores
    from nowcast.verify import DeterministicScores

    assert isinstance(LeadScores(3).scores, DeterministicScores)
    assert not [name for name, obj in vars(hc).items()
                if isinstance(obj, type) and obj.__module__ == hc.__name__ and hasattr(obj, "merge")]


def test_frequency_bias_counts_the_area_above_the_threshold():
    """bias@T is forecast area > T over observed area > T: pysteps' strict ">", as for the CSI's hits."""
    from nowcast.models.skill import LeadScores

    above = np.nextafter(np.float32(1.0), np.float32(2.0))
    obs = np.zeros((2, 8, 8), dtype=np.float32)
    obs[:, :2] = above  # 16 cells just above 1 mm/h
    pred = np.zeros_like(obs)
    pred[0, :4] = above  # lead 1: twice the area
    pred[1, :1] = 1.0  # lead 2: exactly at the threshold, which does not count
    scores = LeadScores(2)
    scores.add(pred, obs)
    result = scores.result()
    assert result["bias@1"] == [2.0, 0.0]
    assert result["bias@0.5"] == [2.0, 0.5]
    assert np.isnan(result["bias@2"][0])  # nothing observed or forecast above 2 mm/h: undefined


def test_a_lead_without_data_is_undefined_not_zero():
    """A lead where nothing could be scored (all NaN) has NaN errors, as in nowcast verify (before: MSE 0)."""
    from nowcast.models.skill import LeadScores

    pred = np.ones((2, 8, 8), dtype=np.float32)
    obs = np.ones((2, 8, 8), dtype=np.float32)
    obs[1] = np.nan
    scores = LeadScores(2)
    scores.add(pred, obs)
    result = scores.result()
    assert result["mse"][0] == 0.0 and result["mae"][0] == 0.0
    assert np.isnan(result["mse"][1]) and np.isnan(result["mae"][1]) and np.isnan(result["csi@1"][1])
