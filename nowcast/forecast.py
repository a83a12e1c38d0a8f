"""Turn the latest radar frames of a region into a forecast dataset.

This is the operational path behind ``nowcast forecast``: pick the input
window from the region's archive (refusing gaps or stale data, since a
forecast from an incomplete window is silently wrong), run the region's
configured method, fall back to optical-flow extrapolation when the model
cannot run (and say so in the output and the log), and write a CF dataset
(see docs/design.md, "Forecast dataset").

Large regions run the neural forecaster in overlapping tiles
(:func:`predict_tiled`), so memory is bounded by the tile size whatever the
domain size; overlaps are blended with linear ramps so no seam shows.
"""

from __future__ import annotations

import logging
import math
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nowcast.config import Region, load_region
from nowcast.errors import ForecastError, NowcastError
from nowcast.paths import forecasts_dir

log = logging.getLogger(__name__)

#: The neural method; every other name is looked up in :mod:`nowcast.baselines`.
MODEL_METHOD = "tmu"
#: What ``method`` falls back to when the model cannot run.
FALLBACK_METHOD = "extrapolation"
#: Largest tile side (cells) given to the neural forecaster at once. Its
#: recurrent state and activations scale with the tile area, so this bounds
#: the memory of a forecast on any region (see docs/benchmarks.md). Overlaps
#: are computed twice, so tiles should be as large as memory allows: at 768
#: cells (4x4 patches, 16-32 channels) one tile's no-grad activations are a few
#: hundred MB, and the whole MeteoSwiss domain (640x710) is a single tile.
TILE = 768
#: Overlap (cells) between neighbouring tiles, blended with linear ramps.
#: Wider than the receptive field growth of a few steps of 5x5 convolutions
#: on 4x4 patches, so tile borders see enough context.
OVERLAP = 32

#: ``predict(window (T, h, w), leads) -> (leads, h, w)``, all in mm/h.
Predictor = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class ForecastResult:
    """What a forecast run produced, for the CLI, scheduled runs and benchmarks.

    ``compute_seconds`` is the time spent in the method alone (model or
    baseline), ``seconds`` the whole run including archive reads and writing.
    """

    path: Path
    method: str
    reference_time: np.datetime64
    leads: int
    input_times: tuple[str, ...]
    fallback_reason: str | None
    seconds: float
    compute_seconds: float
    #: Ensemble size and seed (``None`` for a deterministic forecast).
    members: int | None = None
    seed: int | None = None


