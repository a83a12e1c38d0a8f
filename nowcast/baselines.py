"""Baseline nowcasts behind one pysteps-style interface.

Every method has the signature ``method(window, leads, timestep_minutes) ->
forecast``: ``window`` is ``(T, ny, nx)`` rain rate in mm/h, oldest frame
first, and the forecast is ``(leads, ny, nx)`` mm/h, float32, non-negative,
with lead ``k`` valid ``(k + 1) * timestep_minutes`` after the newest frame.
:func:`get_method` looks a name up in :data:`METHODS` and, like
``pysteps.nowcasts.get_method``, raises a ``ValueError`` listing the valid
names.

* ``persistence``: the newest frame, unchanged (the skill floor every
  forecaster must beat);
* ``extrapolation``: Lucas-Kanade optical flow (``pysteps.motion`` "LK") and
  semi-Lagrangian advection (``pysteps.extrapolation`` "semilagrangian"),
  the operational fallback of :mod:`nowcast.forecast`;
* ``sprog``: S-PROG (Seed 2003) as implemented by pysteps: extrapolation
  plus scale-dependent AR(2) smoothing of the cascade, which removes the
  small scales that cannot be predicted (a stronger baseline for studies);
* ``lagrangian-trend``: extrapolation times the recent Lagrangian growth
  rate: the simplest statistical model of growth and decay, the floor a
  learned Lagrangian forecaster must beat to show it learned evolution;
* ``anvil``: ANVIL (Pulkkinen et al. 2020) as implemented by pysteps: a
  localised autoregressive integrated model of the cascade in the
  Lagrangian frame, built for growth and decay (run here on rain rate).

The motion field and the advection are computed on reflectivity-like
decibels (``10 log10 R``, with a floor for dry pixels), as pysteps
recommends: rain rates are strongly skewed, and optical flow matches
intensity patterns far better on a logarithmic scale. NaN (no radar data)
is treated as dry for motion and advection, and the data mask is advected
with the field so that a forecast never claims values where its source pixel
had none: pixels whose source is a no-data pixel or lies outside the domain
are NaN ("unknown"), not dry, so that verification does not score them.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable

import numpy as np

from nowcast.errors import ForecastError
from nowcast.motion import (
    DB_ZERO,
    RAIN_THRESHOLD,
    advect_leads,
    displacements,
    from_db,
    motion_field,
    to_db,
    unknown_mask,
)

log = logging.getLogger(__name__)

#: ``method(window (T, ny, nx) mm/h, leads, timestep_minutes) -> (leads, ny, nx) mm/h``.
Nowcaster = Callable[[np.ndarray, int, int], np.ndarray]

#: Cascade levels of S-PROG (pysteps' default).
SPROG_CASCADE_LEVELS = 6


def _check(window: np.ndarray, leads: int, min_frames: int, name: str) -> np.ndarray:
    window = np.asarray(window, dtype=np.float32)
    if window.ndim != 3:
        raise ForecastError(f"method {name!r}: input window must be (time, y, x), got shape {window.shape}")
    if window.shape[0] < min_frames:
        raise ForecastError(f"method {name!r}: needs at least {min_frames} input frames, got {window.shape[0]}")
    if int(leads) < 1:
        raise ForecastError(f"method {name!r}: leads must be >= 1, got {leads}")
    return window


def persistence(window: np.ndarray, leads: int, timestep_minutes: int = 5) -> np.ndarray:
    """Repeat the newest frame for every lead time (NaN kept as no data)."""
    window = _check(window, leads, 1, "persistence")
    return np.repeat(window[-1:], int(leads), axis=0).copy()


def extrapolation(window: np.ndarray, leads: int, timestep_minutes: int = 5) -> np.ndarray:
    """Advect the newest frame along the Lucas-Kanade motion of the window.

    Motion is in pixels per input timestep; leads are at the same cadence,
    so no rescaling is needed (``timestep_minutes`` is part of the common
    interface only).
    """
    window = _check(window, leads, 2, "extrapolation")
    velocity = motion_field(window)
    db = to_db(window[-1])
    disp = displacements(velocity, int(leads))
    advected = advect_leads(np.repeat(db[None], int(leads), axis=0), velocity, outval=DB_ZERO, disp=disp)
    out = from_db(advected)
    out[unknown_mask(np.isnan(window[-1]), velocity, int(leads), disp=disp)] = np.nan
    log.debug("extrapolation: mean motion (%.2f, %.2f) px/step", float(velocity[0].mean()), float(velocity[1].mean()))
    return out


def sprog(window: np.ndarray, leads: int, timestep_minutes: int = 5) -> np.ndarray:
    """S-PROG nowcast (pysteps ``nowcasts`` "sprog") on the dB-transformed window.

    Needs at least 3 frames (AR(2) per cascade level). A window with no rain
    in its newest frame gives a dry forecast (S-PROG has nothing to evolve).
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps import nowcasts

    window = _check(window, leads, 3, "sprog")
    if not np.any(np.nan_to_num(window[-1]) >= RAIN_THRESHOLD):
        out = np.zeros((int(leads), *window.shape[1:]), dtype=np.float32)
        out[:, np.isnan(window[-1])] = np.nan
        return out
    velocity = motion_field(window)
    db = to_db(window[-3:])
    report = io.StringIO()
    with contextlib.redirect_stdout(report):  # pysteps prints its settings; keep them in the log
        forecast = nowcasts.get_method("sprog")(
            db, velocity, int(leads),
            precip_thr=10.0 * np.log10(RAIN_THRESHOLD),
            n_cascade_levels=SPROG_CASCADE_LEVELS,
            num_workers=1,
        )
    log.debug("pysteps S-PROG:\n%s", report.getvalue())
    out = from_db(forecast)
    out[unknown_mask(np.isnan(window[-1]), velocity, int(leads))] = np.nan
    return out


