"""Physical units: radar reflectivity (dBZ) and rain rate (mm/h).

The Z-R relation ``Z = a R^b`` (Marshall-Palmer: a=200, b=1.6) links them,
configurable per region because climatologies differ. Models never see these
units directly; they see :class:`RainNormaliser` output, whose inverse is
exact so that a forecast round-trips to physical units without bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nowcast.errors import NowcastError

MMH = "mm h-1"
DBZ = "dBZ"
KELVIN = "K"

#: Spellings of rain-rate and reflectivity units seen in real files.
UNIT_ALIASES: dict[str, str] = {
    "mm h-1": MMH,
    "mm/h": MMH,
    "mm h**-1": MMH,
    "mm hr-1": MMH,
    "mm/hr": MMH,
    "mmh-1": MMH,
    "mm.h-1": MMH,
    "kg m-2 h-1": MMH,
    "dbz": DBZ,
    "dBZ": DBZ,
    "k": KELVIN,
    "K": KELVIN,
    "kelvin": KELVIN,
}


def canonical_units(units: str) -> str:
    """Map a unit string to ``mm h-1``, ``dBZ`` or ``K``.

    Raises
    ------
    NowcastError
        For units nowcast does not know how to convert (the message keeps the
        original spelling so a user can see the typo).
    """
    key = units.strip()
    if key in UNIT_ALIASES:
        return UNIT_ALIASES[key]
    if key.lower() in UNIT_ALIASES:
        return UNIT_ALIASES[key.lower()]
    raise NowcastError(f"unsupported units {units!r}: expected mm/h, dBZ or K")


def dbz_to_rainrate(dbz: np.ndarray, a: float = 200.0, b: float = 1.6) -> np.ndarray:
    """Rain rate (mm/h) from reflectivity (dBZ) through ``Z = a R^b``.

    NaN stays NaN (no data); the result is float32 like radar products.
    """
    z = np.power(10.0, np.asarray(dbz, dtype=np.float64) / 10.0)
    return np.power(z / a, 1.0 / b).astype(np.float32)


def rainrate_to_dbz(rate: np.ndarray, a: float = 200.0, b: float = 1.6) -> np.ndarray:
    """Reflectivity (dBZ) from rain rate (mm/h); 0 mm/h maps to ``-inf``.

    Callers that need a finite floor (plots, models) clip afterwards, which
    keeps this function an exact inverse of :func:`dbz_to_rainrate`.
    """
    r = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return (10.0 * np.log10(a * np.power(r, b))).astype(np.float32)


def to_rainrate(values: np.ndarray, units: str, a: float = 200.0, b: float = 1.6) -> np.ndarray:
    """Convert ``values`` in ``units`` (mm/h or dBZ) to mm/h."""
    canon = canonical_units(units)
    if canon == MMH:
        return np.asarray(values, dtype=np.float32)
    if canon == DBZ:
        return dbz_to_rainrate(values, a, b)
    raise NowcastError(f"cannot convert {units!r} to rain rate")


@dataclass(frozen=True)
class RainNormaliser:
    """Map rain rate to the model's input range and back, exactly.

    ``log`` maps ``R -> log10(R + offset) - log10(offset)`` divided by
    ``scale``: dry pixels go to exactly 0, heavy rain (100 mm/h) to about 1,
    and the logarithm keeps light and heavy rain equally visible to the
    network, as in the nowcasting literature. ``linear`` is ``R / scale``.
    ``inverse(forward(R)) == R`` to float rounding (tested), and negative model
    outputs are clipped to dry on the way back because rain is non-negative.
    """

    kind: str = "log"
    offset: float = 0.1
    scale: float = 3.0

    def forward(self, rate: np.ndarray) -> np.ndarray:
        r = np.asarray(rate, dtype=np.float64)
        if self.kind == "log":
            out = (np.log10(r + self.offset) - np.log10(self.offset)) / self.scale
        elif self.kind == "linear":
            out = r / self.scale
        else:
            raise NowcastError(f"unknown normalisation kind {self.kind!r}: expected 'log' or 'linear'")
        return out.astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        v = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
        if self.kind == "log":
            out = np.power(10.0, v * self.scale + np.log10(self.offset)) - self.offset
        elif self.kind == "linear":
            out = v * self.scale
        else:
            raise NowcastError(f"unknown normalisation kind {self.kind!r}: expected 'log' or 'linear'")
        return np.clip(out, 0.0, None).astype(np.float32)

    def as_dict(self) -> dict[str, float | str]:
        """Serialisable form stored in checkpoints and compared on load."""
        return {"kind": self.kind, "offset": self.offset, "scale": self.scale}
