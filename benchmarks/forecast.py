"""Wall time and peak memory of ``nowcast forecast`` per method and region size.

For each region (default ``swiss-south``, 128x128 at 2 km, and ``swiss-512``,
512x512 at 1 km) an archive is filled with a moving sequence made from the
real MeteoSwiss composite (the real field translated 2 km east per 5 min,
written as ODIM_H5 and ingested like any radar file). Then, for each method,
a *fresh subprocess* (so peak RSS belongs to that method alone, imports
included) runs :func:`nowcast.forecast.run_forecast` ``--repeat`` times on the
same window and reports:

* ``first_s``: the first run (imports of torch and pysteps are already done
  for both methods, but caches, model loading and allocator warm-up are in it);
* ``median_s`` / ``compute_s``: median whole run (archive read, method, CF
  write) and median time in the method alone, over the runs after the first
  (all runs if ``--repeat 1``): with three repeats a median that included the
  first run was the slower of the two warm ones;
* ``peak_rss_mb``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end.

The process is pinned to ``--cores`` CPU cores and torch/OpenMP to as many
threads, and its allocator is set up as the ``nowcast`` command sets it up
(:mod:`nowcast.allocator`; ``--allocator default`` keeps glibc's defaults). Usage::

    .venv/bin/python benchmarks/forecast.py --regions swiss-south swiss-512 --leads 12

On a shared or virtual machine one process's time drifts by 10-20 % from
minute to minute; ``--rounds N`` runs the methods alternately N times (a fresh
process each) and reports, per region, the median over rounds and the ratio of
each method's method-time to extrapolation's *within* each round, which is
what a "N x extrapolation" claim should rest on.

The TMU model comes from the region's configured checkpoint when one exists
(``--model NAME`` to name a model config); otherwise a *randomly initialised*
TMU forecaster is built from ``--model-config`` (the same architecture as the
trained one): that measures speed and memory honestly, not skill.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("benchmarks.forecast")


# ------------------------------------------------------------------ archive
def build_archive(region_name: str, home: Path, frames: int, workdir: Path) -> None:
    """Write ``frames`` moving composites made from the real field and ingest them."""
    import h5py
    import numpy as np

    from nowcast.io.odim_write import write_odim_composite
    from nowcast.samples import sample_path
    from pipelines.ingest import ingest_files

    src = sample_path("meteoswiss_odim_composite")
    with h5py.File(src, "r") as f:
        field = f["dataset1/data1/data"][()]
        where = dict(f["where"].attrs)
    projdef = where["projdef"].decode() if isinstance(where["projdef"], bytes) else str(where["projdef"])
    corners = {k: float(v) for k, v in where.items() if k[:2] in ("LL", "UL", "UR", "LR")}
    start = np.datetime64("2024-02-27T09:50", "s")
    files = []
    for k in range(frames):
        t = start + np.timedelta64(5 * k, "m")
        files.append(
            write_odim_composite(
                workdir / f"RFO{k:03d}.h5", np.roll(field, 2 * k, axis=1), t, projdef, corners,
                quantity="RATE", xscale=1.0, yscale=1.0,
            )
        )
    report = ingest_files(files, region_name, home=home, scheduler="synchronous", progress=False)
    if report.skipped:
        raise SystemExit(f"benchmark archive: files skipped: {report.skipped}")


def write_square_region(home: Path, n: int) -> None:
    """``HOME/configs/regions/grid-N.yaml``: swiss-512's 512 km square at 512 km / N resolution."""
    import yaml

    from nowcast.config import load_region

    base = load_region("swiss-512")
    spec = {"name": f"grid-{n}", "description": f"{n} x {n} cells over the swiss-512 square (benchmark)",
            "crs": base.crs, "extent": list(base.extent), "resolution": 512000.0 / n,
            "timestep_minutes": 5, "units": "mm h-1", "forecast": {"method": "extrapolation", "input_frames": 4, "leads": 12}}
    path = home / "configs" / "regions" / f"grid-{n}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))


# ------------------------------------------------------------------ child
def _tmu_forecaster(region, model: str | None, model_config: str | None):
    """The trained model if the region (or ``--model``) has one, else a random-init one.

    Returns ``(forecaster, description)``.
    """
    from nowcast.errors import NowcastError
    from nowcast.forecast import load_model

    if model:
        region = region.model_copy(update={"forecast": region.forecast.model_copy(update={"method": "tmu", "model": model})})
    if region.forecast.model:
        try:
            return load_model(region), f"trained checkpoint {region.forecast.model}"
        except NowcastError as exc:
            log.warning("no trained checkpoint (%s); using a randomly initialised model", exc)
    from nowcast.models.zoo import random_forecaster

    forecaster = random_forecaster(model_config)
    return forecaster, f"randomly initialised from {model_config or 'the default model config'}"


