"""Area forecast above a threshold over the observed one, per lead: do models widen or fade cores?

A forecaster sees a model that "inflates the cores" as yellow where the observation is green.
This measures it: on held-out sequences, the area a method forecasts above ``--threshold``
(mm/h) over the area observed, at each of the first leads, summed over the sequences
(1: unbiased), with the CSI beside it. ``--frozen`` also feeds every method four copies of
the last input frame (nothing moves, nothing changes): what a method does to a field it
cannot see change is a bias of the method itself, not a misreading of motion (issue #8,
"Skill, fourth round" in docs/benchmarks.md).

Usage::

    python benchmarks/area_bias.py models/zoo/swiss-south-tmu.pt --test data/sim/swiss-south-rigid-64.zarr --frozen
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("area_bias")
INPUT_FRAMES = 4


def area_ratio(predict, sequences: np.ndarray, leads: int, threshold: float, frozen: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Forecast over observed area above ``threshold`` and the CSI, per lead, summed over ``sequences``."""
    forecast = np.zeros(leads)
    observed = np.zeros(leads)
    hits = np.zeros(leads)
    for seq in sequences:
        window = seq[:INPUT_FRAMES]
        if frozen:
            window = np.repeat(window[-1:], INPUT_FRAMES, axis=0)
        f = np.nan_to_num(np.asarray(predict(window, leads), dtype=np.float32)) >= threshold
        o = seq[INPUT_FRAMES : INPUT_FRAMES + leads] >= threshold
        forecast += f.sum(axis=(1, 2))
        observed += o.sum(axis=(1, 2))
        hits += (f & o).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return forecast / observed, hits / (forecast + observed - hits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="*", help="Model checkpoints (extrapolation is always scored).")
    parser.add_argument("--test", type=Path, default=ROOT / "data/sim/swiss-south-rigid-64.zarr")
    parser.add_argument("--sequences", type=int, default=24, help="First N sequences of the store.")
    parser.add_argument("--leads", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=5.0, help="mm/h")
    parser.add_argument("--frozen", action="store_true", help="Also score four copies of the last input frame.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch
    import xarray as xr

    from nowcast.baselines import extrapolation
    from nowcast.models.zoo import load_forecaster

    torch.set_num_threads(1)
    with xr.open_zarr(args.test) as ds:
        seqs = np.asarray(ds["rain_rate"].values[: args.sequences, : INPUT_FRAMES + args.leads], dtype=np.float32)
    methods = {"extrapolation": lambda w, n: extrapolation(w, n, 5)}
    methods.update({path.stem: load_forecaster(path).predict for path in args.checkpoints})
    lead_cols = " | ".join(f"+{5 * (k + 1)} min" for k in range(args.leads))
    lines = [f"{args.test.stem}, first {len(seqs)} sequences, area above {args.threshold:g} mm/h forecast / observed (CSI)",
             "", f"| method | inputs | {lead_cols} |", "| --- | --- |" + " ---: |" * args.leads]
    for name, predict in methods.items():
        for frozen in ([False, True] if args.frozen else [False]):
            ratio, csi = area_ratio(predict, seqs, args.leads, args.threshold, frozen)
            cells = " | ".join(f"{r:.2f}x ({c:.2f})" for r, c in zip(ratio, csi))
            lines.append(f"| {name} | {'frozen' if frozen else 'real'} | {cells} |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