#: Largest growth rate (dB per step) the Lagrangian-trend baseline extrapolates.
TREND_MAX_DB_PER_STEP = 2.0
#: e-folding time (steps) of the extrapolated growth rate: trends do not last for ever
#: (undamped, a linear dB trend over 12 steps gave 60-min MAE 8x extrapolation's, measured).
TREND_DAMPING_STEPS = 6.0
#: Gaussian smoothing (pixels) of the growth rate: trends of single pixels are noise.
TREND_SMOOTHING_PX = 4.0


def trend_ramp(leads: int, lifetime: float = TREND_DAMPING_STEPS) -> np.ndarray:
    """How many steps of a growth rate lead ``k`` = 1.. continues: ``tau (1 - exp(-k / tau))``.

    ``tau`` = ``lifetime`` (steps; default :data:`TREND_DAMPING_STEPS`):
    trends do not last for ever. Shared by :func:`lagrangian_trend` and the
    calibrated forecaster's window trend (:mod:`nowcast.models.calibration`),
    whose lifetime the calibration may choose.
    """
    tau = float(lifetime)
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"a trend's lifetime must be a positive number of steps, got {lifetime}")
    k = np.arange(1, int(leads) + 1, dtype=np.float64)
    return tau * (1.0 - np.exp(-k / tau))


