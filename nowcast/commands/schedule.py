"""``nowcast watch`` and ``nowcast run-once``: scheduled operation (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import HomeOption, QuietOption, RegionOption, VerboseOption, setup

KeepOption = Annotated[int, typer.Option("--keep", min=1, help="Number of newest runs (forecast + animation) to keep.")]
NoRenderOption = Annotated[bool, typer.Option("--no-render", help="Skip the animation.")]
MethodOption = Annotated[
    Optional[str], typer.Option("--method", help="Override the region's forecast method (tmu, extrapolation, ...).")
]
SettleOption = Annotated[
    float,
    typer.Option("--settle", min=0.0, help="Seconds a file must be left unmodified before it is read."),
]


@app.command()
def watch(
    region: RegionOption,
    incoming: Annotated[Path, typer.Option("--incoming", help="Directory where new radar files arrive.")],
    interval: Annotated[float, typer.Option("--interval", min=0.0, help="Seconds between polls.")] = 10.0,
    keep: KeepOption = 12,
    no_render: NoRenderOption = False,
    method: MethodOption = None,
    settle: SettleOption = 2.0,
    max_passes: Annotated[Optional[int], typer.Option("--max-passes", min=1, help="Stop after this many passes (tests, demos).")] = None,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Ingest files as they arrive and forecast whenever a new frame completes the window.

    One instance per region (exit 2 if another holds the lock); Ctrl-C stops.
    """
    from nowcast.config import load_region
    from nowcast.schedule import watch as watch_loop

    setup(verbose, quiet)
    passes = watch_loop(
        load_region(region, home), incoming, home=home, keep=keep, interval=interval,
        render=not no_render, max_passes=max_passes, method=method, settle_seconds=settle,
    )
    typer.echo(f"watch stopped after {passes} pass(es)")


@app.command("run-once")
def run_once(
    region: RegionOption,
    incoming: Annotated[Optional[Path], typer.Option("--incoming", help="Directory where new radar files arrive (default: only forecast).")] = None,
    keep: KeepOption = 12,
    no_render: NoRenderOption = False,
    method: MethodOption = None,
    settle: SettleOption = 2.0,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """One scheduled pass, for cron or a systemd timer.

    Exit codes (docs/operations.md): 0 all done; 3 degraded (a file rejected
    or deferred, a window skipped for a gap, a forecast fell back or failed);
    4 a fault of the machine (disk full...: files left in place, retried next
    run); 2 usage error or another run holds the lock.
    """
    from nowcast.config import load_region
    from nowcast.schedule import run_once_locked

    setup(verbose, quiet)
    reg = load_region(region, home)
    report = run_once_locked(reg, incoming, home=home, keep=keep, render=not no_render, settle_seconds=settle, method=method)
    typer.echo(f"{reg.name}: {report.summary()}")
    if report.degraded:
        from nowcast.errors import PartialRunError

        raise PartialRunError(f"region {reg.name}: degraded pass: {report.summary()}")
