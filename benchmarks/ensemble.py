"""Probabilistic nowcasts (issue #12): skill of the ensembles, their speed and their memory.

Three parts (``--parts``, default all):

``study``
    On the held-out stores (``--stores``; first ``--sequences`` sequences of
    each: 4 input frames, 12 leads of truth), for each of ``--seeds``, three
    ensembles of ``--members`` members from the same window:

    * ``tmu-ens``: the shipped Lagrangian TMU forecast (``--model``) perturbed by
      the STEPS cascade noise of :mod:`nowcast.ensemble`;
    * ``extrap-ens``: pysteps extrapolation perturbed by the *same* noise
      (same window, same seed: only the deterministic signal differs);
    * ``steps``: pysteps STEPS itself (``pysteps.nowcasts.steps.forecast``) with
      the same motion, members and seed.

    Scores per lead with :class:`nowcast.verify.EnsembleScores` (pysteps'
    CRPS, reliability, ROC, rank histogram; spread/skill), pooled over the
    sequences and seeds of a store, on the pixels every method and the truth
    have (NaN in any of them counts nowhere). Also per seed, whether the TMU
    ensemble's CRPS is below STEPS' at every lead. The issue's targets:
    CRPS below STEPS at every lead on every test set; reliability within
    +-0.1 of the diagonal at 1 mm/h; spread/skill 0.8-1.2 at 30 and 60 min.

``speed``
    A 256x256 window (the real MeteoSwiss composite at 1 km, moved rigidly
    1 cell south and 2 east per 5 min), 20 members, 12 leads, in this one
    process: the TMU ensemble (model forecast + noise estimation + members),
    the extrapolation ensemble and pysteps STEPS (motion + STEPS), each
    ``--repeat`` times, alternating; medians reported. torch and numpy on
    ``--threads`` threads.

``memory``
    Peak RSS of ``nowcast.forecast.run_forecast`` making a 20-member, 12-lead
    ensemble of the 512x512 ``swiss-512`` region (archive of the real field
    moving, built as ``benchmarks/forecast.py`` does) and writing it, each
    method in a fresh subprocess (``resource.getrusage`` ``ru_maxrss``): the
    bound is 2 GB.

Usage::

    .venv/bin/python benchmarks/ensemble.py --sequences 8 --seeds 0 1 2 --members 20 \\
        --out benchmarks/out/ensemble.json

``--parts plot`` draws the study's JSON (``--out``) as ``--plot`` (PNG).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("benchmarks.ensemble")

STORES = ("data/sim/swiss-south-sameday.zarr", "data/sim/swiss-south-growth-64.zarr", "data/sim/swiss-south-rigid-64.zarr")
METHODS = ("tmu-ens", "extrap-ens", "steps")
N_IN, LEADS = 4, 12


# ------------------------------------------------------------------ study
def _ensembles(forecaster, window: np.ndarray, members: int, seed: int, km: float,
               history: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The three ensembles of one window; ``history``: the longer window the model reads (its trend), if any."""
    from nowcast.baselines import extrapolation
    from nowcast.ensemble import noise_model, perturb, steps_forecast
    from nowcast.motion import motion_field

    velocity = motion_field(np.nan_to_num(window))
    model = noise_model(window, LEADS, velocity=velocity)
    tmu = np.asarray(forecaster.predict(window if history is None else history, LEADS), dtype=np.float32)
    tmu[:, np.isnan(window[-1])] = np.nan
    ext = extrapolation(window, LEADS)
    return {
        "tmu-ens": perturb(tmu, model, members, seed),
        "extrap-ens": perturb(ext, model, members, seed),
        "steps": steps_forecast(window, LEADS, members, seed, timestep_minutes=5, km_per_pixel=km, velocity=velocity),
    }


