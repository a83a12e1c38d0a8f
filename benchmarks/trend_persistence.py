"""How much of the window's trend goes on? The weight the data would have chosen, per set and lead (validation only).

The change weights apply a trend read from the input window at one weight on
every set and lead (:mod:`nowcast.models.calibration`). This measures,
without any forecast score, how much of that trend the future actually
shows: per validation-kind set (``trend_window.py``'s 20-frame sets), the
realized Lagrangian change of every lead (the truth moved back to the
analysis time along the window's motion, minus the analysis, network units)
is regressed through the origin on the trend the weights would add (the
rate where it grows, times :func:`nowcast.baselines.trend_ramp` with the
shipped 3-step lifetime), over the pixels where that trend is positive. The
slope is the least-squares weight of that set and lead (1: the trend goes
on as continued; 0: it stops at the analysis); the correlation says how
much of the realized change the trend explains at all. Estimators: the
slope over 8 frames and the shipped minmod of the halves, rain smoothed 4 px.
Beside them, not a trend: the analysis's own intensity over all its wet
pixels (correlation only; its weight means nothing), the simplest evidence
other than a pixel's history that a forecaster could read (strong rain
decaying, weak rain growing: the days' cells live 15-60 min). And the
shipped network's own change (what its weights of 0 leave out), over the
same wet pixels: its weight is the least-squares weight of the network.

``--scales``: the same question at larger scales: the correlation, at 30 min,
between the slope over 8 frames and the realized change, both averaged over
the known pixels with a Gaussian of each scale (pixels, 2 km) and compared
at the analysis's wet pixels (signed trend, all of them). The simulator's
growth and decay fields have a scale of 80 km; a pixel's change is mostly
the cascade's small-scale noise.

Usage::

    python benchmarks/trend_persistence.py --json benchmarks/out/v15/trend_persistence.json   # ~1 min, one core
    python benchmarks/trend_persistence.py --scales 0 4 8 16 --sequences 32   # the scale question, ~1 min
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

log = logging.getLogger("trend_persistence")

HISTORY, NETWORK_FRAMES, LEADS, LIFETIME = 8, 4, 12, 3.0
SHOWN_LEADS = (3, 6, 12)  # 15, 30, 60 min
ESTIMATORS = {"slope over 8": ("slope", 0.0), "minmod, smoothed 4 px (shipped)": ("minmod", 4.0)}
#: Not a trend: the analysis's intensity (network units) at every wet pixel, against the same realized change.
INTENSITY = "analysis intensity (not a trend)"
#: The shipped network's change (unweighted), at every wet pixel.
NETWORK = "the network's change"


def realized_change(prepared, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(leads, h, w)`` realized Lagrangian change (network units) and where it is known (inside the domain)."""
    from nowcast.models.lagrangian import db_params, normalise_db
    from nowcast.motion import to_db, to_lagrangian

    threshold, zero, _ = db_params(prepared.normaliser)
    db = to_db(np.nan_to_num(truth, nan=0.0), threshold=threshold, zerovalue=zero)
    lag, valid = to_lagrangian(db, list(range(1, truth.shape[0] + 1)), prepared.velocity, outval=zero)
    return normalise_db(lag, prepared.normaliser) - prepared.inputs[-1][None], valid & np.isfinite(truth).all(axis=0)


