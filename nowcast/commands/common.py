"""Options shared by every command (``--home``, ``--verbose``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

HomeOption = Annotated[
    Optional[Path],
    typer.Option("--home", help="Data directory (default: $NOWCAST_HOME or ~/.nowcast)."),
]
VerboseOption = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="Debug log output; on an error, also its traceback.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
RegionOption = Annotated[str, typer.Option("--region", "-r", help="Region name (configs/regions/NAME.yaml) or YAML path.")]
DeviceOption = Annotated[
    str, typer.Option("--device", help="Where the neural forecaster runs: cpu, cuda or auto (CUDA when present).")
]
PrecisionOption = Annotated[
    str, typer.Option("--precision", help="Network arithmetic: auto (bf16 only where this machine runs it faster), bf16 or fp32.")
]
SchedulerOption = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Address of an existing dask scheduler (default: a LocalCluster)."),
]


def setup(verbose: int = 0, quiet: bool = False) -> None:
    """Configure logging for a command run."""
    from nowcast.logging_setup import configure_logging

    configure_logging(-1 if quiet else verbose)
