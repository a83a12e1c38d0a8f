"""Training sequences for the Lagrangian frame: stored motion, and sequences cut from a real archive.

A Lagrangian model trains on frames moved to their analysis time along the
motion of their input window (:mod:`nowcast.models.lagrangian`). Optical flow
is the expensive part of that, so it is computed **once per sequence and
analysis time** and stored beside the sequences (variable ``motion``, dims
``(sequence, time, component, y, x)``, pixels per timestep, NaN where the
window would start before the sequence); a training step then pays only for
the advection. The same store layout and the same motion come from either
source of sequences:

* stores "simulated from real seeds" (:mod:`pipelines.simulate`),
* a region's real ingested archive (:func:`archive_sequences`): every run of
  consecutive frames long enough for one training sample becomes a
  sequence, so a user with a real archive trains on it with ``nowcast train``.

Usage::

    python -m pipelines.sequences motion data/sim/swiss-south-train.zarr --input-frames 4
    python -m pipelines.sequences archive --region swiss-south --frames 16 --out data/swiss-south-archive.zarr
"""

from __future__ import annotations

import argparse
import logging
import time as _time
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.errors import ConfigError

log = logging.getLogger(__name__)

MOTION_VARIABLE = "motion"


#: Variables motion can be computed from, and how their fields are tracked.
#: Rain is tracked in dBR (as the extrapolation baseline does); infrared as
#: the cloud-top coldness of the default ``brightness_temperature``
#: normalisation, ``(330 K - T) / 120 K`` (optical flow does not depend on the
#: affine scale; the reference only decides what counts as "empty").
TRACKED = {"rain_rate": "rain", "brightness_temperature": "brightness_temperature"}


def _sequence_motion(frames: np.ndarray, input_frames: int, method: str, variable: str = "rain_rate") -> np.ndarray:
    """Motion ``(T, 2, ny, nx)`` of every analysis time of one sequence (NaN before a full window)."""
    from nowcast.motion import motion_field

    tracer = TRACKED[variable] != "rain"
    if tracer:
        from nowcast.models.lagrangian import tracer as to_tracer
        from nowcast.models.normalization import make_normaliser

        frames = to_tracer(frames, make_normaliser({"kind": "brightness_temperature"}))[0]
    T = frames.shape[0]
    out = np.full((T, 2, *frames.shape[1:]), np.nan, dtype=np.float32)
    for t in range(input_frames - 1, T):
        out[t] = motion_field(frames[t - input_frames + 1 : t + 1], method, tracer=tracer)
    return out


def has_motion(path: str | Path, input_frames: int, method: str = "LK") -> bool:
    """Whether the store holds motion for windows of ``input_frames`` by ``method``."""
    import xarray as xr

    with xr.open_zarr(path) as ds:
        if MOTION_VARIABLE not in ds:
            return False
        attrs = ds[MOTION_VARIABLE].attrs
        return int(attrs.get("motion_window", -1)) == int(input_frames) and attrs.get("motion_method") == method


def add_motion(path: str | Path, input_frames: int, method: str = "LK", scheduler: Any = "threads") -> Path:
    """Compute and store the motion of every sequence and analysis time (see the module docstring).

    Sequences are independent dask tasks. The variable is written in one
    ``to_zarr(mode="a")`` after all are computed, so an interrupted run leaves
    the store as it was.

    Raises
    ------
    ConfigError
        The store does not exist or holds no rain-rate sequences.
    """
    import dask
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: sequence store does not exist")
    started = _time.perf_counter()
    with xr.open_zarr(path) as ds:
        names = [n for n in TRACKED if n in ds and ds[n].dims == ("sequence", "time", "y", "x")]
        if not names:
            raise ConfigError(f"{path}: no {' or '.join(TRACKED)} (sequence, time, y, x) to compute motion from")
        variable = names[0]
        data = np.asarray(ds[variable].values, dtype=np.float32)
        attrs = dict(ds.attrs)  # to_zarr(mode="a") rewrites the root attributes: keep provenance & co.
    if variable == "rain_rate":
        data = np.nan_to_num(data, nan=0.0)  # no data tracks as dry; brightness temperatures: tracer() handles NaN
    tasks = [dask.delayed(_sequence_motion, pure=True)(seq, int(input_frames), method, variable) for seq in data]
    with dask.config.set(scheduler=scheduler):
        motion = np.stack(dask.compute(*tasks))
    var = xr.DataArray(
        motion, dims=("sequence", "time", "component", "y", "x"),
        attrs={"long_name": f"optical-flow motion of the {input_frames} frames ending at this time (pysteps {method})",
               "motion_tracked": f"{variable} as {'dBR' if variable == 'rain_rate' else 'cloud-top coldness (330 K - T) / 120 K'}",
               "units": "pixel per timestep", "motion_window": int(input_frames), "motion_method": method,
               "component_names": "u (along x), v (along y)"},
    )
    out = xr.Dataset({MOTION_VARIABLE: var}, attrs=attrs)
    out[MOTION_VARIABLE].encoding["chunks"] = (1, motion.shape[1], 2, motion.shape[3], motion.shape[4])
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        import zarr

        group = zarr.open_group(str(path), mode="a")
        if MOTION_VARIABLE in group:  # recomputed for other settings
            del group[MOTION_VARIABLE]
        out.to_zarr(path, mode="a", consolidated=True)
    log.info("%s: motion of %d sequences x %d analysis times (%s, %d-frame windows) in %.1f s",
             path, motion.shape[0], motion.shape[1] - input_frames + 1, method, input_frames,
             _time.perf_counter() - started)
    return path


