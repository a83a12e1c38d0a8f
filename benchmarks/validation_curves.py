"""Validation MSE against iteration for the study's arms, read from their training logs.

Why: a mean over the test sets at the end of training says which arm ends
best, not whether one of them learns faster or starts to overfit. The
trainer logs the held-out validation MSE (dBR, the validation store) every
``val_every`` iterations; this script collects those lines per run, averages
the arms over seeds and plots them, so a study can show *when* transfer
helps, if it does.

Usage::

    python benchmarks/validation_curves.py benchmarks/out/short24/queue*.log --relative-to swiss-south-scratch \\
        --json benchmarks/out/short24/val_curves.json --plot docs/img/radar_study11_val.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: benchmarks.radar_transfer is importable
    sys.path.insert(0, str(ROOT))

#: ``radar_transfer.ensure_trained``'s line naming the run whose lines follow.
RUN = re.compile(r"training (?P<model>\S+) \(seed (?P<seed>\d+), \d+ iterations\) -> (?P<path>\S+)")
#: ``nowcast.training``'s progress line with a validation score.
VAL = re.compile(r"nowcast\.training: (?P<model>\S+) it (?P<it>\d+)/\d+ loss \S+(?: \(distill \S+\))? val_mse (?P<val>\S+),")


def read_logs(paths: list[Path]) -> dict[tuple[str, int], dict[int, float]]:
    """``{(model, seed): {iteration: val_mse}}`` from interleaved or sequential training logs.

    A log file may hold several runs one after the other (a queue); each
    validation line belongs to the last run announced for its model name in
    that file. A resumed run repeats iterations; the later value wins.
    """
    curves: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for path in paths:
        current: dict[str, int] = {}
        for line in path.read_text().splitlines():
            if m := RUN.search(line):
                current[m["model"]] = int(m["seed"])
            elif (m := VAL.search(line)) and m["model"] in current:
                curves[(m["model"], current[m["model"]])][int(m["it"])] = float(m["val"])
    return dict(curves)


def relative_to(curves: dict[tuple[str, int], dict[int, float]], reference: str) -> dict[tuple[str, int], dict[int, float]]:
    """Each run's validation MSE in % of ``reference``'s at the same seed and iteration (the reference drops out).

    Why paired: the validation batches are drawn from the run's seed, so
    seeds differ in what they are scored on by far more than arms differ;
    arms at one seed are scored on the same batches.
    """
    out = {}
    for (model, seed), curve in curves.items():
        ref = curves.get((reference, seed))
        if model == reference or ref is None:
            continue
        out[(model, seed)] = {i: 100.0 * (v / ref[i] - 1.0) for i, v in curve.items() if i in ref}
    if not out:
        raise SystemExit(f"no run shares a seed with {reference}")
    return out


def by_model(curves: dict[tuple[str, int], dict[int, float]]) -> dict[str, dict]:
    """Per model: the iterations every seed reached, mean and half-range of the validation MSE over seeds.

    The statistics are the study's own (:func:`benchmarks.radar_transfer.summarise`), so a band here
    means what it means in the study's tables.
    """
    from benchmarks.radar_transfer import summarise

    out: dict[str, dict] = {}
    for model in sorted({m for m, _ in curves}):
        runs = {s: c for (m, s), c in curves.items() if m == model}
        its = sorted(set.intersection(*(set(c) for c in runs.values())))
        stats = summarise([{"val_mse": [runs[s][i] for i in its]} for s in sorted(runs)])["val_mse"]
        out[model] = {"iterations": its, "seeds": sorted(runs), "mean": stats["mean"], "spread": stats["spread"],
                      "per_seed": stats["per_seed"]}
    return out


def plot(summary: dict[str, dict], path: Path, title: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for model, s in summary.items():
        its, m, e = np.array(s["iterations"]), np.array(s["mean"]), np.array(s["spread"])
        ax.plot(its, m, "o-", ms=3, label=f"{model} ({len(s['seeds'])} seeds)")
        ax.fill_between(its, m - e, m + e, alpha=0.15)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--title", default="validation MSE over seeds (mean, band: half range)")
    parser.add_argument("--relative-to", default=None, metavar="MODEL",
                        help="Show each run in %% of this model's validation MSE at the same seed and iteration.")
    args = parser.parse_args(argv)
    curves = read_logs(args.logs)
    if not curves:
        raise SystemExit(f"no validation lines of a named run in {', '.join(map(str, args.logs))}")
    ylabel = "validation MSE (dBR, normalised)"
    if args.relative_to:
        curves = relative_to(curves, args.relative_to)
        ylabel = f"validation MSE, % vs {args.relative_to}"
    summary = by_model(curves)
    for model, s in summary.items():
        cells = " ".join(f"{i}:{v:+.2f}" if args.relative_to else f"{i}:{v:.4f}" for i, v in zip(s["iterations"], s["mean"]))
        print(f"{model} (seeds {s['seeds']}): {cells}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    if args.plot:
        plot(summary, args.plot, args.title, ylabel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
