"""Where does a candidate lose? Its CSI at 5 mm/h against extrapolation, window by window.

The sixteenth round's gated trends lost on fresh days through a few windows
each time, and validation sets of the same construction did not show it.
This is the per-window account: for every window of a store, the candidate's
and extrapolation's hits, misses and false alarms above 5 mm/h over the hour,
and the window's share of the set's CSI difference (the pooled CSI@5 over
0-60 min with this window's counts, minus the same with extrapolation's
counts in their place: what the set would gain if the candidate had left
this window alone). Beside each of the costliest windows, what its own frames
show: the scene's persistence (plain and aligned), the analysis's heaviest
rain and rain area. A diagnostic for learning: on a set that has been scored
it chooses nothing.

Usage::

    python benchmarks/window_losses.py --candidate "step 7: aligned, gate 0.8, x2, 60 min" \\
        --store data/sim/fresh-s9-f20/swiss-south-test-s9.zarr \\
        --store data/sim/val-stress/swiss-south-otherday-pool.zarr --json benchmarks/out/v16/window_losses.json
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

log = logging.getLogger("window_losses")

HISTORY, NETWORK_FRAMES, LEADS, SMOOTHING, HEAVY = 8, 4, 12, 4.0, 5.0


#: The thresholds (mm/h) :func:`lead_counts` counts at by default: CSI@1 and CSI@5, as every rule reads them.
COUNT_THRESHOLDS: tuple[float, ...] = (1.0, HEAVY)


def window_counts(predict, sequences: np.ndarray) -> np.ndarray:
    """``(windows, 3)`` hits, misses and false alarms above :data:`HEAVY` mm/h, summed over the leads."""
    return lead_counts(predict, sequences, (HEAVY,))[:, :, 0].sum(axis=1)


def heavy(counts: np.ndarray) -> np.ndarray:
    """``(windows, 3)``: :func:`lead_counts` (at :data:`COUNT_THRESHOLDS`) above :data:`HEAVY` mm/h, summed over the leads.

    What :func:`window_counts` gives, from counts already made at both thresholds.
    """
    return counts[:, :, COUNT_THRESHOLDS.index(HEAVY)].sum(axis=1)


def lead_counts(predict, sequences: np.ndarray, thresholds: tuple[float, ...] = COUNT_THRESHOLDS) -> np.ndarray:
    """``(windows, leads, thresholds, 3)`` hits, misses and false alarms of every window's forecast.

    Pooled over the windows, per lead, they give the set's CSI at each lead as
    :func:`nowcast.models.skill.score_method` does (the same conventions,
    :func:`nowcast.models.skill.csi_counts`); summed over the leads at
    :data:`HEAVY`, :func:`window_counts`.
    """
    from nowcast.models.skill import csi_counts

    out = np.zeros((len(sequences), LEADS, len(thresholds), 3), dtype=np.int64)
    for i, seq in enumerate(sequences):
        forecast = np.asarray(predict(seq[:HISTORY], LEADS), dtype=np.float32)
        out[i] = csi_counts(forecast, seq[HISTORY : HISTORY + LEADS], list(thresholds))
    return out


def contributions(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per window: the set's pooled CSI with the candidate's counts minus the same with this window's reference counts.

    Negative: the set would score better had the candidate forecast this window
    as the reference did. The contributions need not add up to the set's
    difference (CSI is a ratio), but the costliest windows are the ones to read.
    """
    from nowcast.models.skill import csi_from_counts

    pooled = candidate.sum(axis=0)
    return np.array([float(csi_from_counts(pooled) - csi_from_counts(pooled - candidate[i] + reference[i]))
                     for i in range(len(candidate))])


def features(sequence: np.ndarray, normaliser, motion_method: str) -> dict[str, float]:
    """What a window's own frames show: persistence (plain, aligned), the analysis's heaviest rain and its wet area."""
    from nowcast.models import lagrangian
    from nowcast.models.calibration import scene_persistence

    analysis = np.nan_to_num(sequence[HISTORY - 1], nan=0.0)
    prepared = lagrangian.prepare(sequence[:HISTORY], LEADS, normaliser, motion_method, motion_frames=NETWORK_FRAMES)
    rho = ([scene_persistence(prepared.inputs, smoothing_px=SMOOTHING, align=a) for a in (False, True)]
           if prepared.wet else [0.0, 0.0])
    return {"rho": rho[0], "rho_aligned": rho[1], "analysis_max_mm_h": float(analysis.max()),
            "area_above_1_mm_h_px": int((analysis > 1.0).sum()),
            "truth_max_mm_h": float(np.nan_to_num(sequence[HISTORY : HISTORY + LEADS], nan=0.0).max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", help="A name of stress_windows.CANDIDATES.")
    parser.add_argument("--choice", type=Path,
                        help="Or a choice file (trend_consistency.py --choice-json): its candidate, read as it says.")
    parser.add_argument("--store", type=Path, action="append", required=True)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from benchmarks.stress_windows import methods
    from nowcast.models.skill import csi_from_counts
    from nowcast.models.zoo import load_forecaster
    from pipelines.validation import read_validation

    torch.set_num_threads(1)
    forecaster = load_forecaster(ROOT / "models/zoo/swiss-south-tmu.pt")
    available = methods(forecaster)
    if args.choice is not None:
        from benchmarks.trend_history import choice_weights, predictor

        args.candidate = f"choice {args.choice.name}"
        available[args.candidate] = predictor(forecaster, choice_weights(json.loads(args.choice.read_text())),
                                              HISTORY)
    if args.candidate not in available:
        parser.error(f"unknown candidate {args.candidate!r}: choose from {sorted(available)}")
    results, lines = {}, []
    for name, seqs in read_validation(args.store, None, HISTORY + LEADS).items():
        cand = window_counts(available[args.candidate], seqs)
        ref = window_counts(available["extrapolation"], seqs)
        share = contributions(cand, ref)
        order = [int(i) for i in np.argsort(share)[: args.top]]
        difference = float(csi_from_counts(cand.sum(axis=0)) - csi_from_counts(ref.sum(axis=0)))
        rows = [{"window": i, "contribution": float(share[i]), "extra_false_alarms": int(cand[i, 2] - ref[i, 2]),
                 "extra_hits": int(cand[i, 0] - ref[i, 0]),
                 **features(seqs[i], forecaster.normaliser, forecaster.config.motion.method)} for i in order]
        results[name] = {"windows": len(seqs), "difference": difference, "costliest": rows,
                               "windows_costing_anything": int((share < 0).sum())}
        lines += [(f"\n{name}: {len(seqs)} windows, CSI@5 0-60 difference {difference:+.4f}, "
                   f"{int((share < 0).sum())} windows cost anything"),
                  "| window | contribution | extra false alarms | extra hits | ρ / aligned | analysis max | area > 1 mm/h | truth max |",
                  "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
        lines += [f"| {r['window']} | {r['contribution']:+.4f} | {r['extra_false_alarms']} | {r['extra_hits']} | "
                  f"{r['rho']:+.2f} / {r['rho_aligned']:+.2f} | {r['analysis_max_mm_h']:.1f} | "
                  f"{r['area_above_1_mm_h_px']} | {r['truth_max_mm_h']:.1f} |" for r in rows]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"candidate": args.candidate, "stores": results}, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
