"""The archive's commit protocol: journal, resize, write, consolidate, commit; and recovery.

:class:`CommitProtocol` is the part of :class:`nowcast.io.archive.Archive`
that writes: every write into an existing store goes through
:meth:`CommitProtocol._write_tail`, a new store through
:meth:`CommitProtocol._create`, and :meth:`CommitProtocol._recover` brings a
store back to its last commit (the protocol is described in the docstring of
:mod:`nowcast.io.archive`). The steps call ``nowcast.io.archive._fault_point``
between them, which fault-injection tests and ``benchmarks/soak.py`` replace.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nowcast.errors import ArchiveError
from nowcast.io.archive_layout import (
    COMMIT_ID_ATTR,
    COMMITTED_ATTR,
    FORMAT_VERSION,
    HISTORY_LINES,
    ROW_ORDER_ATTR,
    ROW_ORDER_NOTE,
    _describe,
    _no_zarr_warnings,
    _read_rows,
    _write_rows,
    build_dataset,
    write_skeleton,
)
from nowcast.io.archive_staging import FrameBatch, _move_row, _same_chunk_encoding

if TYPE_CHECKING:
    import xarray as xr

    from nowcast.io.archive import AppendResult

log = logging.getLogger("nowcast.io.archive")


def _fault_point(step: str) -> None:
    """Call ``nowcast.io.archive._fault_point`` (looked up at each call, so replacing it there works)."""
    from nowcast.io import archive

    archive._fault_point(step)


class CommitProtocol:
    """Writing and recovering a region's store (mixed into :class:`~nowcast.io.archive.Archive`)."""

    path: Path
    _committed: int
    _commit_id: str | None

    @property
    def _journal_path(self) -> Path:
        """Beside the store, not in it, so zarr tools never see a stray file."""
        return self.path.parent / f".{self.path.name}.journal.npz"

    def _root_meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "zarr.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArchiveError(f"{self.path}: unreadable store metadata ({exc})") from None

    def _committed_in_store(self) -> int:
        attrs = self._root_meta().get("attributes", {})
        if COMMITTED_ATTR not in attrs:
            raise ArchiveError(f"{self.path}: not a nowcast archive (no '{COMMITTED_ATTR}' attribute)")
        return int(attrs[COMMITTED_ATTR])

    def _array_meta(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / name / "zarr.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise ArchiveError(f"{self.path}: unreadable metadata of {name!r} ({exc})") from None

    def _time_arrays(self) -> list[str]:
        names = []
        for child in sorted(self.path.iterdir()):
            meta = self._array_meta(child.name) if child.is_dir() else None
            if meta and meta.get("node_type") == "array" and (meta.get("dimension_names") or [None])[0] == "time":
                names.append(child.name)
        return names

    def _needs_recovery(self) -> bool:
        """Cheap check (a few small JSON reads) for debris of a crashed write."""
        if self._journal_path.exists():
            return True
        committed = self._committed_in_store()
        consolidated = self._root_meta().get("consolidated_metadata") or {}
        for name in self._time_arrays():
            if self._array_meta(name)["shape"][0] != committed:
                return True
            cons = (consolidated.get("metadata") or {}).get(name)
            if cons is None or cons["shape"][0] != committed:
                return True
        return False

    def _group(self, mode: str = "r+"):
        import zarr

        with _no_zarr_warnings():
            return zarr.open_group(str(self.path), mode=mode, use_consolidated=False)

    def _consolidate(self):
        import zarr

        with _no_zarr_warnings():
            return zarr.consolidate_metadata(str(self.path))

    def _recover(self) -> None:
        """Bring the store back to its last commit (see module docstring)."""
        committed = self._committed_in_store()
        journal_path = self._journal_path
        group = self._group("r+")
        if journal_path.exists():
            with np.load(journal_path) as j:
                before, after = int(j["before"]), int(j["after"])
                if "rows" in j:  # format 2: the rows that change, and the commit they precede
                    rows = np.asarray(j["rows"], dtype="int64")
                    committed_id = self._root_meta().get("attributes", {}).get(COMMIT_ID_ATTR)
                    roll_back = str(j["commit"]) != committed_id
                    if roll_back and committed != before:
                        raise ArchiveError(
                            f"{journal_path}: journal for {before}->{after} frames does not match the "
                            f"{committed} committed frames; move the archive aside and re-ingest"
                        )
                else:  # a version-1 writer's tail rewrite: rows start..before
                    rows = np.arange(int(j["start"]), before, dtype="int64")
                    roll_back = committed == before
                    if not roll_back and committed != after:
                        raise ArchiveError(
                            f"{journal_path}: journal for {before}->{after} frames does not match the "
                            f"{committed} committed frames; move the archive aside and re-ingest"
                        )
                if roll_back:
                    log.warning("%s: rolling back an interrupted write of %d archived row(s)", self.path, rows.size)
                    for name in self._time_arrays():
                        arr = group[name]
                        if arr.shape[0] < before:
                            arr.resize((before, *arr.shape[1:]))
                        _write_rows(arr, rows, j[f"array_{name}"])
            journal_path.unlink()
        for name in self._time_arrays():
            arr = group[name]
            if arr.shape[0] > committed:
                log.warning("%s: dropping %d uncommitted frame(s) of %r", self.path, arr.shape[0] - committed, name)
                arr.resize((committed, *arr.shape[1:]))
            elif arr.shape[0] < committed:
                raise ArchiveError(f"{self.path}: {name!r} holds {arr.shape[0]} frames but {committed} are committed")
        for partial in [*self.path.rglob("*.partial"), *self.path.parent.glob(f".{self.path.name}.journal.npz.*.partial")]:
            partial.unlink(missing_ok=True)
        self._consolidate()
        self._committed = -1  # force a reload of the time axis

    def _dataset(self, times_ns: np.ndarray, values: Any, with_grid: bool) -> xr.Dataset:
        return build_dataset(self.spec, self.region, times_ns, values, with_grid)

    def _history(self, line: str) -> str:
        previous = self._root_meta().get("attributes", {}).get("history", "") if self.exists else ""
        stamp = np.datetime_as_string(np.datetime64("now", "s"), unit="s") + "Z"
        lines = [ln for ln in str(previous).split("\n") if ln] + [f"{stamp} nowcast: {line}"]
        return "\n".join(lines[-HISTORY_LINES:])

    def _skeleton(self, path: Path, times_ns: np.ndarray, attrs: dict[str, Any]) -> None:
        write_skeleton(path, self.spec, self.region, times_ns, attrs)

    def _create(self, frames: FrameBatch, result: AppendResult) -> None:
        """Write a new store in a temporary folder and rename it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.path.parent.glob(f".{self.path.name}.creating-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.path.parent / f".{self.path.name}.creating-{uuid.uuid4().hex[:8]}"
        attrs = {
            "Conventions": "CF-1.8",
            "title": f"nowcast archive of region {self.region.name}",
            "region": self.region.name,
            "region_description": self.region.description,
            "timestep_minutes": self.region.timestep_minutes,
            "source": "radar composites ingested by nowcast",
            "nowcast_format_version": FORMAT_VERSION,
            ROW_ORDER_ATTR: ROW_ORDER_NOTE,
        }
        try:
            self._skeleton(tmp, frames.times_ns, attrs)
            import zarr

            with _no_zarr_warnings():
                group = zarr.open_group(str(tmp), mode="r+", use_consolidated=False)
            self._put_frames(group, tmp, np.arange(len(frames)), frames)  # a group maps names to arrays too
            _fault_point("create")
            with _no_zarr_warnings():
                zarr.consolidate_metadata(str(tmp)).update_attributes(
                    {
                        COMMITTED_ATTR: len(frames),
                        COMMIT_ID_ATTR: uuid.uuid4().hex,
                        "history": self._history(f"created with {len(frames)} frame(s) from {_describe(frames.sources)}"),
                    }
                )
            os.rename(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("%s: created with %d frame(s)", self.path, len(frames))

    def _put_frames(self, group: Any, store: Path, rows: np.ndarray, frames: FrameBatch) -> None:
        """Write ``frames`` (data and time) to ``rows`` of the store at ``store``.

        In-memory frames are written through zarr; staged ones are moved in
        by renaming their chunk files when the staging array's chunk encoding
        is the store's (it is unless the store was made with other settings),
        else read back and written.
        """
        rows = np.asarray(rows, dtype="int64")
        if not rows.size:
            return
        arr = group[self.spec.name]
        staged = [k for k in range(len(frames)) if frames.is_staged(k)]
        movable = bool(staged) and _same_chunk_encoding(store / self.spec.name, frames.staging.array_dir)
        in_memory = [k for k in range(len(frames)) if not (movable and frames.is_staged(k))]
        if in_memory:
            _write_rows(arr, rows[in_memory], np.stack([frames.frame(k) for k in in_memory]))
        if movable:
            meta = json.loads((store / self.spec.name / "zarr.json").read_text())
            chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
            tiles = [f"{i}/{j}" for i in range(-(-meta["shape"][1] // chunk[1])) for j in range(-(-meta["shape"][2] // chunk[2]))]
            src_root, dst_root = frames.staging.array_dir / "c", store / self.spec.name / "c"
            dst_root.mkdir(parents=True, exist_ok=True)
            for k in staged:
                _move_row(src_root / str(frames.slots[k]), dst_root / str(int(rows[k])), tiles)
        _write_rows(group["time"], rows, np.asarray(frames.times_ns, dtype="int64") // 1_000_000_000)

    def _write_tail(
        self,
        n_after: int,
        rows: np.ndarray,
        frames: FrameBatch,
        result: AppendResult,
        journal_rows: np.ndarray | None = None,
        line: str | None = None,
    ) -> None:
        """Steps 1-6 of the commit protocol: write ``frames`` to ``rows`` and commit ``n_after`` rows.

        Every commit into an existing store goes through here (the historic
        name is kept: fault-injection tests and ``benchmarks/soak.py`` hook
        it). ``journal_rows``: committed rows that change or disappear (an
        overwrite, a drop); their old values are journaled first. Rows at or
        beyond the current commit point need no journal: until the commit
        they are debris that recovery truncates.
        """
        journal = self._journal_path
        group = self._group("r+")
        arrays = {name: group[name] for name in self._time_arrays()}
        n_old = self._committed
        commit_id = uuid.uuid4().hex
        journal_rows = np.empty(0, dtype="int64") if journal_rows is None else np.asarray(journal_rows, dtype="int64")
        if journal_rows.size:
            tmp = journal.with_name(f"{journal.name}.{uuid.uuid4().hex[:8]}.partial")
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    rows=journal_rows,
                    before=n_old,
                    after=n_after,
                    commit=commit_id,
                    **{f"array_{name}": _read_rows(arr, journal_rows) for name, arr in arrays.items()},
                )
            os.replace(tmp, journal)
            _fault_point("journal")
        for arr in arrays.values():
            if arr.shape[0] != n_after:
                arr.resize((n_after, *arr.shape[1:]))
        _fault_point("resize")
        self._put_frames(arrays, self.path, rows, frames)
        _fault_point("write")
        if line is None:
            line = f"appended {len(result.added)} frame(s)"
            if result.replaced:
                line += f", replaced {len(result.replaced)}"
        if result.rewritten:
            line += f", rewrote {result.rewritten} archived frame(s) (journaled)"
        with _no_zarr_warnings():
            # The group returned by consolidation carries the fresh consolidated
            # metadata, so this single root zarr.json write is the commit.
            root = self._consolidate()
            _fault_point("consolidate")
            # update_attributes writes zarr.json once (attrs.update would write it once per key,
            # and the count and the commit id must change together)
            root.update_attributes({COMMITTED_ATTR: int(n_after), COMMIT_ID_ATTR: commit_id, "history": self._history(line),
                               "nowcast_format_version": FORMAT_VERSION, ROW_ORDER_ATTR: ROW_ORDER_NOTE})
        self._commit_id = commit_id
        _fault_point("commit")
        journal.unlink(missing_ok=True)
        log.debug("%s: %s", self.path.name, line)