# ---------------------------------------------------------------- times
def to_utc_datetime64(value: str | np.datetime64 | pd.Timestamp, what: str = "--time") -> np.datetime64:
    """Parse an ISO 8601 time; aware times are converted to UTC, naive ones are UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ForecastError(f"{what} {value!r}: not an ISO 8601 time ({exc})") from None
    if ts is pd.NaT:
        raise ForecastError(f"{what} {value!r}: not an ISO 8601 time")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


def iso(t: np.datetime64) -> str:
    """``2024-02-27T09:50:00Z`` style UTC string (the form used in attributes and logs)."""
    return pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def select_window(
    times: np.ndarray,
    end_time: np.datetime64 | None,
    n_frames: int,
    timestep_minutes: int,
    max_age_minutes: float,
    region: str,
) -> np.ndarray:
    """Choose the ``n_frames`` input times ending at (or just before) ``end_time``.

    Parameters
    ----------
    times
        Archived frame times (any order).
    end_time
        Requested reference time; ``None`` means the newest archived frame.
        The window ends at the newest frame not after it, which may be at
        most ``max_age_minutes`` older (radar files arrive late; a forecast
        from 20-minute-old data issued as "now" would be silently wrong).
    n_frames, timestep_minutes
        Window length and the region's cadence: the window is exactly
        ``n_frames`` frames spaced ``timestep_minutes`` apart.
    region
        Region name, for messages.

    Returns
    -------
    numpy.ndarray
        The window's times, oldest first (``datetime64[ns]``).

    Raises
    ------
    ForecastError
        Empty archive, stale input (the message says how many timesteps are
        missing at the end of the window) or frames missing inside the
        window (the message says how many and which).
    """
    times = np.sort(np.asarray(times, dtype="datetime64[ns]"))
    step = np.timedelta64(int(timestep_minutes), "m").astype("timedelta64[ns]")
    if times.size == 0:
        raise ForecastError(
            f"region {region!r}: the archive holds no frames ({n_frames} of {n_frames} input frames missing); "
            "run 'nowcast ingest' first"
        )
    if end_time is None:
        end = times[-1]
    else:
        end_time = np.datetime64(end_time, "ns")
        usable = times[times <= end_time]
        if usable.size == 0:
            raise ForecastError(
                f"region {region!r}: no frame at or before {iso(end_time)} ({n_frames} of {n_frames} input "
                f"frames missing; the archive starts {iso(times[0])})"
            )
        end = usable[-1]
        age = (end_time - end) / np.timedelta64(1, "m")
        if age > max_age_minutes:
            late = int((end_time - end) // step)
            raise ForecastError(
                f"region {region!r}: input is stale: the newest frame {iso(end)} is {age:g} min older than "
                f"the requested time {iso(end_time)} (limit {max_age_minutes:g} min), "
                f"{late} frame(s) missing at the end of the window"
            )
    wanted = end - step * np.arange(n_frames - 1, -1, -1)
    missing = wanted[~np.isin(wanted, times)]
    if missing.size:
        shown = ", ".join(iso(t) for t in missing[:4]) + (", ..." if missing.size > 4 else "")
        raise ForecastError(
            f"region {region!r}: {missing.size} of {n_frames} input frames missing for the window "
            f"ending {iso(end)} ({shown})"
        )
    return wanted


# ---------------------------------------------------------------- tiling
def tile_layout(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, length)`` of equal tiles covering ``[0, size)`` with at least ``overlap`` shared cells.

    Tiles are as few as the maximum ``tile`` allows and spread evenly, so the
    work done twice in overlaps stays small (512 cells with ``tile=256,
    overlap=32`` gives three tiles of 192, not 256-cell tiles overlapping by 224).
    """
    if size <= tile:
        return [(0, size)]
    if not 0 <= overlap < tile:
        raise ForecastError(f"tile overlap {overlap} must be >= 0 and smaller than the tile ({tile})")
    n = math.ceil((size - overlap) / (tile - overlap))
    length = math.ceil((size + (n - 1) * overlap) / n)
    starts = np.round(np.linspace(0, size - length, n)).astype(int)
    return [(int(s), length) for s in starts]


def _ramps(layout: list[tuple[int, int]]) -> list[np.ndarray]:
    """1-D blending weight of each tile: linear ramps across the cells it shares
    with its neighbours, 1 elsewhere (including the domain edges).

    In an overlap of width ``w`` the two ramps are ``(i + 0.5) / w`` and
    ``1 - (i + 0.5) / w``, which sum to one: a smooth hand-over with no seam.
    """
    ramps = []
    for k, (start, length) in enumerate(layout):
        ramp = np.ones(length, dtype=np.float64)
        if k > 0:
            width = layout[k - 1][0] + layout[k - 1][1] - start
            if width > 0:
                ramp[:width] = np.minimum(ramp[:width], (np.arange(width) + 0.5) / width)
        if k < len(layout) - 1:
            width = start + length - layout[k + 1][0]
            if width > 0:
                ramp[length - width :] = np.minimum(ramp[length - width :], ((np.arange(width) + 0.5) / width)[::-1])
        ramps.append(ramp)
    return ramps


