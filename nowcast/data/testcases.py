"""Held-out test cases: the real MeteoSwiss composite moved by a *known* motion.

A forecaster trained on sequences "simulated from real seeds" must be scored
on data that it has not seen and whose truth is known exactly. No real radar
time series ships offline, so the test cases take the real MeteoSwiss CHRFO
composite (2024-02-27 09:50 UTC, on the ``swiss-south`` grid: 128x128 at
2 km) and move it with a known motion, as a forecaster's verification would:

* ``swiss-south-rigid``: rotation + translation, no change of intensity. The
  Lagrangian truth is persistent, so a good forecaster must equal
  extrapolation with the right motion here (SKILL.md: "validate on a
  held-out set where the Lagrangian truth is persistent");
* ``swiss-south-growth``: the same motions and windows, with strong
  Lagrangian growth and decay (areas of 20-60 km gaining or losing 1-2 dB
  per 5 min for the whole sequence): a forecaster that learned evolution
  beats extrapolation here.

Frame ``t`` is the seed rotated about the domain centre by ``t`` times the
rotation and translated by ``t`` times the shift (bilinear interpolation;
pixels whose source lies outside the seed are 0 mm/h, so rain enters only
where the seed had rain), multiplied by ``10**(t g / 10)`` where ``g`` is a
growth-rate pattern in dB per step attached to the rain (Lagrangian). The
rain of a case is cut from the moved 128x128 field (a sub-window), so rain
flows into the window from the real field around it.

Conventions: shifts are ``(u, v)`` in pixels per step in pysteps order
(``u`` along columns, eastwards; ``v`` along rows, i.e. *southwards* on the
north-up grid), the order of a pysteps motion field, so a verifier can
compare an estimated motion field directly. Rotation is in degrees per step,
positive counterclockwise on the north-up map.

The stores have the layout of :mod:`pipelines.simulate` (``rain_rate`` with
dims ``(sequence, time, y, x)`` in mm h-1, ``coverage``, window offsets) plus
per-sequence motion parameters; their ``provenance`` is "real field moved by
a known motion". Everything is a pure function of ``seed``.

Usage::

    python -m nowcast.data.testcases --out data/testcases
"""

from __future__ import annotations

import argparse
import logging
import math
import time as _time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nowcast.errors import NowcastError

log = logging.getLogger(__name__)

PROVENANCE = "real field moved by a known motion"
SEED_SAMPLE = "meteoswiss_odim_composite"
REGION = "swiss-south"
TIMESTEP_MINUTES = 5.0
RESOLUTION_M = 2000.0
#: Soft ceiling (mm/h) that Lagrangian growth approaches but never passes.
MAX_RAIN_RATE = 150.0
#: Width (dB) of the ceiling's compression zone below it.
_CEILING_ZONE_DB = 6.0
#: A pixel's truth counts as observed when this fraction of it comes from covered seed pixels.
_VALID = 0.999
#: Window corners are tried on this grid (pixels).
_WINDOW_STEP = 4
#: Minimum share of a window whose source stays inside the observed seed.
_MIN_VALID = 0.95

GrowthPattern = Literal["none", "uniform", "cells"]


@dataclass(frozen=True)
class CaseMotion:
    """One test case's known motion and growth (what the stores record per sequence).

    Attributes
    ----------
    shift_u, shift_v
        Translation in pixels per step, pysteps order (``v`` southwards).
    rotation_deg_per_step
        Rotation about the seed domain's centre, counterclockwise on the map.
    growth_db_per_step
        Largest growth/decay rate of the case's pattern (dB per step).
    growth_seed
        Seed of the growth pattern.
    """

    shift_u: float
    shift_v: float
    rotation_deg_per_step: float
    growth_db_per_step: float
    growth_seed: int

    @property
    def speed_kmh(self) -> float:
        """Translation speed at the test sets' 2 km and 5 min."""
        return math.hypot(self.shift_u, self.shift_v) * RESOLUTION_M / 1000.0 * 60.0 / TIMESTEP_MINUTES

    @property
    def direction_deg(self) -> float:
        """Direction the rain moves towards, clockwise from grid north."""
        return math.degrees(math.atan2(self.shift_u, -self.shift_v)) % 360.0