def child(args: argparse.Namespace) -> None:
    """Run the forecasts of one (region, method) and print one JSON line."""
    import resource

    import nowcast.forecast as fc
    from nowcast.allocator import keep_freed_memory
    from nowcast.config import load_region

    tuned = args.allocator == "cli" and keep_freed_memory()

    region = load_region(args.region, args.home)
    method = args.method
    note = ""
    if method == "tmu":
        import torch

        torch.set_num_threads(args.cores)
        forecaster, note = _tmu_forecaster(region, args.model, args.model_config)
        fc.load_model = lambda _region, home=None: forecaster  # the same model for every repeat
        region = region.model_copy(update={"forecast": region.forecast.model_copy(update={"method": "tmu", "model": "benchmark"})})
    # Both methods run pysteps' optical flow: its import (2.5 s here) stays outside the timings, as torch's does
    # (until 2026-11-26 only extrapolation's child imported it, so the tmu's first run carried it).
    import pysteps  # noqa: F401

    runs, compute = [], []
    out = Path(args.home) / f"bench_{args.region}_{method}.zarr"
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = fc.run_forecast(region, home=args.home, method=method, leads=args.leads, out=out,
                                 precision=args.precision)
        runs.append(time.perf_counter() - t0)
        compute.append(result.compute_seconds)
        if result.fallback_reason:
            raise SystemExit(f"{method} fell back: {result.fallback_reason}")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import xarray as xr

    with xr.open_zarr(out) as product:  # how many frames the model read (its trend may read more than 4)
        history = product.attrs.get("model_history_frames", "")
    print(json.dumps({
        "region": args.region, "shape": list(region.grid.shape), "method": method, "leads": args.leads,
        "first_s": runs[0], "median_s": statistics.median(runs[1:] or runs),
        "compute_s": statistics.median(compute[1:] or compute),
        "peak_rss_mb": peak_kb / 1024, "repeat": args.repeat, "note": note,
        "allocator": "cli" if tuned else "glibc default",
        "precision": getattr(forecaster, "resolved_precision", "") if method == "tmu" else "",
        "history": history,
    }))


# ------------------------------------------------------------------ parent
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", nargs="+", default=["swiss-south", "swiss-512"])
    parser.add_argument("--methods", nargs="+", default=["tmu", "extrapolation"])
    parser.add_argument("--leads", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--model", default=None, help="Model config name with a trained checkpoint.")
    parser.add_argument("--model-config", default=None, help="Model config for a random-init TMU (default: zoo default).")
    parser.add_argument("--grid-sizes", type=int, nargs="*", default=[],
                        help="Also square regions of N x N cells over the 512 km swiss-512 square (resolution 512 km / N):"
                             " forecast cost against domain size.")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="Network arithmetic of the tmu method (nowcast.precision).")
    parser.add_argument("--rounds", type=int, default=1,
                        help="Run the methods alternately this many times; report per-round ratios to extrapolation.")
    parser.add_argument("--allocator", default="cli", choices=["cli", "default"],
                        help="cli: the malloc settings `nowcast` applies at start (nowcast.allocator); default: glibc's.")
    parser.add_argument("--archive-frames", type=int, default=8,
                        help="Frames archived (4 are every method's window; a model may read more for its trend).")
    parser.add_argument("--child", nargs=3, metavar=("REGION", "METHOD", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    if args.child:
        args.region, args.method, args.home = args.child
        child(args)
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.cores), "MKL_NUM_THREADS": str(args.cores), "PYART_QUIET": "1"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="nowcast-bench-") as tmp:
        regions = list(args.regions) + [f"grid-{n}" for n in args.grid_sizes]
        for region in regions:
            home = Path(tmp) / region
            home.mkdir()
            if region.startswith("grid-"):
                write_square_region(home, int(region.split("-")[1]))
            t0 = time.perf_counter()
            build_archive(region, home, args.archive_frames, Path(tmp) / f"files-{region}")
            print(f"# {region}: archive of {args.archive_frames} frames built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for round_ in range(max(1, args.rounds)):
                for method in args.methods:
                    cmd = [sys.executable, __file__, "--child", region, method, str(home), "--leads", str(args.leads),
                           "--repeat", str(args.repeat), "--cores", str(args.cores), "--precision", args.precision,
                           "--allocator", args.allocator]
                    if args.model:
                        cmd += ["--model", args.model]
                    if args.model_config:
                        cmd += ["--model-config", args.model_config]
                    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    if proc.returncode:
                        print(proc.stderr, file=sys.stderr)
                        raise SystemExit(f"{region}/{method}: benchmark child failed ({proc.returncode})")
                    row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "round": round_}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
    print("| region | grid | method | leads | first run s | median run s | median method s | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        label = f"{r['method']} ({r['precision']})" if r.get("precision") else r["method"]
        print(f"| {r['region']} | {r['shape'][0]}x{r['shape'][1]} | {label} | {r['leads']} | {r['first_s']:.2f} | "
              f"{r['median_s']:.2f} | {r['compute_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    if args.rounds > 1:
        print(ratio_table(rows))
    for r in {(r["region"], r["method"]): r for r in rows}.values():
        if r["note"]:
            print(f"\n{r['region']} {r['method']}: {r['note']}")
        if r.get("history"):
            print(f"\n{r['region']} {r['method']}: read {r['history']} frames")


def ratio_table(rows: list[dict]) -> str:
    """Per region and method: median method time over rounds, and its ratio to extrapolation within each round."""
    lines = ["", "| region | method | rounds | median method s | ratio to extrapolation per round | median ratio |",
             "| --- | --- | ---: | ---: | --- | ---: |"]
    for region in dict.fromkeys(r["region"] for r in rows):
        mine = [r for r in rows if r["region"] == region]
        reference = {r["round"]: r["compute_s"] for r in mine if r["method"] == "extrapolation"}
        for method in dict.fromkeys(r["method"] for r in mine):
            runs = [r for r in mine if r["method"] == method]
            ratios = [r["compute_s"] / reference[r["round"]] for r in runs if r["round"] in reference]
            shown = " ".join(f"{x:.2f}" for x in ratios) if ratios else "-"
            median_ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
            lines.append(f"| {region} | {method} | {len(runs)} | {statistics.median(r['compute_s'] for r in runs):.2f} | "
                         f"{shown} | {median_ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
