"""Can a trend tell a growth that goes on from one that ends? Estimators of the window trend (validation data only).

Rule 15 (:mod:`nowcast.models.calibration`) applies the window trend only as
far as it costs nothing on the simulated days, whose cells grow and then
decay: a quarter of its growth, 15 min. The growth the issue asks for (above
the Lagrangian-trend baseline) needs a trend applied at full weight, which
only a trend that tells a lasting growth from an ending one can afford. This
scores, on the 20-frame validation-kind sets (``trend_window.py``), the trend
alone (the network weighed by 0, as the shipped model) at every trend weight,
form and lifetime of the calibration's grid, with the rate read by:

* ``8 frames``: the shipped estimator (:func:`nowcast.models.calibration.window_trend`
  over the newest 8 moved frames);
* ``4 frames``: the same over the newest 4;
* ``minmod``: the smaller of the slopes read over the older and the newer 4
  of the 8 frames where they agree in sign, 0 where they do not (the slope
  limiter of numerical schemes: a growth both halves show, at the rate both
  support);
* ``agreeing``: the 8-frame rate where the two halves agree in sign, else 0;
* ``smoothed σ``, ``minmod smoothed σ`` (added after the first four were
  read, with their own hypothesis): every moved frame's rain smoothed within
  the rain (a Gaussian of σ pixels, normalised over the wet pixels, dry stays
  dry) before the slopes are read. Why: on the rigid field, where nothing
  grows, the full trend lost 0.006-0.013 at 5 mm/h: an older frame moved to
  the analysis time is misaligned by the motion's error and smoothed by the
  interpolation, so its core is lower than the analysis frame's and reads as
  growth; smoothing every frame at a scale above those errors reads the
  growth of the rain, not of its misplaced peaks.

Motion from the newest 4 frames; extrapolation (newest 4) the reference.
Hypothesis (docs/benchmarks.md, "Skill, fifteenth round", written before it
ran): minmod at full weight, lifetime 15 or 30 min, loses at most 0.005 at its
worst lead while gaining at least +0.10 CSI@5 on the growth twin.

Usage::

    python benchmarks/trend_consistency.py --json benchmarks/out/v15/trend_consistency.json \\
        --estimators "8 frames" "4 frames" minmod agreeing   # 1 min, one core
    python benchmarks/trend_consistency.py --json benchmarks/out/v15/trend_smoothed.json \\
        --estimators "8 frames" "smoothed 1" "smoothed 2" "smoothed 4" "minmod smoothed 1" "minmod smoothed 2" \\
        "minmod smoothed 4"
    python benchmarks/trend_consistency.py --json benchmarks/out/v16/trend_gates.json --extended --floor -0.0036 \\
        --estimators "minmod smoothed 4" "minmod smoothed 4, persisting 0.2" "minmod smoothed 4, persisting 0.3" \\
        "minmod smoothed 4, persisting 0.4" "minmod smoothed 4, persisting 0.5" "minmod smoothed 4, persisting 0.6" \\
        "minmod smoothed 4, persisting 0.7" "minmod smoothed 4, persisting 0.8"   # 3 min, one core
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

log = logging.getLogger("trend_consistency")

HISTORY, NETWORK_FRAMES, LEADS = 8, 4, 12


def estimators(forecaster=None):
    """``name -> (moved frames (8, h, w), R² power) -> rate (h, w)``: :func:`nowcast.models.calibration.window_trend`'s.

    With ``forecaster``: also the gated trend only where its network's own
    change, averaged over the hour, grows (:func:`network_agrees`).
    """
    from nowcast.models.calibration import NO_GATE, window_trend

    def agreeing(x: np.ndarray, power: float) -> np.ndarray:
        old, new = window_trend(x[:-NETWORK_FRAMES], power), window_trend(x[-NETWORK_FRAMES:], power)
        return np.where(np.sign(old) == np.sign(new), window_trend(x, power), 0.0)

    def read(estimator: str, sigma: float = 0.0):
        return lambda x, power: window_trend(x, power, estimator, sigma)

    def gated(persistence_min: float, align: bool = False):
        return lambda x, power: window_trend(x, power, "minmod", 4.0, persistence_min, align)

    return {"8 frames": window_trend,
            "4 frames": lambda x, power: window_trend(x[-NETWORK_FRAMES:], power),
            "minmod": read("minmod"),
            "agreeing": agreeing,
            **{f"smoothed {s:g}": read("slope", s) for s in SIGMAS},
            **{f"minmod smoothed {s:g}": read("minmod", s) for s in SIGMAS},
            **{f"minmod smoothed 4, persisting {t:g}": gated(t) for t in GATES},
            **({f"minmod smoothed 4, persisting {t:g}, network agrees": network_agrees(gated(t), forecaster)
                for t in GATES} if forecaster is not None else {}),
            "minmod smoothed 4, aligned": gated(NO_GATE, align=True),
            **{f"minmod smoothed 4, persisting {t:g}, aligned": gated(t, align=True) for t in GATES},
            **({f"minmod smoothed 4, persisting {t:g}, network agrees, aligned":
                network_agrees(gated(t, align=True), forecaster) for t in GATES} if forecaster is not None else {})}


def network_agrees(rate, forecaster):
    """``rate`` kept only where the forecaster's network, on the newest 4 moved frames, grows over the hour (mean).

    Why (sixteenth round, step 5): a cell that grew steadily through the
    window and is about to decay reads as a persisting growth; the network was
    trained on days whose cells are born, grow and die, and its own change
    carried information about the days' next hour that no trend did.
    """
    from nowcast.models.calibration import network_agreement

    def read(x: np.ndarray, power: float) -> np.ndarray:
        r = rate(x, power)
        if not r.any():
            return r
        return network_agreement(r, forecaster._raw_changes(x[-NETWORK_FRAMES:], LEADS))
    return read


#: Smoothing scales (pixels, 2 km) of the fields before the slopes are read.
SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
#: Gates on the scene's in-window persistence (sixteenth round): the trend only where
#: :func:`nowcast.models.calibration.scene_persistence` is at least this. 0.2-0.6 were the plan's;
#: 0.7 and 0.8 were added after ``trend_regime.py`` put the separating thresholds at 0.68-0.88.
GATES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def long_validation_data(sequences: int, wide: bool = False) -> tuple:
    """The shipped forecaster, the 20-frame validation sets (label -> store) and their first ``sequences``.

    ``wide``: the sixteenth round's wide sets (``data/sim/val-wide``). Shared
    with ``trend_regime.py`` and ``trend_persistence.py``.
    """
    from benchmarks.trend_window import long_validation_sets
    from nowcast.models.zoo import load_forecaster
    from pipelines.validation import read_validation

    forecaster = load_forecaster(ROOT / "models/zoo/swiss-south-tmu.pt")
    stores = (long_validation_sets(ROOT / "data/sim/val-wide", wide=True) if wide
              else long_validation_sets(ROOT / "data/sim/val-long"))
    return forecaster, stores, read_validation(list(stores.values()), sequences, HISTORY + LEADS)


def validation_data(sequences: int, wide: bool = False) -> tuple:
    """:func:`long_validation_data` and extrapolation's CSI on those sets (from the newest 4 frames).

    Shared with ``benchmarks/network_gate.py``: both score candidates on
    these sets against extrapolation.
    """
    from nowcast.models.calibration import extrapolation_references

    forecaster, stores, seqs = long_validation_data(sequences, wide)
    return forecaster, stores, seqs, extrapolation_references(seqs, NETWORK_FRAMES, LEADS, HISTORY)


def summary_rows(grid: dict, keys: list, references: dict, growth_set: str, label=lambda key: "/".join(
        f"{v:g}" for v in key), with_sets: bool = True) -> dict[str, dict]:
    """Per candidate (named by ``label``): what the rule reads (:func:`~nowcast.models.calibration.summarise`) and the growth twin's gain."""
    from nowcast.models.calibration import summarise

    rows = {}
    for key in keys:
        heavy = np.asarray(grid[key][growth_set]["csi@5"]) - np.asarray(references[growth_set]["csi@5"])
        rows[label(key)] = {**summarise(grid[key], references), "growth_gain": float(np.nanmean(heavy)),
                            **({"by_set": grid[key]} if with_sets else {})}
    return rows


