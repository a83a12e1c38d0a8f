"""Stochastic radar-like sequences grown from one real field (STEPS-style).

No real radar *time series* is available offline, so training and skill
sequences are simulated from real single fields ("seeds") with the field's own
stochastic model of precipitation evolution, the one behind STEPS/S-PROG
(Seed 2003; Bowler et al. 2006) as implemented by pysteps:

1. the rain rate is put in dB (``pysteps.utils.transformation.dB_transform``,
   threshold 0.1 mm/h), cold-cloud anomalies of an IR brightness temperature
   stay in kelvin (see :func:`cloud_anomaly`);
2. the field is split into a cascade of spatial scales
   (``pysteps.cascade``); every level is evolved by its own AR(2) process
   whose lag-1 correlation falls from ~0.99 at the largest scale to ~0.7 at
   the smallest (5-minute values; other timesteps scale as ``rho**(dt/5)``),
   the range reported for 5-minute radar: large systems live for hours,
   convective cells for minutes;
3. the AR innovations are noise with the *seed's own* power spectrum
   (``pysteps.noise.fftgenerators`` parametric filter), so small scales keep
   the seed's texture while they decorrelate;
4. the evolving field lives in Lagrangian coordinates and is advected to each
   output time by a smooth random motion field (uniform speed 0-60 km/h,
   slowly veering, with a smooth spatial perturbation) through
   ``pysteps.extrapolation.semilagrangian`` with accumulated displacement, as
   in pysteps' STEPS loop;
5. growth and decay: a smooth, slowly varying field added in dB (a
   multiplicative field on rain rate) moves with the rain;
6. back-transform: each frame is probability-matched
   (``pysteps.postprocessing.probmatching``) to the seed's own rain-rate
   distribution, with a wet fraction and an intensity that wander slowly
   (AR(1) in log wet fraction and in dB) around the seed's values.

The domain is internally padded by the largest displacement the motion can
produce (mirror padding of the seed), so rain flows *in* through the
boundaries instead of leaving empty wedges, and every returned value is finite.

Everything random derives from one ``rng_seed``: the same seed and parameters
give the same sequence bit for bit.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nowcast.errors import NowcastError

log = logging.getLogger(__name__)

Kind = Literal["rain", "brightness_temperature"]

#: Largest relative excursion of the smooth motion perturbation (in std units).
_PERTURBATION_CLIP = 2.5


class SimulationError(NowcastError):
    """A seed field or parameter set cannot be simulated (dry seed, bad shape...)."""


class SimulationParams(BaseModel):
    """Parameters of the stochastic model; defaults are 5-minute radar values.

    Ranges given as ``(low, high)`` are sampled uniformly per sequence; give
    equal ends to fix a value (tests do so to check advection speed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- cascade and temporal correlation --
    n_cascade_levels: int = Field(6, ge=2, le=10)
    lag1_large: float = Field(0.99, gt=0, lt=1, description="Lag-1 autocorrelation of the largest scale at the reference timestep.")
    lag1_small: float = Field(0.7, gt=0, lt=1, description="Lag-1 autocorrelation of the smallest scale at the reference timestep.")
    lag2_excess: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="gamma2 = gamma1^2 + excess (gamma1 - gamma1^2): 0 is AR(1)-like, larger is smoother in time.",
    )
    reference_timestep_minutes: float = Field(5.0, gt=0, description="Timestep at which lag1_* are given.")
    evolve: bool = Field(True, description="False freezes the cascade (pure advection, no noise): a test switch.")

    # -- motion --
    speed_kmh: tuple[float, float] = (0.0, 60.0)
    direction_deg: tuple[float, float] = Field((0.0, 360.0), description="Direction the rain moves *towards*, clockwise from grid north.")
    veering_deg_per_hour: tuple[float, float] = Field((-20.0, 20.0), description="Slow rotation of the flow direction.")
    motion_perturbation: float = Field(0.2, ge=0, le=0.5, description="Std of the smooth spatial motion perturbation, relative to the speed.")
    motion_scale_km: float = Field(150.0, gt=0)

    # -- growth and decay, distribution --
    growth_decay: float = Field(0.3, ge=0, description="Std of the smooth growth/decay field, relative to the seed's wet-pixel std (dB for rain).")
    growth_decay_scale_km: float = Field(80.0, gt=0)
    growth_decay_minutes: float = Field(60.0, gt=0, description="Correlation time of growth/decay.")
    wet_fraction_variability: float = Field(0.15, ge=0, description="Std of the log wet fraction's slow random walk.")
    intensity_variability: float = Field(1.0, ge=0, description="Std of the slow shift of wet intensities (dB for rain, K for brightness temperature).")
    distribution_minutes: float = Field(90.0, gt=0, description="Correlation time of wet fraction and intensity.")

    # -- thresholds --
    rain_threshold: float = Field(0.1, gt=0, description="mm/h below which a pixel is dry.")
    cloud_threshold_k: float = Field(5.0, gt=0, description="K below the clear-sky background from which a pixel counts as cloud.")
    background_window_km: float = Field(1500.0, gt=0, description="Window of the clear-sky background estimate.")
    background_percentile: float = Field(95.0, gt=50, le=100)

    spinup_frames: int = Field(0, ge=0, description="Frames simulated and discarded before the first returned one.")

    @model_validator(mode="after")
    def _ranges(self) -> "SimulationParams":
        for name in ("speed_kmh", "direction_deg", "veering_deg_per_hour"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low {lo} exceeds high {hi}")
        if self.speed_kmh[0] < 0:
            raise ValueError("speed_kmh must be non-negative")
        return self

    def correlations(self, timestep_minutes: float) -> tuple[np.ndarray, np.ndarray]:
        """Lag-1 and lag-2 correlations per cascade level at ``timestep_minutes``.

        ``-log(gamma1)`` (the inverse lifetime) is interpolated geometrically
        between the largest and smallest level: cascade levels are geometric in
        scale, so this is a power law lifetime ~ scale**alpha, the scaling
        found for radar rain (Venugopal et al. 1999; Seed 2003).
        """
        s = np.linspace(0.0, 1.0, self.n_cascade_levels)
        inv_life = np.exp((1 - s) * np.log(-np.log(self.lag1_large)) + s * np.log(-np.log(self.lag1_small)))
        gamma1 = np.exp(-inv_life * timestep_minutes / self.reference_timestep_minutes)
        gamma2 = gamma1**2 + self.lag2_excess * (gamma1 - gamma1**2)
        return gamma1, gamma2


# --------------------------------------------------------------- helpers --


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Unit-variance Gaussian random field with Gaussian correlation of ``scale_px``.

    Filtered in Fourier space (one FFT pair whatever the scale) instead of
    ``scipy.ndimage.gaussian_filter``, whose cost grows with the scale.
    """
    white = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    sigma = max(scale_px, 0.5)
    transfer = np.exp(-2.0 * (np.pi * sigma) ** 2 * (kx**2 + ky**2))
    field = np.fft.irfft2(np.fft.rfft2(white) * transfer, s=shape)
    std = field.std()
    return field / std if std > 0 else field


def cloud_anomaly(bt: np.ndarray, mask: np.ndarray, params: SimulationParams, resolution_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Split an IR brightness temperature into clear-sky background and cloud.

    Cold cloud tops are the brightness-temperature analogue of rain: the
    background ``B`` is a high running percentile of the field (the warm,
    cloud-free surface), smoothed; the anomaly ``A = B - T`` is zero below
    ``cloud_threshold_k`` ("dry") and positive for cloud. ``T = B - A`` up
    to the small warm residual of the surface, returned as ``B``'s partner.

    Returns
    -------
    anomaly, background
        ``A >= 0`` and ``B + residual`` so that ``T = background - anomaly``.
    """
    from scipy import ndimage

    filled = np.where(mask, bt, np.nan)
    fill = np.nanpercentile(filled, params.background_percentile) if np.isfinite(filled).any() else 0.0
    filled = np.where(np.isfinite(filled), filled, fill)
    window = max(3, int(round(params.background_window_km * 1000.0 / resolution_m)) | 1)
    window = min(window, 2 * (min(bt.shape) // 2) + 1)
    env = ndimage.percentile_filter(filled, params.background_percentile, size=window, mode="reflect")
    env = ndimage.uniform_filter(env, size=window, mode="reflect")
    anomaly = np.clip(env - filled, 0.0, None)
    anomaly[anomaly < params.cloud_threshold_k] = 0.0
    background = filled + anomaly  # = env where cloudy, the surface itself where clear
    return anomaly, background


def _velocity(
    speed_px: float, direction_rad: float, perturbation: np.ndarray, pert_std: float
) -> np.ndarray:
    """Motion field ``(2, ny, nx)`` in pixels/step (pysteps order: x then y).

    ``y`` grows downwards (rows, north-up grids), so a northward motion has a
    negative row component.
    """
    u = speed_px * math.sin(direction_rad)
    v = -speed_px * math.cos(direction_rad)
    return np.stack([u + pert_std * speed_px * perturbation[0], v + pert_std * speed_px * perturbation[1]])


def _target_values(wet_sorted: np.ndarray, size: int, wet_fraction: float, shift: float, zero: float) -> np.ndarray:
    """Target distribution of ``size`` values: the seed's wet quantiles, shifted.

    ``wet_fraction`` of the values are the seed's (sorted) wet values at
    evenly spaced quantiles, so any output size reproduces the seed's
    distribution; the rest are ``zero``. ``shift`` moves wet intensities (dB
    for rain, K for cloud anomalies) but never below the smallest wet value,
    keeping the wet fraction exact. Quantiles come from linear interpolation
    on the sorted values (``np.quantile`` partitions once per quantile, which
    costs seconds for a 640x710 field).
    """
    n_wet = int(round(np.clip(wet_fraction, 0.0, 1.0) * size))
    out = np.full(size, zero, dtype=np.float64)
    if n_wet and wet_sorted.size:
        q = (np.arange(n_wet) + 0.5) / n_wet * (wet_sorted.size - 1)
        vals = np.interp(q, np.arange(wet_sorted.size), wet_sorted)
        out[size - n_wet :] = np.maximum(vals + shift, wet_sorted[0])
    return out


# ------------------------------------------------------------- simulator --


def simulate_sequence(
    seed_field: np.ndarray,
    n_frames: int,
    timestep_minutes: float,
    resolution_m: float,
    rng_seed: int,
    params: SimulationParams | None = None,
    kind: Kind = "rain",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Simulate ``n_frames`` frames evolving from a real field.

    Parameters
    ----------
    seed_field
        ``(ny, nx)`` real field: rain rate in mm/h (``kind="rain"``) or IR
        brightness temperature in K. NaN = no data; treated as dry (rain) or
        clear sky (brightness temperature) and left out of the statistics.
    n_frames
        Frames returned; frame 0 is the seed itself unless
        ``params.spinup_frames`` discards some first.
    timestep_minutes
        Time between frames; correlations and motion scale with it.
    resolution_m
        Grid spacing, turning km/h into pixels per step.
    rng_seed
        Seed of every random draw; same seed, same sequence.
    params
        Model parameters (defaults: 5-minute radar).
    kind
        ``"rain"`` (dB-transformed rain rate) or ``"brightness_temperature"``
        (cold-cloud anomaly in K).
    mask
        Optional ``(ny, nx)`` bool coverage (True = observed); pixels outside
        do not count for the seed's wet fraction and distribution.

    Returns
    -------
    np.ndarray
        ``(n_frames, ny, nx)`` float32: finite, non-negative mm/h for rain,
        K for brightness temperature.

    Raises
    ------
    SimulationError
        For a field that is not 2-D, has no covered pixel, is negative rain,
        or has no wet (cloudy) pixel to evolve.
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.cascade.bandpass_filters import filter_gaussian
    from pysteps.cascade.decomposition import decomposition_fft
    from pysteps.extrapolation.semilagrangian import extrapolate
    from pysteps.noise.fftgenerators import generate_noise_2d_fft_filter, initialize_param_2d_fft_filter
    from pysteps.postprocessing.probmatching import nonparam_match_empirical_cdf
    from pysteps.timeseries.autoregression import adjust_lag2_corrcoef2, estimate_ar_params_yw, iterate_ar_model
    from pysteps.utils.transformation import dB_transform

    params = params or SimulationParams()
    field = np.asarray(seed_field, dtype=np.float64)
    if field.ndim != 2 or min(field.shape) < 8:
        raise SimulationError(f"seed field: expected a 2-D array of at least 8x8, got shape {field.shape}")
    if n_frames < 1:
        raise SimulationError(f"n_frames={n_frames}: must be positive")
    if timestep_minutes <= 0 or resolution_m <= 0:
        raise SimulationError(f"timestep_minutes={timestep_minutes}, resolution_m={resolution_m}: must be positive")
    covered = np.isfinite(field) if mask is None else (np.asarray(mask, dtype=bool) & np.isfinite(field))
    if not covered.any():
        raise SimulationError("seed field: no pixel has data")
    rng = np.random.default_rng(rng_seed)

    # 1. transform to the simulation space ---------------------------------
    background = None
    if kind == "rain":
        field = np.where(np.isfinite(field), field, 0.0)
        if (field < 0).any():
            raise SimulationError(f"seed field: negative rain rates (min {field.min():.3g} mm/h)")
        x, meta = dB_transform(field, threshold=params.rain_threshold)
        zero = float(meta["zerovalue"])
    elif kind == "brightness_temperature":
        x, background = cloud_anomaly(field, covered, params, resolution_m)
        meta = None
        zero = 0.0
    else:
        raise SimulationError(f"kind={kind!r}: expected 'rain' or 'brightness_temperature'")
    seed_values = x[covered]
    wet0 = float(np.mean(seed_values > zero))
    if wet0 == 0.0:
        raise SimulationError(f"seed field: no {'rain' if kind == 'rain' else 'cloud'} above threshold to evolve")
    wet_sorted = np.sort(seed_values[seed_values > zero])
    wet_std = float(np.std(wet_sorted)) or 1.0

    # 2. motion and padding ------------------------------------------------
    steps = params.spinup_frames + n_frames - 1
    px_per_kmh = timestep_minutes / 60.0 * 1000.0 / resolution_m
    speed_px = rng.uniform(*params.speed_kmh) * px_per_kmh
    direction = math.radians(rng.uniform(*params.direction_deg))
    veer = math.radians(rng.uniform(*params.veering_deg_per_hour)) * timestep_minutes / 60.0
    max_shift = speed_px * (1.0 + _PERTURBATION_CLIP * params.motion_perturbation) * steps
    margin = int(math.ceil(max_shift)) + 2
    ny, nx = x.shape
    xp = np.pad(x, margin, mode="reflect")
    shape = xp.shape
    motion_scale = params.motion_scale_km * 1000.0 / resolution_m
    perturbation = np.clip(
        np.stack([smooth_noise(rng, shape, motion_scale), smooth_noise(rng, shape, motion_scale)]),
        -_PERTURBATION_CLIP,
        _PERTURBATION_CLIP,
    )

    # 3. cascade, AR(2) parameters and the seed-spectrum noise --------------
    bp = filter_gaussian(shape, params.n_cascade_levels)
    dec = decomposition_fft(xp, bp, normalize=True, compute_stats=True)
    levels = np.asarray(dec["cascade_levels"])
    means = np.asarray(dec["means"])[:, None, None]
    stds = np.asarray(dec["stds"])[:, None, None]
    gamma1, gamma2 = params.correlations(timestep_minutes)
    phis = []
    for g1, g2 in zip(gamma1, gamma2):
        g2 = adjust_lag2_corrcoef2(g1, g2)
        phis.append(estimate_ar_params_yw([g1, g2]))
    with np.errstate(divide="ignore"):  # pysteps takes log(0) of the zero wavenumber
        noise_filter = initialize_param_2d_fft_filter(xp) if params.evolve else None
    randstate = np.random.RandomState(int(rng.integers(2**31 - 1)))

    def noise_cascade() -> np.ndarray:
        noise = generate_noise_2d_fft_filter(noise_filter, randstate=randstate)
        return np.asarray(decomposition_fft(noise, bp, normalize=True, compute_stats=True)["cascade_levels"])

    state = np.empty((params.n_cascade_levels, 2, *shape))
    state[:, 1] = levels
    if params.evolve:
        eps = noise_cascade()
        for k in range(params.n_cascade_levels):
            # the frame before the seed, drawn from the AR(1) conditional
            state[k, 0] = gamma1[k] * levels[k] + math.sqrt(1.0 - gamma1[k] ** 2) * eps[k]
    else:
        state[:, 0] = levels

    # 4. slow processes: growth/decay field, wet fraction, intensity --------
    gd_rho = math.exp(-timestep_minutes / params.growth_decay_minutes)
    gd_amp = params.growth_decay * wet_std
    gd_scale = params.growth_decay_scale_km * 1000.0 / resolution_m
    growth = np.zeros(shape)  # frame 0 is the seed itself; growth builds up
    dist_rho = math.exp(-timestep_minutes / params.distribution_minutes)
    log_wet, shift = 0.0, 0.0

    crop = (slice(margin, margin + ny), slice(margin, margin + nx))
    displacement = None
    out = np.empty((n_frames, ny, nx), dtype=np.float32)
    for t in range(steps + 1):
        if t > 0:
            if params.evolve:
                eps = noise_cascade()
                for k in range(params.n_cascade_levels):
                    state[k] = iterate_ar_model(state[k], phis[k], eps=eps[k])
                if gd_amp > 0:
                    growth = gd_rho * growth + math.sqrt(1 - gd_rho**2) * gd_amp * smooth_noise(rng, shape, gd_scale)
                log_wet = dist_rho * log_wet + math.sqrt(1 - dist_rho**2) * params.wet_fraction_variability * rng.standard_normal()
                shift = dist_rho * shift + math.sqrt(1 - dist_rho**2) * params.intensity_variability * rng.standard_normal()
            velocity = _velocity(speed_px, direction + veer * (t - 1), perturbation, params.motion_perturbation)
        lagrangian = np.sum(state[:, 1] * stds + means, axis=0) + growth
        if t == 0:
            frame = lagrangian
        else:
            frame, displacement = extrapolate(
                lagrangian,
                velocity,
                1,
                outval=np.nan,
                displacement_prev=displacement,
                return_displacement=True,
                interp_order=1,
            )
            frame = frame[0]
        if t < params.spinup_frames:
            continue
        frame = frame[crop]
        frame = np.where(np.isfinite(frame), frame, np.nanmin(frame) if np.isfinite(frame).any() else zero)
        target = _target_values(wet_sorted, frame.size, wet0 * math.exp(log_wet), shift, zero)
        matched = nonparam_match_empirical_cdf(frame, target)
        if kind == "rain":
            rate, _ = dB_transform(matched, metadata=dict(meta), inverse=True)
            out[t - params.spinup_frames] = np.clip(rate, 0.0, None)
        else:
            out[t - params.spinup_frames] = background - matched
    log.debug(
        "simulated %d frames %dx%d (%s): speed %.2f px/step, margin %d px, wet fraction %.3f",
        n_frames, ny, nx, kind, speed_px, margin, wet0,
    )
    return out


def radial_spectrum_slope(field: np.ndarray, min_wavelength_px: float = 4.0, max_wavelength_px: float | None = None) -> float:
    """Log-log slope of the radially averaged power spectrum of a field.

    The usual summary of a rain field's spatial structure (about -2 to -3 for
    dB rain rate): computed with ``pysteps.utils.spectral.rapsd`` over
    wavelengths between ``min_wavelength_px`` and ``max_wavelength_px``
    (default: a quarter of the smaller side, above which too few waves fit).
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.utils.spectral import rapsd

    spec, freq = rapsd(np.asarray(field, dtype=np.float64), fft_method=np.fft, return_freq=True)
    max_wl = max_wavelength_px or min(field.shape) / 4.0
    sel = (freq >= 1.0 / max_wl) & (freq <= 1.0 / min_wavelength_px) & (spec > 0)
    if sel.sum() < 3:
        raise SimulationError(f"field of shape {field.shape}: too few wavelengths for a spectral slope")
    return float(np.polyfit(np.log(freq[sel]), np.log(spec[sel]), 1)[0])
