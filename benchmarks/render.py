"""Wall time of rendering a forecast: one PNG map and a 12-lead GIF animation.

For each region (default ``swiss-south``, 128x128, and ``swiss-512``,
512x512) an archive of 16 frames is built from the real MeteoSwiss composite
(moved 2 km east per 5 min, written as ODIM_H5 and ingested), a 12-lead
extrapolation forecast is made from its first 4 frames, and then timed:

* ``png``: one map of the last lead time, forecast beside observation;
* ``gif``: the animation of the 4 input frames then 12 forecast frames, each
  beside its observation (what ``nowcast render --observed`` writes).

The first render in a process pays for importing cartopy/matplotlib and
reading the offline Natural Earth shapes; ``--repeat`` shows the warm cost.
Usage::

    .venv/bin/python benchmarks/render.py --regions swiss-south swiss-512 --repeat 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", nargs="+", default=["swiss-south", "swiss-512"])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from benchmarks.forecast import build_archive
    from nowcast.config import load_region
    from nowcast.forecast import iso, run_forecast
    from nowcast.io.archive import Archive
    from nowcast.render import render_forecast, render_forecast_animation

    rows = []
    with tempfile.TemporaryDirectory(prefix="nowcast-render-") as tmp:
        for name in args.regions:
            home = Path(tmp) / name
            home.mkdir()
            build_archive(name, home, 16, Path(tmp) / f"files-{name}")
            region = load_region(name)
            times = np.sort(Archive.open(region, home=home, create=False).times)
            result = run_forecast(region, home=home, time=iso(times[3]), method="extrapolation", leads=12)
            for kind in ("png", "gif"):
                for k in range(args.repeat):
                    out = home / f"r{k}.{kind}"
                    t0 = time.perf_counter()
                    if kind == "png":
                        render_forecast(result.path, region, home=home, out=out, observed=True, fmt="png")
                    else:
                        render_forecast_animation(result.path, region, home=home, out=out, observed=True)
                    rows.append((name, region.grid.shape, kind, k, time.perf_counter() - t0, out.stat().st_size))
    print("| region | grid | output | run | seconds | bytes |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, shape, kind, k, sec, size in rows:
        print(f"| {name} | {shape[0]}x{shape[1]} | {kind} | {'first' if k == 0 else 'warm'} | {sec:.2f} | {size} |")


if __name__ == "__main__":
    main()