def predict_tiled(
    predict: Predictor,
    window: np.ndarray,
    leads: int,
    tile: int = TILE,
    overlap: int = OVERLAP,
    multiple: int = 1,
) -> np.ndarray:
    """Run ``predict`` over overlapping tiles of ``window`` and blend them.

    Memory then scales with the tile, not the region. The domain is first
    padded (edge values) to a multiple of ``multiple`` (a model's patch size,
    which every tile must respect) and cropped back at the end.

    Parameters
    ----------
    predict
        ``(T, h, w) -> (leads, h, w)``.
    window
        ``(T, ny, nx)`` input frames.
    leads
        Number of frames to predict.
    tile, overlap
        Largest tile side and the least overlap between tiles (cells).
    multiple
        Tile sides are multiples of this.

    Returns
    -------
    numpy.ndarray
        ``(leads, ny, nx)`` float32. A predictor that acts pixel-wise (e.g.
        persistence) gives exactly the untiled result: the blending weights
        are normalised in float64, so a value common to all tiles survives
        to the last float32 bit.
    """
    if window.ndim != 3:
        raise ForecastError(f"input window must be (time, y, x), got shape {window.shape}")
    multiple = max(1, int(multiple))
    tile = max(multiple, tile - tile % multiple)
    _, ny, nx = window.shape
    pad_y, pad_x = -ny % multiple, -nx % multiple
    padded = np.pad(window, ((0, 0), (0, pad_y), (0, pad_x)), mode="edge") if pad_y or pad_x else window
    py, px = padded.shape[1:]
    lay_y = _fit(tile_layout(py, tile, overlap), multiple, py)
    lay_x = _fit(tile_layout(px, tile, overlap), multiple, px)
    if len(lay_y) == 1 and len(lay_x) == 1:
        out = np.asarray(predict(padded, leads), dtype=np.float32)
        _check_shape(out, (leads, py, px))
        return out[:, :ny, :nx]
    ramp_y, ramp_x = _ramps(lay_y), _ramps(lay_x)
    acc = np.zeros((leads, py, px), dtype=np.float64)
    weight = np.zeros((py, px), dtype=np.float64)
    for (y0, h), wy in zip(lay_y, ramp_y):
        for (x0, w), wx in zip(lay_x, ramp_x):
            pred = np.asarray(predict(padded[:, y0 : y0 + h, x0 : x0 + w], leads))
            _check_shape(pred, (leads, h, w))
            wt = np.outer(wy, wx)
            acc[:, y0 : y0 + h, x0 : x0 + w] += pred * wt
            weight[y0 : y0 + h, x0 : x0 + w] += wt
    log.debug("predicted %d x %d tiles of %dx%d on a %dx%d grid", len(lay_y), len(lay_x), lay_y[0][1], lay_x[0][1], ny, nx)
    return (acc / weight)[:, :ny, :nx].astype(np.float32)


def _fit(layout: list[tuple[int, int]], multiple: int, size: int) -> list[tuple[int, int]]:
    """Round tile lengths up to ``multiple`` (keeping them inside the domain)."""
    out = []
    for start, length in layout:
        length = min(size, length + (-length % multiple))
        out.append((min(start, size - length), length))
    return out


def _check_shape(pred: np.ndarray, want: tuple[int, ...]) -> None:
    if pred.shape != want:
        raise ForecastError(f"forecaster returned shape {pred.shape} for a tile needing {want}")


# ---------------------------------------------------------------- methods
def load_model(region: Region, home: str | Path | None = None):
    """The region's trained forecaster (``forecast.model``), checked against the region.

    ``home`` (``--home``) is searched for model configs and checkpoints before
    ``$NOWCAST_HOME`` and the shipped zoo, as for everything else of a run.

    Raises
    ------
    CheckpointError, ConfigError
        Model not configured, checkpoint missing or corrupt, or made for
        other units/timestep; the caller turns these into a fallback.
    """
    from nowcast.errors import CheckpointError
    from nowcast.models.zoo import load_forecaster, resolve_model

    if not region.forecast.model:
        raise CheckpointError(f"region {region.name!r}: key 'forecast.model' is not set (no model for method 'tmu')")
    forecaster = load_forecaster(resolve_model(region.forecast.model, home), home=home)
    config = forecaster.config
    timestep = getattr(config, "timestep_minutes", None)
    if timestep is not None and int(timestep) != region.timestep_minutes:
        raise CheckpointError(
            f"model {region.forecast.model!r}: trained for a {timestep}-min timestep, "
            f"region {region.name!r} has {region.timestep_minutes} min"
        )
    return forecaster


def run_model(forecaster, window: np.ndarray, leads: int, tile: int = TILE, overlap: int = OVERLAP) -> np.ndarray:
    """Forecast ``leads`` frames with a loaded forecaster, in tiles.

    ``window``: at least the model's ``input_frames``; a zoo forecaster whose
    trend reads a longer history (:attr:`~nowcast.models.zoo.Forecaster.history_frames`)
    gets up to that many of the newest frames (:func:`model_window` reads them).
    """
    from nowcast.errors import CheckpointError

    config = forecaster.config
    needed = int(getattr(config, "input_frames", window.shape[0]))
    if window.shape[0] < needed:
        raise CheckpointError(
            f"model {getattr(config, 'name', '?')!r}: needs {needed} input frames, the region provides {window.shape[0]}"
        )
    frames = max(needed, int(getattr(forecaster, "history_frames", needed)))
    if hasattr(forecaster, "predict_region"):  # a zoo forecaster tiles itself (Lagrangian: motion on the whole region)
        return forecaster.predict_region(window[-frames:], leads, tile=tile, overlap=overlap)
    patch = int(getattr(config, "patch_size", 1))
    return predict_tiled(forecaster.predict, window[-frames:], leads, tile=tile, overlap=overlap, multiple=patch)


