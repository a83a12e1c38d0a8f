"""Reader registry: turn one radar or satellite file into one DataArray.

Every reader follows the contract of ``docs/design.md`` ("Data on a grid"):
a float32 :class:`xarray.DataArray` named ``rain_rate``, ``reflectivity`` or
``brightness_temperature`` with dims ``(time, y, x)`` (regular grids) or
``(time, azimuth, range)`` (polar sweeps, 2-D ``x``/``y`` coordinates), a UTC
``time``, a ``spatial_ref`` coordinate, CF units and ``source_file``/``product``/
``quantity`` attrs. NaN means *no data*, 0 (or :data:`DBZ_UNDETECT` for
reflectivity) means *dry*.

Readers are looked up by name as in pysteps' ``io.interface.get_method``: a
dict maps names to ``"module:function"`` strings, imported lazily so that
reading an ODIM composite never pays for importing xradar or pyart.
:func:`detect_reader` picks the reader from the file's *content* (magic bytes,
HDF5/netCDF attributes, WMO headers), never from its extension, because radar
centres name files in every possible way.
"""

from __future__ import annotations

import importlib
import os
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pyproj import CRS

from nowcast.errors import ConfigError, EnvironmentFault, InputFileError, NowcastError, is_environment_fault
from nowcast.grid import spatial_ref_coord
from nowcast.units import DBZ, KELVIN, MMH, canonical_units

log = logging.getLogger(__name__)

Reader = Callable[[Path], xr.DataArray]

#: reader name -> "module:function"; imported on first use.
READERS: dict[str, str] = {
    "odim_h5": "nowcast.io.odim:read_odim_composite",
    "cf_netcdf": "nowcast.io.cf_netcdf:read_cf_netcdf",
    "odim_pvol": "nowcast.io.polar:read_odim_pvol",
    "cfradial": "nowcast.io.polar:read_cfradial",
    "nexrad_level2": "nowcast.io.polar:read_nexrad_level2",
    "nexrad_level3": "nowcast.io.polar:read_nexrad_level3",
}

#: Variable name and CF attributes per canonical unit (the design contract).
VARIABLES: dict[str, dict[str, str]] = {
    MMH: {"name": "rain_rate", "units": MMH, "standard_name": "rainfall_rate"},
    DBZ: {"name": "reflectivity", "units": DBZ, "standard_name": "equivalent_reflectivity_factor"},
    KELVIN: {"name": "brightness_temperature", "units": KELVIN, "standard_name": "toa_brightness_temperature"},
}

#: Reflectivity written for "undetect" (echo below the detection threshold).
#: The contract says undetect means *dry*; 0 dBZ would be light drizzle, and
#: ``-inf`` (the only value that converts to exactly 0 mm/h) poisons averages,
#: so a finite floor is used: -32 dBZ (the usual ODIM 8-bit offset) converts to
#: 3.6e-4 mm/h with Marshall-Palmer, three orders below any rain threshold.
DBZ_UNDETECT: float = -32.0

NOT_RADAR = "not a recognised radar or satellite file"

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NETCDF3_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
NEXRAD_L2_MAGICS = (b"AR2V", b"ARCHIVE2")
#: WMO abbreviated heading + AWIPS id that precede every NEXRAD Level-III product
#: (``SDUS54 KBMX 020205`` then ``N0RBMX``).
_WMO_L3 = re.compile(rb"SDUS\d\d [A-Z]{4} \d{6}\s+[A-Z0-9]{3}[A-Z]{3}")


