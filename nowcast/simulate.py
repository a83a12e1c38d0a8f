"""Stochastic radar-like sequences grown from one real field (STEPS-style).

No real radar *time series* is available offline, so training and skill
sequences are simulated from real single fields ("seeds") with the field's own
stochastic model of precipitation evolution, the one behind STEPS/S-PROG
(Seed 2003; Bowler et al. 2006) as implemented by pysteps, plus the
Lagrangian evolution a forecaster must learn to recognise (growth and decay
that persists, cells that are born and die, rotating and shearing motion,
regimes in stated proportions):

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
   output time by a smooth random motion field through pysteps'
   semi-Lagrangian displacement with accumulated displacement, as in pysteps'
   STEPS loop. The motion is a uniform flow (0-60 km/h) that veers slowly,
   a smooth spatial perturbation, and optionally a solid-body rotation about
   a random centre and a linear shear across the flow (both sampled per
   sequence);
5. back-transform: each frame is probability-matched
   (``pysteps.postprocessing.probmatching``) to the seed's own distribution,
   with a wet fraction and an intensity that wander slowly (AR(1) in log wet
   fraction and in dB) around the seed's values. Dry pixels keep a latent
   sub-threshold value (a ramp below the threshold in the order of the
   evolving field), so that growth can widen rain areas at their edges;
6. Lagrangian growth and decay, added in dB *after* the probability matching
   (so it is not matched away) on the same displacement, i.e. it moves with
   the rain: a smooth growth *rate* field (dB per step, smooth in time with
   a correlation time drawn per sequence from 20-120 min) is accumulated with
   a leak of the same time, so intensities keep rising or falling for tens
   of minutes while their excursion stays bounded;
7. convective cells: Gaussian bumps in dB (a few km to ~15 km wide) born at
   random times and places in the Lagrangian frame, growing to a peak and
   decaying over a 15-60 min lifetime (rain only);
8. a soft ceiling (``max_rain_rate``) keeps growth and cells physical.

Regimes: ``SimulationParams.regimes`` gives proportions of named regimes
(``stratiform``: near-persistent in the Lagrangian frame, weak growth, no
cells; ``growth_decay``: strong persistent trends; ``convective``: many
short-lived cells). One regime is drawn per sequence and applied as a
validated copy of the parameters with the regime's overrides
(``SimulationParams.regime_overrides``), so what a regime means is written in
the parameters themselves; ``simulate_sequence(..., return_info=True)``
returns the drawn regime and motion with the frames.

The domain is internally padded by the largest displacement the motion can
produce (mirror padding of the seed), so rain flows *in* through the
boundaries instead of leaving empty wedges, and every returned value is finite.

Everything random derives from one ``rng_seed`` (one independent stream per
component: regime, motion, cascade noise, growth, cells, distribution): the
same seed and parameters give the same sequence bit for bit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field as dataclass_field
from functools import lru_cache
from typing import Any, Literal, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nowcast.errors import NowcastError

log = logging.getLogger(__name__)

Kind = Literal["rain", "brightness_temperature"]

#: Largest relative excursion of the smooth motion perturbation (in std units).
_PERTURBATION_CLIP = 2.5
#: Scales (px) above which smooth noise is drawn on a coarse, non-periodic grid.
_SMOOTH_FINE_MAX_PX = 4.0
#: Depth of the latent dry ramp below the wet threshold, in units of the seed's wet std.
_DRY_DEPTH = 2.0
#: Cells are drawn out to this many Gaussian sigmas (exp(-8) of the peak is left out).
_CELL_SIGMAS = 4.0
#: Full width at half maximum of a Gaussian, in sigmas.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Width of the soft ceiling's compression zone below the ceiling (dB).
_CEILING_ZONE_DB = 6.0
#: Random streams, one per component, in the order they are spawned from ``rng_seed``.
_STREAMS = ("regime", "motion", "cascade", "growth", "cells", "distribution")
#: Parameters a regime may not override (they define the regimes themselves).
_NOT_OVERRIDABLE = frozenset({"regimes", "regime_overrides"})


def default_regime_overrides() -> dict[str, dict[str, Any]]:
    """Per-regime parameter overrides used when a config does not give its own.

    * ``stratiform``: near-persistent in the Lagrangian frame (lag-1 0.995 at
      the largest scale, 0.9 at the smallest), weak and slow growth/decay, a
      quiet distribution, no cells: what a forecaster must recognise as
      "extrapolate unchanged";
    * ``growth_decay``: strong growth/decay (1.5 wet std, ~6 dB on the
      Swiss seed) whose rate persists 40-120 min, a quieter Eulerian
      distribution walk (it would blur the Lagrangian trend), few cells;
    * ``convective``: many short-lived cells (15-45 min) and faster small-scale
      decorrelation.
    """
    return {
        "stratiform": {
            "lag1_large": 0.995,
            "lag1_small": 0.9,
            "growth_decay": 0.1,
            "growth_decay_minutes": (60.0, 120.0),
            "cell_birth_rate": 0.0,
            "intensity_variability": 0.3,
            "wet_fraction_variability": 0.05,
        },
        "growth_decay": {
            "lag1_small": 0.85,
            "growth_decay": 1.5,
            "growth_decay_minutes": (40.0, 120.0),
            "cell_birth_rate": 0.5,
            "intensity_variability": 0.5,
            "wet_fraction_variability": 0.1,
        },
        "convective": {
            "lag1_small": 0.65,
            "growth_decay": 0.3,
            "growth_decay_minutes": (20.0, 60.0),
            "cell_birth_rate": 12.0,
            "cell_lifetime_minutes": (15.0, 45.0),
            "cell_peak_db": (8.0, 18.0),
            "cell_width_km": (3.0, 12.0),
        },
    }


class SimulationError(NowcastError):
    """A seed field or parameter set cannot be simulated (dry seed, bad shape...)."""


class SimulationParams(BaseModel):
    """Parameters of the stochastic model; defaults are 5-minute radar values.

    Ranges given as ``(low, high)`` are sampled uniformly per sequence; give
    equal ends to fix a value (tests do so to check advection speed).
    ``regimes`` (empty by default: the parameters as given) draws one named
    regime per sequence; its overrides replace the matching fields.
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
    evolve: bool = Field(
        True,
        description="False freezes the cascade (pure advection of the seed's structure, no noise): a test switch. "
        "Growth/decay, cells and the distribution walk have their own amplitudes (0 switches them off).",
    )

    # -- motion --
    speed_kmh: tuple[float, float] = (0.0, 60.0)
    direction_deg: tuple[float, float] = Field((0.0, 360.0), description="Direction the rain moves *towards*, clockwise from grid north.")
    veering_deg_per_hour: tuple[float, float] = Field((-20.0, 20.0), description="Slow rotation of the flow direction.")
    motion_perturbation: float = Field(0.2, ge=0, le=0.5, description="Std of the smooth spatial motion perturbation, relative to the speed.")
    motion_scale_km: float = Field(150.0, gt=0)
    rotation_deg_per_hour: tuple[float, float] = Field(
        (0.0, 0.0),
        description="Solid-body rotation of the rain about a random centre in the domain; positive is counterclockwise "
        "on a north-up map (cyclonic in the northern hemisphere). Vorticity = 2 x angular speed.",
    )
    shear_per_hour: tuple[float, float] = Field(
        (0.0, 0.0),
        description="Linear shear across the mean flow, in km/h of along-flow speed per km across it (1/h); "
        "positive: counterclockwise vorticity, the flow faster on its right-hand side.",
    )

    # -- growth and decay (Lagrangian, accumulated rate) --
    growth_decay: float = Field(
        0.3,
        ge=0,
        description="Std of the accumulated growth/decay term, relative to the seed's wet-pixel std (dB for rain); "
        "bounds the excursion. The rate's std per step follows from it and growth_decay_minutes (see _Growth).",
    )
    growth_decay_scale_km: float = Field(80.0, gt=0, description="Spatial correlation scale of the growth rate field.")
    growth_decay_minutes: tuple[float, float] = Field(
        (20.0, 120.0),
        description="Correlation time of the growth rate and leak time of the accumulated term, drawn per sequence "
        "(a single number fixes it): how long a Lagrangian trend persists.",
    )

    # -- convective cells (rain only) --
    cell_birth_rate: float = Field(1.0, ge=0, description="Cells born per 10^4 km^2 per hour, uniformly in the Lagrangian domain.")
    cell_lifetime_minutes: tuple[float, float] = Field((15.0, 60.0), description="Life of a cell from birth through its peak to its death.")
    cell_peak_db: tuple[float, float] = Field((5.0, 15.0), description="Peak amplitude added to the rain in dB.")
    cell_width_km: tuple[float, float] = Field((3.0, 15.0), description="Full width at half maximum of a cell.")
    max_rain_rate: float = Field(200.0, gt=0, description="Soft ceiling (mm/h) that growth and cells approach but never pass.")

    # -- distribution --
    wet_fraction_variability: float = Field(0.15, ge=0, description="Std of the log wet fraction's slow random walk.")
    intensity_variability: float = Field(1.0, ge=0, description="Std of the slow shift of wet intensities (dB for rain, K for brightness temperature).")
    distribution_minutes: float = Field(90.0, gt=0, description="Correlation time of wet fraction and intensity.")

    # -- regimes --
    regimes: dict[str, float] = Field(
        default_factory=dict,
        description="Proportions of the regimes drawn per sequence (normalised to sum 1); empty: no regime, the parameters as given.",
    )
    regime_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=default_regime_overrides,
        description="Per regime, the fields it overrides (see default_regime_overrides).",
    )

    # -- thresholds --
    rain_threshold: float = Field(0.1, gt=0, description="mm/h below which a pixel is dry.")
    cloud_threshold_k: float = Field(5.0, gt=0, description="K below the clear-sky background from which a pixel counts as cloud.")
    background_window_km: float = Field(1500.0, gt=0, description="Window of the clear-sky background estimate.")
    background_percentile: float = Field(95.0, gt=50, le=100)

    spinup_frames: int = Field(0, ge=0, description="Frames simulated and discarded before the first returned one.")
    stationary_start: bool = Field(
        False,
        description="Start the growth/decay term, the cells and the distribution walk in their statistically "
        "stationary state instead of at zero. Started at zero, their variance builds up over the sequence (over "
        "the 20-120 min growth time and the cells' lifetimes), so heavy rain spreads out as time goes on: on the "
        "swiss-south seed the area above 5 mm/h grew 1.9x in 80 min on average, a trend no real field has and a "
        "network learns. Stationary, the first frame is no longer the seed itself (docs/data.md).",
    )

    @field_validator("growth_decay_minutes", mode="before")
    @classmethod
    def _scalar_is_fixed_range(cls, value: Any) -> Any:
        """Accept one number (the former fixed correlation time) as a fixed range."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (float(value), float(value))
        return value

    @model_validator(mode="after")
    def _ranges(self) -> "SimulationParams":
        for name in (
            "speed_kmh", "direction_deg", "veering_deg_per_hour", "rotation_deg_per_hour", "shear_per_hour",
            "growth_decay_minutes", "cell_lifetime_minutes", "cell_peak_db", "cell_width_km",
        ):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low {lo} exceeds high {hi}")
        for name in ("speed_kmh", "cell_peak_db"):
            if getattr(self, name)[0] < 0:
                raise ValueError(f"{name} must be non-negative")
        for name in ("growth_decay_minutes", "cell_lifetime_minutes", "cell_width_km"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be positive")
        self._check_regimes()
        return self

    def _check_regimes(self) -> None:
        """Regime proportions are usable and every override yields valid parameters."""
        for name, share in self.regimes.items():
            if not (share >= 0 and math.isfinite(share)):
                raise ValueError(f"regimes.{name}: proportion {share} must be finite and non-negative")
            if name not in self.regime_overrides:
                raise ValueError(f"regimes.{name}: no such regime; known: {', '.join(sorted(self.regime_overrides))}")
        if self.regimes and sum(self.regimes.values()) <= 0:
            raise ValueError("regimes: proportions sum to zero")
        for name in self.regime_overrides:
            self.regime_params(name)

    def regime_params(self, regime: str) -> "SimulationParams":
        """A validated copy with ``regime``'s overrides applied and no regimes left to draw.

        Raises
        ------
        ValueError
            For an unknown regime or overrides that are not valid parameters.
        """
        if regime not in self.regime_overrides:
            raise ValueError(f"regime {regime!r}: unknown; known: {', '.join(sorted(self.regime_overrides))}")
        overrides = dict(self.regime_overrides[regime])
        bad = set(overrides) & _NOT_OVERRIDABLE
        unknown = set(overrides) - set(type(self).model_fields)
        if bad or unknown:
            raise ValueError(f"regime_overrides.{regime}: cannot override {', '.join(sorted(bad | unknown))}")
        copy = self.model_copy(update={**overrides, "regimes": {}, "regime_overrides": {}})
        try:  # model_copy does not validate; round-trip so ranges and types are checked
            return type(self).model_validate(copy.model_dump())
        except ValidationError as exc:
            raise ValueError(f"regime_overrides.{regime}: {exc}") from None

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


def _streams(rng_seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per component, all from ``rng_seed``.

    Separate streams keep components apart: switching cells off does not
    change the motion or the noise of the same ``rng_seed``.
    """
    children = np.random.SeedSequence(int(rng_seed)).spawn(len(_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children)}


