"""The main job out of the box: sample radar -> archive -> forecast -> maps.

``nowcast demo`` exercises the whole operational chain on the default region
with nothing downloaded:

1. a sequence of radar composites is made from the real MeteoSwiss CHRFO
   composite (from the ``pyart-mch`` package) with pysteps' stochastic model of
   precipitation evolution, and written as real ODIM_H5 files. No real radar
   *time series* ships in any installable package, so the frames are labelled
   "simulated from real seeds" in the files and in every output;
2. the files are ingested into the region's Zarr archive (reprojection from the
   1 km composite grid onto the region's grid included);
3. a forecast is made from the first ``input_frames`` frames with the region's
   configured method (the shipped TMU forecaster where one is configured, else
   optical-flow extrapolation); for the TMU forecaster, from as many frames as
   it reads (:func:`history_frames`: its trend reads 8);
4. the forecast is verified against the held-back frames and rendered as a map
   animation, observation beside forecast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nowcast.config import Region
from nowcast.paths import home_dir

log = logging.getLogger(__name__)

PROVENANCE = "simulated from real seeds"
SEED_SAMPLE = "meteoswiss_odim_composite"
#: Margin (m) of simulated composite around the region, so advection brings rain in from outside.
MARGIN_M = 32_000.0


@dataclass(frozen=True)
class DemoResult:
    """Paths of everything the demo produced."""

    incoming: Path
    archive: Path
    forecast: Path
    method: str
    scores: Path | None
    animation: Path | None
    map_png: Path | None


def make_demo_files(region: Region, out_dir: Path, n_frames: int, rng_seed: int = 2024) -> list[Path]:
    """Write ``n_frames`` ODIM_H5 composites simulated from the real seed.

    The seed is the real CHRFO composite on its own 1 km grid, cropped to the
    region plus a margin; frame 0 is the real field at its real time.
    """
    from nowcast.data.seeds import load_seed
    from nowcast.grid import RegionGrid
    from nowcast.io.odim_write import write_odim_composite
    from nowcast.io.readers import read_file
    from nowcast.samples import sample_path
    from nowcast.simulate import simulate_sequence

    seed = load_seed(SEED_SAMPLE)
    seed_grid = RegionGrid(region.grid.crs, np.asarray(seed.x), np.asarray(seed.y))
    res = seed.resolution_m
    xmin, ymin, xmax, ymax = region.grid.extent
    cols = np.where((seed_grid.x > xmin - MARGIN_M) & (seed_grid.x < xmax + MARGIN_M))[0]
    rows = np.where((seed_grid.y > ymin - MARGIN_M) & (seed_grid.y < ymax + MARGIN_M))[0]
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    values, mask = seed.values[sl], seed.mask[sl]
    extent = (
        float(seed_grid.x[cols[0]] - res / 2), float(seed_grid.y[rows[-1]] - res / 2),
        float(seed_grid.x[cols[-1]] + res / 2), float(seed_grid.y[rows[0]] + res / 2),
    )
    log.info("simulating %d frames of %dx%d at %g m from %s (%s)", n_frames, *values.shape, res,
             seed.source_file, PROVENANCE)
    frames = simulate_sequence(np.nan_to_num(values, nan=0.0), n_frames, region.timestep_minutes, res,
                               rng_seed=rng_seed, kind="rain", mask=mask)
    frames[:, ~mask] = np.nan
    t0 = pd.Timestamp(read_file(sample_path(SEED_SAMPLE)).time.values[0])  # the real composite's own time
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    projdef = region.crs if region.crs.lstrip().startswith("+") else region.grid.crs.to_proj4()
    for k in range(n_frames):
        t = (t0 + pd.Timedelta(minutes=region.timestep_minutes * k)).to_datetime64()
        name = f"SIM_CHRFO_{pd.Timestamp(t):%Y%m%dT%H%M}Z.h5"
        paths.append(write_odim_composite(out_dir / name, frames[k], t, projdef, extent=extent, quantity="RATE",
                                          prodname="CHRFO-SIM", source=f"CMT:{PROVENANCE} (MeteoSwiss CHRFO)"))
    return paths


def history_frames(region: Region, method: str, home: str | Path | None = None) -> int:
    """Frames before the reference time the demo archives: the region's window, or what its model reads.

    Why: a model whose trend reads a longer history (the shipped TMU: 8
    frames) falls back to the region's window where the archive lacks them;
    the demo should show it as it runs operationally. A model that cannot be
    loaded gets the region's window (the forecast then falls back and says
    why).
    """
    from nowcast.errors import NowcastError
    from nowcast.forecast import MODEL_METHOD, load_model

    n_in = int(region.forecast.input_frames)
    if method != MODEL_METHOD:
        return n_in
    try:
        return max(n_in, int(getattr(load_model(region, home=home), "history_frames", n_in)))
    except (NowcastError, ImportError, RuntimeError):
        return n_in


def run_demo(region: Region, home: str | Path | None = None, render: bool = True,
             method: str | None = None) -> DemoResult:
    """Run the whole chain and return where the results are (``method``: default the region's)."""
    from nowcast.forecast import iso, run_forecast
    from nowcast.io.archive import Archive
    from nowcast.paths import renders_dir
    from pipelines.ingest import ingest_files

    root = home_dir(home)
    n_in, leads = history_frames(region, method or region.forecast.method, home), region.forecast.leads
    incoming = root / "demo" / region.name / "incoming"
    files = make_demo_files(region, incoming, n_in + leads)
    report = ingest_files(files, region, home=home, scheduler="threads", progress=False)
    log.info("%s", report.summary())
    archive = Archive.open(region, home=home, create=False)
    # forecasts copy the archive's data_origin: they must say their input was simulated
    archive.set_attrs(data_origin=f"{PROVENANCE}: the MeteoSwiss CHRFO composite ({SEED_SAMPLE}) evolved by "
                                  "pysteps' stochastic model (nowcast demo)")
    reference = iso(np.sort(archive.times)[n_in - 1])
    result = run_forecast(region, home=home, time=reference, method=method)

    scores_path = animation = map_png = None
    try:
        from nowcast.verify import verify_forecast_file

        scores_path = verify_forecast_file(result.path, region, home=home)
    except ImportError as exc:  # pragma: no cover - verification is part of the base install
        log.warning("verification skipped: %s", exc)
    if render:
        from nowcast.render import render_forecast_animation

        out = renders_dir(region.name, home)
        animation = render_forecast_animation(result.path, region, home=home, out=out / (result.path.stem + ".gif"),
                                              observed=True)
    return DemoResult(incoming, archive.path, result.path, result.method, scores_path, animation, map_png)
