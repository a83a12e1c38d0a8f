"""The region Zarr archive: layout, idempotency, ordering, validation, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast.config import load_region
from nowcast.errors import ArchiveError, ForecastError, InputFileError
from nowcast.io import archive as archive_mod
from nowcast.io.archive import COMMITTED_ATTR, Archive, conform
from nowcast.units import dbz_to_rainrate, rainrate_to_dbz

REGION = "swiss-south"  # 128 x 128 cells: fast, same projection as the real composite
T0 = np.datetime64("2024-02-27T09:00", "ns")
STEP = np.timedelta64(5, "m")


def field(k: int, shape: tuple[int, int] = (128, 128)) -> np.ndarray:
    """A distinct, reproducible rain field per frame index (with some no-data)."""
    rng = np.random.default_rng(k)
    values = rng.gamma(0.3, 2.0, size=shape).astype(np.float32)
    values[values < 0.05] = 0.0
    values[:5, :7] = np.nan
    return values


def frames(indices: list[int], units: str = "mm h-1", region: str = REGION, values=None) -> xr.DataArray:
    grid = load_region(region).grid
    times = T0 + STEP * np.asarray(indices)
    with warnings.catch_warnings():  # pyproj: oblique Mercator skew angle not in CF
        warnings.simplefilter("ignore", UserWarning)
        da = grid.empty(times, name="rain_rate")
    da.values[:] = np.stack([field(k, grid.shape) for k in indices]) if values is None else values
    da.attrs.update(units=units, source_file=f"frames{indices}.h5")
    return da


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Every file of a store with its size and mtime: proves 'nothing rewritten'."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def stored(home: Path) -> xr.DataArray:
    return Archive.open(REGION, home=home, create=False).read().load()


def test_layout_is_the_design_contract(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0, 1, 2]))
    path = home / "archives" / f"{REGION}.zarr"
    assert archive.path == path
    root = json.loads((path / "zarr.json").read_text())
    assert root["zarr_format"] == 3
    assert "consolidated_metadata" in root and root["attributes"][COMMITTED_ATTR] == 3
    ds = xr.open_zarr(path, consolidated=True)
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["region"] == REGION and "history" in ds.attrs
    da = ds["rain_rate"]
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32
    assert da.attrs["units"] == "mm h-1" and da.attrs["standard_name"] == "rainfall_rate"
    assert da.attrs["grid_mapping"] == "spatial_ref" and "long_name" in da.attrs
    assert "spatial_ref" in ds.coords and ds["spatial_ref"].attrs["crs_wkt"]
    assert da.encoding["chunks"] == (1, 128, 128)
    assert da.encoding["compressors"], "frames must be compressed"
    grid = load_region(REGION).grid
    np.testing.assert_allclose(ds.x, grid.x)
    np.testing.assert_allclose(ds.y, grid.y)
    np.testing.assert_array_equal(ds.time, T0 + STEP * np.arange(3))
    np.testing.assert_array_equal(da.values, np.stack([field(k) for k in range(3)]))


def test_out_of_order_frames_end_up_sorted_and_unique(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([4, 1]))
    archive.append(frames([6]))
    result = archive.append(frames([0, 5, 2]))
    assert result.rewritten == 0  # late frames go to new rows: nothing archived is rewritten
    times = Archive.open(REGION, home=home).times
    np.testing.assert_array_equal(times, T0 + STEP * np.array([0, 1, 2, 4, 5, 6]))
    da = stored(home)
    for k, t in zip([0, 1, 2, 4, 5, 6], da.time.values):
        np.testing.assert_array_equal(da.sel(time=t).values, field(k))


def test_reingesting_the_same_frames_writes_nothing(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0, 1, 2]))
    before = snapshot(archive.path)
    # float noise far below the tolerance still counts as the same field
    result = Archive.open(REGION, home=home).append(frames([1, 2], values=np.stack([field(1), field(2)]) * (1 + 1e-7)))
    assert result.unchanged and not result.added and not result.changed
    assert snapshot(archive.path) == before


def test_different_field_at_existing_time_is_refused_unless_overwrite(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0, 1]))
    before = snapshot(archive.path)
    other = frames([1], values=field(1)[None] * 2)
    with pytest.raises(ArchiveError, match=r"other\.h5.*2024-02-27T09:05:00Z"):
        archive.append(other, source="other.h5")
    assert snapshot(archive.path) == before
    result = archive.append(other, source="other.h5", overwrite=True)
    assert [str(t)[:16] for t in result.replaced] == ["2024-02-27T09:05"]
    np.testing.assert_array_equal(stored(home).values[1], field(1) * 2)
    np.testing.assert_array_equal(stored(home).values[0], field(0))


def test_duplicates_within_a_batch_keep_the_first(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    batch = xr.concat([frames([0]), frames([0]), frames([0], values=field(9)[None])], dim="time")
    with pytest.raises(ArchiveError, match="c.h5"):
        archive.append(batch, source=["a.h5", "b.h5", "c.h5"])
    assert not archive.exists
    result = archive.append(batch, source=["a.h5", "b.h5", "c.h5"], errors="skip")
    assert len(result.added) == 1 and len(result.unchanged) == 1
    assert [r.source for r in result.refused] == ["c.h5"]
    np.testing.assert_array_equal(stored(home).values[0], field(0))


def test_validation_refuses_bad_frames(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    with pytest.raises(InputFileError, match=r"allnan\.h5.*all NaN"):
        archive.append(frames([0], values=np.full((1, 128, 128), np.nan, np.float32)), source="allnan.h5")
    wrong_grid = frames([0], region="swiss")
    with pytest.raises(InputFileError, match=r"big\.h5: not on the grid of region 'swiss-south'"):
        archive.append(wrong_grid, source="big.h5")
    with pytest.raises(InputFileError, match=r"furlongs"):
        archive.append(frames([0], units="furlongs"), source="odd.h5")
    with pytest.raises(InputFileError, match=r"cannot be converted"):
        archive.append(frames([0], units="K"), source="sat.nc")
    assert not archive.exists


def test_reflectivity_frames_are_converted_with_the_region_zr(home: Path) -> None:
    dbz = np.full((1, 128, 128), 30.0, np.float32)
    dbz[0, 0, 0] = -32.0  # undetect -> dry
    Archive.open(REGION, home=home).append(frames([0], units="dBZ", values=dbz))
    got = stored(home).values[0]
    assert got[0, 0] == 0.0
    np.testing.assert_allclose(got[1, 1], dbz_to_rainrate(np.array(30.0), 200.0, 1.6), rtol=1e-6)


def test_dbz_region_archives_reflectivity(home: Path) -> None:
    regions = home / "configs" / "regions"
    regions.mkdir(parents=True)
    text = (Path(__file__).parents[1] / "configs" / "regions" / f"{REGION}.yaml").read_text()
    (regions / "south-dbz.yaml").write_text(
        text.replace(f"name: {REGION}", "name: south-dbz").replace("units: mm h-1", "units: dBZ").replace("{a: 200, b: 1.6}", "{a: 300, b: 1.4}")
    )
    rate = np.zeros((1, 128, 128), np.float32)
    rate[0, 10:20, 10:20] = 5.0
    archive = Archive.open("south-dbz", home=home)
    archive.append(frames([0], values=rate))
    ds = xr.open_zarr(archive.path)
    assert list(ds.data_vars) == ["reflectivity"] and ds.reflectivity.attrs["units"] == "dBZ"
    got = ds.reflectivity.values[0]
    np.testing.assert_allclose(got[15, 15], rainrate_to_dbz(np.array(5.0), 300.0, 1.4), rtol=1e-5)
    assert got[0, 0] == archive_mod.DBZ_DRY
    info = archive.info()
    assert info.frames[0].wet_fraction == pytest.approx(100 / 128**2)


def test_window_and_missing_frames(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0, 1, 2, 3, 5, 6]))
    win = archive.window(T0 + STEP * 3, 4)
    np.testing.assert_array_equal(win.time, T0 + STEP * np.arange(4))
    np.testing.assert_array_equal(win.values[-1], field(3))
    assert archive.latest_time == T0 + STEP * 6
    with pytest.raises(ForecastError, match=r"1 frame\(s\) missing \(2024-02-27T09:20:00Z\)"):
        archive.window(None, 4)  # 09:15 .. 09:30, 09:20 missing
    with pytest.raises(ForecastError, match=r"4 frame\(s\) missing"):
        archive.window(T0 - STEP, 4)


def test_read_is_lazy_and_bounded(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0, 1, 2, 3]))
    da = archive.read(T0 + STEP, T0 + STEP * 2)
    assert da.chunks is not None, "read() must stay lazy (dask)"
    assert da.sizes["time"] == 2


def test_info_gaps_and_stats(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0, 1, 4, 5, 9]))
    info = archive.info()
    assert [(str(g.after)[11:16], g.missing) for g in info.gaps] == [("09:05", 2), ("09:25", 3)]
    f1 = field(1)
    stats = info.frames[1]
    assert stats.minimum == pytest.approx(np.nanmin(f1)) and stats.maximum == pytest.approx(np.nanmax(f1))
    assert stats.wet_fraction == pytest.approx((f1 >= 0.1).sum() / np.isfinite(f1).sum())
    assert stats.valid_fraction == pytest.approx(np.isfinite(f1).mean())
    d = info.to_dict()
    assert d["n_frames"] == 5 and d["missing_frames"] == 5 and d["first"] == "2024-02-27T09:00:00Z"
    json.dumps(d)


def test_open_missing_archive_without_create(home: Path) -> None:
    with pytest.raises(ArchiveError, match="no archive for region"):
        Archive.open(REGION, home=home, create=False)


def test_conform_is_identity_for_archive_frames() -> None:
    region = load_region(REGION)
    da = conform(frames([0]), region)
    assert da.name == "rain_rate" and da.dtype == np.float32 and da.attrs["units"] == "mm h-1"
    np.testing.assert_array_equal(da.values[0], field(0))


# ------------------------------------------------------------ crash safety
class Crash(Exception):
    pass


def _crash_at(monkeypatch: pytest.MonkeyPatch, step: str, exc: type[BaseException] = Crash) -> None:
    def point(name: str) -> None:
        if name == step:
            raise exc(f"injected crash at {name}")

    monkeypatch.setattr(archive_mod, "_fault_point", point)


STEPS = ["journal", "resize", "write", "consolidate", "commit"]
#: What each kind of write does to an archive of frames 0, 1, 3, 4 (time index -> field index).
BEFORE = {0: 0, 1: 1, 3: 3, 4: 4}
AFTER = {
    "late": {**BEFORE, 2: 2},  # older than the newest: a new row, no journal
    "append": {**BEFORE, 5: 5},
    "overwrite": {**BEFORE, 1: 11},  # journaled: row 1 changes
    "drop": {1: 1, 3: 3, 4: 4},  # journaled: row 0 is filled with the last row, which goes
}


def _act(archive: Archive, kind: str) -> None:
    if kind == "late":
        archive.append(frames([2]))
    elif kind == "append":
        archive.append(frames([5]))
    elif kind == "overwrite":
        archive.append(frames([1], values=field(11)[None]), overwrite=True)
    else:
        archive.drop(T0)


def _check(home: Path, want: dict[int, int]) -> Archive:
    archive = Archive.open(REGION, home=home)
    assert list(((archive.times - T0) // STEP).astype(int)) == sorted(want)
    da = archive.read().load()
    np.testing.assert_array_equal(da.time.values, archive.times)
    for t, k in want.items():
        np.testing.assert_array_equal(da.sel(time=T0 + STEP * t).values, field(k))
    assert not list(archive.path.rglob("*.partial"))
    assert not archive._journal_path.exists()
    return archive


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("kind", ["late", "append", "overwrite", "drop"])
def test_crash_at_each_step_keeps_committed_frames(home: Path, monkeypatch: pytest.MonkeyPatch, step: str, kind: str) -> None:
    Archive.open(REGION, home=home).append(frames(sorted(BEFORE)))
    journaled = kind in ("overwrite", "drop")  # only changes to committed rows write a journal
    _crash_at(monkeypatch, step, KeyboardInterrupt if step == "write" else Crash)
    try:
        _act(Archive.open(REGION, home=home), kind)
    except (Crash, KeyboardInterrupt):
        crashed = True
    else:
        crashed = False
    assert crashed or (step == "journal" and not journaled)
    monkeypatch.setattr(archive_mod, "_fault_point", lambda name: None)

    reopened = _check(home, AFTER[kind] if step == "commit" or not crashed else BEFORE)
    # and the archive keeps working: the interrupted write can be redone
    _act(reopened, kind)
    reopened.append(frames([7]))
    _check(home, {**AFTER[kind], 7: 7})


def test_late_frame_writes_a_bounded_number_of_files(home: Path, tmp_path: Path) -> None:
    """Issue #9 item 7: a frame older than all costs the same files whatever the archive's length."""
    written = {}
    for n in (20, 60):
        h = tmp_path / f"n{n}"
        archive = Archive.open(REGION, home=h)
        archive.append(frames(list(range(1, n + 1))))
        before = snapshot(archive.path)
        result = archive.append(frames([0]))  # older than every archived frame
        after = snapshot(archive.path)
        assert result.added and result.rewritten == 0
        changed = sorted(k for k, v in after.items() if before.get(k) != v)
        written[n] = changed
        assert [k for k in changed if k.startswith("rain_rate/c/")] == [f"rain_rate/c/{n}/0/0"]  # one new row
        assert not archive._journal_path.exists()
        np.testing.assert_array_equal(Archive.open(REGION, home=h).window(T0 + STEP * 2, 3).values,
                                      np.stack([field(0), field(1), field(2)]))
    # the same number of files (the new chunk, time, array metadata, root): independent of N
    assert len(written[20]) == len(written[60]) <= 5


