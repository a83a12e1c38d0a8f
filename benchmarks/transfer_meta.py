"""The issue's transfer order (TMU > finetune > scratch) read over every radar study's per-seed scores.

Why (issue #8, thirty-sixth round): seven settings and eight TMU arms were
each judged on three seeds, test set by test set, with
:func:`benchmarks.radar_transfer.transfer_order` (a difference counts only
beyond the larger seed spread); every one missed the order. A verdict per
round cannot say whether the differences, small in each, point the same way
across rounds, nor what three seeds can resolve at all. This reads the
per-seed scores the studies wrote (``docs/img/radar_study*_results.json``,
and the thirteenth round's per-seed means), pairs the arms by seed and test
set within each setting (the same seed draws the same batches for every arm
of a setting), and reports, for mean CSI over 0-60 min at 1 and 5 mm/h:

* per comparison (one TMU arm, one finetune arm and the setting's scratch
  arm): the paired difference per test set, its seed mean and standard
  deviation, and whether ``transfer_order`` calls it ``>``;
* pooled over the *primary* comparisons (one per setting and source zoo:
  the paper's TMU form against the finetune arm the study named, or the one
  validation MSE chose): the mean difference, its standard error across
  them, and how many point each way;
* what three seeds resolve: the median margin ``transfer_order`` asks for,
  and how many seeds a paired one-sided t-test (5 %, power 0.8) would need to
  see the pooled difference within one setting.

It reads recorded numbers only; it runs no model and decides nothing about
the shipped forecaster.

Usage::

    python benchmarks/transfer_meta.py --json benchmarks/out/v36/transfer_meta.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("transfer_meta")

IMG = ROOT / "docs" / "img"
KEYS = ("csi@1", "csi@5")
HOUR = 12  # leads of 5 min: 0-60 min, as transfer_order reads them
STUDY_SETS = ("swiss-south-sameday", "swiss-south-test", "swiss-south-growth-64", "swiss-south-rigid-64")


@dataclass(frozen=True)
class Source:
    """One results file and the arms read from it (``name in file -> name here``)."""

    path: Path
    arms: Mapping[str, str]
    kind: str = "study"  # "study": radar_transfer.py's results; "means": per-seed 0-60 means (thirteenth round)
    section: str = "as_trained"  # for "means": the part of the file holding the arms


@dataclass(frozen=True)
class Setting:
    """One training setting: the same archive, recipe, iterations and seeds for every arm read from its sources."""

    name: str
    section: str  # where docs/benchmarks.md reports it
    sources: tuple[Source, ...]
    sets: tuple[str, ...] | None = None  # its test sets (None: the study's four, or those ``analyse`` is given)


@dataclass(frozen=True)
class Comparison:
    """TMU, finetune and scratch arms of one setting; ``primary``: the one comparison the pooled reading uses."""

    setting: str
    tmu: str
    finetune: str
    scratch: str = "scratch"
    primary: bool = False


def _src(name: str, *arms: str) -> Source:
    return Source(IMG / name, {a: a for a in arms})


#: The thirty-seventh round's test sets: the fresh draws 33 and 34 (``data/sim/fresh-s3{3,4}-f20/``).
FRESH_37 = tuple(f"swiss-south-{name}-s{seed}" for seed in (33, 34) for name in ("growth-64", "rigid-64", "sameday", "test"))
SPLIT_ARMS = ("scratch", "finetune-kbmx-growth", "finetune-korpo-convective", "tmu-split")
# The first, fourth and fifth rounds' studies wrote seed means and spreads only, no per-seed scores: they cannot be
# paired and are not read.
SETTINGS: tuple[Setting, ...] = (
    Setting("full archive, 2000 it", "Skill, tenth round",
            (_src("radar_study10_results.json", "scratch", "finetune-nexrad-kbmx", "tmu"),)),
    Setting("an eighth of the archive, 1000 it", "Skill, eleventh round",
            (_src("radar_study11_results.json", "scratch", "finetune-nexrad-kbmx", "tmu"),
             Source(IMG / "radar_study13_warm_lambda0.json", {"tmu-warm-lambda0": "tmu-warm-lambda0"}, kind="means"))),
    Setting("stratiform archive, 1000 it", "Skill, thirty-second round",
            (_src("radar_study32_results.json", "scratch", "finetune-nexrad-kbmx", "tmu"),)),
    Setting("stratiform archive without trend samples, 1000 it", "thirty-second round, part 2; thirty-fourth; thirty-fifth, part 3",
            (_src("radar_study34_results.json", "finetune-nexrad-kbmx", "tmu", *SPLIT_ARMS),
             _src("radar_study34_competitive_results.json", "tmu-split-competitive"),
             _src("radar_study35_top_results.json", "tmu-split-top"))),
    Setting("stratiform archive without trend samples, 2000 it", "thirty-fifth round, parts 2 and 4",
            (_src("radar_study35_top_it2000_results.json", *SPLIT_ARMS, "tmu-split-top"),)),
    # the arms with the trend gate, scored on the eight fresh sets of draws 33 and 34 (20 frames, newest 4 read);
    # seeds 0-2 from the thirty-seventh round, 3 and 4 added in the thirty-eighth (seeds 0-2 rescored identically)
    Setting("full archive with the trend gate, 1000 it", "Skill, thirty-seventh and thirty-eighth rounds",
            (_src("radar_study38_gate_results.json", "scratch", "finetune-nexrad-kbmx", "tmu"),), sets=FRESH_37),
)

_STRAT = "stratiform archive without trend samples"
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("full archive, 2000 it", "tmu", "finetune-nexrad-kbmx", primary=True),
    Comparison("an eighth of the archive, 1000 it", "tmu", "finetune-nexrad-kbmx", primary=True),
    Comparison("an eighth of the archive, 1000 it", "tmu-warm-lambda0", "finetune-nexrad-kbmx"),
    Comparison("stratiform archive, 1000 it", "tmu", "finetune-nexrad-kbmx", primary=True),
    Comparison(f"{_STRAT}, 1000 it", "tmu", "finetune-nexrad-kbmx", primary=True),
    # specialist sources: validation MSE chose the convective one (thirty-fourth round, part 2)
    Comparison(f"{_STRAT}, 1000 it", "tmu-split", "finetune-korpo-convective", primary=True),
    Comparison(f"{_STRAT}, 1000 it", "tmu-split", "finetune-kbmx-growth"),
    Comparison(f"{_STRAT}, 1000 it", "tmu-split-competitive", "finetune-korpo-convective"),
    Comparison(f"{_STRAT}, 1000 it", "tmu-split-top", "finetune-korpo-convective"),
    Comparison(f"{_STRAT}, 1000 it", "tmu-split-top", "finetune-kbmx-growth"),
    Comparison(f"{_STRAT}, 2000 it", "tmu-split", "finetune-korpo-convective", primary=True),
    Comparison(f"{_STRAT}, 2000 it", "tmu-split", "finetune-kbmx-growth"),
    Comparison(f"{_STRAT}, 2000 it", "tmu-split-top", "finetune-korpo-convective"),
    Comparison(f"{_STRAT}, 2000 it", "tmu-split-top", "finetune-kbmx-growth"),
    Comparison("full archive with the trend gate, 1000 it", "tmu", "finetune-nexrad-kbmx", primary=True),
)


def hour_means(per_seed: Sequence[Sequence[float]], hour: int = HOUR) -> np.ndarray:
    """Each seed's mean over the first ``hour`` leads, as :func:`benchmarks.radar_transfer.transfer_order` takes it."""
    return np.nanmean(np.asarray(per_seed, dtype=float)[:, :hour], axis=1)