def ensure_motion(path: str | Path, input_frames: int, method: str = "LK") -> Path:
    """:func:`add_motion` unless the store already has it for these settings."""
    if not has_motion(path, input_frames, method):
        log.info("%s: computing the motion of every sequence once (%s, %d-frame windows)", path, method, input_frames)
        add_motion(path, input_frames, method)
    return Path(path)


def archive_sequences(region: str, out: str | Path, frames: int, home: str | Path | None = None,
                      stride: int | None = None) -> Path:
    """Cut training sequences from a region's real archive into a sequence store.

    Every window of ``frames`` consecutive frames (no gap at the region's
    cadence), started every ``stride`` frames (default ``frames // 2``), is
    one sequence. The store has the layout of a simulated one, with
    ``provenance`` saying where the frames came from (the archive's own), so
    :class:`nowcast.training.ZarrSequences` trains on it unchanged.

    Raises
    ------
    ConfigError
        The archive has no run of ``frames`` consecutive frames.
    """
    import xarray as xr

    from nowcast.config import load_region
    from nowcast.io.archive import Archive
    from nowcast.units import DBZ, canonical_units, dbz_to_rainrate

    reg = load_region(region, home)
    archive = Archive.open(reg, home=home, create=False)
    times = np.sort(np.asarray(archive.times, dtype="datetime64[ns]"))
    step = np.timedelta64(int(reg.timestep_minutes), "m")
    stride = int(stride or max(1, frames // 2))
    starts = []
    i = 0
    while i + frames <= times.size:
        run = times[i : i + frames]
        if np.all(np.diff(run) == step):
            starts.append(i)
            i += stride
        else:
            i += 1
    if not starts:
        raise ConfigError(f"region {region!r}: the archive has no {frames} consecutive frames at {reg.timestep_minutes} min")
    seqs = []
    for s in starts:
        da = archive.window(times[s + frames - 1], frames)
        values = np.asarray(da.values, dtype=np.float32)
        if canonical_units(str(da.attrs.get("units", reg.units))) == DBZ:
            values = dbz_to_rainrate(values, reg.zr.a, reg.zr.b)
        seqs.append(values)
    data = np.stack(seqs)
    lead = np.arange(frames) * np.timedelta64(int(reg.timestep_minutes * 60), "s")
    ds = xr.Dataset(
        {"rain_rate": (("sequence", "time", "y", "x"), data,
                       {"units": "mm h-1", "standard_name": "rainfall_rate", "long_name": f"rain rate from the {region} archive"}),
         "start_time": ("sequence", times[starts], {"long_name": "time of the sequence's first frame"})},
        coords={"sequence": np.arange(len(starts)), "time": ("time", lead)},
        attrs={"Conventions": "CF-1.8", "title": f"{region} training sequences from its archive",
               "provenance": f"radar archive of region {region}", "domain": region, "units": "mm h-1",
               "timestep_minutes": reg.timestep_minutes, "resolution_m": reg.resolution},
    )
    ds["rain_rate"].encoding["chunks"] = (1, frames, *data.shape[2:])
    ds["time"].encoding.update(units="minutes", dtype="int32")
    ds.to_zarr(out, mode="w", consolidated=True)
    log.info("region %s: %d sequences of %d frames from the archive -> %s", region, len(starts), frames, out)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.sequences {motion,archive} ...``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("motion", help="store the motion of every sequence of a store")
    m.add_argument("store", type=Path)
    m.add_argument("--input-frames", type=int, default=4)
    m.add_argument("--method", default="LK")
    a = sub.add_parser("archive", help="cut training sequences from a region's archive")
    a.add_argument("--region", required=True)
    a.add_argument("--frames", type=int, default=16)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--home", default=None)
    a.add_argument("--input-frames", type=int, default=4, help="also store the motion for this window")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "motion":
        add_motion(args.store, args.input_frames, args.method)
    else:
        archive_sequences(args.region, args.out, args.frames, args.home)
        add_motion(args.out, args.input_frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
