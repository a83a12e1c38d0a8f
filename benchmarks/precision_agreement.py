"""Does bf16 change anything a forecaster sees? The same checkpoint in fp32 and bf16 on held-out sets.

For each test store: the largest per-cell difference in dBR where either
forecast rains (and in mm/h), the mean absolute difference, and CSI at 1 and
5 mm/h and FSS (16 km) per lead of both, with the largest per-lead difference.
Issue #13's tolerance: CSI/FSS per lead within 0.005.

Usage::

    python benchmarks/precision_agreement.py models/zoo/swiss-south-tmu.pt \\
        --test data/sim/swiss-south-sameday.zarr data/sim/swiss-south-growth-64.zarr --sequences 16
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

log = logging.getLogger("precision_agreement")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--test", type=Path, nargs="+", default=[ROOT / "data/sim/swiss-south-sameday.zarr"])
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--leads", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch
    import xarray as xr

    from nowcast.models.skill import score_method
    from nowcast.models.zoo import load_forecaster
    from nowcast.precision import bf16_supported

    if not bf16_supported("cpu"):
        raise SystemExit("this CPU has no bf16 units: nothing to compare")
    torch.set_num_threads(1)
    forecasters = {p: load_forecaster(args.checkpoint).to("cpu", p) for p in ("fp32", "bf16")}
    n_in = int(forecasters["fp32"].config.input_frames)
    results = {}
    for store in args.test:
        seqs = np.asarray(xr.open_zarr(store)["rain_rate"].values[: args.sequences, : n_in + args.leads], dtype=np.float32)
        outs = {p: [] for p in forecasters}
        scores = {}
        for p, f in forecasters.items():
            def predict(w, n, f=f, p=p):
                out = f.predict(w, n)
                outs[p].append(out)
                return out

            scores[p] = score_method(predict, seqs, n_in, args.leads)
        a, b = np.stack(outs["fp32"]), np.stack(outs["bf16"])
        wet = (np.nan_to_num(a) >= 0.1) | (np.nan_to_num(b) >= 0.1)
        db = lambda v: 10 * np.log10(np.maximum(np.nan_to_num(v), 0.1))  # noqa: E731
        ddb = np.abs(db(a) - db(b))[wet]
        dmm = np.abs(np.nan_to_num(a) - np.nan_to_num(b))[wet]
        row = {
            "sequences": int(len(seqs)),
            "max_abs_diff_dbr": float(ddb.max()), "mean_abs_diff_dbr": float(ddb.mean()),
            "p99_abs_diff_mmh": float(np.quantile(dmm, 0.99)), "max_abs_diff_mmh": float(dmm.max()),
            "nan_masks_equal": bool(np.array_equal(np.isnan(a), np.isnan(b))),
        }
        for key in ("csi@1", "csi@5", "fss@16km"):
            fa, fb = np.asarray(scores["fp32"][key]), np.asarray(scores["bf16"][key])
            row[f"{key}_fp32_mean"], row[f"{key}_bf16_mean"] = float(np.nanmean(fa)), float(np.nanmean(fb))
            row[f"{key}_max_lead_diff"] = float(np.nanmax(np.abs(fa - fb)))
        results[store.stem] = row
        log.info("%s: %s", store.stem, json.dumps(row))
    print("| test set | max / mean abs diff (dBR, where wet) | p99 / max abs diff (mm/h) | CSI@1 fp32 / bf16 (max lead diff) "
          "| CSI@5 fp32 / bf16 (max lead diff) | FSS fp32 / bf16 (max lead diff) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['max_abs_diff_dbr']:.2f} / {r['mean_abs_diff_dbr']:.3f} | {r['p99_abs_diff_mmh']:.3f} / "
              f"{r['max_abs_diff_mmh']:.2f} | " + " | ".join(
                  f"{r[k + '_fp32_mean']:.3f} / {r[k + '_bf16_mean']:.3f} ({r[k + '_max_lead_diff']:.4f})"
                  for k in ("csi@1", "csi@5", "fss@16km")) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
