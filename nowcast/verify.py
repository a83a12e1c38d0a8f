"""Verification of a forecast dataset against observed rain rate, per lead time.

Scores (all from :mod:`pysteps.verification`, the field's reference
implementation, so numbers compare with the literature):

* categorical, from the contingency table at each threshold of
  :data:`THRESHOLDS` (``det_cat_fct``; a pixel is an event where rain rate
  > threshold): CSI (critical success index), POD (probability of detection),
  FAR (false alarm ratio);
* spatial: FSS (fractions skill score, ``spatialscores.fss``; event where
  rain rate >= threshold) at :data:`FSS_THRESHOLD` over neighbourhoods of
  :data:`FSS_SCALES_KM`, converted to whole pixels of the grid;
* continuous: MSE and MAE in mm/h (``det_cont_fct``).

All of them are accumulated per lead time by :class:`DeterministicScores`,
the one implementation that ``nowcast verify`` (one forecast), ``nowcast
hindcast`` (a period, merged across dask tasks) and the held-out skill of a
checkpoint (:mod:`nowcast.models.skill`) share, with the same default
thresholds (:data:`THRESHOLDS`).

Only pixels where both forecast and observation are finite count: a pixel
outside radar coverage (NaN) is neither a hit nor a miss. Lead times whose
valid time has no observation are left out. Undefined scores (e.g. CSI when
neither field has an event) are NaN, never 0, so averages do not mistake
"nothing happened" for "no skill".

Outputs: an :class:`xarray.Dataset` of scores (:func:`verify_forecast`), a
wide table (:func:`scores_table`) written as CSV, a JSON document and a PNG
of skill vs lead time (:func:`write_scores`).

Ensembles (a product with a ``realization`` dimension, ``nowcast forecast
--members N``) are scored with pysteps' probabilistic and ensemble scores
instead (:func:`verify_ensemble`, accumulated by :class:`EnsembleScores`,
which hindcasts and studies use too), per lead time:

* CRPS (``probscores.CRPS_init/accum/compute``), mm/h;
* reliability diagram at each probability threshold (``reldiag_init/accum/
  compute``; event where the observation >= threshold; 10 probability bins,
  a bin with fewer than :data:`RELIABILITY_MIN_COUNT` samples is undefined)
  and its largest distance from the diagonal;
* ROC curve and area (``ROC_curve_init/accum/compute``) at each threshold;
* rank histogram (``ensscores.rankhist_init/accum/compute``; pairs where
  the observation and every member are below the rain threshold are left
  out, as pysteps does with ``X_min``; ties broken at random as pysteps
  does, but with a generator of their own seeded by the count so far
  (:func:`_rankhist_accum`), not NumPy's global one, so the histogram is the
  same under every scheduler);
* spread and skill: the root of the mean ensemble variance (unbiased) and
  the RMSE of the ensemble mean, and their ratio ``sqrt((M + 1) / M) *
  spread / RMSE`` (Fortin et al. 2014), which is 1 for a reliable ensemble
  of ``M`` members.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from nowcast.config import Region, load_region
from nowcast.errors import GridError, NowcastError
from nowcast.paths import home_dir
from nowcast.products import lead_minutes, open_forecast
from nowcast.units import to_rainrate

log = logging.getLogger(__name__)

#: Rain-rate thresholds (mm/h) of the categorical scores.
THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
#: Rain-rate threshold (mm/h) of the fractions skill score.
FSS_THRESHOLD = 1.0
#: FSS neighbourhood sizes (km), rounded to whole pixels of the grid.
FSS_SCALES_KM: tuple[float, ...] = (1.0, 4.0, 16.0)


def fss_scales(resolution_m: float, scales_km: Sequence[float] = FSS_SCALES_KM) -> list[tuple[int, float]]:
    """Neighbourhood sizes as ``(pixels, km actually covered)``.

    A scale finer than the grid becomes one pixel; scales that round to the
    same number of pixels are kept once, labelled with the size they really
    have (on a 2 km grid, "1 km" is 1 pixel = 2 km).
    """
    res_km = float(resolution_m) / 1000.0
    out: dict[int, float] = {}
    for km in scales_km:
        px = max(1, int(round(km / res_km)))
        out.setdefault(px, px * res_km)
    return sorted(out.items())


def _fmt(value: float) -> str:
    """``0.5`` -> ``0.5``, ``1.0`` -> ``1`` (for column names and labels)."""
    return f"{value:g}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the divide-by-zero warnings of undefined scores (they become NaN)."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


class DeterministicScores:
    """CSI/POD/FAR, FSS, MSE and MAE per lead time, accumulated over forecasts with pysteps.

    The one implementation of the deterministic scores: ``nowcast verify``
    (one forecast, :func:`verify_forecast`), ``nowcast hindcast`` (every
    window of a period, merged across dask tasks) and the held-out skill of a
    checkpoint and the studies (:class:`nowcast.models.skill.LeadScores`,
    which adds names such as ``csi@1``) all add their fields here, so a score
    means the same wherever it is printed. Its counterpart for ensembles is
    :class:`EnsembleScores`.

    ``cat[lead][threshold]`` are contingency tables (``det_cat_fct_init``),
    ``fss[lead][scale]`` FSS objects (``fss_init``), ``cont[lead]`` error
    objects (``det_cont_fct_init``); ``forecasts`` and ``n_valid`` count the
    forecasts and pixels scored at each lead. Sums, not means of per-forecast
    scores, so a forecast with little rain weighs little. A lead nothing was
    added to keeps pysteps' empty state, which :meth:`merge` skips and
    :meth:`result` reports as NaN. Small and picklable (a dask task returns one).

    Parameters
    ----------
    leads
        Number of lead times.
    thresholds
        Rain rates (mm/h) of the categorical scores (default
        :data:`THRESHOLDS`, those ``nowcast verify`` and ``hindcast`` report).
    fss_threshold
        FSS event threshold (mm/h).
    fss_pixels
        FSS neighbourhood sizes in whole pixels (:func:`fss_scales` turns
        :data:`FSS_SCALES_KM` into them for a grid).
    """

    def __init__(self, leads: int, thresholds: Sequence[float] = THRESHOLDS, *, fss_threshold: float = FSS_THRESHOLD,
                 fss_pixels: Sequence[int] = (1,)) -> None:
        import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
        from pysteps.verification.detcatscores import det_cat_fct_init
        from pysteps.verification.detcontscores import det_cont_fct_init
        from pysteps.verification.spatialscores import fss_init

        self.leads = int(leads)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.fss_threshold = float(fss_threshold)
        self.fss_pixels = tuple(int(p) for p in fss_pixels)
        self.cat = [[det_cat_fct_init(t) for t in self.thresholds] for _ in range(self.leads)]
        self.fss = [[fss_init(self.fss_threshold, p) for p in self.fss_pixels] for _ in range(self.leads)]
        self.cont = [det_cont_fct_init() for _ in range(self.leads)]
        self.forecasts = np.zeros(self.leads, dtype=np.int64)
        self.n_valid = np.zeros(self.leads, dtype=np.int64)

    def _compatible(self, other: DeterministicScores) -> None:
        mine = (self.leads, self.thresholds, self.fss_threshold, self.fss_pixels)
        theirs = (other.leads, other.thresholds, other.fss_threshold, other.fss_pixels)
        if mine != theirs:
            raise ValueError(f"cannot merge scores of different settings: {mine} != {theirs}")

    def add(self, lead: int, pred: np.ndarray, obs: np.ndarray) -> None:
        """Add one forecast field of lead index ``lead`` and its observation ``(ny, nx)``, mm/h.

        Only pixels where both are finite are scored (no coverage, the unknown
        inflow edge); for FSS both fields are NaN (no event) where either is,
        so coverage gaps neither help nor hurt.
        """
        from pysteps.verification.detcatscores import det_cat_fct_accum
        from pysteps.verification.detcontscores import det_cont_fct_accum
        from pysteps.verification.spatialscores import fss_accum

        pred = np.asarray(pred, dtype=np.float64)
        obs = np.asarray(obs, dtype=np.float64)
        ok = np.isfinite(pred) & np.isfinite(obs)
        count = int(ok.sum())
        if not count:
            return
        p, o = pred[ok], obs[ok]
        with _quiet():
            for contab in self.cat[lead]:
                det_cat_fct_accum(contab, p, o)
            det_cont_fct_accum(self.cont[lead], p, o)
            pm, om = np.where(ok, pred, np.nan), np.where(ok, obs, np.nan)
            for state in self.fss[lead]:
                fss_accum(state, pm, om)
        self.forecasts[lead] += 1
        self.n_valid[lead] += count

    def add_forecast(self, pred: np.ndarray, obs: np.ndarray) -> None:
        """Add a forecast ``(leads, ny, nx)`` and its observations (a lead of all-NaN observation counts nowhere)."""
        for lead in range(min(self.leads, len(pred))):
            self.add(lead, pred[lead], obs[lead])

    def merge(self, other: DeterministicScores) -> DeterministicScores:
        """Add ``other``'s states to these (in place; ``other`` is not changed); returns self."""
        from pysteps.verification.detcatscores import det_cat_fct_merge
        from pysteps.verification.detcontscores import det_cont_fct_merge
        from pysteps.verification.spatialscores import fss_merge

        self._compatible(other)
        for i in range(self.leads):
            if not other.forecasts[i]:
                continue
            if not self.forecasts[i]:  # pysteps cannot merge into an empty state: start from a copy
                self.cat[i] = copy.deepcopy(other.cat[i])
                self.cont[i] = copy.deepcopy(other.cont[i])
                self.fss[i] = copy.deepcopy(other.fss[i])
            else:
                with _quiet():
                    # pysteps' merges update the first object's arrays in place: ours, never other's.
                    self.cat[i] = [det_cat_fct_merge(a, b) for a, b in zip(self.cat[i], other.cat[i])]
                    self.cont[i] = det_cont_fct_merge(self.cont[i], other.cont[i])
                    self.fss[i] = [fss_merge(a, b) for a, b in zip(self.fss[i], other.fss[i])]
            self.forecasts[i] += other.forecasts[i]
            self.n_valid[i] += other.n_valid[i]
        return self

    def result(self) -> dict[str, np.ndarray]:
        """``csi``, ``pod``, ``far``, ``bias`` (frequency bias) ``(leads, thresholds)``, ``fss`` ``(leads, scales)``,
        ``mse``, ``mae``, ``forecasts``, ``n_valid`` ``(leads,)``; NaN where undefined or nothing was scored."""
        from pysteps.verification.detcatscores import det_cat_fct_compute
        from pysteps.verification.detcontscores import det_cont_fct_compute
        from pysteps.verification.spatialscores import fss_compute

        n, nt, ns = self.leads, len(self.thresholds), len(self.fss_pixels)
        out = {k: np.full((n, nt), np.nan) for k in ("csi", "pod", "far", "bias")}
        out["fss"] = np.full((n, ns), np.nan)
        out["mse"], out["mae"] = np.full(n, np.nan), np.full(n, np.nan)
        with _quiet():
            for i in range(n):
                if not self.forecasts[i]:
                    continue
                for j, contab in enumerate(self.cat[i]):
                    scores = det_cat_fct_compute(contab, scores=("CSI", "POD", "FAR", "BIAS"))
                    for key in ("csi", "pod", "far", "bias"):
                        out[key][i, j] = float(scores[key.upper()])
                for k, state in enumerate(self.fss[i]):
                    out["fss"][i, k] = float(fss_compute(state))
                cont = det_cont_fct_compute(self.cont[i], scores=("MSE", "MAE"))
                out["mse"][i], out["mae"][i] = float(cont["MSE"]), float(cont["MAE"])
        out["forecasts"] = self.forecasts.copy()
        out["n_valid"] = self.n_valid.copy()
        return out


