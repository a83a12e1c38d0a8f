"""Quick held-out skill of one checkpoint beside extrapolation and the Lagrangian trend.

For ablations that do not warrant the full study: mean CSI at 1 and 5 mm/h over 12 leads (and
at 30/60 min), MAE at 60 min, on the first ``--sequences`` sequences of a test store.

Usage::

    python benchmarks/heldout_skill.py models/runs/exp/swiss-south-scratch-csi1.pt \\
        --test data/sim/swiss-south-sameday.zarr --sequences 16
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("heldout_skill")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--test", type=Path, default=ROOT / "data/sim/swiss-south-sameday.zarr")
    parser.add_argument("--sequences", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch
    import xarray as xr

    from nowcast.baselines import extrapolation, lagrangian_trend
    from nowcast.models.skill import score_method
    from nowcast.models.zoo import load_forecaster

    torch.set_num_threads(1)
    seqs = np.asarray(xr.open_zarr(args.test)["rain_rate"].values[: args.sequences, :16], dtype=np.float32)
    forecaster = load_forecaster(args.checkpoint)
    for name, fn in (("model", forecaster.predict), ("extrapolation", extrapolation), ("lagrangian-trend", lagrangian_trend)):
        r = score_method(lambda w, n, fn=fn: fn(w, n), seqs, 4, 12)
        log.info("%s: CSI@1 %.3f CSI@5 %.3f | 30 min %.3f/%.3f | 60 min %.3f/%.3f | MAE 60 %.3f", name,
                 np.mean(r["csi@1"]), np.mean(r["csi@5"]), r["csi@1"][5], r["csi@5"][5], r["csi@1"][11],
                 r["csi@5"][11], r["mae"][11])
    return 0


if __name__ == "__main__":
    sys.exit(main())
