"""``nowcast forecast``: the latest window of a region -> a CF forecast dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import (
    DeviceOption, HomeOption, PrecisionOption, QuietOption, RegionOption, VerboseOption, setup,
)


@app.command()
def forecast(
    region: RegionOption,
    time: Annotated[
        Optional[str], typer.Option("--time", help="Reference time, ISO 8601 (UTC if no offset; default: newest frame).")
    ] = None,
    method: Annotated[
        Optional[str], typer.Option("--method", help="tmu, extrapolation, persistence, ..., or steps (pysteps STEPS, "
                                    "always an ensemble) (default: region config).")
    ] = None,
    leads: Annotated[Optional[int], typer.Option("--leads", min=1, max=48, help="Number of lead times (default: region config).")] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output .zarr or .nc (default: HOME/forecasts/REGION/...).")
    ] = None,
    device: DeviceOption = "cpu",
    precision: PrecisionOption = "auto",
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="Torch CPU threads (default: every core; 1 on a busy shared machine).")
    ] = None,
    members: Annotated[
        Optional[int], typer.Option("--members", min=1, max=1000, help="Make an ensemble of N members: the method's "
                                    "forecast perturbed by STEPS cascade noise (--method steps: pysteps STEPS itself, "
                                    "20 members unless told); exceedance probabilities at the region's "
                                    "forecast.probability_thresholds.")
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", min=0, help="Seed of the ensemble's noise (default: fixed per reference "
                                    "time, so a re-run gives the same members).")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Forecast rain rate for the next hour(s) from the region's archive.

    If the region's model cannot run, falls back to pysteps extrapolation and
    records why in the output's ``fallback_reason`` attribute. With
    ``--members N`` the product is an ensemble: members along ``realization``,
    their mean and exceedance probabilities.
    """
    from nowcast.config import load_region
    from nowcast.forecast import iso, run_forecast

    from nowcast.precision import check_choice

    setup(verbose, quiet)
    check_choice(device=device, precision=precision)
    if threads:
        import torch

        torch.set_num_threads(threads)
    reg = load_region(region, home)
    result = run_forecast(reg, home=home, time=time, method=method, leads=leads, out=out, device=device,
                          precision=precision, members=members, seed=seed)
    note = f" (fallback: {result.fallback_reason})" if result.fallback_reason else ""
    kind = f"ensemble of {result.members} members (seed {result.seed})" if result.members else "forecast"
    typer.echo(
        f"{result.method} {kind} for {reg.name} from {iso(result.reference_time)}, "
        f"{result.leads} x {reg.timestep_minutes} min -> {result.path}{note}"
    )