#: ``read(frames) -> (frames, ny, nx)`` mm/h (NaN read as dry) ending at the window's end, or ``None`` if any is missing.
HistoryReader = Callable[[int], "np.ndarray | None"]


def archive_history(archive, region: Region, end: np.datetime64) -> HistoryReader:
    """A :data:`HistoryReader` of the region's archive for the window ending at ``end``.

    A frame missing from the longer history is not an error: the model falls
    back to its own window (:func:`model_window`), and the log says so.
    """
    def read(frames: int) -> np.ndarray | None:
        try:
            window_da = archive.window(end, int(frames))
        except ForecastError as exc:
            log.info("region %s: no %d-frame history: %s", region.name, frames, exc)
            return None
        return np.nan_to_num(_window_in_rain_rate(window_da, region), nan=0.0)
    return read


def model_window(forecaster, window: np.ndarray, history: HistoryReader | None) -> tuple[np.ndarray, dict[str, str]]:
    """The frames a model reads, and what its product says about them.

    Why: a forecaster may read its window trend over more frames than its
    network reads (:attr:`nowcast.models.zoo.Forecaster.history_frames`; the
    fifteenth round's shipped model: 8). The region's window (``window``,
    ``forecast.input_frames``) is what every method needs; the older frames
    are read from the archive only for such a model, and where any of them
    is missing the model reads the region's window (its trend over fewer
    frames; a minmod trend, which needs 6, reads none, and the forecast is
    extrapolation's): a gap in the older history must not stop a forecast.
    The product's ``model_history_frames`` says which it was.
    """
    wanted = int(getattr(forecaster, "history_frames", window.shape[0]))
    if wanted <= window.shape[0]:
        return window, {}
    longer = history(wanted) if history is not None else None
    if longer is None:
        return window, {"model_history_frames": f"{window.shape[0]} (wanted {wanted}: older frames missing, "
                                                f"the trend read over these frames only)"}
    return longer, {"model_history_frames": str(wanted)}


def leads_beyond_training(forecaster, leads: int, timestep_minutes: int) -> str | None:
    """Say so when ``leads`` exceed the lead times the model was trained (and its skill measured) for.

    The model still runs: it forecasts closed-loop (each step fed its own
    prediction; a Lagrangian model's changes are then advected to each lead),
    so further leads are computed the same way, but neither training nor the
    held-out skill covers them. The caller logs the returned line as a
    warning and records it in the product's ``model_leads_beyond_training``
    attribute (docs/models.md, "Lead times beyond training"). ``None`` when
    the leads are covered or the model does not say what it was trained for.
    """
    metadata = getattr(forecaster, "metadata", None) or {}
    trained = (metadata.get("data") or {}).get("output_frames")
    if trained is None:
        data = getattr(getattr(forecaster, "config", None), "data", None)
        trained = getattr(data, "output_frames", None)
    if not isinstance(trained, int) or isinstance(trained, bool) or leads <= trained:
        return None
    name = getattr(getattr(forecaster, "config", None), "name", "?")
    return (f"{leads} leads ({leads * timestep_minutes} min) requested; model {name!r} was trained for "
            f"{trained} ({trained * timestep_minutes} min): leads {trained + 1}-{leads} run closed-loop beyond "
            f"training and are not covered by its held-out skill")


