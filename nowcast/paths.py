"""Where nowcast keeps its data.

Everything the application writes lives under one home directory (archives,
forecasts, renders, trained models), chosen by ``--home``, else the
``NOWCAST_HOME`` environment variable, else ``~/.nowcast``. Nothing is ever
written inside the installed package, so a read-only site-packages works.

Model checkpoints are looked up in ``HOME/models`` first, then in the shipped
zoo (the source checkout's ``models/zoo``, or ``nowcast/_zoo`` inside an
installed wheel): :func:`checkpoint_candidates` is the one rule, and
:func:`checkpoint_output_path` says where training writes (docs/models.md).
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
    """Directory of the checkpoints a user trains or retrains: ``HOME/models``.

    A checkpoint here named like a shipped one (``HOME/models/NAME.pt``) is
    used instead of the shipped one (:func:`checkpoint_candidates`).
    """
    return home_dir(home) / "models"


# ------------------------------------------------------------ model checkpoints
#: Where a model config's ``checkpoint`` points for a model of the shipped zoo
#: (``checkpoint: models/zoo/NAME.pt``, relative to the source checkout).
ZOO_DIR = Path("models") / "zoo"
#: The shipped zoo inside an installed wheel: ``models/zoo`` packaged as ``nowcast/_zoo``
#: (pyproject.toml, ``[tool.hatch.build.targets.wheel]``).
PACKAGED_ZOO = "_zoo"


def package_dir() -> Path:
    """The installed ``nowcast`` package (``.../site-packages/nowcast`` or the checkout's ``nowcast/``)."""
    return Path(__file__).resolve().parent


def source_checkout() -> Path | None:
    """Root of the source checkout nowcast runs from, or ``None`` when installed from a wheel.

    A checkout (editable install, ``python -m nowcast`` in the repository) is
    recognised by nowcast's own ``pyproject.toml`` and ``configs/`` beside the
    package; in a wheel the package's parent is ``site-packages``.
    """
    root = package_dir().parent
    pyproject = root / "pyproject.toml"
    if not (pyproject.is_file() and (root / "configs").is_dir()):
        return None
    try:
        text = pyproject.read_text(errors="replace")
    except OSError:
        return None
    return root if 'name = "nowcast"' in text else None


def shipped_zoo_dirs() -> list[tuple[str, Path]]:
    """The shipped zoo folders that exist, in lookup order: ``checkout`` then ``package``."""
    found = []
    root = source_checkout()
    if root is not None and (root / ZOO_DIR).is_dir():
        found.append(("checkout", root / ZOO_DIR))
    packaged = package_dir() / PACKAGED_ZOO
    if packaged.is_dir():
        found.append(("package", packaged))
    return found


def _zoo_file(checkpoint: Path) -> str | None:
    """``NAME.pt`` when ``checkpoint`` is the relative ``models/zoo/NAME.pt`` of a shipped-zoo model."""
    if checkpoint.is_absolute() or len(checkpoint.parts) != 3 or Path(*checkpoint.parts[:2]) != ZOO_DIR:
        return None
    return checkpoint.name


def project_file(path: str | Path, home: str | Path | None = None) -> Path:
    """A path written in a config (training data, a checkpoint outside the zoo), made absolute.

    Absolute paths stay as they are; relative ones are under the source
    checkout when running from one (today's behaviour of the project's own
    workflow), else under ``HOME`` (an installed wheel never writes into
    site-packages).
    """
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    root = source_checkout()
    return (root if root is not None else home_dir(home)) / path


def checkpoint_candidates(checkpoint: str | Path, home: str | Path | None = None) -> list[tuple[str, Path]]:
    """Where the checkpoint a model config names is looked for, in order, as ``(where, path)``.

    This is the one lookup rule of nowcast's model checkpoints (docs/models.md):

    1. A config's ``checkpoint: models/zoo/NAME.pt`` (a model of the shipped
       zoo) is looked for as

       * ``home``: ``HOME/models/NAME.pt`` (a model the user trained or
         retrained: it wins over the shipped one of the same name),
       * ``checkout``: ``models/zoo/NAME.pt`` of the source checkout (when
         nowcast runs from one: editable install, development),
       * ``package``: ``nowcast/_zoo/NAME.pt`` inside the installed package
         (the zoo shipped in the wheel).

    2. An absolute ``checkpoint`` is only that file (``path``).
    3. Any other relative ``checkpoint`` is :func:`project_file`: under the
       source checkout (``checkout``), else under ``HOME`` (``home``).

    The first candidate that exists is used (:func:`find_checkpoint`);
    training writes to :func:`checkpoint_output_path`.
    """
    path = Path(checkpoint).expanduser()
    if path.is_absolute():
        return [("path", path)]
    name = _zoo_file(path)
    root = source_checkout()
    if name is None:
        return [("checkout", root / path)] if root is not None else [("home", home_dir(home) / path)]
    candidates = [("home", models_dir(home) / name)]
    if root is not None:
        candidates.append(("checkout", root / path))
    candidates.append(("package", package_dir() / PACKAGED_ZOO / name))
    return candidates


def find_checkpoint(checkpoint: str | Path, home: str | Path | None = None) -> tuple[str, Path] | None:
    """The first existing ``(where, path)`` of :func:`checkpoint_candidates`, or ``None``."""
    return next(((where, p) for where, p in checkpoint_candidates(checkpoint, home) if p.is_file()), None)


def checkpoint_output_path(checkpoint: str | Path, home: str | Path | None = None) -> Path:
    """Where training (``nowcast train``, ``nowcast pretrain``) writes a config's checkpoint.

    * In a source checkout: where the config says, relative to the checkout
      (``models/zoo/NAME.pt`` is the project's own zoo, so the zoo workflow
      and its ``SHA256SUMS`` are unchanged).
    * Installed from a wheel (no checkout): a shipped-zoo checkpoint
      ``models/zoo/NAME.pt`` goes to ``HOME/models/NAME.pt`` (where
      :func:`checkpoint_candidates` looks first, so the retrained model is
      used from then on); another relative path goes under ``HOME``.
    * An absolute path is always used as it is.
    """
    path = Path(checkpoint).expanduser()
    if path.is_absolute():
        return path
    if source_checkout() is not None:
        return project_file(path, home)
    name = _zoo_file(path)
    return models_dir(home) / name if name is not None else home_dir(home) / path


def runs_dir(region: str, home: str | Path | None = None) -> Path:
    """Directory for scheduled-run state (locks, logs, bad files)."""
    return home_dir(home) / "runs" / region
