"""``nowcast demo``: the main job end to end on the default region."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import HomeOption, QuietOption, VerboseOption, setup

DEFAULT_REGION = "swiss-south"


@app.command()
def demo(
    region: Annotated[str, typer.Option("--region", "-r", help="Region to run on.")] = DEFAULT_REGION,
    no_render: Annotated[bool, typer.Option("--no-render", help="Skip maps and animation.")] = False,
    method: Annotated[
        Optional[str], typer.Option("--method", "-m", help="Forecast method (default: the region's, e.g. 'tmu' for the shipped model).")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Simulate radar files from the real sample composite, ingest, forecast, verify, render."""
    from nowcast.config import load_region
    from nowcast.demo import PROVENANCE, run_demo

    setup(verbose, quiet)
    result = run_demo(load_region(region, home), home=home, render=not no_render, method=method)
    typer.echo(f"input files ({PROVENANCE}): {result.incoming}")
    typer.echo(f"archive:   {result.archive}")
    typer.echo(f"forecast:  {result.forecast} (method: {result.method})")
    if result.scores:
        typer.echo(f"scores:    {result.scores}")
    if result.animation:
        typer.echo(f"animation: {result.animation}")