def model_product_attrs(metadata: dict) -> dict[str, str]:
    """What a product says about the model that made it: held-out skill, its study's, and training data.

    A model without measured skill says so, rather than staying silent.
    """
    from nowcast.models.calibration import ChangeWeights
    from nowcast.models.skill import skill_summary, study_summary

    attrs = {}
    skill = metadata.get("heldout_skill")
    attrs["model_heldout_skill"] = skill_summary(skill) if skill else "not measured: no held-out skill in the checkpoint"
    study = metadata.get("study_skill")
    attrs["model_study_skill"] = (study_summary(study) if study
                                  else "not measured: no fresh-test study of these weights in the checkpoint")
    weights = ChangeWeights.from_metadata(metadata.get("change_weights"))
    if weights is not None:
        attrs["model_change_weights"] = f"{weights.brief()} (nowcast.models.calibration, chosen on validation data)"
    data = metadata.get("data") or {}
    if data.get("kind") == "zarr_sequences":
        attrs["model_training_data"] = (f"sequences of domain {data.get('domain') or '?'} "
                                        f"({metadata.get('training_provenance', 'simulated from real seeds')})")
    return attrs


def check_output(values: np.ndarray, region: Region, method: str) -> None:
    """Refuse a forecast holding physically impossible values (the same limits as ingest).

    NaN is allowed (no information); infinite, negative below float noise,
    or above ``ingest.max_rain_rate`` is not. Raised inside the model path, it
    makes the forecast fall back to extrapolation, recorded.

    Raises
    ------
    ForecastError
        Naming the method and the count of bad values.
    """
    values = np.asarray(values)
    with np.errstate(invalid="ignore"):
        infinite = int(np.isinf(values).sum())
        negative = int((values < -1e-3).sum())
        high = int((values > region.ingest.max_rain_rate).sum())
    if infinite or negative or high:
        raise ForecastError(f"method {method!r} produced physically impossible rain rates ({infinite} infinite, "
                            f"{negative} negative, {high} above {region.ingest.max_rain_rate:g} mm/h)")


def publishable(values: np.ndarray, newest: np.ndarray, region: Region, method: str, leads: int) -> np.ndarray:
    """A checked method output ``(leads, ny, nx)`` as products and scores take it (float32 mm/h).

    NaN from the method is "no information" (extrapolation's inflow edge,
    where rain could have entered from outside the domain: published as NaN,
    never as a dry 0, and left out of every score); negative float noise is
    clipped to 0; cells without data in the ``newest`` input frame (NaN) have
    no forecast.

    Raises
    ------
    ForecastError
        The output does not have the region's shape.
    """
    values = np.asarray(values)
    if values.shape != (leads, *region.grid.shape):
        raise ForecastError(f"method {method!r} returned shape {values.shape}, expected {(leads, *region.grid.shape)}")
    unknown = np.isnan(values)
    values = np.clip(np.where(unknown, 0.0, values), 0.0, None).astype(np.float32)
    values[unknown] = np.nan
    values[:, np.isnan(newest)] = np.nan
    return values


def run_baseline(method: str, window: np.ndarray, leads: int, timestep_minutes: int) -> np.ndarray:
    """A baseline of :mod:`nowcast.baselines` by name (ValueError -> ForecastError)."""
    from nowcast.baselines import get_method

    try:
        fn = get_method(method)
    except ValueError as exc:
        raise ForecastError(f"--method {method!r}: {exc}") from None
    return np.asarray(fn(window, leads, timestep_minutes), dtype=np.float32)


def _window_in_rain_rate(window_da, region: Region) -> np.ndarray:
    """The window in mm/h, whatever the archive stores (dBZ goes through the region's Z-R)."""
    from nowcast.units import DBZ, MMH, canonical_units, dbz_to_rainrate

    units = canonical_units(str(window_da.attrs.get("units", region.units)))
    values = np.asarray(window_da.values, dtype=np.float32)
    if units == MMH:
        return values
    if units == DBZ:
        return dbz_to_rainrate(values, region.zr.a, region.zr.b)
    raise ForecastError(f"region {region.name!r}: cannot forecast rain rate from an archive in {units!r}")


@dataclass
class _Deterministic:
    """The deterministic forecast of a window, with what the product says about how it was made."""

    values: np.ndarray
    method: str
    fallback_reason: str | None
    model_name: str | None
    sha256: str | None
    model_attrs: dict[str, str]
    compute_seconds: float
    motion_method: str = "LK"