def lagrangian_trend(window: np.ndarray, leads: int, timestep_minutes: int = 5,
                     linearity_power: float = 0.0, lifetime: float = TREND_DAMPING_STEPS,
                     motion_frames: int | None = None) -> np.ndarray:
    """Extrapolation with the window's Lagrangian growth rate continued linearly in dB.

    The inputs are moved to the analysis time (:func:`nowcast.motion.to_lagrangian`);
    the growth rate of each pixel is the least-squares slope of its dB
    values over the window, smoothed (:data:`TREND_SMOOTHING_PX`) and bounded
    (:data:`TREND_MAX_DB_PER_STEP`); lead ``k`` is the analysis frame plus
    ``k`` times that rate, advected like extrapolation. Only rain grows or
    decays: a dry pixel stays dry.

    ``linearity_power`` > 0 weights each pixel's slope by the R² of its
    linear fit to that power before smoothing (0 with fewer than three wet
    frames), as the trend gate's :func:`nowcast.models.predictor.trend_rate`
    does; the baseline of the studies is the unweighted one (0). ``lifetime``:
    the e-folding time (steps) the rate is continued with (:func:`trend_ramp`).
    The slope is read over the whole ``window``, however long; the motion
    from its last ``motion_frames`` frames (``None``: all of them), so that a
    longer history can lengthen the trend without changing the motion.
    """
    from scipy.ndimage import gaussian_filter

    from nowcast.motion import to_lagrangian

    window = _check(window, leads, 2, "lagrangian-trend")
    velocity = motion_field(window if motion_frames is None else window[-int(motion_frames):])
    n = window.shape[0]
    db = to_db(window)
    disp = displacements(velocity, max(int(leads), n - 1))  # the inputs' trajectories are the first leads'
    lag, valid = to_lagrangian(db, list(range(-(n - 1), 1)), velocity, outval=DB_ZERO, disp=disp)
    disp = disp[: int(leads)]
    t = np.arange(-(n - 1), 1, dtype=np.float64)[:, None, None]
    w = (valid & (lag > DB_ZERO)).astype(np.float64)  # wet and inside the domain
    tw = (w * t).sum(0) / np.maximum(w.sum(0), 1)
    yw = (w * lag).sum(0) / np.maximum(w.sum(0), 1)
    slope = (w * (t - tw) * (lag - yw)).sum(0) / np.maximum((w * (t - tw) ** 2).sum(0), 1e-6)
    slope = np.where(w.sum(0) >= 2, slope, 0.0)
    if linearity_power > 0:
        total = (w * (lag - yw) ** 2).sum(0)
        residual = (w * (lag - yw - slope * (t - tw)) ** 2).sum(0)
        r2 = np.clip(1.0 - residual / np.maximum(total, 1e-12), 0.0, 1.0)
        slope = slope * np.where((w.sum(0) >= 3) & (total > 1e-12), r2, 0.0) ** linearity_power
    wet = lag[-1] > DB_ZERO
    rate = gaussian_filter(slope * wet, TREND_SMOOTHING_PX) / np.maximum(gaussian_filter(wet.astype(float), TREND_SMOOTHING_PX), 1e-3)
    rate = np.clip(rate, -TREND_MAX_DB_PER_STEP, TREND_MAX_DB_PER_STEP)
    fields = np.where(wet, lag[-1] + rate * trend_ramp(leads, lifetime)[:, None, None], DB_ZERO)
    out = from_db(advect_leads(np.maximum(fields, DB_ZERO), velocity, outval=DB_ZERO, disp=disp))
    out[unknown_mask(np.isnan(window[-1]), velocity, int(leads), disp=disp)] = np.nan
    return out


def anvil(window: np.ndarray, leads: int, timestep_minutes: int = 5) -> np.ndarray:
    """ANVIL nowcast (pysteps ``nowcasts`` "anvil") on rain rate; needs 4 frames (ARI(2,1)).

    The local autoregression window is a quarter of the domain's smaller side
    (pysteps' default of 50 pixels assumes 1-km national composites).
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps import nowcasts

    window = _check(window, leads, 4, "anvil")
    rain = np.nan_to_num(window[-4:], nan=0.0).astype(np.float64)
    if not np.any(rain[-1] >= RAIN_THRESHOLD):
        out = np.zeros((int(leads), *window.shape[1:]), dtype=np.float32)
        out[:, np.isnan(window[-1])] = np.nan
        return out
    velocity = motion_field(window)
    report = io.StringIO()
    radius = max(4, min(50, min(window.shape[1:]) // 4))
    try:
        with contextlib.redirect_stdout(report):
            forecast = nowcasts.get_method("anvil")(rain, velocity, int(leads), ar_window_radius=radius, num_workers=1)
    except (np.linalg.LinAlgError, ValueError) as exc:  # degenerate cascade on sparse rain
        log.warning("ANVIL failed (%s); using extrapolation", exc)
        return extrapolation(window, leads, timestep_minutes)
    log.debug("pysteps ANVIL:\n%s", report.getvalue())
    out = np.nan_to_num(np.asarray(forecast, dtype=np.float32), nan=0.0)
    out[out < RAIN_THRESHOLD] = 0.0
    out[unknown_mask(np.isnan(window[-1]), velocity, int(leads))] = np.nan
    return out


#: Baseline methods by name.
METHODS: dict[str, Nowcaster] = {
    "persistence": persistence,
    "extrapolation": extrapolation,
    "sprog": sprog,
    "lagrangian-trend": lagrangian_trend,
    "anvil": anvil,
}


def get_method(name: str) -> Nowcaster:
    """The baseline called ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones (the pysteps
        ``get_method`` convention, which :mod:`nowcast.forecast` turns into a
        :class:`~nowcast.errors.ForecastError`).
    """
    key = str(name).strip().lower()
    if key not in METHODS:
        raise ValueError(f"unknown nowcasting method {name!r}; valid names: {', '.join(sorted(METHODS))}")
    return METHODS[key]
