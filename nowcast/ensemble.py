"""Probabilistic nowcasts: ensembles around a deterministic forecast, and pysteps STEPS.

A deterministic nowcast says where the rain will be; it does not say how sure
it is. This module turns any deterministic forecast (the Lagrangian TMU
model's, or extrapolation's) into an ensemble of equally likely members with
the machinery of pysteps' STEPS (Bowler, Pierce and Seed 2006, "BPS2006";
Seed et al. 2013), as pysteps' own blending treats a deterministic component:

1. **Scales.** Every field is in dBR (:func:`nowcast.motion.to_db`: ``10
   log10 R``, dry = -15 dB) and split into :data:`N_CASCADE_LEVELS` spatial
   scales with pysteps' Gaussian band-pass filters
   (``pysteps.cascade.bandpass_filters.filter_gaussian``; the filters sum to
   one at every wavenumber, so the levels add up to the field).
2. **Skill per scale and lead.** The last three input frames are moved to
   the analysis time along the motion (:func:`nowcast.motion.to_lagrangian`),
   decomposed (``pysteps.cascade.decomposition.decomposition_fft``), and an
   AR(2) model is fitted to each level's lag-1/lag-2 autocorrelations
   (``pysteps.timeseries.correlation.temporal_autocorrelation``,
   ``autoregression.adjust_lag2_corrcoef2`` and ``estimate_ar_params_yw``),
   as STEPS does. The expected correlation ``rho[lead, level]`` between a
   forecast and the truth then follows the AR recursion of pysteps' blending
   (``pysteps.blending.skill_scores.lt_dependent_cor_extrapolation``): large
   scales stay predictable for an hour, small ones lose their skill within
   minutes; it is made non-increasing with lead time and towards smaller
   scales. This is the skill of Lagrangian persistence; a forecaster that
   predicts growth and decay better is, if anything, given too much noise.
   (The shipped checkpoint's held-out skill is CSI/FSS/MAE per lead, not a
   correlation per scale, so it cannot set these weights.)
3. **Weights.** Per lead and level, the deterministic forecast's level gets
   ``w_model = rho`` and a noise level ``w_noise = sqrt(1 - rho**2)``:
   BPS2006 eq. 13 with one component (pysteps'
   ``calculate_weights_bps``/``calculate_ratios`` for several components),
   which keeps each level's variance: a member is as variable as the radar
   field at every scale while its predictable part is the forecast's.
4. **Noise.** Correlated noise with the spatial spectrum of the newest radar
   frame (``pysteps.noise.fftgenerators.initialize_nonparam_2d_fft_filter``
   and ``generate_noise_2d_fft_filter``, STEPS' "nonparametric" noise),
   band-pass filtered into the same levels, each level evolving in time with
   that level's AR(2) model (``pysteps.timeseries.autoregression``, the
   innovation scaled so every level has unit variance), scaled by the
   newest frame's standard deviation of that level, generated in the
   Lagrangian frame and advected to each lead with the motion (pysteps'
   semi-Lagrangian displacements, :mod:`nowcast.motion`).
5. **Back to rain.** The blended field is probability-matched to the
   deterministic forecast of the same lead (the empirical-CDF matching of
   ``pysteps.postprocessing.probmatching.nonparam_match_empirical_cdf``),
   so every member keeps the forecast's rain area and intensity distribution
   (its growth and decay) and only their placement varies; then back to
   mm/h. Cells where the deterministic forecast is NaN (no coverage, inflow
   edge) are NaN in every member.

All of this is linear until the probability matching, so it runs in the
spectral domain (rFFT): per member and lead, one noise spectrum, one AR
update per level, one inverse FFT, one advection and one sort. The
deterministic part ``sum_level rho * level`` is the same for all members and
computed once per lead. The same noise, for the same window and seed, is
added whatever the deterministic forecast: the "extrapolation ensemble" and
the "TMU ensemble" differ only in their signal.

**Seeds.** Member ``k`` of seed ``s`` draws from its own generator, seeded
by ``numpy.random.SeedSequence(s).spawn(n)[k]``: the same seed gives the same
members bit for bit, in any order and on any number of workers; members
do not share random numbers. The default seed is fixed per reference time
(:func:`default_seed`), so re-running a forecast reproduces it.

``steps`` (:func:`steps_forecast`) is pysteps' STEPS itself
(``pysteps.nowcasts.steps.forecast``, its defaults: nonparametric noise,
AR(2), "bps" motion perturbations, CDF matching, incremental mask) on the
same dBR window, with the same motion, members and seed: the baseline.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nowcast.errors import ForecastError
from nowcast.motion import (
    DB_ZERO,
    RAIN_THRESHOLD,
    displacements,
    from_db,
    motion_field,
    to_db,
    to_lagrangian,
    unknown_mask,
    warp,
)

log = logging.getLogger(__name__)

#: Members of ``--method steps`` when ``--members`` is not given (pysteps' own default is 24).
DEFAULT_MEMBERS = 20
#: Rain-rate thresholds (mm/h) of the exceedance probabilities, unless the region says otherwise.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 5.0, 10.0)
#: Spatial scales of the cascade (pysteps' STEPS default).
N_CASCADE_LEVELS = 6
#: Name of pysteps' STEPS as a method.
STEPS_METHOD = "steps"
#: Lowest correlation a level is given (pysteps' blending uses the same floor, 10e-5).
MIN_RHO = 1e-4
#: Fewest wet pixels (>= the rain threshold) in the newest frame for noise to be estimated from it.
MIN_WET_PIXELS = 16
#: Most memory (MB) pysteps' STEPS may hold in cascades at once: it keeps every member's
#: cascade (levels x (AR order + 1) fields of float64) and noise cascade for the whole run,
#: 2.2 GB peak for 20 members of 512x512 (measured); larger ensembles run in batches of members.
STEPS_CASCADE_MB = 256.0


def default_seed(reference_time) -> int:
    """The seed of a forecast when none is given: minutes since 1970 of its reference time.

    Fixed per reference time, so the same forecast re-run gives the same
    members, and different runs differ.
    """
    import pandas as pd

    ts = pd.Timestamp(reference_time)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value // 60_000_000_000) % (2**31 - 1)


def member_seeds(seed: int, members: int) -> list[int]:
    """One independent 32-bit seed per member (``SeedSequence(seed).spawn``)."""
    children = np.random.SeedSequence(int(seed)).spawn(int(members))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


@dataclass
class NoiseModel:
    """What the input window says about the noise of an ensemble.

    Attributes
    ----------
    velocity
        ``(2, ny, nx)`` motion, pixels per step.
    displacement
        ``(leads, 2, ny, nx)`` semi-Lagrangian displacements of the leads.
    bandpass
        pysteps' band-pass filter (``filter_gaussian``): ``weights_2d`` is
        ``(levels, ny, nx // 2 + 1)``.
    noise_filter
        pysteps' noise filter of the newest frame, or ``None`` when the
        newest frame has too little rain to estimate one (the ensemble is
        then the deterministic forecast, repeated).
    phi
        ``(levels, p + 1)`` AR(p) parameters per level (the last one is the
        innovation's standard deviation), as ``estimate_ar_params_yw``.
    gamma
        ``(levels, p)`` lag-1 (and lag-2) autocorrelations of the input cascade.
    sigma
        ``(levels,)`` standard deviation (dB) of each level of the newest frame.
    rho
        ``(leads, levels)`` expected correlation of the forecast with the
        truth per lead and level.
    note
        Why there is no noise, if there is none.
    """

    velocity: np.ndarray
    displacement: np.ndarray
    bandpass: dict
    noise_filter: dict | None
    phi: np.ndarray
    gamma: np.ndarray
    sigma: np.ndarray
    rho: np.ndarray
    note: str = ""
    _level_std: np.ndarray | None = field(default=None, repr=False)

    @property
    def leads(self) -> int:
        return int(self.rho.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.velocity.shape[1:])  # type: ignore[return-value]

    @property
    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(w_model, w_noise)``, each ``(leads, levels)``: ``rho`` and ``sqrt(1 - rho**2)`` (BPS2006 eq. 13)."""
        rho = np.clip(self.rho, 0.0, 1.0)
        return rho, np.sqrt(np.clip(1.0 - rho**2, 0.0, None))

    @property
    def has_noise(self) -> bool:
        return self.noise_filter is not None and bool(np.any(self.weights[1] > 0))

    def describe(self) -> str:
        """One line for the product's ``ensemble_noise`` attribute and the log."""
        if not self.has_noise:
            return f"none: {self.note or 'noise weight 0 at every level and lead'}; every member is the deterministic forecast"
        r = self.rho
        return (f"STEPS cascade noise ({r.shape[1]} levels, AR({self.phi.shape[1] - 1}) per level from the input window); "
                f"correlation of the largest/smallest scale with the truth {r[0, 0]:.2f}/{r[0, -1]:.2f} at the "
                f"first lead, {r[-1, 0]:.2f}/{r[-1, -1]:.2f} at the last")


def _quiet():
    """pysteps prints progress and settings on stdout; stdout of nowcast is for results."""
    return contextlib.redirect_stdout(io.StringIO())


def noise_model(
    window: np.ndarray,
    leads: int,
    *,
    velocity: np.ndarray | None = None,
    motion_method: str = "LK",
    n_levels: int = N_CASCADE_LEVELS,
    correlations: np.ndarray | None = None,
    threshold: float = RAIN_THRESHOLD,
    zerovalue: float = DB_ZERO,
) -> NoiseModel:
    """Estimate the noise of an ensemble from its input window.

    Parameters
    ----------
    window
        ``(T, ny, nx)`` rain rate (mm/h), oldest first, ``T >= 2`` (AR(2)
        needs 3 frames; 2 give AR(1)); NaN counts as dry.
    leads
        Lead times to prepare weights and displacements for.
    velocity
        Motion (pixels per step); default :func:`nowcast.motion.motion_field`
        of the window with ``motion_method``.
    n_levels
        Cascade levels.
    correlations
        Override of ``rho`` (``(leads, levels)`` or broadcastable): the
        forecast's correlation with the truth per lead and level. All ones
        mean no noise at all: every member is the deterministic forecast.
    threshold, zerovalue
        The dBR transform (mm/h below which it is dry; dB given to dry cells).
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.blending.skill_scores import lt_dependent_cor_extrapolation
    from pysteps.cascade.bandpass_filters import filter_gaussian
    from pysteps.cascade.decomposition import decomposition_fft
    from pysteps.timeseries import autoregression, correlation

    window = np.nan_to_num(np.asarray(window, dtype=np.float64), nan=0.0)
    if window.ndim != 3 or window.shape[0] < 2:
        raise ForecastError(f"ensemble: need an input window of at least 2 frames (time, y, x), got {window.shape}")
    leads = int(leads)
    shape = window.shape[1:]
    if velocity is None:
        velocity = motion_field(window, motion_method)
    velocity = np.asarray(velocity, dtype=np.float64)
    disp = displacements(velocity, leads)
    bandpass = filter_gaussian(shape, int(n_levels))
    order = min(2, window.shape[0] - 1)
    wet = int(np.sum(window[-1] >= threshold))
    if wet < MIN_WET_PIXELS:  # nothing to estimate a cascade or a spectrum from: no noise
        note = f"the newest frame has {wet} wet pixel(s), too few to estimate the noise"
        return NoiseModel(velocity, disp, bandpass, None, np.zeros((n_levels, order + 1)), np.zeros((n_levels, order)),
                          np.zeros(n_levels), np.ones((leads, n_levels)), note)
    db = to_db(window[-(order + 1):], threshold=threshold, zerovalue=zerovalue)
    lag, _ = to_lagrangian(db, list(range(-order, 1)), velocity, outval=zerovalue,
                           disp=disp if leads >= order else None)  # the leads' first steps move the inputs
    with np.errstate(invalid="ignore", divide="ignore"):  # a level without variance normalises to NaN
        cascades = np.stack([decomposition_fft(f, bandpass, normalize=True, compute_stats=True)["cascade_levels"]
                             for f in lag])  # (order + 1, levels, ny, nx)
    cascades = np.nan_to_num(cascades, nan=0.0, posinf=0.0, neginf=0.0)
    last = decomposition_fft(db[-1], bandpass, normalize=False, compute_stats=True)
    sigma = np.asarray(last["stds"], dtype=np.float64)
    gamma = np.zeros((n_levels, order))
    phi = np.zeros((n_levels, order + 1))
    for j in range(n_levels):
        g = np.asarray(correlation.temporal_autocorrelation(cascades[:, j]), dtype=np.float64)
        g = np.nan_to_num(g, nan=0.0)
        if order == 2:
            g[1] = autoregression.adjust_lag2_corrcoef2(g[0], g[1])
        gamma[j] = g
        phi[j] = autoregression.estimate_ar_params_yw(g)
    rho = np.empty((leads, n_levels))
    if order == 2:
        cur, prev = phi[:, 0] / (1.0 - phi[:, 1]), None  # the lag-1 correlation (Yule-Walker)
    else:
        cur, prev = phi[:, 0].copy(), None
    for t in range(leads):
        if t > 0:
            cur, prev = lt_dependent_cor_extrapolation(phi, cur, prev, ar_order=order)
        rho[t] = cur
    rho = np.clip(np.nan_to_num(rho, nan=MIN_RHO), MIN_RHO, 1.0)
    # Skill never grows with lead time (an AR(2) with complex roots has an oscillating
    # autocorrelation) nor towards smaller scales (as pysteps' blending enforces for its models).
    rho = np.minimum.accumulate(np.minimum.accumulate(rho, axis=0), axis=1)
    if correlations is not None:
        rho = np.broadcast_to(np.asarray(correlations, dtype=np.float64), rho.shape).copy()

    from pysteps.noise.fftgenerators import initialize_nonparam_2d_fft_filter

    note, noise_filter = "", None
    try:
        noise_filter = initialize_nonparam_2d_fft_filter(db[-1])
        if not np.all(np.isfinite(noise_filter["field"])) or not np.any(noise_filter["field"]):
            noise_filter, note = None, "the newest frame's spectrum is degenerate"
    except ValueError as exc:  # pysteps: "field contains non-finite values" on (nearly) dry fields
        noise_filter, note = None, f"no noise spectrum: {exc}".splitlines()[0]
    return NoiseModel(velocity, disp, bandpass, noise_filter, phi, gamma, sigma, rho, note)


def _level_stds(model: NoiseModel) -> np.ndarray:
    """Standard deviation of each band-pass level of pysteps' unit noise.

    The spectral noise has random phases and the filter's amplitudes, so
    these are the same for every draw: computed once.
    """
    if model._level_std is None:
        import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
        from pysteps.noise.fftgenerators import generate_noise_2d_fft_filter
        from pysteps.utils.spectral import std

        eps = generate_noise_2d_fft_filter(model.noise_filter, randstate=np.random.RandomState(0), domain="spectral")
        w = model.bandpass["weights_2d"]
        model._level_std = np.array([std(eps * w[j], model.shape) for j in range(w.shape[0])])
    return model._level_std


def signal_fields(deterministic_db: np.ndarray, model: NoiseModel) -> np.ndarray:
    """The predictable part of every member: ``sum_level w_model * level`` of the deterministic forecast (dB).

    ``(leads, ny, nx)``; the domain mean (wavenumber 0) is kept whole.
    """
    w_model, _ = model.weights
    out = np.empty(deterministic_db.shape, dtype=np.float64)
    wts = model.bandpass["weights_2d"]
    for t in range(deterministic_db.shape[0]):
        spectrum = np.fft.rfft2(deterministic_db[t])
        gain = np.einsum("l,lij->ij", w_model[t], wts)
        gain[0, 0] = 1.0
        out[t] = np.fft.irfft2(spectrum * gain, s=deterministic_db.shape[1:])
    return out


def _match(sorted_target: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Empirical-CDF matching (pysteps' ``nonparam_match_empirical_cdf``): ``values``' ranks, the target's values.

    ``sorted_target`` is the target sorted once per lead (the same for every member).
    """
    out = np.empty_like(sorted_target)
    out[np.argsort(values)] = sorted_target
    return out


def perturb(
    deterministic: np.ndarray,
    model: NoiseModel,
    members: int,
    seed: int,
    *,
    threshold: float = RAIN_THRESHOLD,
    zerovalue: float = DB_ZERO,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Members ``(members, leads, ny, nx)`` (mm/h, float32) around a deterministic forecast.

    Parameters
    ----------
    deterministic
        ``(leads, ny, nx)`` mm/h; NaN = no information (kept in every member).
    model
        :func:`noise_model` of the input window (same grid, at least as many leads).
    members, seed
        Ensemble size and seed (:func:`member_seeds`).
    out
        Where to write the members (e.g. a preallocated or memory-mapped
        array); default a new float32 array.
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.noise.fftgenerators import generate_noise_2d_fft_filter

    det = np.asarray(deterministic, dtype=np.float32)
    leads = det.shape[0]
    if det.ndim != 3 or det.shape[1:] != model.shape:
        raise ForecastError(f"ensemble: deterministic forecast of shape {det.shape} on a noise model of grid {model.shape}")
    if leads > model.leads:
        raise ForecastError(f"ensemble: {leads} leads, the noise model has {model.leads}")
    members = int(members)
    if members < 1:
        raise ForecastError(f"ensemble: --members {members}: need at least one member")
    if out is None:
        out = np.empty((members, *det.shape), dtype=np.float32)
    unknown = np.isnan(det)
    if not model.has_noise:
        out[:] = det[None]
        return out
    _, w_noise = model.weights
    det_db = to_db(np.where(unknown, 0.0, det), threshold=threshold, zerovalue=zerovalue)
    signal = signal_fields(det_db, model)
    known = ~unknown
    targets = [np.sort(det_db[t][known[t]]) for t in range(leads)]
    wts = model.bandpass["weights_2d"]  # (levels, ny, nx//2+1)
    scaled = wts / _level_stds(model)[:, None, None]  # white noise -> unit-variance levels
    phi = model.phi
    p = phi.shape[1] - 1
    amp = w_noise * model.sigma[None, :]  # (leads, levels): dB of noise per level
    for m, s in enumerate(member_seeds(seed, members)):
        rs = np.random.RandomState(s)
        eps = generate_noise_2d_fft_filter(model.noise_filter, randstate=rs, domain="spectral")
        state = [eps[None] * scaled] * p  # identical noise for all AR steps (as pysteps' blending starts)
        for t in range(leads):
            eps = generate_noise_2d_fft_filter(model.noise_filter, randstate=rs, domain="spectral")
            new = phi[:, -1, None, None] * (eps[None] * scaled)
            for i in range(p):
                new = new + phi[:, i, None, None] * state[-(i + 1)]
            state = state[1:] + [new]
            spectrum = amp[t, 0] * new[0]
            for j in range(1, new.shape[0]):
                spectrum += amp[t, j] * new[j]
            noise = np.fft.irfft2(spectrum, s=model.shape)
            moved = warp(noise, model.displacement[t], 0.0)
            field_db = signal[t] + moved
            member = np.full(model.shape, np.nan, dtype=np.float32)
            if targets[t].size:
                matched = _match(targets[t], field_db[known[t]])
                member[known[t]] = from_db(matched, threshold=threshold)
            out[m, t] = member
    return out


def ensemble_forecast(
    deterministic: np.ndarray,
    window: np.ndarray,
    members: int,
    seed: int,
    *,
    velocity: np.ndarray | None = None,
    motion_method: str = "LK",
    correlations: np.ndarray | None = None,
) -> tuple[np.ndarray, NoiseModel]:
    """Members around ``deterministic`` with the noise of ``window``: ``(members array, noise model)``."""
    model = noise_model(window, np.asarray(deterministic).shape[0], velocity=velocity, motion_method=motion_method,
                        correlations=correlations)
    return perturb(deterministic, model, members, seed), model


def steps_forecast(
    window: np.ndarray,
    leads: int,
    members: int,
    seed: int,
    *,
    timestep_minutes: int = 5,
    km_per_pixel: float = 1.0,
    velocity: np.ndarray | None = None,
    n_levels: int = N_CASCADE_LEVELS,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """pysteps' STEPS ensemble ``(members, leads, ny, nx)`` mm/h (float32) on the dBR window.

    ``pysteps.nowcasts.steps.forecast`` with its defaults (nonparametric
    noise, AR(2), "bps" motion perturbations, CDF matching, incremental
    mask), the LK motion of :func:`nowcast.motion.motion_field` (the same as
    every other method's), ``n_ens_members=members`` and ``seed``. Members
    are written lead by lead into ``out`` (pysteps' callback), so the output
    is held once, in float32. Cells whose source is outside the domain or
    had no data are NaN, as for extrapolation. A window without rain in its
    newest frame gives a dry ensemble.

    pysteps holds every member's cascades for the whole run; when they
    would exceed :data:`STEPS_CASCADE_MB`, the members are made in batches
    (batch ``b`` seeded by ``SeedSequence(seed).spawn(batches)[b]``), which
    bounds memory on large grids (20 members of 512x512: 4 batches of 5).
    One batch, i.e. the plain pysteps call with ``seed``, otherwise.
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.nowcasts import steps

    raw = np.asarray(window, dtype=np.float32)
    if raw.ndim != 3 or raw.shape[0] < 3:
        raise ForecastError(f"method {STEPS_METHOD!r}: needs at least 3 input frames (AR(2)), got {raw.shape}")
    leads, members = int(leads), int(members)
    if out is None:
        out = np.empty((members, leads, *raw.shape[1:]), dtype=np.float32)
    nodata = np.isnan(raw[-1])
    rain = np.nan_to_num(raw, nan=0.0)
    if velocity is None:
        velocity = motion_field(rain)
    unknown = unknown_mask(nodata, velocity, leads)
    if int(np.sum(rain[-1] >= RAIN_THRESHOLD)) < MIN_WET_PIXELS:
        out[:] = 0.0
        out[:, unknown] = np.nan
        return out
    db = to_db(rain[-3:])
    per_member_mb = 4 * int(n_levels) * raw.shape[1] * raw.shape[2] * 8 / 1e6  # 3 AR states + noise, float64
    size = max(1, min(members, int(STEPS_CASCADE_MB // max(per_member_mb, 1e-9))))
    starts = list(range(0, members, size))
    seeds = [int(seed)] if len(starts) == 1 else member_seeds(seed, len(starts))
    for first, batch_seed in zip(starts, seeds):
        n = min(size, members - first)
        step = [0]

        def keep(fields: np.ndarray, first=first, n=n, step=step) -> None:  # (n, ny, nx) dB, one lead at a time
            out[first : first + n, step[0]] = from_db(np.where(np.isfinite(fields), fields, DB_ZERO))
            step[0] += 1

        with _quiet():
            steps.forecast(
                db, velocity, leads, n_ens_members=n, n_cascade_levels=int(n_levels),
                precip_thr=10.0 * np.log10(RAIN_THRESHOLD), kmperpixel=float(km_per_pixel),
                timestep=float(timestep_minutes), seed=batch_seed, num_workers=1,
                callback=keep, return_output=False,
            )
        if step[0] != leads:
            raise ForecastError(f"method {STEPS_METHOD!r}: pysteps returned {step[0]} of {leads} lead times")
    out[:, unknown] = np.nan
    return out


# ---------------------------------------------------------------- products
def exceedance_probability(members: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """``(thresholds, leads, ny, nx)`` fraction of members with rain rate >= each threshold.

    NaN where the members are NaN (no information). pysteps'
    ``ensemblestats.excprob`` convention (``>=``), computed lead by lead so a
    large ensemble is never copied whole.
    """
    members = np.asarray(members)
    n = members.shape[0]
    out = np.empty((len(thresholds), *members.shape[1:]), dtype=np.float32)
    for t in range(members.shape[1]):
        lead = members[:, t]
        unknown = np.isnan(lead).any(axis=0)
        for k, thr in enumerate(thresholds):
            with np.errstate(invalid="ignore"):
                p = np.count_nonzero(lead >= float(thr), axis=0) / float(n)
            out[k, t] = np.where(unknown, np.nan, p)
    return out


def ensemble_mean(members: np.ndarray) -> np.ndarray:
    """``(leads, ny, nx)`` mean of the members (float32; NaN where they are)."""
    members = np.asarray(members)
    out = np.empty(members.shape[1:], dtype=np.float32)
    for t in range(members.shape[1]):
        out[t] = members[:, t].astype(np.float64).mean(axis=0)
    return out