#: An estimator's name with this and a ceiling after it (``..., ceiling scene``): its trend bounded by that
#: ceiling (:attr:`nowcast.models.calibration.ChangeWeights.trend_ceiling`, seventeenth round).
CEILING_SUFFIX = ", ceiling "


def split_ceiling(name: str) -> tuple[str, str]:
    """``("minmod smoothed 4", "scene")`` of ``"minmod smoothed 4, ceiling scene"``; ``(name, "none")`` without one."""
    base, found, ceiling = name.rpartition(CEILING_SUFFIX)
    return (base, ceiling) if found else (name, "none")


def ceiling_choice(results: dict, floor: float, tie: float = 0.005, gate: float = 0.8) -> dict:
    """Step 2's rule of the seventeenth round, as a choice ``trend_history.py score`` reads.

    Over the aligned estimators gated at ``gate`` with a ceiling, the
    candidate with the largest growth gain at a worst lead of at least
    ``floor``; a ``local`` ceiling is chosen over ``scene`` (the looser bound)
    only if its gain is larger by more than ``tie``.
    """
    best: dict[str, tuple[str, dict]] = {}
    for name, rows in results["estimators"].items():
        base, ceiling = split_ceiling(name)
        if ceiling == "none" or base != f"minmod smoothed 4, persisting {gate:g}, aligned":
            continue
        safe = {k: r for k, r in rows.items() if r["worst"] >= floor - 1e-9}
        if safe:
            key = max(safe, key=lambda k: safe[k]["growth_gain"])
            best[ceiling] = (key, safe[key])
    if not best:
        raise ValueError(f"no aligned gated candidate with a ceiling has a worst lead >= {floor:g}")
    ceiling = max(best, key=lambda c: best[c][1]["growth_gain"] - (tie + 1e-12 if c == "local" else 0.0))
    key, row = best[ceiling]
    return {"rule": "step 2 of the seventeenth round", "history": HISTORY,
            "chosen": [float(v) for v in key.split("/")], "trend_estimator": "minmod", "trend_smoothing_px": 4.0,
            "trend_persistence_min": gate, "trend_align": True, "trend_ceiling": ceiling,
            "validation_worst": row["worst"], "validation_growth_gain": row["growth_gain"]}