def test_drop_cost_is_proportional_to_frames_dropped(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames(list(range(40))))
    before = snapshot(archive.path)
    removed = archive.drop(T0 + STEP * 3, T0 + STEP * 4)
    assert len(removed) == 2
    after = snapshot(archive.path)
    chunks = sorted(k for k, v in after.items() if k.startswith("rain_rate/c/") and before.get(k) != v)
    assert chunks == ["rain_rate/c/3/0/0", "rain_rate/c/4/0/0"]  # the two holes, filled with rows 38 and 39
    assert sorted(set(before) - set(after)) == ["rain_rate/c/38/0/0", "rain_rate/c/39/0/0"]
    _check(home, {k: k for k in range(40) if k not in (3, 4)})


def test_sorted_view_of_an_unsorted_store(home: Path) -> None:
    """Rows in arrival order; every reader sees time order; external readers are told to sortby."""
    archive = Archive.open(REGION, home=home)
    for k in [5, 2, 9, 0, 7]:
        archive.append(frames([k]))
    archive.append(frames([3, 1]))
    raw = xr.open_zarr(archive.path)
    assert list(((raw.time.values - T0) // STEP).astype(int)) == [5, 2, 9, 0, 7, 1, 3]  # arrival order, batch sorted
    assert "sortby" in raw.attrs["nowcast_row_order"] and raw.attrs["nowcast_format_version"] == 2
    want = {k: k for k in [0, 1, 2, 3, 5, 7, 9]}
    _check(home, want)
    np.testing.assert_array_equal(raw.sortby("time").rain_rate.values, archive.read().values)
    sub = archive.read(T0 + STEP * 2, T0 + STEP * 7)
    assert list(((sub.time.values - T0) // STEP).astype(int)) == [2, 3, 5, 7]
    np.testing.assert_array_equal(sub.values[1], field(3))
    win = archive.window(T0 + STEP * 3, 4)
    np.testing.assert_array_equal(win.values, np.stack([field(k) for k in range(4)]))
    info = archive.info()
    assert [f.time for f in info.frames] == list(archive.times)
    assert info.frames[0].maximum == pytest.approx(np.nanmax(field(0)))
    assert archive.latest_time == T0 + STEP * 9
    # idempotency, refusal and overwrite find the right row
    assert archive.append(frames([0])).unchanged
    with pytest.raises(ArchiveError, match="already holds a different field"):
        archive.append(frames([2], values=field(12)[None]))
    archive.append(frames([2], values=field(12)[None]), overwrite=True)
    archive.drop(T0 + STEP * 5)
    _check(home, {**{k: k for k in [0, 1, 3, 7, 9]}, 2: 12})


def _write_v1_store(home: Path, indices: list[int]) -> Path:
    """A version-1 store as the sorted layout wrote it: no commit id, no row-order note, version 1."""
    archive = Archive.open(REGION, home=home)
    archive.append(frames(indices))
    root_path = archive.path / "zarr.json"
    root = json.loads(root_path.read_text())
    for key in ("nowcast_commit", "nowcast_row_order"):
        root["attributes"].pop(key)
    root["attributes"]["nowcast_format_version"] = 1
    root_path.write_text(json.dumps(root))
    return archive.path


def test_version_1_store_opens_and_works(home: Path) -> None:
    path = _write_v1_store(home, [0, 1, 3, 4])
    archive = Archive.open(REGION, home=home)
    assert archive.attrs["nowcast_format_version"] == 1
    _check(home, BEFORE)
    archive.append(frames([2]))  # a late frame into a sorted store: appended, store becomes version 2
    assert json.loads((path / "zarr.json").read_text())["attributes"]["nowcast_format_version"] == 2
    _check(home, {**BEFORE, 2: 2})


def test_version_1_journal_is_recovered(home: Path) -> None:
    """A crash of the version-1 writer (a tail rewrite of frames 3, 4 to insert 2) rolls back."""
    path = _write_v1_store(home, [0, 1, 3, 4])
    group = Archive.open(REGION, home=home)._group("r")
    journal = path.parent / f".{path.name}.journal.npz"
    np.savez(journal, start=2, before=4, after=5, array_rain_rate=np.asarray(group["rain_rate"][2:4]),
             array_time=np.asarray(group["time"][2:4]))
    import zarr

    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    for name in ("rain_rate", "time"):
        g[name].resize((5, *g[name].shape[1:]))
    g["rain_rate"][2:5] = np.stack([field(2), field(3), field(4)])  # the half-done rewrite
    g["time"][2:5] = ((T0 + STEP * np.array([2, 3, 4])).astype("datetime64[s]").astype("int64"))
    _check(home, BEFORE)


def test_newer_format_is_refused(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0]))
    archive.set_attrs(nowcast_format_version=99)
    with pytest.raises(ArchiveError, match="newer nowcast"):
        Archive.open(REGION, home=home)


def test_crash_while_creating_leaves_no_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_at(monkeypatch, "create")
    with pytest.raises(Crash):
        Archive.open(REGION, home=home).append(frames([0]))
    monkeypatch.setattr(archive_mod, "_fault_point", lambda name: None)
    archive = Archive.open(REGION, home=home)
    assert not archive.exists and len(archive) == 0
    archive.append(frames([0]))
    assert [p.name for p in archive.path.parent.iterdir() if "creating" in p.name] == []


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_archive import frames
    from nowcast.io import archive as archive_mod
    from nowcast.io.archive import Archive

    kill_at = os.environ.get("KILL_AT")
    calls = {{"n": 0}}
    def point(name):
        if name == kill_at:
            calls["n"] += 1
            if calls["n"] == int(os.environ.get("KILL_ON_CALL", "1")):
                os.kill(os.getpid(), signal.SIGKILL)
    archive_mod._fault_point = point
    archive = Archive.open("swiss-south", home={home!r})
    for arg in sys.argv[1:]:
        if arg.startswith("d"):  # drop that frame
            archive.drop(np.datetime64("2024-02-27T09:00", "ns") + np.timedelta64(5 * int(arg[1:]), "m"))
        else:
            archive.append(frames([int(arg)]))
        print(arg, flush=True)
    """
)


def _run_child(
    home: Path, order: list, env: dict[str, str], kill_after_s: float | None = None
) -> tuple[list[str], int]:
    """Run appends in a child process that dies by SIGKILL; return the frames
    it reported committed and its return code."""
    script = home / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), home=str(home)))
    proc = subprocess.Popen(
        [sys.executable, str(script), *map(str, order)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    committed: list[str] = []
    if kill_after_s is None:
        out, _ = proc.communicate(timeout=120)
        committed = out.split()
    else:
        import time

        line = proc.stdout.readline()  # first frame committed: the store exists
        committed.append(line.strip())
        time.sleep(kill_after_s)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        committed += out.split()
    return committed, proc.returncode


# Appends of 1, 3, 4, 2 reach "resize"/"write"/"commit" for the 1st..4th time; the 4th
# (frame 2) is a late frame (a new row, no journal). Only drops (and overwrites) journal.
@pytest.mark.parametrize("step,call", [("resize", 2), ("write", 4), ("consolidate", 4), ("commit", 4)])
def test_sigkill_mid_write_keeps_committed_frames(home: Path, step: str, call: int) -> None:
    order = [0, 1, 3, 4, 2, 6, 5, 8, 7]  # out of order: late frames
    committed, rc = _run_child(home, order, {"KILL_AT": step, "KILL_ON_CALL": str(call)})
    assert rc == -signal.SIGKILL and len(committed) < len(order)
    committed = [int(v) for v in committed]
    archive = Archive.open(REGION, home=home)
    got = list(((archive.times - T0) // STEP).astype(int))
    assert set(committed) <= set(got) <= set(committed) | {order[len(committed)]}
    assert got == sorted(got)
    da = archive.read().load()
    for k in got:
        np.testing.assert_array_equal(da.sel(time=T0 + STEP * k).values, field(k))
    archive.append(frames(order))
    assert len(Archive.open(REGION, home=home).times) == len(order)


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_mid_drop(home: Path, step: str) -> None:
    """A drop (swap-remove, journaled) killed at every step: the frame is there or gone, every other intact."""
    order = ["0", "1", "2", "3", "4", "d1"]  # dropping 1 moves frame 4 into its row
    committed, rc = _run_child(home, order, {"KILL_AT": step, "KILL_ON_CALL": "1" if step == "journal" else "5"})
    assert rc == -signal.SIGKILL and committed == ["0", "1", "2", "3", "4"]
    archive = Archive.open(REGION, home=home)
    got = list(((archive.times - T0) // STEP).astype(int))
    assert got == ([0, 2, 3, 4] if step == "commit" else [0, 1, 2, 3, 4])
    da = archive.read().load()
    for k in got:
        np.testing.assert_array_equal(da.sel(time=T0 + STEP * k).values, field(k))
    assert not archive._journal_path.exists()
    archive.drop(T0 + STEP)
    assert list(((Archive.open(REGION, home=home).times - T0) // STEP).astype(int)) == [0, 2, 3, 4]


def test_sigkill_at_a_random_moment(home: Path) -> None:
    order = [3, 0, 1, 2, 5, 4, 7, 6, 9, 8, 11, 10]
    committed, _ = _run_child(home, order, {}, kill_after_s=0.25)
    committed = [int(v) for v in committed]
    archive = Archive.open(REGION, home=home)
    got = list(((archive.times - T0) // STEP).astype(int))
    assert set(committed) <= set(got) and got == sorted(got)
    da = archive.read().load()
    for k in got:
        np.testing.assert_array_equal(da.sel(time=T0 + STEP * k).values, field(k))


def test_staged_frames_are_renamed_in_with_their_empty_tiles(home: Path) -> None:
    """Ingest workers stage frames beside the store; the commit renames their chunk files into rows.
    An all-NaN tile has no chunk file, so a stale file in the row (debris of a crash) must go."""
    import shutil

    from nowcast.io.archive import FrameBatch

    region = load_region("swiss")  # 640 x 710: 2 x 2 tiles of 320 x 355
    archive = Archive.open(region, home=home)
    vals = np.stack([np.full(region.grid.shape, float(k + 1), np.float32) for k in range(4)])
    vals[1, :320, :355] = np.nan  # frame 1: tile 0/0 is all NaN
    vals[3, :320, :355] = np.nan
    times = (T0 + STEP * np.arange(4)).astype("int64")
    with archive.staging(4) as staging:
        for k in range(4):
            staging.write(k, vals[k])
        assert not (staging.array_dir / "c" / "1" / "0" / "0").exists()
        archive._append_prepared(FrameBatch(times[:3], ["a", "b", "c"], [None] * 3, [0, 1, 2], staging))
        chunks = archive.path / "rain_rate" / "c"
        shutil.copytree(chunks / "0", chunks / "3")  # debris in the next row, all four tiles
        archive._append_prepared(FrameBatch(times[3:], ["d"], [None], [3], staging))
    assert not list(home.glob("archives/.*staging*"))
    got = Archive.open(region, home=home).read().values
    np.testing.assert_array_equal(got, vals)