def _observed_rainrate(observed: xr.DataArray, zr: tuple[float, float]) -> xr.DataArray:
    units = str(observed.attrs.get("units", "mm h-1"))
    values = to_rainrate(np.asarray(observed.values), units, *zr)
    return observed.copy(data=values)


def verify_forecast(
    forecast: xr.Dataset,
    observed: xr.DataArray,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    fss_threshold: float = FSS_THRESHOLD,
    fss_scales_km: Sequence[float] = FSS_SCALES_KM,
    zr: tuple[float, float] = (200.0, 1.6),
) -> xr.Dataset:
    """Score a forecast dataset against observations, per lead time.

    Parameters
    ----------
    forecast
        A forecast dataset (docs/design.md, "Forecast dataset").
    observed
        ``(time, y, x)`` observations on the same grid, in mm/h or dBZ (from
        its ``units`` attribute; dBZ is converted with ``zr``), e.g. the
        region archive's ``read()``. Extra times are ignored.
    thresholds, fss_threshold, fss_scales_km
        Score settings (defaults: :data:`THRESHOLDS`, :data:`FSS_THRESHOLD`,
        :data:`FSS_SCALES_KM`). An ensemble product (members along
        ``realization``) is scored by :func:`verify_ensemble` instead.
    zr
        ``(a, b)`` of ``Z = a R^b``, used only for dBZ observations.

    Returns
    -------
    xarray.Dataset
        ``csi``, ``pod``, ``far`` ``(lead_time, threshold)``; ``fss``
        ``(lead_time, scale)``; ``mse``, ``mae``, ``n_valid`` ``(lead_time)``.
        ``lead_time`` is in minutes, with ``valid_time`` along it.

    Raises
    ------
    GridError
        If the observations are not on the forecast grid.
    NowcastError
        If no observation exists at any of the forecast's valid times.
    """
    from nowcast.products import is_ensemble

    if is_ensemble(forecast):  # members along 'realization': probabilistic scores
        return verify_ensemble(forecast, observed, zr=zr)
    fc = forecast["rain_rate"]
    _check_grid(forecast, observed)
    valid = fc["time"].values
    have = _observed_times(valid, observed)
    obs = _observed_rainrate(observed.sel(time=valid[have]), zr).values.astype(np.float64)
    pred = fc.isel(time=np.flatnonzero(have)).values.astype(np.float64)
    leads = lead_minutes(forecast)[have]
    resolution = float(abs(fc["x"].values[1] - fc["x"].values[0]))
    scales = fss_scales(resolution, fss_scales_km)

    acc = DeterministicScores(len(leads), thresholds, fss_threshold=fss_threshold, fss_pixels=[px for px, _ in scales])
    acc.add_forecast(pred, obs)
    res = acc.result()

    lead_coord = xr.DataArray(leads, dims="lead_time", attrs={"units": "minutes", "long_name": "lead time"})
    coords = {
        "lead_time": lead_coord,
        "valid_time": ("lead_time", valid[have]),
        "threshold": ("threshold", np.asarray(thresholds, dtype=float), {"units": "mm h-1"}),
        "scale": ("scale", np.asarray([km for _, km in scales]), {"units": "km", "long_name": "FSS neighbourhood size"}),
        "scale_pixels": ("scale", np.asarray([px for px, _ in scales])),
    }
    ds = xr.Dataset(
        {
            "csi": (("lead_time", "threshold"), res["csi"], {"long_name": "critical success index"}),
            "pod": (("lead_time", "threshold"), res["pod"], {"long_name": "probability of detection"}),
            "far": (("lead_time", "threshold"), res["far"], {"long_name": "false alarm ratio"}),
            "fss": (("lead_time", "scale"), res["fss"],
                    {"long_name": f"fractions skill score at {_fmt(fss_threshold)} mm/h"}),
            "mse": ("lead_time", res["mse"], {"units": "mm2 h-2", "long_name": "mean squared error"}),
            "mae": ("lead_time", res["mae"], {"units": "mm h-1", "long_name": "mean absolute error"}),
            "n_valid": ("lead_time", res["n_valid"], {"long_name": "pixels with forecast and observation"}),
        },
        coords=coords,
        attrs={
            "region": str(forecast.attrs.get("region", "")),
            "method": str(forecast.attrs.get("method", "")),
            "forecast_reference_time": pd.Timestamp(forecast["forecast_reference_time"].values).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "fss_threshold": float(fss_threshold),
        },
    )
    return ds


