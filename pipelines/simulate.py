"""Write datasets of sequences "simulated from real seeds" to Zarr, with dask.

For one domain of ``configs/simulate.yaml`` the driver reads the real seed
once, draws a crop window per sequence (inside coverage, with enough rain),
and hands each sequence to a dask task: simulate on the window plus a margin
of real context (so rain flows in through the crop's edges), then cut out the
crop. Tasks are independent and each is seeded from
``SeedSequence([seed, split, index])``, so a dataset is identical whatever
the scheduler and the number of workers, and sequence ``i`` of a bigger
dataset equals sequence ``i`` of a smaller one.

The store holds ``rain_rate`` (mm h-1) or ``brightness_temperature`` (K) with
dims ``(sequence, time, y, x)``, one chunk per sequence, a ``coverage`` mask
``(sequence, y, x)``, the crop offsets in the seed grid, and attrs naming the
seed file, timestep, resolution, model parameters, units, normalisation and
``provenance = "simulated from real seeds"``. The held-out ``test`` split of
a target domain comes from a *different real field* where the config gives a
``test_sample``, and always from a disjoint seed stream.

Usage::

    python -m pipelines.simulate --domain swiss-south --sequences 256 --frames 20 \\
        --out data/swiss-south-train.zarr
    python -m pipelines.simulate --domain swiss-south --split test ... --out data/swiss-south-test.zarr

Schedulers: ``None``/``"threads"`` (default: NumPy FFTs and SciPy
interpolation release the GIL often enough that threads beat both the
synchronous and the process scheduler here, see docs/benchmarks.md, and they
need no ``if __name__ == "__main__"`` guard in the calling script),
``"processes"``, ``"synchronous"`` (tests, debugging), or a
``distributed.Client``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time as _time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from nowcast.config import StrictModel, load_yaml, shipped_configs_dir
from nowcast.data.seeds import Seed, load_seed
from nowcast.errors import ConfigError, NowcastError
from nowcast.simulate import SimulationParams, draw_regime, simulate_sequence

log = logging.getLogger(__name__)

PROVENANCE = "simulated from real seeds"
Split = Literal["train", "test"]
_SPLIT_CODE = {"train": 0, "test": 1}
#: Variable name and CF attributes per simulated kind (docs/design.md names).
VARIABLES: dict[str, dict[str, str]] = {
    "rain": {"name": "rain_rate", "units": "mm h-1", "standard_name": "rainfall_rate"},
    "brightness_temperature": {"name": "brightness_temperature", "units": "K", "standard_name": "toa_brightness_temperature"},
}


class DomainConfig(StrictModel):
    """One entry of ``configs/simulate.yaml``."""

    role: Literal["target", "source"] = "source"
    description: str = ""
    sample: str
    region: str | None = None
    resolution_m: float = Field(1000.0, gt=0, description="Cell size of the local grid for polar seeds.")
    coverage_from: str | None = None
    test_sample: str | None = None
    test_coverage_from: str | None = None
    timestep_minutes: float = Field(5.0, gt=0)
    crop_size: int = Field(64, ge=8)
    min_wet_fraction: float = Field(0.05, ge=0, lt=1)
    min_coverage: float = Field(0.9, gt=0, le=1)
    params: SimulationParams = SimulationParams()
    normalisation: dict[str, Any] = Field(default_factory=lambda: {"kind": "log", "offset": 0.1, "scale": 3.0})


def load_domains(path: str | Path | None = None) -> dict[str, DomainConfig]:
    """Validated domain entries of the simulation config.

    Raises
    ------
    ConfigError
        Naming the file and the offending key.
    """
    path = Path(path) if path is not None else shipped_configs_dir() / "simulate.yaml"
    data = load_yaml(path)
    domains = data.get("domains")
    if not isinstance(domains, dict) or not domains:
        raise ConfigError(f"{path}: expected a non-empty mapping 'domains'")
    out = {}
    for name, entry in domains.items():
        try:
            out[name] = DomainConfig.model_validate(entry)
        except ValidationError as exc:
            keys = "; ".join(f"key 'domains.{name}.{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: {keys}") from None
    return out


@dataclass(frozen=True)
class Window:
    """Where a sequence's crop lies in the seed grid, and its simulation context."""

    y0: int
    x0: int
    size: int
    sy0: int
    sx0: int
    sy1: int
    sx1: int


