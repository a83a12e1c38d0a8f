"""``nowcast hindcast``: forecast at every reference time of a period, verify, aggregate per method and lead."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import (
    DeviceOption, HomeOption, PrecisionOption, QuietOption, RegionOption, VerboseOption, setup,
)

#: Spelled out (not imported from nowcast.hindcast) so that the CLI starts without importing xarray.
DEFAULT_METHODS = ["tmu", "extrapolation", "sprog", "persistence"]


@app.command(context_settings={"allow_extra_args": True})
def hindcast(
    ctx: typer.Context,
    region: RegionOption,
    start: Annotated[str, typer.Option("--start", help="First reference time, ISO 8601 (UTC if no offset).")],
    end: Annotated[str, typer.Option("--end", help="Last reference time, ISO 8601 (UTC if no offset); inclusive.")],
    methods: Annotated[
        Optional[list[str]],
        typer.Option(
            "--methods",
            metavar="METHOD...",
            help="Methods to compare: tmu and/or baselines (extrapolation, sprog, persistence, lagrangian-trend, "
            "anvil), and with --members the ensemble method steps, several after one --methods (default: tmu "
            "extrapolation sprog persistence).",
        ),
    ] = None,
    leads: Annotated[
        Optional[int], typer.Option("--leads", min=1, max=48, help="Lead times per forecast (default: region config).")
    ] = None,
    members: Annotated[
        int,
        typer.Option("--members", help="Also run tmu, extrapolation (and steps) as ensembles of N members per "
                     "window and score them: CRPS, ROC area, reliability, spread/skill (default 0: none)."),
    ] = 0,
    seed: Annotated[
        Optional[int],
        typer.Option("--seed", help="Mixed into each window's ensemble seed (default: the seed nowcast forecast "
                     "gives that reference time). The scores are the same on a re-run."),
    ] = None,
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            "--scheduler",
            help="Address of an existing dask scheduler (tcp://host:8786), or 'processes' (a LocalCluster of worker "
            "processes on loopback, the default), 'threads' (a LocalCluster in this process) or 'synchronous' "
            "(no cluster). The scores are the same under every scheduler.",
        ),
    ] = None,
    device: DeviceOption = "cpu",
    precision: PrecisionOption = "auto",
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder (default: HOME/hindcasts/REGION).")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Score methods over a period of the archive: CSI/POD/FAR, FSS, MSE, MAE per lead time.

    At every archived time from --start to --end whose input window is
    complete, each method forecasts from the archive and is verified against
    the frames that followed; scores are accumulated over the period per
    method and lead (pysteps' accumulators). Writes REGION_hindcast_FIRST_LAST
    .csv, .json and .png and prints the table. A method failing on a window
    is counted, not fatal. With --members N, tmu, extrapolation and steps are
    also scored as N-member ensembles (REGION_hindcast_FIRST_LAST_ensemble.csv).
    """
    from nowcast.config import load_region
    from nowcast.hindcast import markdown_table, run_hindcast

    setup(verbose, quiet)
    if ctx.args and not methods:
        ctx.fail(f"Got unexpected extra argument(s) ({' '.join(ctx.args)})")
    # click has no option taking a variable number of values: the names after
    # the first one arrive as extra arguments.
    names = _split([*(methods or []), *ctx.args]) or DEFAULT_METHODS
    reg = load_region(region, home)
    show = not quiet
    result = run_hindcast(reg, start, end, names, home=home, scheduler=scheduler, leads=leads, device=device,
                          precision=precision, out=out, progress=_progress_bar(show, reg.name), members=members,
                          seed=seed)
    first, last = result.reference_times[0], result.reference_times[-1]
    from nowcast.forecast import iso

    typer.echo(
        f"hindcast of {reg.name}: {result.reference_times.size} reference times {iso(first)} .. {iso(last)}, "
        f"{len(result.methods)} method(s), on {result.scheduler} ({result.elapsed_s:.1f} s)"
    )
    typer.echo(markdown_table(result))
    for method in result.methods:
        if result.failures[method]:
            reason = next(iter(result.failure_reasons[method]))
            typer.echo(f"{method}: failed on {result.failures[method]} of {result.reference_times.size} windows, "
                       f"left out of its scores (most often: {reason})")
    for method in result.ensemble_methods:
        if result.ensemble_failures.get(method):
            reason = next(iter(result.ensemble_failure_reasons[method]))
            typer.echo(f"{method} ensemble: failed on {result.ensemble_failures[method]} windows, left out of its "
                       f"scores (most often: {reason})")
    if result.skipped_windows:
        typer.echo(f"{len(result.skipped_windows)} window(s) could not be read and were skipped (see the JSON)")
    typer.echo(f"scores: {result.paths['csv']} (+ .json), plot: {result.paths['png']}")
    if "ensemble_csv" in result.paths:
        typer.echo(f"ensemble scores: {result.paths['ensemble_csv']}")


def _split(values: list[str]) -> list[str]:
    """Method names, also comma- or space-separated (``--methods "tmu,persistence"``)."""
    out: list[str] = []
    for value in values:
        out += [v for v in value.replace(",", " ").split() if v]
    return out


def _progress_bar(enabled: bool, region: str):
    """A rich progress callback on stderr when it is a terminal, else ``None``."""
    import sys

    if not enabled or not sys.stderr.isatty():
        return None
    state: dict[str, object] = {}

    def advance(done: int, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if "bar" not in state:
            bar = Progress(TextColumn(f"hindcast {region}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           console=Console(stderr=True), transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task("windows", total=total)
        bar = state["bar"]
        bar.update(state["task"], completed=done)  # type: ignore[union-attr]
        if done >= total:
            bar.stop()  # type: ignore[union-attr]

    return advance