def study(args) -> dict:
    import torch
    import xarray as xr

    from nowcast.models.zoo import load_forecaster
    from nowcast.verify import EnsembleScores

    torch.set_num_threads(args.threads)
    forecaster = load_forecaster(args.model)
    out: dict = {"model": args.model, "checkpoint_sha256": forecaster.sha256, "members": args.members,
                 "seeds": list(args.seeds), "sequences": args.sequences, "stores": {}}
    log.info("model %s sha256 %s", args.model, forecaster.sha256)
    for store in args.stores:
        ds = xr.open_zarr(ROOT / store)
        before = max(N_IN, args.history)  # frames before the analysis: the model may read more than the others' 4
        seqs = np.asarray(ds["rain_rate"].values[: args.sequences, : before + LEADS], dtype=np.float32)
        km = float(ds.attrs.get("resolution_m", 2000.0)) / 1000.0
        pooled = {m: EnsembleScores(LEADS, args.members, (0.5, 1.0, 5.0, 10.0)) for m in METHODS}
        per_seed: dict[str, dict[int, EnsembleScores]] = {m: {} for m in METHODS}
        t0 = time.perf_counter()
        for seed in args.seeds:
            for m in METHODS:
                per_seed[m][seed] = EnsembleScores(LEADS, args.members, (1.0,))
            for k, seq in enumerate(seqs):
                window, truth = seq[before - N_IN : before], seq[before:]
                ens = _ensembles(forecaster, window, args.members, seed * 1000 + k, km,
                                 seq[:before] if before > N_IN else None)
                bad = np.isnan(truth)
                for m, e in ens.items():
                    bad |= np.isnan(e).any(axis=0)
                obs = np.where(bad, np.nan, truth)
                for m, e in ens.items():
                    e = np.where(bad[None], np.nan, e)
                    pooled[m].add_forecast(e, obs)
                    per_seed[m][seed].add_forecast(e, obs)
        name = Path(store).stem
        res = {m: pooled[m].result() for m in METHODS}
        crps_seed = {m: {s: per_seed[m][s].result()["crps"].tolist() for s in args.seeds} for m in METHODS}
        below = {s: bool(np.all(np.asarray(crps_seed["tmu-ens"][s]) < np.asarray(crps_seed["steps"][s])))
                 for s in args.seeds}
        j1 = 1  # 1 mm/h in (0.5, 1, 5, 10)
        entry = {"seconds": time.perf_counter() - t0, "km_per_pixel": km, "methods": {}, "tmu_crps_below_steps_every_lead_per_seed": below}
        for m in METHODS:
            r = res[m]
            entry["methods"][m] = {
                "crps": r["crps"].tolist(),
                "crps_per_seed": crps_seed[m],
                "spread_skill": r["spread_skill"].tolist(),
                "spread": r["spread"].tolist(),
                "rmse": r["rmse"].tolist(),
                "roc_area_1mmh": r["roc_area"][:, j1].tolist(),
                "reliability_deviation_1mmh": r["reliability_deviation"][:, j1].tolist(),
                "reliability_1mmh_all_leads": _pooled_reliability(r, j1),
                "rank_histogram_all_leads": np.nanmean(r["rank_histogram"], axis=0).tolist(),
                "n_valid": r["n_valid"].tolist(),
            }
        out["stores"][name] = entry
        log.info("%s done in %.0f s", name, entry["seconds"])
        _print_store(name, entry)
    return out


def _pooled_reliability(r: dict, j: int) -> dict:
    count = r["reliability_count"][:, j].astype(float)
    total = count.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fc = np.nansum(np.nan_to_num(r["reliability_forecast"][:, j]) * count, axis=0) / total
        ob = np.nansum(np.nan_to_num(r["reliability_observed"][:, j]) * count, axis=0) / total
    ok = total >= 10
    dev = float(np.nanmax(np.abs(ob - fc)[ok])) if ok.any() else float("nan")
    return {"forecast": np.where(ok, fc, np.nan).tolist(), "observed": np.where(ok, ob, np.nan).tolist(),
            "count": total.astype(int).tolist(), "max_deviation": dev}