def draw_regime(params: SimulationParams, rng_seed: int) -> str:
    """The regime that ``simulate_sequence`` draws for ``rng_seed``.

    Depends on ``rng_seed`` and the proportions only (its own random stream),
    so a dataset writer can record or stratify regimes without simulating.
    Names are sorted first, so the order in which a config lists them does not
    matter. ``"base"`` when ``params.regimes`` is empty.
    """
    if not params.regimes:
        return "base"
    names = sorted(params.regimes)
    share = np.array([params.regimes[n] for n in names], dtype=np.float64)
    return str(names[int(_streams(rng_seed)["regime"].choice(len(names), p=share / share.sum()))])


# --------------------------------------------------------------- helpers --


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Unit-variance Gaussian random field with Gaussian correlation of ``scale_px``.

    Filtered in Fourier space (one FFT pair whatever the scale) instead of
    ``scipy.ndimage.gaussian_filter``, whose cost grows with the scale.
    Normalised by the filter's *expected* std, not the realisation's: on a
    domain smaller than the scale the field is a nearly uniform offset with
    unit variance across realisations, as a large-scale field seen through a
    small window is. (Dividing by the sample std instead blew such a field up
    to tens of std.)
    """
    sigma = max(scale_px, 0.5)
    if sigma <= _SMOOTH_FINE_MAX_PX:
        return _periodic_smooth_noise(rng, shape, sigma)
    # Large scales: draw on a coarse grid (sigma/4 per cell) that extends
    # 3 sigma beyond the domain, so the FFT's periodic wrap does not tie
    # opposite edges together nor suppress gradients across the domain, then
    # interpolate the band-limited field to the pixels with separable cubic
    # convolution (4 taps per axis, plain NumPy: no BLAS threads to contend
    # for the cores): cheap whatever the scale.
    step = sigma / 4.0
    pad = 3.0 * sigma
    rows_at, rows_w, n_rows = _cubic_taps(shape[0], pad, step)
    cols_at, cols_w, n_cols = _cubic_taps(shape[1], pad, step)
    field = _periodic_smooth_noise(rng, (n_rows, n_cols), sigma / step)
    field = np.einsum("ik,ikj->ij", rows_w, field[rows_at])
    return np.einsum("jk,ijk->ij", cols_w, field[:, cols_at])


@lru_cache(maxsize=32)
def _cubic_taps(n: int, pad: float, step: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Keys cubic-convolution taps from a coarse grid of spacing ``step`` to ``n`` pixels.

    Pixel ``i`` sits at coarse coordinate ``(i + pad) / step + 1``; the coarse
    grid (returned size) has one spare node before and two after, so every
    stencil fits. Returns the ``(n, 4)`` coarse indices, their weights, and
    the coarse size.
    """
    pos = (np.arange(n, dtype=np.float64) + pad) / step + 1.0
    size = int(math.ceil((n - 1 + 2 * pad) / step)) + 4
    base = np.floor(pos).astype(int)
    at = base[:, None] + np.arange(-1, 3)[None, :]
    d = np.abs(pos[:, None] - at)
    weights = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1, np.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0))
    at.setflags(write=False)
    weights.setflags(write=False)
    return at, weights, size


