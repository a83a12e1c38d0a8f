"""Which selection rule chooses change weights that hold out of sample? (validation data only)

Every round chose the shipped model's change weights by a rule over the
candidates' worst per-lead CSI difference from extrapolation and mean CSI@5 on
the validation sets (:mod:`nowcast.models.calibration`), and twice the rule's
last step was decided by a difference smaller than the noise (thirteenth and
fourteenth rounds). The test sets cannot judge rules: they have judged too
many choices already. Cross-validation can: score every candidate on every
validation sequence once (per-sequence CSI counts, ``score_grid(per_sequence=)``),
then many times split every validation set in random halves, let each rule
choose on one half and score its choice on the other. A rule whose choices
hold their worst lead out of sample is the better rule, whatever the test sets
say.

Rules compared (``RULES``): the thirteenth round's (ties within 0.005 of the
best worst lead go to the larger mean CSI@5), the fourteenth round's (those
within 0.005 of the largest CSI@5 tied again, then the least applied change),
"least change" (ties within 0.005 of the best worst lead go to the least
applied change) and "best worst lead" (no tolerance). Meta-rule, written
before it was run: the rule with the largest mean held-out worst lead wins;
rules within 0.002 of it are tied and the tie goes to the larger mean
held-out growth gain (CSI@5 over the hour on the growth twin); the winner is
the next rule (applied in the same session: ``--rule 15`` of
``benchmarks/change_calibration.py``).

Usage::

    python benchmarks/rule_cv.py --counts benchmarks/out/v14/rule_cv_counts.npz --splits 100 \\
        --json benchmarks/out/v14/rule_cv.json      # 9 min to score, then seconds

Fifteenth round, the trend read as the shipped model reads it (8 frames, minmod, 4 px)::

    python benchmarks/rule_cv.py --counts benchmarks/out/v15/rule_cv_counts.npz --splits 100 --trend-frames 8 \\
        --trend-estimator minmod --trend-smoothing 4 --json benchmarks/out/v15/rule_cv.json

Sixteenth round, the trend added only to scenes whose trend persisted (ρ ≥ 0.8), weights up to 2::

    python benchmarks/rule_cv.py --counts benchmarks/out/v16/rule_cv_counts.npz --splits 100 --trend-frames 8 \\
        --trend-estimator minmod --trend-smoothing 4 --trend-persistence-min 0.8 --extended \\
        --json benchmarks/out/v16/rule_cv.json
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

from nowcast.models.calibration import (
    SELECTION_RULES,  # after the path insert: run as a script too
)

log = logging.getLogger("rule_cv")

INPUT_FRAMES, LEADS = 4, 12
CHECKPOINT = ROOT / "models/zoo/swiss-south-tmu.pt"
GROWTH_SET = "swiss-south-growth-64.zarr"
META_TIE = 0.002


def score_counts(path: Path, sequences: int, trend_frames: int = 0, estimator: str = "slope",
                 smoothing_px: float = 0.0, persistence_min: float = -1.0, extended: bool = False) -> None:
    """Score every candidate on every validation sequence (``calibrate(per_sequence=)``) and save the counts.

    ``trend_frames`` > 4, ``estimator``, ``smoothing_px``: the trend read as
    :func:`nowcast.models.calibration.calibrate` (which scores them here) reads it with those settings
    (the validation sets of that history, motion and network from the newest
    4), so that the rules are judged for the shipped model's reading;
    ``persistence_min`` the scene gate (sixteenth round), ``extended`` the
    trend weights of ``EXTENDED_TREND_GRID``.
    """
    import torch

    from nowcast.models.calibration import (
        EXTENDED_TREND_GRID,
        TREND_GRID,
        calibrate,
        candidates,
    )
    from nowcast.models.zoo import load_forecaster
    from pipelines.validation import OTHER_DAY_SEQUENCES, calibration_sequences

    torch.set_num_threads(1)
    forecaster = load_forecaster(CHECKPOINT)
    _, seqs = calibration_sequences(forecaster.config, trend_frames, sequences, LEADS,
                                    other_day_sequences=OTHER_DAY_SEQUENCES)
    per: dict = {}
    keys = candidates(trend_grid=EXTENDED_TREND_GRID if extended else TREND_GRID)
    calibrate(forecaster, seqs, LEADS, keys, trend_frames=trend_frames, trend_estimator=estimator,
              trend_smoothing_px=smoothing_px, trend_persistence_min=persistence_min, per_sequence=per)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, keys=np.asarray(keys), sets=np.asarray(list(per)),
                        **{f"counts_{i}": per[s]["counts"] for i, s in enumerate(per)},
                        **{f"change_{i}": per[s]["change"] for i, s in enumerate(per)})


def summaries(data: dict, picks: dict[str, np.ndarray], extrapolation: int) -> dict[str, np.ndarray]:
    """Every candidate's rule summary (``worst``, ``csi5``, ``change``, ``growth``) on the picked sequences of each set.

    The same quantities as :func:`nowcast.models.calibration.summarise`, from
    per-sequence counts: CSI pooled over the picked sequences, a NaN lead has
    no difference, ``growth`` the growth twin's mean CSI@5 difference.
    """
    from nowcast.models.skill import csi_from_counts

    worst, heavy, change, growth = None, [], [], None
    for name, idx in picks.items():
        score = csi_from_counts(data["counts"][name][:, idx].sum(axis=1))  # (candidates, leads, thresholds)
        diff = score - score[extrapolation]
        low = np.nanmin(np.where(np.isfinite(diff), diff, np.inf).reshape(len(diff), -1), axis=1)
        worst = low if worst is None else np.minimum(worst, low)
        if np.isfinite(score[..., 1]).any():
            heavy.append(np.nanmean(score[..., 1], axis=1))
        change.append(data["change"][name][:, idx].mean(axis=1))
        if name == GROWTH_SET:
            growth = np.nanmean(diff[..., 1], axis=1)
    return {"worst": np.where(np.isfinite(worst), worst, 0.0), "csi5": np.mean(heavy, axis=0),
            "change": np.mean(change, axis=0), "growth": growth}


#: Rules compared: ``(tie_break, tie)`` of :func:`nowcast.models.calibration.choose_candidate`, the code that
#: chooses the shipped weights.
RULES: dict[str, tuple[str, float]] = {"13: ties to CSI@5": SELECTION_RULES["13"],
                                       "14: two-stage, least change": SELECTION_RULES["14"],
                                       "least change within the tie": SELECTION_RULES["15"],
                                       "best worst lead": SELECTION_RULES["best-worst-lead"]}


def choose(s: dict[str, np.ndarray], keys: np.ndarray, candidates: np.ndarray, rule: str) -> int:
    """The index of the candidate ``rule`` chooses from the array summaries ``s`` (:func:`summaries`)."""
    from nowcast.models.calibration import choose_candidate

    by_key = {tuple(float(w) for w in keys[k]): int(k) for k in candidates}
    table = {key: {"worst": float(s["worst"][k]), "csi5": float(s["csi5"][k]), "change": float(s["change"][k])}
             for key, k in by_key.items()}
    return by_key[choose_candidate(table, *RULES[rule])]


def cross_validate(data: dict, splits: int, seed: int = 0) -> dict[str, dict]:
    """Per rule: the held-out worst lead and growth gain of its choices over ``splits`` random halvings (both ways)."""
    from nowcast.models.calibration import EXTRAPOLATION

    keys = data["keys"]
    ext = int(np.flatnonzero((keys == np.asarray(EXTRAPOLATION)).all(axis=1))[0])
    candidates = np.asarray([k for k in range(len(keys)) if k != ext])
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {name: {"worst": [], "growth": [], "chosen": []} for name in RULES}
    for _ in range(int(splits)):
        halves: list[dict[str, np.ndarray]] = [{}, {}]
        for name, counts in data["counts"].items():
            order = rng.permutation(counts.shape[1])
            halves[0][name], halves[1][name] = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
        sums = [summaries(data, half, ext) for half in halves]
        for choose_on, judge_on in ((0, 1), (1, 0)):
            for name in RULES:
                k = choose(sums[choose_on], keys, candidates, name)
                out[name]["worst"].append(float(sums[judge_on]["worst"][k]))
                out[name]["growth"].append(float(sums[judge_on]["growth"][k]))
                out[name]["chosen"].append("/".join(f"{w:g}" for w in keys[k]))
    return out


def meta_choice(results: dict[str, dict]) -> str:
    """The meta-rule of the module docstring: the best mean held-out worst lead, ties within 0.002 to the growth gain."""
    mean = {name: float(np.mean(r["worst"])) for name, r in results.items()}
    best = max(mean.values())
    tied = [name for name in results if mean[name] >= best - META_TIE - 1e-12]
    return max(tied, key=lambda name: float(np.mean(results[name]["growth"])))


def load(path: Path) -> dict:
    """The saved per-sequence counts."""
    with np.load(path) as z:
        sets = [str(s) for s in z["sets"]]
        return {"keys": z["keys"], "counts": {s: z[f"counts_{i}"] for i, s in enumerate(sets)},
                "change": {s: z[f"change_{i}"] for i, s in enumerate(sets)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=Path, required=True, help="Per-sequence counts (made here if missing).")
    parser.add_argument("--sequences", type=int, default=64, help="First N sequences of each validation set.")
    parser.add_argument("--splits", type=int, default=100, help="Random halvings (each scored both ways).")
    parser.add_argument("--trend-frames", type=int, default=0, help="Read the trend over this many frames (0: 4).")
    parser.add_argument("--trend-estimator", default="slope", choices=["slope", "minmod"])
    parser.add_argument("--trend-smoothing", type=float, default=0.0, help="Smooth the rain (px) before the trend.")
    parser.add_argument("--trend-persistence-min", type=float, default=-1.0,
                        help="Add the trend only to scenes whose in-window persistence is at least this (-1: all).")
    parser.add_argument("--extended", action="store_true", help="Trend weights 1.5 and 2 too (sixteenth round).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.counts.exists():
        score_counts(args.counts, args.sequences, args.trend_frames, args.trend_estimator, args.trend_smoothing,
                     args.trend_persistence_min, args.extended)
    data = load(args.counts)
    results = cross_validate(data, args.splits)
    chosen = meta_choice(results)
    lines = ["| rule | held-out worst lead, mean (5 % / 95 %) | held-out growth gain ΔCSI@5, mean | distinct choices | |",
             "| --- | ---: | ---: | ---: | --- |"]
    for name, r in results.items():
        w = np.asarray(r["worst"])
        lines.append(f"| {name} | {w.mean():+.4f} ({np.percentile(w, 5):+.4f} / {np.percentile(w, 95):+.4f}) | "
                     f"{np.mean(r['growth']):+.3f} | {len(set(r['chosen']))} | {'**chosen**' if name == chosen else ''} |")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "chosen": chosen, "splits": args.splits}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
