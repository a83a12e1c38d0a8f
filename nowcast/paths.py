"""Where nowcast keeps its data.

Everything the application writes lives under one home directory (archives,
forecasts, renders, trained models), chosen by ``--home``, else the
``NOWCAST_HOME`` environment variable, else ``~/.nowcast``. Nothing is ever
written inside the installed package, so a read-only site-packages works.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "NOWCAST_HOME"


def home_dir(override: str | Path | None = None) -> Path:
    """Return the data home, creating it if needed.

    Parameters
    ----------
    override
        An explicit directory (the CLI's ``--home``); wins over the
        environment so a test or a cron job can isolate its data.
    """
    if override is not None:
        root = Path(override)
    elif os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
    else:
        root = Path.home() / ".nowcast"
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def archive_path(region: str, home: str | Path | None = None) -> Path:
    """Zarr archive of one region: ``HOME/archives/REGION.zarr``."""
    return home_dir(home) / "archives" / f"{region}.zarr"


def forecasts_dir(region: str, home: str | Path | None = None) -> Path:
    """Directory holding a region's forecast datasets."""
    return home_dir(home) / "forecasts" / region


def renders_dir(region: str, home: str | Path | None = None) -> Path:
    """Directory holding a region's maps and animations."""
    return home_dir(home) / "renders" / region


def models_dir(home: str | Path | None = None) -> Path:
    """Directory for checkpoints a user trains (shipped ones live in the repo)."""
    return home_dir(home) / "models"


def runs_dir(region: str, home: str | Path | None = None) -> Path:
    """Directory for scheduled-run state (locks, logs, bad files)."""
    return home_dir(home) / "runs" / region