def load_setting(setting: Setting, sets: Sequence[str] = STUDY_SETS) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{arm: {test set: {key: per-seed mean over 0-60 min}}}`` from every source of ``setting``.

    Raises
    ------
    ValueError
        A file lacks an arm or set it is read for, or two sources give one arm.
    """
    arms: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for source in setting.sources:
        data = json.loads(source.path.read_text())
        if source.kind == "means":
            data = data[source.section]
        for stored, arm in source.arms.items():
            if arm in arms:
                raise ValueError(f"{source.path.name}: arm {arm!r} of {setting.name!r} is read twice")
            arms[arm] = {}
            for test in sets:
                try:
                    entry = data[test][stored]
                    arms[arm][test] = {k: (np.asarray(entry[k], dtype=float) if source.kind == "means"
                                           else hour_means(entry["scores"][k]["per_seed"])) for k in KEYS}
                except KeyError as err:
                    raise ValueError(f"{source.path.name}: no {err.args[0]!r} for arm {stored!r} on {test}") from None
    return arms


def paired(a: Mapping[str, Mapping[str, np.ndarray]], b: Mapping[str, Mapping[str, np.ndarray]], key: str) -> dict:
    """Per test set: ``a - b`` seed by seed, its mean, standard deviation, and ``transfer_order``'s verdict.

    The verdict is the study's own (:func:`benchmarks.radar_transfer.pair_verdict`:
    seed means apart by more than the larger half range); the paired standard
    deviation is what a test across seeds would use.

    Raises
    ------
    ValueError
        The two arms were not scored on the same number of seeds.
    """
    from benchmarks.radar_transfer import pair_verdict

    out = {}
    for test in a:
        x, y = a[test][key], b[test][key]
        if x.shape != y.shape:
            raise ValueError(f"{test}: {x.size} seeds against {y.size}: cannot pair them")
        d = x - y
        verdict, margin = pair_verdict(x, y)
        out[test] = {"per_seed": d.tolist(), "mean": float(d.mean()),
                     "sd": float(d.std(ddof=1)) if d.size > 1 else float("nan"), "margin": margin, "verdict": verdict}
    return out


def seeds_needed(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8, most: int = 10000) -> int | None:
    """Seeds a paired one-sided t-test at ``alpha`` needs to see a true difference ``delta`` with ``power``.

    ``None`` where ``delta`` is not positive (no number of seeds shows a
    difference in that direction) or more than ``most`` are needed.
    """
    from scipy import stats

    if not delta > 0 or not sd > 0:
        return None
    for n in range(2, most + 1):
        t_crit = stats.t.ppf(1 - alpha, n - 1)
        if stats.nct.sf(t_crit, n - 1, delta / sd * math.sqrt(n)) >= power:
            return n
    return None


def pooled(differences: Sequence[float], confidence: float = 0.9) -> dict:
    """Mean of one difference per setting, its standard error across settings, the signs, and a confidence interval.

    The interval (``ci``, two-sided, Student's t on ``n - 1`` degrees of
    freedom) bounds how large a true difference the studies leave room for:
    where it is narrow around zero, the order is not a small effect that
    more seeds or settings would find, but an absent one.
    """
    d = np.asarray(differences, dtype=float)
    n = d.size
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * se) if se > 0 else float("nan")
    return {"n": n, "mean": float(d.mean()), "se": se,
            "t": float(d.mean() / se) if se > 0 else float("nan"),
            "p_one_sided": float(stats.t.sf(d.mean() / se, n - 1)) if se > 0 else float("nan"),
            "confidence": confidence, "ci": [float(d.mean()) - half, float(d.mean()) + half],
            "positive": int((d > 0).sum()), "negative": int((d < 0).sum())}


def analyse(settings: Sequence[Setting] = SETTINGS, comparisons: Sequence[Comparison] = COMPARISONS,
            sets: Sequence[str] = STUDY_SETS) -> dict:
    """Every comparison's paired differences, the pooled reading over the primary ones, and what 3 seeds resolve."""
    sets_of = {s.name: tuple(s.sets or sets) for s in settings}
    data = {s.name: load_setting(s, sets_of[s.name]) for s in settings}
    rows = []
    for c in comparisons:
        arms, row_sets = data[c.setting], sets_of[c.setting]
        row = {"setting": c.setting, "tmu": c.tmu, "finetune": c.finetune, "scratch": c.scratch, "primary": c.primary,
               "sets": list(row_sets)}
        for key in KEYS:
            for label, a, b in (("tmu-finetune", c.tmu, c.finetune), ("finetune-scratch", c.finetune, c.scratch),
                                ("tmu-scratch", c.tmu, c.scratch)):
                per_set = paired(arms[a], arms[b], key)
                seed_means = np.mean([per_set[t]["per_seed"] for t in row_sets], axis=0)  # each seed over the sets
                row[f"{label} {key}"] = {"sets": per_set, "over_sets": float(seed_means.mean()),
                                         "over_sets_sd": float(seed_means.std(ddof=1)),
                                         "above": sum(per_set[t]["verdict"] == ">" for t in row_sets),
                                         "below": sum(per_set[t]["verdict"] == "<" for t in row_sets)}
        rows.append(row)
    summary = {}
    primary = [r for r in rows if r["primary"]]
    for key in KEYS:
        for label in ("tmu-finetune", "finetune-scratch", "tmu-scratch"):
            name = f"{label} {key}"
            cells = [r[name]["sets"][t] for r in primary for t in r["sets"]]
            p = pooled([r[name]["over_sets"] for r in primary])
            sd = float(np.sqrt(np.mean([c["sd"] ** 2 for c in cells])))  # paired seed SD of one set's difference
            p.update({"cells_positive": sum(c["mean"] > 0 for c in cells), "cells": len(cells),
                      "cells_above": sum(c["verdict"] == ">" for c in cells),
                      "cells_below": sum(c["verdict"] == "<" for c in cells),
                      "median_margin": float(np.median([c["margin"] for c in cells])),
                      "paired_sd": sd, "seeds_needed": seeds_needed(abs(p["mean"]), sd)})
            summary[name] = p
    return {"sets": list(sets), "comparisons": rows, "pooled": summary,
            "settings": {s.name: {"section": s.section, "files": [src.path.name for src in s.sources],
                                  "sets": list(sets_of[s.name])} for s in settings}}


