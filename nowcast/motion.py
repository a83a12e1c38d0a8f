"""Motion and semi-Lagrangian advection: the one place where nowcast moves rain.

Every part of nowcast that moves a field along a motion field goes through
this module, so all of them move rain the same way (docs: SKILL.md,
"Where it lives"):

* the extrapolation baseline (:mod:`nowcast.baselines`),
* the Lagrangian forecaster (:mod:`nowcast.models.lagrangian`): its inputs are
  moved to the analysis time, its outputs to each lead time,
* the training batch builder (:mod:`nowcast.training`), which puts stored
  sequences into the Lagrangian frame of their analysis time.

Motion is estimated with pysteps' optical flow (Lucas-Kanade by default, the
method of the extrapolation baseline) on reflectivity-like decibels
(``10 log10 R``, with a floor for dry pixels), as pysteps recommends: rain
rates are strongly skewed, and optical flow matches intensity patterns far
better on a logarithmic scale. Advection is pysteps' semi-Lagrangian scheme
(``pysteps.extrapolation.semilagrangian``, backward, midpoint rule, bilinear
interpolation). Displacements are computed once per motion field and lead,
then applied to as many fields as needed with the same bilinear
interpolation pysteps uses, so that moving one field ``k`` steps here gives
exactly what ``extrapolate(field, velocity, k)`` gives (tested).

Conventions: a velocity is ``(2, ny, nx)`` (``u`` along x, ``v`` along y) in
pixels per timestep; a displacement of ``k`` steps forward is what pysteps
returns after ``k`` steps (the *backward* trajectory offset: the value at
``x`` after ``k`` steps comes from ``x + D_k``).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: Rain rate (mm/h) below which a pixel is dry for the transform and motion.
RAIN_THRESHOLD = 0.1
#: Decibel value given to dry pixels (below ``10 log10(RAIN_THRESHOLD)`` = -10 dB),
#: as in the pysteps examples; the gap to the threshold keeps rain edges sharp.
DB_ZERO = -15.0
#: Optical-flow methods of pysteps that nowcast accepts by name.
MOTION_METHODS = ("LK", "DARTS", "VET", "proesmans")


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


def motion_field(window: np.ndarray, method: str = "LK", *, tracer: bool = False) -> np.ndarray:
    """Motion ``(2, ny, nx)`` of a window of rain rates, in pixels per timestep.

    A dry (empty) window has no features to track and gives zero motion.

    Parameters
    ----------
    window
        ``(T, ny, nx)`` mm/h, oldest first, ``T >= 2``; NaN counts as dry.
    method
        A pysteps optical-flow method (:data:`MOTION_METHODS`); ``"LK"``
        (Lucas-Kanade) is the extrapolation baseline's.
    tracer
        ``window`` is already a field to track with 0 as "empty" (e.g. the
        normalised cloud-top coldness of an infrared source,
        :func:`nowcast.models.lagrangian.tracer`), not rain rates to take to dBR.
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps import motion

    if method not in MOTION_METHODS:
        raise ValueError(f"unknown motion method {method!r}; valid names: {', '.join(MOTION_METHODS)}")
    if tracer:
        db = np.nan_to_num(np.asarray(window, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if not np.any(db > 0.0):
            return np.zeros((2, *window.shape[1:]))
    else:
        db = to_db(window)
        if not np.any(db > DB_ZERO):
            return np.zeros((2, *window.shape[1:]))
    kwargs = {} if method == "DARTS" else {"verbose": False}
    velocity = motion.get_method(method)(db, **kwargs)
    return np.where(np.isfinite(velocity), velocity, 0.0)


def displacements(velocity: np.ndarray, steps: int) -> np.ndarray:
    """Cumulative semi-Lagrangian displacements ``(steps, 2, ny, nx)`` for 1 .. ``steps`` timesteps.

    ``velocity`` moves rain forward in time; pass ``-velocity`` for the
    backward trajectories (where a pixel's rain will be ``k`` steps later).
    This is pysteps' scheme (``extrapolation.semilagrangian``, one midpoint
    iteration per step, bilinear velocity sampled with ``mode="nearest"``)
    written as one loop that keeps each step's displacement: the same
    ``map_coordinates`` calls on the same numbers, so the result is the
    displacement one ``extrapolate(..., k, return_displacement=True)`` call
    returns for every ``k`` (tested bit for bit). Why not call pysteps step
    by step (:func:`displacements_pysteps`): each call re-checks the inputs,
    rebuilds the grid and repeats the previous step's last velocity sample,
    which doubled the cost (80 against 40 ms per step on 512x512,
    ``benchmarks/displacements.py``).
    """
    from scipy.ndimage import map_coordinates

    velocity = np.asarray(velocity, dtype=np.float64)
    if velocity.ndim != 3 or velocity.shape[0] != 2:
        raise ValueError(f"velocity must be (2, ny, nx), got shape {velocity.shape}")
    if not np.all(np.isfinite(velocity)):
        raise ValueError("velocity contains non-finite values")
    out = np.empty((int(steps), *velocity.shape), dtype=np.float64)
    xy = _coords(velocity.shape[1:])

    def sample(displacement: np.ndarray) -> np.ndarray:
        warped = xy + displacement
        rows_cols = [warped[1], warped[0]]
        return np.stack([map_coordinates(velocity[c], rows_cols, mode="nearest", order=1, prefilter=False)
                         for c in (0, 1)])

    displacement = np.zeros_like(velocity)
    increment = velocity.copy()
    for k in range(int(steps)):
        increment = sample(displacement - increment / 2.0)  # velocity at the midpoint of the step
        displacement = displacement - increment
        increment = sample(displacement)
        out[k] = displacement
    return out


def displacements_pysteps(velocity: np.ndarray, steps: int) -> np.ndarray:
    """:func:`displacements` by calling ``pysteps.extrapolation.semilagrangian.extrapolate`` once per step.

    The reference the fast loop is tested against (and timed beside).
    """
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.extrapolation.semilagrangian import extrapolate

    velocity = np.asarray(velocity, dtype=np.float64)
    out = np.empty((int(steps), *velocity.shape), dtype=np.float64)
    displacement = None
    for k in range(int(steps)):
        _, displacement = extrapolate(None, velocity, 1, displacement_prev=displacement, return_displacement=True)
        out[k] = displacement
    return out


def _coords(shape: tuple[int, int]) -> np.ndarray:
    y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return np.stack([x, y]).astype(np.float64)


def warp(field: np.ndarray, displacement: np.ndarray, outval: float) -> np.ndarray:
    """Value at ``x`` taken from ``x + displacement`` (bilinear, ``outval`` outside), as pysteps does."""
    from scipy.ndimage import map_coordinates

    field = np.asarray(field, dtype=np.float64)
    xy = _coords(field.shape) + displacement
    return map_coordinates(field, [xy[1], xy[0]], mode="constant", cval=outval, order=1, prefilter=False)


def advect_leads(fields: np.ndarray, velocity: np.ndarray, outval: float = DB_ZERO,
                 disp: np.ndarray | None = None) -> np.ndarray:
    """Move field ``k`` (``k = 1 .. K``) forward by ``k`` steps along ``velocity``.

    Parameters
    ----------
    fields
        ``(K, ny, nx)``: the field to show at each lead in the Lagrangian
        frame of the analysis time (for extrapolation, the same field ``K``
        times).
    velocity
        ``(2, ny, nx)`` pixels per step.
    outval
        Value of pixels whose trajectory starts outside the domain.
    disp
        The ``displacements(velocity, K)`` if already computed (they cost
        more than the warps: pass them when advecting several things).

    Returns
    -------
    numpy.ndarray
        ``(K, ny, nx)`` float64; with all fields equal this is exactly
        ``pysteps.extrapolation.semilagrangian.extrapolate(field, velocity, K)``.
    """
    fields = np.asarray(fields, dtype=np.float64)
    disp = displacements(velocity, fields.shape[0]) if disp is None else disp
    return np.stack([warp(f, d, outval) for f, d in zip(fields, disp)])


def to_lagrangian(frames: np.ndarray, offsets: np.ndarray | list[int], velocity: np.ndarray,
                  outval: float = DB_ZERO, disp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move frames to the analysis time along ``velocity`` (the Lagrangian frame).

    Parameters
    ----------
    frames
        ``(T, ny, nx)``: frame ``i`` was observed ``offsets[i]`` steps after
        the analysis time (negative: an input before it; 0: the analysis
        frame itself; positive: a later frame, e.g. a training target).
    offsets
        Integer steps of each frame relative to the analysis time.
    velocity
        ``(2, ny, nx)`` pixels per step, assumed steady.
    outval
        Value of pixels whose Lagrangian source lies outside the domain.
    disp
        ``displacements(velocity, K)`` with ``K`` at least the oldest input's
        age, if already computed: a forecast needs the same ones for its
        leads (the first steps ahead are the steps the inputs are moved).

    Returns
    -------
    lagrangian, valid
        ``(T, ny, nx)`` float64 frames in the analysis time's Lagrangian
        frame (a frame ``j`` steps old is advected ``j`` steps forward, a
        frame ``k`` steps ahead ``k`` steps backward), and a bool mask of the
        pixels whose source lies inside the domain.
    """
    frames = np.asarray(frames, dtype=np.float64)
    offsets = [int(o) for o in offsets]
    if len(offsets) != frames.shape[0]:
        raise ValueError(f"{len(offsets)} offsets for {frames.shape[0]} frames")
    back = max([-o for o in offsets if o < 0], default=0)
    ahead = max([o for o in offsets if o > 0], default=0)
    if disp is not None and back and disp.shape[0] < back:
        raise ValueError(f"{disp.shape[0]} displacement steps given, the oldest frame is {back} steps old")
    forward_disp = (disp if disp is not None else displacements(velocity, back)) if back else None  # moves old frames to now
    backward_disp = displacements(-np.asarray(velocity), ahead) if ahead else None  # pulls later frames back
    ones = np.ones(frames.shape[1:])
    out = np.empty_like(frames)
    valid = np.ones(frames.shape, dtype=bool)
    for i, (frame, o) in enumerate(zip(frames, offsets)):
        if o == 0:
            out[i] = frame
            continue
        disp = forward_disp[-o - 1] if o < 0 else backward_disp[o - 1]
        out[i] = warp(frame, disp, outval)
        valid[i] = warp(ones, disp, 0.0) > 0.5
    return out, valid


def unknown_mask(nodata: np.ndarray, velocity: np.ndarray, leads: int, disp: np.ndarray | None = None) -> np.ndarray:
    """Where an advected forecast has no trustworthy source (``(leads, ny, nx)`` bool).

    The data mask is advected like the field (outside the domain counts as no
    data): a forecast pixel whose source is a no-data pixel, or lies outside
    the domain, is unknown rather than dry.
    """
    valid = (~np.asarray(nodata, dtype=bool)).astype(np.float64)
    moved = advect_leads(np.repeat(valid[None], int(leads), axis=0), velocity, outval=0.0, disp=disp)
    return ~(moved > 0.5)


# ------------------------------------------------------------------ batched (torch)
# The training batch builder moves thousands of frames per minute; scipy's
# map_coordinates (~0.7 ms per 80x80 field) made it slower than the network
# step. These are the same scheme (pysteps' midpoint semi-Lagrangian
# displacements, bilinear interpolation, velocity clamped at the border,
# ``outval`` for sources outside the domain) on whole batches with
# ``torch.nn.functional.grid_sample``; they agree with the scipy path to
# float32 rounding (tested). Forecasts keep the scipy path, which is
# pysteps' own.
def _sample(fields, xy, *, border: bool):
    """Bilinear samples of ``fields`` ``(B, C, H, W)`` at pixel coordinates ``xy`` ``(B, 2, H, W)`` (x, y)."""
    import torch
    import torch.nn.functional as F

    H, W = fields.shape[-2:]
    gx = 2.0 * xy[:, 0] / max(W - 1, 1) - 1.0
    gy = 2.0 * xy[:, 1] / max(H - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(fields, grid, mode="bilinear", padding_mode="border" if border else "zeros", align_corners=True)


def _base_coords(B: int, H: int, W: int, like):
    import torch

    y, x = torch.meshgrid(torch.arange(H, dtype=like.dtype), torch.arange(W, dtype=like.dtype), indexing="ij")
    return torch.stack([x, y]).expand(B, 2, H, W)


def displacements_torch(velocity, steps: int):
    """:func:`displacements` for a batch: ``(B, 2, H, W)`` -> ``(steps, B, 2, H, W)`` (pysteps' midpoint rule)."""
    import torch

    B, _, H, W = velocity.shape
    base = _base_coords(B, H, W, velocity)
    disp = torch.zeros_like(velocity)
    inc = velocity.clone()
    out = []
    for _ in range(int(steps)):
        inc = _sample(velocity, base + disp - inc / 2.0, border=True)
        disp = disp - inc
        inc = _sample(velocity, base + disp, border=True)
        out.append(disp)
    return torch.stack(out) if out else velocity.new_zeros((0, B, 2, H, W))


def warp_torch(fields, displacement, outval: float):
    """:func:`warp` for a batch: ``fields`` ``(B, C, H, W)`` sampled at ``x + displacement``.

    Sources outside the domain get ``outval`` (scipy's ``mode="constant"``:
    no interpolation across the edge); returns ``(values, inside)``.
    """
    B, _, H, W = fields.shape
    xy = _base_coords(B, H, W, fields) + displacement
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= W - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= H - 1)
    values = _sample(fields - outval, xy, border=False) + outval
    return values.where(inside[:, None], values.new_tensor(outval)), inside


def shift_torch(fields, shifts: list[int], velocity, outval: float = DB_ZERO):
    """Move field ``i`` of ``fields`` ``(B, T, H, W)`` by ``shifts[i]`` steps along ``velocity`` ``(B, 2, H, W)``.

    A positive shift moves rain forward in time, a negative one backward; 0
    leaves the field as it is. Returns ``(moved, inside)``: the moved fields
    and a bool mask of the pixels whose source lay inside the domain. The
    displacements are computed once per direction, for the largest shift.
    """
    import torch

    shifts = [int(k) for k in shifts]
    forward = displacements_torch(velocity, max([k for k in shifts if k > 0], default=0))
    backward = displacements_torch(-velocity, max([-k for k in shifts if k < 0], default=0))
    out, valid = [], []
    for i, k in enumerate(shifts):
        field = fields[:, i]
        if k == 0:
            out.append(field)
            valid.append(torch.ones_like(field, dtype=torch.bool))
            continue
        values, inside = warp_torch(field[:, None], forward[k - 1] if k > 0 else backward[-k - 1], outval)
        out.append(values[:, 0])
        valid.append(inside)
    return torch.stack(out, dim=1), torch.stack(valid, dim=1)


def to_lagrangian_torch(frames, offsets: list[int], velocity, outval: float = DB_ZERO):
    """:func:`to_lagrangian` for a batch: ``frames`` ``(B, T, H, W)``, ``velocity`` ``(B, 2, H, W)``.

    The frame observed ``o`` steps from the analysis time is moved ``-o`` steps.
    """
    return shift_torch(frames, [-int(o) for o in offsets], velocity, outval)
