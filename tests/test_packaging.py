"""The wheel ships the model zoo: build it, install it into a fresh venv, forecast with the default model.

A plain ``pip install .`` must forecast with no source checkout, no training
and nothing downloaded. The heavy dependencies (torch, pysteps, xarray...)
are reused from the interpreter running the tests (a ``.pth`` in the new
venv points at its site-packages, added only *after* the wheel is installed
so pip never sees, let alone touches, that environment); nowcast itself must
come from the wheel, never from this source tree: the checks run from an
empty working directory, without ``PYTHONPATH``, and assert where
``nowcast`` and the checkpoint were imported and loaded from.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGION = "swiss-south"

FORECAST = """
import json, sys
import numpy as np
import nowcast
from nowcast.config import load_region, shipped_configs_dir
from nowcast.forecast import load_model, run_model
from nowcast.paths import source_checkout

region = load_region(sys.argv[1])
forecaster = load_model(region)
window = np.random.default_rng(0).gamma(0.5, 2.0, (4, 64, 64)).astype(np.float32)
out = run_model(forecaster, window, 3)
print(json.dumps({
    "nowcast": nowcast.__file__, "configs": str(shipped_configs_dir()), "checkout": str(source_checkout()),
    "model": forecaster.config.name, "checkpoint": str(forecaster.path), "sha256": forecaster.sha256,
    "shape": list(out.shape), "infinite": int(np.isinf(out).sum()), "finite": float(np.isfinite(out).mean()),
    "min": float(np.nanmin(out)),
}))
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _dependency_dirs() -> list[str]:
    """site-packages of the interpreter running the tests (never the source tree)."""
    dirs = []
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if path.name in ("site-packages", "dist-packages") and path.is_dir() and path != ROOT and str(path) not in dirs:
            dirs.append(str(path))
    return dirs


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("packaging")
    dist = tmp / "dist"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)]
    if importlib.util.find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # offline and faster; otherwise pip fetches hatchling
    _run(build, cwd=tmp)
    (wheel,) = dist.glob("nowcast-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--force-reinstall",
          "--no-index", "-q", str(wheel)], cwd=tmp)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # After the install, so pip never saw this environment: the dependencies, after the venv's own site-packages.
    Path(purelib, "_nowcast_test_dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")

    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(NOWCAST_HOME=str(tmp / "home"), PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return {"wheel": wheel, "venv": venv, "python": python, "purelib": Path(purelib), "work": work, "env": env}


def test_wheel_holds_the_zoo_without_resume_states(installed: dict) -> None:
    with zipfile.ZipFile(installed["wheel"]) as whl:
        names = set(whl.namelist())
    zoo = {n.split("/", 2)[2] for n in names if n.startswith("nowcast/_zoo/")}
    shipped = {p.name for p in (ROOT / "models" / "zoo").glob("*.pt") if not p.name.endswith(".state.pt")}
    assert shipped and shipped <= zoo, "every shipped checkpoint is in the wheel"
    assert {"SHA256SUMS", "MANIFEST.json"} <= zoo
    assert not [n for n in names if n.endswith(".state.pt")], "resume states are never shipped"
    assert f"nowcast/_configs/regions/{DEFAULT_REGION}.yaml" in names and "pipelines/pretrain.py" in names


def test_installed_wheel_forecasts_with_the_packaged_default_model(installed: dict) -> None:
    result = _run([str(installed["python"]), "-c", FORECAST, DEFAULT_REGION], cwd=installed["work"],
                  env=installed["env"])
    info = json.loads(result.stdout.strip().splitlines()[-1])
    package = installed["purelib"] / "nowcast"
    # nowcast, its configs and the weights all come from the installed wheel, not this source tree
    assert Path(info["nowcast"]).resolve() == (package / "__init__.py").resolve()
    assert Path(info["configs"]).resolve() == (package / "_configs").resolve()
    assert info["checkout"] == "None"
    checkpoint = Path(info["checkpoint"]).resolve()
    assert checkpoint.parent == (package / "_zoo").resolve() and not checkpoint.is_relative_to(ROOT)
    assert info["model"] == "swiss-south-tmu" and len(info["sha256"]) == 64
    # NaN is allowed (the Lagrangian model's inflow edge: no information), nothing else impossible
    assert info["shape"] == [3, 64, 64] and info["infinite"] == 0 and info["finite"] > 0.5 and info["min"] >= 0


def test_installed_models_list_shows_the_packaged_zoo(installed: dict) -> None:
    result = _run([str(installed["venv"] / "bin" / "nowcast"), "models", "list", "--json"], cwd=installed["work"],
                  env=installed["env"])
    listing = json.loads(result.stdout)
    assert [d["where"] for d in listing["lookup_order"]] == ["home", "package"]
    assert listing["lookup_order"][0]["dir"] == str(Path(installed["env"]["NOWCAST_HOME"]).resolve() / "models")
    names = {m["name"]: m for m in listing["models"]}
    assert "swiss-south-tmu" in names and names["swiss-south-tmu"]["role"] == "target"
    assert all(m["found"] == "package" and "error" not in m for m in listing["models"])
    # every packaged checkpoint is listed in the packaged SHA256SUMS (whether the digests match the
    # weights is tests/test_shipped_models.py's check, on the same files in models/zoo)
    assert all(m["sha256_listed"] is not None for m in listing["models"])


def test_installed_training_writes_home_and_the_lookup_prefers_it(installed: dict) -> None:
    """Installed, ``nowcast train`` writes HOME/models/NAME.pt (never site-packages), which then wins."""
    home = (installed["work"].parent / "train-home").resolve()  # its own HOME: the other checks see the packaged zoo only
    env = {**installed["env"], "NOWCAST_HOME": str(home)}
    nowcast = str(installed["venv"] / "bin" / "nowcast")
    result = _run([nowcast, "train", "--config", "mnist-source-1digit", "--iterations", "1", "--no-resume",
                   "--threads", "1", "--no-progress", "-q"], cwd=installed["work"], env=env)
    assert str(home / "models" / "mnist-source-1digit.pt") in result.stdout
    assert not list((installed["purelib"] / "nowcast").rglob("*.state.pt")), "nothing written into the package"
    listing = json.loads(_run([nowcast, "models", "list", "--json"], cwd=installed["work"], env=env).stdout)
    entry = next(m for m in listing["models"] if m["name"] == "mnist-source-1digit")
    assert entry["found"] == "home" and entry["iterations"] == 1
    assert [s["where"] for s in entry["shadows"]] == ["package"]
