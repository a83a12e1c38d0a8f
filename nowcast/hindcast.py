"""Hindcast: forecast at every reference time of a period, verify each, aggregate per method and lead.

``nowcast hindcast --region R --start T0 --end T1`` answers "how good is each
method here, over this period?". For every **reference time** of the period
it makes the forecast each method would have made from the archive (the
operational path's pieces: :func:`~nowcast.forecast.select_window`, the
window in rain rate, :func:`~nowcast.forecast.run_model` or
:func:`~nowcast.forecast.run_baseline`, :func:`~nowcast.forecast.check_output`
and the same masking of the inflow edge and of radar coverage as
:func:`~nowcast.forecast.run_forecast`), verifies it against the archived
frames that followed, and accumulates the scores per method and lead time
with pysteps' verification accumulators:

* CSI, POD, FAR at :data:`nowcast.verify.THRESHOLDS` (contingency tables,
  ``det_cat_fct_init/accum/merge/compute``; event where rain rate > threshold);
* FSS at :data:`nowcast.verify.FSS_THRESHOLD` over
  :data:`nowcast.verify.FSS_SCALES_KM` (``fss_init/accum/merge/compute``);
* MSE and MAE in mm/h (``det_cont_fct_init/accum/merge/compute``).

The scores are those of the period as a whole (sums of contingency tables,
of squared fractions, of errors), not means of per-forecast scores: a
window with little rain weighs little, and a score is defined as soon as
any forecast of the period had an event. Pixels where the forecast or the
observation is NaN (outside radar coverage; the inflow edge where the rain
would come from outside the region) count nowhere, exactly as in
``nowcast verify`` (:mod:`nowcast.verify`).

Reference times
---------------
Every archived frame time ``t`` with ``T0 <= t <= T1`` whose input window
is complete (the ``input_frames`` frames ending at ``t``, as
``select_window`` with a maximum input age of 0 wants them: input frames may
precede ``T0``) and for which the archive holds the observation of at least
one lead (observations may follow ``T1``). Leads without an observation are
left out of that forecast's scores; the table says how many forecasts each
lead's scores hold.

Work and determinism
--------------------
One task per reference time computes every method for that window and
returns, per method and lead, the pysteps accumulator states
(:class:`nowcast.verify.DeterministicScores`, the accumulator ``nowcast verify``
scores one forecast with: small, picklable). Workers read the archive
themselves (the task carries the region and the data home, not arrays) and
keep the neural forecaster loaded between tasks (:data:`_MODELS`, keyed by
the checkpoint path); its config and checkpoint are looked up under that
data home first (``--home``), as ``nowcast forecast`` does. The driver merges the states **in reference-time
order**, whatever order tasks finish in (an ordered frontier; at most
:func:`_max_in_flight` results wait), so floating-point sums are added in one
order; and the neural network runs on one CPU thread in every task (the
parallelism is across windows; a convolution summed by another number of
threads differs in its last bits). So the scores are bit-for-bit the same
under every scheduler:

``scheduler=None`` (the CLI's default)
    a ``distributed.LocalCluster`` of single-threaded worker processes, one
    per core, listening on loopback only (dashboards on ``127.0.0.1`` free
    ports, as :mod:`pipelines.ingest` does);
``"threads"``
    a LocalCluster of one worker with one thread per core, in this process;
``"processes"``
    the same as the default;
``"synchronous"``
    no cluster: every window in this process, one after the other;
``"tcp://host:8786"`` or a ``distributed.Client``
    an existing cluster; its workers need nowcast installed and must see the
    data home at the same path.

A method that fails on a window (S-PROG on a nearly dry field, the model
missing or refusing the region, physically impossible output) does not stop
the hindcast and, unlike ``nowcast forecast``, is *not* replaced by
extrapolation: that window is left out of that method's scores and counted
in its ``failures``, with the reasons.

Outputs (:func:`write_hindcast`), under ``HOME/hindcasts/REGION/`` unless
told otherwise, named ``REGION_hindcast_T0_T1`` (first and last reference
time, ``YYYYmmddTHHMMZ``):

* ``.csv``: one row per method and lead time; columns as in
  ``nowcast verify``'s table (``csi_1mmh``, ``fss_1mmh_4km``, ``mse``...) plus
  ``method`` and ``forecasts`` (windows scored at that lead);
* ``.json``: the same scores with the period, the number of reference times,
  the settings, and per method its failures (with reasons) and compute time;
* ``.png``: CSI at each threshold and FSS at each scale against lead time,
  one line per method.

Ensembles
---------
With ``members=N`` (``--members N``), each method that makes ensembles
(:data:`ENSEMBLE_METHODS`: ``tmu`` and ``extrapolation`` with noise around
their forecast, :func:`nowcast.ensemble.ensemble_forecast`; ``steps``,
pysteps' STEPS, :func:`nowcast.ensemble.steps_forecast`, which is then a
method name of its own and has no deterministic scores) is also run as an
``N``-member ensemble on every window, as ``nowcast forecast --members N``
would make it, and scored with :class:`nowcast.verify.EnsembleScores`
(CRPS, ROC area, reliability, rank histogram, spread/skill per lead), merged
in reference-time order like the deterministic scores. The seed of a window
is :func:`window_seed`: fixed per reference time, so the scores are the same
under every scheduler. The ensemble scores go into the JSON
(``ensemble_results``), ``STEM_ensemble.csv``, a CRPS panel of the plot and
the printed table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time as _time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nowcast.config import Region, load_region
from nowcast.errors import ConfigError, ForecastError, NowcastError
from nowcast.forecast import MODEL_METHOD, iso, to_utc_datetime64
from nowcast.paths import home_dir
from nowcast.verify import (
    FSS_SCALES_KM,
    FSS_THRESHOLD,
    RELIABILITY_THRESHOLD,
    THRESHOLDS,
    DeterministicScores,
    EnsembleScores,
    _fmt,
    fss_scales,
)

log = logging.getLogger(__name__)

#: Methods of ``nowcast hindcast`` when ``--methods`` is not given.
DEFAULT_METHODS: tuple[str, ...] = (MODEL_METHOD, "extrapolation", "sprog", "persistence")
#: Reasons kept per method in the JSON report (the most frequent first).
MAX_REASONS = 5
#: Methods that are also run as ensembles when ``members`` is given (``steps`` only as one).
ENSEMBLE_METHODS: tuple[str, ...] = (MODEL_METHOD, "extrapolation", "steps")

#: Loaded forecasters of this process (a dask worker keeps its model between
#: tasks): ``(checkpoint path, mtime_ns, device, precision) -> Forecaster``.
_MODELS: dict[tuple[str, int, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


# ---------------------------------------------------------------- reference times
def reference_times(
    times: np.ndarray, start: np.datetime64, end: np.datetime64, input_frames: int, leads: int, timestep_minutes: int
) -> np.ndarray:
    """Archived times in ``[start, end]`` with a complete input window and at least one lead observed.

    The same rule as :func:`nowcast.forecast.select_window` with a maximum
    input age of 0 (the window ends at the reference time itself, its
    ``input_frames`` frames all archived), vectorised over the archive.
    """
    t = np.unique(np.asarray(times, dtype="datetime64[ns]").astype("int64"))
    step = int(np.timedelta64(int(timestep_minutes), "m") / np.timedelta64(1, "ns"))
    lo, hi = np.datetime64(start, "ns").astype("int64"), np.datetime64(end, "ns").astype("int64")
    cand = t[(t >= lo) & (t <= hi)]
    complete = np.ones(cand.size, dtype=bool)
    for k in range(1, int(input_frames)):
        complete &= np.isin(cand - k * step, t)
    observed = np.zeros(cand.size, dtype=bool)
    for k in range(1, int(leads) + 1):
        observed |= np.isin(cand + k * step, t)
    return cand[complete & observed].astype("datetime64[ns]")


# ---------------------------------------------------------------- one window (runs on a worker)
@dataclass
class WindowScores:
    """What one task returns: per method its accumulator states, or why it failed on this window."""

    reference_time: np.datetime64
    states: dict[str, DeterministicScores] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: Ensemble scores per method (``members`` > 0), and why an ensemble failed.
    ensembles: dict[str, EnsembleScores] = field(default_factory=dict)
    ensemble_failures: dict[str, str] = field(default_factory=dict)
    #: Set when the window itself could not be read (every method skipped).
    error: str | None = None


def _model(region: Region, device: str, precision: str, home: str | Path | None = None):
    """The region's forecaster, loaded once per process and kept (keyed by checkpoint path).

    ``home`` (the hindcast's data home, ``--home``) is searched for the model
    config and checkpoint before ``$NOWCAST_HOME`` and the shipped zoo, as
    ``nowcast forecast`` does: a model trained into that home must be the one
    scored, not silently reported as missing.
    """
    import nowcast.forecast as fc
    from nowcast.models.zoo import resolve_model

    try:
        path = resolve_model(region.forecast.model, home) if region.forecast.model else None
    except NowcastError:
        path = None  # load_model says why, in its own words
    if path is None:
        key = (f"name:{region.forecast.model}", 0, device, precision)
    else:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = 0
        key = (str(Path(path).resolve()), mtime, device, precision)
    with _MODELS_LOCK:
        forecaster = _MODELS.get(key)
        if forecaster is None:
            forecaster = fc.load_model(region, home=home)
            if hasattr(forecaster, "to"):  # a Forecaster; test doubles may not move
                forecaster.to(device, precision)
            for old in [k for k in _MODELS if k[0] == key[0]]:  # a rewritten checkpoint replaces the old one
                del _MODELS[old]
            _MODELS[key] = forecaster
            log.debug("loaded model %s for %s on %s (%s)", key[0], region.name, device, precision)
    return forecaster


def _one_torch_thread() -> None:
    """Run the network on one CPU thread in every task: the parallelism of a hindcast is across windows,
    and a convolution summed by another number of threads differs in its last bits, which would make
    the scores depend on the scheduler (dask's worker processes already start with one thread)."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@contextlib.contextmanager
def _torch_threads_restored(needed: bool) -> Iterator[None]:
    """Give this process its torch thread count back after in-process tasks set it to one."""
    if not needed:
        yield
        return
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _forecast(method: str, region: Region, window: np.ndarray, raw: np.ndarray, leads: int, device: str,
              precision: str, home: str | Path | None = None, history=None) -> np.ndarray:
    """One method's forecast ``(leads, ny, nx)`` mm/h, masked as ``run_forecast`` publishes it.

    ``history``: the archive's older frames for a model that reads them
    (:func:`nowcast.forecast.model_window`), as ``run_forecast`` reads them.
    """
    from nowcast.forecast import (
        check_output,
        model_window,
        publishable,
        run_baseline,
        run_model,
    )

    if method == MODEL_METHOD:
        forecaster = _model(region, device, precision, home)
        _one_torch_thread()
        values = run_model(forecaster, model_window(forecaster, window, history)[0], leads)
    else:
        values = run_baseline(method, window, leads, region.timestep_minutes)
    check_output(values, region, method)
    return publishable(values, raw[-1], region, method, leads)


def window_seed(seed: int | None, reference_time: np.datetime64) -> int:
    """Seed of the ensembles of the window ending at ``reference_time``.

    Without ``seed``, :func:`nowcast.ensemble.default_seed` of the reference
    time (the members ``nowcast forecast --members`` makes from that
    window); with one, a mix of both (``SeedSequence``), so that windows
    differ and a re-run is the same.
    """
    from nowcast.ensemble import default_seed

    base = default_seed(reference_time)
    if seed is None:
        return base
    state = np.random.SeedSequence([int(seed) % 2**32, base]).generate_state(1, dtype=np.uint32)[0]
    return int(state) % (2**31 - 1)


def _ensemble(method: str, region: Region, window: np.ndarray, raw: np.ndarray, det: np.ndarray | None, leads: int,
              members: int, seed: int, device: str, precision: str, home: str | Path | None = None) -> np.ndarray:
    """``members`` members ``(members, leads, ny, nx)`` mm/h of ``method``, as ``nowcast forecast --members`` makes them."""
    from nowcast import ensemble as ens
    from nowcast.forecast import _km_per_pixel, check_output

    if method == ens.STEPS_METHOD:
        values = ens.steps_forecast(raw, leads, members, seed, timestep_minutes=region.timestep_minutes,
                                    km_per_pixel=_km_per_pixel(region))
    else:
        motion = "LK"
        if method == MODEL_METHOD:
            config = getattr(_model(region, device, precision, home), "config", None)
            motion = str(getattr(getattr(config, "motion", None), "method", "LK"))
        values, _ = ens.ensemble_forecast(det, window, members, seed, motion_method=motion)
    check_output(values, region, method)
    values[:, :, np.isnan(raw[-1])] = np.nan  # radar coverage of the newest frame, as the product
    return values


def score_window(
    region: Region,
    home: str,
    reference_time: np.datetime64,
    methods: Sequence[str],
    leads: int,
    *,
    device: str = "cpu",
    precision: str = "auto",
    thresholds: Sequence[float] = THRESHOLDS,
    fss_threshold: float = FSS_THRESHOLD,
    fss_pixels: Sequence[int] = (1,),
    members: int = 0,
    seed: int | None = None,
    ensemble_thresholds: Sequence[float] = THRESHOLDS,
) -> WindowScores:
    """Forecast with every method from the window ending at ``reference_time`` and score each lead.

    With ``members`` > 0, the methods of :data:`ENSEMBLE_METHODS` are also run
    as ensembles (seed :func:`window_seed`) and scored in ``ensembles``;
    ``steps`` is scored only so.

    Reads the archive itself (a dask task gets the region and the home, not
    arrays). A method failing is recorded in ``failures``; a window that
    cannot be read (frames removed since the period was planned) in ``error``.
    """
    import dask

    t_ref = np.datetime64(reference_time, "ns")
    # Everything a window computes with dask (archive reads; pysteps' S-PROG and STEPS call dask.compute
    # themselves) runs in this thread: as tasks of the cluster we run on, it would start a client on every
    # worker, tie up its single thread waiting for them, and leave clients to fail at shutdown.
    with dask.config.set(scheduler="synchronous"):
        return _score_window(region, home, t_ref, methods, leads, device=device, precision=precision,
                             thresholds=thresholds, fss_threshold=fss_threshold, fss_pixels=fss_pixels,
                             members=members, seed=seed, ensemble_thresholds=ensemble_thresholds)


def _score_window(region: Region, home: str, t_ref: np.datetime64, methods: Sequence[str], leads: int, *,
                  device: str, precision: str, thresholds: Sequence[float], fss_threshold: float,
                  fss_pixels: Sequence[int], members: int, seed: int | None,
                  ensemble_thresholds: Sequence[float]) -> WindowScores:
    """:func:`score_window` under the synchronous dask scheduler."""
    from nowcast.forecast import _window_in_rain_rate, archive_history, select_window
    from nowcast.io.archive import Archive

    result = WindowScores(t_ref)
    step = np.timedelta64(int(region.timestep_minutes), "m").astype("timedelta64[ns]")
    n = region.forecast.input_frames
    try:
        archive = Archive.open(region, home=home, create=False)
        select_window(archive.times, t_ref, n, region.timestep_minutes, 0, region.name)
        window_da = archive.window(t_ref, n)
        observed = archive.read(t_ref + step, t_ref + leads * step).load()
    except NowcastError as exc:
        result.error = str(exc)
        return result
    raw = _window_in_rain_rate(window_da, region)
    window = np.nan_to_num(raw, nan=0.0)
    valid = t_ref + step * np.arange(1, leads + 1)
    obs_times = observed["time"].values.astype("datetime64[ns]")
    obs_values = _window_in_rain_rate(observed, region)
    truth: list[tuple[int, np.ndarray]] = []
    for i, t in enumerate(valid):
        hit = np.flatnonzero(obs_times == t)
        if hit.size:
            truth.append((i, obs_values[hit[0]]))
    from nowcast.ensemble import STEPS_METHOD

    deterministic: dict[str, np.ndarray] = {}  # what the ensembles are made around
    for method in methods:
        if method == STEPS_METHOD:
            continue  # an ensemble method only
        try:
            if method == MODEL_METHOD:
                _model(region, device, precision, home)  # loading (first task of a worker) is not forecast time
            started = _time.perf_counter()
            values = _forecast(method, region, window, raw, leads, device, precision, home,
                               history=archive_history(archive, region, t_ref))
        except Exception as exc:  # any method failing on a window is recorded, not fatal
            if isinstance(exc, MemoryError):
                raise
            result.failures[method] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, NowcastError) else str(exc)
            log.debug("method %s failed on the window ending %s", method, iso(t_ref), exc_info=True)
            continue
        result.seconds[method] = _time.perf_counter() - started
        acc = DeterministicScores(leads, thresholds, fss_threshold=fss_threshold, fss_pixels=fss_pixels)
        for i, obs in truth:
            acc.add(i, values[i], obs)
        result.states[method] = acc
        if members > 0 and method in ENSEMBLE_METHODS:
            deterministic[method] = values
    if members > 0:
        wseed = window_seed(seed, t_ref)
        for method in methods:
            if method not in ENSEMBLE_METHODS or (method != STEPS_METHOD and method not in deterministic):
                continue  # its deterministic forecast failed (counted there): no ensemble around it
            try:
                values = _ensemble(method, region, window, raw, deterministic.get(method), leads, members, wseed,
                                   device, precision, home)
            except Exception as exc:  # recorded, not fatal
                if isinstance(exc, MemoryError):
                    raise
                result.ensemble_failures[method] = (f"{type(exc).__name__}: {exc}" if not isinstance(exc, NowcastError)
                                                    else str(exc))
                log.debug("%s ensemble failed on the window ending %s", method, iso(t_ref), exc_info=True)
                continue
            scores = EnsembleScores(leads, members, ensemble_thresholds)
            for i, obs in truth:
                scores.add(i, values[:, i], obs)
            result.ensembles[method] = scores
    return result


# ---------------------------------------------------------------- schedulers
def _n_cores() -> int:
    from nowcast.cluster import n_cores

    return n_cores()


def _is_local(scheduler: Any) -> bool:
    return scheduler is None or scheduler in ("synchronous", "threads", "processes")


def _max_in_flight(client: Any) -> int:
    """Tasks submitted ahead of the oldest unmerged one: enough to keep every worker thread busy."""
    try:
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    except Exception:  # noqa: BLE001 - an unusual client: a sensible default
        threads = _n_cores()
    return max(8, 4 * threads)


@contextlib.contextmanager
def _runner(scheduler: Any) -> Iterator[tuple[Any, str]]:
    """Yield ``(client or None, description)``; a cluster started here is closed on exit."""
    if scheduler == "synchronous":
        yield None, "synchronous"
        return
    from nowcast.cluster import dask_client

    with dask_client("processes" if scheduler is None else scheduler) as (client, description, _):
        yield client, description


def _ordered_results(client: Any, task: Callable[..., WindowScores], times: np.ndarray, region: Region,
                     **kwargs: Any) -> Iterator[WindowScores]:
    """``task(region, time, **kwargs)`` for every time, yielded **in the order of** ``times``.

    Synchronous without a client. On a cluster, tasks run in any order; at
    most :func:`_max_in_flight` are submitted beyond the oldest one not yet
    yielded, so the results waiting for it stay few whatever the period's length.
    """
    if client is None:
        for t in times:
            yield task(region, reference_time=t, **kwargs)
        return
    from distributed import as_completed

    ahead = _max_in_flight(client)
    region_on_workers = client.scatter(region, broadcast=True, hash=False)
    done: dict[int, WindowScores] = {}
    submitted = 0
    following = 0
    queue = as_completed(with_results=False)
    index_of: dict[str, int] = {}

    def top_up() -> None:
        nonlocal submitted
        while submitted < len(times) and submitted < following + ahead:
            fut = client.submit(task, region_on_workers, reference_time=times[submitted], pure=False, **kwargs)
            index_of[fut.key] = submitted
            queue.add(fut)
            submitted += 1

    top_up()
    for fut in queue:
        done[index_of.pop(fut.key)] = fut.result()
        fut.release()
        while following in done:
            yield done.pop(following)
            following += 1
        top_up()


# ---------------------------------------------------------------- the hindcast
@dataclass
class HindcastResult:
    """Scores of a hindcast and what they are made of.

    ``scores`` is an :class:`xarray.Dataset`: ``csi``, ``pod``, ``far``
    ``(forecast_method, lead_time, threshold)``, ``fss`` ``(forecast_method,
    lead_time, scale)``, ``mse``, ``mae``, ``forecasts``, ``n_valid``
    ``(forecast_method, lead_time)``; ``lead_time`` in minutes. (Not
    ``method``: ``Dataset.sel`` has an argument of that name.) It depends only on the archive, the period and
    the settings, never on the scheduler.

    With ``members`` > 0, ``ensemble_scores`` is a dataset over
    ``ensemble_methods``: ``crps``, ``spread``, ``rmse``, ``spread_skill``,
    ``forecasts``, ``n_valid`` ``(forecast_method, lead_time)``; ``roc_area``,
    ``reliability_deviation`` ``(forecast_method, lead_time, threshold)``;
    ``rank_histogram`` ``(forecast_method, lead_time, rank)``. ``methods``
    holds the deterministic methods only (not ``steps``).
    """

    region: str
    start: np.datetime64
    end: np.datetime64
    reference_times: np.ndarray
    methods: tuple[str, ...]
    scores: Any
    failures: dict[str, int]
    failure_reasons: dict[str, dict[str, int]]
    seconds_per_forecast: dict[str, float]
    skipped_windows: dict[str, str]
    scheduler: str
    elapsed_s: float
    paths: dict[str, Path] = field(default_factory=dict)
    members: int = 0
    seed: int | None = None
    ensemble_methods: tuple[str, ...] = ()
    ensemble_scores: Any = None
    ensemble_failures: dict[str, int] = field(default_factory=dict)
    ensemble_failure_reasons: dict[str, dict[str, int]] = field(default_factory=dict)


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    from nowcast.baselines import METHODS
    from nowcast.ensemble import STEPS_METHOD

    out: list[str] = []
    for name in methods:
        key = str(name).strip().lower()
        if key not in (MODEL_METHOD, STEPS_METHOD) and key not in METHODS:
            raise ConfigError(f"--methods: unknown method {name!r}; valid names: "
                              f"{', '.join([MODEL_METHOD, *sorted(METHODS), STEPS_METHOD])}")
        if key not in out:
            out.append(key)
    if not out:
        raise ConfigError("--methods: name at least one method")
    return tuple(out)


def _check_device(device: str, precision: str, scheduler: Any, methods: Sequence[str]) -> None:
    from nowcast.precision import DEVICES, PRECISIONS, check_choice

    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if device not in DEVICES and not str(device).startswith("cuda"):
        raise ConfigError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    if MODEL_METHOD in methods and _is_local(scheduler):
        check_choice(device=device, precision=precision)  # workers of a remote cluster may have what we lack


def run_hindcast(
    region: Region | str,
    start: str | np.datetime64,
    end: str | np.datetime64,
    methods: Sequence[str] = DEFAULT_METHODS,
    home: str | Path | None = None,
    scheduler: Any = None,
    leads: int | None = None,
    *,
    device: str = "cpu",
    precision: str = "auto",
    out: str | Path | None = None,
    write: bool = True,
    progress: Callable[[int, int], None] | None = None,
    members: int = 0,
    seed: int | None = None,
) -> HindcastResult:
    """Forecast at every reference time of ``[start, end]``, verify, and aggregate per method and lead.

    Parameters
    ----------
    region
        Region config or name.
    start, end
        The period (ISO 8601, UTC if naive; both inclusive): it bounds the
        reference times (see the module docstring).
    methods
        ``tmu`` and/or baseline names (:data:`nowcast.baselines.METHODS`).
    home
        Data home (default ``$NOWCAST_HOME`` or ``~/.nowcast``).
    scheduler
        ``None`` (a LocalCluster of processes), ``"threads"``,
        ``"processes"``, ``"synchronous"``, a scheduler address or a
        ``distributed.Client``.
    leads
        Lead times per forecast (default: the region's ``forecast.leads``).
    device, precision
        Where and in what arithmetic the neural forecaster runs (as
        ``nowcast forecast``).
    out
        Output folder (default ``HOME/hindcasts/REGION``).
    write
        Write the CSV, JSON and PNG (:func:`write_hindcast`).
    progress
        ``progress(done, total)`` after each merged window.
    members
        Also run each method of :data:`ENSEMBLE_METHODS` as an ensemble of
        this many members per window and accumulate its
        :class:`~nowcast.verify.EnsembleScores` (0: none; ``steps`` needs it).
    seed
        Mixed into every window's seed (:func:`window_seed`; default: the
        seed ``nowcast forecast`` gives that reference time).

    Raises
    ------
    ForecastError
        ``start`` after ``end``; no reference time in the period; ``members`` < 0.
    ConfigError
        Unknown method, device or precision; ``steps`` without ``members``.
    ArchiveError
        No archive for the region.
    """
    from nowcast.io.archive import Archive

    started = _time.perf_counter()
    region = region if isinstance(region, Region) else load_region(region, home)
    from nowcast.ensemble import STEPS_METHOD

    methods = _check_methods(methods)
    _check_device(device, precision, scheduler, methods)
    members = int(members or 0)
    if members < 0:
        raise ForecastError(f"--members {members}: need 0 (no ensembles) or more members")
    if STEPS_METHOD in methods and not members:
        raise ConfigError(f"--methods {STEPS_METHOD}: an ensemble method; give the members with --members N")
    det_methods = tuple(m for m in methods if m != STEPS_METHOD)
    ens_methods = tuple(m for m in methods if m in ENSEMBLE_METHODS) if members else ()
    leads = int(leads or region.forecast.leads)
    if leads < 1:
        raise ForecastError(f"--leads {leads}: need at least one lead time")
    t0, t1 = to_utc_datetime64(start, "--start"), to_utc_datetime64(end, "--end")
    if t0 > t1:
        raise ForecastError(f"--start {iso(t0)} is after --end {iso(t1)}")
    archive = Archive.open(region, home=home, create=False)
    times = archive.times
    n_in = region.forecast.input_frames
    refs = reference_times(times, t0, t1, n_in, leads, region.timestep_minutes)
    if refs.size == 0:
        held = f"{times.size} frames, {iso(times[0])} .. {iso(times[-1])}" if times.size else "no frames"
        raise ForecastError(
            f"region {region.name!r}: no reference time in {iso(t0)} .. {iso(t1)} has a complete window of "
            f"{n_in} input frames and an observation to verify against (archive: {held})")
    scales = fss_scales(region.resolution, FSS_SCALES_KM)
    settings = {"thresholds": THRESHOLDS, "fss_threshold": FSS_THRESHOLD, "fss_pixels": [px for px, _ in scales]}
    home_str = str(home_dir(home))
    log.info("hindcast %s: %d reference times %s .. %s, methods %s", region.name, refs.size, iso(refs[0]),
             iso(refs[-1]), ", ".join(methods))

    totals = {m: DeterministicScores(leads, **settings) for m in det_methods}
    reasons: dict[str, Counter] = {m: Counter() for m in det_methods}
    seconds: dict[str, list[float]] = {m: [] for m in det_methods}
    ens_totals = {m: EnsembleScores(leads, members, THRESHOLDS) for m in ens_methods}
    ens_forecasts = {m: np.zeros(leads, dtype=np.int64) for m in ens_methods}
    ens_reasons: dict[str, Counter] = {m: Counter() for m in ens_methods}
    skipped: dict[str, str] = {}
    with _runner(scheduler) as (client, description), _torch_threads_restored(MODEL_METHOD in methods):
        log.info("hindcast %s: running on %s", region.name, description)  # the cluster is up: Ctrl-C stops it
        done = 0
        for item in _ordered_results(client, score_window, refs, region, home=home_str, methods=methods,
                                     leads=leads, device=device, precision=precision, members=members, seed=seed,
                                     **settings):
            done += 1
            if item.error is not None:
                skipped[iso(item.reference_time)] = item.error
                log.warning("window ending %s skipped: %s", iso(item.reference_time), item.error)
            for m in methods:  # merged in reference-time order: the same sums under every scheduler
                if m in item.states:
                    totals[m].merge(item.states[m])
                    seconds[m].append(item.seconds[m])
                elif m in item.failures:
                    reasons[m][item.failures[m]] += 1
            for m in ens_methods:  # the same order for the ensemble sums
                if m in item.ensembles:
                    ens_totals[m].merge(item.ensembles[m])
                    ens_forecasts[m] += item.ensembles[m].n > 0
                elif m in item.ensemble_failures:
                    ens_reasons[m][item.ensemble_failures[m]] += 1
            if progress is not None:
                progress(done, refs.size)
    for m in det_methods:
        if reasons[m]:
            top = reasons[m].most_common(1)[0][0]
            log.warning("method %s failed on %d of %d windows (most often: %s)", m, sum(reasons[m].values()),
                        refs.size, top)

    for m in ens_methods:
        if ens_reasons[m]:
            log.warning("%s ensemble failed on %d of %d windows (most often: %s)", m, sum(ens_reasons[m].values()),
                        refs.size, ens_reasons[m].most_common(1)[0][0])

    results = [totals[m].result() for m in det_methods] or [DeterministicScores(leads, **settings).result()]
    scores = _scores_dataset(region, results, det_methods, leads, scales, refs, t0, t1)
    if not det_methods:
        scores = scores.isel(forecast_method=slice(0, 0))
    ens_scores = None
    if ens_methods:
        ens_scores = _ensemble_dataset(region, [ens_totals[m].result() for m in ens_methods],
                                       [ens_forecasts[m] for m in ens_methods], ens_methods, leads, members, t0, t1)
    result = HindcastResult(
        region=region.name, start=t0, end=t1, reference_times=refs, methods=det_methods, scores=scores,
        failures={m: int(sum(reasons[m].values())) for m in det_methods},
        failure_reasons={m: dict(reasons[m].most_common(MAX_REASONS)) for m in det_methods},
        seconds_per_forecast={m: (float(np.mean(seconds[m])) if seconds[m] else float("nan")) for m in det_methods},
        skipped_windows=skipped, scheduler=description, elapsed_s=0.0,
        members=members, seed=seed, ensemble_methods=ens_methods, ensemble_scores=ens_scores,
        ensemble_failures={m: int(sum(ens_reasons[m].values())) for m in ens_methods},
        ensemble_failure_reasons={m: dict(ens_reasons[m].most_common(MAX_REASONS)) for m in ens_methods},
    )
    if write:
        result.paths = write_hindcast(result, out if out is not None else hindcasts_dir(region.name, home))
    result.elapsed_s = _time.perf_counter() - started
    return result


def _scores_dataset(region: Region, results: list[dict[str, np.ndarray]], methods: Sequence[str], leads: int,
                    scales: list[tuple[int, float]], refs: np.ndarray, t0: np.datetime64, t1: np.datetime64):
    import xarray as xr

    stack = {k: np.stack([r[k] for r in results]) for k in results[0]}
    minutes = region.timestep_minutes * np.arange(1, leads + 1)
    return xr.Dataset(
        {
            "csi": (("forecast_method", "lead_time", "threshold"), stack["csi"], {"long_name": "critical success index"}),
            "pod": (("forecast_method", "lead_time", "threshold"), stack["pod"], {"long_name": "probability of detection"}),
            "far": (("forecast_method", "lead_time", "threshold"), stack["far"], {"long_name": "false alarm ratio"}),
            "fss": (("forecast_method", "lead_time", "scale"), stack["fss"],
                    {"long_name": f"fractions skill score at {_fmt(FSS_THRESHOLD)} mm/h"}),
            "mse": (("forecast_method", "lead_time"), stack["mse"], {"units": "mm2 h-2", "long_name": "mean squared error"}),
            "mae": (("forecast_method", "lead_time"), stack["mae"], {"units": "mm h-1", "long_name": "mean absolute error"}),
            "forecasts": (("forecast_method", "lead_time"), stack["forecasts"], {"long_name": "forecasts scored"}),
            "n_valid": (("forecast_method", "lead_time"), stack["n_valid"],
                        {"long_name": "pixels with forecast and observation, summed over forecasts"}),
        },
        coords={
            "forecast_method": ("forecast_method", list(methods)),
            "lead_time": ("lead_time", minutes, {"units": "minutes", "long_name": "lead time"}),
            "threshold": ("threshold", np.asarray(THRESHOLDS, dtype=float), {"units": "mm h-1"}),
            "scale": ("scale", np.asarray([km for _, km in scales]), {"units": "km", "long_name": "FSS neighbourhood size"}),
            "scale_pixels": ("scale", np.asarray([px for px, _ in scales])),
        },
        attrs={
            "region": region.name,
            "start": iso(t0),
            "end": iso(t1),
            "first_reference_time": iso(refs[0]),
            "last_reference_time": iso(refs[-1]),
            "reference_times": int(refs.size),
            "fss_threshold": float(FSS_THRESHOLD),
        },
    )


def _ensemble_dataset(region: Region, results: list[dict[str, np.ndarray]], forecasts: list[np.ndarray],
                      methods: Sequence[str], leads: int, members: int, t0: np.datetime64, t1: np.datetime64):
    import xarray as xr

    stack = {k: np.stack([r[k] for r in results]) for k in results[0]}
    minutes = region.timestep_minutes * np.arange(1, leads + 1)
    ml, mlt = ("forecast_method", "lead_time"), ("forecast_method", "lead_time", "threshold")
    return xr.Dataset(
        {
            "crps": (ml, stack["crps"], {"units": "mm h-1", "long_name": "continuous ranked probability score"}),
            "roc_area": (mlt, stack["roc_area"], {"long_name": "area under the ROC curve"}),
            "reliability_deviation": (mlt, stack["reliability_deviation"],
                                      {"long_name": "largest |observed frequency - forecast probability| of a bin"}),
            "spread": (ml, stack["spread"], {"units": "mm h-1", "long_name": "ensemble spread"}),
            "rmse": (ml, stack["rmse"], {"units": "mm h-1", "long_name": "RMSE of the ensemble mean"}),
            "spread_skill": (ml, stack["spread_skill"], {"long_name": "spread/skill ratio (1: well dispersed)"}),
            "rank_histogram": (("forecast_method", "lead_time", "rank"), stack["rank_histogram"],
                               {"long_name": "rank histogram (fractions)"}),
            "forecasts": (ml, np.stack(forecasts), {"long_name": "ensemble forecasts scored"}),
            "n_valid": (ml, stack["n_valid"], {"long_name": "pixels scored, summed over forecasts"}),
        },
        coords={
            "forecast_method": ("forecast_method", list(methods)),
            "lead_time": ("lead_time", minutes, {"units": "minutes", "long_name": "lead time"}),
            "threshold": ("threshold", np.asarray(THRESHOLDS, dtype=float), {"units": "mm h-1"}),
            "rank": ("rank", np.arange(members + 1)),
        },
        attrs={"region": region.name, "start": iso(t0), "end": iso(t1), "members": int(members),
               "scores_from": "nowcast.verify.EnsembleScores (pysteps CRPS, reldiag, ROC_curve, rankhist)"},
    )


# ---------------------------------------------------------------- outputs
def hindcasts_dir(region: str, home: str | Path | None = None) -> Path:
    """Default output folder: ``HOME/hindcasts/REGION``."""
    return home_dir(home) / "hindcasts" / region


def hindcast_stem(result: HindcastResult) -> str:
    """``REGION_hindcast_FIRST_LAST`` (reference times, ``YYYYmmddTHHMMZ``)."""
    first, last = (pd.Timestamp(t).strftime("%Y%m%dT%H%MZ") for t in (result.reference_times[0], result.reference_times[-1]))
    return f"{result.region}_hindcast_{first}_{last}"


def hindcast_table(result: HindcastResult) -> pd.DataFrame:
    """One row per method and lead time; columns named as ``nowcast verify``'s (``csi_1mmh``, ``fss_1mmh_4km``...)."""
    s = result.scores
    rows = []
    thr_fss = _fmt(s.attrs["fss_threshold"])
    for mi, method in enumerate(s["forecast_method"].values):
        for li, lead in enumerate(s["lead_time"].values):
            row: dict[str, object] = {"method": str(method), "lead_minutes": int(lead),
                                      "forecasts": int(s["forecasts"].values[mi, li])}
            for name in ("csi", "pod", "far"):
                for j, thr in enumerate(s["threshold"].values):
                    row[f"{name}_{_fmt(thr)}mmh"] = float(s[name].values[mi, li, j])
            for k, km in enumerate(s["scale"].values):
                row[f"fss_{thr_fss}mmh_{_fmt(km)}km"] = float(s["fss"].values[mi, li, k])
            row["mse"] = float(s["mse"].values[mi, li])
            row["mae"] = float(s["mae"].values[mi, li])
            row["n_valid"] = int(s["n_valid"].values[mi, li])
            rows.append(row)
    return pd.DataFrame(rows)


def ensemble_table(result: HindcastResult) -> pd.DataFrame:
    """One row per ensemble method and lead: ``crps``, ``roc_area_1mmh``, ``reliability_deviation_1mmh``
    (at :data:`~nowcast.verify.RELIABILITY_THRESHOLD`), ``spread``, ``rmse``, ``spread_skill``, ``n_valid``."""
    s = result.ensemble_scores
    rows: list[dict[str, object]] = []
    if s is None:
        return pd.DataFrame(rows)
    j = int(np.argmin(np.abs(s["threshold"].values - RELIABILITY_THRESHOLD)))
    thr = _fmt(s["threshold"].values[j])
    for mi, method in enumerate(s["forecast_method"].values):
        for li, lead in enumerate(s["lead_time"].values):
            rows.append({
                "method": str(method), "members": int(s.attrs["members"]), "lead_minutes": int(lead),
                "forecasts": int(s["forecasts"].values[mi, li]),
                "crps": float(s["crps"].values[mi, li]),
                f"roc_area_{thr}mmh": float(s["roc_area"].values[mi, li, j]),
                f"reliability_deviation_{thr}mmh": float(s["reliability_deviation"].values[mi, li, j]),
                "spread": float(s["spread"].values[mi, li]), "rmse": float(s["rmse"].values[mi, li]),
                "spread_skill": float(s["spread_skill"].values[mi, li]), "n_valid": int(s["n_valid"].values[mi, li]),
            })
    return pd.DataFrame(rows)


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def hindcast_json(result: HindcastResult) -> dict:
    """A self-describing JSON document: period, settings, and per method its scores and failures."""
    s = result.scores
    thresholds = [_fmt(t) for t in s["threshold"].values]
    scales = [f"{_fmt(v)}km" for v in s["scale"].values]
    methods = {}
    for mi, method in enumerate(result.methods):
        leads = []
        for li, lead in enumerate(s["lead_time"].values):
            leads.append({
                "lead_minutes": int(lead),
                "forecasts": int(s["forecasts"].values[mi, li]),
                **{name: {t: _clean(float(v)) for t, v in zip(thresholds, s[name].values[mi, li])}
                   for name in ("csi", "pod", "far")},
                "fss": {k: _clean(float(v)) for k, v in zip(scales, s["fss"].values[mi, li])},
                "mse": _clean(float(s["mse"].values[mi, li])),
                "mae": _clean(float(s["mae"].values[mi, li])),
                "n_valid": int(s["n_valid"].values[mi, li]),
            })
        methods[method] = {
            "failures": result.failures[method],
            "failure_reasons": result.failure_reasons[method],
            "seconds_per_forecast": _clean(result.seconds_per_forecast[method]),
            "leads": leads,
        }
    doc = {
        "region": result.region,
        "start": iso(result.start),
        "end": iso(result.end),
        "reference_times": int(result.reference_times.size),
        "first_reference_time": iso(result.reference_times[0]),
        "last_reference_time": iso(result.reference_times[-1]),
        "skipped_windows": result.skipped_windows,
        "methods": list(result.methods),
        "scheduler": result.scheduler,
        "units": {"thresholds": "mm h-1", "mse": "mm2 h-2", "mae": "mm h-1", "lead_minutes": "minutes"},
        "thresholds": [float(t) for t in s["threshold"].values],
        "fss_threshold": float(s.attrs["fss_threshold"]),
        "fss_scales_km": [float(v) for v in s["scale"].values],
        "fss_scales_pixels": [int(p) for p in s["scale_pixels"].values],
        "scores_from": "pysteps.verification accumulators (det_cat_fct, det_cont_fct, spatialscores.fss: "
                       "init/accum/merge/compute), merged in reference-time order",
        "results": methods,
    }
    if result.ensemble_scores is not None:
        e = result.ensemble_scores
        ens = {}
        for mi, method in enumerate(result.ensemble_methods):
            ens[method] = {
                "failures": result.ensemble_failures.get(method, 0),
                "failure_reasons": result.ensemble_failure_reasons.get(method, {}),
                "leads": [{
                    "lead_minutes": int(lead),
                    "forecasts": int(e["forecasts"].values[mi, li]),
                    "crps": _clean(float(e["crps"].values[mi, li])),
                    "roc_area": {t: _clean(float(v)) for t, v in zip(thresholds, e["roc_area"].values[mi, li])},
                    "reliability_deviation": {t: _clean(float(v))
                                              for t, v in zip(thresholds, e["reliability_deviation"].values[mi, li])},
                    "spread": _clean(float(e["spread"].values[mi, li])),
                    "rmse": _clean(float(e["rmse"].values[mi, li])),
                    "spread_skill": _clean(float(e["spread_skill"].values[mi, li])),
                    "rank_histogram": [_clean(float(v)) for v in e["rank_histogram"].values[mi, li]],
                    "n_valid": int(e["n_valid"].values[mi, li]),
                } for li, lead in enumerate(e["lead_time"].values)],
            }
        doc["members"] = int(result.members)
        doc["seed"] = result.seed
        doc["ensemble_methods"] = list(result.ensemble_methods)
        doc["ensemble_scores_from"] = str(e.attrs["scores_from"]) + ", merged in reference-time order"
        doc["ensemble_results"] = ens
    return doc


def plot_hindcast(result: HindcastResult, path: str | Path) -> Path:
    """PNG: CSI at each threshold and FSS at each scale against lead time (minutes), one line per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    s = result.scores
    minutes = s["lead_time"].values
    panels = [("csi", j, f"CSI, > {_fmt(t)} mm/h") for j, t in enumerate(s["threshold"].values)]
    panels += [("fss", k, f"FSS >= {_fmt(s.attrs['fss_threshold'])} mm/h, {_fmt(km)} km")
               for k, km in enumerate(s["scale"].values)]
    e = result.ensemble_scores
    if e is not None:
        panels.append(("crps", 0, f"CRPS (mm/h), {e.attrs['members']}-member ensembles"))
    ncols = 4
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.3 * nrows), squeeze=False, constrained_layout=True)
    try:
        for ax, (name, j, title) in zip(axes.flat, panels):
            if name == "crps":
                for mi, method in enumerate(e["forecast_method"].values):
                    ax.plot(minutes, e["crps"].values[mi], marker="o", ms=3, label=f"{method} ensemble")
                ax.set(title=title, xlabel="lead time (min)", xlim=(0, minutes[-1] + minutes[0]))
                ax.set_ylim(bottom=0)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
                continue
            for mi, method in enumerate(s["forecast_method"].values):
                ax.plot(minutes, s[name].values[mi, :, j], marker="o", ms=3, label=str(method))
            if name == "fss":
                ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            if not np.isfinite(s[name].values[:, :, j]).any():
                ax.text(0.5, 0.5, "undefined: no event\nin forecasts or observations", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
            ax.set(title=title, xlabel="lead time (min)", ylim=(0, 1), xlim=(0, minutes[-1] + minutes[0]))
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        if s.sizes["forecast_method"]:
            axes.flat[0].legend(fontsize=8)
        fig.suptitle(f"Hindcast, region {result.region}: {result.reference_times.size} reference times, "
                     f"{iso(result.reference_times[0])} .. {iso(result.reference_times[-1])}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return path


def write_hindcast(result: HindcastResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``STEM.csv``, ``STEM.json`` and ``STEM.png`` (:func:`hindcast_stem`) into ``out_dir``,
    and ``STEM_ensemble.csv`` (:func:`ensemble_table`) when there are ensemble scores."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = hindcast_stem(result)
    paths = {"csv": out_dir / f"{stem}.csv", "json": out_dir / f"{stem}.json", "png": out_dir / f"{stem}.png"}
    hindcast_table(result).to_csv(paths["csv"], index=False, float_format="%.6g")
    paths["json"].write_text(json.dumps(hindcast_json(result), indent=2) + "\n")
    if result.ensemble_scores is not None:
        paths["ensemble_csv"] = out_dir / f"{stem}_ensemble.csv"
        ensemble_table(result).to_csv(paths["ensemble_csv"], index=False, float_format="%.6g")
    plot_hindcast(result, paths["png"])
    log.info("hindcast scores written to %s (.csv, .json, .png)", out_dir / stem)
    return paths


def markdown_table(result: HindcastResult) -> str:
    """The scores as a Markdown table: one row per method and lead; CSI at every threshold, FSS, MSE, MAE;
    then, with ensembles, one row per ensemble method and lead: CRPS, ROC area, reliability, spread/skill."""
    s = result.scores
    thr = [_fmt(t) for t in s["threshold"].values]
    km = [_fmt(v) for v in s["scale"].values]
    fss_thr = _fmt(s.attrs["fss_threshold"])
    head = ["method", "lead (min)", "forecasts", *[f"CSI {t}" for t in thr], *[f"FSS {fss_thr} mm/h {k} km" for k in km],
            "MSE", "MAE"]
    lines = ["| " + " | ".join(head) + " |", "| --- | " + " | ".join("---:" for _ in head[1:]) + " |"]

    def cell(v: float) -> str:
        return "-" if not np.isfinite(v) else f"{v:.3f}"

    for mi, method in enumerate(s["forecast_method"].values):
        for li, lead in enumerate(s["lead_time"].values):
            row = [str(method), str(int(lead)), str(int(s["forecasts"].values[mi, li]))]
            row += [cell(v) for v in s["csi"].values[mi, li]]
            row += [cell(v) for v in s["fss"].values[mi, li]]
            row += [cell(s["mse"].values[mi, li]), cell(s["mae"].values[mi, li])]
            lines.append("| " + " | ".join(row) + " |")
    table = ensemble_table(result)
    if len(table):
        thr = _fmt(RELIABILITY_THRESHOLD)
        head = ["ensemble", "lead (min)", "forecasts", "CRPS", f"ROC area {thr}", f"reliability dev. {thr}",
                "spread/skill"]
        lines += ["", "| " + " | ".join(head) + " |", "| --- | " + " | ".join("---:" for _ in head[1:]) + " |"]
        for d in table.to_dict("records"):
            row = [f"{d['method']} ({d['members']})", str(d["lead_minutes"]), str(d["forecasts"]), cell(d["crps"]),
                   cell(d[f"roc_area_{thr}mmh"]), cell(d[f"reliability_deviation_{thr}mmh"]), cell(d["spread_skill"])]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
