"""Does a network that reads 40 minutes learn the growth a 15-minute window cannot show? (issue #8, thirty-sixth round)

Why: on the strong growth/decay sets every study network gains a little over
extrapolation at 5 mm/h (growth-64 CSI@5 0.21-0.26) where the Lagrangian-trend
baseline, reading the same 4 frames, gains a lot (0.60), and on the days the
trend loses where the networks do not. The shipped forecaster bridges that with
a window trend read over 8 frames and gated on whether the growth *persisted*
through them (rho, evidence, no slowing), and applies no network change at
all. A network that reads only 4 frames (15 min) cannot tell persisting growth
from a passing fluctuation, so hedging is the best it can learn; one that reads
8 (40 min), the gate's window, could learn the gate's distinction itself.

Two arms, the study's scratch network and recipe, identical but for the window
(``benchmarks/configs/history/swiss-south-scratch-h{4,8}.yaml``): 4 or 8 moved
frames, motion from the newest 4 in both (``motion.frames``, extrapolation's),
one 20-frame training store (192 sequences, the training stream) and one
20-frame validation store. Scored on 20-frame sets: every method is verified on
the same 12 leads after frame 8, extrapolation and the Lagrangian trend from the
newest 4 frames, each arm from the newest frames it reads.

Usage::

    python benchmarks/history_network.py stores                          # once, before runs side by side
    python benchmarks/history_network.py train --arms h4 --seeds 0       # one run per process (h4, h8, h4-strong)
    python benchmarks/history_network.py score --seeds 0 1 2 \\
        --test data/sim/fresh-s33-f20/*.zarr data/sim/fresh-s34-f20/*.zarr --json benchmarks/out/v36/history.json
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

log = logging.getLogger("history_network")

CONFIGS = ROOT / "benchmarks" / "configs" / "history"
HISTORY, LEADS, MOTION_FRAMES = 8, 12, 4
#: Sizes and seed streams of the two 20-frame stores (the training and validation streams of the study's stores).
TRAIN_SEQUENCES, TRAIN_SEED = 192, 0
VAL_SEQUENCES = 32


#: Arms: ``h4``, ``h8`` (part 3: the window), ``h4-strong`` (part 5: an archive whose growth is strong and lasting),
#: ``h4-strong-free`` (part 6: the same without the recipe's persistent "no change" samples).
ARMS = ("h4", "h8", "h4-strong", "h4-strong-free")
#: The simulation config an arm's stores are made with (default: configs/simulate.yaml).
ARCHIVES = {"h4-strong": CONFIGS / "simulate-growth-strong.yaml", "h4-strong-free": CONFIGS / "simulate-growth-strong.yaml"}


def arm_config(arm: str, seed: int):
    """Arm ``arm`` (one of :data:`ARMS`) trained with ``seed`` (its own checkpoint ``...-s{seed}.pt``)."""
    from nowcast.models.config import load_model_config

    config = load_model_config(CONFIGS / f"swiss-south-scratch-{arm}.yaml")
    training = config.training.model_copy(update={"seed": int(seed)})
    checkpoint = config.checkpoint.replace("-s0.pt", f"-s{int(seed)}.pt")
    return config.model_copy(update={"training": training, "checkpoint": checkpoint})


def ensure_stores(config, simulation: Path | None = None) -> None:
    """Simulate the 20-frame training and validation stores if missing, and store their motion once.

    The motion is computed here, before any run, so two runs started side by
    side never write it at once.
    """
    from pipelines.sequences import ensure_motion
    from pipelines.simulate import simulate_dataset
    from pipelines.validation import VALIDATION_DAY_SEED

    data = config.data
    frames = data.input_frames + data.output_frames
    for path, n, seed in ((data.path, TRAIN_SEQUENCES, TRAIN_SEED), (data.val_path, VAL_SEQUENCES, VALIDATION_DAY_SEED)):
        store = ROOT / path
        if not store.exists():
            simulate_dataset(data.domain, n, max(frames, HISTORY + LEADS), store, seed=seed, crop_size=data.frame_size,
                             config=simulation)
        ensure_motion(store, config.motion_frames, config.motion.method)


def train_arms(arms: list[str], seeds: list[int]) -> list[Path]:
    """Train (or resume) each arm and seed in turn; returns their checkpoints."""
    from benchmarks.radar_transfer import ensure_trained

    out = []
    for arm in arms:
        for seed in seeds:
            config = arm_config(arm, seed)
            ensure_stores(config, ARCHIVES.get(arm))
            out.append(ensure_trained(config))
    return out


def read_sets(store: Path, by_regime: bool = False, name: str | None = None) -> dict[str, np.ndarray]:
    """The store's sequences (``HISTORY + LEADS`` frames), whole or, ``by_regime``, one set per simulated regime.

    By regime (a simulated store's ``regime`` flags, :func:`benchmarks.tmu_memory.regimes_of`): is what a
    network could learn in each regime of its archive predictable from the window at all?

    Raises
    ------
    SystemExit
        Sequences too short, or ``by_regime`` on a store without regime flags.
    """
    import xarray as xr

    from benchmarks.tmu_memory import regimes_of

    with xr.open_zarr(store) as ds:
        seqs = np.asarray(ds["rain_rate"].values[:, : HISTORY + LEADS], dtype=np.float32)
    if seqs.shape[1] < HISTORY + LEADS:
        raise SystemExit(f"{store}: sequences of {seqs.shape[1]} frames, {HISTORY + LEADS} needed")
    name = name or Path(store).stem
    if not by_regime:
        return {name: seqs}
    regime_of, regimes = regimes_of(store)
    return {f"{name} {r}": seqs[regime_of == r] for r in regimes if np.any(regime_of == r)}


def score(seeds: list[int], tests: list[Path], arms: tuple[str, ...] = ("h4", "h8"), maps: Path | None = None,
          by_regime: bool = False) -> dict:
    """Per test set: extrapolation, the Lagrangian trend and each arm's per-seed per-lead scores (radar_transfer's layout).

    ``maps``: a folder for each set's first sequence at +30 and +60 min beside the
    observation (:func:`benchmarks.radar_transfer.plot_maps`; the arms' first seed).
    ``by_regime``: each store's simulated regimes scored apart (:func:`read_sets`).
    """
    from benchmarks.heldout_skill import score_with_counts
    from nowcast.baselines import extrapolation, lagrangian_trend
    from nowcast.models.calibration import newest_frames
    from nowcast.models.zoo import load_forecaster

    def reading_its_window(arm: str, seed: int):
        forecaster = load_forecaster(arm_config(arm, seed).checkpoint_path)
        return newest_frames(forecaster.predict, forecaster.history_frames)

    forecasts = {f"scratch-{a}": [reading_its_window(a, s) for s in seeds] for a in arms}
    baselines = {"extrapolation": newest_frames(extrapolation, MOTION_FRAMES),
                 "lagrangian-trend": newest_frames(lagrangian_trend, MOTION_FRAMES)}
    results: dict = {}
    stems = [Path(s).stem for s in tests]
    named = [f"{Path(s).parent.name}/{Path(s).stem}" if stems.count(Path(s).stem) > 1 else None for s in tests]
    sets = {name: seqs for store, label in zip(tests, named) for name, seqs in read_sets(store, by_regime, label).items()}
    for name, seqs in sets.items():
        results[name] = {}
        for method, fn in baselines.items():
            s, _ = score_with_counts(fn, seqs, HISTORY)
            results[name][method] = {"scores": {k: {"per_seed": [s[k]]} for k in ("csi@1", "csi@5")}}
        for arm, fns in forecasts.items():
            per_seed = [score_with_counts(fn, seqs, HISTORY)[0] for fn in fns]
            results[name][arm] = {"scores": {k: {"per_seed": [p[k] for p in per_seed]} for k in ("csi@1", "csi@5")},
                                  "seeds": list(seeds)}
        if maps is not None:
            from benchmarks import radar_transfer

            first = seqs[0, :HISTORY]
            for method, fn in baselines.items():
                radar_transfer.EXAMPLES[(method, name)] = np.asarray(fn(first, LEADS))
            for arm, fns in forecasts.items():
                radar_transfer.EXAMPLES[(arm, name)] = np.asarray(fns[0](first, LEADS))
            maps.mkdir(parents=True, exist_ok=True)
            radar_transfer.plot_maps(seqs, name, [*baselines, *forecasts], HISTORY, maps / f"maps_{name}.png",
                                     title=f"{name}: first sequence, 8 frames read (2 km cells; arms: seed {seeds[0]})")
        line = {m: {k: float(np.nanmean(np.asarray(v["scores"][k]["per_seed"], dtype=float)[:, :LEADS]))
                    for k in ("csi@1", "csi@5")} for m, v in results[name].items()}
        log.info("%s: %s", name, "; ".join(f"{m} {v['csi@1']:.3f}/{v['csi@5']:.3f}" for m, v in line.items()))
    return results


def markdown(results: dict, seeds: list[int]) -> str:
    """Per set: mean CSI@1 / CSI@5 over 0-60 min (arms: seed mean ± half range), the worst lead against
    extrapolation, and the order of the two arms by :func:`benchmarks.radar_transfer.transfer_order`."""
    from benchmarks.radar_transfer import transfer_order

    arms = [m for m in next(iter(results.values())) if m not in ("extrapolation", "lagrangian-trend")]
    both = len(arms) == 2
    lines = [("| test set | extrapolation | Lagrangian trend | " + "".join(f"{a} | " for a in arms)
              + (f"{arms[1][8:]} vs {arms[0][8:]} @1 / @5 | " if both else "") + "worst lead vs extrapolation @1 / @5: "
              + ("; ".join(a[8:] for a in arms) if arms else "Lagrangian trend") + " |"),
             "| --- | --- | --- | " + "--- | " * (len(arms) + both + 1)]
    for name, methods in results.items():
        cells = []
        for m in ("extrapolation", "lagrangian-trend", *arms):
            per = {k: np.nanmean(np.asarray(methods[m]["scores"][k]["per_seed"], dtype=float)[:, :LEADS], axis=1)
                   for k in ("csi@1", "csi@5")}
            cells.append(" / ".join(f"{v.mean():.3f}" + (f" ± {0.5 * np.ptp(v):.3f}" if v.size > 1 else "")
                                    for v in per.values()))
        order = [transfer_order(methods, k, (arms[1], arms[0]))["pairs"][0] for k in ("csi@1", "csi@5")] if both else []
        worst = []
        ref = {k: np.asarray(methods["extrapolation"]["scores"][k]["per_seed"][0], dtype=float) for k in ("csi@1", "csi@5")}
        for arm in arms or ["lagrangian-trend"]:
            mean = {k: np.nanmean(np.asarray(methods[arm]["scores"][k]["per_seed"], dtype=float), axis=0) for k in ref}
            worst.append(" / ".join(f"{np.nanmin(mean[k] - ref[k]):+.3f}" for k in ref))
        lines.append(f"| {name} | " + " | ".join(cells) + (f" | {order[0]} / {order[1]}" if both else "")
                     + " | " + "; ".join(worst) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stores", help="Make the shared 20-frame stores and their motion (before runs side by side).")
    st.add_argument("--threads", type=int, default=2)
    tr = sub.add_parser("train", help="Train (or resume) arms.")
    tr.add_argument("--arms", nargs="+", choices=ARMS, default=["h4", "h8"])
    tr.add_argument("--seeds", type=int, nargs="+", default=[0])
    tr.add_argument("--threads", type=int, default=1)
    sc = sub.add_parser("score", help="Score both arms and the baselines on 20-frame test sets.")
    sc.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sc.add_argument("--test", type=Path, nargs="+", required=True)
    sc.add_argument("--json", type=Path, required=True)
    sc.add_argument("--maps", type=Path, default=None, help="Folder for each set's maps at +30 and +60 min.")
    sc.add_argument("--by-regime", action="store_true", help="Score each simulated regime of a store apart.")
    sc.add_argument("--arms", nargs="*", choices=ARMS, default=["h4", "h8"],
                    help="The arms to score (none: the baselines only, a check of what a store holds).")
    sc.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    if args.command == "stores":
        ensure_stores(arm_config("h8", 0))
        return 0
    if args.command == "train":
        for path in train_arms(args.arms, args.seeds):
            log.info("trained %s", path)
        return 0
    results = score(args.seeds, args.test, arms=tuple(args.arms), maps=args.maps, by_regime=args.by_regime)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results))
    sys.stdout.write(markdown(results, args.seeds) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