# ------------------------------------------------------------------ motion --


def move_field(
    field: np.ndarray,
    shift_px: tuple[float, float] = (0.0, 0.0),
    rotation_deg: float = 0.0,
    centre: tuple[float, float] | None = None,
    cval: float = 0.0,
) -> np.ndarray:
    """``field`` rotated about ``centre`` by ``rotation_deg``, then shifted by ``shift_px``.

    Each output pixel ``p`` takes the bilinear value at its source ``q =
    c + R(-angle) (p - shift - c)``; sources outside the field give
    ``cval``. Integer shifts (and quarter turns about a pixel centre)
    sample exactly on pixel centres, so the result equals the field moved
    (no smoothing).

    Parameters
    ----------
    field
        ``(ny, nx)`` array.
    shift_px
        ``(u, v)``: columns and rows (southwards) in pixels, pysteps order.
    rotation_deg
        Counterclockwise on the north-up map (rows grow southwards).
    centre
        ``(row, col)`` of the rotation centre; default the domain centre.
    cval
        Value where the source lies outside ``field``.
    """
    from scipy.ndimage import map_coordinates

    ny, nx = field.shape
    cy, cx = ((ny - 1) / 2.0, (nx - 1) / 2.0) if centre is None else centre
    rows, cols = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    dr = rows - shift_px[1] - cy
    dc = cols - shift_px[0] - cx
    if rotation_deg:
        a = math.radians(rotation_deg)
        cos, sin = math.cos(a), math.sin(a)
        # R(angle) on (col, row) with rows southwards is [[cos, sin], [-sin, cos]]; this is its inverse.
        src_c = cx + cos * dc - sin * dr
        src_r = cy + sin * dc + cos * dr
    else:
        src_c, src_r = cx + dc, cy + dr
    # cos(90 deg) is 6e-17, not 0: snap round-off so that exact moves stay exact at the edges
    src_r, src_c = (np.where(np.abs(a - np.rint(a)) < 1e-9, np.rint(a), a) for a in (src_r, src_c))
    return map_coordinates(np.asarray(field, dtype=np.float64), [src_r, src_c], order=1, mode="constant", cval=cval, prefilter=False)


def growth_rate_field(
    shape: tuple[int, int],
    pattern: GrowthPattern,
    db_per_step: float,
    rng_seed: int = 0,
    resolution_m: float = RESOLUTION_M,
    area_km: tuple[float, float] = (20.0, 60.0),
) -> np.ndarray:
    """Growth-rate pattern (dB per step) attached to the rain at frame 0.

    Parameters
    ----------
    shape
        Grid of the seed.
    pattern
        ``"none"`` (zeros), ``"uniform"`` (``db_per_step`` everywhere) or
        ``"cells"``: Gaussian areas of ``area_km`` full width at half maximum,
        about one per (60 km)^2, each growing or decaying (random sign) at a
        peak rate of 60-100 % of ``|db_per_step|``, summed and clipped to
        ``+-|db_per_step|``; between them the rain is steady. Areas that grow
        beside areas that decay are what extrapolation cannot forecast.
    db_per_step
        Rate of the ``uniform`` pattern, largest rate of ``cells``.
    rng_seed
        Seed of the ``cells`` layout.
    resolution_m
        Grid spacing, turning ``area_km`` into pixels.
    area_km
        Range of the areas' widths.

    Raises
    ------
    NowcastError
        For an unknown pattern.
    """
    if pattern == "none":
        return np.zeros(shape)
    if pattern == "uniform":
        return np.full(shape, float(db_per_step))
    if pattern != "cells":
        raise NowcastError(f"growth_pattern={pattern!r}: expected 'none', 'uniform' or 'cells'")
    rng = np.random.default_rng(rng_seed)
    ny, nx = shape
    km = resolution_m / 1000.0
    n_areas = max(3, int(round(ny * nx * km * km / 60.0**2)))
    rows, cols = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    amp = abs(float(db_per_step))
    out = np.zeros(shape)
    for _ in range(n_areas):
        r0, c0 = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
        sigma = rng.uniform(*area_km) / km / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        peak = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.0) * amp
        out += peak * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2.0 * sigma**2))
    return np.clip(out, -amp, amp)


