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
    with pytest.raises(ValueError, match=r"'crystal-ball'.*anvil, extrapolation, lagrangian-trend, persistence, sprog"):
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


def _growing_blob(frames: int = 4, db_per_step: float = 1.0, u: float = 1.0) -> np.ndarray:
    y, x = np.mgrid[:48, :48]
    out = []
    for t in range(frames):
        base = 5.0 * np.exp(-((x - 15 - u * t) ** 2 + (y - 24) ** 2) / 50.0)
        f = base * 10 ** (db_per_step * t / 10.0)
        f[base < 0.2] = 0.0
        out.append(f)
    return np.stack(out).astype(np.float32)


def test_lagrangian_trend_continues_growth_and_decay():
    from nowcast.baselines import extrapolation, lagrangian_trend

    for sign in (+1.0, -1.0):
        seq = _growing_blob(frames=7, db_per_step=sign * 1.0)
        window, truth = seq[:4], seq[4:]
        trend = np.nan_to_num(lagrangian_trend(window, 3))
        extrap = np.nan_to_num(extrapolation(window, 3))
        # the trend forecast's peak moves the way the rain's does; extrapolation's stays
        assert sign * (trend.max() - extrap.max()) > 0
        assert np.abs(trend - truth).mean() < np.abs(extrap - truth).mean()


def test_lagrangian_trend_of_steady_rain_is_extrapolation_and_dry_stays_dry():
    from nowcast.baselines import extrapolation, lagrangian_trend

    steady = _growing_blob(db_per_step=0.0)
    np.testing.assert_allclose(np.nan_to_num(lagrangian_trend(steady, 3)), np.nan_to_num(extrapolation(steady, 3)),
                               atol=0.05)
    assert np.nanmax(lagrangian_trend(np.zeros((4, 16, 16), np.float32), 2)) == 0.0


def test_lagrangian_trend_lifetime_and_motion_frames(monkeypatch):
    """A shorter lifetime continues less growth; ``motion_frames`` takes the motion from the newest frames only."""
    from nowcast import baselines

    seq = _growing_blob(frames=8, db_per_step=1.0)
    short, long = (np.nan_to_num(baselines.lagrangian_trend(seq, 12, linearity_power=4.0, lifetime=t)) for t in (3.0, 12.0))
    assert short[-1].max() < long[-1].max() and short[0].max() < long[0].max()
    np.testing.assert_array_equal(np.nan_to_num(baselines.lagrangian_trend(seq, 3)),
                                  np.nan_to_num(baselines.lagrangian_trend(seq, 3, lifetime=baselines.TREND_DAMPING_STEPS)))
    seen = []
    motion = baselines.motion_field
    monkeypatch.setattr(baselines, "motion_field", lambda w, *a, **k: (seen.append(w.shape[0]), motion(w, *a, **k))[1])
    baselines.lagrangian_trend(seq, 3, motion_frames=4)
    baselines.lagrangian_trend(seq, 3)
    assert seen == [4, 8]


def test_anvil_runs_and_needs_four_frames():
    from nowcast.baselines import anvil
    from nowcast.errors import ForecastError

    out = anvil(_growing_blob(db_per_step=0.5), 3)
    assert out.shape == (3, 48, 48) and np.nanmin(out) >= 0.0 and np.nanmax(out) > 1.0
    with pytest.raises(ForecastError, match="at least 4"):
        anvil(_growing_blob()[:3], 2)
