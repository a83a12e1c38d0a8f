"""The Lagrangian frame: motion is pysteps' job, growth and decay the network's.

A forecaster in this frame (docs: SKILL.md; L-CNN, Ritvanen et al. 2023;
LUPIN, Pavlik et al. 2024) separates *motion* from *evolution*:

1. the motion field of the input window comes from pysteps' optical flow
   (:func:`nowcast.motion.motion_field`, the extrapolation baseline's method);
2. every input frame is moved to the analysis time (the newest frame's time)
   along it (:func:`nowcast.motion.to_lagrangian`): in this frame rain no
   longer moves, what changes is growth and decay;
3. the recurrent network, on decibels of rain rate (the ``db``
   normalisation), returns per lead the *change* relative to the analysis
   frame (a residual predictor whose head starts at zero);
4. the Lagrangian field of each lead is advected to the lead time with the
   semi-Lagrangian scheme (:func:`nowcast.motion.advect_leads`).

An untrained model therefore forecasts exactly what pysteps extrapolation
forecasts (tested), no-coverage cells and inflow through the boundary are
unknown exactly where extrapolation's are, and a dry window stays dry. The
same transform builds the training batches from stored sequences and their
stored motion (:func:`training_sample`), so the network sees in training what
it sees in a forecast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nowcast.errors import ForecastError
from nowcast.models.normalization import Normaliser
from nowcast.motion import (
    advect_leads,
    displacements,
    from_db,
    motion_field,
    to_db,
    to_lagrangian,
    unknown_mask,
)

#: ``network(x (T, h, w) normalised Lagrangian inputs, leads) -> (leads, h, w)`` normalised changes.
ChangeNetwork = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class LagrangianWindow:
    """An input window moved to its analysis time.

    Attributes
    ----------
    velocity
        ``(2, ny, nx)`` pixels per step.
    db
        ``(T, ny, nx)`` Lagrangian frames in dB (dry = the normaliser's ``zerovalue``).
    valid
        ``(T, ny, nx)`` bool: the frame's Lagrangian source lies inside the domain.
    """

    velocity: np.ndarray
    db: np.ndarray
    valid: np.ndarray


def db_params(normaliser: Normaliser) -> tuple[float, float, float]:
    """``(threshold mm/h, zerovalue dB, scale dB)`` of a ``db`` normaliser."""
    if normaliser.kind != "db":
        raise ValueError(f"the Lagrangian frame needs a 'db' normalisation, not {normaliser.kind!r}")
    p = normaliser.params
    return p["threshold"], p["zerovalue"], p["scale"]


#: Normalisations the Lagrangian frame can move fields in (rain in dBR; IR as cloud-top coldness).
LAGRANGIAN_KINDS = ("db", "brightness_temperature")


def tracer(frames: np.ndarray, normaliser: Normaliser):
    """The field the Lagrangian frame moves, its "empty" inflow value, and the map to network space.

    Rain (``db``): dBR, dry = the normaliser's ``zerovalue`` (as extrapolation
    moves it), then ``(dBR - zerovalue) / scale``. Infrared
    (``brightness_temperature``): the normalised coldness
    ``(reference - T) / scale`` itself (cloud tops high, like heavy rain),
    with the reference temperature (0) flowing in; it is linear, so moving it
    in network space is moving the temperatures. NaN (no data) becomes the
    empty value; the caller masks it.

    Returns
    -------
    field, empty, to_network
        ``field`` float64 like ``frames``; ``to_network`` maps moved fields
        (arrays or tensors) to what the network sees.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if normaliser.kind == "db":
        threshold, zero, scale = db_params(normaliser)
        return to_db(np.nan_to_num(frames, nan=0.0), threshold=threshold, zerovalue=zero), zero, lambda f: (f - zero) / scale
    if normaliser.kind == "brightness_temperature":
        with np.errstate(invalid="ignore"):
            field = np.nan_to_num(normaliser.forward(frames).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return field, 0.0, lambda f: f
    raise ValueError(f"the Lagrangian frame moves {', '.join(LAGRANGIAN_KINDS)} fields, not {normaliser.kind!r}")


def lagrangian_window(window: np.ndarray, normaliser: Normaliser, velocity: np.ndarray | None = None,
                      motion_method: str = "LK", disp: np.ndarray | None = None) -> LagrangianWindow:
    """Move an input window (``(T, ny, nx)`` mm/h, NaN = dry) to its newest frame's time.

    ``disp``: the forward ``displacements(velocity, K)``, ``K >= T - 1``, if
    the caller has them (only with ``velocity``).
    """
    threshold, zero, _ = db_params(normaliser)
    window = np.asarray(window, dtype=np.float32)
    if velocity is None:
        if disp is not None:
            raise ValueError("displacements without the velocity they were computed from")
        velocity = motion_field(window, motion_method)
    db = to_db(window, threshold=threshold, zerovalue=zero)
    n = window.shape[0]
    lag, valid = to_lagrangian(db, list(range(-(n - 1), 1)), velocity, outval=zero, disp=disp)
    return LagrangianWindow(np.asarray(velocity), lag, valid)


def normalise_db(db: np.ndarray, normaliser: Normaliser) -> np.ndarray:
    """dB -> the network's space (float32): dry 0, 1 mm/h ``-zerovalue / scale``."""
    _, zero, scale = db_params(normaliser)
    return ((np.asarray(db, dtype=np.float64) - zero) / scale).astype(np.float32)


@dataclass(frozen=True)
class PreparedWindow:
    """A rain window moved to its analysis time, ready to be forecast under any change (:func:`prepare`).

    Everything a Lagrangian rain forecast computes before and independently
    of the network's change: the motion, the displacements shared by inputs
    and leads, the analysis frame in dB, the network's inputs, and the cells
    extrapolation would not know. :func:`finish` turns a change into the
    forecast; :func:`forecast` is the two in a row.
    """

    leads: int
    analysis_db: np.ndarray
    inputs: np.ndarray
    velocity: np.ndarray
    disp: np.ndarray
    unknown: np.ndarray
    wet: bool
    normaliser: Normaliser


def prepare(window: np.ndarray, leads: int, normaliser: Normaliser, motion_method: str = "LK",
            velocity: np.ndarray | None = None, motion_frames: int | None = None) -> PreparedWindow:
    """The change-independent part of :func:`forecast` for a rain (``db``) model.

    Why apart: the change calibration (:func:`nowcast.models.calibration.score_grid`)
    forecasts one window under hundreds of weighed changes; moving the inputs,
    integrating the displacements and finding the unknown cells once per
    window instead of once per candidate is most of its cost.

    ``motion_frames``: estimate the motion from the newest ``motion_frames``
    frames only (``None``: all), so that a longer history can be moved to
    the analysis time (for a trend read over more frames than the network
    reads) without changing the motion (``benchmarks/trend_window.py``:
    motion from 8 frames is worse than from 4).
    """
    if normaliser.kind != "db":
        raise ValueError("prepare() is for rain ('db') models; a tracer model forecasts with forecast()")
    threshold, _, _ = db_params(normaliser)
    window = np.asarray(window, dtype=np.float32)
    nodata = np.isnan(window[-1])
    dry_filled = np.nan_to_num(window, nan=0.0)
    if velocity is None:
        velocity = motion_field(dry_filled if motion_frames is None else dry_filled[-int(motion_frames):], motion_method)
    # One set of displacements moves the inputs to the analysis time and the
    # leads to their times: a frame k steps old moves along the same k-step
    # trajectory as lead k (on 512x512 they cost as much as the warps).
    disp = displacements(velocity, max(int(leads), window.shape[0] - 1))
    lag = lagrangian_window(dry_filled, normaliser, velocity=velocity, disp=disp)
    disp = disp[: int(leads)]
    return PreparedWindow(int(leads), lag.db[-1], normalise_db(lag.db, normaliser), lag.velocity, disp,
                          unknown_mask(nodata, lag.velocity, int(leads), disp=disp),
                          bool(np.any(dry_filled >= threshold)), normaliser)


def finish(prepared: PreparedWindow, change: np.ndarray | None) -> np.ndarray:
    """The forecast ``(leads, ny, nx)`` mm/h of a prepared window under a normalised ``change``.

    The change is added to the analysis frame in dB (exactly the analysis
    frame where it is 0) and the result advected to each lead; ``None`` (or a
    dry window) is no change: extrapolation of the moved analysis frame.
    """
    threshold, zero, scale = db_params(prepared.normaliser)
    leads = prepared.leads
    if change is not None and prepared.wet:
        change = np.asarray(change, dtype=np.float64)
        if change.shape != (leads, *prepared.analysis_db.shape):
            raise ForecastError(f"network returned changes of shape {change.shape}, "
                                f"expected {(leads, *prepared.analysis_db.shape)}")
        fields = np.maximum(prepared.analysis_db[None] + scale * change, zero)
    else:  # a dry window stays dry: nothing to grow from
        fields = np.repeat(prepared.analysis_db[None], leads, axis=0)
    out = from_db(advect_leads(fields, prepared.velocity, outval=zero, disp=prepared.disp), threshold=threshold)
    out[prepared.unknown] = np.nan
    return out


def forecast(window: np.ndarray, leads: int, network: ChangeNetwork, normaliser: Normaliser,
             motion_method: str = "LK", velocity: np.ndarray | None = None,
             motion_frames: int | None = None) -> np.ndarray:
    """Lagrangian forecast ``(leads, ny, nx)`` mm/h from ``window`` (``(T, ny, nx)`` mm/h).

    Parameters
    ----------
    window
        Input frames, oldest first; NaN (no coverage) is dry for motion and
        the network, and its cells are unknown (NaN) in the forecast wherever
        extrapolation's would be.
    leads
        Frames to forecast.
    network
        Returns the normalised Lagrangian change of every lead relative to the
        analysis frame; it may tile the domain (:func:`nowcast.forecast.predict_tiled`).
        Not called for a dry window.
    normaliser
        The model's ``db`` normalisation.
    motion_method
        pysteps optical-flow method.
    velocity
        The window's motion (``(2, ny, nx)`` px/step) if the caller has it
        already; ``None``: estimated here by ``motion_method``.
    motion_frames
        Estimate the motion from the newest ``motion_frames`` frames only
        (:func:`prepare`); ``network`` still gets every moved frame.
    """
    if normaliser.kind != "db":
        if velocity is not None or motion_frames is not None:
            raise ValueError("a precomputed velocity or motion_frames is for rain ('db') models")
        return _forecast_tracer(window, leads, network, normaliser, motion_method)
    prepared = prepare(window, leads, normaliser, motion_method, velocity, motion_frames=motion_frames)
    return finish(prepared, network(prepared.inputs, int(leads)) if prepared.wet else None)


def _forecast_tracer(window: np.ndarray, leads: int, network: ChangeNetwork, normaliser: Normaliser,
                     motion_method: str) -> np.ndarray:
    """:func:`forecast` for a source in another modality (infrared), in its :func:`tracer` space.

    Same scheme as rain: the window moved to the analysis time, the
    network's change added to the analysis frame, the result advected to
    each lead, unknown where extrapolation's would be; back in the data's
    units through the normaliser.
    """
    window = np.asarray(window, dtype=np.float32)
    nodata = np.isnan(window[-1])
    field, empty, to_network = tracer(window, normaliser)
    velocity = motion_field(field, motion_method, tracer=True)
    n = window.shape[0]
    disp = displacements(velocity, max(int(leads), n - 1))  # shared by inputs and leads, as for rain
    lag, _ = to_lagrangian(field, list(range(-(n - 1), 1)), velocity, outval=empty, disp=disp)
    disp = disp[: int(leads)]
    x = np.asarray(to_network(lag), dtype=np.float32)
    change = np.asarray(network(x, int(leads)), dtype=np.float64)
    if change.shape != (int(leads), *window.shape[1:]):
        raise ForecastError(f"network returned changes of shape {change.shape}, expected {(int(leads), *window.shape[1:])}")
    fields = x[-1][None].astype(np.float64) + change  # network space is the tracer space here (to_network is identity)
    out = normaliser.inverse(advect_leads(fields, velocity, outval=empty, disp=disp))
    out[unknown_mask(nodata, velocity, int(leads), disp=disp)] = np.nan
    return out


def training_batch(frames: np.ndarray, velocity: np.ndarray, input_frames: int, normaliser: Normaliser,
                   persistent: np.ndarray | None = None, motion_method: str | None = None,
                   motion_error: np.ndarray | None = None, trend: np.ndarray | None = None,
                   motion_frames: int | None = None):
    """Training sequences in the Lagrangian frame of their analysis times (batched, torch).

    Parameters
    ----------
    frames
        ``(B, input_frames + output_frames, ny, nx)`` in the data's units
        (mm/h, or K for infrared; NaN = no data), moved as :func:`tracer` says.
    velocity
        ``(B, 2, ny, nx)`` stored motion of each input window (px/step).
    input_frames
        The analysis frame is ``frames[:, input_frames - 1]``.
    persistent
        ``(B,)`` bool: make these samples Lagrangian-persistent: every
        observed frame is replaced by the analysis frame *moved* along the
        stored motion to that frame's time (forward for later frames,
        backward for earlier ones) before the frames are moved back to the
        analysis time. The model then sees what a real rigidly moving field
        looks like in its frame (interpolation smoothing and all, not a
        perfect copy), and must learn to leave it unchanged. Measured: with
        exact copies instead, the model did not recognise real rigid motion
        and decayed it (CSI at 1 mm/h 0.59 vs extrapolation's 0.91 over the
        hour on the real MeteoSwiss field moved rigidly).
    motion_method
        With ``persistent``: the motion that moves a persistent sample back to
        its analysis time is *re-estimated* from its moved input frames by
        this pysteps optical-flow method, as a forecast estimates it, instead
        of the stored motion that made the frames. Moved and moved back along
        one motion, the frames differ only by interpolation (0.05 in network
        units, 0.75 dB, on average over wet pixels), while a real field moving
        rigidly, seen through estimated motion, differs by 0.06-0.14
        (1-2 dB, measured on ``swiss-south-rigid-64``): as much as the
        simulator's evolving rain (0.11-0.17). The network then took rigid
        motion for evolution. ``None``: the stored motion (re-estimating
        alone changes little: optical flow recovers a motion it made itself;
        ``motion_error`` is what makes the difference).
    motion_error
        ``(B, 2, ny, nx)`` px/step added to the stored motion to *make* the
        persistent samples (with ``motion_method``: the true motion differs
        from what optical flow estimated, as real rotation and deformation
        differ from a smooth Lucas-Kanade field). With ``motion_method``,
        the *future* frames of a persistent sample are its Lagrangian
        analysis frame exactly: its inputs look like real rigid motion seen
        through optical flow, its truth is "no change".
    trend
        Rain only: ``(B, ny, nx)`` dB per step, a Lagrangian trend for the
        persistent samples (0: none). Such a sample's rain at ``k`` steps
        from the analysis is the analysis ``+ k * trend`` dB where it rains
        (:func:`trended`), moved along the motion like the plain persistent
        samples: its inputs show the trend, its truth (with
        ``motion_method``: exactly) continues it.
    motion_frames
        With ``motion_method``: re-estimate from the newest this many input
        frames, as a forecast of a model with ``motion.frames`` does
        (``None``: every input frame).

    Returns
    -------
    x, valid
        ``(B, T, ny, nx)`` float32 tensors: normalised Lagrangian frames, and
        1 where the frame's Lagrangian source lay inside the domain and had
        data (the loss ignores the rest).
    """
    import torch

    from nowcast.motion import to_lagrangian_torch

    frames = np.asarray(frames, dtype=np.float64)
    nodata = np.isnan(frames)
    field, empty, to_network = tracer(frames, normaliser)
    T = frames.shape[1]
    offsets = list(range(-(input_frames - 1), T - input_frames + 1))
    vel = torch.from_numpy(np.nan_to_num(np.asarray(velocity, dtype=np.float64))).float()
    field = torch.from_numpy(field).float()
    lagrangian_truth = None  # persistent samples' frames before they are moved: their Lagrangian truth
    if persistent is not None and np.any(persistent):
        idx = torch.from_numpy(np.flatnonzero(persistent))
        true_vel = vel if motion_error is None else vel + torch.from_numpy(np.asarray(motion_error, dtype=np.float32))
        analysis = field[idx, input_frames - 1]
        lagrangian_truth = analysis[:, None].expand(-1, len(offsets), -1, -1)  # rigid: the analysis at every time
        if trend is not None:
            if normaliser.kind != "db":
                raise ValueError("a Lagrangian trend is for rain ('db' normalisation)")
            threshold, _, _ = db_params(normaliser)
            rate = torch.from_numpy(np.asarray(trend, dtype=np.float32)[np.flatnonzero(persistent)])
            lagrangian_truth = trended(analysis, rate, offsets, empty, 10.0 * np.log10(threshold))
        field[idx] = moved(lagrangian_truth, true_vel[idx], offsets, empty)
        if motion_method is not None:
            vel = vel.clone()
            for b in idx.tolist():
                first = input_frames - int(motion_frames or input_frames)
                vel[b] = torch.from_numpy(_estimated_motion(field[b, first:input_frames].double().numpy(), normaliser,
                                                            motion_method)).float()
    lag, valid = to_lagrangian_torch(field, offsets, vel, outval=empty)
    if nodata.any():
        covered, _ = to_lagrangian_torch(torch.from_numpy((~nodata).astype(np.float32)), offsets, vel, outval=0.0)
        valid = valid & (covered > 0.5)
    if motion_method is not None and persistent is not None and np.any(persistent):
        # The Lagrangian truth of a persistent sample is its analysis frame. What moving it with one
        # motion and back with another leaves in the future frames is the forecast's motion error,
        # which the network cannot know; as a target it would only teach it to blur.
        idx = torch.from_numpy(np.flatnonzero(persistent))
        lag[idx, input_frames:] = lagrangian_truth[:, input_frames:]
    x = to_network(lag)
    return x.contiguous(), valid.float().contiguous()


def _estimated_motion(window: np.ndarray, normaliser: Normaliser, method: str) -> np.ndarray:
    """Motion of a window in :func:`tracer` space, estimated as a forecast estimates it (px/step)."""
    if normaliser.kind == "db":
        threshold, _, _ = db_params(normaliser)
        return motion_field(from_db(window, threshold=threshold), method)
    return motion_field(window, method, tracer=True)


def rotation_field(shape: tuple[int, int], deg_per_step: float, centre_row: float, centre_col: float) -> np.ndarray:
    """Velocity ``(2, ny, nx)`` (px/step, pysteps ``(u, v)`` order) of a solid-body rotation.

    Positive is counterclockwise on a north-up map (rows run southwards):
    east of the centre the rain moves north (``v < 0``), north of it west.
    """
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    omega = np.radians(deg_per_step)
    return np.stack([omega * (rows - centre_row), -omega * (cols - centre_col)]).astype(np.float32)


def moved(frames, velocity, offsets: list[int], outval: float):
    """Lagrangian frames ``(B, T, H, W)`` (all at the analysis position) moved along ``velocity`` to each offset's time."""
    from nowcast.motion import shift_torch

    return shift_torch(frames, offsets, velocity, outval)[0]


#: Ceiling of trend samples' rain (dB of mm/h): 150 mm/h, the known-motion test cases'
#: (``nowcast.data.testcases.MAX_RAIN_RATE``, tested equal; not imported: it would load that module on every forecast).
TREND_CEILING_DB = float(10.0 * np.log10(150.0))


def trended(analysis, rate, offsets: list[int], dry: float, threshold_db: float):
    """Lagrangian frames ``(B, T, H, W)``: the analysis dBR ``(B, H, W)`` plus ``offset * rate`` dB where it rains.

    Dry cells (``dry``) stay dry, rain taken below ``threshold_db`` becomes dry,
    and growing rain stops at :data:`TREND_CEILING_DB` (or at the analysis
    where it is above it). With ``rate`` 0 every frame is the analysis.
    """
    import torch

    steps = torch.tensor(offsets, dtype=analysis.dtype).view(1, -1, 1, 1)
    wet = (analysis > dry)[:, None]
    frames = analysis[:, None] + steps * rate[:, None].to(analysis.dtype)
    frames = torch.minimum(frames, torch.clamp(analysis, min=TREND_CEILING_DB)[:, None])  # the analysis itself untouched
    return torch.where(wet & (frames >= threshold_db), frames, torch.full_like(frames, dry))


def training_sample(frames: np.ndarray, velocity: np.ndarray, input_frames: int, normaliser: Normaliser,
                    persistent: bool = False, motion_method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One sequence through :func:`training_batch`: ``(T, ny, nx)`` (mm/h or K) -> (x, valid) float32 arrays."""
    x, valid = training_batch(np.asarray(frames)[None], np.asarray(velocity)[None], input_frames, normaliser,
                              np.array([persistent]), motion_method)
    return x[0].numpy(), valid[0].numpy()