def scores_table(scores: xr.Dataset) -> pd.DataFrame:
    """One row per lead time, one column per score (``csi_1mmh``, ``fss_1mmh_4km``, ``mse``...);
    an ensemble's scores: :func:`ensemble_table`."""
    if is_ensemble_scores(scores):
        return ensemble_table(scores)
    table = pd.DataFrame(
        {"lead_minutes": scores["lead_time"].values.astype(int),
         "valid_time": [pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ") for t in scores["valid_time"].values]}
    )
    for name in ("csi", "pod", "far"):
        for j, thr in enumerate(scores["threshold"].values):
            table[f"{name}_{_fmt(thr)}mmh"] = scores[name].values[:, j]
    thr = _fmt(scores.attrs["fss_threshold"])
    for k, km in enumerate(scores["scale"].values):
        table[f"fss_{thr}mmh_{_fmt(km)}km"] = scores["fss"].values[:, k]
    for name in ("mse", "mae", "n_valid"):
        table[name] = scores[name].values
    return table


def _clean(value: float) -> float | None:
    """JSON has no NaN: undefined scores become ``null``."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def scores_json(scores: xr.Dataset) -> dict:
    """A self-describing JSON document of the scores."""
    leads = []
    thresholds = [_fmt(t) for t in scores["threshold"].values]
    scales = [_fmt(s) for s in scores["scale"].values]
    for i, lead in enumerate(scores["lead_time"].values):
        entry: dict[str, object] = {
            "lead_minutes": int(lead),
            "valid_time": pd.Timestamp(scores["valid_time"].values[i]).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for name in ("csi", "pod", "far"):
            entry[name] = {t: _clean(float(v)) for t, v in zip(thresholds, scores[name].values[i])}
        entry["fss"] = {f"{s}km": _clean(float(v)) for s, v in zip(scales, scores["fss"].values[i])}
        entry["mse"] = _clean(float(scores["mse"].values[i]))
        entry["mae"] = _clean(float(scores["mae"].values[i]))
        entry["n_valid"] = int(scores["n_valid"].values[i])
        leads.append(entry)
    return {
        **{k: scores.attrs[k] for k in ("region", "method", "forecast_reference_time")},
        "units": {"thresholds": "mm h-1", "mse": "mm2 h-2", "mae": "mm h-1"},
        "thresholds": [float(t) for t in scores["threshold"].values],
        "fss_threshold": scores.attrs["fss_threshold"],
        "fss_scales_km": [float(s) for s in scores["scale"].values],
        "fss_scales_pixels": [int(p) for p in scores["scale_pixels"].values],
        "scores_from": "pysteps.verification (det_cat_fct, det_cont_fct, spatialscores.fss)",
        "leads": leads,
    }


def plot_skill(scores: xr.Dataset, path: str | Path) -> Path:
    """PNG of CSI (per threshold), FSS (per scale) and MSE/MAE against lead time."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    leads = scores["lead_time"].values
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    try:
        ax = axes[0]
        for j, thr in enumerate(scores["threshold"].values):
            ax.plot(leads, scores["csi"].values[:, j], marker="o", label=f"> {_fmt(thr)} mm/h")
        ax.set(title="Critical success index", ylabel="CSI", ylim=(0, 1))
        ax = axes[1]
        for k, km in enumerate(scores["scale"].values):
            ax.plot(leads, scores["fss"].values[:, k], marker="o", label=f"{_fmt(km)} km")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(title=f"Fractions skill score, >= {_fmt(scores.attrs['fss_threshold'])} mm/h", ylabel="FSS", ylim=(0, 1))
        ax = axes[2]
        ax.plot(leads, scores["mse"].values, marker="o", label="MSE (mm²/h²)")
        ax.plot(leads, scores["mae"].values, marker="s", label="MAE (mm/h)")
        ax.set(title="Errors", ylabel="error", ylim=(0, None))
        for ax in axes:
            ax.set_xlabel("lead time (min)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(
            f"{scores.attrs['method']} nowcast, region {scores.attrs['region']}, "
            f"reference time {scores.attrs['forecast_reference_time']}"
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def write_scores(scores: xr.Dataset, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``STEM_scores.csv``, ``STEM_scores.json`` and ``STEM_skill.png`` into ``out_dir``
    (an ensemble's scores: :func:`ensemble_table`, :func:`ensemble_json`, :func:`plot_ensemble`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / f"{stem}_scores.csv",
        "json": out_dir / f"{stem}_scores.json",
        "png": out_dir / f"{stem}_skill.png",
    }
    ensemble = is_ensemble_scores(scores)
    (ensemble_table if ensemble else scores_table)(scores).to_csv(paths["csv"], index=False, float_format="%.6g")
    paths["json"].write_text(json.dumps((ensemble_json if ensemble else scores_json)(scores), indent=2) + "\n")
    (plot_ensemble if ensemble else plot_skill)(scores, paths["png"])
    log.info("scores written to %s (.csv, .json, .png)", paths["csv"].with_suffix(""))
    return paths


# ------------------------------------------------------------------ ensembles
#: Probability bins of the reliability diagram, and the fewest samples for a bin to be shown (pysteps' defaults).
RELIABILITY_BINS = 10
RELIABILITY_MIN_COUNT = 10
#: Probability thresholds of the ROC curves.
ROC_POINTS = 11
#: Rain rate (mm/h) below which a member and the observation tie in the rank histogram.
RANK_MIN = 0.1
#: Threshold (mm/h) of the reliability shown in tables and plots (the issue's target: within 0.1 of the diagonal).
RELIABILITY_THRESHOLD = 1.0


def _merge_state(a: dict, b: dict) -> None:
    """Add pysteps accumulator ``b`` into ``a`` (the counts and sums; settings must agree)."""
    for key, value in b.items():
        if key in ("CRPS_sum", "n", "X_sum", "Y_sum", "num_idx", "sample_size", "hits", "misses", "false_alarms",
                   "corr_neg"):
            a[key] = a[key] + value


def _rankhist_accum(rankhist: dict, members: np.ndarray, obs: np.ndarray) -> None:
    """pysteps' ``rankhist_accum`` for ``members`` ``(M, n)`` and ``obs`` ``(n,)``, reproducibly.

    pysteps breaks ties (the observation equal to several members: all dry)
    with ``np.random``, NumPy's global generator, whose state depends on what
    else ran in the process (and on other threads): the histogram would
    differ between runs and schedulers. Here the ties are broken in the same
    way with ``default_rng(pairs counted so far)``.
    """
    x_min = rankhist["X_min"]
    f = np.asarray(members, dtype=np.float64).T  # (n, M)
    o = np.asarray(obs, dtype=np.float64)
    keep = np.isfinite(o) & np.all(np.isfinite(f), axis=1)
    if x_min is not None:
        keep &= (o >= x_min) | np.any(f >= x_min, axis=1)
    f, o = f[keep].copy(), o[keep].copy()
    if not o.size:
        return
    if x_min is not None:
        f[f < x_min] = x_min - 1
        o[o < x_min] = x_min - 1
    o = o[:, None]
    lower = np.sum(f < o, axis=1)  # the first rank the observation may take
    ties = np.sum(f == o, axis=1)
    rng = np.random.default_rng(int(np.sum(rankhist["n"])))
    ranks = lower + (rng.uniform(size=lower.size) * (ties + 1)).astype(np.int64)
    ranks = np.where(ties > 0, ranks, lower)
    rankhist["n"] += np.bincount(ranks, minlength=f.shape[1] + 1).astype(rankhist["n"].dtype)


class EnsembleScores:
    """Probabilistic scores per lead time, accumulated over ensemble forecasts with pysteps.

    ``add(lead, members, obs)`` takes one lead's ``(members, ny, nx)`` and the
    observation ``(ny, nx)`` (mm/h); pixels where the observation or any
    member is NaN count nowhere. Sums, not means of per-forecast scores, so a
    forecast with little rain weighs little. :meth:`merge` adds another
    accumulator (a hindcast's windows, a study's sequences), :meth:`result`
    computes the scores. Picklable.
    """

    def __init__(self, leads: int, members: int, thresholds: Sequence[float] = (0.5, 1.0, 5.0, 10.0), *,
                 n_bins: int = RELIABILITY_BINS, min_count: int = RELIABILITY_MIN_COUNT, roc_points: int = ROC_POINTS,
                 rank_min: float | None = RANK_MIN) -> None:
        import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
        from pysteps.verification.ensscores import rankhist_init
        from pysteps.verification.probscores import CRPS_init, ROC_curve_init, reldiag_init

        self.leads, self.members = int(leads), int(members)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.min_count = int(min_count)
        # min_count=1 while accumulating: pysteps drops a bin with fewer samples *per call*, which
        # would lose rare high probabilities forecast by forecast; the minimum applies to the totals.
        self.crps = [CRPS_init() for _ in range(self.leads)]
        self.rel = [[reldiag_init(t, n_bins=n_bins, min_count=1) for t in self.thresholds] for _ in range(self.leads)]
        self.roc = [[ROC_curve_init(t, n_prob_thrs=roc_points) for t in self.thresholds] for _ in range(self.leads)]
        self.rank = [rankhist_init(self.members, rank_min) for _ in range(self.leads)]
        self.var_sum = np.zeros(self.leads)
        self.se_sum = np.zeros(self.leads)
        self.n = np.zeros(self.leads, dtype=np.int64)

    def add(self, lead: int, members: np.ndarray, obs: np.ndarray, probabilities: np.ndarray | None = None) -> None:
        """Score lead ``lead`` (0-based) of one forecast: ``members`` ``(M, ...)``, ``obs`` like one member (mm/h)."""
        from pysteps.verification.probscores import (
            CRPS_accum,
            ROC_curve_accum,
            reldiag_accum,
        )

        members = np.asarray(members, dtype=np.float64)
        obs = np.asarray(obs, dtype=np.float64)
        if members.shape[0] != self.members:
            raise ValueError(f"{members.shape[0]} members given to scores made for {self.members}")
        ok = np.isfinite(obs) & np.all(np.isfinite(members), axis=0)
        if not ok.any():
            return
        f, o = members[:, ok], obs[ok]
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            CRPS_accum(self.crps[lead], f, o)
            _rankhist_accum(self.rank[lead], f, o)
            for j, thr in enumerate(self.thresholds):
                p = np.mean(f >= thr, axis=0) if probabilities is None else np.asarray(probabilities[j])[ok]
                reldiag_accum(self.rel[lead][j], p, o)
                ROC_curve_accum(self.roc[lead][j], p, o)
        mean = f.mean(axis=0)
        if self.members > 1:
            self.var_sum[lead] += float(np.sum(f.var(axis=0, ddof=1)))
        self.se_sum[lead] += float(np.sum((mean - o) ** 2))
        self.n[lead] += int(ok.sum())

    def add_forecast(self, members: np.ndarray, obs: np.ndarray, probabilities: np.ndarray | None = None) -> None:
        """Score every lead of one forecast: ``members`` ``(M, leads, ...)``, ``obs`` ``(leads, ...)``.

        ``probabilities`` ``(thresholds, leads, ...)``: the product's own, if at hand.
        """
        for t in range(min(self.leads, np.shape(obs)[0])):
            self.add(t, np.asarray(members)[:, t], np.asarray(obs)[t],
                     None if probabilities is None else np.asarray(probabilities)[:, t])

    def merge(self, other: EnsembleScores) -> EnsembleScores:
        """Add ``other``'s sums (same leads, members and thresholds) into this one; returns self."""
        if (other.leads, other.members, other.thresholds) != (self.leads, self.members, self.thresholds):
            raise ValueError("cannot merge ensemble scores of different leads, members or thresholds")
        for t in range(self.leads):
            _merge_state(self.crps[t], other.crps[t])
            self.rank[t]["n"] = self.rank[t]["n"] + other.rank[t]["n"]
            for j in range(len(self.thresholds)):
                _merge_state(self.rel[t][j], other.rel[t][j])
                _merge_state(self.roc[t][j], other.roc[t][j])
        self.var_sum += other.var_sum
        self.se_sum += other.se_sum
        self.n += other.n
        return self

    def result(self) -> dict[str, np.ndarray]:
        """Scores per lead: ``crps``, ``spread``, ``rmse`` (ensemble mean), ``spread_skill``, ``n_valid`` ``(leads,)``;
        ``roc_area``, ``reliability_deviation`` ``(leads, thresholds)``; ``reliability_forecast`` (mean
        forecast probability), ``reliability_observed`` (observed frequency), ``reliability_count``
        ``(leads, thresholds, bins)``; ``rank_histogram`` ``(leads, members + 1)`` (fractions)."""
        from pysteps.verification.probscores import CRPS_compute, ROC_curve_compute

        L, K = self.leads, len(self.thresholds)
        bins = len(self.rel[0][0]["num_idx"]) if L and K else RELIABILITY_BINS
        out: dict[str, np.ndarray] = {
            "crps": np.full(L, np.nan), "roc_area": np.full((L, K), np.nan),
            "reliability_forecast": np.full((L, K, bins), np.nan), "reliability_observed": np.full((L, K, bins), np.nan),
            "reliability_count": np.zeros((L, K, bins), dtype=np.int64), "reliability_deviation": np.full((L, K), np.nan),
            "rank_histogram": np.full((L, self.members + 1), np.nan),
        }
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            for t in range(L):
                if self.crps[t]["n"]:
                    out["crps"][t] = CRPS_compute(self.crps[t])
                counts = np.asarray(self.rank[t]["n"], dtype=np.float64)
                if counts.sum():
                    out["rank_histogram"][t] = counts / counts.sum()
                for j in range(K):
                    rel = self.rel[t][j]
                    count = np.asarray(rel["num_idx"], dtype=np.int64)
                    enough = count >= self.min_count
                    fc = np.where(enough, rel["Y_sum"] / np.maximum(count, 1), np.nan)
                    ob = np.where(enough, rel["X_sum"] / np.maximum(count, 1), np.nan)
                    out["reliability_forecast"][t, j] = fc
                    out["reliability_observed"][t, j] = ob
                    out["reliability_count"][t, j] = count
                    if enough.any():
                        out["reliability_deviation"][t, j] = float(np.nanmax(np.abs(ob - fc)))
                    roc = self.roc[t][j]
                    if np.sum(roc["hits"] + roc["misses"]) and np.sum(roc["false_alarms"] + roc["corr_neg"]):
                        out["roc_area"][t, j] = float(ROC_curve_compute(roc, compute_area=True)[2])
            n = np.maximum(self.n, 1)
            out["spread"] = np.where(self.n > 0, np.sqrt(self.var_sum / n), np.nan)
            out["rmse"] = np.where(self.n > 0, np.sqrt(self.se_sum / n), np.nan)
            m = self.members
            out["spread_skill"] = np.sqrt((m + 1.0) / m) * out["spread"] / out["rmse"] if m > 1 else np.full(L, np.nan)
        out["n_valid"] = self.n.copy()
        return out


def ensemble_scores_dataset(scores: EnsembleScores, lead_minutes: Sequence[int], attrs: dict | None = None,
                            valid_times: np.ndarray | None = None) -> xr.Dataset:
    """The :meth:`EnsembleScores.result` as a dataset (what :func:`verify_ensemble` returns)."""
    r = scores.result()
    bins = r["reliability_count"].shape[-1]
    coords: dict[str, object] = {
        "lead_time": xr.DataArray(np.asarray(lead_minutes, dtype=int), dims="lead_time",
                                  attrs={"units": "minutes", "long_name": "lead time"}),
        "threshold": ("threshold", np.asarray(scores.thresholds, dtype=float), {"units": "mm h-1"}),
        "bin": ("bin", (np.arange(bins) + 0.5) / bins, {"long_name": "centre of the forecast probability bin"}),
        "rank": ("rank", np.arange(scores.members + 1)),
    }
    if valid_times is not None:
        coords["valid_time"] = ("lead_time", np.asarray(valid_times))
    L = ("lead_time",)
    LT = ("lead_time", "threshold")
    LTB = ("lead_time", "threshold", "bin")
    ds = xr.Dataset(
        {
            "crps": (L, r["crps"], {"units": "mm h-1", "long_name": "continuous ranked probability score"}),
            "spread": (L, r["spread"], {"units": "mm h-1", "long_name": "root mean ensemble variance"}),
            "rmse": (L, r["rmse"], {"units": "mm h-1", "long_name": "RMSE of the ensemble mean"}),
            "spread_skill": (L, r["spread_skill"], {"long_name": "spread/skill ratio, sqrt((M+1)/M) spread / RMSE"}),
            "roc_area": (LT, r["roc_area"], {"long_name": "area under the ROC curve"}),
            "reliability_deviation": (LT, r["reliability_deviation"],
                                      {"long_name": "largest distance of the reliability curve from the diagonal"}),
            "reliability_forecast": (LTB, r["reliability_forecast"], {"long_name": "mean forecast probability"}),
            "reliability_observed": (LTB, r["reliability_observed"], {"long_name": "observed relative frequency"}),
            "reliability_count": (LTB, r["reliability_count"], {"long_name": "samples in the probability bin"}),
            "rank_histogram": (("lead_time", "rank"), r["rank_histogram"], {"long_name": "rank histogram (fractions)"}),
            "n_valid": (L, r["n_valid"], {"long_name": "pixels with every member and the observation"}),
        },
        coords=coords,
        attrs={"kind": "ensemble", "members": scores.members, **(attrs or {})},
    )
    return ds


def verify_ensemble(
    forecast: xr.Dataset,
    observed: xr.DataArray,
    *,
    thresholds: Sequence[float] | None = None,
    zr: tuple[float, float] = (200.0, 1.6),
) -> xr.Dataset:
    """Score an ensemble forecast dataset against observations, per lead time.

    Parameters
    ----------
    forecast
        An ensemble product (``rain_rate(realization, time, y, x)``).
    observed
        As :func:`verify_forecast`.
    thresholds
        Event thresholds (mm/h) of the reliability diagrams and ROC curves;
        default the product's ``threshold`` coordinate.

    Returns
    -------
    xarray.Dataset
        See :class:`EnsembleScores.result`; ``attrs["kind"] == "ensemble"``.
    """
    from nowcast.products import PROBABILITY_VARIABLE, THRESHOLD

    fc = forecast["rain_rate"]
    _check_grid(forecast, observed)
    valid = fc["time"].values
    have = _observed_times(valid, observed)
    obs = _observed_rainrate(observed.sel(time=valid[have]), zr).values.astype(np.float64)
    idx = np.flatnonzero(have)
    members = fc.isel(time=idx).values
    if thresholds is None:
        thresholds = [float(t) for t in forecast[THRESHOLD].values] if THRESHOLD in forecast.coords else (0.5, 1.0, 5.0, 10.0)
    probabilities = None
    if PROBABILITY_VARIABLE in forecast and THRESHOLD in forecast.coords and \
            np.allclose(forecast[THRESHOLD].values, thresholds):
        probabilities = forecast[PROBABILITY_VARIABLE].isel(time=idx).values
    scores = EnsembleScores(len(idx), members.shape[0], thresholds)
    scores.add_forecast(members, obs, probabilities)
    attrs = {
        "region": str(forecast.attrs.get("region", "")),
        "method": str(forecast.attrs.get("method", "")),
        "forecast_reference_time": pd.Timestamp(forecast["forecast_reference_time"].values).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return ensemble_scores_dataset(scores, lead_minutes(forecast)[have], attrs, valid[have])


def _check_grid(forecast: xr.Dataset, observed: xr.DataArray) -> None:
    """Refuse observations that are not on the forecast's grid (:class:`GridError`, one line)."""
    fc = forecast["rain_rate"]
    for axis in ("y", "x"):
        if observed.sizes.get(axis) != fc.sizes[axis] or not np.allclose(observed[axis].values, fc[axis].values):
            raise GridError(
                f"observations: {axis} axis ({observed.sizes.get(axis)} cells) does not match the forecast grid "
                f"({fc.sizes[axis]} cells of region {forecast.attrs.get('region', '?')!r})"
            )


def _observed_times(valid: np.ndarray, observed: xr.DataArray) -> np.ndarray:
    """Which valid times have an observation; none at all is a :class:`NowcastError`."""
    have = np.isin(valid, observed["time"].values)
    if not have.any():
        first, last = (pd.Timestamp(t).strftime("%Y-%m-%dT%H:%MZ") for t in (valid[0], valid[-1]))
        raise NowcastError(
            f"observations: none at the forecast's valid times {first} .. {last}; "
            "verify once the observed frames are in the archive"
        )
    if not have.all():
        log.info("verifying %d of %d lead times (no observation for the others)", int(have.sum()), have.size)
    return have


def is_ensemble_scores(scores: xr.Dataset) -> bool:
    return scores.attrs.get("kind") == "ensemble"


def ensemble_table(scores: xr.Dataset) -> pd.DataFrame:
    """One row per lead: ``crps``, ``spread``, ``rmse``, ``spread_skill``, ``roc_area_1mmh``..., ``reliability_dev_1mmh``..."""
    table = pd.DataFrame({"lead_minutes": scores["lead_time"].values.astype(int)})
    if "valid_time" in scores.coords:
        table["valid_time"] = [pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ") for t in scores["valid_time"].values]
    for name in ("crps", "spread", "rmse", "spread_skill"):
        table[name] = scores[name].values
    for name, short in (("roc_area", "roc_area"), ("reliability_deviation", "reliability_dev")):
        for j, thr in enumerate(scores["threshold"].values):
            table[f"{short}_{_fmt(thr)}mmh"] = scores[name].values[:, j]
    table["n_valid"] = scores["n_valid"].values
    return table


def ensemble_json(scores: xr.Dataset) -> dict:
    """A self-describing JSON document of ensemble scores (reliability curves and rank histograms included)."""
    thresholds = [_fmt(t) for t in scores["threshold"].values]
    leads = []
    for i, lead in enumerate(scores["lead_time"].values):
        entry: dict[str, object] = {"lead_minutes": int(lead)}
        if "valid_time" in scores.coords:
            entry["valid_time"] = pd.Timestamp(scores["valid_time"].values[i]).strftime("%Y-%m-%dT%H:%M:%SZ")
        for name in ("crps", "spread", "rmse", "spread_skill"):
            entry[name] = _clean(float(scores[name].values[i]))
        entry["roc_area"] = {t: _clean(float(v)) for t, v in zip(thresholds, scores["roc_area"].values[i])}
        entry["reliability"] = {
            t: {"deviation": _clean(float(scores["reliability_deviation"].values[i, j])),
                "forecast": [_clean(float(v)) for v in scores["reliability_forecast"].values[i, j]],
                "observed": [_clean(float(v)) for v in scores["reliability_observed"].values[i, j]],
                "count": [int(v) for v in scores["reliability_count"].values[i, j]]}
            for j, t in enumerate(thresholds)}
        entry["rank_histogram"] = [_clean(float(v)) for v in scores["rank_histogram"].values[i]]
        entry["n_valid"] = int(scores["n_valid"].values[i])
        leads.append(entry)
    return {
        **{k: scores.attrs[k] for k in ("region", "method", "forecast_reference_time") if k in scores.attrs},
        "kind": "ensemble",
        "members": int(scores.attrs["members"]),
        "units": {"thresholds": "mm h-1", "crps": "mm h-1", "spread": "mm h-1", "rmse": "mm h-1"},
        "thresholds": [float(t) for t in scores["threshold"].values],
        "reliability_bins": int(scores.sizes["bin"]),
        "reliability_min_count": RELIABILITY_MIN_COUNT,
        "scores_from": "pysteps.verification (probscores.CRPS, reldiag, ROC_curve; ensscores.rankhist); "
                       "spread/skill = sqrt((M+1)/M) * sqrt(mean ensemble variance) / RMSE of the ensemble mean",
        "leads": leads,
    }


def pooled_reliability(scores: xr.Dataset, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability curve at ``threshold`` over all leads: ``(forecast probability, observed frequency, count)`` per bin."""
    j = int(np.argmin(np.abs(scores["threshold"].values - threshold)))
    count = scores["reliability_count"].values[:, j].astype(float)
    fc = np.nansum(np.nan_to_num(scores["reliability_forecast"].values[:, j]) * count, axis=0)
    ob = np.nansum(np.nan_to_num(scores["reliability_observed"].values[:, j]) * count, axis=0)
    total = count.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        enough = total >= RELIABILITY_MIN_COUNT
        return np.where(enough, fc / total, np.nan), np.where(enough, ob / total, np.nan), total


def plot_ensemble(scores: xr.Dataset, path: str | Path, threshold: float = RELIABILITY_THRESHOLD) -> Path:
    """PNG of CRPS, spread and RMSE per lead; the reliability diagram at ``threshold`` (all leads, and
    the first and last); ROC area per threshold; the rank histogram (all leads)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    leads = scores["lead_time"].values
    fig = Figure(figsize=(17, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    ax = axes[0]
    ax.plot(leads, scores["crps"].values, marker="o", label="CRPS")
    ax.plot(leads, scores["rmse"].values, marker="s", label="RMSE of the mean")
    ax.plot(leads, scores["spread"].values, marker="^", label="spread")
    ax.set(title="CRPS, spread and skill", ylabel="mm/h", xlabel="lead time (min)", ylim=(0, None))
    ax2 = ax.twinx()
    ax2.plot(leads, scores["spread_skill"].values, color="grey", ls=":", label="spread/skill")
    ax2.axhline(1.0, color="grey", lw=0.6)
    ax2.set_ylabel("spread/skill ratio", color="grey")
    ax2.set_ylim(0, max(2.0, float(np.nanmax(np.append(scores["spread_skill"].values, 0.0))) * 1.1))
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    ax.plot([0, 1], [0, 1], color="black", lw=0.8)
    ax.fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="grey", alpha=0.15, label="±0.1")
    j = int(np.argmin(np.abs(scores["threshold"].values - threshold)))
    fc, ob, _ = pooled_reliability(scores, threshold)
    ax.plot(fc, ob, marker="o", color="C0", label="all leads")
    for i, colour in ((0, "C1"), (len(leads) - 1, "C3")):
        if len(leads) > 1 or i == 0:
            ax.plot(scores["reliability_forecast"].values[i, j], scores["reliability_observed"].values[i, j],
                    marker=".", color=colour, lw=0.8, label=f"+{int(leads[i])} min")
    ax.set(title=f"Reliability, >= {_fmt(scores['threshold'].values[j])} mm/h", xlabel="forecast probability",
           ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    for k, thr in enumerate(scores["threshold"].values):
        ax.plot(leads, scores["roc_area"].values[:, k], marker="o", label=f">= {_fmt(thr)} mm/h")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(title="ROC area", xlabel="lead time (min)", ylabel="area", ylim=(0.4, 1.0))
    ax.legend(fontsize=8)
    ax = axes[3]
    hist = np.nanmean(scores["rank_histogram"].values, axis=0)
    ranks = scores["rank"].values
    ax.bar(ranks, hist, width=0.9, color="C2")
    ax.axhline(1.0 / len(ranks), color="black", lw=0.8, ls="--", label="flat")
    ax.set(title="Rank histogram (all leads)", xlabel="rank of the observation", ylabel="fraction")
    ax.legend(fontsize=8)
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle(f"{scores.attrs.get('method', '?')} ensemble ({scores.attrs.get('members')} members), region "
                 f"{scores.attrs.get('region', '?')}, reference time {scores.attrs.get('forecast_reference_time', '?')}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def verification_dir(region: str, home: str | Path | None = None) -> Path:
    """Default output folder: ``HOME/verification/REGION``."""
    return home_dir(home) / "verification" / region


def observations_for(forecast: xr.Dataset, region: Region, home: str | Path | None = None) -> xr.DataArray:
    """The region archive's frames at the forecast's valid times (those that exist)."""
    from nowcast.io.archive import Archive

    valid = forecast["time"].values
    archive = Archive.open(region, home=home, create=False)
    return archive.read(valid[0], valid[-1]).load()


def verify_forecast_against_archive(
    forecast_path: str | Path, region: Region | str | None = None, home: str | Path | None = None
) -> xr.Dataset:
    """Open a forecast file and score it against the region archive.

    ``region`` defaults to the forecast's own ``region`` attribute. An
    ensemble product is scored by :func:`verify_ensemble`.
    """
    from nowcast.products import is_ensemble

    with open_forecast(forecast_path) as ds:
        ds = ds.load()
    reg = region if isinstance(region, Region) else load_region(region or ds.attrs.get("region", ""), home)
    observed = observations_for(ds, reg, home)
    if is_ensemble(ds):
        return verify_ensemble(ds, observed, zr=(reg.zr.a, reg.zr.b))
    return verify_forecast(ds, observed, zr=(reg.zr.a, reg.zr.b))


def verify_forecast_file(
    forecast_path: str | Path,
    region: Region | str | None = None,
    home: str | Path | None = None,
    out_dir: str | Path | None = None,
) -> Path:
    """Verify a forecast file against the archive and write CSV, JSON and PNG.

    Returns
    -------
    pathlib.Path
        The CSV table (the JSON and PNG sit beside it).
    """
    scores = verify_forecast_against_archive(forecast_path, region, home)
    out = Path(out_dir) if out_dir else verification_dir(scores.attrs["region"], home)
    return write_scores(scores, out, Path(forecast_path).stem)["csv"]


def lattice_power_ratio(field: np.ndarray, period: int = 4, neighbours: int = 2) -> float:
    """Spectral power at a patch period's harmonics over that of neighbouring frequencies.

    A network that decodes each ``period x period`` patch independently
    leaves a lattice: peaks of the 2-D power spectrum at the frequencies
    ``j / period`` cycles per pixel. This returns the mean power on those
    peaks (excluding the mean) divided by the mean power of the frequencies
    within ``neighbours`` bins of them: about 1 for a field without a
    lattice (measured 50-250 on the old Eulerian model's forecasts).

    Parameters
    ----------
    field
        ``(ny, nx)`` forecast (NaN counts as 0).
    period
        Patch size of the model.
    neighbours
        Half width (bins) of the neighbourhood compared with each peak.
    """
    f = np.nan_to_num(np.asarray(field, dtype=np.float64))
    f = f - f.mean()
    power = np.abs(np.fft.fft2(f)) ** 2
    ny, nx = power.shape
    ky = sorted({round(ny * j / period) % ny for j in range(period)})
    kx = sorted({round(nx * j / period) % nx for j in range(period)})
    peaks = [(a, b) for a in ky for b in kx if (a, b) != (0, 0)]
    if not peaks or power.sum() == 0:
        return float("nan")
    peak_set = set(peaks)
    peak_power, ring_power = [], []
    for a, b in peaks:
        peak_power.append(power[a, b])
        for da in range(-neighbours, neighbours + 1):
            for db in range(-neighbours, neighbours + 1):
                q = ((a + da) % ny, (b + db) % nx)
                if q not in peak_set and q != (0, 0):
                    ring_power.append(power[q])
    ring = float(np.mean(ring_power))
    return float(np.mean(peak_power) / ring) if ring > 0 else float("inf")
