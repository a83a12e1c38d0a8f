"""One test window at +30 and +60 min: the observation beside extrapolation, the Lagrangian trend and a model.

Why: a score says that a window cost; the map says what the forecaster would
have seen (the rain the model grew, where the observation did not). The study's
maps (``radar_transfer.py``) show only a set's first sequence; this shows any.

Usage::

    python benchmarks/window_map.py data/sim/fresh-s28-f20/swiss-south-test-s28.zarr 117 \\
        --model models/zoo/swiss-south-tmu.pt --out docs/img/radar_shipped31_maps_test-s28-w117.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchmarks.radar_transfer as study

LEADS = 12
INPUT_FRAMES = 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="A test store of sequences (simulated or ingested).")
    parser.add_argument("index", type=int, help="The sequence to show.")
    parser.add_argument("--model", type=Path, default=ROOT / "models/zoo/swiss-south-tmu.pt")
    parser.add_argument("--history", type=int, default=8, help="Frames before the analysis time (the model's).")
    parser.add_argument("--title", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from nowcast.models.zoo import load_forecaster

    sequences, _ = study.load_test(args.store, args.history, LEADS)
    if not 0 <= args.index < len(sequences):
        raise SystemExit(f"{args.store}: no sequence {args.index} (it holds {len(sequences)})")
    one = sequences[args.index:args.index + 1]
    name = f"{args.store.stem} sequence {args.index}"
    methods = {m: study.baseline_predictor(m, INPUT_FRAMES) for m in ("extrapolation", "lagrangian-trend")}
    methods[args.model.stem] = load_forecaster(args.model).predict
    for method, predict in methods.items():
        study.evaluate(method, predict, one, args.history, LEADS, key=(method, name))
    study.plot_maps(one, name, list(methods), args.history, args.out, title=args.title or f"{name} (2 km cells)")
    logging.getLogger("window_map").info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