def _soft_ceiling_db(x: np.ndarray, knee: float, ceiling: float) -> np.ndarray:
    """Values above ``knee`` compressed smoothly towards ``ceiling``, never past it."""
    zone = ceiling - knee
    return np.where(x > knee, knee + zone * np.tanh((x - knee) / zone), x)


def rigid_motion_case(
    field: np.ndarray,
    n_frames: int,
    shift_px_per_step: tuple[float, float] = (0.0, 0.0),
    rotation_deg_per_step: float = 0.0,
    growth_db_per_step: float = 0.0,
    growth_pattern: GrowthPattern = "none",
    rng_seed: int = 0,
    *,
    resolution_m: float = RESOLUTION_M,
    max_rain_rate: float | None = MAX_RAIN_RATE,
) -> np.ndarray:
    """A sequence of the real ``field`` moved by a known motion, with Lagrangian growth.

    Frame ``t`` is ``field * 10**(t g / 10)`` (``g``: :func:`growth_rate_field`
    in dB per step, at the rain's frame-0 position), rotated about the domain
    centre by ``t * rotation_deg_per_step`` and shifted by ``t *
    shift_px_per_step``. Growing rain approaches ``max_rain_rate`` softly (a
    tanh in dB above a knee 6 dB below it, or above the seed's maximum), so
    values stay physical; without growth the frames are the field moved,
    nothing else.

    Parameters
    ----------
    field
        ``(ny, nx)`` rain rate in mm/h; NaN counts as 0.
    n_frames
        Frames returned; frame 0 is ``field``.
    shift_px_per_step
        ``(u, v)`` pixels per step, pysteps order (``v`` southwards).
    rotation_deg_per_step
        Counterclockwise on the north-up map.
    growth_db_per_step, growth_pattern, rng_seed
        The growth-rate pattern (see :func:`growth_rate_field`).
    resolution_m
        Grid spacing (for the pattern's areas in km).
    max_rain_rate
        Soft ceiling in mm/h for growing rain; None: no ceiling.

    Returns
    -------
    np.ndarray
        ``(n_frames, ny, nx)`` float32, finite, non-negative mm/h.

    Raises
    ------
    NowcastError
        For a field that is not 2-D, negative rain, or ``n_frames < 1``.
    """
    rain = np.nan_to_num(np.asarray(field, dtype=np.float64), nan=0.0)
    if rain.ndim != 2:
        raise NowcastError(f"rigid_motion_case: expected a 2-D field, got shape {rain.shape}")
    if (rain < 0).any():
        raise NowcastError(f"rigid_motion_case: negative rain rates (min {rain.min():.3g} mm/h)")
    if n_frames < 1:
        raise NowcastError(f"rigid_motion_case: n_frames={n_frames} must be positive")
    rate = growth_rate_field(rain.shape, growth_pattern, growth_db_per_step, rng_seed, resolution_m)
    grows = bool(np.any(rate != 0.0))
    knee = ceiling = 0.0
    if grows and max_rain_rate is not None:
        ceiling = 10.0 * math.log10(max_rain_rate)
        knee = max(ceiling - _CEILING_ZONE_DB, 10.0 * math.log10(max(float(rain.max()), 1e-3)))
        ceiling = max(ceiling, knee + 0.5 * _CEILING_ZONE_DB)
    out = np.empty((n_frames, *rain.shape), dtype=np.float32)
    u, v = shift_px_per_step
    wet = rain > 0
    for t in range(n_frames):
        lagrangian = rain
        if grows:
            gained = np.where(wet, 10.0 * np.log10(np.where(wet, rain, 1.0)) + t * rate, -np.inf)
            if max_rain_rate is not None:
                gained = _soft_ceiling_db(gained, knee, ceiling)
            lagrangian = np.where(wet, 10.0 ** (gained / 10.0), 0.0)
        out[t] = np.clip(move_field(lagrangian, (t * u, t * v), t * rotation_deg_per_step), 0.0, None)
    return out


