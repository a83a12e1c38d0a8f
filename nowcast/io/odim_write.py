"""Write radar composites in the real ODIM_H5 ``COMP`` format.

Nowcast only ever has one real composite at hand (the MeteoSwiss CHRFO sample),
yet the demo, the simulator and the ingest tests need *streams* of files that a
radar centre would deliver. This module writes them in the exact format the
readers consume (EUMETNET OPERA ODIM_H5 v2.3, ``object=COMP``), so everything
downstream runs unchanged on real archives:

* :func:`write_odim_composite` builds a file from an array, a time and a
  projection (simulated fields, demos);
* :func:`retime_odim_copy` copies a real file and changes only its nominal
  time (and, optionally, scales its data), keeping every other attribute of the
  original, including quirks such as MeteoSwiss' ``xscale = 1.0``.

Times are UTC. ODIM stores them as ``YYYYMMDD`` / ``HHMMSS`` strings: the
top-level ``what/date`` + ``what/time`` is the nominal (end) time and
``dataset1/what/start*``/``end*`` the accumulation/scan interval.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
from pyproj import CRS, Transformer

from nowcast.errors import InputFileError

ODIM_CONVENTIONS = "ODIM_H5/V2_3"
ODIM_VERSION = "H5rad 2.3"

#: ODIM quantity -> product code used in ``dataset1/what/product``.
PRODUCT_OF_QUANTITY: dict[str, str] = {"RATE": "RR", "DBZH": "MAX", "TH": "MAX", "ACRR": "RR"}


def _as_datetime(time: np.datetime64 | dt.datetime | str) -> dt.datetime:
    """A naive UTC :class:`datetime.datetime` from numpy, ISO string or datetime."""
    if isinstance(time, dt.datetime):
        if time.tzinfo is not None:
            time = time.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return time
    seconds = np.datetime64(time, "s").astype("int64")
    return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(seconds))


def odim_date_time(time: np.datetime64 | dt.datetime | str) -> tuple[str, str]:
    """``(YYYYMMDD, HHMMSS)`` strings as ODIM writes them."""
    t = _as_datetime(time)
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S")


def corners_from_extent(projdef: str, extent: tuple[float, float, float, float]) -> dict[str, float]:
    """ODIM ``where`` corner attributes (``LL_lon`` ... ``UR_lat``) of a grid.

    Parameters
    ----------
    projdef
        PROJ string of the composite.
    extent
        Cell-edge extent ``(xmin, ymin, xmax, ymax)`` in projection units.
        ODIM corners are the outer corners of the corner pixels, so readers
        recover the same edges by projecting them back.
    """
    xmin, ymin, xmax, ymax = extent
    to_geo = Transformer.from_crs(CRS.from_user_input(projdef), CRS.from_epsg(4326), always_xy=True)
    out: dict[str, float] = {}
    for key, (x, y) in {"LL": (xmin, ymin), "UL": (xmin, ymax), "UR": (xmax, ymax), "LR": (xmax, ymin)}.items():
        lon, lat = to_geo.transform(x, y)
        out[f"{key}_lon"] = float(lon)
        out[f"{key}_lat"] = float(lat)
    return out


def _str_attr(value: str) -> np.bytes_:
    """ODIM strings are fixed-length, NUL-terminated ASCII (not HDF5 vlen)."""
    return np.bytes_(value.encode("ascii"))


def write_odim_composite(
    path: str | Path,
    data: np.ndarray,
    time: np.datetime64 | dt.datetime | str,
    projdef: str,
    corners: Mapping[str, float] | None = None,
    *,
    extent: tuple[float, float, float, float] | None = None,
    quantity: str = "RATE",
    start_time: np.datetime64 | dt.datetime | str | None = None,
    timestep_minutes: int = 5,
    gain: float = 1.0,
    offset: float = 0.0,
    nodata: float = float("nan"),
    undetect: float = 0.0,
    xscale: float | None = None,
    yscale: float | None = None,
    source: str = "ORG:215, CTY:644, CMT:nowcast",
    prodname: str = "NOWCAST",
    product: str | None = None,
) -> Path:
    """Write one ODIM_H5 composite (``object=COMP``) with a single dataset.

    Parameters
    ----------
    path
        Output file (parent folders are created).
    data
        2-D array ``(ysize, xsize)``, row 0 = northern edge as in ODIM. Stored
        as given (float data with ``gain=1, offset=0`` as MeteoSwiss does, or
        packed integers with ``gain``/``offset``).
    time
        Nominal (end) time, UTC.
    projdef
        PROJ string of the grid (``where/projdef``).
    corners
        ``LL_lon``, ``LL_lat``, ``UL_*``, ``UR_*``, ``LR_*`` in degrees. Give
        either this or ``extent``.
    extent
        Cell-edge extent ``(xmin, ymin, xmax, ymax)`` in projection metres;
        corners are derived from it with pyproj.
    quantity
        ODIM quantity (``RATE`` in mm/h, ``DBZH`` in dBZ, ...).
    start_time
        Start of the interval; default ``time - timestep_minutes``.
    xscale, yscale
        Pixel size written in ``where``; default derived from ``extent`` (the
        standard meaning). Pass ``1.0`` to mimic MeteoSwiss' quirk.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    data = np.asarray(data)
    if data.ndim != 2:
        raise InputFileError(path, f"ODIM composite data must be 2-D (ysize, xsize), got shape {data.shape}")
    if corners is None:
        if extent is None:
            raise InputFileError(path, "write_odim_composite needs either corners or extent")
        corners = corners_from_extent(projdef, extent)
    ysize, xsize = data.shape
    if extent is not None:
        xscale = (extent[2] - extent[0]) / xsize if xscale is None else xscale
        yscale = (extent[3] - extent[1]) / ysize if yscale is None else yscale
    end = _as_datetime(time)
    start = _as_datetime(start_time) if start_time is not None else end - dt.timedelta(minutes=timestep_minutes)
    end_date, end_clock = odim_date_time(end)
    start_date, start_clock = odim_date_time(start)

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = _str_attr(ODIM_CONVENTIONS)
        what = f.create_group("what")
        what.attrs["object"] = _str_attr("COMP")
        what.attrs["version"] = _str_attr(ODIM_VERSION)
        what.attrs["date"] = _str_attr(end_date)
        what.attrs["time"] = _str_attr(end_clock)
        what.attrs["source"] = _str_attr(source)
        where = f.create_group("where")
        where.attrs["projdef"] = _str_attr(projdef)
        where.attrs["xsize"] = np.int64(xsize)
        where.attrs["ysize"] = np.int64(ysize)
        where.attrs["xscale"] = np.float64(xscale if xscale is not None else 1.0)
        where.attrs["yscale"] = np.float64(yscale if yscale is not None else 1.0)
        for key in ("LL", "UL", "UR", "LR"):
            where.attrs[f"{key}_lon"] = np.float64(corners[f"{key}_lon"])
            where.attrs[f"{key}_lat"] = np.float64(corners[f"{key}_lat"])
        f.create_group("how")
        ds = f.create_group("dataset1")
        dwhat = ds.create_group("what")
        dwhat.attrs["product"] = _str_attr(product or PRODUCT_OF_QUANTITY.get(quantity, "COMP"))
        dwhat.attrs["prodname"] = _str_attr(prodname)
        dwhat.attrs["startdate"] = _str_attr(start_date)
        dwhat.attrs["starttime"] = _str_attr(start_clock)
        dwhat.attrs["enddate"] = _str_attr(end_date)
        dwhat.attrs["endtime"] = _str_attr(end_clock)
        ds.create_group("where")
        ds.create_group("how")
        d1 = ds.create_group("data1")
        dset = d1.create_dataset(
            "data", data=data, compression="gzip", compression_opts=6, chunks=(min(ysize, 40), min(xsize, 89))
        )
        dset.attrs["CLASS"] = _str_attr("IMAGE")
        dset.attrs["IMAGE_VERSION"] = _str_attr("1.2")
        d1what = d1.create_group("what")
        d1what.attrs["quantity"] = _str_attr(quantity)
        d1what.attrs["gain"] = np.float64(gain)
        d1what.attrs["offset"] = np.float64(offset)
        d1what.attrs["nodata"] = np.float64(nodata)
        d1what.attrs["undetect"] = np.float64(undetect)
    return path


