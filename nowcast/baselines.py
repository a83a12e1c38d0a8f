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

log = logging.getLogger(__name__)

#: ``method(window (T, ny, nx) mm/h, leads, timestep_minutes) -> (leads, ny, nx) mm/h``.
Nowcaster = Callable[[np.ndarray, int, int], np.ndarray]

#: Rain rate (mm/h) below which a pixel is dry for the transform and motion.
RAIN_THRESHOLD = 0.1
#: Decibel value given to dry pixels (below ``10 log10(RAIN_THRESHOLD)`` = -10 dB),
#: as in the pysteps examples; the gap to the threshold keeps rain edges sharp.
DB_ZERO = -15.0
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


def to_db(rate: np.ndarray, threshold: float = RAIN_THRESHOLD, zerovalue: float = DB_ZERO) -> np.ndarray:
    """``10 log10(R)`` with pixels below ``threshold`` (and NaN) set to ``zerovalue``.

    Uses ``pysteps.utils.transformation.dB_transform``; NaN is filled
    because optical flow and advection need finite fields.
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.utils import transformation

    db, _ = transformation.dB_transform(
        np.asarray(rate, dtype=np.float64), metadata={"unit": "mm/h", "transform": None, "threshold": threshold,
                                                      "zerovalue": 0.0},
        threshold=threshold, zerovalue=zerovalue,
    )
    return np.where(np.isfinite(db), db, zerovalue)


def from_db(db: np.ndarray, threshold: float = RAIN_THRESHOLD) -> np.ndarray:
    """Inverse of :func:`to_db`: mm/h, exactly 0 below ``threshold``, NaN kept."""
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.utils import transformation

    rate, _ = transformation.dB_transform(
        np.asarray(db, dtype=np.float64), metadata={"unit": "mm/h", "transform": "dB",
                                                    "threshold": 10.0 * np.log10(threshold), "zerovalue": DB_ZERO},
        inverse=True,
    )
    rate = np.where(np.isfinite(rate) & (rate < threshold), 0.0, rate)
    return np.clip(rate, 0.0, None).astype(np.float32)


def motion_field(window: np.ndarray) -> np.ndarray:
    """Lucas-Kanade motion ``(2, ny, nx)`` in pixels per timestep (``u``, ``v``).

    A dry window has no features to track and gives zero motion.
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps import motion

    db = to_db(window)
    if not np.any(db > DB_ZERO):
        return np.zeros((2, *window.shape[1:]))
    return motion.get_method("LK")(db, verbose=False)


def unknown_mask(nodata: np.ndarray, velocity: np.ndarray, leads: int) -> np.ndarray:
    """Where an advected forecast has no trustworthy source (``(leads, ny, nx)`` bool).

    The data mask is advected like the field (outside the domain counts as no
    data): a forecast pixel whose source is a no-data pixel, or lies outside
    the domain, is unknown rather than dry.
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps import extrapolation

    valid = (~nodata).astype(np.float64)
    moved = extrapolation.get_method("semilagrangian")(valid, velocity, int(leads), outval=0.0)
    return ~(moved > 0.5)


def extrapolation(window: np.ndarray, leads: int, timestep_minutes: int = 5) -> np.ndarray:
    """Advect the newest frame along the Lucas-Kanade motion of the window.

    Motion is in pixels per input timestep; leads are at the same cadence,
    so no rescaling is needed (``timestep_minutes`` is part of the common
    interface only).
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps import extrapolation as pysteps_extrapolation

    window = _check(window, leads, 2, "extrapolation")
    velocity = motion_field(window)
    db = to_db(window[-1])
    advected = pysteps_extrapolation.get_method("semilagrangian")(db, velocity, int(leads), outval=DB_ZERO)
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
