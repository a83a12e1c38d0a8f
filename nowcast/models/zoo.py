"""Checkpoints of the model zoo, and the forecaster the operational app loads.

One model = one file: ``torch.save`` of a dict holding only tensors and plain
JSON-able metadata (architecture, patch size, hidden sizes, normalisation and
units, training data, region and modality, iterations, metrics, code version,
the full model config). It is loaded with ``torch.load(weights_only=True)``:
a checkpoint is data, never code, so a file from the internet cannot run
anything. A SHA-256 digest of the weights is stored inside and checked on
load, so a tampered or truncated file is refused instead of forecasting
garbage. Loading against a config refuses any mismatch of architecture or
normalisation with one line naming the file and the field.

A TMU target's checkpoint is self-sufficient: its distillers stand in for the
sources, whose checkpoints are not needed to forecast.

Where a config's checkpoint is found (``HOME/models`` first, then the shipped
zoo of the source checkout or of the installed wheel) and where training
writes it is one rule, :func:`nowcast.paths.checkpoint_candidates` and
:func:`nowcast.paths.checkpoint_output_path` (docs/models.md);
:func:`locate_checkpoint`, :func:`training_config` and :func:`zoo_listing`
apply it here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nowcast
from nowcast.errors import CheckpointError, ConfigError, NowcastError
from nowcast.models.calibration import ChangeWeights
from nowcast.models.config import ModelConfig, find_model_config, load_model_config, model_config_from_dict
from nowcast.models.normalization import Normaliser, make_normaliser
from nowcast.models.predictor import Predictor
from nowcast.models.tmu import layer_index

log = logging.getLogger(__name__)

FORMAT = "nowcast-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt"}


# ------------------------------------------------------------ digests
def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded in forecast datasets as ``checkpoint_sha256``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the weights, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# ------------------------------------------------------------ metadata
def architecture_metadata(config: ModelConfig, source_channels: list[int] | None = None) -> dict[str, Any]:
    """The fields that must match for weights to fit a network."""
    arch = config.architecture
    tmu = config.tmu
    meta = {
        "layers": arch.layers,
        "hidden": arch.hidden_sizes,
        "kernel": arch.kernel,
        "patch_size": arch.patch_size,
        "layer_norm": arch.layer_norm,
        "forget_bias": arch.forget_bias,
        "tmu_sources": list(tmu.sources) if tmu else [],
        "tmu_source_channels": list(source_channels or []),
        "tmu_variant": tmu.variant if tmu else None,
    }
    # Newer fields only where they differ from the default, so checkpoints
    # written before they existed still match their configs.
    for key, value, default in (("frame", config.frame, "eulerian"), ("residual", arch.residual, False),
                                ("decoder", arch.decoder, "linear"), ("trend_gate", arch.trend_gate, False),
                                ("trend_linearity_power", arch.trend_linearity_power, 0.0),
                                ("tmu_layer", tmu.layer if tmu else "bottom", "bottom")):
        if value != default:
            meta[key] = value
    return meta


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a checkpoint."""
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then rename it onto ``path`` (a checkpoint, a resume state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); a checkpoint is ordinary data.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(
    path: str | Path,
    model: Predictor,
    config: ModelConfig,
    *,
    iterations: int = 0,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a model's single checkpoint file; returns its SHA-256.

    Parameters
    ----------
    path
        Destination (written atomically).
    model
        The network; its ``state_dict`` is stored on CPU.
    config
        The model config, stored in full so the checkpoint rebuilds its own
        network and normaliser without the YAML.
    iterations, metrics, extra
        Training provenance (plain JSON-able values).
    """
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    normaliser = config.data.normaliser
    metadata = {
        "name": config.name,
        "role": config.role,
        "architecture": architecture_metadata(config, model.source_channels),
        "normalisation": normaliser.as_dict(),
        "units": config.data.units,
        "data": {
            "kind": config.data.kind,
            "domain": config.data.domain,
            "modality": config.data.modality,
            "frame_size": config.data.frame_size,
            "input_frames": config.data.input_frames,
            "output_frames": config.data.output_frames,
            "timestep_minutes": config.data.timestep_minutes,
        },
        "iterations": int(iterations),
        "metrics": dict(metrics or {}),
        "code_version": nowcast.__version__,
        "torch_version": str(torch.__version__),
        "created": _now(),
        "config": config.model_dump(mode="json"),
        "weights_sha256": weights_digest(state),
        **(extra or {}),
    }
    # A JSON round trip guarantees plain types (weights_only loading refuses
    # anything else, e.g. torch's TorchVersion str subclass) and JSON-ability.
    metadata = json.loads(json.dumps(metadata))
    _atomic_torch_save({"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state, "metadata": metadata}, path)
    digest = sha256_of(path)
    log.info("%s: checkpoint of %s at iteration %d written (sha256 %s)", path, config.name, iterations, digest[:12])
    return digest


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights, metadata and the file's identity."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    sha256: str

    @property
    def config(self) -> ModelConfig:
        """The model config stored in the checkpoint."""
        return model_config_from_dict(self.metadata["config"], f"{self.path} (stored config)")

    @property
    def source_channels(self) -> list[int]:
        return list(self.metadata["architecture"].get("tmu_source_channels", []))

    def build_model(self) -> Predictor:
        """The network with these weights, in eval mode (sources not needed)."""
        cfg = self.config
        model = Predictor.for_model(cfg, self.source_channels)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise CheckpointError(f"{self.path}: weights do not fit the stored architecture ({first})") from None
        return model.eval()


def load_checkpoint(path: str | Path, expect_config: ModelConfig | None = None) -> Checkpoint:
    """Read a checkpoint safely and, optionally, check it against a config.

    Raises
    ------
    CheckpointError
        Missing, truncated, tampered or foreign file, or (with
        ``expect_config``) a mismatch of architecture, normalisation or units:
        one line naming the file and the first mismatched field.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # weights_only refused a global: code, not data
            raise CheckpointError(
                f"{path}: refused: holds Python objects other than tensors and plain data (loaded with weights_only)"
            ) from None
        # any other unpickling failure ("Unsupported operand", "invalid load key"): bytes of another format
        raise CheckpointError(f"{path}: not a readable nowcast checkpoint, truncated or not a torch file "
                              "(not a zip archive, not a pickle)") from None
    except Exception as exc:  # truncated zip, foreign format...
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable nowcast checkpoint, truncated or not a torch file ({reason[:200]})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nowcast checkpoint (no '{FORMAT}' marker)")
    if obj.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {obj.get('format_version')!r}, this nowcast reads {FORMAT_VERSION}")
    state, metadata = obj.get("state_dict"), obj.get("metadata")
    if not isinstance(state, dict) or not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: checkpoint lacks 'state_dict' or 'metadata'")
    for key in ("architecture", "normalisation", "units", "config", "weights_sha256"):
        if key not in metadata:
            raise CheckpointError(f"{path}: checkpoint metadata lacks '{key}'")
    if weights_digest(state) != metadata["weights_sha256"]:
        raise CheckpointError(f"{path}: weights do not match their recorded digest (file tampered with or corrupt)")
    ckpt = Checkpoint(path, state, metadata, sha256_of(path))
    if expect_config is not None:
        check_matches(ckpt, expect_config)
    return ckpt


def check_matches(ckpt: Checkpoint, config: ModelConfig) -> None:
    """Refuse a checkpoint whose architecture, normalisation or units differ from ``config``."""
    have = ckpt.metadata["architecture"]
    want = architecture_metadata(config, have.get("tmu_source_channels"))
    for key in dict.fromkeys([*want, *have]):
        if key == "tmu_source_channels":
            continue
        value = want.get(key)
        if have.get(key) != value:
            raise CheckpointError(
                f"{ckpt.path}: architecture.{key} is {have.get(key)!r} in the checkpoint but {value!r} in model config {config.name!r}"
            )
    norm = config.data.normaliser.as_dict()
    if ckpt.metadata["normalisation"] != norm:
        raise CheckpointError(
            f"{ckpt.path}: data.normalisation is {ckpt.metadata['normalisation']} in the checkpoint but {norm} in model config {config.name!r}"
        )
    if ckpt.metadata["units"] != config.data.units:
        raise CheckpointError(
            f"{ckpt.path}: data.units is {ckpt.metadata['units']!r} in the checkpoint but {config.data.units!r} in model config {config.name!r}"
        )


#: Config fields that say how a run was executed, not what it learns (see :func:`config_difference`).
RUN_SETTINGS = ("checkpoint", "training.precision")
#: Config fields that only label a run: an ablation config and the shipped one may train the same recipe.
RUN_LABELS = ("name", "description")
#: Config sections applied after training (how the change weights read the trend): the same run either way.
POST_TRAINING = ("calibration.",)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_difference(ckpt: Checkpoint, config: ModelConfig, ignore: tuple[str, ...] = ()) -> str | None:
    """The first field in which ``ckpt``'s stored config differs from ``config``, as one phrase; ``None`` if none.

    Compares everything that shapes what a run learns: every field but
    :data:`RUN_SETTINGS`, :data:`RUN_LABELS` and ``ignore`` (dotted names, e.g.
    ``training.iterations``). Why: :func:`check_matches` only asks whether
    the weights *fit* a config; a run of another recipe fits just as well,
    and reusing it would measure the wrong thing. The stored config is read
    through today's schema first, so a field added since with a default
    that keeps the old behaviour is no difference; a stored config today's
    schema refuses is compared as stored.
    """
    try:
        stored = ckpt.config.model_dump(mode="json")
    except Exception:  # noqa: BLE001 - a field since removed or renamed: compare the raw dict
        stored = ckpt.metadata["config"]
    have, want = _flatten(stored), _flatten(config.model_dump(mode="json"))
    for key in dict.fromkeys([*want, *have]):
        if key in RUN_SETTINGS or key in RUN_LABELS or key in ignore or key.startswith(POST_TRAINING):
            continue
        if have.get(key) != want.get(key):
            return f"{key} is {have.get(key)!r} in the checkpoint but {want.get(key)!r} in model config {config.name!r}"
    return None


# ------------------------------------------------------------ lookup
def locate_checkpoint(config: ModelConfig, home: str | Path | None = None, yaml_path: str | Path | None = None
                      ) -> tuple[str, Path]:
    """``(where, path)`` of the checkpoint a model config names, by the lookup rule of docs/models.md.

    ``where`` is ``home`` (``HOME/models/NAME.pt``, a user-trained or
    retrained model), ``checkout`` (the source checkout's ``models/zoo``),
    ``package`` (the zoo shipped inside the installed wheel) or ``path`` (an
    absolute ``checkpoint``): the first that exists, in this order
    (:func:`nowcast.paths.checkpoint_candidates`).

    Raises
    ------
    CheckpointError
        No candidate exists; the message lists every place looked in.
    """
    from nowcast.paths import checkpoint_candidates, find_checkpoint

    found = find_checkpoint(config.checkpoint, home)
    if found is not None:
        return found
    candidates = checkpoint_candidates(config.checkpoint, home)
    looked = "; ".join(f"{where} {path}" for where, path in candidates)
    how = f"nowcast train --config {yaml_path or config.name}"
    raise CheckpointError(
        f"{candidates[0][1] if len(candidates) == 1 else config.checkpoint}: checkpoint of model {config.name!r} "
        f"does not exist" + (f" (looked in: {looked})" if len(candidates) > 1 else "") + f"; train it with '{how}'"
    )


def training_config(config: ModelConfig, home: str | Path | None = None) -> ModelConfig:
    """``config`` with the paths training writes and reads made absolute where they must move.

    In a source checkout nothing changes: relative paths stay under the
    checkout, so the project's own zoo workflow writes ``models/zoo`` as
    before. Installed from a wheel (no checkout), the checkpoint goes to
    :func:`nowcast.paths.checkpoint_output_path` (``HOME/models/NAME.pt`` for
    a shipped-zoo model, where the lookup finds it first) and relative
    training and validation stores to ``HOME`` (:func:`nowcast.paths.project_file`),
    never into site-packages.
    """
    from nowcast.paths import checkpoint_output_path, project_file, source_checkout

    if source_checkout() is not None:
        return config
    data = {key: str(project_file(value, home)) for key in ("path", "val_path")
            if (value := getattr(config.data, key)) is not None}
    return config.model_copy(update={"checkpoint": str(checkpoint_output_path(config.checkpoint, home)),
                                     "data": config.data.model_copy(update=data)})


def resolve_model(name: str | Path, home: str | Path | None = None) -> Path:
    """Path to load a model from: a model YAML or a checkpoint file.

    Parameters
    ----------
    name
        A checkpoint path (``.pt``), a model YAML path, or a bare name found as
        ``configs/models/NAME.yaml`` (user configs under ``HOME`` first). A
        YAML's ``checkpoint`` is looked up by :func:`locate_checkpoint`
        (``HOME/models`` first, then the shipped zoo).

    Raises
    ------
    CheckpointError
        Unknown name, or the file (or the YAML's checkpoint) does not exist.
    """
    candidate = Path(name).expanduser()
    if candidate.suffix in CHECKPOINT_SUFFIXES:
        if not candidate.is_file():
            raise CheckpointError(f"{candidate}: checkpoint file does not exist")
        return candidate
    try:
        yaml_path = find_model_config(name, home)
        config = load_model_config(yaml_path)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    locate_checkpoint(config, home, yaml_path)
    return yaml_path


# ------------------------------------------------------------ forecaster
class Forecaster:
    """A trained model ready to forecast in physical units.

    Attributes
    ----------
    config
        The model config (``name``, ``patch_size``, ``input_frames``,
        ``timestep_minutes`` as flat attributes for :mod:`nowcast.forecast`).
    sha256
        Hex SHA-256 of the checkpoint file (empty for an untrained model).
    normaliser
        The stored normalisation, applied inside :meth:`predict`.
    """

    def __init__(self, model: Predictor, config: ModelConfig, sha256: str = "", path: Path | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.sha256 = sha256
        self.path = path
        self.metadata = metadata or {}
        self.normaliser: Normaliser = make_normaliser(self.metadata.get("normalisation") or config.data.normalisation)
        #: Per-lead weights on the network's growth and decay and on the window's trend, chosen on
        #: validation data (:mod:`nowcast.models.calibration`); ``None``: the network's change as trained.
        self.change_weights = ChangeWeights.from_metadata(self.metadata.get("change_weights"), path or config.name)
        if self.change_weights is not None and not self.lagrangian:
            raise CheckpointError(f"{path or config.name}: change_weights are for Lagrangian models, "
                                  f"this one is {getattr(config, 'frame', 'eulerian')}")
        #: Network arithmetic (:mod:`nowcast.precision`): ``auto``, ``bf16`` or ``fp32``.
        self.precision = "auto"
        self.device = "cpu"
        #: What the newest forecast did with the window's trend (:meth:`ChangeWeights.trend_note`; ``None``: no
        #: trend in these weights, or no forecast yet). A product says it (``model_trend``).
        self.last_trend_note: str | None = None

    def __repr__(self) -> str:
        return f"Forecaster({self.config.name!r}, sha256={self.sha256[:12]!r})"

    def predict(self, window: np.ndarray, leads: int) -> np.ndarray:
        """Forecast ``leads`` frames from ``window``.

        Parameters
        ----------
        window
            ``(T, H, W)`` float32 in the model's physical units (mm/h for rain);
            ``H`` and ``W`` multiples of the patch size. NaN (no data) is read
            as the normalisation's zero (dry rain, clear sky).
        leads
            Frames to predict.

        Returns
        -------
        numpy.ndarray
            ``(leads, H, W)`` float32 in physical units (non-negative for rain).
        """
        window = np.asarray(window, dtype=np.float32)
        if window.ndim != 3:
            raise NowcastError(f"model {self.config.name!r}: input window must be (time, y, x), got shape {window.shape}")
        p = self.config.patch_size
        if window.shape[1] % p or window.shape[2] % p:
            raise NowcastError(f"model {self.config.name!r}: frame size {window.shape[1:]} is not a multiple of the patch size {p}")
        if leads < 1:
            raise NowcastError(f"model {self.config.name!r}: leads={leads} must be positive")
        return self.predict_region(window, leads, tile=None)

    @property
    def history_frames(self) -> int:
        """Frames a forecast reads: ``input_frames``, or more where the change weights read the trend over more.

        :func:`nowcast.forecast.run_model` gives it that many where the
        archive has them, else the network's ``input_frames``
        (:meth:`predict_region`).
        """
        n_in = int(self.config.input_frames)
        return self.change_weights.history_frames(n_in) if self.change_weights is not None else n_in

    @property
    def lagrangian(self) -> bool:
        """Whether the model works in the Lagrangian frame (:mod:`nowcast.models.lagrangian`)."""
        return getattr(self.config, "frame", "eulerian") == "lagrangian"

    def _network(self, x: np.ndarray, leads: int) -> np.ndarray:
        """Closed-loop network output ``(leads, h, w)`` in model space for normalised inputs ``(T, h, w)``."""
        from nowcast.precision import autocast

        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, :, None].to(self.device)
        with torch.no_grad(), autocast(self.precision, self.device):
            out = self.model.forecast(inputs, leads)
        return out[0, :, 0].float().cpu().numpy()

    def to(self, device: str = "cpu", precision: str = "auto") -> "Forecaster":
        """Run the network on ``device`` (``cpu``, ``cuda``, ``auto``) in ``precision``; returns self.

        Raises
        ------
        ConfigError
            ``cuda`` without a CUDA device, or ``bf16`` where unsupported.
        """
        from nowcast.precision import resolve_device, resolve_precision

        device = resolve_device(device)
        resolve_precision(precision, device)  # refuse an impossible choice now, not mid-forecast
        self.model.to(device)
        self.device, self.precision = device, precision
        return self

    @property
    def resolved_precision(self) -> str:
        """``bf16`` or ``fp32``: what :meth:`predict` actually runs in."""
        from nowcast.precision import resolve_precision

        return resolve_precision(self.precision, self.device)

    def _raw_changes(self, x: np.ndarray, leads: int) -> np.ndarray:
        """The network's Lagrangian changes ``(leads, h, w)`` relative to the analysis frame (exactly 0 when untrained)."""
        return self._network(x, leads) - np.asarray(x[-1], dtype=np.float32)[None]

    def _changes(self, x: np.ndarray, leads: int,
                 raw: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
        """The changes a forecast applies: the network's under the checkpoint's change weights, if any.

        ``raw`` computes the network's change (default :meth:`_raw_changes`).

        ``x``: the moved frames, oldest first; the network reads the newest
        ``input_frames`` of them. Weights with a window trend add it,
        estimated from all of ``x`` (:func:`nowcast.models.calibration.window_trend`;
        more frames than the network's where :attr:`history_frames` says so;
        :meth:`~nowcast.models.calibration.ChangeWeights.rate`)
        on the whole domain: ``raw`` may run the network in tiles, the trend is
        smoothed across them. Weights of 0 on the network's growth and decay
        at every lead do not run the network (rule 15's choice for the shipped
        model: the forecast is extrapolation plus the weighted trend).
        """
        weights = self.change_weights
        if weights is not None and not weights.needs_network:  # weighed by 0: the network's change is not used
            change = np.zeros((int(leads), *np.shape(x)[1:]), dtype=np.float32)
        else:
            change = (raw or self._raw_changes)(x[-int(self.config.input_frames):], leads)
        if weights is None:
            return change
        if not weights.uses_trend:
            return weights.apply(change)
        reading: dict = {}
        rate, headroom = weights.rate(x, reading), weights.headroom(x)
        ceiling = (float(self.normaliser.inverse(np.float32(np.nanmax(x)))) if weights.trend_ceiling == "scene"
                   else None)
        db_per_unit = float(self.normaliser.params["scale"]) if self.normaliser.kind == "db" else None
        self.last_trend_note = weights.trend_note(rate, reading, ceiling, int(self.config.data.timestep_minutes),
                                                  frames=int(np.shape(x)[0]), db_per_unit=db_per_unit)
        return weights.apply(change, rate, headroom)

    def predict_region(self, window: np.ndarray, leads: int, tile: int | None = None, overlap: int = 32) -> np.ndarray:
        """Forecast a whole region: the network in tiles of at most ``tile`` cells (``None``: one tile).

        A Lagrangian model finds the motion and moves the frames on the whole
        region (rain entering a tile from its neighbour is not lost); only
        its network runs per tile. Inputs as :meth:`predict`.

        The window's newest ``input_frames`` give the motion and feed the
        network; a Lagrangian model whose weights read the trend over more
        (:attr:`history_frames`) reads it over the newest ``history_frames``
        of the window, or over as many as it is given (at least the network's
        ``input_frames``: an archive without the older frames falls back to
        the network's window). An Eulerian model reads the window it is given.
        """
        from nowcast.forecast import predict_tiled

        window = np.asarray(window, dtype=np.float32)
        self.last_trend_note = None  # never a note of an earlier forecast
        if self.lagrangian:
            window = window[-self.history_frames:]
        p = self.config.patch_size
        tile = max(window.shape[1:]) + p if tile is None else tile

        def tiled(fn, x: np.ndarray, n: int) -> np.ndarray:
            return predict_tiled(fn, x, n, tile=tile, overlap=overlap, multiple=p)

        if self.lagrangian:
            from nowcast.models import lagrangian

            def changes(x: np.ndarray, n: int) -> np.ndarray:  # the network in tiles, the weights on the whole
                return self._changes(x, n, raw=lambda xs, k: tiled(self._raw_changes, xs, k))

            m = self.config.motion_frames  # the network's window, or fewer (motion.frames)
            return lagrangian.forecast(window, leads, changes, self.normaliser, motion_method=self.config.motion.method,
                                       motion_frames=m if window.shape[0] > m else None)
        # NaN (no data) becomes the normalisation's zero: dry for rain, the
        # warm clear-sky reference for brightness temperature.
        with np.errstate(invalid="ignore"):
            x = np.nan_to_num(self.normaliser.forward(window), nan=0.0, posinf=0.0, neginf=0.0)
        return self.normaliser.inverse(tiled(self._network, x, leads))


def load_named_checkpoint(name_or_config: str | Path | ModelConfig, home: str | Path | None = None) -> Checkpoint:
    """Checkpoint of a model given by checkpoint path, YAML path, config or name.

    A YAML or config is checked against the checkpoint (architecture,
    normalisation, units) so a config edited after training is caught.
    """
    if isinstance(name_or_config, ModelConfig):
        _, found = locate_checkpoint(name_or_config, home)
        return load_checkpoint(found, expect_config=name_or_config)
    path = Path(name_or_config)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        path = resolve_model(path, home)
    if path.suffix in CHECKPOINT_SUFFIXES:
        return load_checkpoint(path)
    config = load_model_config(path)
    _, found = locate_checkpoint(config, home, path)
    return load_checkpoint(found, expect_config=config)


def load_forecaster(path_or_config: str | Path | ModelConfig, home: str | Path | None = None) -> Forecaster:
    """A :class:`Forecaster` from a checkpoint, a model YAML, a config or a model name.

    Only the model's own checkpoint is read: a TMU target forecasts without
    its sources. A config's checkpoint is looked up in ``HOME/models`` first,
    then in the shipped zoo (:func:`locate_checkpoint`).

    Raises
    ------
    CheckpointError
        Missing, corrupt or mismatching checkpoint.
    """
    ckpt = load_named_checkpoint(path_or_config, home)
    return Forecaster(ckpt.build_model(), ckpt.config, ckpt.sha256, ckpt.path, ckpt.metadata)


# ------------------------------------------------------------ listing (nowcast models list)
def lookup_dirs(home: str | Path | None = None) -> list[tuple[str, Path]]:
    """The folders of checkpoints, in lookup order: ``home`` (``HOME/models``), then the shipped zoo."""
    from nowcast.paths import models_dir, shipped_zoo_dirs

    return [("home", models_dir(home)), *shipped_zoo_dirs()]


def _listed_sums(folder: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    path = folder / "SHA256SUMS"
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2:
                sums[parts[1].strip().lstrip("*")] = parts[0]
    return sums


def _skill_brief(skill: dict[str, Any]) -> str:
    """``CSI1 0.55 vs 0.55, CSI5 0.26 vs 0.24 (0-60 min); worse at some leads``: model vs extrapolation."""
    minutes = skill.get("lead_minutes") or []
    hour = [i for i, m in enumerate(minutes) if m <= 60] or list(range(len(minutes)))
    parts = []
    for key, label in (("csi@1", "CSI1"), ("csi@5", "CSI5")):
        if key in skill and hour:
            m = float(np.nanmean([skill[key]["model"][i] for i in hour]))
            e = float(np.nanmean([skill[key]["extrapolation"][i] for i in hour]))
            parts.append(f"{label} {m:.2f} vs {e:.2f}")
    verdict = "no worse at every lead" if skill.get("no_worse_at_every_lead") else "worse at some leads"
    span = f" (0-{minutes[hour[-1]]} min)" if hour else ""
    return f"{', '.join(parts)}{span}; {verdict}"


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / "MANIFEST.json"
    try:
        manifest = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def describe_checkpoint(ckpt: Checkpoint, manifest_entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``nowcast models list`` says about one checkpoint (plain JSON-able values).

    The training data's provenance comes from the checkpoint
    (``training_provenance``), else from the ``MANIFEST.json`` entry beside it
    (``manifest_entry``, ``data``).
    """
    from nowcast.models.skill import not_measurably_worse, skill_summary, study_summary

    meta = ckpt.metadata
    config = meta.get("config") or {}
    data = meta.get("data") or {}
    tmu = meta.get("tmu") or {}
    sources = [s.get("name") if isinstance(s, dict) else str(s) for s in tmu.get("sources") or []]
    if not sources and config.get("tmu"):
        sources = list(config["tmu"].get("sources") or [])
    if data.get("kind") == "moving_mnist":
        provenance = meta.get("training_provenance") or "synthetic Moving-MNIST video"
    else:
        recorded = str((manifest_entry or {}).get("data") or "").split(" (")[0].strip()
        stored = meta.get("training_provenance")
        provenance = (stored if stored and stored != "unknown" else "") or recorded or "unknown"
    skill = meta.get("heldout_skill")
    weights = ChangeWeights.from_metadata(meta.get("change_weights"), ckpt.path)
    role = meta.get("role") or config.get("role") or "?"
    timestep = data.get("timestep_minutes")
    return {
        "name": meta.get("name") or ckpt.path.stem,
        "role": role,
        "sources": sources,
        "frame": config.get("frame") or meta["architecture"].get("frame") or "eulerian",
        "modality": data.get("modality"),
        "units": meta.get("units"),
        "domain": data.get("domain"),
        "provenance": provenance,
        "trained_on": f"{data.get('domain') or '?'} ({provenance})",
        "input_frames": data.get("input_frames"),
        "output_frames": data.get("output_frames"),
        "timestep_minutes": timestep,
        "iterations": meta.get("iterations"),
        "heldout_skill": skill_summary(skill) if skill else None,
        "heldout_skill_brief": _skill_brief(skill) if skill else ("not measured" if role == "target" else None),
        "heldout_no_worse_at_every_lead": bool(skill["no_worse_at_every_lead"]) if skill else None,
        "heldout_not_measurably_worse": not_measurably_worse(skill) if skill else None,
        "study_skill": study_summary(meta["study_skill"]) if meta.get("study_skill") else None,
        "study_no_worse_at_every_lead": (bool(meta["study_skill"]["no_worse_at_every_lead"])
                                         if meta.get("study_skill") else None),
        "study_not_measurably_worse": (not_measurably_worse(meta["study_skill"])
                                       if meta.get("study_skill") else None),
        "change_weights": weights.brief() if weights else None,
        "sha256": ckpt.sha256,
        "created": meta.get("created"),
        "code_version": meta.get("code_version"),
    }


def zoo_listing(home: str | Path | None = None) -> dict[str, Any]:
    """Every checkpoint the lookup can find, one entry per name: the one in use and what it shadows.

    Returns
    -------
    dict
        ``lookup_order``: ``[{"where", "dir"}]`` (``home`` first, then the
        shipped zoo); ``models``: per checkpoint name (sorted), the
        :func:`describe_checkpoint` fields of the copy in use plus ``file``,
        ``found`` (``home``, ``checkout`` or ``package``), ``path``,
        ``sha256_listed`` (whether the file's SHA-256 is the one in the
        ``SHA256SUMS`` beside it: ``true``/``false``, ``null`` if not listed)
        and ``shadows`` (the same name further down the lookup order, not
        used). A checkpoint that cannot be read gets ``error`` instead.
    """
    dirs = lookup_dirs(home)
    copies: dict[str, list[tuple[str, Path]]] = {}
    for where, folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.pt")):
            if path.name.endswith(".state.pt") or not path.is_file():
                continue
            copies.setdefault(path.name, []).append((where, path))
    models = []
    for fname in sorted(copies):
        (where, path), *shadowed = copies[fname]
        entry: dict[str, Any] = {"file": fname, "found": where, "path": str(path),
                                 "shadows": [{"where": w, "path": str(p)} for w, p in shadowed]}
        try:
            entry = {**describe_checkpoint(load_checkpoint(path), _manifest(path.parent).get(fname)), **entry}
        except NowcastError as exc:
            entry = {"name": path.stem, **entry, "error": str(exc)}
        else:
            listed = _listed_sums(path.parent).get(fname)
            entry["sha256_listed"] = None if listed is None else listed == entry["sha256"]
        models.append(entry)
    return {"lookup_order": [{"where": w, "dir": str(d)} for w, d in dirs], "models": models}


def default_rain_config(name: str = "random-tmu") -> ModelConfig:
    """A small rain TMU target (L=2, C=32, k=5, p=4, two sources, 4 input frames)."""
    return model_config_from_dict(
        {
            "name": name,
            "role": "target",
            "architecture": {"layers": 2, "hidden": 32, "kernel": 5, "patch_size": 4},
            "tmu": {"sources": ["source-a", "source-b"], "variant": "normalized_sum"},
            "data": {"kind": "zarr_sequences", "path": "unused.zarr", "modality": "rain", "units": "mm h-1",
                     "normalisation": {"kind": "log", "offset": 0.1, "scale": 3.0}, "frame_size": 64,
                     "input_frames": 4, "output_frames": 12, "timestep_minutes": 5},
            "checkpoint": "models/runs/random-tmu.pt",
        },
        "default rain config",
    )


def random_forecaster(model_config: str | Path | ModelConfig | None = None, seed: int = 0) -> Forecaster:
    """An *untrained* forecaster (random weights) for speed and memory benchmarks.

    Sources are not loaded: a TMU's distillers get each source's hidden size
    from the source's config when it can be found, else the target's own.
    """
    if model_config is None:
        config = default_rain_config()
    elif isinstance(model_config, ModelConfig):
        config = model_config
    else:
        config = load_model_config(find_model_config(model_config))
    channels: list[int] = []
    layer = layer_index(config.tmu.layer) if config.tmu else 0
    for source in config.tmu.sources if config.tmu else []:
        try:
            channels.append(load_model_config(find_model_config(source)).architecture.hidden_sizes[layer])
        except NowcastError:
            channels.append(config.architecture.hidden_sizes[layer])
    torch.manual_seed(seed)
    model = Predictor.for_model(config, channels)
    return Forecaster(model, config, "", None, {"normalisation": config.data.normaliser.as_dict()})


__all__ = [
    "Checkpoint",
    "Forecaster",
    "check_matches",
    "describe_checkpoint",
    "load_checkpoint",
    "load_forecaster",
    "load_named_checkpoint",
    "locate_checkpoint",
    "lookup_dirs",
    "random_forecaster",
    "resolve_model",
    "save_checkpoint",
    "sha256_of",
    "training_config",
    "zoo_listing",
]
