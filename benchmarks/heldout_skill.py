"""Quick held-out skill of checkpoints beside extrapolation (and the Lagrangian trend).

For ablations that do not warrant the full study (``benchmarks/radar_transfer.py``): per test
set, mean CSI at 1 and 5 mm/h over 12 leads of 5 min, CSI at 60 min, MAE at 60 min, and the
*worst* per-lead difference from pysteps extrapolation on the same sequences (the issue's
target is "no worse than extrapolation at any lead": a negative worst difference is a miss).
Prints one Markdown table; ``--json`` writes every per-lead score.

Usage::

    python benchmarks/heldout_skill.py models/runs/exp/a.pt models/runs/exp/b.pt \\
        --test data/sim/swiss-south-sameday.zarr data/sim/swiss-south-test.zarr --sequences 24
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

log = logging.getLogger("heldout_skill")

DEFAULT_TESTS = [ROOT / f"data/sim/swiss-south-{name}.zarr" for name in ("sameday", "test", "growth-64", "rigid-64")]
INPUT_FRAMES, LEADS = 4, 12
# the bootstrap of the held-out records, shared (nowcast.models.skill): one implementation
from nowcast.models.skill import BOOTSTRAP_THRESHOLDS, bootstrap_summary


def _row(name: str, scores: dict[str, list[float]], reference: dict[str, list[float]]) -> str:
    c1, c5 = np.asarray(scores["csi@1"]), np.asarray(scores["csi@5"])
    d1 = c1 - np.asarray(reference["csi@1"])
    d5 = np.nan_to_num(c5 - np.asarray(reference["csi@5"]))  # a lead with no 5 mm/h anywhere: no difference
    return (f"| {name} | {c1.mean():.3f} | {c1[-1]:.3f} | {np.nanmean(c5):.3f} | {c5[-1]:.3f} | "
            f"{scores['mae'][-1]:.3f} | {d1.min():+.3f} | {d5.min():+.3f} |")


def score_with_counts(predict, seqs: np.ndarray,
                      input_frames: int = INPUT_FRAMES) -> tuple[dict[str, list[float]], np.ndarray]:
    """Per-lead scores of ``predict`` on ``seqs`` and each forecast's CSI counts at 1 and 5 mm/h (for the bootstrap).

    ``predict`` gets the first ``input_frames`` of each sequence (more than 4: a history, ``trend_history.py``).
    """
    from nowcast.models.skill import LeadScores, csi_counts

    scores, counts = LeadScores(LEADS), []
    for seq in seqs:
        forecast = np.asarray(predict(seq[:input_frames], LEADS), dtype=np.float32)
        truth = seq[input_frames : input_frames + LEADS]
        scores.add(forecast, truth)
        counts.append(csi_counts(forecast, truth, BOOTSTRAP_THRESHOLDS))
    return scores.result(), np.stack(counts)


def bootstrap_table(intervals: dict[str, dict[str, dict]]) -> str:
    """Markdown: per test set and model, the worst lead with its interval, and the leads worse / better beyond doubt."""
    def cells(found: list) -> str:
        return ", ".join(f"{5 * lead} min @{t:g}" for lead, t in found) or "none"

    lines = ["| test set | model | worst lead ΔCSI (90 % interval) | leads below extrapolation beyond the interval | above it |",
             "| --- | --- | --- | --- | --- |"]
    for store, by_model in intervals.items():
        for name, b in by_model.items():
            w = b["worst"]
            lines.append(f"| {store} | {name} | {w['difference']:+.3f} at {5 * w['lead']} min @{w['threshold']:g} "
                         f"({w['low']:+.3f} … {w['high']:+.3f}) | {cells(b['worse'])} | {len(b['better'])} of "
                         f"{len(b['difference']) * len(b['difference'][0])} |")
    return "\n".join(lines)


def history_only(forecaster):
    """A view of a Lagrangian ``forecaster`` whose change is its own minus its change on a *frozen* window.

    The frozen window repeats the Lagrangian analysis frame: no history, no
    evolution to read. What remains is the part of the forecast that depends
    on the window's history; the part that does not (a correction by
    intensity and lead, the same for every window) is removed. Scored beside
    the model, it tells whether its skill over extrapolation comes from
    reading growth and decay in the window or from a static correction. It
    shares the network and costs two network runs per forecast.
    """
    import copy

    view = copy.copy(forecaster)
    changes = forecaster._changes

    def history_changes(x: np.ndarray, leads: int, **kw) -> np.ndarray:
        frozen = np.repeat(np.asarray(x)[-1:], x.shape[0], axis=0)
        return changes(x, leads, **kw) - changes(frozen, leads, **kw)

    view._changes = history_changes
    return view


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="*", help="Model checkpoints (none: baselines only).")
    parser.add_argument("--test", type=Path, nargs="+", default=DEFAULT_TESTS, help="Held-out sequence stores.")
    parser.add_argument("--sequences", type=int, default=24, help="First N sequences of each store.")
    parser.add_argument("--trend", action="store_true", help="Also score the Lagrangian-trend baseline.")
    parser.add_argument("--history-only", action="store_true",
                        help="Also score each checkpoint's history-dependent part alone (see history_only).")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="Also a paired bootstrap over sequences (N resamples) of every model's CSI difference "
                             "from extrapolation: its 90%% interval at the worst lead, and the leads where the "
                             "whole interval is below (above) zero (see bootstrap_table).")
    parser.add_argument("--fresh", type=int, default=None, metavar="SEED",
                        help="Score on fresh test sets drawn with SEED instead (made if missing in "
                             "data/sim/fresh-sSEED; pipelines.validation.fresh_test_stores): data no choice has seen.")
    parser.add_argument("--json", type=Path, help="Write all per-lead scores here.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.fresh is not None:
        from pipelines.validation import fresh_test_stores

        args.test = fresh_test_stores(ROOT / f"data/sim/fresh-s{args.fresh}", args.fresh)
    import torch
    import xarray as xr

    from nowcast.baselines import extrapolation, lagrangian_trend
    from nowcast.models.calibration import newest_frames
    from nowcast.models.zoo import load_forecaster

    torch.set_num_threads(1)
    forecasters = {path.stem: load_forecaster(path) for path in args.checkpoints}
    if args.history_only:
        forecasters.update({f"{name} (history only)": history_only(fc) for name, fc in list(forecasters.items())})
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    intervals: dict[str, dict[str, dict]] = {}
    lines = ["| test set / method | CSI@1 0-60 | CSI@1 60 | CSI@5 0-60 | CSI@5 60 | MAE 60 | worst lead ΔCSI@1 | worst lead ΔCSI@5 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    # a model whose trend reads a longer history gets it where the store holds it; the baselines read the newest 4
    wanted = max([INPUT_FRAMES] + [int(getattr(fc, "history_frames", INPUT_FRAMES)) for fc in forecasters.values()])
    for store in args.test:
        with xr.open_zarr(store) as ds:
            seqs = np.asarray(ds["rain_rate"].values[: args.sequences, : wanted + LEADS], dtype=np.float32)
        history = seqs.shape[1] - LEADS
        log.info("%s: %d sequences", store.name, len(seqs))
        if history < wanted:
            log.warning("%s: %d frames before the leads; a model reading %d gets its fallback (the newest %d)",
                        store.name, history, wanted, history)
        methods = {"extrapolation": newest_frames(extrapolation, INPUT_FRAMES)}
        if args.trend:
            methods["lagrangian-trend"] = newest_frames(lagrangian_trend, INPUT_FRAMES)
        methods.update({name: fc.predict for name, fc in forecasters.items()})
        scores, counts = {}, {}
        for name, fn in methods.items():
            scores[name], counts[name] = score_with_counts(fn, seqs, history)
        results[store.stem] = scores
        if args.bootstrap:
            intervals[store.stem] = {name: bootstrap_summary(c, counts["extrapolation"], args.bootstrap)
                                     for name, c in counts.items() if name != "extrapolation"}
        lines.append(f"| **{store.stem}** ({len(seqs)}) | | | | | | | |")
        lines += [_row(name, s, scores["extrapolation"]) for name, s in scores.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    if intervals:
        sys.stdout.write("\n" + bootstrap_table(intervals) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results if not intervals else {**results, "bootstrap": intervals}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