# -------------------------------------------------------------- test sets --


def draw_motions(
    n_cases: int,
    seed: int = 0,
    speed_px_per_step: tuple[float, float] = (0.5, 3.0),
    max_rotation_deg_per_step: float = 1.0,
    growth_db_per_step: tuple[float, float] = (1.0, 2.0),
) -> list[CaseMotion]:
    """``n_cases`` motions: a speed in ``speed_px_per_step`` in any direction,
    a rotation within ``+-max_rotation_deg_per_step``, a growth rate in
    ``growth_db_per_step``.

    At 2 km and 5 min, 1 px/step is 24 km/h: the default 0.5-3 px/step is
    12-72 km/h (the simulator trains on 0-60 km/h). The growth rate is drawn
    for every case, so the rigid and growth sets share their motions and
    windows and differ only by the growth.
    """
    rng = np.random.default_rng([seed, 1])
    motions = []
    for _ in range(n_cases):
        speed = rng.uniform(*speed_px_per_step)
        direction = math.radians(rng.uniform(0.0, 360.0))
        motions.append(
            CaseMotion(
                shift_u=speed * math.sin(direction),
                shift_v=-speed * math.cos(direction),
                rotation_deg_per_step=float(rng.uniform(-max_rotation_deg_per_step, max_rotation_deg_per_step)),
                growth_db_per_step=float(rng.uniform(*growth_db_per_step)),
                growth_seed=int(rng.integers(2**31 - 1)),
            )
        )
    return motions


def _moved_coverage(mask: np.ndarray, motion: CaseMotion, n_frames: int) -> np.ndarray:
    """``(n_frames, ny, nx)`` True where a frame's pixel comes wholly from observed seed pixels."""
    m = mask.astype(np.float64)
    return np.stack([
        move_field(m, (t * motion.shift_u, t * motion.shift_v), t * motion.rotation_deg_per_step) >= _VALID
        for t in range(n_frames)
    ])


def choose_window(
    frames: np.ndarray, valid: np.ndarray, size: int, min_wet_fraction: float = 0.05, threshold: float = 0.1
) -> tuple[int, int]:
    """Corner ``(y0, x0)`` of a ``size`` window that has rain in every frame.

    Corners on a 4-pixel grid; among windows whose truth is observed (source
    inside the seed's coverage) on at least 95 % of their pixels in every
    frame, the one whose driest frame is wettest; without any such window,
    the best product of the two. A warning is logged when the driest frame
    has less than ``min_wet_fraction`` rain, because a dry test case scores
    nothing.
    """
    _, ny, nx = frames.shape
    if size > ny or size > nx:
        raise NowcastError(f"window size {size}: larger than the frames {ny}x{nx}")
    wet = frames >= threshold
    best, best_key = (0, 0), (-1.0, -1.0)
    for y0 in range(0, ny - size + 1, _WINDOW_STEP):
        for x0 in range(0, nx - size + 1, _WINDOW_STEP):
            sl = (slice(None), slice(y0, y0 + size), slice(x0, x0 + size))
            wet_min = float(wet[sl].mean(axis=(1, 2)).min())
            valid_min = float(valid[sl].mean(axis=(1, 2)).min())
            key = (1.0, wet_min) if valid_min >= _MIN_VALID else (0.0, wet_min * valid_min)
            if key > best_key:
                best, best_key = (y0, x0), key
    if best_key[1] < min_wet_fraction:
        log.warning("no %dx%d window keeps %.0f%% rain in every frame; the best keeps %.1f%%", size, size, 100 * min_wet_fraction, 100 * best_key[1])
    return best