def _print_store(name: str, entry: dict) -> None:
    print(f"\n### {name}")
    print("| method | CRPS 5 min | 15 | 30 | 45 | 60 min | spread/skill 30 min | 60 min | reliability dev. 1 mm/h (all leads) | ROC area 1 mm/h 30 / 60 min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m, r in entry["methods"].items():
        c = r["crps"]
        print(f"| {m} | {c[0]:.3f} | {c[2]:.3f} | {c[5]:.3f} | {c[8]:.3f} | {c[11]:.3f} | {r['spread_skill'][5]:.2f} | "
              f"{r['spread_skill'][11]:.2f} | {r['reliability_1mmh_all_leads']['max_deviation']:.3f} | "
              f"{r['roc_area_1mmh'][5]:.3f} / {r['roc_area_1mmh'][11]:.3f} |")
    print("TMU CRPS below STEPS at every lead, per seed:", entry["tmu_crps_below_steps_every_lead_per_seed"])


# ------------------------------------------------------------------ speed
def moving_window(size: int = 256, frames: int = N_IN) -> np.ndarray:
    """``(frames, size, size)`` mm/h: the real composite's rainiest ``size`` square, moved 1 cell S and 2 E per step."""
    import h5py

    from nowcast.samples import sample_path

    with h5py.File(sample_path("meteoswiss_odim_composite"), "r") as f:
        field = f["dataset1/data1/data"][()].astype(np.float32)
    y0, x0 = 320, 300
    return np.stack([np.roll(field, (k, 2 * k), axis=(0, 1))[y0 : y0 + size, x0 : x0 + size] for k in range(frames)])


def speed(args) -> dict:
    import torch

    from nowcast.baselines import extrapolation
    from nowcast.ensemble import noise_model, perturb, steps_forecast
    from nowcast.models.zoo import load_forecaster
    from nowcast.motion import motion_field

    torch.set_num_threads(args.threads)
    forecaster = load_forecaster(args.model)
    window = moving_window(args.size)
    members, seed = args.speed_members, 1

    def tmu_ens():
        det = forecaster.predict(window, LEADS)
        model = noise_model(window, LEADS, motion_method=forecaster.config.motion.method)
        return perturb(det, model, members, seed)

    def extrap_ens():
        det = extrapolation(window, LEADS)
        return perturb(det, noise_model(window, LEADS), members, seed)

    def steps_ens():
        velocity = motion_field(np.nan_to_num(window))
        return steps_forecast(window, LEADS, members, seed, timestep_minutes=5, km_per_pixel=1.0, velocity=velocity)

    def det_only():
        return forecaster.predict(window, LEADS)

    runs = {"tmu-ens": tmu_ens, "extrap-ens": extrap_ens, "steps": steps_ens, "tmu deterministic": det_only}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.repeat):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
            log.info("speed %s run %d: %.2f s", name, r, times[name][-1])
    out = {"grid": [args.size, args.size], "members": members, "leads": LEADS, "threads": args.threads,
           "repeat": args.repeat, "checkpoint_sha256": forecaster.sha256,
           "seconds": {k: {"median": statistics.median(v), "all": v} for k, v in times.items()}}
    print(f"\n### speed: {members} members x {LEADS} leads, {args.size}x{args.size}, {args.threads} thread(s)")
    print("| method | median s | runs |")
    print("|---|---|---|")
    for k, v in out["seconds"].items():
        print(f"| {k} | {v['median']:.2f} | {', '.join(f'{x:.2f}' for x in v['all'])} |")
    return out


# ------------------------------------------------------------------ memory
def memory_child(method: str, home: str, members: int, model: str) -> None:
    """Run one 512x512 ensemble forecast and print peak RSS (MB) as JSON."""
    import resource

    import torch

    import nowcast.forecast as fc
    from nowcast.config import load_region

    torch.set_num_threads(1)
    region = load_region("swiss-512", home)
    if method == "tmu":
        region = region.model_copy(update={"forecast": region.forecast.model_copy(update={"model": model})})
    out = Path(home) / f"ens_{method}.nc"
    t0 = time.perf_counter()
    result = fc.run_forecast(region, home=home, method=method, leads=LEADS, members=members, seed=3, out=out)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"method": result.method, "members": members, "leads": LEADS, "seconds": seconds,
                      "compute_seconds": result.compute_seconds, "peak_rss_mb": peak,
                      "file_mb": out.stat().st_size / 1e6, "fallback": result.fallback_reason}))


