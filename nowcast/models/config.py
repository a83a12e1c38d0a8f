"""Typed model configs (``configs/models/*.yaml``).

One YAML file describes one model completely: its network, where its data
come from and how they are normalised, how it is trained, and where its
checkpoint goes. Unknown keys are errors (a typo such as ``hiden`` must not
silently train the default), and every error names the file and the key.

A *source* is pretrained without transfer; a *target* may add a ``tmu``
section listing its sources (transferable memory, docs/TMU) or an
``training.init_from`` source to finetune from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from nowcast.config import StrictModel, _format_validation_error, load_yaml, project_root, shipped_configs_dir
from nowcast.errors import ConfigError
from nowcast.models.normalization import Normaliser, make_normaliser
from nowcast.paths import home_dir


class ArchitectureConfig(StrictModel):
    """The stacked ConvLSTM predictor (docs: TMU.md, "Base network")."""

    layers: int = Field(2, ge=1, le=16)
    hidden: int | list[int] = Field(32, description="Hidden channels C, one value or one per layer.")
    kernel: int = Field(5, ge=1, le=15)
    patch_size: int = Field(4, ge=1, le=16, description="Space-to-depth patch p: frames become p*p x H/p x W/p.")
    layer_norm: bool = True
    forget_bias: float = 1.0
    residual: bool = Field(False, description="Predict changes relative to the last observed frame; the head starts at zero.")
    decoder: Literal["linear", "refine", "smooth"] = Field(
        "linear",
        description="'linear': 1x1 conv on the patch grid (reference); 'refine': sees neighbouring patches; "
        "'smooth': one value per patch, bilinear to full resolution (growth/decay cannot blur small scales).",
    )
    trend_gate: bool = Field(
        False,
        description="Lagrangian rain models: the head also returns, per lead and pixel, a gate on the input window's "
        "smoothed Lagrangian trend continued linearly (the Lagrangian-trend baseline's rate, "
        "nowcast.models.predictor.trend_rate); gate x lead x rate is added to the change. The gate starts at zero: "
        "an untrained model still forecasts what extrapolation does.",
    )
    trend_linearity_power: float = Field(
        0.0, ge=0.0, le=16.0,
        description="With trend_gate: each pixel's window slope is weighted by R2**power before smoothing, R2 the "
        "coefficient of determination of its linear fit over the window (0 with fewer than three wet frames). "
        "A trend the window shows steadily is passed on, one it shows as noise is damped; 0: unweighted.",
    )

    @field_validator("kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(f"kernel {value} must be odd (same-size padding)")
        return value

    @model_validator(mode="after")
    def _hidden_per_layer(self) -> "ArchitectureConfig":
        if isinstance(self.hidden, list) and len(self.hidden) != self.layers:
            raise ValueError(f"hidden lists {len(self.hidden)} sizes for {self.layers} layers")
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError("hidden sizes must be positive")
        return self

    @property
    def hidden_sizes(self) -> list[int]:
        """Hidden channels of every layer, bottom first."""
        return list(self.hidden) if isinstance(self.hidden, list) else [int(self.hidden)] * self.layers


class TMUConfig(StrictModel):
    """Transferable memory from frozen sources (target models only)."""

    sources: list[str] = Field(min_length=1, description="Source model names or paths (YAML or checkpoint).")
    variant: Literal["sum", "normalized_sum", "convex", "competitive"] = Field(
        "sum",
        description="'sum' as written in the paper; 'normalized_sum' divides the transfer sum by N; "
        "'convex' [project] mixes own and distilled memory so |C| stays bounded; 'competitive' [project] "
        "as convex, but the sources share the distilled part by a softmax of their gates.",
    )
    layer: Literal["bottom", "top"] = Field(
        "bottom",
        description="Which layer is the TMU and whose memory it distils: 'bottom' as in the paper (the sources' "
        "bottom memory, read from the frames); 'top' [project] the target's top layer distils the sources' top-layer "
        "memory, where a source keeps what it makes of the frames (docs/benchmarks.md, thirty-fifth round).",
    )
    distill_weight: float = Field(1.0, ge=0, description="lambda; 0 is the reference code's ablation.")
    distill_scale: Literal["plain", "variance", "balanced"] = Field(
        "plain",
        description="'plain': MSE as written (ablation); 'variance': each source's MSE divided by the variance of "
        "that source's memory; 'balanced': the variance-normalised error times the (detached) prediction loss, "
        "so at lambda = 1 distillation weighs as much as prediction and can never swamp it.",
    )
    distill_warmup: int = Field(0, ge=0, description="Iterations over which lambda ramps linearly from 0 to distill_weight.")
    weights: Literal["uniform", "adaptive"] = "uniform"
    adaptive_momentum: float = Field(0.99, ge=0, lt=1, description="EMA momentum of the running distillation error.")
    adaptive_temperature: float = Field(
        1.0, gt=0, description="Softmax temperature over errors relative to their mean."
    )


class DataConfig(StrictModel):
    """What the model is trained on and in which units it forecasts."""

    kind: Literal["moving_mnist", "zarr_sequences"]
    domain: str = Field("", description="Region/domain the data come from (metadata for the zoo).")
    modality: Literal["rain", "brightness_temperature", "video"] = "rain"
    units: Literal["mm h-1", "K", "unit"] = "mm h-1"
    normalisation: dict[str, Any] = Field(default_factory=lambda: {"kind": "log", "offset": 0.1, "scale": 3.0})
    frame_size: int = Field(64, ge=4)
    input_frames: int = Field(10, ge=1)
    output_frames: int = Field(10, ge=1)
    timestep_minutes: float | None = Field(None, gt=0, description="Minutes between frames; None for Moving-MNIST (no physical time).")
    # moving_mnist
    n_digits: int = Field(2, ge=1)
    # zarr_sequences
    path: str | None = Field(None, description="Training Zarr store (pipelines/simulate.py), relative to the project root.")
    val_path: str | None = Field(None, description="Validation Zarr store; default: the training store.")

    @field_validator("normalisation")
    @classmethod
    def _valid_normalisation(cls, value: dict[str, Any]) -> dict[str, Any]:
        from nowcast.errors import ConfigError as _CE

        try:
            return make_normaliser(value).as_dict()
        except _CE as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _kind_needs(self) -> "DataConfig":
        if self.kind == "zarr_sequences" and not self.path:
            raise ValueError("data.kind 'zarr_sequences' needs 'path' (a store written by pipelines/simulate.py)")
        return self

    @property
    def normaliser(self) -> Normaliser:
        return make_normaliser(self.normalisation)


class MotionConfig(StrictModel):
    """How a Lagrangian model finds the motion (the extrapolation baseline's method by default)."""

    method: Literal["LK", "DARTS", "VET", "proesmans"] = Field("LK", description="pysteps optical-flow method.")
    frames: int | None = Field(
        None, ge=2,
        description="Estimate the motion from the newest this many input frames (null: all data.input_frames). "
                    "A network that reads a longer window than the extrapolation baseline (e.g. 8 frames, as the "
                    "window trend does) still moves it along the baseline's motion (thirty-sixth round).")


class CalibrationConfig(StrictModel):
    """How a Lagrangian rain model's change weights read the window's trend (:mod:`nowcast.models.calibration`).

    Post-processing, not what the network learns: ``nowcast models
    calibrate`` and ``nowcast pretrain`` choose the weights with these
    settings (the command's options override them), and a checkpoint whose
    stored config differs only here is the same run.
    """

    trend_frames: int = Field(0, ge=0, description="Frames the trend is read over (0: the model's input frames); "
                                                   "forecasts then read that many from the archive.")
    trend_estimator: Literal["slope", "minmod"] = Field(
        "slope", description="'slope' over the whole history, or 'minmod' of the slopes over its older and newer "
                             "halves (a growth both show; needs trend_frames >= 6).")
    trend_smoothing_px: float = Field(0.0, ge=0.0, description="Smooth each frame's rain over this many pixels "
                                                               "within the rain before the trend is read.")
    trend_persistence_min: float = Field(
        -1.0, ge=-1.0, le=1.0, description="Add the trend only to a scene whose trend went on within its window: "
                                           "the correlation of its older and newer halves' rates at least this "
                                           "(-1: every scene; needs trend_frames >= 6).")
    trend_network_agrees: bool = Field(
        False, description="Add the trend only where the network's own change grows over the hour "
                           "(the network then runs even if its change is weighed by 0).")
    trend_align: bool = Field(
        False, description="Remove from the trend the growth a residual displacement of the older frames "
                           "explains (a translation and a rotation fitted per scene).")
    trend_ceiling: Literal["none", "scene", "local"] = Field(
        "none", description="Let the trend lift rain at most to the window's heaviest: of the whole scene ('scene') "
                            "or within 8 grid cells ('local'); 'none': unbounded.")
    trend_persistence_samples: float = Field(
        0.0, ge=0.0, description="The persistence gate opens only where the correlation is read over at least this "
                                 "many independent samples (pixels / 4 pi sigma^2); 0: over 50 pixels.")
    trend_growth_min: float = Field(
        0.0, ge=0.0, description="Add the trend only to a scene whose rate, where it grows, averages at least this "
                                 "(network units per step; 0.004 is 0.72 dB/h at 15 dB per unit and 5-min steps): "
                                 "a field that only moves reads less.")
    trend_persistence_full: float = Field(
        -1.0, ge=-1.0, le=1.0, description="Weigh the trend by a ramp on the persistence instead of a step at the gate: "
                                           "nothing at trend_persistence_min, rising linearly to the whole trend at "
                                           "this correlation, so that a small move of rho between runs moves the "
                                           "forecast a little (-1: the step; needs a gate below it).")
    trend_growth_ratio_min: float = Field(
        0.0, ge=0.0, description="Add the trend only to a scene whose growth did not slow within its window: where "
                                 "the rate grows, the newer half's rate at least this fraction of the older half's "
                                 "(0.85: the costly 'grew, then stopped' windows read 0.60-0.79, the growth sets "
                                 "0.89 or more); a growth the older half did not show passes. 0: no floor; needs "
                                 "trend_frames >= 6.")
    rule: Literal["13", "14", "15", "best-worst-lead"] = Field(
        "15", description="The selection rule that chooses the weights (nowcast.models.calibration.SELECTION_RULES).")
    trend_weights: tuple[float, ...] = Field(
        (0.0, 0.25, 0.5, 0.75, 1.0), description="The trend weights the candidates try (0 to 4).")
    network_weights: tuple[float, ...] = Field(
        (0.0, 0.25, 0.5, 0.75, 1.0), description="The weights of the network's growth and of its decay tried.")
    trend_forms: tuple[Literal["signed", "growth"], ...] = Field(
        ("signed", "growth"), description="'signed' (the trend's growth and decay) and/or 'growth' (its growth only).")
    trend_lifetimes: tuple[float, ...] = Field(
        (3.0, 6.0, 12.0), description="The trend's e-folding lifetimes tried, in steps.")

    @model_validator(mode="after")
    def _possible(self) -> CalibrationConfig:
        self.check()
        return self

    def check(self) -> None:
        """Raise a one-line ValueError for settings a calibration cannot use (also of :meth:`resolve`'s copies)."""
        from nowcast.models.calibration import (
            SELECTION_RULES,
            check_trend_grid,
            check_trend_reading,
        )

        check_trend_reading(self.trend_frames, self.trend_estimator, self.trend_smoothing_px,
                            self.trend_persistence_min, self.trend_ceiling, self.trend_persistence_samples,
                            self.trend_growth_min, self.trend_persistence_full, self.trend_growth_ratio_min)
        check_trend_grid(self.network_weights, self.trend_weights, self.trend_forms, self.trend_lifetimes)
        if self.rule not in SELECTION_RULES:
            raise ValueError(f"unknown rule {self.rule!r}: choose from {', '.join(SELECTION_RULES)}")

    def resolve(self, **overrides: Any) -> CalibrationConfig:
        """These settings with every override given (not ``None``) in its place; not validated (call :meth:`check`)."""
        return self.model_copy(update={k: v for k, v in overrides.items() if v is not None})

    def options(self) -> list[str]:
        """The ``nowcast models calibrate`` options that give these settings: one per setting not at its default."""
        default = type(self)()

        def listed(values) -> str:
            return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

        flags = {"trend_frames": "--trend-frames {}", "trend_estimator": "--trend-estimator {}",
                 "trend_smoothing_px": "--trend-smoothing {:g}", "trend_persistence_min": "--trend-persistence-min {:g}",
                 "trend_network_agrees": "--trend-network-agrees", "trend_align": "--trend-align",
                 "trend_ceiling": "--trend-ceiling {}", "trend_persistence_samples": "--trend-persistence-samples {:g}",
                 "trend_growth_min": "--trend-growth-min {:g}",
                 "trend_persistence_full": "--trend-persistence-full {:g}",
                 "trend_growth_ratio_min": "--trend-growth-ratio-min {:g}",
                 "rule": "--rule {}",
                 "trend_weights": "--trend-weights {}", "network_weights": "--network-weights {}",
                 "trend_forms": "--trend-forms {}", "trend_lifetimes": "--trend-lifetimes {}"}
        return [flag.format(listed(value) if isinstance(value, tuple) else value)
                for name, flag in flags.items() if (value := getattr(self, name)) != getattr(default, name)]

    def calibrate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`nowcast.models.calibration.calibrate` these settings mean."""
        from nowcast.models.calibration import SELECTION_RULES

        tie_break, tie = SELECTION_RULES[self.rule]
        return {"trend_frames": int(self.trend_frames), "trend_estimator": self.trend_estimator,
                "trend_smoothing_px": float(self.trend_smoothing_px),
                "trend_persistence_min": float(self.trend_persistence_min),
                "trend_network_agrees": bool(self.trend_network_agrees), "trend_align": bool(self.trend_align),
                "trend_ceiling": self.trend_ceiling, "trend_persistence_samples": float(self.trend_persistence_samples),
                "trend_growth_min": float(self.trend_growth_min),
                "trend_persistence_full": float(self.trend_persistence_full),
                "trend_growth_ratio_min": float(self.trend_growth_ratio_min),
                "tie_break": tie_break, "tie": tie,
                "trend_grid": tuple(float(w) for w in self.trend_weights),
                "network_grid": tuple(float(w) for w in self.network_weights),
                "trend_forms": tuple(self.trend_forms), "trend_lifetimes": tuple(float(v) for v in self.trend_lifetimes)}


class TrainingConfig(StrictModel):
    """The training loop (nowcast.training)."""

    iterations: int = Field(1000, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(3e-4, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="'cosine': the learning rate falls from lr to lr x lr_final over the run, so the weights a "
        "forecast is made with are not one step of a constant-rate walk. A function of the iteration and the run's "
        "length: a resumed run follows it exactly, a longer run is another schedule. Tried for the shipped recipe "
        "(docs/benchmarks.md, 'Skill, eleventh round'): not chosen.",
    )
    lr_final: float = Field(0.01, gt=0, le=1, description="Cosine schedule: the last iteration's rate as a fraction of lr.")
    seed: int = 0
    sampling_start: int = Field(0, ge=0, description="Iteration where scheduled sampling starts to feed predictions.")
    sampling_end: int = Field(1000, ge=0, description="Iteration from which only predictions are fed (probability of truth 0).")
    val_every: int = Field(250, ge=1)
    val_batches: int = Field(2, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(25, ge=1)
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm; None disables clipping.")
    persistent_fraction: float = Field(
        0.0, ge=0, le=1,
        description="Lagrangian models: share of each batch made Lagrangian-persistent (every frame equal to the "
        "analysis frame), so the model learns to leave unchanging rain unchanged.",
    )
    persistent_motion: Literal["stored", "estimated"] = Field(
        "stored",
        description="Lagrangian models: motion that moves a persistent sample back to its analysis time: the stored "
        "motion that moved it ('stored', nearly an exact copy), or re-estimated from its moved frames by "
        "motion.method as in a forecast ('estimated': the errors real rigid motion shows through optical flow).",
    )
    persistent_rotation_deg: float = Field(
        0.0, ge=0, le=10,
        description="With persistent_motion 'estimated': persistent samples are made by the stored motion plus a "
        "solid-body rotation of up to this many degrees per step about a random centre, which a smooth optical-flow "
        "field does not capture, so the moved-back inputs carry the misalignment real rotating rain shows.",
    )
    persistent_trend_fraction: float = Field(
        0.0, ge=0, le=1,
        description="Rain, Lagrangian models: share of the persistent samples given a Lagrangian trend instead: "
        "their rain grows or decays in place by a fixed pattern of dB per step (areas of 20-60 km, "
        "nowcast.data.testcases.growth_rate_field) over the inputs *and* the leads, so the inputs show the trend "
        "and the truth continues it. Without it nothing in the training data rewards reading the window's "
        "history: the simulator's evolutions are not predictable from four frames, and a persistent sample "
        "has no history to read.",
    )
    persistent_trend_db: float = Field(
        2.0, gt=0, le=6,
        description="Largest rate of a trend sample's pattern, dB per step; each sample's is drawn uniformly "
        "from 0 to this.",
    )
    intensity_shift_db: tuple[float, float] | None = Field(
        None,
        description="Rain: every training sample's rain rates multiplied by 10**(s/10), s drawn uniformly from this "
        "dB range (validation samples untouched), so the network cannot tie growth or decay to the absolute rain "
        "level of the one day its sequences were simulated from; it must read it from the window's history.",
    )
    loss_on_inputs: bool = Field(
        True,
        description="Score the predictions made while the inputs are read (each next input frame) as well as the "
        "leads (the PredRNN/TMU papers' loss). False scores the leads only: in the Lagrangian frame the step from "
        "one moved input to the next is the optical flow's misalignment, which a network trained to predict it "
        "continues into the first leads.",
    )
    soft_csi_weight: float = Field(0.0, ge=0, description="Weight of the soft-CSI loss term (does not reward blur).")
    soft_csi_thresholds: list[float] = Field(default_factory=lambda: [1.0, 5.0], description="mm/h thresholds of the soft CSI.")
    area_bias_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of a soft frequency-bias term at the soft-CSI thresholds: the squared log ratio of "
        "forecast to observed area above each threshold, per lead. CSI is maximised by forecasting somewhat more "
        "area than is likely, so soft CSI alone widens cores at the first leads; MSE alone fades them. This term "
        "pulls the area towards the observed one at every lead (docs/benchmarks.md, 'Skill, fourth round').",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="Convolutions in bf16 autocast ('bf16'), fp32, or 'auto': bf16 where the device has bf16 units "
                    "that are faster than fp32 (nowcast.precision); weights, optimizer and loss stay fp32.",
    )
    init_from: str | None = Field(None, description="Source model (name or path) whose matching weights start the target (finetune).")

    @model_validator(mode="after")
    def _sampling_order(self) -> "TrainingConfig":
        if self.sampling_end < self.sampling_start:
            raise ValueError(f"sampling_end {self.sampling_end} is before sampling_start {self.sampling_start}")
        if self.persistent_rotation_deg > 0 and self.persistent_motion != "estimated":
            raise ValueError("persistent_rotation_deg needs persistent_motion 'estimated' (a rotation the stored "
                             "motion moved back would leave exact copies)")
        if self.persistent_trend_fraction > 0 and self.persistent_fraction == 0:
            raise ValueError("persistent_trend_fraction is a share of the persistent samples: set persistent_fraction too")
        if self.intensity_shift_db is not None:
            lo, hi = self.intensity_shift_db
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"intensity_shift_db {list(self.intensity_shift_db)}: need finite low <= high")
        return self


class ModelConfig(StrictModel):
    """One model: ``configs/models/NAME.yaml``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    role: Literal["source", "target"] = "target"
    architecture: ArchitectureConfig = ArchitectureConfig()
    frame: Literal["eulerian", "lagrangian"] = Field(
        "eulerian",
        description="'lagrangian': inputs moved to the analysis time along pysteps optical flow, the network predicts "
        "growth and decay as a residual, the output is advected to each lead (docs: SKILL.md); 'eulerian': the "
        "network sees fixed-grid frames (the TMU paper's Moving-MNIST setting).",
    )
    motion: MotionConfig = MotionConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    tmu: TMUConfig | None = None
    data: DataConfig
    training: TrainingConfig = TrainingConfig()
    checkpoint: str = Field(description="Checkpoint file; relative paths are under the project root.")

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
        p = self.architecture.patch_size
        if self.data.frame_size % p:
            raise ValueError(f"data.frame_size {self.data.frame_size} is not a multiple of architecture.patch_size {p}")
        if self.role == "source" and self.tmu is not None:
            raise ValueError("role 'source' cannot have a 'tmu' section (sources are trained without transfer)")
        if self.data.kind == "moving_mnist" and self.data.timestep_minutes is not None:
            raise ValueError("data.timestep_minutes must be null for Moving-MNIST (no physical time step)")
        if self.frame == "lagrangian":
            kind = self.data.normaliser.kind
            rain = self.data.modality == "rain" and kind == "db"
            infrared = self.data.modality == "brightness_temperature" and kind == "brightness_temperature"
            if not (rain or (infrared and self.role == "source")):
                raise ValueError("frame 'lagrangian' needs data.modality 'rain' with data.normalisation kind 'db' "
                                 "(or, for a source, brightness_temperature with kind 'brightness_temperature')")
            if not self.architecture.residual:
                raise ValueError("frame 'lagrangian' needs architecture.residual: true (untrained = extrapolation)")
        if self.motion.frames is not None:
            if self.frame != "lagrangian":
                raise ValueError("motion.frames is for frame 'lagrangian' (an Eulerian model finds no motion)")
            if self.motion.frames > self.data.input_frames:
                raise ValueError(f"motion.frames {self.motion.frames} exceeds data.input_frames "
                                 f"{self.data.input_frames}: the motion is read from the input window")
        if self.architecture.trend_gate and not (self.frame == "lagrangian" and self.data.modality == "rain"):
            raise ValueError("architecture.trend_gate is for Lagrangian rain models (frame 'lagrangian', data.modality 'rain'): "
                             "the trend it gates is a growth rate of rain in the Lagrangian frame")
        if self.architecture.trend_linearity_power and not self.architecture.trend_gate:
            raise ValueError("architecture.trend_linearity_power weights the gated trend: it needs trend_gate: true")
        return self

    # The operational forecast path reads these flat names (nowcast.forecast).
    @property
    def patch_size(self) -> int:
        return self.architecture.patch_size

    @property
    def motion_frames(self) -> int:
        """Frames the motion is estimated from: ``motion.frames``, or every input frame."""
        return int(self.motion.frames or self.data.input_frames)

    @property
    def input_frames(self) -> int:
        return self.data.input_frames

    @property
    def timestep_minutes(self) -> float | None:
        return self.data.timestep_minutes

    @property
    def checkpoint_path(self) -> Path:
        """Absolute checkpoint path (relative ones are under :func:`project_root`)."""
        path = Path(self.checkpoint).expanduser()
        return path if path.is_absolute() else project_root() / path


def model_search_dirs(home: str | Path | None = None) -> list[Path]:
    """Directories searched for ``NAME.yaml``: user overrides first, then shipped."""
    return [home_dir(home) / "configs" / "models", shipped_configs_dir() / "models"]


def available_models(home: str | Path | None = None) -> list[str]:
    """Names of the model configs :func:`find_model_config` can find."""
    return sorted({p.stem for d in model_search_dirs(home) if d.is_dir() for p in d.glob("*.yaml")})


def find_model_config(name_or_path: str | Path, home: str | Path | None = None) -> Path:
    """Path of a model config given its name (``mnist-tmu-2digit``) or a path.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known ones) or missing file.
    """
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: model config file does not exist")
        return candidate
    for d in model_search_dirs(home):
        if (d / f"{name_or_path}.yaml").is_file():
            return d / f"{name_or_path}.yaml"
    known = ", ".join(available_models(home)) or "none"
    raise ConfigError(f"unknown model {str(name_or_path)!r}; known models: {known}")


def load_model_config(path: str | Path) -> ModelConfig:
    """Load and validate a model YAML (a path; see :func:`find_model_config` for names).

    Raises
    ------
    ConfigError
        Missing file, bad YAML, or invalid keys: the message names the file
        and every offending key.
    """
    path = Path(path)
    data = load_yaml(path)
    return model_config_from_dict(data, path)


def model_config_from_dict(data: dict[str, Any], where: str | Path = "model config") -> ModelConfig:
    """Validate a mapping (e.g. the copy stored in a checkpoint)."""
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(Path(str(where)), exc)) from None