def _periodic_smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise on a periodic grid, unit expected variance."""
    white = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    transfer = np.exp(-2.0 * (np.pi * sigma) ** 2 * (kx**2 + ky**2))
    field = np.fft.irfft2(np.fft.rfft2(white) * transfer, s=shape)
    kx_full = np.fft.fftfreq(shape[1])[None, :]
    expected_var = np.mean(np.exp(-4.0 * (np.pi * sigma) ** 2 * (kx_full**2 + ky**2)))
    return field / math.sqrt(expected_var)


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


@dataclass
class _Motion:
    """The sequence's motion, in pixels per step on the unpadded grid.

    Uniform flow (veering with time) + rotation about ``centre`` + linear
    shear across the initial flow direction through ``centre`` + a smooth
    perturbation relative to the speed. Velocities are in pysteps order
    (x = columns, then y = rows; rows grow southwards on north-up grids).
    """

    speed_px: float
    direction: float  # rad, clockwise from north, the direction moved towards
    veer: float  # rad per step
    omega: float  # rad per step, counterclockwise on the map
    shear: float  # 1 per step, counterclockwise vorticity
    centre: tuple[float, float]  # (row, col) on the unpadded grid
    pert_std: float
    perturbation: np.ndarray | None = None  # (2, H, W) on the padded grid

    def deterministic(self, rows: np.ndarray, cols: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(u, v)`` of the flow without the random perturbation at ``(rows, cols)``.

        Rotation ``omega`` about the centre has map vorticity ``2 omega``; the
        shear's along-flow speed falls to the left of the flow, giving
        vorticity ``shear``.
        """
        heading = self.direction + self.veer * (t - 1)
        dr, dc = rows - self.centre[0], cols - self.centre[1]
        u = self.speed_px * math.sin(heading) + self.omega * dr
        v = -self.speed_px * math.cos(heading) - self.omega * dc
        if self.shear:
            # distance to the left of the flow axis (map sense), in pixels
            left = -dc * math.cos(self.direction) - dr * math.sin(self.direction)
            u = u - self.shear * left * math.sin(self.direction)
            v = v + self.shear * left * math.cos(self.direction)
        return u, v

    def field(self, shape: tuple[int, int], margin: int, t: int) -> np.ndarray:
        """Velocity ``(2, H, W)`` on the padded grid at step ``t`` (pysteps order)."""
        rows = np.arange(shape[0], dtype=np.float64)[:, None] - margin
        cols = np.arange(shape[1], dtype=np.float64)[None, :] - margin
        u, v = self.deterministic(rows, cols, t)
        out = np.stack(np.broadcast_arrays(u, v)).astype(np.float64)
        if self.perturbation is not None and self.pert_std > 0:
            out += self.pert_std * self.speed_px * self.perturbation
        return out