def choose_window(seed: Seed, rng: np.random.Generator, size: int, context: int, min_wet: float, min_coverage: float, threshold: float) -> Window:
    """A random crop that is covered and wet enough, plus its context window.

    Up to 200 draws; if none passes (a nearly dry seed), the wettest covered
    draw is used and a warning logged, because silently training on dry crops
    would teach a forecaster that nothing ever happens.
    """
    ny, nx = seed.shape
    if size > ny or size > nx:
        raise ConfigError(f"crop_size {size}: larger than the seed grid {seed.shape} of {seed.sample}")
    best, best_score, passed = None, -1.0, False
    for _ in range(200):
        y0 = int(rng.integers(0, ny - size + 1))
        x0 = int(rng.integers(0, nx - size + 1))
        m = seed.mask[y0 : y0 + size, x0 : x0 + size]
        cov = float(m.mean())
        if cov == 0:
            continue
        vals = seed.values[y0 : y0 + size, x0 : x0 + size][m]
        wet = float(np.mean(vals >= threshold))
        if cov >= min_coverage and wet >= min_wet:
            best, passed = (y0, x0), True
            break
        score = wet * cov
        if score > best_score:
            best, best_score = (y0, x0), score
    if best is None:
        raise ConfigError(f"seed {seed.sample}: no covered {size}x{size} window found")
    if not passed:
        log.warning("seed %s: no %dx%d window reaches the wet/coverage thresholds; using the wettest", seed.sample, size, size)
    y0, x0 = best
    return Window(y0, x0, size, max(0, y0 - context), max(0, x0 - context), min(ny, y0 + size + context), min(nx, x0 + size + context))


def _simulate_window(
    values: np.ndarray, mask: np.ndarray, window: Window, frames: int, timestep: float, resolution: float, rng_seed: int, params: SimulationParams, kind: str
) -> np.ndarray:
    """One dask task: simulate on the context window, return the crop."""
    seq = simulate_sequence(values, frames, timestep, resolution, rng_seed, params, kind=kind, mask=mask)  # type: ignore[arg-type]
    cy, cx = window.y0 - window.sy0, window.x0 - window.sx0
    return seq[:, cy : cy + window.size, cx : cx + window.size]