def _deterministic(region: Region, method: str, window: np.ndarray, raw: np.ndarray, leads: int, *, tile: int,
                   overlap: int, device: str, precision: str, home: str | Path | None = None,
                   history: HistoryReader | None = None) -> _Deterministic:
    """Run ``method`` (falling back to extrapolation, recorded) and mask its output as the product wants it.

    ``method`` ``steps`` (an ensemble method) has no deterministic forecast:
    its members are made by :func:`_run_ensemble`; here it gets none.
    ``history`` reads older frames for a model that wants them (:func:`model_window`).
    """
    from nowcast.ensemble import STEPS_METHOD

    if method == STEPS_METHOD:
        return _Deterministic(np.empty((0,)), method, None, None, None, {}, 0.0)
    fallback_reason: str | None = None
    model_attrs: dict[str, str] = {}
    model_name: str | None = None
    sha256: str | None = None
    forecaster = None
    used = method
    t0 = _time.perf_counter()
    if method == MODEL_METHOD:
        try:
            forecaster = load_model(region, home=home)
            if hasattr(forecaster, "to"):  # a Forecaster; test doubles may not move
                forecaster.to(device, precision)
            frames, history_attrs = model_window(forecaster, window, history)
            values = run_model(forecaster, frames, leads, tile=tile, overlap=overlap)
            check_output(values, region, MODEL_METHOD)
            model_name = str(getattr(forecaster.config, "name", region.forecast.model))
            sha256 = getattr(forecaster, "sha256", None)
            model_attrs = {**model_product_attrs(getattr(forecaster, "metadata", {}) or {}), **history_attrs}
            trend_note = getattr(forecaster, "last_trend_note", None)
            if trend_note:  # what this forecast did with the window's trend
                model_attrs["model_trend"] = trend_note
                log.info("region %s: radar trend %s", region.name, trend_note)
            beyond = leads_beyond_training(forecaster, leads, region.timestep_minutes)
            if beyond:
                log.warning("region %s: %s", region.name, beyond)
                model_attrs["model_leads_beyond_training"] = beyond
            if hasattr(forecaster, "resolved_precision"):
                model_attrs["model_precision"] = forecaster.resolved_precision
                model_attrs["model_device"] = str(forecaster.device)
        except (NowcastError, ImportError, RuntimeError) as exc:
            # RuntimeError: torch's own shape/dtype errors when a checkpoint does
            # not fit the region; an operational run must still produce a forecast.
            fallback_reason = f"model could not run: {exc}"
            log.warning("region %s: %s; falling back to %s", region.name, fallback_reason, FALLBACK_METHOD)
            log.debug("model failure", exc_info=True)
            used = FALLBACK_METHOD
    if used != MODEL_METHOD:
        from nowcast.baselines import get_method

        try:
            get_method(used)
        except ValueError as exc:
            raise ForecastError(f"--method {used!r}: {exc}") from None
        try:
            values = run_baseline(used, window, leads, region.timestep_minutes)
            check_output(values, region, used)
        except Exception as exc:  # noqa: BLE001 - any method failing (S-PROG's LinAlgError on sparse rain...) falls back
            if used == FALLBACK_METHOD:
                raise ForecastError(f"region {region.name!r}: {FALLBACK_METHOD} failed: {type(exc).__name__}: {exc}") from exc
            fallback_reason = f"method {used!r} failed: {type(exc).__name__}: {exc}"
            log.warning("region %s: %s; falling back to %s", region.name, fallback_reason, FALLBACK_METHOD)
            log.debug("method failure", exc_info=True)
            used = FALLBACK_METHOD
            values = run_baseline(used, window, leads, region.timestep_minutes)
            check_output(values, region, used)
    compute = _time.perf_counter() - t0
    values = publishable(values, raw[-1], region, used, leads)
    motion = str(getattr(getattr(getattr(forecaster, "config", None), "motion", None), "method", "LK"))
    return _Deterministic(values, used, fallback_reason, model_name, sha256, model_attrs, compute,
                          motion if used == MODEL_METHOD else "LK")


def _km_per_pixel(region: Region) -> float:
    """Cell size in km (degrees of a geographic grid taken as 111 km)."""
    return float(region.resolution) * (111.0 if region.grid.crs.is_geographic else 0.001)


def _write_product(ds, out: str | Path | None, region: Region, home: str | Path | None,
                   reference: np.datetime64, tag: str) -> Path:
    """Write a product to ``out``, default ``HOME/forecasts/REGION/REGION_YYYYmmddTHHMMZ_TAG.zarr``."""
    from nowcast.products import write_forecast

    if out is None:
        stamp = pd.Timestamp(reference).strftime("%Y%m%dT%H%MZ")
        out = forecasts_dir(region.name, home) / f"{region.name}_{stamp}_{tag}.zarr"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_forecast(ds, out)
    return out