def persistence(sequences: np.ndarray, normaliser, motion_method: str,
                network=None) -> dict[str, dict[str, list[float]]]:
    """Per estimator: the least-squares weight and the correlation at every lead, pooled over ``sequences``.

    ``network``: ``(moved frames, leads) -> (leads, h, w)`` change of a forecaster (its newest 4 frames), if any.
    """
    from nowcast.baselines import trend_ramp
    from nowcast.models import lagrangian
    from nowcast.models.calibration import window_trend

    ramp = trend_ramp(LEADS, LIFETIME)
    names = [*ESTIMATORS, INTENSITY] + ([NETWORK] if network is not None else [])
    sums = {name: np.zeros((LEADS, 5)) for name in names}  # n, Σf, Σd, Σfd, Σf², plus Σd² below
    d2 = {name: np.zeros(LEADS) for name in names}
    for seq in sequences:
        prepared = lagrangian.prepare(seq[:HISTORY], LEADS, normaliser, motion_method, motion_frames=NETWORK_FRAMES)
        if not prepared.wet:
            continue
        change, known = realized_change(prepared, seq[HISTORY : HISTORY + LEADS])
        analysis = prepared.inputs[-1].astype(np.float64)
        learned = np.asarray(network(prepared.inputs[-NETWORK_FRAMES:], LEADS)) if network is not None else None
        for name in names:
            if name == INTENSITY:
                rate, steps, wet = analysis, np.ones(LEADS), analysis > 0
            elif name == NETWORK:
                rate, steps, wet = None, np.ones(LEADS), analysis > 0
            else:
                estimator, smoothing = ESTIMATORS[name]
                rate = np.maximum(window_trend(prepared.inputs, estimator=estimator, smoothing_px=smoothing), 0.0)
                steps, wet = ramp, rate > 0
            for k in range(LEADS):
                use = known[k] & wet
                f = steps[k] * (learned[k] if rate is None else rate)[use].astype(np.float64)
                d = change[k][use].astype(np.float64)
                sums[name][k] += (f.size, f.sum(), d.sum(), (f * d).sum(), (f * f).sum())
                d2[name][k] += (d * d).sum()
    out = {}
    for name, s in sums.items():
        n, sf, sd, sfd, sff = s.T
        weight = sfd / np.maximum(sff, 1e-12)
        cov = sfd / np.maximum(n, 1) - sf * sd / np.maximum(n, 1) ** 2
        var_f = sff / np.maximum(n, 1) - (sf / np.maximum(n, 1)) ** 2
        var_d = d2[name] / np.maximum(n, 1) - (sd / np.maximum(n, 1)) ** 2
        corr = cov / np.sqrt(np.maximum(var_f * var_d, 1e-24))
        out[name] = {"weight": weight.tolist(), "correlation": corr.tolist(), "pixels": n.tolist()}
    return out


def scale_correlation(sequences: np.ndarray, normaliser, motion_method: str, scales: list[float],
                      lead: int = 6) -> dict[float, float]:
    """Per scale (px; 0: none): the correlation at ``lead`` of the smoothed 8-frame slope and realized change."""
    from scipy.ndimage import gaussian_filter

    from nowcast.models import lagrangian
    from nowcast.models.calibration import window_trend

    pairs: dict[float, list] = {s: [] for s in scales}
    k = int(lead) - 1
    for seq in sequences:
        prepared = lagrangian.prepare(seq[:HISTORY], LEADS, normaliser, motion_method, motion_frames=NETWORK_FRAMES)
        if not prepared.wet:
            continue
        change, known = realized_change(prepared, seq[HISTORY : HISTORY + LEADS])
        rate, m = window_trend(prepared.inputs), known[k].astype(np.float64)
        d = np.where(known[k], change[k], 0.0)
        use = known[k] & (prepared.inputs[-1] > 0)
        for s in scales:
            if s:
                norm = np.maximum(gaussian_filter(m, s), 1e-3)
                f, g = gaussian_filter(rate * m, s) / norm, gaussian_filter(d, s) / norm
            else:
                f, g = rate, d
            pairs[s].append((f[use], g[use]))
    return {s: float(np.corrcoef(np.concatenate([a for a, _ in p]), np.concatenate([b for _, b in p]))[0, 1])
            for s, p in pairs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=64, help="First N sequences of each validation set.")
    parser.add_argument("--scales", type=float, nargs="+", help="Only the scale question, at these scales (px).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from benchmarks.trend_consistency import long_validation_data

    torch.set_num_threads(1)
    forecaster, stores, seqs = long_validation_data(args.sequences)
    if args.scales:
        rows = {label: scale_correlation(seqs[path.name], forecaster.normaliser, forecaster.config.motion.method,
                                         args.scales) for label, path in stores.items()}
        lines = ["| set | " + " | ".join(f"corr. at {s:g} px" for s in args.scales) + " |",
                 "| --- | " + " | ".join("---:" for _ in args.scales) + " |"]
        lines += [f"| {label} | " + " | ".join(f"{c:+.2f}" for c in r.values()) + " |" for label, r in rows.items()]
        sys.stdout.write("\n".join(lines) + "\n")
        if args.json:
            args.json.write_text(json.dumps({label: {f"{s:g}": c for s, c in r.items()} for label, r in rows.items()}))
        return 0
    results = {label: persistence(seqs[path.name], forecaster.normaliser, forecaster.config.motion.method,
                                  forecaster._raw_changes) for label, path in stores.items()}
    lines = ["| set | estimator | " + " | ".join(f"weight / corr. {5 * k} min" for k in SHOWN_LEADS) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in SHOWN_LEADS) + " |"]
    for label, by_estimator in results.items():
        for name, r in by_estimator.items():
            cells = [f"{r['weight'][k - 1]:+.2f} / {r['correlation'][k - 1]:+.2f}" for k in SHOWN_LEADS]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