def get_reader(name: str) -> Reader:
    """The reader function registered as ``name``.

    Raises
    ------
    ConfigError
        If ``name`` is unknown (a usage error); the message lists the valid names.
    """
    try:
        target = READERS[name]
    except KeyError:
        raise ConfigError(f"--reader {name!r}: unknown reader; valid readers: {', '.join(sorted(READERS))}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def detect_reader(path: str | Path) -> str:
    """Name of the reader for ``path``, decided from the file's content.

    Raises
    ------
    InputFileError
        If the file is missing, empty, unreadable, or no reader recognises it.
    """
    path = Path(path)
    head = _head(path)
    if head.startswith(HDF5_MAGIC):
        return _detect_hdf5(path)
    if head.startswith(NETCDF3_MAGICS):
        return _detect_netcdf3(path)
    if head.startswith(NEXRAD_L2_MAGICS):
        return "nexrad_level2"
    if _WMO_L3.search(head[:200]):
        return "nexrad_level3"
    raise InputFileError(path, NOT_RADAR)


def read_file(path: str | Path, reader: str | None = None) -> xr.DataArray:
    """Read one file with the named reader, or the detected one.

    Parameters
    ----------
    path
        Radar or satellite file.
    reader
        Registry name (see :data:`READERS`); ``None`` detects it from content.

    Raises
    ------
    InputFileError
        For any file that cannot be turned into a valid DataArray (missing,
        truncated, unknown quantity, no projection, only NaN...).
    ValueError
        For an unknown reader name.
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, "is a directory, not a file")
    if not path.is_file():
        raise InputFileError(path, "file does not exist")
    if not os.access(path, os.R_OK):  # the operator's permissions, not a bad file: never quarantine it
        raise EnvironmentFault(f"{path}: permission denied: this process cannot read the file")
    name = reader or detect_reader(path)
    func = get_reader(name)
    try:
        return func(path)
    except NowcastError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, EOFError) as exc:
        if is_environment_fault(exc):
            raise EnvironmentFault(f"{path}: machine fault while reading ({one_line(exc)})") from exc
        # Libraries raise all sorts of things on malformed files; the user
        # needs one line naming the file, not a traceback from deep inside.
        raise InputFileError(path, f"cannot read as {name} ({one_line(exc)})") from None


# ---------------------------------------------------------------- helpers --


def one_line(exc: BaseException | str) -> str:
    """First line of an exception message, for one-line errors."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if isinstance(exc, BaseException) else "unknown error"
    return text.splitlines()[0]


def variable_attrs(units: str, path: Path) -> dict[str, str]:
    """Name, units and standard name for a unit string, or an InputFileError."""
    try:
        canon = canonical_units(units)
    except NowcastError:
        raise InputFileError(path, f"unsupported units {units!r}: expected mm/h, dBZ or K") from None
    return dict(VARIABLES[canon])


def make_dataarray(
    values: np.ndarray,
    time: np.datetime64,
    crs: CRS | xr.DataArray,
    path: Path,
    *,
    units: str,
    product: str,
    quantity: str,
    x: np.ndarray,
    y: np.ndarray,
    dims: tuple[str, str] = ("y", "x"),
    extra_attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Assemble a reader's output and check that it holds data.

    Parameters
    ----------
    values
        2-D field; cast to float32 and given a leading ``time`` axis.
    crs
        CRS of ``x``/``y``, or an already built ``spatial_ref`` coordinate
        (readers cache those: building one costs milliseconds).
    x, y
        1-D (regular grid, dims ``("y", "x")``) or 2-D (polar/curvilinear)
        coordinates in the CRS.
    dims
        Spatial dims of ``values``.

    Raises
    ------
    InputFileError
        If no pixel holds valid data (a field that is all nodata is a failed
        product, and archiving it would hide the outage).
    """
    data = np.asarray(values, dtype=np.float32)
    if not np.isfinite(data).any():
        raise InputFileError(path, "no valid data (every pixel is nodata/NaN)")
    attrs = variable_attrs(units, path)
    name = attrs.pop("name")
    attrs.update(
        source_file=str(path),
        product=product,
        quantity=quantity,
        grid_mapping="spatial_ref",
    )
    if extra_attrs:
        attrs.update(extra_attrs)
    sref = crs if isinstance(crs, xr.DataArray) else spatial_ref_coord(crs)
    coords: dict[str, Any] = {
        "time": ("time", np.asarray([time], dtype="datetime64[ns]")),
        "spatial_ref": sref.copy(),
    }
    if np.ndim(x) == 1:
        coords["x"] = (dims[1], np.asarray(x, dtype=np.float64), _axis_attrs(crs, "x"))
        coords["y"] = (dims[0], np.asarray(y, dtype=np.float64), _axis_attrs(crs, "y"))
    else:
        coords["x"] = (dims, np.asarray(x, dtype=np.float64), _axis_attrs(crs, "x"))
        coords["y"] = (dims, np.asarray(y, dtype=np.float64), _axis_attrs(crs, "y"))
    return xr.DataArray(data[np.newaxis], dims=("time", *dims), coords=coords, name=name, attrs=attrs)


def _axis_attrs(crs: CRS | xr.DataArray, axis: str) -> dict[str, str]:
    geographic = (
        crs.is_geographic
        if isinstance(crs, CRS)
        else crs.attrs.get("grid_mapping_name") == "latitude_longitude"
    )
    if geographic:
        return (
            {"standard_name": "longitude", "units": "degrees_east"}
            if axis == "x"
            else {"standard_name": "latitude", "units": "degrees_north"}
        )
    return {"standard_name": f"projection_{axis}_coordinate", "units": "m"}


def _head(path: Path, size: int = 512) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(size)
    except FileNotFoundError:
        raise InputFileError(path, "file does not exist") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot open ({one_line(exc)})") from None
    if not head:
        raise InputFileError(path, "file is empty")
    return head


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip("\x00")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.item())
    return str(value)


def _detect_hdf5(path: Path) -> str:
    """ODIM composite / ODIM volume / CfRadial / CF netCDF-4 from HDF5 attrs."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            conventions = _text(f.attrs.get("Conventions", ""))
            if "what" in f and "object" in f["what"].attrs:
                obj = _text(f["what"].attrs["object"]).upper()
                if obj in {"COMP", "IMAGE", "CVOL"}:
                    return "odim_h5"
                if obj in {"PVOL", "SCAN"}:
                    return "odim_pvol"
                raise InputFileError(path, f"ODIM object {obj!r} is not supported (expected COMP, IMAGE, PVOL or SCAN)")
            if conventions.upper().startswith("ODIM"):
                raise InputFileError(path, "ODIM_H5 file without what/object")
            if "radial" in conventions.lower():
                return "cfradial"
            netcdf = "_NCProperties" in f.attrs or any(
                "DIMENSION_LIST" in obj.attrs or "CLASS" in obj.attrs
                for obj in f.values()
                if isinstance(obj, h5py.Dataset)
            )
            if netcdf or conventions.upper().startswith("CF"):
                return "cf_netcdf"
    except NowcastError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputFileError(path, f"unreadable HDF5 file, truncated or corrupt ({one_line(exc)})") from None
    raise InputFileError(path, f"{NOT_RADAR} (HDF5 without ODIM or CF metadata)")


def _detect_netcdf3(path: Path) -> str:
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            conventions = str(getattr(nc, "Conventions", ""))
    except OSError as exc:
        raise InputFileError(path, f"unreadable netCDF file, truncated or corrupt ({one_line(exc)})") from None
    return "cfradial" if "radial" in conventions.lower() else "cf_netcdf"
