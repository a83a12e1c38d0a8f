"""The network's change where it knows something: gated by the analysis's intensity (validation only).

``benchmarks/trend_persistence.py`` found the shipped network's own change
the one predictor with information on the simulated days (correlation
0.18-0.27 with the realized Lagrangian change, where every trend reading has
about 0), yet at full weight it costs CSI at 5 mm/h there (-0.024 to -0.032)
and on the rigid field (-0.041): what it knows is mostly light rain dying
and growing. This scores the shipped forecaster (its trend as shipped: a
quarter of the growth part of the minmod over 8 frames, rain smoothed 4 px,
15 min) plus its network's growth and decay at every pair of weights of the
calibration's grid, applied only where the analysis is below a rain rate
(1, 2 or 5 mm/h; and everywhere, for comparison), on the 20-frame
validation-kind sets, with the summaries the rule reads (worst per-lead CSI
difference from extrapolation at 1 and 5 mm/h, growth twin's mean CSI@5
difference). Hypothesis (docs/benchmarks.md, "Skill, fifteenth round",
written before it ran): some gated candidate is tied with the shipped
weights on the worst lead (within 0.005) and gains at least 0.02 more on the
growth twin. Nothing is shipped from it this round.

Usage::

    python benchmarks/network_gate.py --json benchmarks/out/v15/network_gate.json   # ~5 min, one core
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

log = logging.getLogger("network_gate")

HISTORY, NETWORK_FRAMES, LEADS = 8, 4, 12
#: Rain rates (mm/h) below which the network's change is applied; ``inf``: everywhere.
GATES = (1.0, 2.0, 5.0, float("inf"))


def gated(network, normaliser, below_mmh: float):
    """``network``'s change on the newest 4 moved frames, zero where the analysis rains ``below_mmh`` or more."""
    from nowcast.models.lagrangian import db_params

    _, zero, scale = db_params(normaliser)
    limit = np.inf if not np.isfinite(below_mmh) else (10.0 * np.log10(below_mmh) - zero) / scale

    def run(x: np.ndarray, leads: int) -> np.ndarray:
        change = np.asarray(network(x[-NETWORK_FRAMES:], leads))
        return change * (x[-1] < limit)[None]
    return run


def run(sequences: int) -> dict:
    """Every gate's candidates scored on the validation sets, with the shipped trend."""
    from benchmarks.trend_consistency import summary_rows, validation_data
    from nowcast.models.calibration import NETWORK_GRID, score_grid

    forecaster, stores, seqs, references = validation_data(sequences)
    shipped = forecaster.change_weights
    _, _, trend, trend_decay, lifetime = shipped.key(0)
    keys = [(g, d, trend, trend_decay, lifetime) for g in NETWORK_GRID for d in NETWORK_GRID]
    out: dict = {"shipped": list(shipped.key(0)), "gates": {}}
    for gate in GATES:
        grid = score_grid(gated(forecaster._raw_changes, forecaster.normaliser, gate), forecaster.normaliser, seqs,
                          HISTORY, LEADS, forecaster.config.motion.method, keys, motion_frames=NETWORK_FRAMES,
                          trend=lambda x, power: shipped.rate(x))
        out["gates"][f"{gate:g}"] = summary_rows(grid, keys, references, stores["growth"].name,
                                                 label=lambda key: "/".join(f"{v:g}" for v in key[:2]), with_sets=False)
        log.info("gate below %g mm/h: %d candidates scored", gate, len(keys))
    return out


def table(results: dict) -> str:
    """Per gate: the shipped weights' row (network 0/0), and the best growth gain within 0.005 of its worst lead."""
    base = results["gates"][next(iter(results["gates"]))]["0/0"]
    lines = [(f"Shipped weights (network 0/0): worst lead {base['worst']:+.4f}, growth twin ΔCSI@5 "
              f"{base['growth_gain']:+.3f}."), "",
             "| network applied below | network growth / decay | worst lead | growth twin ΔCSI@5 0-60 |",
             "| --- | --- | ---: | ---: |"]
    for gate, rows in results["gates"].items():
        tied = [k for k in rows if k != "0/0" and rows[k]["worst"] >= base["worst"] - 0.005]
        shown = [max(tied, key=lambda k: rows[k]["growth_gain"])] if tied else []
        shown += [k for k in ("1/1", "0.5/0.5", "0.5/0") if k not in shown]
        for key in shown:
            mark = " (best growth within 0.005 of the shipped worst lead)" if tied and key == shown[0] else ""
            lines.append(f"| {gate} mm/h | {key}{mark} | {rows[key]['worst']:+.4f} | {rows[key]['growth_gain']:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=64, help="First N sequences of each validation set.")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    results = run(args.sequences)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    sys.stdout.write(table(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
