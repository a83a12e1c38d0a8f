"""Choose a Lagrangian model's change weights on the validation sets (:mod:`nowcast.models.calibration`).

Scores the checkpoint under every ``(growth, decay, trend)`` candidate of
:func:`nowcast.models.calibration.candidates` on the four validation sets the
shipped model's settings were chosen on (the simulated validation store, the
known-motion twins of ``rigid-64`` and ``growth-64``, the other day's twin:
:func:`pipelines.validation.validation_stores`), applies the rule of
:mod:`nowcast.models.calibration`, prints the candidates beside the network
as trained ``(1, 1, 0)`` and, with ``--write``, stores the chosen weights in a
copy of the checkpoint (the weights and their digest untouched). The test
sets are not read here.

Candidates (``--candidate LABEL CHECKPOINT...``, twelfth round): other trained
runs, each calibrated by the same rule, against the positional checkpoint (the
incumbent). Rule, written before any candidate was calibrated: a checkpoint's
score is its chosen weights' worst-lead difference and mean CSI@5 on the
validation sets; per label the mean over its checkpoints (seeds);
``bias_selection.choose`` (the largest mean worst lead, ties within 0.005 to the
larger mean CSI@5) picks the label. The incumbent is replaced only if another
label wins, by that label's seed with the better worst lead, calibrated; the
test sets are scored after the choice.
Result (2026-11-27): all four labels tied within 0.004 and the rule took
area 0.1 (mean CSI@5 0.376 against 0.372); promoted and then scored on the
test sets it was worse than the incumbent (another day, CSI@5 at 55 min
-0.039 against extrapolation) and was withdrawn (docs/benchmarks.md, "Skill,
twelfth round").

Rules (``--rule``): ``15`` (default) is the current one of
:mod:`nowcast.models.calibration` (625 candidates with the trend's growth part
alone and three lifetimes; ties on the worst lead go to the least applied
change); ``14`` the fourteenth round's first (ties within 0.005 of mean
CSI@5 first); ``13`` reproduces the thirteenth
round's choice (245 triples, ties to the larger mean CSI@5), and ``--rule 13
--trend-weights 0`` the twelfth round's.

Usage::

    python benchmarks/change_calibration.py models/zoo/swiss-south-tmu.pt --rule 15 \\
        --json benchmarks/out/v14/calibration15.json --write models/runs/exp/swiss-south-tmu-calibrated15.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("change_calibration")

INPUT_FRAMES, LEADS = 4, 12


#: The selection rules this script reproduces: candidates and tie-break (nowcast.models.calibration docstring).
RULES = {
    "13": {"grid": "GRID", "forms": ("signed",), "lifetimes": (6.0,), "tie_break": "csi5"},
    "14": {"grid": "NETWORK_GRID", "forms": None, "lifetimes": None, "tie_break": "csi5-then-least-change"},
    "15": {"grid": "NETWORK_GRID", "forms": None, "lifetimes": None, "tie_break": "least-change"},
}


def rule_keys(rule: str, trend_weights: list[float] | None = None) -> tuple[list, str]:
    """The candidates and tie-break of ``rule`` (``13``: the thirteenth round's; ``14``: the fourteenth's; ``15``: the current one)."""
    from nowcast.models import calibration

    spec = RULES[rule]
    keys = calibration.candidates(getattr(calibration, spec["grid"]),
                                  calibration.TREND_GRID if trend_weights is None else trend_weights,
                                  spec["forms"] or calibration.TREND_FORMS, spec["lifetimes"] or calibration.TREND_LIFETIMES)
    return keys, spec["tie_break"]


def label(key) -> str:
    """``g / d / t / td / lifetime`` of a candidate."""
    return " / ".join(f"{w:g}" for w in key)


def table(summaries: dict[tuple, dict[str, float]], chosen: tuple, rows: int = 12) -> str:
    """Markdown: the best ``rows`` candidates by the rule's score, the network as trained, and the choice."""
    from nowcast.models.calibration import NETWORK

    ranked = sorted(summaries, key=lambda k: (-summaries[k]["worst"], -summaries[k]["csi5"]))
    shown = ranked[:rows] + [k for k in [NETWORK, chosen] if k in summaries and k not in ranked[:rows]]
    lines = [("| growth | decay | trend where it grows | trend where it decays | lifetime (steps) | "
              "worst lead ΔCSI (1 and 5 mm/h, all sets) | mean CSI@5 0-60 | mean applied change | |"),
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for key in shown:
        note = "**chosen**" if key == chosen else ("network as trained" if key == NETWORK else "")
        lines.append(f"| {' | '.join(f'{w:g}' for w in key)} | {summaries[key]['worst']:+.4f} | "
                     f"{summaries[key]['csi5']:.4f} | {summaries[key]['change']:.4f} | {note} |")
    return "\n".join(lines)


def cross_validate(forecaster, sequences: dict[str, np.ndarray], keys: list | None = None,
                   tie_break: str = "least-change") -> str:
    """Choose the weights on one half of every validation set (even or odd sequences) and score it on the other.

    Why: the chosen weights' worst lead is the best of all candidates on the
    sequences it was chosen on, so it flatters the choice; on the other half it
    is an honest estimate of what the rule's choice does on unseen data of the
    same kind. Returns a Markdown table (each half once as the choosing half).
    """
    from nowcast.models.calibration import NETWORK, calibrate, summarise

    halves = {"even": {n: v[0::2] for n, v in sequences.items()}, "odd": {n: v[1::2] for n, v in sequences.items()}}
    results = {half: calibrate(forecaster, seqs, LEADS, keys, tie_break) for half, seqs in halves.items()}
    header = ("| chosen on | growth / decay / trend / trend decay / lifetime | worst lead there | worst lead on the other half | "
              "the network as trained there / on the other half |")
    lines = [header, "| --- | --- | ---: | ---: | --- |"]
    for half, other in (("even", "odd"), ("odd", "even")):
        weights, summaries, _, _ = results[half]
        _, _, grid, references = results[other]
        key = weights.key(0)
        held = summarise(grid[key], references)
        net, net_held = summaries[NETWORK], summarise(grid[NETWORK], references)
        lines.append(f"| {half} | {label(key)} | {summaries[key]['worst']:+.4f} | "
                     f"{held['worst']:+.4f} | {net['worst']:+.4f} / {net_held['worst']:+.4f} |")
    return "\n".join(lines)


def compare_candidates(incumbent: Path, incumbent_summary: dict[str, float], candidates: list[list[str]],
                       sequences: dict[str, np.ndarray], json_path: Path | None, keys: list | None = None,
                       tie_break: str = "least-change") -> str:
    """Calibrate every candidate checkpoint and choose among the labels (the candidates' rule); returns the label."""
    from benchmarks.bias_selection import _means, choose
    from nowcast.models.calibration import calibrate
    from nowcast.models.zoo import load_forecaster

    per_label: dict[str, list[dict]] = {"incumbent": [dict(incumbent_summary, checkpoint=str(incumbent))]}
    for name, *checkpoints in candidates:
        if not checkpoints:
            raise SystemExit(f"--candidate {name}: no checkpoint given")
        for path in checkpoints:
            weights, summaries, _, _ = calibrate(load_forecaster(path), sequences, LEADS, keys, tie_break)
            key = weights.key(0)
            per_label.setdefault(name, []).append(dict(summaries[key], weights=list(key), checkpoint=path))
            log.info("%s (%s): %s, worst lead %+.4f, mean CSI@5 %.4f", name, path, weights.brief(),
                     summaries[key]["worst"], summaries[key]["csi5"])
    chosen = choose(per_label)
    lines = ["| label | checkpoint | chosen growth / decay / trend / trend decay / lifetime | worst lead ΔCSI | mean CSI@5 |",
             "| --- | --- | --- | ---: | ---: |"]
    for name, runs in per_label.items():
        lines += [f"| {name} | {r['checkpoint']} | {label(r['weights']) if 'weights' in r else '-'} | "
                  f"{r['worst']:+.4f} | {r['csi5']:.4f} |" for r in runs]
    sys.stdout.write("\n".join(lines) + f"\n\nchosen among the calibrated candidates: {chosen} ({_means(per_label)})\n")
    if json_path:
        data = json.loads(json_path.read_text()) if json_path.exists() else {}
        json_path.write_text(json.dumps({**data, "candidates": per_label, "chosen_candidate": chosen}, indent=1))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="A Lagrangian rain model's checkpoint.")
    parser.add_argument("--sequences", type=int, default=64, help="First N sequences of each validation store.")
    parser.add_argument("--validation", type=Path, nargs="+", default=None,
                        help="Validation stores (default: the model's, pipelines.validation.validation_stores).")
    parser.add_argument("--json", type=Path, help="Write every candidate's per-lead scores, extrapolation's and the choice.")
    parser.add_argument("--candidate", nargs="+", action="append", default=[], metavar="LABEL CHECKPOINT",
                        help="A label and its checkpoints (seeds), each calibrated and compared with the incumbent "
                             "by the candidates' rule of the module docstring (repeatable).")
    parser.add_argument("--cross-validate", action="store_true",
                        help="Also choose on the even sequences of every set and score on the odd ones, and the "
                             "other way round (see cross_validate): how much the chosen weights' worst lead is luck.")
    parser.add_argument("--rule", choices=sorted(RULES), default="15",
                        help="The selection rule: '15' (default, the current one: 625 candidates, ties on the worst "
                             "lead to the least change), '14' (ties within 0.005 of the most CSI@5 first) or '13' "
                             "(the thirteenth round's 245 triples, ties to mean CSI@5).")
    parser.add_argument("--trend-weights", type=float, nargs="+", default=None, metavar="W",
                        help="Trend weights tried with every growth/decay pair (default: "
                             "nowcast.models.calibration.TREND_GRID); '--rule 13 --trend-weights 0' is the twelfth "
                             "round's 49 pairs, without the window trend.")
    parser.add_argument("--write", type=Path, metavar="CHECKPOINT",
                        help="Copy the checkpoint here with the chosen weights in its metadata (change_weights).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from nowcast.models.calibration import calibrate
    from nowcast.models.zoo import load_forecaster
    from pipelines.validation import read_validation, validation_stores

    torch.set_num_threads(1)
    if args.trend_weights is not None and 0.0 not in args.trend_weights:
        parser.error("--trend-weights must include 0: the network as trained (1, 1, 0) is every table's reference")
    keys, tie_break = rule_keys(args.rule, args.trend_weights)
    forecaster = load_forecaster(args.checkpoint)
    stores = args.validation or validation_stores(forecaster.config)
    sequences = read_validation(stores, args.sequences, INPUT_FRAMES + LEADS)
    log.info("rule %s: %d candidates, ties broken by %s", args.rule, len(keys), tie_break)
    weights, summaries, grid, references = calibrate(forecaster, sequences, LEADS, keys, tie_break)
    chosen = weights.key(0)
    sys.stdout.write(table(summaries, chosen) + f"\n\nchosen: {weights.brief()}\n")
    names = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in stores]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "checkpoint": str(args.checkpoint), "validation": names, "rule": args.rule,
            "key": "growth/decay/trend/trend_decay/lifetime_steps",
            "sequences": {name: len(v) for name, v in sequences.items()},
            "references": references,
            "grid": {"/".join(f"{w:g}" for w in key): by_set for key, by_set in grid.items()},
            "summaries": {"/".join(f"{w:g}" for w in key): s for key, s in summaries.items()},
            "chosen": list(chosen)}, indent=1))
    if args.cross_validate:
        sys.stdout.write("\n" + cross_validate(forecaster, sequences, keys, tie_break) + "\n")
    if args.candidate:
        compare_candidates(args.checkpoint, dict(summaries[chosen], weights=list(chosen)),
                           args.candidate, sequences, args.json, keys, tie_break)
    if args.write:
        from pipelines.pretrain import record_change_weights

        args.write.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.checkpoint, args.write)
        command = "python benchmarks/change_calibration.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        record_change_weights(args.write, weights, summaries, stores, sequences, command,
                              calibrated_from=args.checkpoint.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
