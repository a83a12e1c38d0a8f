"""The calibrated window trend read over 8 frames instead of 4: chosen on validation, scored on a fresh test.

An experiment in the fourteenth round, what ``nowcast forecast`` does since
the fifteenth (:attr:`nowcast.models.calibration.ChangeWeights.trend_frames`:
the forecast reads 8 frames from the archive). ``benchmarks/trend_window.py``
found that the Lagrangian-trend baseline read over 8 frames (motion from the
newest 4) loses 0.008-0.026 less at its worst lead on the validation days with
the same growth gain. This asks whether the calibrated forecaster gains the
same: the shipped network (it reads the newest 4 moved frames, as always),
its change weights chosen by the fourteenth round's rule
(:func:`nowcast.models.calibration.choose_weights`, the 625 candidates) on the
20-frame validation-kind sets of ``trend_window.py`` twice, with the window
trend read over the newest 4 frames and over all 8; then both choices, the
shipped weights and extrapolation (from the newest 4 frames) scored once on
fresh 20-frame test sets drawn with seed 3
(:func:`pipelines.validation.fresh_test_stores`), with a paired bootstrap.

Usage::

    python benchmarks/trend_history.py calibrate --history 4 --rule 14 --json benchmarks/out/v14/history4.json
    python benchmarks/trend_history.py calibrate --history 8 --rule 14 --json benchmarks/out/v14/history8.json
    python benchmarks/trend_history.py score benchmarks/out/v14/history4.json benchmarks/out/v14/history8.json \\
        --json benchmarks/out/v14/history_fresh.json

Fifteenth round (the shipped model reads its trend over 8 frames; fresh seed 5)::

    python benchmarks/trend_history.py calibrate --history 8 --rule 15 --json benchmarks/out/v15/history8_rule15.json
    python benchmarks/trend_history.py score --fresh 5 --previous models/runs/exp/swiss-south-tmu-calibrated15.pt \\
        --json benchmarks/out/v15/fresh5.json

and its candidate, the trend read as the minmod of the halves with the rain smoothed 4 px (seed 6)::

    python benchmarks/trend_history.py score --fresh 6 --also models/runs/exp/swiss-south-tmu-calibrated17.pt \\
        --json benchmarks/out/v15/fresh6.json

Sixteenth round (a choice file carries its reading: estimator, smoothing, gate, agreement, alignment)::

    python benchmarks/trend_history.py score benchmarks/out/v16/step2_choice.json --fresh 7 \\
        --also models/runs/exp/swiss-south-tmu-calibrated18.pt --json benchmarks/out/v16/fresh7.json
    python benchmarks/trend_history.py score benchmarks/out/v16/step5_choice.json --fresh 8 \\
        --json benchmarks/out/v16/fresh8.json
    python benchmarks/trend_history.py score --fresh 9 --also models/runs/exp/swiss-south-tmu-calibrated19.pt \\
        --json benchmarks/out/v16/fresh9.json

Seventeenth round (a trend bounded by the scene's rain; fresh seed 10), and the study's record in the shipped
checkpoint it was promoted to (``study_skill``: the region's default follows it)::

    python benchmarks/trend_history.py score --fresh 10 --also models/runs/exp/swiss-south-tmu-calibrated20.pt \
        --json benchmarks/out/v17/fresh10.json
    python benchmarks/trend_history.py record benchmarks/out/v17/fresh10.json --fresh 10 \
        --scored models/runs/exp/swiss-south-tmu-calibrated20.pt --checkpoint models/zoo/swiss-south-tmu.pt
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("trend_history")

HISTORY, NETWORK_FRAMES, LEADS = 8, 4, 12
CHECKPOINT = ROOT / "models/zoo/swiss-south-tmu.pt"
FRESH_SEED = 3


def predictor(forecaster, weights, history: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """The forecaster under ``weights`` with its window trend read over the newest ``history`` frames.

    Since the fifteenth round this is the forecaster's own
    :meth:`~nowcast.models.zoo.Forecaster.predict` with
    :attr:`~nowcast.models.calibration.ChangeWeights.trend_frames` set (what
    ``nowcast forecast`` runs): motion from the newest 4 frames, the network
    on the newest 4 moved frames, the trend over all ``history``.
    """
    from nowcast.models.calibration import newest_frames

    model = copy.copy(forecaster)
    model.change_weights = replace(weights, trend_frames=history if history > NETWORK_FRAMES else 0)
    return newest_frames(model.predict, history)


#: Tie-breaks of :func:`nowcast.models.calibration.choose_weights` by rule number (``change_calibration.py``'s).
RULE_TIE_BREAKS = {"14": "csi5-then-least-change", "15": "least-change"}


def calibrate(history: int, sequences: int, rule: str = "15") -> dict:
    """``rule`` (14: the fourteenth round's first) on the 20-frame validation-kind sets, trend over ``history`` frames."""
    from benchmarks.trend_window import long_validation_sets
    from nowcast.models.calibration import (
        candidates,
        choose_weights,
        extrapolation_references,
        newest_frames,
        score_grid,
    )
    from nowcast.models.zoo import load_forecaster
    from pipelines.validation import read_validation

    forecaster = load_forecaster(CHECKPOINT)
    stores = list(long_validation_sets(ROOT / "data/sim/val-long").values())
    full = read_validation(stores, sequences, HISTORY + LEADS)
    seqs = {name: v[:, HISTORY - history :] for name, v in full.items()}  # history frames + leads
    references = extrapolation_references(full, NETWORK_FRAMES, LEADS, HISTORY)
    grid = score_grid(newest_frames(forecaster._raw_changes, NETWORK_FRAMES), forecaster.normaliser, seqs, history, LEADS,
                      forecaster.config.motion.method, candidates(), motion_frames=NETWORK_FRAMES)
    weights, summaries = choose_weights(grid, references, LEADS, tie_break=RULE_TIE_BREAKS[rule])
    log.info("rule %s, history %d: %s (worst lead %+.4f, mean CSI@5 %.4f)", rule, history, weights.brief(),
             summaries[weights.key(0)]["worst"], summaries[weights.key(0)]["csi5"])
    return {"rule": rule, "history": history, "chosen": list(weights.key(0)), "brief": weights.brief(),
            "validation": [str(p.relative_to(ROOT)) for p in stores], "references": references,
            "summaries": {"/".join(f"{w:g}" for w in k): s for k, s in summaries.items()}}


def choice_reading_fields() -> tuple[str, ...]:
    """The :class:`~nowcast.models.calibration.ChangeWeights` fields a choice file may name: how the trend is read.

    Every field but the weights per lead, the lifetime (in the candidate's
    ``chosen`` key), the frames (its ``history``) and the R² power, taken from
    the dataclass so that a field added there (a new limit) is read from a
    choice file without a second list to keep.
    """
    from dataclasses import fields

    from nowcast.models.calibration import ChangeWeights

    elsewhere = {"growth", "decay", "trend", "trend_decay", "trend_lifetime", "trend_frames", "trend_linearity_power"}
    return tuple(f.name for f in fields(ChangeWeights) if f.name not in elsewhere)


def choice_weights(choice: dict):
    """The :class:`~nowcast.models.calibration.ChangeWeights` of a choice file: its candidate, read as it says.

    Every field of :func:`choice_reading_fields` the file has
    (``trend_consistency.py --choice-json``, ``stress_rule.py``), else the
    dataclass's default: the slope, unsmoothed, every scene (the fourteenth
    round's files).
    """
    from nowcast.models.calibration import ChangeWeights

    reading = {k: choice[k] for k in choice_reading_fields() if k in choice}
    reading["trend_frames"] = int(choice["history"]) if int(choice["history"]) > NETWORK_FRAMES else 0
    return replace(ChangeWeights.from_key(choice["chosen"], LEADS), **reading)


def score(choices: list[dict], samples: int, fresh_seed: int = FRESH_SEED, also: list[Path] | None = None) -> dict:
    """Extrapolation, the shipped model and every choice on the fresh 20-frame test sets of ``fresh_seed``, once.

    The shipped model forecasts as ``nowcast forecast`` does (its own
    :meth:`~nowcast.models.zoo.Forecaster.predict` on the newest
    ``history_frames``); ``also``: other checkpoints beside it, each forecasting
    as it would if shipped (the fifteenth round: the fourteenth's, trend over 4,
    and a candidate); the Lagrangian-trend baseline (from the newest 4) is the
    issue's other reference.
    """
    import xarray as xr

    from benchmarks.heldout_skill import (
        bootstrap_summary,
        bootstrap_table,
        score_with_counts,
    )
    from nowcast.baselines import extrapolation, lagrangian_trend
    from nowcast.models.calibration import newest_frames
    from nowcast.models.zoo import load_forecaster
    from pipelines.validation import fresh_test_stores

    forecaster = load_forecaster(CHECKPOINT)
    shipped = forecaster.history_frames
    scored_files = {f"shipped (trend over {shipped})": forecaster.sha256}  # which file each name was
    methods = {"extrapolation": newest_frames(extrapolation, NETWORK_FRAMES),
               "Lagrangian trend": newest_frames(lagrangian_trend, NETWORK_FRAMES),
               f"shipped (trend over {shipped})": newest_frames(forecaster.predict, shipped)}
    for path in also or []:
        other = load_forecaster(path)
        methods[scored_label(other, path)] = newest_frames(other.predict, other.history_frames)
        scored_files[scored_label(other, path)] = other.sha256
    for c in choices:
        methods[f"rule {c.get('rule', '14')}, trend over {c['history']}"] = predictor(
            forecaster, choice_weights(c), int(c["history"]))
    stores = fresh_test_stores(ROOT / f"data/sim/fresh-s{fresh_seed}-f20", fresh_seed, frames=HISTORY + LEADS)
    results: dict = {"bootstrap": {}, "checkpoints": scored_files}
    for store in stores:
        with xr.open_zarr(store) as ds:
            seqs = np.asarray(ds["rain_rate"].values[:, : HISTORY + LEADS], dtype=np.float32)
        scores, counts = {}, {}
        for name, fn in methods.items():
            scores[name], counts[name] = score_with_counts(fn, seqs, HISTORY)
        results[store.stem] = scores
        results["bootstrap"][store.stem] = {name: bootstrap_summary(c, counts["extrapolation"], samples)
                                            for name, c in counts.items() if name != "extrapolation"}
        ref = scores["extrapolation"]
        for name, s in scores.items():
            d1 = np.asarray(s["csi@1"]) - np.asarray(ref["csi@1"])
            d5 = np.nan_to_num(np.asarray(s["csi@5"]) - np.asarray(ref["csi@5"]))
            log.info("%s %-28s CSI@1 %.3f CSI@5 %.3f worst %+.3f / %+.3f", store.stem, name, np.mean(s["csi@1"]),
                     np.nanmean(s["csi@5"]), d1.min(), d5.min())
    sys.stdout.write(bootstrap_table(results["bootstrap"]) + "\n")
    return results


def scored_label(forecaster, path: Path) -> str:
    """The name :func:`score` gives a checkpoint scored with ``--also``."""
    return f"{path.stem} {forecaster.sha256[:12]} (trend over {forecaster.history_frames})"


def record(results_paths: list[Path], scored: list[Path], checkpoint: Path, fresh_seeds: list[int]) -> dict:
    """Store in ``checkpoint`` the fresh-test skill :func:`score` measured for ``scored`` (``study_skill``).

    Only where they hold the same model: the same network weights, change
    weights and history (``scored`` is the file as it was scored, e.g. a
    candidate before its promotion; ``checkpoint`` the file it became, whose
    metadata differs), so a record never describes weights it did not
    measure. Several results files (one per fresh seed, ``fresh_seeds`` and
    ``scored`` in the same order; one ``scored`` for all of them) make one
    study over all their sets; each must hold its ``scored`` under the name
    ``--also`` gives it (:func:`scored_label`) or, where the file says which
    checkpoint each name was (``checkpoints``), under the one name whose digest
    is the file's (the shipped model, scored as ``shipped``; twenty-fourth
    round); a name ``--also`` gives must have the file's digest.
    """
    from nowcast.models.calibration import ChangeWeights
    from nowcast.models.skill import record_study, study_skill
    from nowcast.models.zoo import load_checkpoint, load_forecaster

    scored = list(scored) * len(results_paths) if len(scored) == 1 else list(scored)
    if not len(results_paths) == len(fresh_seeds) == len(scored):
        raise ValueError(f"{len(results_paths)} results files for {len(fresh_seeds)} fresh seeds and {len(scored)} "
                         f"scored checkpoints: give one seed (and one checkpoint, or one for all) each")
    target = load_checkpoint(checkpoint)
    weights = ChangeWeights.from_metadata(target.metadata.get("change_weights"), checkpoint)
    sets: dict = {}
    beyond: dict = {}
    levels = set()
    commands = []
    for path, file, seed in zip(results_paths, scored, fresh_seeds):
        measured = load_checkpoint(file)
        for what, same in (("network weights", measured.metadata["weights_sha256"] == target.metadata["weights_sha256"]),
                           ("change weights",
                            ChangeWeights.from_metadata(measured.metadata.get("change_weights"), file) == weights)):
            if not same:
                raise ValueError(f"{checkpoint}: its {what} are not those of {file}, which the study scored")
        label = scored_label(load_forecaster(file), file)
        results = json.loads(path.read_text())
        digests = results.get("checkpoints", {})
        by_digest = [name for name, digest in digests.items() if digest == measured.sha256]
        also = label in digests or len(by_digest) != 1
        label = label if also else by_digest[0]  # scored as the shipped model, not with --also
        commands.append(f"python benchmarks/trend_history.py score --fresh {seed}"
                        + (f" --also {file}" if also else "") + f" --json {path}")
        listed = digests.get(label)
        if listed is not None and listed != measured.sha256:
            raise ValueError(f"{path}: {label!r} was {listed[:12]}, not {file} ({measured.sha256[:12]})")
        here = {name: methods for name, methods in results.items() if name not in ("bootstrap", "checkpoints")}
        missing = [name for name, methods in here.items() if label not in methods]
        if missing:
            raise ValueError(f"{path}: no scores of {label!r} on {', '.join(missing)}")
        sets.update({name: {"extrapolation": methods["extrapolation"], "model": methods[label]}
                     for name, methods in here.items()})
        intervals = results.get("bootstrap", {})
        for name in here:  # the leads below extrapolation beyond the paired-bootstrap interval, where scored
            if label in intervals.get(name, {}):
                beyond[name] = intervals[name][label]["worse"]
                levels.add(float(intervals[name][label]["level"]))
    complete = set(beyond) == set(sets) and len(levels) == 1  # else the study says nothing of intervals
    study = study_skill(sets, "model", fresh_seed=fresh_seeds, command=" && ".join(commands),
                        provenance="simulated from real seeds", beyond_interval=beyond if complete else None,
                        interval_level=levels.pop() if complete else None)
    record_study(checkpoint, study)
    return study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    cal = sub.add_parser("calibrate", help="Choose the weights with the trend read over --history frames.")
    cal.add_argument("--history", type=int, choices=[4, 6, 8], required=True)
    cal.add_argument("--sequences", type=int, default=64, help="First N sequences of each validation set.")
    cal.add_argument("--rule", choices=sorted(RULE_TIE_BREAKS), default="15",
                     help="Selection rule (15: the current one; 14: the one the fourteenth round's history runs used).")
    cal.add_argument("--json", type=Path, required=True)
    sc = sub.add_parser("score", help="Score the choices (JSON of 'calibrate') on the fresh 20-frame test sets.")
    sc.add_argument("choices", type=Path, nargs="*")
    sc.add_argument("--fresh", type=int, default=FRESH_SEED, help="Seed of the fresh test sets (never one read before).")
    sc.add_argument("--also", "--previous", dest="also", type=Path, nargs="+",
                    help="Other checkpoints (an earlier shipped one, a candidate) to score beside the shipped one.")
    sc.add_argument("--bootstrap", type=int, default=2000)
    sc.add_argument("--json", type=Path, required=True)
    rec = sub.add_parser("record", help="Store the fresh-test skill of a checkpoint scored with --also in a "
                                        "checkpoint holding the same model (its study_skill).")
    rec.add_argument("results", type=Path, nargs="+", help="The JSON 'score' wrote (one per fresh seed).")
    rec.add_argument("--scored", type=Path, nargs="+", required=True,
                     help="The checkpoint scored with --also (one per results file, or one for all).")
    rec.add_argument("--checkpoint", type=Path, required=True, help="The checkpoint to record it in.")
    rec.add_argument("--fresh", type=int, nargs="+", required=True,
                     help="The seed of the fresh test sets each results file scored, in the same order.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    if args.step == "record":
        study = record(args.results, args.scored, args.checkpoint, args.fresh)
        sys.stdout.write(json.dumps(study["worst"]) + "\n")
        return 0
    out = (calibrate(args.history, args.sequences, args.rule) if args.step == "calibrate"
           else score([json.loads(p.read_text()) for p in args.choices], args.bootstrap, args.fresh, args.also))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
