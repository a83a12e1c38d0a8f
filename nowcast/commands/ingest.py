"""``nowcast ingest`` (files -> region archive) and ``nowcast archive info``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.errors import NowcastError, PartialRunError
from nowcast.commands.common import HomeOption, QuietOption, RegionOption, VerboseOption, setup

log = logging.getLogger(__name__)

IngestSchedulerOption = Annotated[
    Optional[str],
    typer.Option(
        "--scheduler",
        help="'processes' (a pool of worker processes, one per core, that write their frames "
        "themselves; the default above 16 files), 'threads' (a dask LocalCluster in this process), "
        "'synchronous' (no workers), or the address of an existing dask scheduler (tcp://host:8786).",
    ),
]

#: Names of :data:`nowcast.io.readers.READERS`, for ``--reader``'s help (spelled out so that the CLI
#: starts without importing xarray; tests/test_models_cli.py keeps the two equal).
READER_NAMES = ("odim_h5", "cf_netcdf", "odim_pvol", "cfradial", "nexrad_level2", "nexrad_level3")

archive_app = typer.Typer(help="Inspect a region's Zarr archive, or remove frames from it.", no_args_is_help=True)
app.add_typer(archive_app, name="archive")


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Radar/satellite files to archive (any supported format).")],
    region: RegionOption,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace archived frames whose field differs.")] = False,
    reader: Annotated[
        Optional[str],
        typer.Option("--reader", help=f"Force a reader by name: {', '.join(READER_NAMES)} (default: detect from the content)."),
    ] = None,
    scheduler: IngestSchedulerOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Read, regrid and append FILES to the region's archive.

    Bad files are skipped (one log line each) and the others are still
    ingested; a summary lists the skipped files and the exit code is 3
    (partial), or 2 if no file went in. A fault of the machine (disk full)
    exits 4 and leaves the archive at its last commit.
    """
    from nowcast.config import load_region
    from pipelines.ingest import ingest_files

    setup(verbose, quiet)
    reg = load_region(region, home)
    report = ingest_files(files, reg, home=home, scheduler=scheduler, overwrite=overwrite, reader=reader, progress=progress and not quiet)
    typer.echo(report.summary())
    if report.skipped:
        typer.echo(f"skipped {len(report.skipped)} file(s):", err=True)
        for skipped in report.skipped:
            typer.echo(f"  {skipped.path}: {skipped.reason}", err=True)
        # A NowcastError (not typer.Exit, whose code nowcast.cli.main drops)
        # gives exit code 2 and a last line naming the first bad file.
        first = report.skipped[0]
        more = f" (and {len(report.skipped) - 1} more skipped file(s) listed above)" if len(report.skipped) > 1 else ""
        if report.ingested or report.result.unchanged:
            raise PartialRunError(f"{first.path}: {first.reason}{more}; the other files were ingested")
        raise NowcastError(f"{first.path}: {first.reason}{more}; no file was ingested")


@archive_app.command("info")
def archive_info(
    region: RegionOption,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    frames: Annotated[int, typer.Option("--frames", min=0, help="Newest frames listed in the table (JSON lists all).")] = 24,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Times, gaps and per-frame value ranges of a region's archive."""
    from nowcast.io.archive import Archive

    setup(verbose, quiet)
    info = Archive.open(region, home=home, create=False).info()
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    _print_info(info, frames)


@archive_app.command("drop")
def archive_drop(
    region: RegionOption,
    time: Annotated[str, typer.Option("--time", help="Frame time to remove, ISO 8601 (UTC if no offset); with --end, the first.")],
    end: Annotated[Optional[str], typer.Option("--end", help="Remove every frame from --time to this time (inclusive).")] = None,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Remove frames (a wrongly stamped or bad frame) from a region's archive, crash-safely."""
    from nowcast.forecast import iso, to_utc_datetime64
    from nowcast.io.archive import Archive

    setup(verbose, quiet)
    start = to_utc_datetime64(time, "--time")
    stop = to_utc_datetime64(end, "--end") if end else None
    removed = Archive.open(region, home=home, create=False).drop(start, stop)
    if not removed:
        raise NowcastError(f"region {region}: no archived frame {'from ' + iso(start) + ' to ' + iso(stop) if stop is not None else 'at ' + iso(start)}")
    typer.echo(f"{region}: dropped {len(removed)} frame(s) from {iso(removed[0])} to {iso(removed[-1])}")


def _print_info(info, frames: int) -> None:  # info: ArchiveInfo
    from rich.console import Console
    from rich.table import Table

    d = info.to_dict()
    console = Console()
    console.print(
        f"[bold]{d['region']}[/]  {d['path']}\n"
        f"{d['variable']} ({d['units']}), {d['n_frames']} frame(s) from {d['first']} to {d['last']}, "
        f"timestep {d['timestep_minutes']} min, {d['missing_frames']} missing in {len(d['gaps'])} gap(s)"
    )
    if d["gaps"]:
        gaps = Table(title="Gaps")
        for col in ("after", "before", "missing frames"):
            gaps.add_column(col)
        for g in d["gaps"]:
            gaps.add_row(g["after"], g["before"], str(g["missing"]))
        console.print(gaps)
    if frames and d["frames"]:
        shown = d["frames"][-frames:]
        table = Table(title=f"Frames (newest {len(shown)} of {d['n_frames']})")
        for col in ("time (UTC)", "min", "max", "mean", "wet %", "valid %"):
            table.add_column(col, justify="right")
        for f in shown:
            wet = "-" if f["wet_fraction"] is None else f"{100 * f['wet_fraction']:.1f}"
            table.add_row(f["time"], f"{f['min']:.2f}", f"{f['max']:.2f}", f"{f['mean']:.3f}", wet, f"{100 * f['valid_fraction']:.1f}")
        console.print(table)
