"""Does a scene's trend go on? Its in-window persistence against its future (validation data only).

The window trend carries no information about a pixel's next hour on the
simulated days and most of it on the growth set (``trend_persistence.py``,
fifteenth round), so one trend weight cannot serve both. This asks whether a
forecast can tell which kind of scene it is from its own window: per
sequence of each 20-frame validation-kind set, the scene's in-window
persistence ρ (:func:`nowcast.models.calibration.scene_persistence`: the
correlation of the rates read over the older and the newer half of the 8
moved frames, rain smoothed 4 px, as the shipped minmod reads them) beside
its future persistence: the correlation, over the pixels where the shipped
trend grows, of that trend and the realized Lagrangian change at 30 min
(``trend_persistence.realized_change``), and the least-squares weight through
the origin (1: the trend goes on as the shipped 15-min lifetime continues it).

Hypothesis H16a (docs/benchmarks.md, "Skill, sixteenth round", written
before it ran): some threshold t has at least 75 % of the growth twin's
sequences at ρ ≥ t and at most 10 % of each simulated day's; over all the
sequences the rank correlation of ρ with the future persistence is at least
0.4.

Usage::

    python benchmarks/trend_regime.py --json benchmarks/out/v16/trend_regime.json   # ~2 min, one core
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

log = logging.getLogger("trend_regime")

HISTORY, NETWORK_FRAMES, LEADS, LIFETIME, SMOOTHING = 8, 4, 12, 3.0, 4.0
#: The lead (steps) whose realized change is the scene's future: 30 min.
FUTURE_LEAD = 6
#: Thresholds of ρ the table shows (the plan's gates, 0.2-0.6, and two above them).
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: Which sets are simulated days (H16a's "at most 10 %") and which the growth twin.
DAYS, GROWTH = ("simulated day", "other day"), "growth"


def scene_rows(sequences: np.ndarray, normaliser, motion_method: str, align: bool = False) -> list[dict[str, float]]:
    """Per sequence: ``rho`` (in-window persistence), ``future`` (correlation) and ``weight`` at :data:`FUTURE_LEAD`."""
    from benchmarks.trend_persistence import realized_change
    from nowcast.baselines import trend_ramp
    from nowcast.models import lagrangian
    from nowcast.models.calibration import scene_persistence, window_trend

    ramp = trend_ramp(LEADS, LIFETIME)
    k = FUTURE_LEAD - 1
    rows = []
    for seq in sequences:
        prepared = lagrangian.prepare(seq[:HISTORY], LEADS, normaliser, motion_method, motion_frames=NETWORK_FRAMES)
        if not prepared.wet:
            continue
        rho = scene_persistence(prepared.inputs, smoothing_px=SMOOTHING, align=align)
        rate = np.maximum(window_trend(prepared.inputs, estimator="minmod", smoothing_px=SMOOTHING, align=align), 0.0)
        change, known = realized_change(prepared, seq[HISTORY : HISTORY + LEADS])
        use = known[k] & (rate > 0)
        future, weight = float("nan"), float("nan")
        if use.sum() >= 10:
            f, d = ramp[k] * rate[use].astype(np.float64), change[k][use].astype(np.float64)
            weight = float((f * d).sum() / max((f * f).sum(), 1e-12))
            if f.std() > 0 and d.std() > 0:
                future = float(np.corrcoef(f, d)[0, 1])
        rows.append({"rho": rho, "future": future, "weight": weight})
    return rows


def summary(by_set: dict[str, list[dict[str, float]]]) -> dict:
    """Per set: ρ's quantiles and the share at or above each threshold; overall: ρ's rank correlation with the future."""
    from scipy.stats import spearmanr

    sets = {}
    for label, rows in by_set.items():
        rho = np.array([r["rho"] for r in rows])
        future = np.array([r["future"] for r in rows])
        sets[label] = {"sequences": len(rows), "rho_quantiles": np.quantile(rho, [0.1, 0.5, 0.9]).tolist(),
                       "share_at_or_above": {f"{t:g}": float((rho >= t).mean()) for t in THRESHOLDS},
                       "future_median": float(np.nanmedian(future))}
    rho = np.array([r["rho"] for rows in by_set.values() for r in rows])
    future = np.array([r["future"] for rows in by_set.values() for r in rows])
    ok = np.isfinite(future)
    rank = float(spearmanr(rho[ok], future[ok]).statistic)
    return {"sets": sets, "rank_correlation": rank, "separating": separating_interval(by_set),
            "h16a": separating_interval(by_set) is not None and rank >= 0.4}


def separating_interval(by_set: dict[str, list[dict[str, float]]]) -> list[float] | None:
    """``[lowest, highest]`` threshold t (any value, not only the table's) that H16a asks for, or ``None``.

    At least 75 % of the growth twin's scenes at ρ ≥ t and at most 10 % of
    each simulated day's. Every observed ρ (and a little above each) is tried.
    """
    rho = {label: np.array([r["rho"] for r in rows]) for label, rows in by_set.items()}
    trials = np.unique(np.concatenate([v for v in rho.values()] + [v + 1e-9 for v in rho.values()]))
    ok = [t for t in trials if (rho[GROWTH] >= t).mean() >= 0.75 and all((rho[d] >= t).mean() <= 0.10 for d in DAYS)]
    return [float(min(ok)), float(max(ok))] if ok else None


def table(result: dict) -> str:
    """The markdown table of the docs."""
    lines = ["| set | ρ 10 % / median / 90 % | " + " | ".join(f"share ρ ≥ {t:g}" for t in THRESHOLDS)
             + " | future corr. at 30 min, median |",
             "| --- | --- | " + " | ".join("---:" for _ in THRESHOLDS) + " | ---: |"]
    for label, r in result["sets"].items():
        q = r["rho_quantiles"]
        shares = " | ".join(f"{100 * r['share_at_or_above'][f'{t:g}']:.0f} %" for t in THRESHOLDS)
        lines.append(f"| {label} | {q[0]:+.2f} / {q[1]:+.2f} / {q[2]:+.2f} | {shares} | {r['future_median']:+.2f} |")
    lines.append(f"\nRank correlation of ρ with the future persistence, all sequences: {result['rank_correlation']:+.2f}; "
                 f"thresholds t that separate: {sep_text(result['separating'])}; H16a "
                 f"{'holds' if result['h16a'] else 'fails'}.")
    return "\n".join(lines)


def sep_text(interval: list[float] | None) -> str:
    """``0.70 to 0.80`` or ``none``."""
    return f"{interval[0]:.2f} to {interval[1]:.2f}" if interval else "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=64, help="First N sequences of each validation set.")
    parser.add_argument("--align", action="store_true",
                        help="Read ρ and the trend with each half's residual displacement removed (step 6).")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from benchmarks.trend_consistency import long_validation_data

    torch.set_num_threads(1)
    forecaster, stores, seqs = long_validation_data(args.sequences)
    by_set = {}
    for label, path in stores.items():
        by_set[label] = scene_rows(seqs[path.name], forecaster.normaliser, forecaster.config.motion.method, args.align)
        log.info("%s: %d scenes read", label, len(by_set[label]))
    result = {"validation": [p.name for p in stores.values()], **summary(by_set), "scenes": by_set}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    sys.stdout.write(table(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