def retime_odim_copy(
    src: str | Path,
    dst: str | Path,
    time: np.datetime64 | dt.datetime | str,
    *,
    scale: float | None = None,
    timestep_minutes: int | None = None,
) -> Path:
    """Copy a real ODIM composite, changing only its nominal time.

    The copy keeps the original's bytes (compression, attributes, quirks) and
    rewrites ``what/date``, ``what/time`` and every ``dataset*/what``
    ``startdate/starttime/enddate/endtime`` so that the interval keeps its
    original length and ends at ``time``.

    Parameters
    ----------
    src, dst
        Real file to copy and where to write the copy.
    time
        New nominal (end) time, UTC.
    scale
        If given, multiply ``dataset1/data1/data`` by it (a *different* field
        at the same time, for conflict tests); nodata/undetect stay as they are.
    timestep_minutes
        Interval length to write; default keeps the original's.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    end = _as_datetime(time)
    end_date, end_clock = odim_date_time(end)
    try:
        with h5py.File(dst, "r+") as f:
            _set_like(f["what"].attrs, "date", end_date)
            _set_like(f["what"].attrs, "time", end_clock)
            for name in f:
                if not name.startswith("dataset") or "what" not in f[name]:
                    continue
                what = f[name]["what"].attrs
                length = dt.timedelta(minutes=timestep_minutes) if timestep_minutes else None
                if length is None and {"startdate", "starttime", "enddate", "endtime"} <= set(what):
                    old_start = dt.datetime.strptime(_text(what["startdate"]) + _text(what["starttime"]), "%Y%m%d%H%M%S")
                    old_end = dt.datetime.strptime(_text(what["enddate"]) + _text(what["endtime"]), "%Y%m%d%H%M%S")
                    length = old_end - old_start
                start_date, start_clock = odim_date_time(end - (length or dt.timedelta(0)))
                for key, value in (
                    ("startdate", start_date),
                    ("starttime", start_clock),
                    ("enddate", end_date),
                    ("endtime", end_clock),
                ):
                    _set_like(what, key, value)
            if scale is not None:
                dset = f["dataset1/data1/data"]
                dset[...] = dset[...] * scale
    except (OSError, KeyError, ValueError) as exc:
        dst.unlink(missing_ok=True)
        raise InputFileError(src, f"cannot retime ODIM copy ({exc})") from None
    return dst


def _set_like(attrs: h5py.AttributeManager, key: str, value: str) -> None:
    """Set a string attribute in the same HDF5 string kind the file already
    uses (the MeteoSwiss sample has variable-length strings, the ODIM spec
    fixed-length ones), so a retimed copy differs from its original only in
    the values."""
    if key in attrs and isinstance(attrs[key], str):
        attrs[key] = value
    else:
        attrs[key] = _str_attr(value)


def _text(value: object) -> str:
    """ODIM string attribute as ``str`` (h5py returns bytes or str)."""
    return value.decode("ascii") if isinstance(value, bytes) else str(value)
