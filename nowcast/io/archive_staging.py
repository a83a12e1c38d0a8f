"""Frames on their way into the archive: in memory, or staged by ingest workers.

:class:`FrameBatch` is what the archive's already-conformed append path
takes; :class:`Staging` is the scratch array beside the store where the
ingest pipeline's worker processes write their frames, and :func:`_move_row`
how the commit renames a staged frame's chunk files into an archive row.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.io.archive_layout import _no_zarr_warnings, data_encoding


@dataclass
class FrameBatch:
    """Frames already in archive form (:func:`conform` has run on them), for :meth:`Archive._append_prepared`.

    Each frame is either in memory (``values[k]``) or *staged*: written by a
    worker process into slot ``slots[k]`` of ``staging``, from where the
    commit moves its chunk files into the archive row by renaming them
    (no decode, no encode, no copy).
    """

    times_ns: np.ndarray
    sources: list[str]
    values: list[np.ndarray | None]
    slots: list[int | None] | None = None
    staging: Staging | None = None
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_values(cls, times_ns: np.ndarray, values: np.ndarray, sources: Sequence[str] | None = None) -> FrameBatch:
        return cls(np.asarray(times_ns, dtype="int64"), list(sources or [""] * len(values)), list(values))

    def __len__(self) -> int:
        return len(self.times_ns)

    def is_staged(self, k: int) -> bool:
        return self.values[k] is None

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` (a staged one is read back from the staging array, once)."""
        if self.values[k] is not None:
            return self.values[k]
        if k not in self._cache:
            self._cache[k] = self.staging.read(self.slots[k])
        return self._cache[k]

    def take(self, idx: Sequence[int]) -> FrameBatch:
        return FrameBatch(
            self.times_ns[list(idx)] if len(idx) else np.empty(0, dtype="int64"),
            [self.sources[k] for k in idx],
            [self.values[k] for k in idx],
            None if self.slots is None else [self.slots[k] for k in idx],
            self.staging,
        )