def _run_ensemble(region: Region, home, times: np.ndarray, window: np.ndarray, raw: np.ndarray, det: _Deterministic,
                  leads: int, members: int, seed: int | None, out, archive, started: float,
                  thresholds: Sequence[float] | None, **det_kwargs) -> ForecastResult:
    """The ensemble path of :func:`run_forecast`: members, probabilities and mean, written as one product.

    ``det`` is the deterministic forecast the members are made around (the
    method's, after its fallback, if any); for ``steps`` it is empty and the
    members are pysteps' STEPS, which falls back to the extrapolation
    ensemble (recorded) when it fails.
    """
    from nowcast import ensemble as ens
    from nowcast.products import make_ensemble_dataset

    seed = ens.default_seed(times[-1]) if seed is None else int(seed)
    thresholds = tuple(float(t) for t in (thresholds or region.forecast.probability_thresholds))
    used, fallback_reason = det.method, det.fallback_reason
    t0 = _time.perf_counter()
    noise = "pysteps STEPS (pysteps.nowcasts.steps.forecast: nonparametric noise, AR(2), bps motion perturbations)"
    values = None
    if used == ens.STEPS_METHOD:
        try:
            values = ens.steps_forecast(raw, leads, members, seed, timestep_minutes=region.timestep_minutes,
                                        km_per_pixel=_km_per_pixel(region))
            check_output(values, region, used)
        except Exception as exc:  # noqa: BLE001 - STEPS failing on a degenerate window falls back, recorded
            fallback_reason = f"method {used!r} failed: {type(exc).__name__}: {exc}"
            log.warning("region %s: %s; falling back to the %s ensemble", region.name, fallback_reason, FALLBACK_METHOD)
            log.debug("STEPS failure", exc_info=True)
            det = _deterministic(region, FALLBACK_METHOD, window, raw, leads, **det_kwargs)
            used, values = det.method, None
    if values is None:
        model = ens.noise_model(window, leads, motion_method=det.motion_method)
        values = ens.perturb(det.values, model, members, seed)
        noise = model.describe()
        check_output(values, region, used)
    values[:, :, np.isnan(raw[-1])] = np.nan  # radar coverage of the newest frame, as the deterministic product
    compute = det.compute_seconds + (_time.perf_counter() - t0)

    input_times = [iso(t) for t in times]
    ds = make_ensemble_dataset(
        values, region.grid, times[-1], region.timestep_minutes, thresholds=thresholds, seed=seed, noise=noise,
        region=region.name, method=used, input_times=input_times, model=det.model_name,
        checkpoint_sha256=det.sha256, fallback_reason=fallback_reason,
        model_attrs=det.model_attrs if used == MODEL_METHOD else None, data_origin=archive.attrs.get("data_origin"),
    )
    out = _write_product(ds, out, region, home, times[-1], f"{used}_ens{members}")
    seconds = _time.perf_counter() - started
    log.info(
        "region %s: %s ensemble of %d members (seed %d) from %s, %d x %d min -> %s (%.2f s, method %.2f s)%s",
        region.name, used, members, seed, iso(times[-1]), leads, region.timestep_minutes, out, seconds, compute,
        f"; fallback: {fallback_reason}" if fallback_reason else "",
    )
    return ForecastResult(out, used, times[-1], leads, tuple(input_times), fallback_reason, seconds, compute,
                          members, seed)


