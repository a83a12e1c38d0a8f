"""Model normalisation: physical units <-> the range a network sees.

Networks train best on inputs of order one, but every product of nowcast is
in physical units (mm/h, K). One :class:`Normaliser` per model converts both
ways; it is stored in the checkpoint so a forecast is always denormalised with
the transform the model was trained with, and its inverse is exact to float
rounding (tested), so a forecast carries no bias from the transform itself.

Kinds (the ``kind`` key of a config's ``data.normalisation``):

``log``
    rain rate ``R`` (mm/h): ``x = (log10(R + offset) - log10(offset)) / scale``.
    Dry is exactly 0 and 100 mm/h is about 1 for the default ``offset=0.1,
    scale=3``; the logarithm keeps drizzle and downpours equally visible, as in
    the nowcasting literature. Same formula as ``configs/simulate.yaml``.
``linear``
    ``x = R / scale``.
``brightness_temperature``
    IR brightness temperature ``T`` (K): ``x = (reference - T) / scale``, so
    cold cloud tops are high like heavy rain (``configs/simulate.yaml``).
``minmax``
    ``x = (v - min) / (max - min)``, any units.
``identity``
    ``x = v``: Moving-MNIST, already in [0, 1].
``db``
    rain rate in decibels (dBR), the transform of pysteps and of the
    Lagrangian forecaster: ``x = (10 log10 R - zerovalue) / scale`` for
    ``R >= threshold``, ``x = 0`` (``zerovalue``) below it; back, any ``x``
    below ``10 log10(threshold)`` is dry. Defaults ``threshold=0.1`` mm/h,
    ``zerovalue=-15`` dB, ``scale=15``: dry 0, 1 mm/h 1, 100 mm/h 2.33.

Rain (``nonnegative``) outputs are clipped at 0 on the way back: rain is never
negative, and a network's small negative outputs mean "dry".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nowcast.errors import ConfigError

KINDS: dict[str, tuple[str, ...]] = {
    "log": ("offset", "scale"),
    "linear": ("scale",),
    "brightness_temperature": ("reference", "scale"),
    "minmax": ("min", "max"),
    "identity": (),
    "db": ("threshold", "zerovalue", "scale"),
}
#: Kinds whose physical quantity is non-negative (rain rate).
_NONNEGATIVE = {"log", "linear", "db"}
_DEFAULTS: dict[str, dict[str, float]] = {
    "log": {"offset": 0.1, "scale": 3.0},
    "linear": {"scale": 10.0},
    "brightness_temperature": {"reference": 330.0, "scale": 120.0},
    "db": {"threshold": 0.1, "zerovalue": -15.0, "scale": 15.0},
}


@dataclass(frozen=True)
class Normaliser:
    """Exact two-way map between physical units and model space.

    Build one with :func:`make_normaliser` from a config mapping; compare two
    with :meth:`as_dict` (that is what checkpoints store).
    """

    kind: str
    params: dict[str, float] = field(default_factory=dict)

    @property
    def nonnegative(self) -> bool:
        """Whether physical values are clipped at 0 on the way back (rain)."""
        return self.kind in _NONNEGATIVE

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, e.g. ``{"kind": "log", "offset": 0.1, "scale": 3.0}``."""
        return {"kind": self.kind, **{k: float(v) for k, v in sorted(self.params.items())}}

    # Computations run in float64 and return float32 so that the round trip
    # loses nothing beyond the final float32 rounding.
    def forward(self, values: np.ndarray) -> np.ndarray:
        """Physical units -> model space (float32)."""
        v = np.asarray(values, dtype=np.float64)
        p = self.params
        if self.kind == "log":
            out = (np.log10(np.clip(v, 0.0, None) + p["offset"]) - np.log10(p["offset"])) / p["scale"]
        elif self.kind == "linear":
            out = v / p["scale"]
        elif self.kind == "brightness_temperature":
            out = (p["reference"] - v) / p["scale"]
        elif self.kind == "minmax":
            out = (v - p["min"]) / (p["max"] - p["min"])
        elif self.kind == "db":
            with np.errstate(divide="ignore", invalid="ignore"):
                db = np.where(v >= p["threshold"], 10.0 * np.log10(np.where(v > 0, v, 1.0)), p["zerovalue"])
            out = np.where(np.isnan(v), np.nan, (db - p["zerovalue"]) / p["scale"])
        else:
            out = v
        return out.astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Model space -> physical units (float32; non-negative for rain)."""
        x = np.asarray(values, dtype=np.float64)
        p = self.params
        if self.kind == "log":
            out = np.power(10.0, np.clip(x, 0.0, None) * p["scale"] + np.log10(p["offset"])) - p["offset"]
        elif self.kind == "linear":
            out = x * p["scale"]
        elif self.kind == "brightness_temperature":
            out = p["reference"] - x * p["scale"]
        elif self.kind == "minmax":
            out = x * (p["max"] - p["min"]) + p["min"]
        elif self.kind == "db":
            db = x * p["scale"] + p["zerovalue"]
            out = np.where(db >= 10.0 * np.log10(p["threshold"]), np.power(10.0, db / 10.0), 0.0)
        else:
            out = x
        if self.nonnegative:
            out = np.clip(out, 0.0, None)
        return out.astype(np.float32)

    def forward_tensor(self, values: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
        """:meth:`forward` for tensors (training batches), same float32 result."""
        import torch  # lazily: configs are read by commands that never touch torch

        return torch.from_numpy(self.forward(values.detach().cpu().numpy()))


def make_normaliser(spec: dict[str, Any] | Normaliser | None, where: str = "data.normalisation") -> Normaliser:
    """Validate a normalisation mapping and build its :class:`Normaliser`.

    Parameters
    ----------
    spec
        ``{"kind": "log", "offset": 0.1, "scale": 3.0}`` and the like; missing
        parameters take the documented defaults (``minmax`` has none: its
        ``min`` and ``max`` must be given). ``None`` means identity.
    where
        Config key named in error messages.

    Raises
    ------
    ConfigError
        Unknown kind, unknown or missing parameter, or a degenerate range.
    """
    if spec is None:
        return Normaliser("identity", {})
    if isinstance(spec, Normaliser):
        return spec
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ConfigError(f"key '{where}': expected a mapping with a 'kind' (one of {', '.join(KINDS)})")
    kind = str(spec["kind"])
    if kind not in KINDS:
        raise ConfigError(f"key '{where}.kind': unknown normalisation {kind!r}; expected one of {', '.join(KINDS)}")
    allowed = KINDS[kind]
    params = {k: v for k, v in spec.items() if k != "kind"}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"key '{where}.{unknown[0]}': not a parameter of normalisation {kind!r} (allowed: {', '.join(allowed) or 'none'})")
    merged = {**_DEFAULTS.get(kind, {}), **params}
    missing = [k for k in allowed if k not in merged]
    if missing:
        raise ConfigError(f"key '{where}.{missing[0]}': required by normalisation {kind!r}")
    try:
        values = {k: float(v) for k, v in merged.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"key '{where}': parameters of {kind!r} must be numbers, got {params}") from None
    if kind == "log" and values["offset"] <= 0:
        raise ConfigError(f"key '{where}.offset': must be positive, got {values['offset']}")
    if "scale" in values and values["scale"] == 0:
        raise ConfigError(f"key '{where}.scale': must not be zero")
    if kind == "db" and not (values["threshold"] > 0 and values["zerovalue"] < 10.0 * np.log10(values["threshold"])):
        raise ConfigError(f"key '{where}': threshold must be positive and zerovalue below 10 log10(threshold) dB")
    if kind == "minmax" and not values["max"] > values["min"]:
        raise ConfigError(f"key '{where}': max ({values['max']}) must exceed min ({values['min']})")
    return Normaliser(kind, values)
