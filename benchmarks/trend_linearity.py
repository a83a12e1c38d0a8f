"""Does a trend the window shows steadily go on, and one it shows as noise not? (validation sets only)

The Lagrangian-trend baseline (:func:`nowcast.baselines.lagrangian_trend`)
continues each pixel's window slope. On the simulated days most window
change is small-scale evolution and optical-flow misalignment, which does not
go on: unweighted, the baseline loses 0.06-0.19 in CSI to extrapolation there
while it gains 0.3-0.4 on the growth sets. This scores the baseline with each
slope weighted by its linear fit's R² to a power (``linearity_power``, the
weight the trend gate can take: ``architecture.trend_linearity_power``) beside
extrapolation, on the four validation sets the shipped model is chosen on: the
simulated validation store, the other day's twin, and the known-motion rigid
and growth twins. The test sets are not read.

Usage::

    python benchmarks/trend_linearity.py --powers 0 1 2 4 8 --sequences 32 --json benchmarks/out/v10/trend_linearity.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("trend_linearity")


def validation_sets() -> dict[str, Path]:
    """The four validation sets of ``bias_selection.py --known-motion --other-day`` (made if missing)."""
    from benchmarks.bias_selection import (
        RECIPE,
        known_motion_validation,
        other_day_validation,
    )
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.training import sequences_path

    rigid, growth = known_motion_validation()
    simulated = sequences_path(load_model_config(find_model_config(RECIPE)), "val")
    return {"simulated": simulated, "other day": other_day_validation(), "rigid": rigid, "growth": growth}


def score_against(methods: dict, sequences: np.ndarray, input_frames: int, leads: int, reference: str) -> dict[str, dict]:
    """Per method: mean CSI@1 and CSI@5, the worst per-lead difference from ``reference`` at each, per-lead scores."""
    from benchmarks.bias_selection import worst_differences
    from nowcast.models.skill import score_method

    scores = {m: score_method(f, sequences, input_frames, leads) for m, f in methods.items()}
    rows = {}
    for m, sc in scores.items():
        worst1, worst5 = worst_differences(sc, scores[reference])
        rows[m] = {"csi1": float(np.nanmean(sc["csi@1"])), "csi5": float(np.nanmean(sc["csi@5"])),
                   "worst1": worst1, "worst5": worst5, "per_lead": sc}
    return rows


def summary_table(results: dict[str, dict[str, dict]], with_csi1: bool = True) -> str:
    """Markdown: per method and set the mean CSI (1 and) 5 mm/h and the worst lead difference, and the worst over sets."""
    methods = next(iter(results.values()))
    what = "CSI@1 / CSI@5, worst Δ" if with_csi1 else "CSI@5 0-60, worst Δ"
    lines = ["| method | " + " | ".join(f"{s}: {what}" for s in results) + " | worst over all |",
             "| --- |" + " --- |" * (len(results) + 1)]
    for m in methods:
        cells = [(f"{r[m]['csi1']:.3f} / " if with_csi1 else "") + f"{r[m]['csi5']:.3f}, "
                 f"{min(r[m]['worst1'], r[m]['worst5']):+.3f}" for r in results.values()]
        worst = min(min(r[m]["worst1"], r[m]["worst5"]) for r in results.values())
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {worst:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--powers", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--sequences", type=int, default=32, help="First N sequences of each set.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from benchmarks.radar_transfer import load_test
    from nowcast.baselines import extrapolation, lagrangian_trend

    methods = {"extrapolation": extrapolation}
    methods.update({f"trend R2^{p:g}": partial(lagrangian_trend, linearity_power=p) for p in args.powers})
    results: dict[str, dict] = {}
    for name, path in validation_sets().items():
        sequences, _ = load_test(path, 4, 12)
        sequences = sequences[: args.sequences]
        results[name] = score_against(methods, sequences, 4, 12, "extrapolation")
        for m, row in results[name].items():
            log.info("%-10s %-14s CSI@1 %.3f CSI@5 %.3f worst lead %+.3f / %+.3f", name, m, row["csi1"], row["csi5"],
                     row["worst1"], row["worst5"])
    sys.stdout.write(summary_table(results) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