def simulate_dataset(
    domain: str,
    n_sequences: int,
    frames_per_sequence: int,
    out: str | Path,
    seed: int = 0,
    crop_size: int | None = None,
    scheduler: Any = None,
    split: Split = "train",
    config: str | Path | None = None,
) -> Path:
    """Simulate ``n_sequences`` sequences of a domain and write them to Zarr.

    Parameters
    ----------
    domain
        Entry of ``configs/simulate.yaml`` (or of ``config``).
    n_sequences, frames_per_sequence
        Dataset size; e.g. 20 frames = 10 inputs + 10 targets.
    out
        Zarr store to (over)write.
    seed
        Base seed; sequence ``i`` uses ``SeedSequence([seed, split, i])``.
    crop_size
        Side of the square crops (default: the domain's ``crop_size``).
    scheduler
        ``None``/``"threads"``, ``"processes"``, ``"synchronous"`` or a
        ``distributed.Client``.
    split
        ``"train"`` or ``"test"``: the test split uses the domain's
        ``test_sample`` (another real field) when configured, and always a
        seed stream disjoint from training.
    config
        Alternative simulation config file.

    Returns
    -------
    Path
        The written store.

    Raises
    ------
    ConfigError
        Unknown domain or split, sizes that do not fit the seed.
    """
    import dask
    import dask.array as dsa
    import xarray as xr

    domains = load_domains(config)
    if domain not in domains:
        raise ConfigError(f"simulate domain {domain!r}: unknown; known: {', '.join(sorted(domains))}")
    if split not in _SPLIT_CODE:
        raise ConfigError(f"simulate split {split!r}: expected 'train' or 'test'")
    if n_sequences < 1 or frames_per_sequence < 1:
        raise ConfigError(f"simulate {domain}: n_sequences={n_sequences}, frames={frames_per_sequence}: must be positive")
    cfg = domains[domain]
    size = crop_size or cfg.crop_size
    out = Path(out)
    started = _time.perf_counter()

    sample, coverage_from = cfg.sample, cfg.coverage_from
    if split == "test" and cfg.test_sample:
        sample, coverage_from = cfg.test_sample, cfg.test_coverage_from
    seed_field = load_seed(sample, region=cfg.region, resolution_m=cfg.resolution_m, coverage_from=coverage_from)
    params = cfg.params
    threshold = params.rain_threshold if seed_field.kind == "rain" else 0.0
    if seed_field.kind == "brightness_temperature":
        from nowcast.simulate import cloud_anomaly

        wet_values, _ = cloud_anomaly(seed_field.values.astype(np.float64), seed_field.mask, params, seed_field.resolution_m)
        seed_for_windows = dataclasses.replace(seed_field, values=wet_values.astype(np.float32))
        threshold = params.cloud_threshold_k
    else:
        seed_for_windows = seed_field
    max_px = params.speed_kmh[1] * cfg.timestep_minutes / 60.0 * 1000.0 / seed_field.resolution_m
    context = min(2 * size, int(math.ceil(max_px * (1 + 2.5 * params.motion_perturbation) * (params.spinup_frames + frames_per_sequence))))

    tasks, windows, masks, regimes = [], [], [], []
    for i in range(n_sequences):
        window_ss, sim_ss = np.random.SeedSequence([seed, _SPLIT_CODE[split], i]).spawn(2)
        w = choose_window(seed_for_windows, np.random.default_rng(window_ss), size, context, cfg.min_wet_fraction, cfg.min_coverage, threshold)
        vals = seed_field.values[w.sy0 : w.sy1, w.sx0 : w.sx1]
        m = seed_field.mask[w.sy0 : w.sy1, w.sx0 : w.sx1]
        rng_seed = int(sim_ss.generate_state(1, np.uint32)[0])
        regimes.append(draw_regime(params, rng_seed))
        task = dask.delayed(_simulate_window, pure=True)(
            vals, m, w, frames_per_sequence, cfg.timestep_minutes, seed_field.resolution_m, rng_seed, params, seed_field.kind
        )
        tasks.append(dsa.from_delayed(task, shape=(frames_per_sequence, size, size), dtype=np.float32))
        windows.append(w)
        masks.append(seed_field.mask[w.y0 : w.y0 + size, w.x0 : w.x0 + size])

    var = VARIABLES[seed_field.kind]
    names = sorted(set(regimes))  # CF flags: small integers with their meanings
    data = dsa.stack(tasks)
    lead = np.arange(frames_per_sequence) * np.timedelta64(int(round(cfg.timestep_minutes * 60)), "s")
    ds = xr.Dataset(
        {
            var["name"]: (
                ("sequence", "time", "y", "x"),
                data,
                {"units": var["units"], "standard_name": var["standard_name"], "long_name": f"{var['name'].replace('_', ' ')} ({PROVENANCE})"},
            ),
            "coverage": (("sequence", "y", "x"), np.stack(masks), {"long_name": "seed instrument coverage (1 = observed)", "flag_values": [0, 1]}),
            "window_y0": ("sequence", np.array([w.y0 for w in windows], dtype=np.int32), {"long_name": "crop's first row in the seed grid"}),
            "window_x0": ("sequence", np.array([w.x0 for w in windows], dtype=np.int32), {"long_name": "crop's first column in the seed grid"}),
            "regime": ("sequence", np.array([names.index(r) for r in regimes], dtype=np.int8),
                       {"long_name": "simulated regime of the sequence (configs/simulate.yaml)",
                        "flag_values": list(range(len(names))), "flag_meanings": " ".join(names)}),
        },
        coords={
            "sequence": np.arange(n_sequences),
            "time": ("time", lead, {"long_name": "time since the sequence's first frame"}),
        },
        attrs={
            "Conventions": "CF-1.8",
            "title": f"{domain} sequences {PROVENANCE}",
            "provenance": PROVENANCE,
            "domain": domain,
            "role": cfg.role,
            "split": split,
            "seed_sample": sample,
            "seed_file": seed_field.source_file,
            "seed_product": seed_field.product,
            "seed_crs_wkt": seed_field.crs_wkt,
            "seed_shape": list(seed_field.shape),
            "kind": seed_field.kind,
            "units": var["units"],
            "timestep_minutes": cfg.timestep_minutes,
            "resolution_m": seed_field.resolution_m,
            "crop_size": size,
            "rng_seed": seed,
            "simulation_params": json.dumps(params.model_dump(mode="json")),
            "normalisation": json.dumps(cfg.normalisation),
            "history": f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} pipelines.simulate domain={domain} split={split}",
            "source": "nowcast.simulate (STEPS-style cascade AR(2) model, pysteps)",
        },
    )
    ds[var["name"]].encoding["chunks"] = (1, frames_per_sequence, size, size)
    ds["coverage"] = ds["coverage"].astype(np.uint8)
    ds["time"].encoding.update(units="minutes", dtype="int32")
    sched = "threads" if scheduler is None else scheduler
    import warnings

    with dask.config.set(scheduler=sched), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(out, mode="w", consolidated=True, compute=True)
    elapsed = _time.perf_counter() - started
    log.info(
        "%s/%s: %d sequences x %d frames of %dx%d %s in %.1f s -> %s",
        domain, split, n_sequences, frames_per_sequence, size, size, PROVENANCE, elapsed, out,
    )
    return out


def regime_flags(variable: Any) -> dict[int, str]:
    """The regime names of a store's ``regime`` variable by flag value, from the CF flags :func:`simulate_dataset` writes.

    Raises
    ------
    ValueError
        ``flag_values`` missing, or not one per name of ``flag_meanings``.
    """
    names = str(variable.attrs.get("flag_meanings", "")).split()
    values = variable.attrs.get("flag_values")
    if values is None or len(values) != len(names):
        raise ValueError(f"regime flag_values {values!r} do not name flag_meanings {names!r} one to one")
    return {int(v): n for v, n in zip(values, names)}


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.simulate --domain D --out STORE [...]``."""
    parser = argparse.ArgumentParser(description=f"Write sequences {PROVENANCE} to a Zarr store.")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop-size", type=int, default=None)
    parser.add_argument("--split", choices=sorted(_SPLIT_CODE), default="train")
    parser.add_argument("--scheduler", default="threads", help="processes, threads, synchronous or a dask-scheduler address")
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scheduler: Any = args.scheduler
    if "://" in args.scheduler:
        from distributed import Client

        scheduler = Client(args.scheduler)
    try:
        simulate_dataset(
            args.domain, args.sequences, args.frames, args.out, seed=args.seed, crop_size=args.crop_size,
            scheduler=scheduler, split=args.split, config=args.config,
        )
    except NowcastError as exc:  # one line, as nowcast.cli does
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
