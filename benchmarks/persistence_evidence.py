"""Over how many independent pixels is a scene's persistence read, and how much does it grow? (a diagnostic).

The persistence gate (:func:`nowcast.models.calibration.scene_persistence`)
correlates the rates of the older and the newer half of the moved window over
the pixels where both are read. The rates come from rain smoothed σ = 4 px, so
neighbouring pixels are not independent (a Gaussian of σ correlates over about
4πσ² pixels). This prints, for chosen windows of stores and for every window of
a set that opens a gate (``--gate``), the pixels the correlation is read over,
the correlation, and the independent samples they hold (twentieth round); and
(twenty-fourth round) what the aligned slope over the 8 frames reads: its mean
where it grows (:func:`nowcast.models.calibration.scene_growth`, network units
per step) and its net, the sum over the sum of magnitudes (near 0: as much
decay as growth, as a misplaced field would read); and the newer half's rate
over the older half's where the slope grows (below 1: a growth slowing down
within the window). It chooses nothing.

Usage::

    python benchmarks/persistence_evidence.py \\
        --window data/sim/fresh-s9-f20/swiss-south-test-s9.zarr:117 \\
        --window data/sim/fresh-s11-f20/swiss-south-test-s11.zarr:96 \\
        --window data/sim/fresh-s11-f20/swiss-south-test-s11.zarr:91 \\
        --window data/sim/fresh-s7-f20/swiss-south-test-s7.zarr:117 \\
        --set data/sim/val-long/swiss-south-growth-64.zarr --json benchmarks/out/v20/evidence.json
    python benchmarks/persistence_evidence.py --gate 0.55 \
        --set data/sim/fresh-s10-f20/swiss-south-rigid-64-s10.zarr ... \
        --set data/sim/fresh-s14-f20/swiss-south-growth-64-s14.zarr --json benchmarks/out/v24/growth.json
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

HISTORY, NETWORK_FRAMES, LEADS, SMOOTHING, GATE = 8, 4, 12, 4.0, 0.6


def evidence(sequence: np.ndarray, normaliser, motion_method: str) -> dict | None:
    """Pixels the aligned persistence is read over, its value and the independent samples (``None``: dry)."""
    from nowcast.models import lagrangian
    from nowcast.models.calibration import (
        growth_ratio,
        half_rates,
        rate_correlation,
        scene_growth,
        smooth_within_rain,
        window_trend,
    )

    prepared = lagrangian.prepare(sequence[:HISTORY], LEADS, normaliser, motion_method, motion_frames=NETWORK_FRAMES)
    if not prepared.wet:
        return None
    x = smooth_within_rain(np.asarray(prepared.inputs, dtype=np.float32), SMOOTHING)
    older, newer = half_rates(x, align=True)
    pixels = int(((older != 0) & (newer != 0)).sum())
    rate = window_trend(x, estimator="slope", align=True)  # the shipped reading's rate (x is smoothed already)
    magnitude = float(np.abs(rate).sum())
    return {"pixels": pixels, "rho": rate_correlation(older, newer),
            "samples": pixels / (4.0 * np.pi * SMOOTHING**2), "growth": scene_growth(rate),
            "net": float(rate.sum()) / magnitude if magnitude > 0 else 0.0,
            "growth_ratio": growth_ratio(rate, older, newer)}  # what forecasts read (thirtieth round)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", action="append", default=[], help="STORE:INDEX (repeat).")
    parser.add_argument("--set", type=Path, action="append", default=[], help="A store whose gate-opening windows "
                                                                              "are summarised (repeat).")
    parser.add_argument("--gate", type=float, default=GATE, help="The sets' windows summarised open this gate.")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch
    import xarray as xr

    from nowcast.models.zoo import load_forecaster

    torch.set_num_threads(1)
    forecaster = load_forecaster(ROOT / "models/zoo/swiss-south-tmu.pt")
    method = forecaster.config.motion.method

    def sequences(store: Path, index: int | None = None) -> np.ndarray:
        with xr.open_zarr(store) as ds:
            values = ds["rain_rate"].values if index is None else ds["rain_rate"].values[[index]]
        return np.asarray(values[:, : HISTORY + LEADS], dtype=np.float32)

    out: dict = {"windows": {}, "sets": {}}
    for spec in args.window:
        store, index = spec.rsplit(":", 1)
        out["windows"][spec] = evidence(sequences(Path(store), int(index))[0], forecaster.normaliser, method)
        sys.stdout.write(f"{spec}: {out['windows'][spec]}\n")
    for store in args.set:
        rows = [{"index": i, **r} for i, r in enumerate(evidence(s, forecaster.normaliser, method)
                                                         for s in sequences(store)) if r]
        opening = [r for r in rows if r["rho"] >= args.gate]
        growth = sorted(r["growth"] for r in opening)
        out["sets"][store.name] = {"windows": len(rows), f"rho >= {args.gate:g}": len(opening),
                                   "fewest pixels among those": min((r["pixels"] for r in opening), default=None),
                                   "their growth, least and most": [growth[0], growth[-1]] if growth else None,
                                   "rows": rows}
        sys.stdout.write(f"{store.name}: {({k: v for k, v in out['sets'][store.name].items() if k != 'rows'})}\n")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