def lagrangian_trend_row(seqs: dict, references: dict, growth_set: str) -> dict:
    """The Lagrangian-trend baseline (from the newest 4 frames) as a row of the table: what a trend must beat."""
    from nowcast.baselines import lagrangian_trend
    from nowcast.models.calibration import THRESHOLDS, newest_frames, summarise
    from nowcast.models.skill import score_method

    by_set = {}
    for name, s in seqs.items():
        scores = score_method(newest_frames(lagrangian_trend, NETWORK_FRAMES), s[:, : HISTORY + LEADS], HISTORY, LEADS)
        by_set[name] = {f"csi@{t:g}": scores[f"csi@{t:g}"] for t in THRESHOLDS}
    heavy = np.asarray(by_set[growth_set]["csi@5"]) - np.asarray(references[growth_set]["csi@5"])
    return {**summarise(by_set, references), "growth_gain": float(np.nanmean(heavy)), "by_set": by_set}


def gated_reading(name: str) -> tuple[str, float, float, float, float, float] | None:
    """``("slope", 8.0, 0.6, 5.0, 0.004, 0.85)`` of ``"slope smoothed 8, persisting 0.6, aligned, evidence 5,
    growth 0.004, ramp 0.85"``.

    ``None`` for any other name. Without ``, evidence N`` the gate's floor of
    evidence is 0 (50 pixels); without ``, growth G`` the scene's growth floor
    is 0 (twenty-fourth round: any growth); without ``, ramp F`` the gate is a
    step (-1, :data:`nowcast.models.calibration.NO_GATE`; twenty-eighth round:
    the trend's weight rises from 0 at the gate to the whole at ``F``).
    """
    import re

    from nowcast.models.calibration import NO_GATE

    found = re.fullmatch(r"(minmod|slope) smoothed ([0-9.]+), persisting ([0-9.]+), aligned"
                         r"(, evidence ([0-9.]+))?(, growth ([0-9.]+))?(, ramp ([0-9.]+))?", name)
    if found is None:
        return None
    return (found.group(1), float(found.group(2)), float(found.group(3)), float(found.group(5) or 0.0),
            float(found.group(7) or 0.0), float(found.group(9)) if found.group(9) else NO_GATE)


