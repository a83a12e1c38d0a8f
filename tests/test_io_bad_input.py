"""Broken and foreign files: one-line errors that name the file and the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from nowcast.errors import GridError, InputFileError
from nowcast.grid import RegionGrid
from nowcast.errors import ConfigError
from nowcast.io.readers import detect_reader, get_reader, read_file
from nowcast.regrid import regrid


def _copy(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def _expect(path: Path, *words: str, exc: type[Exception] = InputFileError) -> str:
    with pytest.raises(exc) as err:
        read_file(path)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg
    for word in words:
        assert word in msg, msg
    return msg


def test_truncated_hdf5(odim_composite: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.h5"
    blob = odim_composite.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    _expect(path, "truncated or corrupt")


def test_corrupt_bytes_in_the_data(odim_composite: Path, tmp_path: Path) -> None:
    path = _copy(odim_composite, tmp_path, "corrupt.h5")
    blob = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    start = len(blob) // 3
    blob[start : start + 20000] = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(blob))
    _expect(path, "corrupt")


def test_unknown_quantity(odim_composite: Path, tmp_path: Path) -> None:
    path = _copy(odim_composite, tmp_path, "vrad.h5")
    with h5py.File(path, "r+") as f:
        f["dataset1/data1/what"].attrs["quantity"] = np.bytes_(b"VRADH")
    _expect(path, "unsupported ODIM quantity", "VRADH")


def test_missing_projection(odim_composite: Path, tmp_path: Path) -> None:
    path = _copy(odim_composite, tmp_path, "noproj.h5")
    with h5py.File(path, "r+") as f:
        del f["where"].attrs["projdef"]
    _expect(path, "missing projection", "projdef")


def test_invalid_projection(odim_composite: Path, tmp_path: Path) -> None:
    path = _copy(odim_composite, tmp_path, "badproj.h5")
    with h5py.File(path, "r+") as f:
        f["where"].attrs["projdef"] = np.bytes_(b"+proj=nonsense +units=m")
    _expect(path, "invalid projection")


def test_nan_only_field(odim_composite: Path, tmp_path: Path) -> None:
    path = _copy(odim_composite, tmp_path, "allnan.h5")
    with h5py.File(path, "r+") as f:
        dset = f["dataset1/data1/data"]
        dset[...] = np.full(dset.shape, np.nan)
    _expect(path, "no valid data")


def test_grid_that_does_not_overlap_the_region(odim_composite: Path) -> None:
    da = read_file(odim_composite)
    grid = RegionGrid.from_extent("EPSG:3577", (-2000000, -5000000, -1000000, -4000000), 5000, "australia")
    with pytest.raises(GridError) as err:
        regrid(da, grid)
    msg = str(err.value)
    assert str(odim_composite) in msg and "does not overlap" in msg and "australia" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("picture.h5", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
        ("notes.nc", b"this is a text file, not radar data\n" * 10),
    ],
)
def test_not_radar_files(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    _expect(path, "not a recognised radar or satellite file")


def test_plain_hdf5_without_radar_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_group("stuff").attrs["hello"] = 1
    _expect(path, "not a recognised radar or satellite file")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.h5", "does not exist")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    _expect(empty, "empty")


def test_unknown_reader_name_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="odim_h5.*"):
        get_reader("grib")


def test_wrong_reader_forced_on_a_file(odim_composite: Path) -> None:
    """Forcing the netCDF reader on an ODIM file still gives a one-line InputFileError."""
    assert detect_reader(odim_composite) == "odim_h5"
    with pytest.raises(InputFileError) as err:
        read_file(odim_composite, reader="cf_netcdf")
    assert str(odim_composite) in str(err.value) and "\n" not in str(err.value)