def make_cases(
    n_cases: int = 24, frames: int = 16, size: int = 96, seed: int = 0, growth_pattern: GrowthPattern = "cells"
) -> dict[str, Any]:
    """The cases of both sets in memory (what :func:`make_test_sets` writes).

    Returns
    -------
    dict
        ``rigid`` and ``growth``: ``(n_cases, frames, size, size)`` float32
        mm/h; ``coverage`` ``(n_cases, size, size)`` bool; ``growth_rate``
        ``(n_cases, size, size)`` dB per step at frame-0 positions;
        ``motions`` (:class:`CaseMotion`); ``windows`` ``(y0, x0)``;
        ``centres`` ``(row, col)`` of the rotation centre in window pixels at
        frame 0; ``seed`` (the :class:`nowcast.data.seeds.Seed`).
    """
    from nowcast.data.seeds import load_seed

    seed_field = load_seed(SEED_SAMPLE, region=REGION)
    if abs(seed_field.resolution_m - RESOLUTION_M) > 1.0:
        raise NowcastError(f"seed {SEED_SAMPLE} on {REGION}: {seed_field.resolution_m} m cells, expected {RESOLUTION_M}")
    rain = np.nan_to_num(seed_field.values.astype(np.float64), nan=0.0)
    ny, nx = rain.shape
    motions = draw_motions(n_cases, seed)
    out: dict[str, Any] = {"rigid": [], "growth": [], "coverage": [], "growth_rate": [], "windows": [], "centres": []}
    for m in motions:
        rigid = rigid_motion_case(rain, frames, (m.shift_u, m.shift_v), m.rotation_deg_per_step)
        grown = rigid_motion_case(rain, frames, (m.shift_u, m.shift_v), m.rotation_deg_per_step, m.growth_db_per_step, growth_pattern, m.growth_seed)
        valid = _moved_coverage(seed_field.mask, m, frames)
        y0, x0 = choose_window(rigid, valid, size)
        win = (slice(y0, y0 + size), slice(x0, x0 + size))
        out["rigid"].append(rigid[(slice(None), *win)])
        out["growth"].append(grown[(slice(None), *win)])
        out["coverage"].append(valid[(slice(None), *win)].all(axis=0))
        out["growth_rate"].append(growth_rate_field((ny, nx), growth_pattern, m.growth_db_per_step, m.growth_seed)[win])
        out["windows"].append((y0, x0))
        out["centres"].append(((ny - 1) / 2.0 - y0, (nx - 1) / 2.0 - x0))
    for key in ("rigid", "growth", "coverage", "growth_rate"):
        out[key] = np.stack(out[key])
    out["growth_rate"] = out["growth_rate"].astype(np.float32)
    out["motions"] = motions
    out["seed"] = seed_field
    return out