def aligned_gated_rate(estimator: str, smoothing: float, gate: float, samples: float = 0.0, growth: float = 0.0,
                       full: float = -1.0):
    """``(moved frames, R² power) -> rate``: the trend read with the rain smoothed ``smoothing`` px, aligned, gated.

    ``samples``: the gate's floor of evidence (twentieth round); ``growth``:
    the scene's growth floor (:func:`nowcast.models.calibration.scene_growth`,
    twenty-fourth round); ``full``: the persistence at which the ramp from the
    gate reaches the whole trend (twenty-eighth round; -1: a step at the gate).
    """
    from nowcast.models.calibration import window_trend

    return lambda x, power: window_trend(x, power, estimator, smoothing, gate, True, persistence_samples=samples,
                                         growth_min=growth, persistence_full=full)


def bounded_candidates(results: dict, floor: float):
    """``((estimator, smoothing, gate, samples, growth, full), key, row)`` of every aligned gated candidate with the
    scene ceiling at a worst lead of at least ``floor`` (the eighteenth to twenty-eighth rounds' candidates)."""
    for name, rows in results["estimators"].items():
        base, ceiling = split_ceiling(name)
        reading = gated_reading(base)
        if reading is None or ceiling != "scene":
            continue
        for key, row in rows.items():
            if row["worst"] >= floor - 1e-9:
                yield reading, key, row


def candidate_choice(reading: tuple, key: str, row: dict, rule: str) -> dict:
    """One :func:`bounded_candidates` entry as a choice ``trend_history.py score`` reads (``rule``: who chose it)."""
    estimator, smoothing, gate, samples, growth, full = reading
    return {"rule": rule, "history": HISTORY, "chosen": [float(v) for v in key.split("/")],
            "trend_estimator": estimator, "trend_smoothing_px": smoothing,
            "trend_persistence_min": gate, "trend_align": True, "trend_ceiling": "scene",
            "trend_persistence_samples": samples, "trend_growth_min": growth, "trend_persistence_full": full,
            "validation_worst": row["worst"], "validation_growth_gain": row["growth_gain"]}


def tie_break(choices: list[dict], tie: float = 0.005) -> dict | None:
    """Of ``choices``, the best: within ``tie`` of the largest growth gain, the first in the ties' order.

    The ties' order: the stricter gate, then the higher growth floor
    (twenty-fourth round), then the later ramp end (twenty-eighth round: the
    smoother), then the minmod, then the larger smoothing (the nineteenth
    round's), then the smaller weight, then the shorter lifetime. One order
    for :func:`bounded_choice` and ``stress_rule.py``; ``None`` for no choices.
    """
    if not choices:
        return None
    top = max(c["validation_growth_gain"] for c in choices)
    tied = [c for c in choices if c["validation_growth_gain"] >= top - tie - 1e-12]
    return min(tied, key=lambda c: (-c["trend_persistence_min"], -c.get("trend_growth_min", 0.0),
                                    -c.get("trend_persistence_full", -1.0), c["trend_estimator"] != "minmod",
                                    -c["trend_smoothing_px"], c["chosen"][2], c["chosen"][4]))


def bounded_choice(results: dict, floor: float, tie: float = 0.005) -> dict:
    """Step 2's rule of the eighteenth round, as a choice ``trend_history.py score`` reads.

    Over the aligned gated estimators with the scene ceiling (minmod or
    slope, any smoothing, any gate), the candidate with the largest growth
    gain at a worst lead of at least ``floor``; candidates within ``tie`` of
    it are tied, and the tie goes as :func:`tie_break` orders them.
    """
    choice = tie_break([candidate_choice(reading, key, row, "step 2 of the eighteenth round")
                        for reading, key, row in bounded_candidates(results, floor)], tie)
    if choice is None:
        raise ValueError(f"no aligned gated candidate with the scene ceiling has a worst lead >= {floor:g}")
    return choice


