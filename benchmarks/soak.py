"""Soak test (issue #9): a stream of radar files, junk, duplicates, kills and a full disk.

A bounded stand-in for weeks of operation: ``n_frames`` good ODIM_H5
composites (the real MeteoSwiss field moved by 2 km per 5 min, so every frame
is distinct) arrive in an incoming directory in chunks, mixed with

* junk files (random bytes, truncated copies of good files, empty files,
  HDF5 files that are not ODIM);
* duplicates: exact byte copies under another name (same field: "unchanged",
  accepted) and *conflicting* files carrying a good file's time with another
  field, arriving after the good one (so ``ingest.duplicates: first`` keeps
  the good field and rejects them);
* late files: a few good frames arrive some chunks after their neighbours,
  so the archive holds frames older than ones already archived (since format
  version 2 one new row each, read back in time order; before, a journaled
  rewrite of every later frame).

After each chunk one ``nowcast run-once --region swiss-south --incoming DIR
--no-render --settle 0 --method persistence --keep 1 -q`` runs as a child
process (``NOWCAST_HOME`` set to the soak's home). Some passes are faulted:

kill
    the child SIGKILLs itself at the k-th call of one step of the archive's
    commit protocol (``nowcast.io.archive._fault_point``: journal, resize,
    write, consolidate, commit, or create for the very first write), so the
    kill lands deterministically inside a write;
disk full
    simulated by default: ``OSError(ENOSPC)`` is raised after ``m`` archive
    writes of the pass succeeded, either on entry to ``Archive._write_tail`` /
    ``Archive._create`` or at one step inside the commit protocol (after the
    resize, the data write or the consolidation, leaving debris that the next
    pass must recover). This only simulates ENOSPC *at the archive write*:
    filling a real, small file system needs ``mount -t tmpfs``, which needs
    privileges CI runners do not have. With ``--real-disk-full`` (root and a
    working ``mount -t tmpfs`` only), home and incoming live on a small tmpfs
    and a disk-full pass runs with a ballast file leaving only a few KiB
    free, so ENOSPC can hit any write of the pass (zarr chunks, metadata, the
    run state, the run log, the forecast, a rejected file's reason).

Forecasts are kept cheap (persistence, one per pass): the soak is about the
ingest. After the last chunk, clean passes run until every good file is
ingested (with a cap). Then every good file is ingested once, cleanly, into a
second home (:func:`pipelines.ingest.ingest_files`, synchronous) and the two
archives are compared frame by frame (same times, identical values, NaN
equal to NaN).

Figures: files written by kind, faults injected (scheduled and actually hit)
by kind, frames lost (good frames missing from the archive: must be 0), good
files rejected (must be 0), junk and conflicting files rejected with a reason
file (must be all), frames differing from the clean ingest (must be 0),
recovery debris left (must be none), wall time.

Run::

    python benchmarks/soak.py --frames 300 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REGION = "swiss-south"
START = "2024-02-27T09:50"
STEP_MINUTES = 5
SHIFT = (0, 2)  # pixels (rows, columns) per frame: 2 km east per 5 min, distinct for 355 frames
JUNK_KINDS = ("random", "truncated", "empty", "foreign_hdf5")
KILL_STEPS = ("resize", "write", "consolidate", "commit")
DISK_FULL_MODES = ("entry", "resize", "write", "consolidate")
PASS_TIMEOUT_S = 600

# The child: patch the fault points as asked by the environment, then run the real CLI.
CHILD = '''\
"""nowcast CLI with faults injected (written by benchmarks/soak.py)."""
import errno
import os
import signal
import sys

from nowcast.io import archive

KILL_AT = os.environ.get("SOAK_KILL_AT")
KILL_ON_CALL = int(os.environ.get("SOAK_KILL_ON_CALL", "1"))
FULL_AT = os.environ.get("SOAK_DISK_FULL_AT")
FULL_AFTER = int(os.environ.get("SOAK_DISK_FULL_AFTER", "0"))
calls = {}


def _full():
    raise OSError(errno.ENOSPC, "No space left on device (simulated by benchmarks/soak.py)")


def fault_point(step):
    calls[step] = calls.get(step, 0) + 1
    if step == KILL_AT and calls[step] == KILL_ON_CALL:
        os.kill(os.getpid(), signal.SIGKILL)
    if FULL_AT not in (None, "entry") and step in (FULL_AT, "create") and calls[step] > FULL_AFTER:
        _full()


archive._fault_point = fault_point
if FULL_AT == "entry":
    writes = [0]

    def _wrap(real):
        def wrapper(self, *args, **kwargs):
            writes[0] += 1
            if writes[0] > FULL_AFTER:
                _full()
            return real(self, *args, **kwargs)

        return wrapper

    archive.Archive._write_tail = _wrap(archive.Archive._write_tail)
    archive.Archive._create = _wrap(archive.Archive._create)

from nowcast.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
'''


@dataclass
class Arrival:
    name: str
    source: Path
    kind: str  # good | copy | conflict | junk:<kind>
    frame: int | None
    key: float  # arrival order


@dataclass
class Pass:
    index: int
    delivered: int
    fault: dict | None
    rc: int = 0
    seconds: float = 0.0
    hit: bool = False
    summary: str = ""


@dataclass
class Plan:
    arrivals: list[Arrival] = field(default_factory=list)
    good: list[Path] = field(default_factory=list)


def _stamp(t: np.datetime64) -> str:
    return np.datetime_as_string(t, unit="m").replace("-", "").replace(":", "").replace("T", "")


def _sample():
    import h5py

    from nowcast.samples import sample_path

    with h5py.File(sample_path("meteoswiss_odim_composite"), "r") as f:
        data = f["dataset1/data1/data"][()]
        where = dict(f["where"].attrs)
    projdef = where["projdef"].decode() if isinstance(where["projdef"], bytes) else str(where["projdef"])
    corners = {k: float(v) for k, v in where.items() if k[:2] in ("LL", "UL", "UR", "LR")}
    return data, projdef, corners


def make_files(source: Path, n_frames: int, seed: int, junk_every: int, duplicate_every: int,
               late_every: int, chunk: int, start: str = START) -> Plan:
    """Write every file of the stream under ``source`` and plan their arrival order."""
    from nowcast.io.odim_write import write_odim_composite

    rng = np.random.default_rng(seed)
    data, projdef, corners = _sample()
    t0 = np.datetime64(start, "s")
    plan = Plan()

    def odim(path: Path, field_: np.ndarray, t: np.datetime64) -> Path:
        return write_odim_composite(path, field_, t, projdef, corners, quantity="RATE", xscale=1.0, yscale=1.0,
                                    timestep_minutes=STEP_MINUTES)

    n_dup = n_frames // duplicate_every if duplicate_every else 0
    n_late = n_frames // late_every if late_every else 0
    special = rng.permutation(np.arange(1, n_frames))  # frame 0 stays plain: it creates the archive
    late = set(special[:n_late].tolist())
    copies = set(special[n_late:n_late + n_dup].tolist())
    conflicts = set(special[n_late + n_dup:n_late + 2 * n_dup].tolist())
    late_by = 1.5 * chunk
    good_key: dict[int, float] = {}
    for k in range(n_frames):
        t = t0 + np.timedelta64(STEP_MINUTES * k, "m")
        name = f"RFO{_stamp(t)}.h5"
        moved = np.roll(data, (k * SHIFT[0], k * SHIFT[1]), axis=(0, 1))
        path = odim(source / "good" / name, moved, t)
        plan.good.append(path)
        key = k + (late_by if k in late else 0.0)
        good_key[k] = key
        plan.arrivals.append(Arrival(name, path, "good", k, key))
        if k in copies:  # same bytes, another name: "unchanged", fine
            copy = source / "copies" / f"RFO{_stamp(t)}_copy.h5"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            plan.arrivals.append(Arrival(copy.name, copy, "copy", k, key + 0.4))
        if k in conflicts:  # same time, another field (1 mm/h more wherever covered), arriving later
            other = np.where(np.isnan(moved), moved, moved + 1.0)
            path_c = odim(source / "conflicts" / f"RFO{_stamp(t)}_dup.h5", other, t)
            plan.arrivals.append(Arrival(path_c.name, path_c, "conflict", k, key + 1.0 + 0.6 * chunk))
    n_junk = n_frames // junk_every if junk_every else 0
    junk_dir = source / "junk"
    junk_dir.mkdir(parents=True, exist_ok=True)
    for j in range(n_junk):
        kind = JUNK_KINDS[j % len(JUNK_KINDS)]
        key = float(rng.uniform(0, n_frames))
        if kind == "random":
            path = junk_dir / f"junk_{j:04d}.h5"
            path.write_bytes(rng.bytes(int(rng.integers(1, 200_000))))
        elif kind == "truncated":
            k = int(rng.integers(0, n_frames))
            full = plan.good[k].read_bytes()
            t = t0 + np.timedelta64(STEP_MINUTES * k, "m")
            path = junk_dir / f"RFO{_stamp(t)}_trunc{j:04d}.h5"
            path.write_bytes(full[: int(rng.integers(1, len(full) - 1))])
        elif kind == "empty":
            path = junk_dir / f"empty_{j:04d}.h5"
            path.write_bytes(b"")
        else:
            import h5py

            path = junk_dir / f"foreign_{j:04d}.h5"
            with h5py.File(path, "w") as f:
                f["values"] = rng.random((16, 16))
                f.attrs["title"] = "not a radar file"
        plan.arrivals.append(Arrival(path.name, path, f"junk:{kind}", None, key))
    plan.arrivals.sort(key=lambda a: a.key)
    return plan


def _deliver(arrival: Arrival, incoming: Path) -> None:
    """Copy under a hidden name and rename: the hand-over docs/operations.md recommends."""
    tmp = incoming / f".{arrival.name}.part"
    shutil.copyfile(arrival.source, tmp)
    os.replace(tmp, incoming / arrival.name)


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(tempfile.mkdtemp(prefix="soak-probe-"))
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


@contextlib.contextmanager
def _tmpfs(path: Path, size_bytes: int):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def _ballast(root: Path, leave_bytes: int):
    """Fill the file system of ``root`` up to ``leave_bytes`` free (a real full disk)."""
    ballast = root / "ballast.bin"
    free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
    with open(ballast, "wb") as fh:
        remaining = max(0, free - leave_bytes)
        block = b"\0" * (1 << 20)
        while remaining > 0:
            try:
                fh.write(block[: min(len(block), remaining)])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
            remaining -= min(len(block), remaining)
    try:
        yield
    finally:
        ballast.unlink()


def _seen(home: Path, region: str) -> dict:
    path = home / "runs" / region / "state.json"
    try:
        return json.loads(path.read_text()).get("seen", {})
    except (OSError, ValueError):
        return {}


def _run_pass(child: Path, home: Path, incoming: Path, region: str, fault: dict | None, log_path: Path) -> tuple[int, str]:
    env = {**os.environ, "NOWCAST_HOME": str(home), "PYART_QUIET": "1", "MPLBACKEND": "Agg"}
    for key in ("SOAK_KILL_AT", "SOAK_KILL_ON_CALL", "SOAK_DISK_FULL_AT", "SOAK_DISK_FULL_AFTER"):
        env.pop(key, None)
    if fault and fault["kind"] == "kill":
        env.update(SOAK_KILL_AT=fault["step"], SOAK_KILL_ON_CALL=str(fault["call"]))
    elif fault and fault["kind"] == "disk_full" and fault["mode"] != "real":
        env.update(SOAK_DISK_FULL_AT=fault["mode"], SOAK_DISK_FULL_AFTER=str(fault["after"]))
    cmd = [sys.executable, str(child), "run-once", "--region", region, "--incoming", str(incoming), "--no-render",
           "--settle", "0", "--method", "persistence", "--keep", "1", "-q"]
    with open(log_path, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=PASS_TIMEOUT_S)
    return proc.returncode, log_path.read_text()


def _debris(home: Path, region: str) -> list[str]:
    archives = home / "archives"
    if not archives.is_dir():
        return []
    found = [p for p in archives.glob(f".{region}.zarr.journal.npz*")]
    found += list(archives.glob(f".{region}.zarr.creating-*"))
    found += list((archives / f"{region}.zarr").rglob("*.partial"))
    return [str(p.relative_to(home)) for p in found]


def _compare(home: Path, clean_home: Path, region: str) -> dict:
    from nowcast.io.archive import Archive

    soak = Archive.open(region, home=home, create=False)
    clean = Archive.open(region, home=clean_home, create=False)
    t_soak, t_clean = soak.times, clean.times
    a = soak.read().load()
    b = clean.read().load()
    common = np.intersect1d(t_soak, t_clean)
    differing = [str(t)[:16] for t in common
                 if not np.array_equal(a.sel(time=t).values, b.sel(time=t).values, equal_nan=True)]
    values = b.values
    identical_neighbours = int(sum(np.array_equal(values[i], values[i + 1], equal_nan=True)
                                   for i in range(len(values) - 1)))
    return {
        "soak_frames": int(t_soak.size),
        "clean_frames": int(t_clean.size),
        "missing_from_soak": [str(t)[:16] for t in np.setdiff1d(t_clean, t_soak)],
        "extra_in_soak": [str(t)[:16] for t in np.setdiff1d(t_soak, t_clean)],
        "differing": differing,
        "sorted_unique": bool(np.all(np.diff(t_soak.astype("int64")) > 0)),
        "identical_neighbour_frames": identical_neighbours,
    }


def run_soak(
    workdir: str | Path,
    n_frames: int = 300,
    seed: int = 0,
    kill_every: int = 3,
    disk_full_every: int = 4,
    junk_every: int = 10,
    duplicate_every: int = 15,
    late_every: int = 25,
    chunk: int = 8,
    region: str = REGION,
    real_disk_full: bool = False,
    max_extra_passes: int = 5,
    progress=None,
) -> dict:
    """Run the soak in ``workdir`` (created; left in place) and return its figures.

    Parameters
    ----------
    n_frames
        Good frames (5-min steps from 2024-02-27T09:50 UTC).
    kill_every, disk_full_every
        Every k-th delivery pass is killed / runs with the disk full (0: never;
        a pass due for both is killed).
    junk_every, duplicate_every, late_every
        One junk file per this many frames; one exact copy and one conflicting
        duplicate per ``duplicate_every`` frames; one late frame per ``late_every``.
    chunk
        Frames delivered before each pass.
    real_disk_full
        Fill a real tmpfs instead of simulating ENOSPC (root only).
    progress
        Callable taking one line of progress text (default: silent).
    """
    say = progress or (lambda line: None)
    t_start = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    plan = make_files(workdir / "source", n_frames, seed, junk_every, duplicate_every, late_every, chunk)
    t_files = time.perf_counter()
    say(f"{len(plan.arrivals)} files written in {t_files - t_start:.1f} s")
    child = workdir / "soak_child.py"
    child.write_text(CHILD)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    groups: dict[int, list[Arrival]] = {}
    for a in plan.arrivals:
        groups.setdefault(int(a.key // chunk), []).append(a)
    deliveries = [groups[g] for g in sorted(groups)]

    with contextlib.ExitStack() as stack:
        live = workdir / "live"
        if real_disk_full:
            if not _can_mount_tmpfs():
                raise RuntimeError("--real-disk-full needs root and a working 'mount -t tmpfs'")
            need = sum(a.source.stat().st_size for a in plan.arrivals) + (64 << 20) + n_frames * (256 << 10)
            stack.enter_context(_tmpfs(live, need))
        home, incoming = live / "home", live / "incoming"
        home.mkdir(parents=True, exist_ok=True)
        incoming.mkdir(parents=True, exist_ok=True)
        passes: list[Pass] = []
        archive_made = False
        for p, group in enumerate([*deliveries, *[[]] * max_extra_passes]):
            delivering = p < len(deliveries)
            for a in group:
                _deliver(a, incoming)
            fault = None
            writes = max(1, sum(a.kind == "good" for a in group))
            if delivering and kill_every and (p + 1) % kill_every == 0:
                has_late = any(a.kind == "good" and a.key != a.frame for a in group)
                if not archive_made:
                    fault = {"kind": "kill", "step": "create", "call": 1}
                elif has_late and rng.random() < 0.5:
                    fault = {"kind": "kill", "step": "journal", "call": 1}
                else:
                    fault = {"kind": "kill", "step": str(rng.choice(KILL_STEPS)),
                             "call": int(rng.integers(1, writes + 1))}
            elif delivering and disk_full_every and (p + 1) % disk_full_every == 0:
                if real_disk_full:
                    fault = {"kind": "disk_full", "mode": "real", "free_bytes": int(rng.integers(0, 256 << 10))}
                else:
                    fault = {"kind": "disk_full", "mode": str(rng.choice(DISK_FULL_MODES)),
                             "after": int(rng.integers(0, writes))}
            record = Pass(p, len(group), fault)
            t0 = time.perf_counter()
            with _ballast(live, fault["free_bytes"]) if fault and fault.get("mode") == "real" else contextlib.nullcontext():
                record.rc, text = _run_pass(child, home, incoming, region, fault, logs / f"pass-{p:03d}.log")
            record.seconds = time.perf_counter() - t0
            lines = [ln for ln in text.splitlines() if ln.startswith((f"{region}:", "nowcast:"))]
            record.summary = lines[-1] if lines else f"killed (signal {-record.rc})" if record.rc < 0 else ""
            if fault:
                record.hit = (record.rc == -signal.SIGKILL) if fault["kind"] == "kill" else (record.rc == 4)
            archive_made = archive_made or (home / "archives" / f"{region}.zarr" / "zarr.json").is_file()
            passes.append(record)
            say(f"pass {p:3d}: {len(group):2d} new, fault {fault or '-'}, rc {record.rc}, {record.seconds:.1f} s "
                f"{record.summary}")
            if not delivering and fault is None and record.rc in (0, 3):
                seen = _seen(home, region)
                left = [f.name for f in incoming.iterdir() if f.is_file() and not f.name.startswith(".")]
                if all(n in seen for n in left):
                    break
        t_passes = time.perf_counter()

        # ------------------------------------------------ what happened to every file
        debris = _debris(home, region)
        rejected_dir = incoming / "rejected"
        rejected = {p.name for p in rejected_dir.iterdir() if not p.name.endswith(".reason.txt")} if rejected_dir.is_dir() else set()
        # a reason file must exist and say something (an empty one is a failed write)
        reasons = {p.name[: -len(".reason.txt")] for p in rejected_dir.glob("*.reason.txt")
                   if p.read_text().strip()} if rejected_dir.is_dir() else set()
        by_kind: dict[str, set[str]] = {}
        for a in plan.arrivals:
            by_kind.setdefault(a.kind.split(":")[0], set()).add(a.name)
        junk, conflicts = by_kind.get("junk", set()), by_kind.get("conflict", set())
        good_names = by_kind.get("good", set()) | by_kind.get("copy", set())
        seen = _seen(home, region)
        left = {f.name for f in incoming.iterdir() if f.is_file() and not f.name.startswith(".")}
        conflict_reasons = [(rejected_dir / f"{n}.reason.txt").read_text() for n in conflicts & reasons]
        pass_logs = [p.read_text() for p in sorted(logs.glob("pass-*.log"))]
        recoveries = {
            "rollbacks": sum("rolling back an interrupted rewrite" in t for t in pass_logs),
            "truncations": sum("uncommitted frame(s)" in t for t in pass_logs),
        }

        # ------------------------------------------------ a clean ingest of the good files, and the comparison
        from pipelines.ingest import ingest_files

        clean_home = workdir / "clean-home"
        clean_home.mkdir(exist_ok=True)
        t_clean = time.perf_counter()
        clean_report = ingest_files(plan.good, region, home=clean_home, scheduler="synchronous", progress=False)
        t_clean = time.perf_counter() - t_clean
        cmp = _compare(home, clean_home, region)
    wall = time.perf_counter() - t_start

    faults = [r for r in passes if r.fault]
    kills = [r for r in faults if r.fault["kind"] == "kill"]
    fulls = [r for r in faults if r.fault["kind"] == "disk_full"]
    unexpected = [{"pass": r.index, "rc": r.rc, "fault": r.fault, "summary": r.summary} for r in passes
                  if not (r.rc in (0, 3) or (r.fault and r.hit))]
    junk_kinds = Counter(a.kind.split(":")[1] for a in plan.arrivals if a.kind.startswith("junk:"))
    result = {
        "region": region,
        "seed": seed,
        "frames": n_frames,
        "files": {
            "good": len(by_kind.get("good", ())),
            "exact_copies": len(by_kind.get("copy", ())),
            "conflicting_duplicates": len(conflicts),
            "late": sum(1 for a in plan.arrivals if a.kind == "good" and a.key != a.frame),
            "junk": len(junk),
            "junk_by_kind": dict(junk_kinds),
            "total": len(plan.arrivals),
        },
        "passes": len(passes),
        "delivery_passes": len(deliveries),
        "faults": {
            "kills_scheduled": len(kills),
            "kills": sum(r.hit for r in kills),
            "kills_by_step": dict(Counter(r.fault["step"] for r in kills if r.hit)),
            "disk_full_scheduled": len(fulls),
            "disk_full": sum(r.hit for r in fulls),
            "disk_full_by_mode": dict(Counter(r.fault["mode"] for r in fulls if r.hit)),
            "disk_full_simulated": not real_disk_full,
        },
        "frames_archived": cmp["soak_frames"],
        "frames_lost": len(cmp["missing_from_soak"]),
        "frames_lost_times": cmp["missing_from_soak"],
        "extra_frames": cmp["extra_in_soak"],
        "frames_differing_from_clean_ingest": len(cmp["differing"]),
        "differing_times": cmp["differing"],
        "archive_sorted_unique": cmp["sorted_unique"],
        "identical_neighbour_frames": cmp["identical_neighbour_frames"],
        "clean_ingest_frames": cmp["clean_frames"],
        "clean_ingest_skipped": len(clean_report.skipped),
        "good_files_rejected": sorted(good_names & rejected),
        "good_files_not_ingested": sorted((good_names & left) - set(seen)),
        "junk_rejected": len(junk & rejected),
        "junk_not_rejected": sorted(junk - rejected),
        "conflicts_rejected": len(conflicts & rejected),
        "conflicts_not_rejected": sorted(conflicts - rejected),
        "conflict_reasons_ok": all("ingest.duplicates: first" in r for r in conflict_reasons),
        "rejected_without_reason": sorted(rejected - reasons),
        "unexpected_rejected": sorted(rejected - junk - conflicts - good_names),
        "unexpected_exits": unexpected,
        "debris": debris,
        "passes_recovering": recoveries,
        "pass_seconds": {"mean": round(float(np.mean([r.seconds for r in passes])), 2),
                         "max": round(float(np.max([r.seconds for r in passes])), 2)},
        "seconds": {"files": round(t_files - t_start, 1), "passes": round(t_passes - t_files, 1),
                    "clean_ingest": round(t_clean, 1), "total": round(wall, 1)},
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPU(s), "
                   f"Python {platform.python_version()}",
        "passes_detail": [{"pass": r.index, "new_files": r.delivered, "fault": r.fault, "rc": r.rc, "hit": r.hit,
                           "seconds": round(r.seconds, 2), "summary": r.summary} for r in passes],
    }
    result["ok"] = bool(
        result["frames_lost"] == 0 and not result["extra_frames"] and result["frames_differing_from_clean_ingest"] == 0
        and cmp["clean_frames"] == n_frames and cmp["sorted_unique"] and not result["good_files_rejected"]
        and not result["good_files_not_ingested"] and not result["junk_not_rejected"]
        and not result["conflicts_not_rejected"] and result["conflict_reasons_ok"]
        and not result["rejected_without_reason"] and not result["unexpected_rejected"]
        and not unexpected and not debris and cmp["identical_neighbour_frames"] == 0
    )
    return result


def markdown_row(r: dict) -> str:
    f, q = r["files"], r["faults"]
    disk = "real tmpfs" if not q["disk_full_simulated"] else "simulated"
    return (
        f"| {r['frames']} | {f['total']} ({f['good']} good, {f['exact_copies']} copies, "
        f"{f['conflicting_duplicates']} conflicting, {f['junk']} junk; {f['late']} late) | {r['passes']} | "
        f"{q['kills']} / {q['kills_scheduled']} | {q['disk_full']} / {q['disk_full_scheduled']} ({disk}) | "
        f"{r['frames_lost']} | {len(r['good_files_rejected'])} | {r['junk_rejected']} / {f['junk']} | "
        f"{r['conflicts_rejected']} / {f['conflicting_duplicates']} | "
        f"{'yes' if r['frames_differing_from_clean_ingest'] == 0 and not r['extra_frames'] else 'NO'} | "
        f"{r['seconds']['total']:.0f} s |"
    )


MARKDOWN_HEADER = (
    "| frames | files | passes | kills (hit / scheduled) | disk full (hit / scheduled) | frames lost | "
    "good files rejected | junk rejected | conflicts rejected | archive = clean ingest | wall |\n"
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-every", type=int, default=3, help="kill every k-th delivery pass (0: never)")
    parser.add_argument("--disk-full-every", type=int, default=4, help="disk full on every k-th delivery pass (0: never)")
    parser.add_argument("--junk-every", type=int, default=10, help="one junk file per k frames")
    parser.add_argument("--duplicate-every", type=int, default=15, help="one copy and one conflicting file per k frames")
    parser.add_argument("--late-every", type=int, default=25, help="one late frame per k frames (0: none)")
    parser.add_argument("--chunk", type=int, default=8, help="frames delivered before each pass")
    parser.add_argument("--real-disk-full", action="store_true",
                        help="fill a real tmpfs instead of simulating ENOSPC (needs root and mount -t tmpfs)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep everything here (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON summary here")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per pass on stderr")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nowcast-soak-"))
    try:
        result = run_soak(workdir, args.frames, args.seed, args.kill_every, args.disk_full_every, args.junk_every,
                          args.duplicate_every, args.late_every, args.chunk, real_disk_full=args.real_disk_full,
                          progress=(lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    print()
    print(MARKDOWN_HEADER)
    print(markdown_row(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