def _dataset(name: str, values: np.ndarray, cases: dict[str, Any], growth: bool, growth_pattern: str, size: int, seed: int) -> Any:
    """The xarray Dataset of one set, in the layout of pipelines.simulate's stores."""
    import xarray as xr

    motions: list[CaseMotion] = cases["motions"]
    n, frames = values.shape[:2]
    seq = ("sequence",)
    lead = np.arange(frames) * np.timedelta64(int(round(TIMESTEP_MINUTES * 60)), "s")
    what = (
        f"Lagrangian growth and decay ('{growth_pattern}' pattern, up to +-1-2 dB per 5 min, persistent over the sequence)"
        if growth else "no change of intensity (Lagrangian persistence)"
    )
    seed_field = cases["seed"]
    per_seq = {
        "shift_u": (np.array([m.shift_u for m in motions]), "eastward shift (pysteps u, columns)", "px step-1"),
        "shift_v": (np.array([m.shift_v for m in motions]), "southward shift (pysteps v, rows)", "px step-1"),
        "speed_kmh": (np.array([m.speed_kmh for m in motions]), "translation speed", "km h-1"),
        "direction_deg": (np.array([m.direction_deg for m in motions]), "direction moved towards, clockwise from grid north", "degree"),
        "rotation_deg_per_step": (np.array([m.rotation_deg_per_step for m in motions]), "rotation about rotation_centre, counterclockwise on the map", "degree step-1"),
        "rotation_centre_y": (np.array([c[0] for c in cases["centres"]]), "row of the rotation centre at frame 0 (moves with the shift)", "px"),
        "rotation_centre_x": (np.array([c[1] for c in cases["centres"]]), "column of the rotation centre at frame 0 (moves with the shift)", "px"),
        "growth_db_per_step": (np.array([m.growth_db_per_step if growth else 0.0 for m in motions]), "largest Lagrangian growth/decay rate", "dB step-1"),
        "window_y0": (np.array([w[0] for w in cases["windows"]], dtype=np.int32), "window's first row in the seed grid", "px"),
        "window_x0": (np.array([w[1] for w in cases["windows"]], dtype=np.int32), "window's first column in the seed grid", "px"),
    }
    data_vars: dict[str, Any] = {
        "rain_rate": (
            ("sequence", "time", "y", "x"), values.astype(np.float32),
            {"units": "mm h-1", "standard_name": "rainfall_rate", "long_name": f"rain rate ({PROVENANCE})"},
        ),
        "coverage": (
            ("sequence", "y", "x"), cases["coverage"].astype(np.uint8),
            {"long_name": "truth observed in every frame (source inside the seed's coverage)", "flag_values": [0, 1]},
        ),
        "growth_rate": (
            ("sequence", "y", "x"), cases["growth_rate"] if growth else np.zeros_like(cases["growth_rate"]),
            {"units": "dB step-1", "long_name": "Lagrangian growth rate of the rain at its frame-0 position"},
        ),
    }
    for key, (vals, long_name, units) in per_seq.items():
        data_vars[key] = (seq, vals, {"long_name": long_name, "units": units})
    ds = xr.Dataset(
        data_vars,
        coords={"sequence": np.arange(n), "time": ("time", lead, {"long_name": "time since the sequence's first frame"})},
        attrs={
            "Conventions": "CF-1.8",
            "title": f"{name}: held-out test cases, the real MeteoSwiss composite moved by a known rigid motion "
            f"(rotation + translation) with {what}",
            "provenance": PROVENANCE,
            "domain": REGION,
            "split": "test",
            "seed_sample": SEED_SAMPLE,
            "seed_file": seed_field.source_file,
            "seed_product": seed_field.product,
            "seed_crs_wkt": seed_field.crs_wkt,
            "seed_shape": list(seed_field.shape),
            "kind": "rain",
            "units": "mm h-1",
            "timestep_minutes": TIMESTEP_MINUTES,
            "resolution_m": RESOLUTION_M,
            "crop_size": size,
            "rng_seed": seed,
            "growth_pattern": growth_pattern if growth else "none",
            "motion_convention": "frame t = seed x 10**(t growth_rate/10), rotated about the seed domain centre by t "
            "rotation_deg_per_step (counterclockwise on the map), then shifted by t (shift_u, shift_v) px "
            "(pysteps order: u eastwards along columns, v southwards along rows); 0 mm/h enters from outside the seed",
            "history": f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} nowcast.data.testcases",
            "source": "nowcast.data.testcases",
        },
    )
    ds["rain_rate"].encoding["chunks"] = (1, frames, values.shape[2], values.shape[3])
    ds["time"].encoding.update(units="minutes", dtype="int32")
    return ds