def run(sequences: int, only: list[str] | None = None, extended: bool = False, wide: bool = False,
        trend_weights: list[float] | None = None, trend_forms: list[str] | None = None,
        trend_lifetimes: list[float] | None = None, baseline: bool = False) -> dict:
    """Every estimator's trend-only candidates scored on the validation sets, and their summaries.

    ``trend_weights``, ``trend_forms``, ``trend_lifetimes``: the candidates'
    grid instead of the calibration's (eighteenth round); ``baseline``: also
    the Lagrangian-trend baseline's row (``lagrangian_trend``).
    """
    from nowcast.models.calibration import (
        EXTENDED_TREND_GRID,
        EXTRAPOLATION,
        TREND_CEILINGS,
        TREND_FORMS,
        TREND_GRID,
        TREND_LIFETIMES,
        candidates,
        newest_frames,
        score_grid,
    )

    forecaster, stores, seqs, references = validation_data(sequences, wide)
    weights = trend_weights or (EXTENDED_TREND_GRID if extended else TREND_GRID)
    keys = [k for k in candidates((0.0,), weights, trend_forms or TREND_FORMS, trend_lifetimes or TREND_LIFETIMES)
            if k != EXTRAPOLATION]
    out: dict = {"validation": [p.name for p in stores.values()], "references": references, "estimators": {}}
    if baseline:
        out["lagrangian_trend"] = lagrangian_trend_row(seqs, references, stores["growth"].name)
        log.info("Lagrangian trend: worst lead %+.4f, growth twin %+.3f", out["lagrangian_trend"]["worst"],
                 out["lagrangian_trend"]["growth_gain"])
    rates = estimators(forecaster)
    for name in only or list(rates):
        base, ceiling = split_ceiling(name)
        if base not in rates and gated_reading(base) is not None:  # any smoothing and gate (nineteenth round)
            rates[base] = aligned_gated_rate(*gated_reading(base))
        if base not in rates:
            raise ValueError(f"unknown estimator {name!r}: one of {list(rates)}, optionally with "
                             f"{', '.join(repr(CEILING_SUFFIX + c) for c in TREND_CEILINGS[1:])}")
        grid = score_grid(newest_frames(forecaster._raw_changes, NETWORK_FRAMES), forecaster.normaliser, seqs,
                          HISTORY, LEADS, forecaster.config.motion.method, keys, motion_frames=NETWORK_FRAMES,
                          trend=rates[base], ceiling=ceiling)
        out["estimators"][name] = summary_rows(grid, keys, references, stores["growth"].name)
        log.info("%s: %d candidates scored", name, len(keys))
    return out


def table(results: dict, floor: float = -0.005) -> str:
    """Per estimator: the full-weight trends, and the largest growth gain at a worst lead of at least ``floor``."""
    lines = ["| estimator | candidate (trend weight, form, lifetime) | worst lead | growth twin ΔCSI@5 0-60 |",
             "| --- | --- | ---: | ---: |"]
    for name, rows in results["estimators"].items():
        def label(key: str) -> str:
            _, _, trend, decay, life = (float(v) for v in key.split("/"))
            return f"{trend:g}, {'signed' if decay else 'growth'}, {5 * life:g} min"

        shown = [k for k in rows if k.split("/")[2] == "1" and k.split("/")[4] in ("3", "6")]
        safe = [k for k in rows if rows[k]["worst"] >= floor - 1e-9]
        if safe:
            shown.append(max(safe, key=lambda k: rows[k]["growth_gain"]))
        for key in dict.fromkeys(shown):
            mark = f" (largest growth at worst ≥ {floor:g})" if safe and key == shown[-1] else ""
            lines.append(f"| {name} | {label(key)}{mark} | {rows[key]['worst']:+.4f} | {rows[key]['growth_gain']:+.3f} |")
    if "lagrangian_trend" in results:
        row = results["lagrangian_trend"]
        lines.append(f"| Lagrangian-trend baseline | (6 steps, weight 1) | {row['worst']:+.4f} | {row['growth_gain']:+.3f} |")
    return "\n".join(lines)


