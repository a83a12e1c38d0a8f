"""``nowcast pretrain``: train a region's zoo (its sources, then its forecaster) end to end.

The same pipeline as ``python -m pipelines.pretrain`` (which keeps working):
:func:`pipelines.pretrain.run`.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import HomeOption, QuietOption, VerboseOption, setup

log = logging.getLogger(__name__)


@app.command()
def pretrain(
    region: Annotated[
        str, typer.Option("--region", "-r", help="Region whose zoo is trained (configs/regions/NAME.yaml).")
    ] = "swiss-south",
    only: Annotated[
        Optional[list[str]],
        typer.Option("--only", help="Train only this model of the region (repeat for several)."),
    ] = None,
    iterations: Annotated[
        Optional[int], typer.Option("--iterations", "-n", min=1, help="Override every config's iteration count.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Start every model from scratch instead of resuming.")] = False,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="Torch CPU threads (1 per run is fastest when runs share the cores).")
    ] = None,
    scheduler: Annotated[
        str, typer.Option("--scheduler", help="dask scheduler for simulating missing training data (threads, synchronous, processes).")
    ] = "threads",
    checksums_only: Annotated[
        bool, typer.Option("--checksums-only", help="Only rewrite SHA256SUMS and MANIFEST.json from the checkpoints of the zoo.")
    ] = False,
    promote: Annotated[
        Optional[Path],
        typer.Option("--promote", metavar="CHECKPOINT",
                     help="Instead of training: make this measured checkpoint the one model of --only (its config "
                          "must match), record its held-out skill and the checksums."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Pretrain the region's sources, train its TMU forecaster and measure its held-out skill.

    Missing training data are simulated from real seeds first; training
    resumes where an interrupted run stopped (--force starts again). Every
    checkpoint's SHA-256 and the command are recorded in SHA256SUMS and
    MANIFEST.json beside it. In a source checkout the checkpoints go where
    each config says (models/zoo); installed from a wheel they go to
    HOME/models, which the model lookup reads first (docs/models.md).
    """
    from pipelines.pretrain import promote as promote_candidate
    from pipelines.pretrain import run

    setup(verbose, quiet)
    if promote is not None:
        target = promote_candidate(promote, only or [], region, home)
        typer.echo(f"{promote} -> {target}")
        return
    argv = ["--region", region]
    for name in only or []:
        argv += ["--only", name]
    if iterations:
        argv += ["--iterations", str(iterations)]
    if force:
        argv.append("--force")
    if threads:
        argv += ["--threads", str(threads)]
    if not progress:
        argv.append("--no-progress")
    command = "nowcast pretrain " + " ".join(shlex.quote(a) for a in argv)
    done = run(region, only=only or None, iterations=iterations, force=force, scheduler=scheduler,
               progress=progress and not quiet, threads=threads, checksums_only=checksums_only, command=command,
               home=home)
    if checksums_only:
        typer.echo(f"{region}: checksums rewritten")
        return
    for m in done:
        typer.echo(f"{m.name}: {m.iterations} iterations in {m.seconds:.0f} s -> {m.checkpoint} sha256 {m.sha256[:12]}")
