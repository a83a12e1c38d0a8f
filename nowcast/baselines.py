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
  small scales that cannot be predicted (a stronger baseline for studies).

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
from nowcast.motion import DB_ZERO, RAIN_THRESHOLD, advect_leads, from_db, motion_field, to_db, unknown_mask

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
    advected = advect_leads(np.repeat(db[None], int(leads), axis=0), velocity, outval=DB_ZERO)
    out = from_db(advected)
    out[unknown_mask(np.isnan(window[-1]), velocity, int(leads))] = np.nan
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


#: Baseline methods by name.
METHODS: dict[str, Nowcaster] = {
    "persistence": persistence,
    "extrapolation": extrapolation,
    "sprog": sprog,
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