def gated_choice(results: dict, floor: float, tie: float = 0.005, network_agrees: bool = False) -> dict:
    """Step 2's rule (sixteenth round) as a choice ``trend_history.py score`` reads.

    Over the gated estimators, the candidate with the largest growth gain at a
    worst lead of at least ``floor``; estimators whose best is within ``tie``
    of the largest are tied and the tie goes to the larger gate (the stricter).
    ``network_agrees``: over the network-agreeing gated estimators instead
    (step 5).
    """
    import re

    best: dict[float, tuple[str, dict]] = {}
    for name, rows in results["estimators"].items():
        gate = re.fullmatch(r"minmod smoothed 4, persisting ([0-9.]+)" + (", network agrees" if network_agrees else ""),
                            name)
        if gate is None:  # the gated estimators alone (not the shipped reading, not the network-agreeing ones)
            continue
        safe = {k: r for k, r in rows.items() if r["worst"] >= floor - 1e-9}
        if safe:
            key = max(safe, key=lambda k: safe[k]["growth_gain"])
            best[float(gate.group(1))] = (key, safe[key])
    if not best:
        raise ValueError(f"no gated candidate has a worst lead >= {floor:g}")
    top = max(r["growth_gain"] for _, r in best.values())
    gate = max(g for g, (_, r) in best.items() if r["growth_gain"] >= top - tie - 1e-12)
    key, row = best[gate]
    return {"rule": f"step {5 if network_agrees else 2} of the sixteenth round", "history": HISTORY,
            "chosen": [float(v) for v in key.split("/")], "trend_estimator": "minmod", "trend_smoothing_px": 4.0,
            "trend_persistence_min": gate, "trend_network_agrees": bool(network_agrees),
            "validation_worst": row["worst"], "validation_growth_gain": row["growth_gain"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=64, help="First N sequences of each validation set.")
    parser.add_argument("--estimators", nargs="+", default=None, help="Only these estimators (default: all).")
    parser.add_argument("--wide", action="store_true",
                        help="The wide validation sets (data/sim/val-wide: 128 and 256 windows of the days).")
    parser.add_argument("--extended", action="store_true",
                        help="The trend weights of calibration.EXTENDED_TREND_GRID (1.5 and 2 too; sixteenth round).")
    parser.add_argument("--floor", type=float, default=-0.005,
                        help="The table's last row per estimator: the largest growth gain at a worst lead >= this.")
    parser.add_argument("--choice-json", type=Path,
                        help="Also write step 2's choice among the gated estimators (gated_choice) here.")
    parser.add_argument("--choice-network-agrees", action="store_true",
                        help="The choice among the network-agreeing gated estimators (step 5) instead.")
    parser.add_argument("--choice-ceiling", action="store_true",
                        help="The choice among the aligned gated estimators with a ceiling (seventeenth round) instead.")
    parser.add_argument("--choice-bounded", action="store_true",
                        help="The choice among the aligned gated estimators with the scene ceiling, any gate and "
                             "estimator (eighteenth round) instead.")
    parser.add_argument("--trend-weights", type=float, nargs="+", help="The candidates' trend weights.")
    parser.add_argument("--trend-forms", nargs="+", choices=["signed", "growth"], help="The candidates' forms.")
    parser.add_argument("--trend-lifetimes", type=float, nargs="+", help="The candidates' lifetimes (steps).")
    parser.add_argument("--baseline", action="store_true", help="Also score the Lagrangian-trend baseline.")
    parser.add_argument("--from-json", type=Path,
                        help="Read the scores a previous run wrote here instead of scoring (table and choice only).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.from_json is None and args.json is None:
        parser.error("--json is required unless --from-json is given")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = run(args.sequences, args.estimators, args.extended, args.wide, args.trend_weights, args.trend_forms,
                      args.trend_lifetimes, args.baseline)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    sys.stdout.write(table(results, args.floor) + "\n")
    if args.choice_json:
        choice = (bounded_choice(results, args.floor) if args.choice_bounded
                  else ceiling_choice(results, args.floor) if args.choice_ceiling
                  else gated_choice(results, args.floor, network_agrees=args.choice_network_agrees))
        args.choice_json.write_text(json.dumps(choice, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