def _write(ds: Any, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(path, mode="w", consolidated=True)
    return path


def make_test_sets(
    out_dir: str | Path,
    frames: int = 16,
    n_cases: int = 24,
    size: int = 96,
    crop_size: int | None = 64,
    seed: int = 0,
    growth_pattern: GrowthPattern = "cells",
) -> dict[str, Path]:
    """Write the known-motion test sets of the real composite as Zarr stores.

    Parameters
    ----------
    out_dir
        Folder of the stores ``swiss-south-rigid.zarr`` and
        ``swiss-south-growth.zarr`` (and their ``-64`` crops).
    frames
        Frames per case (e.g. 4 inputs + 12 leads).
    n_cases
        Cases per set; each has its own motion and window.
    size
        Side of the windows cut from the moved 128x128 field.
    crop_size
        Also write ``{name}-{crop_size}`` stores of crops for a smaller
        forecast window (:func:`crop_test_set`); None: do not.
    seed
        Seed of the motions and growth patterns.
    growth_pattern
        Pattern of the growth set (see :func:`growth_rate_field`).

    Returns
    -------
    dict
        Set name -> store path.
    """
    started = _time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = make_cases(n_cases, frames, size, seed, growth_pattern)
    written: dict[str, Path] = {}
    for name, key, growth in ((f"{REGION}-rigid", "rigid", False), (f"{REGION}-growth", "growth", True)):
        ds = _dataset(name, cases[key], cases, growth, growth_pattern, size, seed)
        written[name] = _write(ds, out_dir / f"{name}.zarr")
        if crop_size is not None and crop_size < size:
            cropped = crop_test_set(ds, crop_size)
            written[f"{name}-{crop_size}"] = _write(cropped, out_dir / f"{name}-{crop_size}.zarr")
    log.info(
        "%d test sets of %d cases x %d frames (%s) in %.1f s -> %s",
        len(written), n_cases, frames, PROVENANCE, _time.perf_counter() - started, out_dir,
    )
    return written


def crop_test_set(ds: Any, size: int = 64, min_wet_fraction: float = 0.05) -> Any:
    """Crops of a test set for a smaller forecast window, each with rain in every frame.

    Per sequence the ``size`` window (corners on a 4-pixel grid) is chosen as
    in :func:`choose_window`: observed truth on 95 % of it, its driest frame
    as wet as possible. Window offsets and the rotation centre are moved to
    the crop; the title and attrs say it is a crop.

    Parameters
    ----------
    ds
        An opened test set (``xarray.Dataset``) or the path of its store.
    size
        Side of the crops.
    min_wet_fraction
        A warning is logged for a crop whose driest frame has less rain.
    """
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        ds = xr.open_zarr(ds)
    rain = np.asarray(ds["rain_rate"].values)
    coverage = np.asarray(ds["coverage"].values).astype(bool)
    n, frames = rain.shape[:2]
    pieces = []
    for i in range(n):
        valid = np.broadcast_to(coverage[i], rain[i].shape)
        y0, x0 = choose_window(rain[i], valid, size, min_wet_fraction)
        piece = ds.isel(sequence=[i], y=slice(y0, y0 + size), x=slice(x0, x0 + size))
        piece["window_y0"] = piece["window_y0"] + y0
        piece["window_x0"] = piece["window_x0"] + x0
        piece["rotation_centre_y"] = piece["rotation_centre_y"] - y0
        piece["rotation_centre_x"] = piece["rotation_centre_x"] - x0
        pieces.append(piece.load())
    out = xr.concat(pieces, dim="sequence", combine_attrs="override")
    for name in out.data_vars:
        out[name].attrs = dict(ds[name].attrs)
        out[name].encoding = {}
    out.attrs = {**ds.attrs, "title": f"{ds.attrs.get('title', '')} ({size}x{size} crops with rain in every frame)", "crop_size": size}
    out["rain_rate"].encoding["chunks"] = (1, frames, size, size)
    out["time"].encoding.update(units="minutes", dtype="int32")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m nowcast.data.testcases --out DIR [...]``."""
    parser = argparse.ArgumentParser(description=f"Write held-out test sets: the {PROVENANCE}.")
    parser.add_argument("--out", required=True, type=Path, help="folder of the Zarr stores")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--size", type=int, default=96, help="window cut from the 128x128 field")
    parser.add_argument("--crop", type=int, default=64, help="also write crops of this size (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--growth-pattern", choices=["uniform", "cells"], default="cells")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        written = make_test_sets(args.out, args.frames, args.cases, args.size, args.crop or None, args.seed, args.growth_pattern)
    except NowcastError as exc:
        log.error("%s", exc)
        return 2
    for name, path in written.items():
        log.info("%s: %s", name, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
