"""How steady each arm of a radar study is: its worst lead against a baseline, and its seed spread.

Why (issue #8, thirty-seventh and thirty-eighth rounds): the transfer order
reads each arm's *mean* over the hour; what a forecaster is hurt by is the one
lead where a forecast falls below extrapolation, and a recipe whose seeds
disagree is one a user cannot rely on retraining. The thirty-seventh round read
both by hand from ``radar_transfer.py``'s results; this reads them from the
same file, so the numbers carry their command:

* **worst lead**: the lowest, over the first hour's leads and over CSI at 1 and
  5 mm/h, of the arm's seed-mean score minus the baseline's (negative: the arm
  is below the baseline at that lead);
* **seed spread**: half the range over seeds of each seed's mean over the hour,
  per score (the spread :func:`benchmarks.radar_transfer.transfer_order` uses).

It reads recorded numbers only; it runs no model.

Usage::

    python benchmarks/study_steadiness.py docs/img/radar_study38_gate_results.json \\
        --arms scratch finetune-nexrad-kbmx tmu --baseline extrapolation
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the hour, the scores and each seed's mean over it, as the transfer order reads them
from benchmarks.transfer_meta import HOUR, KEYS, hour_means


def worst_lead(arm: Mapping, baseline: Mapping, keys: Sequence[str] = KEYS, hour: int = HOUR) -> dict:
    """The lowest seed-mean difference ``arm - baseline`` over the first ``hour`` leads, per key and overall.

    Both sides are the seed means per lead that ``radar_transfer.summarise``
    stored (``mean``). Returns ``{key: (difference, lead index), ...,
    "worst": difference}``; the lead index counts from 0 (the first lead, +5
    min). Leads where either score is NaN (no rain to score) are skipped, as
    the study's means skip them.
    """
    out: dict = {}
    for key in keys:
        a = np.asarray(arm["scores"][key]["mean"], dtype=float)[:hour]
        b = np.asarray(baseline["scores"][key]["mean"], dtype=float)[:hour]
        d = np.where(np.isfinite(a) & np.isfinite(b), a - b, np.inf)
        lead = int(np.argmin(d))
        out[key] = (float(d[lead]), lead)
    out["worst"] = min(out[k][0] for k in keys)
    return out


def seed_spread(arm: Mapping, key: str, hour: int = HOUR) -> float:
    """Half the range over seeds of each seed's mean ``key`` over the first ``hour`` leads."""
    means = hour_means(arm["scores"][key]["per_seed"], hour)
    return float(0.5 * (means.max() - means.min()))


def steadiness(results: Mapping, arms: Sequence[str], baseline: str = "extrapolation") -> dict:
    """Per test set and arm: the worst lead against ``baseline`` and the seed spread at each key; the steadiest arm.

    The steadiest arm of a set is the one with the highest worst lead (ties
    go to the first named).

    Raises
    ------
    ValueError
        A set lacks an arm or the baseline.
    """
    out = {}
    for test, methods in results.items():
        missing = [m for m in (*arms, baseline) if m not in methods]
        if missing:
            raise ValueError(f"{test}: no {', '.join(missing)} in the results")
        row = {arm: {"worst_lead": worst_lead(methods[arm], methods[baseline]),
                     "spread": {k: seed_spread(methods[arm], k) for k in KEYS},
                     "n_seeds": len(methods[arm]["scores"][KEYS[0]]["per_seed"])} for arm in arms}
        row["steadiest"] = max(arms, key=lambda a: row[a]["worst_lead"]["worst"])
        out[test] = row
    return out


def markdown(table: Mapping, arms: Sequence[str]) -> str:
    """One row per test set: each arm's worst lead (CSI@1 / CSI@5, with its lead in minutes), its seed spread at both."""
    head = " | ".join(f"{a}: worst lead @1 / @5 (min) | spread @1 / @5" for a in arms)
    lines = [f"| set | {head} | steadiest |", "| --- |" + " ---: | ---: |" * len(arms) + " --- |"]
    for test, row in table.items():
        cells = []
        for a in arms:
            w, s = row[a]["worst_lead"], row[a]["spread"]
            cells.append(f"{w['csi@1'][0]:+.4f} ({5 * (w['csi@1'][1] + 1)}) / {w['csi@5'][0]:+.4f} ({5 * (w['csi@5'][1] + 1)})")
            cells.append(f"{s['csi@1']:.4f} / {s['csi@5']:.4f}")
        lines.append(f"| {test} | " + " | ".join(cells) + f" | {row['steadiest']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="radar_transfer.py's results.json")
    parser.add_argument("--arms", nargs="+", required=True)
    parser.add_argument("--baseline", default="extrapolation")
    parser.add_argument("--json", type=Path, help="Write the table here too.")
    args = parser.parse_args(argv)
    try:
        table = steadiness(json.loads(args.results.read_text()), args.arms, args.baseline)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"study_steadiness: {args.results}: {err}\n")
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=1))
    sys.stdout.write(markdown(table, args.arms) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
