"""Does a longer history tell a lasting trend from an ending one? (validation-kind data only)

Four frames of 5 min are what the forecaster reads, and the tenth and
thirteenth rounds found that they cannot tell a trend that goes on (the growth
sets) from one that ends (the simulated days' cells, which grow and decay for
20-120 min): the whole window trend gains 0.35 CSI@5 on the growth twin and
loses up to 0.026 on the days. A trend read over a longer history (more
frames, each pixel's R² over more points) might: a cell that has grown for
35 min is steadier evidence than one that grew for 15. This scores the
Lagrangian-trend baseline (R⁴-weighted, the calibration's form) with its slope
read over the last 4, 6 or 8 frames (its motion always from the last 4, as
extrapolation's: motion from 8 frames is itself worse, up to -0.042 on the
other day, measured), beside extrapolation from the last 4, on
validation-kind sets made with 20 frames (8 of history, 12 leads) from the
validation seeds (the simulated validation day, seed 50001; the other day's
twin, seed 1; the known-motion twins, seed 1), in ``data/sim/val-long``.
No test set, old or fresh, is read.

Usage::

    python benchmarks/trend_window.py --windows 4 6 8 --lifetimes 3 6 12 --json benchmarks/out/v14/trend_window.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("trend_window")

HISTORY, LEADS = 8, 12


def long_validation_sets(folder: Path, wide: bool = False) -> dict[str, Path]:
    """The four validation kinds with ``HISTORY + LEADS`` frames per sequence, made if missing.

    :func:`pipelines.validation.long_validation_stores` of the shipped
    target, the sets ``nowcast models calibrate --trend-frames 8`` chooses on.
    ``wide``: with the sixteenth round's wider days (``folder`` should be
    another, e.g. ``data/sim/val-wide``).
    """
    from nowcast.models.config import find_model_config, load_model_config
    from pipelines.validation import (
        WIDE_DAY_SEQUENCES,
        WIDE_OTHER_DAY_SEQUENCES,
        long_validation_stores,
    )

    config = load_model_config(find_model_config("swiss-south-tmu"))
    sizes = {"day_sequences": WIDE_DAY_SEQUENCES, "other_day_sequences": WIDE_OTHER_DAY_SEQUENCES} if wide else {}
    day, rigid, growth, other = long_validation_stores(config, HISTORY + LEADS, folder, **sizes)
    return {"simulated day": day, "other day": other, "rigid": rigid, "growth": growth}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[4, 6, 8], help="Frames the trend is read over.")
    parser.add_argument("--lifetimes", type=float, nargs="+", default=[6.0], help="e-folding lifetimes (steps).")
    parser.add_argument("--power", type=float, default=4.0, help="R² power of the slopes' weight.")
    parser.add_argument("--sequences", type=int, default=64, help="First N sequences of each set.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if max(args.windows) > HISTORY or min(args.windows) < 3:
        parser.error(f"--windows must lie in [3, {HISTORY}]")

    import xarray as xr

    from benchmarks.trend_linearity import score_against, summary_table
    from nowcast.baselines import extrapolation, lagrangian_trend
    from nowcast.models.calibration import newest_frames

    # extrapolation's motion from all 8 frames too: the trend's motion comes from the frames it reads
    methods = {"extrapolation (4 frames)": newest_frames(extrapolation, 4), "extrapolation (8 frames)": newest_frames(extrapolation, 8)}
    for n in args.windows:
        for life in args.lifetimes:
            methods[f"trend over {n} frames, lifetime {life:g}"] = newest_frames(
                lambda w, k, life=life: lagrangian_trend(w, k, linearity_power=args.power, lifetime=life,
                                                         motion_frames=4), n)
    results: dict[str, dict] = {}
    for name, path in long_validation_sets(ROOT / "data/sim/val-long").items():
        with xr.open_zarr(path) as ds:
            seqs = np.asarray(ds["rain_rate"].values[: args.sequences, : HISTORY + LEADS], dtype=np.float32)
        results[name] = score_against(methods, seqs, HISTORY, LEADS, "extrapolation (4 frames)")
        log.info("%s: %d sequences scored", name, len(seqs))
    sys.stdout.write(summary_table(results, with_csi1=False) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
