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

Only pixels where both forecast and observation are finite count: a pixel
outside radar coverage (NaN) is neither a hit nor a miss. Lead times whose
valid time has no observation are left out. Undefined scores (e.g. CSI when
neither field has an event) are NaN, never 0, so averages do not mistake
"nothing happened" for "no skill".

Outputs: an :class:`xarray.Dataset` of scores (:func:`verify_forecast`), a
wide table (:func:`scores_table`) written as CSV, a JSON document and a PNG
of skill vs lead time (:func:`write_scores`).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
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
        :data:`FSS_SCALES_KM`).
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
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.verification.detcatscores import det_cat_fct
    from pysteps.verification.detcontscores import det_cont_fct
    from pysteps.verification.spatialscores import fss

    fc = forecast["rain_rate"]
    for axis in ("y", "x"):
        if observed.sizes.get(axis) != fc.sizes[axis] or not np.allclose(observed[axis].values, fc[axis].values):
            raise GridError(
                f"observations: {axis} axis ({observed.sizes.get(axis)} cells) does not match the forecast grid "
                f"({fc.sizes[axis]} cells of region {forecast.attrs.get('region', '?')!r})"
            )
    valid = fc["time"].values
    have = np.isin(valid, observed["time"].values)
    if not have.any():
        first, last = (pd.Timestamp(t).strftime("%Y-%m-%dT%H:%MZ") for t in (valid[0], valid[-1]))
        raise NowcastError(
            f"observations: none at the forecast's valid times {first} .. {last}; "
            "verify once the observed frames are in the archive"
        )
    if not have.all():
        log.info("verifying %d of %d lead times (no observation for the others)", int(have.sum()), have.size)
    obs = _observed_rainrate(observed.sel(time=valid[have]), zr).values.astype(np.float64)
    pred = fc.isel(time=np.flatnonzero(have)).values.astype(np.float64)
    leads = lead_minutes(forecast)[have]
    resolution = float(abs(fc["x"].values[1] - fc["x"].values[0]))
    scales = fss_scales(resolution, fss_scales_km)

    n = len(leads)
    cat = {k: np.full((n, len(thresholds)), np.nan) for k in ("CSI", "POD", "FAR")}
    fss_v = np.full((n, len(scales)), np.nan)
    mse, mae = np.full(n, np.nan), np.full(n, np.nan)
    n_valid = np.zeros(n, dtype=np.int64)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(n):
            ok = np.isfinite(pred[i]) & np.isfinite(obs[i])
            n_valid[i] = int(ok.sum())
            if not n_valid[i]:
                continue
            p, o = pred[i][ok], obs[i][ok]
            for j, thr in enumerate(thresholds):
                scores = det_cat_fct(p, o, thr, scores=("CSI", "POD", "FAR"))
                for key in cat:
                    cat[key][i, j] = scores[key]
            cont = det_cont_fct(p, o, scores=("MSE", "MAE"))
            mse[i], mae[i] = cont["MSE"], cont["MAE"]
            # Both fields NaN where either is: pysteps' FSS counts NaN as "no event",
            # which must then hold for both so coverage gaps neither help nor hurt.
            pm, om = np.where(ok, pred[i], np.nan), np.where(ok, obs[i], np.nan)
            for k, (px, _) in enumerate(scales):
                fss_v[i, k] = fss(pm, om, fss_threshold, px)

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
            "csi": (("lead_time", "threshold"), cat["CSI"], {"long_name": "critical success index"}),
            "pod": (("lead_time", "threshold"), cat["POD"], {"long_name": "probability of detection"}),
            "far": (("lead_time", "threshold"), cat["FAR"], {"long_name": "false alarm ratio"}),
            "fss": (("lead_time", "scale"), fss_v, {"long_name": f"fractions skill score at {_fmt(fss_threshold)} mm/h"}),
            "mse": ("lead_time", mse, {"units": "mm2 h-2", "long_name": "mean squared error"}),
            "mae": ("lead_time", mae, {"units": "mm h-1", "long_name": "mean absolute error"}),
            "n_valid": ("lead_time", n_valid, {"long_name": "pixels with forecast and observation"}),
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
    """One row per lead time, one column per score (``csi_1mmh``, ``fss_1mmh_4km``, ``mse``...)."""
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
    """Write ``STEM_scores.csv``, ``STEM_scores.json`` and ``STEM_skill.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / f"{stem}_scores.csv",
        "json": out_dir / f"{stem}_scores.json",
        "png": out_dir / f"{stem}_skill.png",
    }
    scores_table(scores).to_csv(paths["csv"], index=False, float_format="%.6g")
    paths["json"].write_text(json.dumps(scores_json(scores), indent=2) + "\n")
    plot_skill(scores, paths["png"])
    log.info("scores written to %s (.csv, .json, .png)", paths["csv"].with_suffix(""))
    return paths


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

    ``region`` defaults to the forecast's own ``region`` attribute.
    """
    with open_forecast(forecast_path) as ds:
        ds = ds.load()
    reg = region if isinstance(region, Region) else load_region(region or ds.attrs.get("region", ""), home)
    observed = observations_for(ds, reg, home)
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
