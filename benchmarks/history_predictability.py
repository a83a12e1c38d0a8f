"""Does a training store's recent history predict its future, in the Lagrangian frame?

A Lagrangian forecaster can beat extrapolation where it rains more or less
than the analysis later, and it can know that only from the window's history
(the inputs moved to the analysis time). If over the training data that
history does not predict the change to come, a network trained on it learns
to ignore it (a static correction by intensity and lead is all that pays),
however it is built. This measures that, on the batches the training sees:

* per wet interior cell (> 1 mm/h at the analysis, ``margin`` cells from the
  edge, valid in every frame used), the correlation between the history,
  the Lagrangian change over the input window (analysis minus oldest input,
  dB), and the change from the analysis to +30 and +60 min; and the
  least-squares slope of the +60 min change on the history (a trend that
  persists over the hour gives ``leads / (inputs - 1)``, 4 for 4 inputs and
  12 leads);
* the same on block means (``--block`` cells, 8 = 16 km at 2 km), where
  growth and decay areas of 20-60 km would show;
* with ``--model``: the model's *history response* (its change minus its
  change on the frozen window, :func:`benchmarks.heldout_skill.history_only`)
  at +60 min, as a slope on the truth's change, on the same cells.

Usage::

    python benchmarks/history_predictability.py --config swiss-south-tmu
    python benchmarks/history_predictability.py --config swiss-south-tmu --trend-only \\
        --model models/runs/bias/swiss-south-tmu-bias0.03-k3-h16-trend0.5-it2000-s0.pt

``--trend-only`` measures the trend samples alone (``training.persistent_trend_fraction``:
every sample persistent and trended), the data where the history is meant to pay.
``--by-regime`` splits the simulated sequences by the regime they were simulated in
(the store's ``regime`` variable: stratiform, growth_decay, convective).
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

log = logging.getLogger("history_predictability")


def block_means(field: np.ndarray, block: int) -> np.ndarray:
    """Means over ``block`` x ``block`` tiles of a 2-D field (a ragged edge is dropped)."""
    ny, nx = (s // block * block for s in field.shape)
    return field[:ny, :nx].reshape(ny // block, block, nx // block, block).mean(axis=(1, 3))


def predictability(history: np.ndarray, change30: np.ndarray, change60: np.ndarray) -> dict[str, float]:
    """Correlations of the history with the +30 and +60 min changes, and the +60 min slope on it."""
    if history.size < 3:
        raise ValueError(f"{history.size} cells: too few to correlate")
    return {"cells": int(history.size),
            "corr_30": float(np.corrcoef(history, change30)[0, 1]),
            "corr_60": float(np.corrcoef(history, change60)[0, 1]),
            "slope_60": float(np.polyfit(history, change60, 1)[0]),
            "mean_abs_history_db": float(np.abs(history).mean()),
            "mean_abs_change60_db": float(np.abs(change60).mean())}


def _regime_names(path: Path) -> dict[int, str] | None:
    """Regime of every stored sequence by index, from the store's ``regime`` flags (None: no such variable)."""
    import xarray as xr

    with xr.open_zarr(path) as ds:
        if "regime" not in ds:
            return None
        codes = ds["regime"].values
        names = str(ds["regime"].attrs.get("flag_meanings", "")).split()
    return {i: names[int(c)] if 0 <= int(c) < len(names) else str(int(c)) for i, c in enumerate(codes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="swiss-south-tmu", help="Model config whose training store and batches to use.")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--margin", type=int, default=8, help="Cells left out along every edge (inflow).")
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--trend-only", action="store_true", help="Every sample a trend sample (see the docstring).")
    parser.add_argument("--model", type=Path, help="Also measure this Lagrangian checkpoint's history response.")
    parser.add_argument("--by-regime", action="store_true", help="One result per simulated regime (see the docstring).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.lagrangian import db_params
    from nowcast.training import ZarrSequences, sequences_path, split_batch

    torch.set_num_threads(2)
    config = load_model_config(find_model_config(args.config))
    if config.frame != "lagrangian":
        raise SystemExit(f"{args.config}: not a Lagrangian model config")
    update = {"batch_size": args.batch_size, "intensity_shift_db": None, "persistent_fraction": 0.0,
              "persistent_trend_fraction": 0.0}
    if args.trend_only:
        update.update(persistent_fraction=1.0, persistent_trend_fraction=1.0)
    config = config.model_copy(update={"training": config.training.model_copy(update=update)})
    _, zero, scale = db_params(config.data.normaliser)
    n_in = config.data.input_frames
    leads = config.data.output_frames
    if leads < 12:
        raise SystemExit(f"{args.config}: {leads} leads, this needs 12 (+60 min)")
    forecaster = None
    if args.model:
        from benchmarks.heldout_skill import history_only
        from nowcast.models.zoo import load_forecaster

        forecaster = history_only(load_forecaster(args.model))
    store = ZarrSequences(sequences_path(config), config)
    regime_of = _regime_names(store.path) if args.by_regime else None
    if args.by_regime and (args.trend_only or regime_of is None):
        raise SystemExit("--by-regime: needs simulated sequences with a 'regime' variable (and not --trend-only)")
    m = args.margin
    groups: dict[str, dict[str, list[np.ndarray]]] = {}
    samples = 0
    seed, size = config.training.seed, config.training.batch_size
    for k in range(args.batches):
        x, valid = split_batch(store.batch(seed, 0, k, size))
        seqs = store.sequences(seed, 0, k, size)
        db = x.numpy()[:, :, 0] * scale + zero
        ok = valid.numpy()[:, :, 0].astype(bool)
        for b in range(db.shape[0]):
            a = db[b, n_in - 1]
            wet = (a > 0.0) & ok[b, 0] & ok[b, n_in + 5] & ok[b, n_in + 11]
            wet[:m], wet[-m:], wet[:, :m], wet[:, -m:] = False, False, False, False
            if wet.sum() < 50:
                continue
            samples += 1
            group = regime_of[int(seqs[b])] if regime_of is not None else "all"
            cells = groups.setdefault(group, {key: [] for key in ("h", "c30", "c60", "bh", "b30", "b60", "r60")})
            history, c30, c60 = a - db[b, 0], db[b, n_in + 5] - a, db[b, n_in + 11] - a
            cells["h"].append(history[wet])
            cells["c30"].append(c30[wet])
            cells["c60"].append(c60[wet])
            inner = (slice(m, -m), slice(m, -m))
            blocks_wet = block_means(wet[inner].astype(float), args.block) > 0.5
            for key, f in (("bh", history), ("b30", c30), ("b60", c60)):
                cells[key].append(block_means(f[inner], args.block)[blocks_wet])
            if forecaster is not None:
                response = forecaster._changes(x.numpy()[b, :n_in, 0], leads)[11] * scale
                cells["r60"].append(response[wet])
    if not samples:
        raise SystemExit("no sample with enough rain")
    result: dict = {"config": args.config, "trend_only": args.trend_only, "samples": samples}
    for group, cells in sorted(groups.items()):
        cat = {k: np.concatenate(v) for k, v in cells.items() if v}
        entry = {"samples": len(cells["h"]), "cells": predictability(cat["h"], cat["c30"], cat["c60"]),
                 f"blocks_{args.block}": predictability(cat["bh"], cat["b30"], cat["b60"])}
        if "r60" in cat:
            entry["model"] = str(args.model)
            entry["history_response_slope_on_truth_60"] = float(np.polyfit(cat["c60"], cat["r60"], 1)[0])
            entry["history_response_corr_with_truth_60"] = float(np.corrcoef(cat["c60"], cat["r60"])[0, 1])
        if regime_of is None:
            result.update(entry)
        else:
            result.setdefault("regimes", {})[group] = entry
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