def _draw_motion(rng: np.random.Generator, params: SimulationParams, timestep_minutes: float, px_per_kmh: float, ny: int, nx: int) -> _Motion:
    """Per-sequence motion scalars (the perturbation field comes once the padding is known)."""
    hours = timestep_minutes / 60.0
    return _Motion(
        speed_px=rng.uniform(*params.speed_kmh) * px_per_kmh,
        direction=math.radians(rng.uniform(*params.direction_deg)),
        veer=math.radians(rng.uniform(*params.veering_deg_per_hour)) * hours,
        omega=math.radians(rng.uniform(*params.rotation_deg_per_hour)) * hours,
        shear=rng.uniform(*params.shear_per_hour) * hours,
        centre=(rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)),
        pert_std=params.motion_perturbation,
    )


def _boundary(ny: int, nx: int, every: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of points every ``every`` pixels along the domain's edges, corners included."""
    rows = np.arange(0, ny, every, dtype=np.float64)
    cols = np.arange(0, nx, every, dtype=np.float64)
    edge_r = np.concatenate([rows, rows, np.zeros_like(cols), np.full_like(cols, ny - 1), [ny - 1.0]])
    edge_c = np.concatenate([np.zeros_like(rows), np.full_like(rows, nx - 1), cols, cols, [nx - 1.0]])
    return edge_r, edge_c


def _margin(motion: _Motion, ny: int, nx: int, steps: int) -> int:
    """Padding that holds every backward trajectory from the domain.

    The deterministic flow is integrated back from the domain's boundary (the
    flow map of a region is bounded by that of its boundary) with the same
    midpoint rule as pysteps; the perturbation adds at most its clipped speed
    per step, amplified by the rotation and shear it drifts into.
    """
    edge_r, edge_c = _boundary(ny, nx)
    dr = np.zeros_like(edge_r)
    dc = np.zeros_like(edge_c)
    reach = 0.0
    for t in range(1, steps + 1):
        u, v = motion.deterministic(edge_r + dr, edge_c + dc, t)
        u, v = motion.deterministic(edge_r + dr - v / 2.0, edge_c + dc - u / 2.0, t)
        dr, dc = dr - v, dc - u
        src_r, src_c = edge_r + dr, edge_c + dc
        reach = max(reach, float(np.max(np.maximum.reduce([-src_r, src_r - (ny - 1), -src_c, src_c - (nx - 1), np.zeros_like(src_r)]))))
    spin = (2.0 * abs(motion.omega) + abs(motion.shear)) * steps
    allowance = _PERTURBATION_CLIP * motion.pert_std * motion.speed_px * steps * (1.0 + spin)
    return int(math.ceil(reach + allowance)) + 2


class _Growth:
    """Lagrangian growth/decay: a smooth growth-rate field accumulated with a leak.

    The rate ``r`` (dB per step for rain) is a smooth field whose time series
    at a point is a double-pole AR process: ``q_t = rho q_{t-1} +
    sqrt(1 - rho^2) xi_t`` (unit AR(1) of smooth noise fields) and ``r_t =
    rho r_{t-1} + c q_t``. Unlike an AR(1) rate, whose sign flips at random
    from one step to the next, this rate is smooth in time, so a region that
    grows over 10 minutes keeps growing over the next 30 for a correlation
    time ``tau`` of an hour or more. The accumulated term ``G_t = rho G_{t-1}
    + r_t`` (the leak has the same time) is what is added in dB; its
    stationary std is the requested ``amplitude``, which fixes
    ``c = amplitude (1 - rho^2)^2 / sqrt(1 + 4 rho^2 + rho^4)`` and the rate
    std ``c sqrt(1 + rho^2) / (1 - rho^2)``. By default ``G_0 = 0`` (the first
    frame is the seed) and ``q_0``, ``r_0`` are drawn stationary, so trends
    are under way from the first step while the excursion builds up; with
    ``stationary`` all three are drawn from their joint stationary law
    (:meth:`stationary_covariance`), so the excursion's spread is the same
    at every step.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], scale_px: float, amplitude: float, tau_steps: float,
                 stationary: bool = False) -> None:
        self.rng, self.shape, self.scale_px = rng, shape, scale_px
        self.rho = math.exp(-1.0 / tau_steps)
        x = self.rho**2
        self.amplitude = amplitude
        self.gain = amplitude * (1.0 - x) ** 2 / math.sqrt(1.0 + 4.0 * x + x * x)
        self.rate_std = self.gain * math.sqrt(1.0 + x) / (1.0 - x)
        self.active = amplitude > 0
        self.drive: np.ndarray | None = None
        self.rate: np.ndarray | None = None
        self.total: np.ndarray | None = None
        if self.active:
            if stationary:
                # (q, r, G) = L z with L L^T their stationary covariance: the smooth
                # fields z share the innovations' spatial correlation, as the state does.
                chol = np.linalg.cholesky(self.stationary_covariance())
                z = np.stack([smooth_noise(rng, shape, scale_px) for _ in range(3)])
                self.drive, self.rate, self.total = np.einsum("ij,jyx->iyx", chol, z)
            else:
                self.drive = smooth_noise(rng, shape, scale_px)
                # jointly stationary with the drive: cov(r, q) = c / (1 - rho^2)
                self.rate = self.gain / (1.0 - x) * (self.drive + math.sqrt(x) * smooth_noise(rng, shape, scale_px))
                self.total = np.zeros(shape)

    def stationary_covariance(self) -> np.ndarray:
        """Covariance of the state ``(q, r, G)`` at a point once the process has forgotten its start.

        The state follows ``x_t = A x_{t-1} + b xi_t`` (see :meth:`step`); its
        stationary covariance solves the discrete Lyapunov equation
        ``S = A S A^T + b b^T``. ``S[2, 2]`` is ``amplitude**2`` by the choice
        of the gain.
        """
        from scipy.linalg import solve_discrete_lyapunov

        rho, c = self.rho, self.gain
        s = math.sqrt(1.0 - rho**2)
        a = np.array([[rho, 0.0, 0.0], [c * rho, rho, 0.0], [c * rho, rho, rho]])
        b = np.array([s, c * s, c * s])
        return solve_discrete_lyapunov(a, np.outer(b, b))

    def step(self) -> None:
        """Advance one step: new drive, smooth rate, accumulated with the leak."""
        if not self.active:
            return
        innovation = smooth_noise(self.rng, self.shape, self.scale_px)
        self.drive = self.rho * self.drive + math.sqrt(1.0 - self.rho**2) * innovation
        self.rate = self.rho * self.rate + self.gain * self.drive
        self.total = self.rho * self.total + self.rate


@dataclass
class _Cell:
    """One convective cell in the Lagrangian frame (padded-grid pixels, steps)."""

    birth: int
    row: float
    col: float
    life_steps: float
    peak: float
    sigma_px: float
    peak_at: float  # fraction of the life at which the cell peaks

    def amplitude(self, t: int) -> float:
        """Amplitude at step ``t``: rises as a sine quarter to the peak, falls as a cosine quarter."""
        s = (t - self.birth) / self.life_steps
        if s <= 0.0 or s >= 1.0:
            return 0.0
        if s < self.peak_at:
            return self.peak * math.sin(0.5 * math.pi * s / self.peak_at)
        return self.peak * math.cos(0.5 * math.pi * (s - self.peak_at) / (1.0 - self.peak_at))


@dataclass
class _Cells:
    """Births (Poisson in time and space) and rendering of the alive cells."""

    rng: np.random.Generator
    params: SimulationParams
    shape: tuple[int, int]
    timestep_minutes: float
    resolution_m: float
    cells: list[_Cell] = dataclass_field(default_factory=list)

    @property
    def births_per_step(self) -> float:
        area = self.shape[0] * self.shape[1] * (self.resolution_m / 1000.0) ** 2
        return self.params.cell_birth_rate * area / 1e4 * self.timestep_minutes / 60.0

    def step(self, t: int) -> None:
        """Draw the cells born at step ``t`` (dead cells are kept: they are part of the record)."""
        p = self.params
        km_px = 1000.0 / self.resolution_m
        for _ in range(int(self.rng.poisson(self.births_per_step))):
            self.cells.append(
                _Cell(
                    birth=t - 1,  # born during the step that ends at t: visible from t on
                    row=self.rng.uniform(0, self.shape[0] - 1),
                    col=self.rng.uniform(0, self.shape[1] - 1),
                    life_steps=self.rng.uniform(*p.cell_lifetime_minutes) / self.timestep_minutes,
                    peak=self.rng.uniform(*p.cell_peak_db),
                    sigma_px=self.rng.uniform(*p.cell_width_km) * km_px / _FWHM_PER_SIGMA,
                    peak_at=self.rng.uniform(0.3, 0.5),
                )
            )

    def spin_up(self) -> None:
        """Draw the cells born before step 0 that may still be alive then: the stationary population.

        Births over the longest lifetime before the start, at the same rate,
        so as many cells are alive (at every stage of their lives) at the
        first step as at any later one.
        """
        longest = math.ceil(self.params.cell_lifetime_minutes[1] / self.timestep_minutes)
        for t in range(1 - longest, 1):
            self.step(t)

    def render(self, t: int) -> np.ndarray | None:
        """The cells' dB field on the padded grid at step ``t`` (None when none is alive)."""
        alive = [c for c in self.cells if c.amplitude(t) > 0.0]
        if not alive:
            return None
        out = np.zeros(self.shape)
        for c in alive:
            reach = _CELL_SIGMAS * c.sigma_px
            r0, r1 = max(0, int(c.row - reach)), min(self.shape[0], int(c.row + reach) + 2)
            c0, c1 = max(0, int(c.col - reach)), min(self.shape[1], int(c.col + reach) + 2)
            if r0 >= r1 or c0 >= c1:
                continue
            rr = (np.arange(r0, r1) - c.row)[:, None]
            cc = (np.arange(c0, c1) - c.col)[None, :]
            out[r0:r1, c0:c1] += c.amplitude(t) * np.exp(-(rr**2 + cc**2) / (2.0 * c.sigma_px**2))
        return out


def _target_values(wet_sorted: np.ndarray, size: int, wet_fraction: float, shift: float, dry_low: float, dry_high: float) -> np.ndarray:
    """Target distribution of ``size`` values: the seed's wet quantiles, shifted.

    ``wet_fraction`` of the values are the seed's (sorted) wet values at
    evenly spaced quantiles, so any output size reproduces the seed's
    distribution; the rest are a latent dry ramp from ``dry_low`` up to (not
    reaching) the threshold ``dry_high``: probability matching gives the dry
    pixels nearest to rain (in the evolving field's order) the values just
    below the threshold, so growth added later widens rain areas at their
    edges. ``shift`` moves wet intensities (dB for rain, K for cloud
    anomalies) but never below the smallest wet value, keeping the wet
    fraction exact. Quantiles come from linear interpolation on the sorted
    values (``np.quantile`` partitions once per quantile, which costs seconds
    for a 640x710 field).
    """
    n_wet = int(round(np.clip(wet_fraction, 0.0, 1.0) * size))
    out = np.linspace(dry_low, dry_high, size - n_wet, endpoint=False)
    out = np.concatenate([out, np.empty(n_wet)])
    if n_wet and wet_sorted.size:
        q = (np.arange(n_wet) + 0.5) / n_wet * (wet_sorted.size - 1)
        vals = np.interp(q, np.arange(wet_sorted.size), wet_sorted)
        out[size - n_wet :] = np.maximum(vals + shift, wet_sorted[0])
    return out


def _soft_ceiling(x: np.ndarray, knee: float, ceiling: float) -> np.ndarray:
    """Values above ``knee`` compressed smoothly (tanh) towards ``ceiling``, never past it."""
    zone = ceiling - knee
    return np.where(x > knee, knee + zone * np.tanh((x - knee) / zone), x)


def _warp(field: np.ndarray, rows: np.ndarray, cols: np.ndarray, cval: float) -> np.ndarray:
    """Bilinear sample of ``field`` at ``(rows, cols)``, as pysteps' semi-Lagrangian step does."""
    from scipy.ndimage import map_coordinates

    return map_coordinates(field, [rows, cols], mode="constant", cval=cval, order=1, prefilter=False)


# ------------------------------------------------------------- simulator --


@overload
def simulate_sequence(
    seed_field: np.ndarray, n_frames: int, timestep_minutes: float, resolution_m: float, rng_seed: int,
    params: SimulationParams | None = ..., kind: Kind = ..., mask: np.ndarray | None = ..., *, return_info: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def simulate_sequence(
    seed_field: np.ndarray, n_frames: int, timestep_minutes: float, resolution_m: float, rng_seed: int,
    params: SimulationParams | None = ..., kind: Kind = ..., mask: np.ndarray | None = ..., *, return_info: Literal[True],
) -> tuple[np.ndarray, dict[str, Any]]: ...


def simulate_sequence(
    seed_field: np.ndarray,
    n_frames: int,
    timestep_minutes: float,
    resolution_m: float,
    rng_seed: int,
    params: SimulationParams | None = None,
    kind: Kind = "rain",
    mask: np.ndarray | None = None,
    *,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
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
        Model parameters (defaults: 5-minute radar). With ``params.regimes``
        one regime is drawn (:func:`draw_regime`) and its overrides applied.
    kind
        ``"rain"`` (dB-transformed rain rate) or ``"brightness_temperature"``
        (cold-cloud anomaly in K; no cells, which are a rain concept).
    mask
        Optional ``(ny, nx)`` bool coverage (True = observed); pixels outside
        do not count for the seed's wet fraction and distribution.
    return_info
        Also return what was drawn (regime, motion, growth time, cells), so a
        dataset can record it: the truth a forecaster is scored against.

    Returns
    -------
    np.ndarray or (np.ndarray, dict)
        ``(n_frames, ny, nx)`` float32: finite, non-negative mm/h for rain,
        K for brightness temperature; with ``return_info`` also a dict with
        ``regime``, ``params`` (the effective parameters), the motion
        (``speed_kmh``, ``direction_deg``, ``veering_deg_per_hour``,
        ``rotation_deg_per_hour``, ``rotation_centre_yx`` in output pixels,
        ``shear_per_hour``, ``velocity_t1``: ``(2, ny, nx)`` px/step in
        pysteps order at the first step), ``growth_decay_minutes``,
        ``growth_rate_std`` and ``growth_decay_std`` (per step, dB for rain),
        ``cells`` (``birth_frame``, ``lifetime_minutes``, ``peak_db``,
        ``peak_at_fraction`` of the life, ``width_km``, and ``y``, ``x``: the
        Lagrangian position in output pixels, i.e. where the cell's rain
        would be without motion, at the seed's positions) and ``margin_px``.

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
    regime = draw_regime(params, rng_seed)
    if params.regimes:
        params = params.regime_params(regime)
    streams = _streams(rng_seed)

    # 1. transform to the simulation space ---------------------------------
    background = None
    if kind == "rain":
        field = np.where(np.isfinite(field), field, 0.0)
        if (field < 0).any():
            raise SimulationError(f"seed field: negative rain rates (min {field.min():.3g} mm/h)")
        x, meta = dB_transform(field, threshold=params.rain_threshold)
        zero, threshold = float(meta["zerovalue"]), float(meta["threshold"])
    elif kind == "brightness_temperature":
        x, background = cloud_anomaly(field, covered, params, resolution_m)
        meta = None
        zero, threshold = 0.0, params.cloud_threshold_k
    else:
        raise SimulationError(f"kind={kind!r}: expected 'rain' or 'brightness_temperature'")
    seed_values = x[covered]
    wet0 = float(np.mean(seed_values > zero))
    if wet0 == 0.0:
        raise SimulationError(f"seed field: no {'rain' if kind == 'rain' else 'cloud'} above threshold to evolve")
    wet_sorted = np.sort(seed_values[seed_values > zero])
    wet_std = float(np.std(wet_sorted)) or 1.0
    dry_low = threshold - _DRY_DEPTH * wet_std

    # 2. motion and padding ------------------------------------------------
    steps = params.spinup_frames + n_frames - 1
    px_per_kmh = timestep_minutes / 60.0 * 1000.0 / resolution_m
    ny, nx = x.shape
    motion = _draw_motion(streams["motion"], params, timestep_minutes, px_per_kmh, ny, nx)
    margin = _margin(motion, ny, nx, steps)
    if margin > 4 * max(ny, nx):
        log.warning("motion needs a %d px margin around %dx%d; capped at %d px (rain entering from beyond is dry)", margin, ny, nx, 4 * max(ny, nx))
        margin = 4 * max(ny, nx)
    xp = np.pad(x, margin, mode="reflect")
    shape = xp.shape
    motion_scale = params.motion_scale_km * 1000.0 / resolution_m
    motion.perturbation = np.clip(
        np.stack([smooth_noise(streams["motion"], shape, motion_scale), smooth_noise(streams["motion"], shape, motion_scale)]),
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
    randstate = np.random.RandomState(int(streams["cascade"].integers(2**31 - 1)))

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

    # 4. Lagrangian growth/decay, cells, slow distribution walk -------------
    tau = float(streams["growth"].uniform(*params.growth_decay_minutes))
    growth = _Growth(
        streams["growth"], shape, params.growth_decay_scale_km * 1000.0 / resolution_m,
        params.growth_decay * wet_std, tau / timestep_minutes, stationary=params.stationary_start,
    )
    cells = _Cells(streams["cells"], params, shape, timestep_minutes, resolution_m) if kind == "rain" and params.cell_birth_rate > 0 else None
    if cells is not None and params.stationary_start:
        cells.spin_up()
    ceiling_db = 10.0 * math.log10(params.max_rain_rate)
    knee = max(ceiling_db - _CEILING_ZONE_DB, float(wet_sorted[-1]))
    ceiling_db = max(ceiling_db, knee + 0.5 * _CEILING_ZONE_DB)
    dist_rho = math.exp(-timestep_minutes / params.distribution_minutes)
    log_wet, shift = 0.0, 0.0
    if params.stationary_start:  # the walks' stationary law: N(0, variability^2)
        log_wet = params.wet_fraction_variability * streams["distribution"].standard_normal()
        shift = params.intensity_variability * streams["distribution"].standard_normal()

    rows, cols = np.meshgrid(np.arange(margin, margin + ny, dtype=np.float64), np.arange(margin, margin + nx, dtype=np.float64), indexing="ij")
    crop = (slice(margin, margin + ny), slice(margin, margin + nx))
    displacement = None
    velocity_t1 = None
    out = np.empty((n_frames, ny, nx), dtype=np.float32)
    for t in range(steps + 1):
        if t > 0:
            if params.evolve:
                eps = noise_cascade()
                for k in range(params.n_cascade_levels):
                    state[k] = iterate_ar_model(state[k], phis[k], eps=eps[k])
            growth.step()
            if cells is not None:
                cells.step(t)
            log_wet = dist_rho * log_wet + math.sqrt(1 - dist_rho**2) * params.wet_fraction_variability * streams["distribution"].standard_normal()
            shift = dist_rho * shift + math.sqrt(1 - dist_rho**2) * params.intensity_variability * streams["distribution"].standard_normal()
            velocity = motion.field(shape, margin, t)
            if velocity_t1 is None:
                velocity_t1 = velocity[(slice(None), *crop)].astype(np.float32)
            _, displacement = extrapolate(None, velocity, 1, displacement_prev=displacement, return_displacement=True)
        if t < params.spinup_frames:
            continue
        extra = growth.total
        if cells is not None:
            bumps = cells.render(t)
            if bumps is not None:
                extra = bumps if extra is None else extra + bumps
        lagrangian = np.sum(state[:, 1] * stds + means, axis=0)
        if displacement is None:
            frame = lagrangian[crop]
            moved_extra = None if extra is None else extra[crop]
        else:
            src_r, src_c = rows + displacement[1][crop], cols + displacement[0][crop]
            frame = _warp(lagrangian, src_r, src_c, np.nan)
            moved_extra = None if extra is None else _warp(extra, src_r, src_c, 0.0)
        frame = np.where(np.isfinite(frame), frame, np.nanmin(frame) if np.isfinite(frame).any() else zero)
        target = _target_values(wet_sorted, frame.size, wet0 * math.exp(log_wet), shift, dry_low, threshold)
        matched = nonparam_match_empirical_cdf(frame, target)
        if moved_extra is not None:
            matched = matched + moved_extra
            if kind == "rain":
                matched = _soft_ceiling(matched, knee, ceiling_db)
        out[t - params.spinup_frames] = _to_physical(matched, kind, meta, background, threshold)
    log.debug(
        "simulated %d frames %dx%d (%s, regime %s): speed %.2f px/step, margin %d px, wet fraction %.3f",
        n_frames, ny, nx, kind, regime, motion.speed_px, margin, wet0,
    )
    if not return_info:
        return out
    info = _info(regime, params, motion, px_per_kmh, timestep_minutes, resolution_m, tau, growth, cells, margin, velocity_t1, (ny, nx))
    return out, info


def _to_physical(x: np.ndarray, kind: Kind, meta: dict | None, background: np.ndarray | None, threshold: float) -> np.ndarray:
    """Simulation space back to physical units: mm/h (dB inverse; below threshold dry) or K."""
    if kind == "rain":
        from pysteps.utils.transformation import dB_transform

        rate, _ = dB_transform(x, metadata=dict(meta or {}), inverse=True)
        return np.clip(rate, 0.0, None)
    return background - np.where(x >= threshold, x, 0.0)


def _info(
    regime: str, params: SimulationParams, motion: _Motion, px_per_kmh: float, timestep_minutes: float, resolution_m: float, tau: float,
    growth: _Growth, cells: _Cells | None, margin: int, velocity_t1: np.ndarray | None, shape: tuple[int, int],
) -> dict[str, Any]:
    """What a sequence drew, in physical units and output pixels."""
    per_hour = 60.0 / timestep_minutes
    if velocity_t1 is None:  # a single frame: the motion it would have had
        velocity_t1 = np.stack(np.broadcast_arrays(*motion.deterministic(
            np.arange(shape[0], dtype=np.float64)[:, None], np.arange(shape[1], dtype=np.float64)[None, :], 1))).astype(np.float32)
    return {
        "regime": regime,
        "params": params.model_dump(mode="json"),
        "speed_kmh": motion.speed_px / px_per_kmh if px_per_kmh else 0.0,
        "direction_deg": math.degrees(motion.direction) % 360.0,
        "veering_deg_per_hour": math.degrees(motion.veer) * per_hour,
        "rotation_deg_per_hour": math.degrees(motion.omega) * per_hour,
        "rotation_centre_yx": motion.centre,
        "shear_per_hour": motion.shear * per_hour,
        "velocity_t1": velocity_t1,
        "growth_decay_minutes": tau,
        "growth_rate_std": growth.rate_std,
        "growth_decay_std": growth.amplitude,
        "cells": [
            {
                "birth_frame": c.birth - params.spinup_frames,
                "lifetime_minutes": c.life_steps * timestep_minutes,
                "peak_db": c.peak,
                "peak_at_fraction": c.peak_at,
                "width_km": c.sigma_px * _FWHM_PER_SIGMA * resolution_m / 1000.0,
                "y": c.row - margin,
                "x": c.col - margin,
            }
            for c in (cells.cells if cells is not None else [])
        ],
        "margin_px": margin,
    }


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