def memory(args) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from forecast import build_archive

    rows = []
    with tempfile.TemporaryDirectory(prefix="nowcast-ens-mem-") as tmp:
        home = Path(tmp) / "home"
        build_archive("swiss-512", home, N_IN, Path(tmp) / "files")
        for method in args.memory_methods:
            cmd = [sys.executable, __file__, "--memory-child", method, str(home), str(args.speed_members), args.model]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode:
                raise SystemExit(f"memory child {method} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            log.info("memory %s: %s", method, rows[-1])
    print("\n### memory: 512x512, 12 leads, run_forecast + netCDF write, fresh process each")
    print("| method | members | run s | method s | peak RSS MB | file MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['members']} | {r['seconds']:.1f} | {r['compute_seconds']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['file_mb']:.0f} |")
    return {"rows": rows}


# ------------------------------------------------------------------ plot
def plot(args) -> dict:
    """PNG of the study (from ``--out``'s JSON): CRPS and spread/skill per lead, reliability at 1 mm/h, per store."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = json.loads(args.out.read_text())["study"]
    stores = list(results["stores"])
    fig = Figure(figsize=(4.2 * len(stores), 10.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, len(stores), squeeze=False)
    leads = 5 * np.arange(1, LEADS + 1)
    colours = {"tmu-ens": "C0", "extrap-ens": "C2", "steps": "C3"}
    for c, name in enumerate(stores):
        methods = results["stores"][name]["methods"]
        for m, r in methods.items():
            axes[0, c].plot(leads, r["crps"], marker="o", ms=3, color=colours[m], label=m)
            axes[1, c].plot(leads, r["spread_skill"], marker="o", ms=3, color=colours[m], label=m)
            rel = r["reliability_1mmh_all_leads"]
            axes[2, c].plot(rel["forecast"], rel["observed"], marker="o", ms=3, color=colours[m],
                            label=f"{m} (max dev. {rel['max_deviation']:.2f})")
        axes[0, c].set(title=name, xlabel="lead time (min)", ylabel="CRPS (mm/h)", ylim=(0, None))
        axes[1, c].axhspan(0.8, 1.2, color="grey", alpha=0.15)
        axes[1, c].set(xlabel="lead time (min)", ylabel="spread/skill", ylim=(0, 2))
        axes[2, c].plot([0, 1], [0, 1], color="black", lw=0.8)
        axes[2, c].fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="grey", alpha=0.15)
        axes[2, c].set(xlabel="forecast probability (>= 1 mm/h)", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
        for a in axes[:, c]:
            a.grid(alpha=0.3)
            a.legend(fontsize=7)
    fig.suptitle(f"{results['members']}-member ensembles, seeds {results['seeds']}, first {results['sequences']} "
                 f"sequences per held-out store (checkpoint {results['checkpoint_sha256'][:12]})")
    path = args.plot
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=args.dpi)
    print(f"plot: {path}")
    return {"path": str(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["study", "speed", "memory", "plot"],
                        choices=["study", "speed", "memory", "plot"])
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "out" / "ensemble_study.png")
    parser.add_argument("--dpi", type=int, default=80)
    parser.add_argument("--stores", nargs="+", default=list(STORES))
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--history", type=int, default=N_IN,
                        help="Frames before the analysis time the model reads (its trend may read 8; the stores need "
                             "that many before the leads); the other methods read the newest 4.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=20, help="members of the study's ensembles")
    parser.add_argument("--model", default="swiss-south-tmu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=256, help="grid side of the speed comparison")
    parser.add_argument("--speed-members", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-methods", nargs="+", default=["tmu", "steps"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ensemble.json")
    parser.add_argument("--memory-child", nargs=4, metavar=("METHOD", "HOME", "MEMBERS", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("nowcast").setLevel(logging.WARNING)
    if args.memory_child:
        method, home, members, model = args.memory_child
        memory_child(method, home, int(members), model)
        return 0
    results: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv])}
    if args.out.is_file():
        results = {**json.loads(args.out.read_text()), **results}
    for part in args.parts:
        if part == "plot":
            plot(args)
            continue
        results[part] = {"study": study, "speed": speed, "memory": memory}[part](args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