class Staging:
    """A scratch copy of the archive's data array beside the store, one slot per file.

    Worker processes of the ingest pipeline write each frame they read into
    their own slot (no lock needed: nobody else writes there, and the store
    itself is untouched); the driver's commit then *renames* the slot's chunk
    files into the archive row (one rename of the slot's folder for a new
    row). The array has the store's :func:`data_encoding`, so a chunk file
    means the same in both (checked before renaming; otherwise frames are
    copied through zarr). Its folder
    (``archives/.REGION.zarr.staging-PID-XXXX``) is removed when the ingest
    ends; one left by a dead process is removed by the next ingest.
    """

    def __init__(self, path: Path, variable: str) -> None:
        self.path = Path(path)
        self.variable = variable
        self._array: Any = None
        self._plan_cache: Any = False  # not computed yet

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "variable": self.variable, "_array": None, "_plan_cache": False}

    def create(self, n_slots: int, grid_shape: tuple[int, int]) -> None:
        """Create the array: the archive's :func:`data_encoding`, ``n_slots`` frames (bare zarr: milliseconds)."""
        import zarr

        enc = data_encoding(grid_shape)
        with _no_zarr_warnings():
            self._array = zarr.create_array(
                str(self.array_dir), shape=(max(1, n_slots), *grid_shape), chunks=enc["chunks"], dtype=enc["dtype"],
                compressors=enc["compressors"], fill_value=np.float32(np.nan), dimension_names=("time", "y", "x"),
            )

    @property
    def array_dir(self) -> Path:
        return self.path / self.variable

    def _open(self) -> Any:
        import zarr

        if self._array is None:
            with _no_zarr_warnings():
                self._array = zarr.open_array(str(self.array_dir), mode="r+")
        return self._array

    def write(self, slot: int, frame: np.ndarray) -> None:
        """Write one conformed frame into ``slot`` (run by a worker).

        The chunks are encoded here with the array's own Blosc settings and
        written as plain files: through zarr the same write cost about 8 ms
        per 640x710 frame (its event-loop thread, a temporary file and a
        rename per chunk), directly about 1.5 ms. No atomic rename is needed:
        nobody reads a slot before its worker has returned. An all-NaN tile
        gets no file, as zarr does it. Arrays with other codecs go through zarr.
        """
        frame = np.asarray(frame, dtype=np.float32)
        plan = self._plan()
        if plan is None:
            self._open()[slot] = frame
            return
        codec, (ty, tx) = plan
        ny, nx = frame.shape
        for i in range(-(-ny // ty)):
            for j in range(-(-nx // tx)):
                tile = frame[i * ty : (i + 1) * ty, j * tx : (j + 1) * tx]
                if tile.shape != (ty, tx):  # an edge tile: zarr stores whole chunks, padded with the fill value
                    full = np.full((ty, tx), np.nan, dtype=np.float32)
                    full[: tile.shape[0], : tile.shape[1]] = tile
                    tile = full
                if np.isnan(tile).all():
                    continue
                folder = self.array_dir / "c" / str(slot) / str(i)
                folder.mkdir(parents=True, exist_ok=True)
                raw = np.ascontiguousarray(tile, dtype="<f4").view(np.uint8).reshape(-1)
                (folder / str(j)).write_bytes(codec.encode(raw))

    def _plan(self) -> tuple[Any, tuple[int, int]] | None:
        """``(numcodecs Blosc, tile shape)`` when the array is float32 + bytes(little) + blosc, else ``None``."""
        if self._plan_cache is not False:
            return self._plan_cache
        plan = None
        try:
            meta = json.loads((self.array_dir / "zarr.json").read_text())
            codecs = meta["codecs"]
            if (meta["data_type"] == "float32" and meta["fill_value"] == "NaN" and len(codecs) == 2
                    and codecs[0] == {"name": "bytes", "configuration": {"endian": "little"}}
                    and codecs[1]["name"] == "blosc"
                    and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}):
                import numcodecs

                cfg = codecs[1]["configuration"]
                shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[cfg["shuffle"]]
                codec = numcodecs.Blosc(cname=cfg["cname"], clevel=cfg["clevel"], shuffle=shuffle,
                                        blocksize=cfg.get("blocksize", 0), typesize=cfg.get("typesize", 4))
                plan = (codec, tuple(meta["chunk_grid"]["configuration"]["chunk_shape"][1:]))
        except (OSError, KeyError, ValueError, TypeError):
            plan = None
        self._plan_cache = plan
        return plan

    def read(self, slot: int) -> np.ndarray:
        return np.asarray(self._open()[slot])

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a staging folder of a dead ingest can go)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _move_row(src: Path, dst: Path, tiles: list[str]) -> None:
    """Move a staged frame's chunk files (``src/i/j``) to an archive row (``dst/i/j``) by renaming.

    A row folder that does not exist yet (a new row) takes one rename of the
    whole folder. Otherwise (a replaced row, or debris of an interrupted
    write) tile by tile, deleting the row's tiles the frame does not have:
    zarr writes no file for an all-NaN tile, so an absent file is data too.
    """
    try:
        os.rename(src, dst)
        return
    except FileNotFoundError:
        if not src.exists():  # every tile of the frame is NaN
            shutil.rmtree(dst, ignore_errors=True)
            return
        raise
    except OSError:  # the row folder exists and is not empty
        pass
    for tile in tiles:
        s, d = src / tile, dst / tile
        if s.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            os.replace(s, d)
        else:
            d.unlink(missing_ok=True)


def _same_chunk_encoding(a: Path, b: Path) -> bool:
    """Whether chunk files of arrays ``a`` and ``b`` are interchangeable (same key layout, grid, codecs, dtype, fill)."""
    try:
        ma, mb = (json.loads((p / "zarr.json").read_text()) for p in (a, b))
    except (OSError, json.JSONDecodeError):
        return False
    keys = ("chunk_key_encoding", "chunk_grid", "codecs", "data_type", "fill_value")
    default = ma.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
    return default and all(ma.get(k) == mb.get(k) for k in keys) and ma["shape"][1:] == mb["shape"][1:]