def markdown(result: dict) -> str:
    """Two tables: each comparison over its setting's sets, then the pooled reading of the primary ones."""
    lines = ["| setting | TMU | finetune | TMU − finetune, CSI@1 (sets >/<) | CSI@5 | finetune − scratch, CSI@1 | CSI@5 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in result["comparisons"]:
        cells = []
        for name in ("tmu-finetune csi@1", "tmu-finetune csi@5", "finetune-scratch csi@1", "finetune-scratch csi@5"):
            v = r[name]
            cells.append(f"{v['over_sets']:+.4f} ± {v['over_sets_sd']:.4f} ({v['above']}/{v['below']})")
        mark = "**" if r["primary"] else ""
        lines.append(f"| {mark}{r['setting']}{mark} | {r['tmu']} | {r['finetune']} | " + " | ".join(cells) + " |")
    confidence = next(iter(result["pooled"].values()))["confidence"]
    lines += ["", ("| pooled over the primary comparisons | comparisons | mean ± s.e. | "
                   f"{100 * confidence:g} % interval | comparisons + / − | "
                   "one-sided p (> 0) | cells + (above / below the spread) | median margin | paired seed s.d. | "
                   "seeds to see a difference this size |"),
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, p in result["pooled"].items():
        need = p["seeds_needed"] if p["seeds_needed"] is not None else "–"
        low, high = p["ci"]
        lines.append(f"| {name} | {p['n']} | {p['mean']:+.4f} ± {p['se']:.4f} | {low:+.4f} to {high:+.4f} | "
                     f"{p['positive']} / {p['negative']} | "
                     f"{p['p_one_sided']:.3f} | {p['cells_positive']}/{p['cells']} ({p['cells_above']} / "
                     f"{p['cells_below']}) | {p['median_margin']:.4f} | {p['paired_sd']:.4f} | {need} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="Write every paired difference and the pooled reading here.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = analyse()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        log.info("wrote %s", args.json)
    sys.stdout.write(markdown(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
