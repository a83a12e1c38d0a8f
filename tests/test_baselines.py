"""Baselines: the interface, and skill on a real field moving at a known velocity."""

from __future__ import annotations

import numpy as np
import pytest
from pysteps.verification.detcatscores import det_cat_fct

from nowcast.baselines import METHODS, get_method, motion_field, persistence
from nowcast.errors import ForecastError

LEADS = 6  # 30 minutes at 5-min steps


@pytest.fixture(scope="module")
def moving(swiss_south_moving):
    """4 input frames and the 6 that really followed (0.5 cells S, 1.5 cells E per step)."""
    frames, _, _ = swiss_south_moving(4 + LEADS)
    return frames[:4], frames[4:]


def _csi(fc: np.ndarray, obs: np.ndarray, thr: float = 1.0) -> float:
    ok = np.isfinite(fc) & np.isfinite(obs)
    return float(det_cat_fct(fc[ok], obs[ok], thr, scores="CSI")["CSI"])


def _mse(fc: np.ndarray, obs: np.ndarray) -> float:
    ok = np.isfinite(fc) & np.isfinite(obs)
    return float(np.mean((fc[ok] - obs[ok]) ** 2))


def test_get_method_lists_valid_names_for_unknown_ones():
    assert get_method("Extrapolation") is METHODS["extrapolation"]
    with pytest.raises(ValueError, match=r"'crystal-ball'.*extrapolation, persistence, sprog"):
        get_method("crystal-ball")


def test_persistence_is_the_last_frame(moving):
    window, _ = moving
    fc = persistence(window, LEADS, 5)
    assert fc.shape == (LEADS, *window.shape[1:])
    for lead in fc:
        np.testing.assert_array_equal(lead, window[-1])  # NaN nodata kept as is


def test_motion_field_finds_the_known_velocity(moving):
    window, _ = moving
    u, v = motion_field(window)
    wet = np.nan_to_num(window[-1]) > 0.5
    # pysteps convention: u along columns (east), v along rows (down = south)
    assert np.median(u[wet]) == pytest.approx(1.5, abs=0.25)
    assert np.median(v[wet]) == pytest.approx(0.5, abs=0.25)


@pytest.mark.parametrize("name", ["extrapolation", "sprog"])
def test_advection_beats_persistence(moving, name):
    window, truth = moving
    fc = get_method(name)(window, LEADS, 5)
    pers = persistence(window, LEADS, 5)
    assert fc.shape == truth.shape and fc.dtype == np.float32
    assert np.nanmin(fc) >= 0.0
    # skill at +30 min: CSI at 1 mm/h and MSE
    assert _csi(fc[-1], truth[-1]) > _csi(pers[-1], truth[-1]) + 0.1
    assert _mse(fc[-1], truth[-1]) < 0.6 * _mse(pers[-1], truth[-1])
    if name == "extrapolation":  # pure advection of a translated field is near perfect
        assert _csi(fc[-1], truth[-1]) > 0.8


def test_inflow_from_outside_and_from_nodata_is_unknown(moving):
    window, _ = moving
    window = window.copy()
    window[:, 60:70, 60:70] = np.nan  # a hole in coverage
    fc = get_method("extrapolation")(window, LEADS, 5)
    # the field moves east: the western edge is fed from outside the domain
    assert np.isnan(fc[-1][:, :5]).all()
    # the hole moved ~9 cells east and ~3 cells south in 30 min
    assert np.isnan(fc[-1][65, 72]) and np.isfinite(fc[-1][65, 60])


@pytest.mark.parametrize("name", ["extrapolation", "sprog"])
def test_dry_window_gives_dry_forecast(name):
    fc = get_method(name)(np.zeros((4, 64, 64), dtype=np.float32), 3, 5)
    assert fc.shape == (3, 64, 64) and np.nanmax(fc) == 0.0


@pytest.mark.parametrize("name, frames", [("extrapolation", 1), ("sprog", 2)])
def test_too_short_windows_are_refused(name, frames):
    with pytest.raises(ForecastError, match=rf"method '{name}': needs at least"):
        get_method(name)(np.ones((frames, 32, 32), dtype=np.float32), 3, 5)
