"""Does the shipped trend reading flicker between successive runs? (a diagnostic).

A forecaster sees the runs of one afternoon one after another, 5 min apart. The
shipped forecaster adds the radar's growth only where its window passes three
hard limits (the scene's persistence ρ, the independent samples it is read
over, the growth where it grew: :class:`nowcast.models.calibration.ChangeWeights`),
and none elsewhere. A window that sits near a limit can pass it in one run and
fail it in the next, so the forecast's growth appears and disappears between
runs with nothing in the radar to say why. This reads the windows of successive
runs of each sequence (a run at every frame from the eighth on: frames
``t-8 .. t-1``) with the shipped reading (the same code as
``benchmarks/persistence_evidence.py``) and counts, per store, the runs that
open the reading, the changes of state between consecutive runs, and the
isolated ones (a run whose state differs from both neighbours): the flicker. It
also says which limit decided each change, and stores every run's reading, from
which :func:`flicker` measures any candidate's jumps (``stress_rule.py
--flicker``, twenty-eighth round). It chooses nothing.

Usage::

    python benchmarks/gate_consistency.py --sequences 24 \\
        --set data/sim/val-long/swiss-south-growth-64.zarr \\
        --set data/sim/fresh-s12-f20/swiss-south-growth-64-s12.zarr \\
        --set data/sim/fresh-s10-f20/swiss-south-test-s10.zarr --json benchmarks/out/v27/consistency.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.persistence_evidence import HISTORY, evidence

log = logging.getLogger("gate_consistency")


def failed_limits(rho: float | None, samples: float | None, growth: float | None, ratio: float | None = None, *,
                  gate: float, samples_min: float, growth_min: float, ratio_min: float = 0.0) -> list[str]:
    """The limits of a trend reading one run fails (empty: the trend is added), as the forecast applies them.

    The persistence gate (``rho``), its evidence (``samples``), the growth
    floor (``growth``) and, where ``ratio_min`` > 0, the growth-ratio floor
    (``ratio``; an undefined ratio passes, as in
    :func:`nowcast.models.calibration.window_trend`). The one place every
    count of this module reads them.
    """
    failed = []
    if rho is None or not rho >= gate:
        failed.append("rho")
    if samples is None or samples < samples_min:
        failed.append("samples")
    if growth is None or growth < growth_min:
        failed.append("growth")
    if ratio_min > 0 and ratio is not None and ratio < ratio_min:
        failed.append("ratio")
    return failed


def limits_failed(reading: dict | None, weights) -> list[str]:
    """The limits of ``weights`` (the shipped reading's) a window fails (empty: added); a dry window fails ``rain``."""
    if reading is None:
        return ["rain"]
    return failed_limits(reading["rho"], reading["samples"], reading["growth"], reading.get("growth_ratio"),
                         gate=weights.trend_persistence_min, samples_min=weights.trend_persistence_samples,
                         growth_min=weights.trend_growth_min, ratio_min=weights.trend_growth_ratio_min)


def run_states(failed: list[list[str]]) -> dict:
    """Counts over one sequence's successive runs: opened, changes of state, isolated runs, what decided each change.

    A change is decided by the limits that differ between the two runs' failures
    (a run that opens fails none, so every limit the other fails decided it).
    """
    opened = [not f for f in failed]
    changes = [k for k in range(1, len(opened)) if opened[k] != opened[k - 1]]
    isolated = sum(1 for k in range(1, len(opened) - 1) if opened[k] != opened[k - 1] and opened[k] != opened[k + 1])
    deciding: dict[str, int] = {}
    for k in changes:
        for limit in set(failed[k]) ^ set(failed[k - 1]):
            deciding[limit] = deciding.get(limit, 0) + 1
    return {"runs": len(opened), "opened": sum(opened), "changes": len(changes), "isolated": isolated,
            "deciding": deciding}


#: The shipped model's trend weight: the unit a flicker is said in (twenty-eighth round).
SHIPPED_TREND_WEIGHT = 1.5


def applied_weight(rho: float | None, samples: float | None, growth: float | None, *, weight: float, gate: float,
                   samples_min: float, growth_min: float, full: float, ratio: float | None = None,
                   ratio_min: float = 0.0) -> float:
    """The weight of the trend a run adds: ``weight`` x the ramp at ``rho``, 0 where a limit shuts it (or dry).

    The limits of :func:`failed_limits`, and the ramp
    :func:`nowcast.models.calibration.persistence_ramp` (``full`` -1: a step).
    """
    from nowcast.models.calibration import persistence_ramp

    if failed_limits(rho, samples, growth, ratio, gate=gate, samples_min=samples_min, growth_min=growth_min,
                     ratio_min=ratio_min):
        return 0.0
    return float(weight) * persistence_ramp(rho, gate, full)


def flicker(results: Mapping[str, Any], candidate: Mapping[str, Any], unit: float = SHIPPED_TREND_WEIGHT) -> float:
    """How much a candidate's added trend jumps between successive runs, pooled over a consistency file's sets.

    The mean over every pair of consecutive runs of every sequence of
    |a_k - a_(k-1)| / ``unit``, where a is :func:`applied_weight` of the run's
    stored reading (ρ, samples and growth do not depend on the candidate).
    ``candidate``: a choice (``chosen``, ``trend_persistence_min``,
    ``trend_persistence_samples``, ``trend_growth_min``,
    ``trend_persistence_full``), as :func:`benchmarks.stress_rule.ranked_candidates` makes them.
    Why: a forecaster reads the runs one after another; a growth that appears
    and disappears between runs with nothing in the radar to say why is a
    defect of the product, whatever it scores.
    """
    jumps = [abs(b - a) for applied in _applied_runs(results, candidate) for a, b in itertools.pairwise(applied)]
    if not jumps:
        raise ValueError("a consistency file with no pair of successive runs: nothing to measure a flicker on")
    return float(np.mean(jumps)) / unit


#: A large jump (twenty-ninth round): the trend weight a run adds changes by at least this, in units of the
#: shipped weight, from one run to the next: a growing core there in one run and gone in the next.
LARGE_JUMP = 0.5


def large_jumps(results: Mapping[str, Any], candidate: Mapping[str, Any], unit: float = SHIPPED_TREND_WEIGHT,
                at_least: float = LARGE_JUMP) -> int:
    """How many times a candidate's added trend jumps by ``at_least`` x ``unit`` or more between successive runs.

    Why beside :func:`flicker` (twenty-ninth round): the mean jump adds a
    ramp's frequent small moves as if they were as bad as a step's rare whole
    jumps; what a forecaster sees as flicker is a growing core that is in one
    run and gone in the next. Counted over every pair of consecutive runs of
    every sequence of a consistency file's sets.
    """
    return int(sum(np.count_nonzero(np.abs(np.diff(applied)) >= at_least * unit - 1e-12)
                   for applied in _applied_runs(results, candidate)))


def hysteresis_jumps(results: Mapping[str, Any], gate: float, hold: float, samples_min: float,
                     growth_min: float, memory: bool, ratio_min: float = 0.0) -> int:
    """Changes of state between successive runs if a scene that added the growth keeps it down to ``hold``.

    A diagnostic of the twenty-ninth round (chose nothing): the run opens at
    ρ >= ``gate``, or at ρ >= ``hold`` where the previous run was open, with
    the state carried from run to run (``memory``), or read statelessly from
    the previous run's own reading alone (what a forecast could compute from
    one older frame, without a memory between runs). The other limits
    (:func:`failed_limits`) shut a run either way.
    """
    def passes(rho, samples, growth, ratio, at: float) -> bool:
        return not failed_limits(rho, samples, growth, ratio, gate=at, samples_min=samples_min,
                                 growth_min=growth_min, ratio_min=ratio_min)

    changes = 0
    for runs in _run_readings(results):  # one sequence's successive runs
        states: list[bool] = []
        for k, run in enumerate(runs):
            before = (states[-1] if memory else passes(*runs[k - 1], gate)) if k else False
            states.append(passes(*run, gate) or (before and passes(*run, hold)))
        changes += sum(a != b for a, b in itertools.pairwise(states))
    return changes


def _run_readings(results: Mapping[str, Any]) -> list[list[tuple]]:
    """Per sequence of a consistency file, each run's ``(rho, samples, growth, growth ratio)``.

    Files written before the thirtieth round hold no ``growth_ratio``: read as
    undefined, which every growth-ratio floor lets pass.
    """
    return [list(zip(sequence["rho"], sequence["samples"], sequence["growth"],
                     sequence.get("growth_ratio") or [None] * len(sequence["rho"]), strict=True))
            for found in results["sets"].values() for sequence in found["per_sequence"]]


def _applied_runs(results: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[np.ndarray]:
    """Per sequence of a consistency file, the trend weight each run adds under ``candidate`` (:func:`applied_weight`)."""
    params = {"weight": float(candidate["chosen"][2]), "gate": float(candidate["trend_persistence_min"]),
              "samples_min": float(candidate.get("trend_persistence_samples", 0.0)),
              "growth_min": float(candidate.get("trend_growth_min", 0.0)),
              "full": float(candidate.get("trend_persistence_full", -1.0)),
              "ratio_min": float(candidate.get("trend_growth_ratio_min", 0.0))}
    return [np.array([applied_weight(r, s, g, ratio=q, **params) for r, s, g, q in runs])
            for runs in _run_readings(results)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, action="append", required=True, help="A store of sequences (repeat).")
    parser.add_argument("--sequences", type=int, default=24, help="The first N sequences of each store.")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch
    import xarray as xr

    from nowcast.models.zoo import load_forecaster

    torch.set_num_threads(1)
    forecaster = load_forecaster(ROOT / "models/zoo/swiss-south-tmu.pt")
    weights, method = forecaster.change_weights, forecaster.config.motion.method
    out: dict = {"checkpoint_sha256": forecaster.sha256, "sets": {}}
    for store in args.set:
        with xr.open_zarr(store) as ds:
            values = np.asarray(ds["rain_rate"].values[: args.sequences], dtype=np.float32)
        per_sequence = []
        for i, sequence in enumerate(values):
            readings = [evidence(sequence[t - HISTORY:t], forecaster.normaliser, method)
                        for t in range(HISTORY, len(sequence) + 1)]
            failed = [limits_failed(r, weights) for r in readings]
            per_sequence.append({"index": i, **run_states(failed), "failed": failed,
                                 "rho": [r["rho"] if r else None for r in readings],
                                 "samples": [r["samples"] if r else None for r in readings],
                                 "growth": [r["growth"] if r else None for r in readings],
                                 "growth_ratio": [r["growth_ratio"] if r else None for r in readings]})
        total = {key: sum(s[key] for s in per_sequence) for key in ("runs", "opened", "changes", "isolated")}
        deciding: dict[str, int] = {}
        for s in per_sequence:
            for limit, n in s["deciding"].items():
                deciding[limit] = deciding.get(limit, 0) + n
        summary = {**total, "sequences": len(per_sequence),
                   "sequences that open in some run": sum(1 for s in per_sequence if s["opened"]),
                   "sequences that open in every run": sum(1 for s in per_sequence if s["opened"] == s["runs"]),
                   "sequences that change state": sum(1 for s in per_sequence if s["changes"]),
                   "deciding": deciding}
        out["sets"][store.name] = {**summary, "per_sequence": per_sequence}
        sys.stdout.write(f"{store.name}: {summary}\n")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
