"""``nowcast verify``: score a forecast file against the region archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import HomeOption, QuietOption, VerboseOption, setup


@app.command()
def verify(
    forecast: Annotated[Path, typer.Argument(help="Forecast dataset (.zarr or .nc).")],
    region: Annotated[
        Optional[str],
        typer.Option("--region", "-r", help="Region name or YAML path (default: the forecast's 'region' attribute)."),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder (default: HOME/verification/REGION).")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """CSI/POD/FAR, FSS, MSE and MAE per lead time against the archived observations
    (an ensemble: CRPS, spread/skill, ROC area, reliability and rank histogram).

    Writes FORECAST_scores.csv, FORECAST_scores.json and FORECAST_skill.png
    and prints the table.
    """
    from nowcast.config import load_region
    from nowcast.verify import scores_table, verification_dir, verify_forecast_against_archive, write_scores

    setup(verbose, quiet)
    reg = load_region(region, home) if region else None
    scores = verify_forecast_against_archive(forecast, reg, home)
    folder = out or verification_dir(scores.attrs["region"], home)
    paths = write_scores(scores, folder, Path(forecast).stem)
    table = scores_table(scores)
    if scores.attrs.get("kind") == "ensemble":
        columns = ["lead_minutes", "crps", "spread", "rmse", "spread_skill", "roc_area_1mmh", "reliability_dev_1mmh"]
        what = f"ensemble ({scores.attrs['members']} members)"
    else:
        columns = ["lead_minutes", "csi_1mmh", "pod_1mmh", "far_1mmh", *[c for c in table if c.startswith("fss_")],
                   "mse", "mae"]
        what = "forecast"
    typer.echo(
        f"{scores.attrs['method']} {what} for {scores.attrs['region']} from "
        f"{scores.attrs['forecast_reference_time']}, {len(table)} lead time(s) verified"
    )
    typer.echo(table[[c for c in columns if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"scores: {paths['csv']} (+ .json), plot: {paths['png']}")
