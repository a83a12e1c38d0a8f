"""Typed configuration: regions (and, through ``nowcast.models``, models).

Configs are YAML files validated by pydantic with unknown keys forbidden, so a
typo such as ``resolutoin`` fails loudly with the key's name instead of being
silently ignored. Regions are looked up by name in ``HOME/configs/regions``
(user overrides) and then in the configs shipped with the project.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nowcast.errors import ConfigError
from nowcast.paths import home_dir


def shipped_configs_dir() -> Path:
    """Directory of the configs that come with the project.

    In a source checkout (editable install) this is the repository's
    ``configs/``; in a wheel the same folder is packaged as ``nowcast/_configs``.
    """
    packaged = Path(__file__).parent / "_configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "configs"


def project_root() -> Path:
    """Root of the source checkout (where ``models/`` with shipped weights lives)."""
    return Path(__file__).resolve().parent.parent


class StrictModel(BaseModel):
    """Base for configs: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ZRRelation(StrictModel):
    """Marshall-Palmer style Z = a R^b relation used for dBZ <-> mm/h."""

    a: float = Field(200.0, gt=0)
    b: float = Field(1.6, gt=0)


class ForecastSettings(StrictModel):
    """How ``nowcast forecast`` runs for a region."""

    method: Literal["tmu", "extrapolation", "persistence"] = "extrapolation"
    model: str | None = Field(
        None, description="Model config (path or name in configs/models) used for method 'tmu'."
    )
    input_frames: int = Field(4, ge=2, le=32)
    leads: int = Field(12, ge=1, le=48)
    max_input_age_minutes: float = Field(
        15.0, gt=0, description="Refuse a window whose newest frame is older than this."
    )
    probability_thresholds: tuple[float, ...] = Field(
        (0.5, 1.0, 5.0, 10.0), min_length=1,
        description="Rain rates (mm/h) of an ensemble's exceedance probabilities (nowcast forecast --members).",
    )

    @field_validator("probability_thresholds")
    @classmethod
    def _increasing_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(v <= 0 for v in value) or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"must be positive and increasing, got {list(value)}")
        return value


class IngestSettings(StrictModel):
    """What the archive accepts (docs/operations.md, "What gets in").

    Physically impossible values never reach the archive: negative or
    non-finite rain rates and reflectivities above ``max_reflectivity_dbz``
    (or rain above ``max_rain_rate``) are masked to "no data" with a warning
    naming the file and the count; a file where more than
    ``max_implausible_fraction`` of the covered cells are implausible is
    refused as a whole (it is more likely a wrong-units or corrupt file than
    a few bad cells). Times later than now plus ``future_tolerance_minutes``
    or before ``earliest_time`` are refused: one such frame would otherwise
    make every later window look stale or create a gap of millions of frames.
    """

    max_rain_rate: float = Field(500.0, gt=0, description="mm/h above which a rain rate is implausible (world record ~ 400 mm/h over 5 min).")
    max_reflectivity_dbz: float = Field(80.0, description="dBZ above which a reflectivity is implausible.")
    max_implausible_fraction: float = Field(0.25, ge=0, le=1, description="Refuse the file above this fraction of implausible covered cells.")
    future_tolerance_minutes: float = Field(15.0, ge=0, description="Refuse frames stamped later than now plus this.")
    earliest_time: str = Field("1990-01-01T00:00:00Z", description="Refuse frames stamped before this (ISO 8601, UTC).")
    duplicates: Literal["first", "newest", "reject"] = Field(
        "first",
        description="Two files with different fields for the same time: keep the one archived first ('first', the "
                    "archive's idempotency), replace it with the newer file ('newest', by modification time), or "
                    "refuse both and keep neither ('reject'); every conflict is reported either way.",
    )

    @field_validator("earliest_time")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        try:
            np.datetime64(str(value).rstrip("Z"), "s")
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
        return value


class Region(StrictModel):
    """A forecast region: one grid, one archive, one forecaster.

    ``extent`` is given as cell *edges* ``[xmin, ymin, xmax, ymax]`` in the
    units of ``crs`` (metres for every projected CRS we ship), and must be a
    whole number of ``resolution`` cells on each axis.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    crs: str
    extent: tuple[float, float, float, float]
    resolution: float = Field(gt=0)
    timestep_minutes: int = Field(5, gt=0)
    units: Literal["mm h-1", "dBZ"] = "mm h-1"
    zr: ZRRelation = ZRRelation()
    rain_threshold: float = Field(0.1, ge=0, description="mm/h below which a pixel counts as dry.")
    forecast: ForecastSettings = ForecastSettings()
    ingest: IngestSettings = IngestSettings()
    sources: list[str] = Field(default_factory=list, description="Zoo source names for TMU.")

    @field_validator("crs")
    @classmethod
    def _crs_is_known(cls, value: str) -> str:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(value)
        except CRSError as exc:
            raise ValueError(f"unknown projection {value!r} ({exc})") from None
        return value

    @model_validator(mode="after")
    def _extent_fits_resolution(self) -> "Region":
        xmin, ymin, xmax, ymax = self.extent
        if not (xmin < xmax and ymin < ymax):
            raise ValueError(f"extent {list(self.extent)} must be [xmin, ymin, xmax, ymax] with min < max")
        for lo, hi, axis in ((xmin, xmax, "x"), (ymin, ymax, "y")):
            cells = (hi - lo) / self.resolution
            if abs(cells - round(cells)) > 1e-6:
                raise ValueError(
                    f"extent along {axis} ({hi - lo:g}) is not a whole number of "
                    f"resolution cells ({self.resolution:g})"
                )
        return self

    @cached_property
    def grid(self) -> "RegionGrid":  # noqa: F821 - forward ref, avoids import cycle
        """The region's :class:`~nowcast.grid.RegionGrid`."""
        from nowcast.grid import RegionGrid

        return RegionGrid.from_region(self)


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    """One line naming every offending key (a typo shows up as both a missing
    key and an unknown one, and the user needs to see both)."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"key '{key}': {err['msg']}")
    return f"{path}: " + "; ".join(parts)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning syntax errors into a :class:`ConfigError`."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def region_search_dirs(home: str | Path | None = None) -> list[Path]:
    """Directories searched for ``NAME.yaml``, user overrides first."""
    return [home_dir(home) / "configs" / "regions", shipped_configs_dir() / "regions"]


def available_regions(home: str | Path | None = None) -> list[str]:
    """Names of all regions that :func:`load_region` can find."""
    names = {p.stem for d in region_search_dirs(home) if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def load_region(name_or_path: str | Path, home: str | Path | None = None) -> Region:
    """Load a region by name (``swiss``) or by path to a YAML file.

    Raises
    ------
    ConfigError
        If the region is unknown (the message lists the known ones) or its
        file is invalid (the message names the offending key).
    """
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        path = candidate
    else:
        path = next(
            (d / f"{name_or_path}.yaml" for d in region_search_dirs(home) if (d / f"{name_or_path}.yaml").is_file()),
            None,
        )
        if path is None:
            known = ", ".join(available_regions(home)) or "none"
            raise ConfigError(f"unknown region {str(name_or_path)!r}; known regions: {known}")
    data = load_yaml(path)
    try:
        return Region.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None