# ---------------------------------------------------------------- main entry
def run_forecast(
    region: Region | str,
    home: str | Path | None = None,
    time: str | np.datetime64 | None = None,
    method: str | None = None,
    leads: int | None = None,
    out: str | Path | None = None,
    *,
    tile: int = TILE,
    overlap: int = OVERLAP,
    device: str = "cpu",
    precision: str = "auto",
    members: int | None = None,
    seed: int | None = None,
    thresholds: Sequence[float] | None = None,
) -> ForecastResult:
    """Forecast from the region's archive and write the dataset.

    Parameters
    ----------
    region
        Region config (or its name).
    home
        Data home (default ``$NOWCAST_HOME`` or ``~/.nowcast``).
    time
        Reference time (ISO 8601, UTC if naive); default the newest archived
        frame. The window ends at the newest frame not after it and must be
        at most ``forecast.max_input_age_minutes`` older.
    method
        Override the region's configured method (``tmu`` or a baseline name).
    leads
        Number of lead times (of ``region.timestep_minutes`` each).
    out
        Output path (``.zarr`` or ``.nc``); default
        ``HOME/forecasts/REGION/REGION_YYYYmmddTHHMMZ_METHOD.zarr``.
    tile, overlap
        Tiling of the neural forecaster (see :func:`predict_tiled`).
    device, precision
        Where and in what arithmetic the neural forecaster runs
        (:mod:`nowcast.precision`; ``auto`` precision is bf16 only where it is
        faster). The baselines run in numpy either way.
    members
        Make an ensemble of this many members (:mod:`nowcast.ensemble`): the
        method's forecast perturbed by STEPS cascade noise, or, for method
        ``steps``, pysteps' STEPS itself (which always makes an ensemble:
        :data:`~nowcast.ensemble.DEFAULT_MEMBERS` members unless told).
        ``None``: the deterministic forecast, exactly as without ensembles.
    seed
        Seed of the ensemble's noise (default
        :func:`~nowcast.ensemble.default_seed` of the reference time: a
        re-run reproduces the members bit for bit).
    thresholds
        Rain rates (mm/h) of the ensemble's exceedance probabilities
        (default the region's ``forecast.probability_thresholds``).

    Raises
    ------
    ForecastError
        Missing or stale input frames, unknown method.
    ArchiveError
        No archive for the region.
    """
    from nowcast.io.archive import Archive
    from nowcast.products import make_forecast_dataset

    started = _time.perf_counter()
    region = region if isinstance(region, Region) else load_region(region, home)
    method = method or region.forecast.method
    leads = int(leads or region.forecast.leads)
    if leads < 1:
        raise ForecastError(f"--leads {leads}: need at least one lead time")
    if members is not None and int(members) < 1:
        raise ForecastError(f"--members {members}: an ensemble needs at least one member")
    from nowcast.ensemble import DEFAULT_MEMBERS, STEPS_METHOD

    if method == STEPS_METHOD and not members:
        members = DEFAULT_MEMBERS
    archive = Archive.open(region, home=home, create=False)
    end_time = None if time is None else to_utc_datetime64(time)
    n = region.forecast.input_frames
    times = select_window(
        archive.times, end_time, n, region.timestep_minutes, region.forecast.max_input_age_minutes, region.name
    )
    window_da = archive.window(times[-1], n)
    raw = _window_in_rain_rate(window_da, region)
    window = np.nan_to_num(raw, nan=0.0)

    det = _deterministic(region, method, window, raw, leads, tile=tile, overlap=overlap, device=device,
                         precision=precision, home=home, history=archive_history(archive, region, times[-1]))
    if members:
        return _run_ensemble(region, home, times, window, raw, det, leads, int(members), seed, out, archive, started,
                             thresholds, tile=tile, overlap=overlap, device=device, precision=precision)
    values, used, fallback_reason, compute = det.values, det.method, det.fallback_reason, det.compute_seconds
    model_name, sha256, model_attrs = det.model_name, det.sha256, det.model_attrs

    input_times = [iso(t) for t in times]
    ds = make_forecast_dataset(
        values,
        region.grid,
        times[-1],
        region.timestep_minutes,
        region=region.name,
        method=used,
        input_times=input_times,
        model=model_name,
        checkpoint_sha256=sha256,
        fallback_reason=fallback_reason,
        model_attrs=model_attrs if used == MODEL_METHOD else None,
        data_origin=archive.attrs.get("data_origin"),
    )
    out = _write_product(ds, out, region, home, times[-1], used)
    seconds = _time.perf_counter() - started
    log.info(
        "region %s: %s forecast from %s, %d x %d min -> %s (%.2f s, method %.2f s)%s",
        region.name, used, iso(times[-1]), leads, region.timestep_minutes, out, seconds, compute,
        f"; fallback: {fallback_reason}" if fallback_reason else "",
    )
    return ForecastResult(out, used, times[-1], leads, tuple(input_times), fallback_reason, seconds, compute)
