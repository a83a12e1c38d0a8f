"""Shared fixtures: an isolated NOWCAST_HOME and paths of real sample files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# pyart prints a banner on import; keep test output readable.
os.environ.setdefault("PYART_QUIET", "1")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh NOWCAST_HOME so tests never touch ~/.nowcast."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("NOWCAST_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def odim_composite() -> Path:
    from nowcast.samples import sample_path

    return sample_path("meteoswiss_odim_composite")


@pytest.fixture()
def odim_stream(tmp_path: Path, odim_composite: Path):
    """Factory writing time-shifted copies of the real MeteoSwiss composite.

    ``odim_stream(n, start="2024-02-27T09:50", step_minutes=5, scale=None,
    folder="stream")`` returns the paths of ``n`` ODIM_H5 files, 5 minutes
    apart, each a byte copy of the real file with only its times changed (and
    its field multiplied by ``scale`` when given). File names carry the time,
    as MeteoSwiss' do. No real radar *sequence* ships offline, so the frames
    are identical fields at successive times.
    """
    import numpy as np

    from nowcast.io.odim_write import retime_odim_copy

    def make(
        n: int,
        start: str = "2024-02-27T09:50",
        step_minutes: int = 5,
        scale: float | None = None,
        folder: str = "stream",
    ) -> list[Path]:
        out = []
        for k in range(n):
            t = np.datetime64(start, "s") + np.timedelta64(step_minutes * k, "m")
            stamp = np.datetime_as_string(t, unit="m").replace("-", "").replace(":", "").replace("T", "")
            out.append(retime_odim_copy(odim_composite, tmp_path / folder / f"RFO{stamp}.h5", t, scale=scale))
        return out

    return make


@pytest.fixture()
def odim_moving(tmp_path: Path, odim_composite: Path):
    """Factory writing a *moving* sequence made from the real MeteoSwiss field.

    ``odim_moving(n, start="2024-02-27T09:50", step_minutes=5, shift=(0, 2),
    folder="moving")`` writes ``n`` ODIM_H5 composites with
    :func:`nowcast.io.odim_write.write_odim_composite`; frame ``k`` is the real
    rain-rate field translated by ``k * shift`` pixels (rows, columns; 1 km
    each, so the default is 2 km = one ``swiss-south`` cell per 5 min towards
    the east). The original's projection, corners and ``xscale = 1`` quirk are
    kept, so the files read exactly like the real one. This gives optical flow
    real structure with known motion; it is simulated from a real seed, not a
    real radar sequence.
    """
    import h5py
    import numpy as np

    from nowcast.io.odim_write import write_odim_composite

    with h5py.File(odim_composite, "r") as f:
        field = f["dataset1/data1/data"][()]
        where = dict(f["where"].attrs)
    projdef = where["projdef"].decode() if isinstance(where["projdef"], bytes) else str(where["projdef"])
    corners = {k: float(v) for k, v in where.items() if k[:2] in ("LL", "UL", "UR", "LR")}

    def make(
        n: int,
        start: str = "2024-02-27T09:50",
        step_minutes: int = 5,
        shift: tuple[int, int] = (0, 2),
        folder: str = "moving",
    ) -> list[Path]:
        out = []
        for k in range(n):
            t = np.datetime64(start, "s") + np.timedelta64(step_minutes * k, "m")
            stamp = np.datetime_as_string(t, unit="m").replace("-", "").replace(":", "").replace("T", "")
            data = np.roll(field, (k * shift[0], k * shift[1]), axis=(0, 1))
            out.append(
                write_odim_composite(
                    tmp_path / folder / f"RFO{stamp}.h5", data, t, projdef, corners,
                    quantity="RATE", xscale=1.0, yscale=1.0, timestep_minutes=step_minutes,
                )
            )
        return out

    return make


@pytest.fixture(scope="session")
def swiss_south_moving(odim_composite: Path):
    """Factory of a *moving* rain-rate sequence on the ``swiss-south`` grid.

    ``swiss_south_moving(n, shift=(1, 3))`` returns ``(frames, times, region)``:
    ``frames`` is ``(n, 128, 128)`` float32 mm/h, frame ``k`` being the real
    MeteoSwiss field translated by ``k * shift`` 1-km pixels (rows, columns)
    and then area-averaged 2x2 onto the region grid (rows 320..575, cols
    384..639 of the composite), so the motion is known and sub-cell
    (default: 0.5 cells south and 1.5 cells east per 5 min) while rain
    structure and NaN nodata are real. Times start 2024-02-27T09:50 UTC.
    Simulated from a real seed, not a real radar sequence.
    """
    import h5py
    import numpy as np

    from nowcast.config import load_region

    with h5py.File(odim_composite, "r") as f:
        field = f["dataset1/data1/data"][()].astype(np.float32)
    region = load_region("swiss-south")

    def make(n: int, shift: tuple[int, int] = (1, 3)):
        frames = []
        for k in range(n):
            moved = np.roll(field, (k * shift[0], k * shift[1]), axis=(0, 1))[320:576, 384:640]
            frames.append(moved.reshape(128, 2, 128, 2).mean(axis=(1, 3)))
        times = np.datetime64("2024-02-27T09:50", "ns") + np.arange(n) * np.timedelta64(5, "m")
        return np.stack(frames).astype(np.float32), times, region

    return make
