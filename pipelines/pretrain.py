"""Pretrain a region's source zoo and train its TMU target, end to end.

For a region (``configs/regions/NAME.yaml``) this pipeline

1. makes sure every model's training sequences exist, simulating the missing
   ones from their real seed with :func:`pipelines.simulate.simulate_dataset`
   (dask; "simulated from real seeds", see ``configs/simulate.yaml``);
2. pretrains each source the region names in ``sources`` (other radar
   networks, satellite infrared, Moving-MNIST video), without transfer;
3. trains the region's forecaster (``forecast.model``) with transferable
   memory from those sources;
4. chooses how much of a Lagrangian forecaster's growth and decay its
   forecasts apply on validation sets (:func:`calibrate_target`,
   :mod:`nowcast.models.calibration`);
5. measures the forecaster's held-out skill beside pysteps extrapolation on
   sequences it never saw (independent evolutions of the target's real seed,
   a disjoint seed stream) and stores it in the checkpoint
   (:func:`nowcast.models.skill.record_skill`), so every product says how the
   model compares;
6. records every checkpoint's SHA-256 in ``models/zoo/SHA256SUMS`` and the
   exact command in ``models/zoo/MANIFEST.json``, so shipped weights can be
   checked and reproduced.

Checkpoints go where :func:`nowcast.models.zoo.training_config` says: in a
source checkout where each config says (``models/zoo``), installed from a
wheel to ``$NOWCAST_HOME/models`` (and simulated data under
``$NOWCAST_HOME``), never into site-packages (docs/models.md).

Training is resumable (:func:`nowcast.training.train` picks up the last
checkpoint), so an interrupted run continues where it stopped; ``--force``
starts every model again from scratch.

Usage (``nowcast pretrain`` is the same command in the nowcast CLI)::

    nowcast pretrain --region swiss-south
    python -m pipelines.pretrain --region swiss-south
    python -m pipelines.pretrain --region swiss-south --only src-nexrad-kbmx --iterations 200
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import shlex
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nowcast.config import load_region, project_root
from nowcast.errors import ConfigError, NowcastError

if TYPE_CHECKING:
    from nowcast.models.config import ModelConfig

log = logging.getLogger(__name__)

#: Sequences simulated per domain when a training store is missing. Sources
#: get plenty; the target deliberately less: transfer matters when the target
#: region has little data of its own.
SOURCE_SEQUENCES = 640
TARGET_SEQUENCES = 192
#: Held-out target sequences (``split="test"``), never used in training.
TEST_SEQUENCES = 64
#: Seed stream of the held-out "same day" sequences (disjoint from training's 0 and validation's 50001).
HELDOUT_SEED = 90_001


@dataclass(frozen=True)
class PretrainedModel:
    """One trained model of the zoo."""

    name: str
    checkpoint: Path
    sha256: str
    iterations: int
    seconds: float


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_sequences(config, sequences: int | None = None, scheduler: str = "threads") -> None:
    """Simulate a model's training store if it is missing (Zarr, dask)."""
    data = config.data
    if data.kind != "zarr_sequences":
        return
    path = Path(data.path)
    path = path if path.is_absolute() else project_root() / path
    if path.exists():
        return
    from pipelines.simulate import simulate_dataset

    n = sequences or (TARGET_SEQUENCES if config.role == "target" else SOURCE_SEQUENCES)
    frames = data.input_frames + data.output_frames
    log.info("%s: simulating %d training sequences of %s -> %s", config.name, n, data.domain, path)
    simulate_dataset(data.domain, n, frames, path, seed=0, crop_size=data.frame_size, scheduler=scheduler)


def ensure_test_sequences(domain: str, path: Path, frames: int, crop_size: int, scheduler: str = "threads",
                          seed: int = 0, sequences: int = TEST_SEQUENCES) -> Path:
    """The held-out test split of a target domain (another real seed where configured).

    ``seed`` 0 is the test set; another seed draws a validation twin of it
    (other windows and evolutions of the same field). ``sequences``: how
    many, if the store has to be made.
    """
    if not path.exists():
        from pipelines.simulate import simulate_dataset

        log.info("simulating %d held-out test sequences of %s -> %s", sequences, domain, path)
        simulate_dataset(domain, sequences, frames, path, seed=seed, crop_size=crop_size, scheduler=scheduler,
                         split="test")
    return path


def heldout_path(config, history: int | None = None) -> Path:
    """The held-out store of a target (beside its training store): independent evolutions of its real seed.

    ``history``: frames the model reads, if more than its ``input_frames``
    (a trend read over a longer history): then a store of the same seed
    stream with that many frames before the leads, ``-sameday-h8.zarr``.
    """
    train = Path(str(config.data.path)).expanduser()
    train = train if train.is_absolute() else project_root() / train
    longer = history is not None and int(history) > int(config.data.input_frames)
    return train.parent / f"{config.data.domain}-sameday{f'-h{int(history)}' if longer else ''}.zarr"


def record_heldout_skill(name: str, home: str | Path | None = None, leads: int = 12,
                         n_sequences: int = TEST_SEQUENCES, scheduler: str = "threads",
                         checkpoint: str | Path | None = None, config: ModelConfig | None = None) -> None:
    """Measure a trained forecaster against extrapolation on held-out sequences and store it in its checkpoint.

    The held-out sequences (made if missing, seed stream :data:`HELDOUT_SEED`,
    disjoint from training and validation) are the ``-sameday`` store beside
    the training store, the one the radar study also uses. ``checkpoint``
    (default: where training writes the model, :func:`nowcast.models.zoo.training_config`)
    is the file measured and updated; ``config`` (default: the model config
    ``name``) says where its data are.
    """
    import numpy as np
    import xarray as xr

    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.skill import heldout_skill, record_skill
    from nowcast.models.zoo import load_forecaster, training_config

    if config is None:
        config = training_config(load_model_config(find_model_config(name, home)), home)
    checkpoint = Path(checkpoint) if checkpoint is not None else config.checkpoint_path
    data = config.data
    forecaster = load_forecaster(checkpoint)
    history = forecaster.history_frames
    path = heldout_path(config, history)
    frames = max(int(data.input_frames), history) + leads
    if not path.exists():
        from pipelines.simulate import simulate_dataset

        simulate_dataset(data.domain, n_sequences, frames, path, seed=HELDOUT_SEED, crop_size=data.frame_size,
                         scheduler=scheduler)
    with xr.open_zarr(path) as ds:
        sequences = np.asarray(ds["rain_rate"].values[:, :frames], dtype=np.float32)
        provenance = str(ds.attrs.get("provenance", "unknown"))
    skill = heldout_skill(forecaster, sequences, path.stem, provenance, leads,
                          int(data.timestep_minutes or 5))
    record_skill(checkpoint, skill)


#: Validation sequences per set the change weights are chosen on.
CALIBRATION_SEQUENCES = 64


def calibrate_target(checkpoint: str | Path, n_sequences: int = CALIBRATION_SEQUENCES,
                     stores: list[Path] | None = None, command: str | None = None, settings=None) -> dict | None:
    """Choose a Lagrangian rain target's change weights on its validation sets and store them in its checkpoint.

    Why: the network's change costs skill where it does not know what it
    forecasts; :mod:`nowcast.models.calibration` says how much of its growth
    and decay a forecast applies and how much of the window's own trend it
    adds, chosen on the validation sets (:func:`pipelines.validation.validation_stores`,
    made if missing), never the test sets. A model of another frame or
    modality is left as it is (returns ``None``). Returns the stored ``change_weights`` entry.

    ``settings``: how (a :class:`nowcast.models.config.CalibrationConfig`:
    how the trend is read, the rule, the candidates); ``None``: the model
    config's ``calibration`` section (the shipped model's: 8 frames, the slope,
    4 px, its gate, growth floor and one candidate), so that ``nowcast
    pretrain`` calibrates as the shipped model was.
    A ``trend_frames`` above the model's ``input_frames`` is chosen on
    validation sets of that much history
    (:func:`pipelines.validation.long_validation_stores`, made if missing).
    """
    from nowcast.models.calibration import calibrate
    from nowcast.models.zoo import load_forecaster
    from pipelines.validation import calibration_sequences

    checkpoint = Path(checkpoint)
    forecaster = load_forecaster(checkpoint)
    if not forecaster.lagrangian or forecaster.normaliser.kind != "db":
        log.info("%s: no change weights (only Lagrangian rain models take them)", checkpoint)
        return None
    leads = int(forecaster.config.data.output_frames)
    settings = settings or forecaster.config.calibration
    stores, sequences = calibration_sequences(forecaster.config, settings.trend_frames, n_sequences, leads, stores)
    weights, summaries, _, _ = calibrate(forecaster, sequences, leads, **settings.calibrate_kwargs())
    return record_change_weights(checkpoint, weights, summaries, stores, sequences,
                                 command or f"nowcast models calibrate {checkpoint}")


def record_change_weights(checkpoint: Path, weights, summaries: dict, stores: list[Path], sequences: dict,
                          command: str, **extra) -> dict:
    """Store the chosen weights in ``checkpoint`` with how they were chosen; returns the ``change_weights`` entry.

    ``summaries``: every candidate's worst-lead difference and mean CSI@5
    (:func:`nowcast.models.calibration.choose_weights`), of which the chosen
    one's and the network's own (:data:`nowcast.models.calibration.NETWORK`) are recorded.
    A ``study_skill`` the checkpoint held is removed: it was measured under
    the weights these replace (``benchmarks/trend_history.py record`` measures
    it again).
    """
    from datetime import datetime, timezone

    from nowcast.models.calibration import NETWORK
    from nowcast.models.skill import update_metadata

    chosen = summaries[weights.key(0)]
    entry = weights.to_metadata(
        validation=[store.name for store in stores], sequences={name: len(v) for name, v in sequences.items()},
        worst_lead_difference=chosen["worst"],
        network_worst_lead_difference=summaries[NETWORK]["worst"] if NETWORK in summaries else None,
        mean_csi5=chosen["csi5"], mean_applied_change=chosen.get("change"), command=command,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra)
    digest = update_metadata(checkpoint, change_weights=entry, study_skill=None)
    log.info("%s: %s (worst lead on validation %+.4f); sha256 %s", checkpoint, weights.brief(), chosen["worst"],
             digest[:12])
    return entry


def zoo_models(region_name: str, home: str | Path | None = None) -> list[str]:
    """The region's sources, then its forecaster: the order they must be trained in."""
    region = load_region(region_name, home)
    if not region.forecast.model:
        raise ConfigError(f"region {region.name!r}: key 'forecast.model' is not set; nothing to train")
    return [*region.sources, region.forecast.model]


def train_model(name: str, *, iterations: int | None = None, force: bool = False, sequences: int | None = None,
                scheduler: str = "threads", progress: bool = True, home: str | Path | None = None) -> PretrainedModel:
    """Train one model config by name (data simulated first if missing).

    The checkpoint goes to :func:`nowcast.models.zoo.training_config`'s path:
    the config's own in a source checkout, ``HOME/models`` when installed.
    """
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import training_config
    from nowcast.training import train

    config = training_config(load_model_config(find_model_config(name, home)), home)
    ensure_sequences(config, sequences, scheduler)
    t0 = _time.perf_counter()
    result = train(config, resume=not force, max_iterations=iterations, progress=progress)
    seconds = _time.perf_counter() - t0
    checkpoint = Path(result.checkpoint)
    return PretrainedModel(name, checkpoint, sha256_file(checkpoint), int(result.iterations), seconds)


def _read_manifest(zoo: Path) -> dict:
    """``zoo/MANIFEST.json`` as a dict (empty when there is none yet)."""
    path = zoo / "MANIFEST.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_manifest(zoo: Path, manifest: dict) -> None:
    """Write ``zoo/MANIFEST.json`` (sorted keys, so its diffs stay small)."""
    (zoo / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def record_checksums(models: list[PretrainedModel], command: str) -> Path:
    """Update ``SHA256SUMS`` and ``MANIFEST.json`` beside the checkpoints."""
    zoo = models[0].checkpoint.parent
    sums_path = zoo / "SHA256SUMS"
    sums: dict[str, str] = {}
    if sums_path.exists():
        for line in sums_path.read_text().splitlines():
            if line.strip():
                digest, fname = line.split(maxsplit=1)
                sums[fname.strip()] = digest
    manifest = _read_manifest(zoo)
    for m in models:
        sums[m.checkpoint.name] = m.sha256
        manifest[m.checkpoint.name] = {
            "model": m.name, "sha256": m.sha256, "iterations": m.iterations,
            "train_seconds": round(m.seconds, 1), "command": command,
            "data": "simulated from real seeds (pipelines/simulate.py, configs/simulate.yaml)",
        }
    sums_path.write_text("".join(f"{d}  {f}\n" for f, d in sorted(sums.items())))
    _write_manifest(zoo, manifest)
    return sums_path


def rebuild_checksums(zoo: Path | None = None) -> Path:
    """Rewrite ``SHA256SUMS`` and ``MANIFEST.json`` from the checkpoints in ``zoo``.

    For checkpoints trained outside :func:`pretrain_region` (e.g. by the radar
    study, which trains the shipped target with its unchanged config) and after
    concurrent runs; a checkpoint without a manifest entry gets the canonical
    command that reproduces it (``nowcast train --config NAME``).
    """
    from nowcast.models.zoo import load_checkpoint

    zoo = zoo or project_root() / "models" / "zoo"
    manifest = _read_manifest(zoo)
    models = []
    for path in sorted(zoo.glob("*.pt")):
        if path.name.endswith(".state.pt"):
            continue
        meta = load_checkpoint(path).metadata
        entry = manifest.get(path.name, {})
        seconds = float(meta.get("metrics", {}).get("seconds_per_iteration") or 0) * int(meta["iterations"])
        models.append(PretrainedModel(meta["name"], path, sha256_file(path), int(meta["iterations"]),
                                      float(entry.get("train_seconds", seconds))))
        if "command" not in entry:
            manifest[path.name] = {"command": f"nowcast train --config configs/models/{meta['name']}.yaml --threads 1"}
    _write_manifest(zoo, manifest)
    commands = {m.checkpoint.name: manifest[m.checkpoint.name]["command"] for m in models}
    (zoo / "SHA256SUMS").unlink(missing_ok=True)
    for m in models:
        record_checksums([m], commands[m.checkpoint.name])
    return zoo / "SHA256SUMS"


def promote_checkpoint(candidate: str | Path, config: ModelConfig) -> Path:
    """Make ``candidate`` the checkpoint of model ``config`` (e.g. the shipped zoo file), with its resume state.

    Why: a candidate is chosen *after* it was trained and measured (a study
    on a GPU machine, a weight chosen on the validation store). Training it
    again under the shipped path would be another run (GPU kernels are not
    bit-reproducible), not the one that was measured. So the measured file
    is copied, but only if its stored config is ``config`` in everything
    that shapes what it learns (:func:`nowcast.models.zoo.config_difference`)
    and it ran at least the config's iterations. The copy's stored config becomes
    ``config`` (its own checkpoint path; the precision it ran in is kept),
    ``promoted_from`` names the candidate, and the weights and their digest
    are untouched. Written atomically.

    Raises
    ------
    CheckpointError
        Unreadable candidate, another architecture, or a config that differs
        (one line naming the first differing field), or too few iterations.
    """
    import shutil

    import torch

    from nowcast.errors import CheckpointError
    from nowcast.models.zoo import (
        _atomic_torch_save,
        _atomic_write,
        config_difference,
        load_checkpoint,
    )
    from nowcast.training import state_path_for

    candidate = Path(candidate)
    ckpt = load_checkpoint(candidate, expect_config=config)
    difference = config_difference(ckpt, config, ignore=("training.iterations",))
    if difference:
        raise CheckpointError(f"{candidate}: not a run of model config {config.name!r}: {difference}")
    if int(ckpt.metadata["iterations"]) < config.training.iterations:
        raise CheckpointError(f"{candidate}: trained {ckpt.metadata['iterations']} iterations, model config "
                              f"{config.name!r} asks for {config.training.iterations}")
    stored = config.model_dump(mode="json")
    stored["training"]["precision"] = ckpt.metadata["config"]["training"]["precision"]
    obj = torch.load(candidate, map_location="cpu", weights_only=True)
    obj["metadata"] = {**obj["metadata"], "name": config.name, "config": stored, "promoted_from": candidate.name}
    target = config.checkpoint_path
    _atomic_torch_save(obj, target)
    state = state_path_for(candidate)
    if state.is_file():  # byte for byte: the run resumes exactly where the measured one stopped
        _atomic_write(state_path_for(target), lambda tmp: shutil.copyfile(state, tmp))
    else:  # no resume state came with it: the old one would resume another run
        state_path_for(target).unlink(missing_ok=True)
    log.info("%s promoted to %s (model config %s)", candidate, target, config.name)
    return target


def pretrain_region(region_name: str, *, only: list[str] | None = None, iterations: int | None = None,
                    force: bool = False, scheduler: str = "threads", progress: bool = True,
                    command: str | None = None, sequences: int | None = None,
                    home: str | Path | None = None) -> list[PretrainedModel]:
    """Train the region's zoo and forecaster (or ``only`` some of them).

    ``home`` adds ``HOME/configs/{regions,models}`` to the config search path
    (user models first), as everywhere in nowcast.
    """
    names = zoo_models(region_name, home)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ConfigError(f"region {region_name!r} does not use model(s) {', '.join(unknown)}; "
                              f"its models are {', '.join(names)}")
        names = [n for n in names if n in only]
    done = []
    for i, name in enumerate(names, 1):
        log.info("[%d/%d] training %s", i, len(names), name)
        model = train_model(name, iterations=iterations, force=force, sequences=sequences, scheduler=scheduler,
                            progress=progress, home=home)
        log.info("%s: %d iterations in %.0f s -> %s (sha256 %s)", name, model.iterations, model.seconds,
                 model.checkpoint, model.sha256[:12])
        done.append(model)
    region = load_region(region_name, home)
    if region.forecast.model in [m.name for m in done]:
        target = next(m for m in done if m.name == region.forecast.model)
        log.info("choosing the change weights of %s on its validation sets", region.forecast.model)
        calibrate_target(target.checkpoint, min(sequences or CALIBRATION_SEQUENCES, CALIBRATION_SEQUENCES))
        log.info("measuring the held-out skill of %s beside pysteps extrapolation", region.forecast.model)
        record_heldout_skill(region.forecast.model, home, n_sequences=sequences or TEST_SEQUENCES, scheduler=scheduler,
                             checkpoint=target.checkpoint)
        done = [dataclasses.replace(m, sha256=sha256_file(m.checkpoint)) if m.name == region.forecast.model else m
                for m in done]
    if done:
        record_checksums(done, command or "python -m pipelines.pretrain --region " + region_name)
    return done


def default_zoo(home: str | Path | None = None) -> Path:
    """Folder whose checksums ``--checksums-only`` rewrites: the checkout's ``models/zoo``, else ``HOME/models``."""
    from nowcast.paths import ZOO_DIR, models_dir, source_checkout

    root = source_checkout()
    return root / ZOO_DIR if root is not None else models_dir(home)


def run(region: str = "swiss-south", *, only: list[str] | None = None, iterations: int | None = None,
        force: bool = False, scheduler: str = "threads", progress: bool = True, threads: int | None = None,
        checksums_only: bool = False, command: str | None = None, home: str | Path | None = None,
        ) -> list[PretrainedModel]:
    """What both ``python -m pipelines.pretrain`` and ``nowcast pretrain`` do, once their options are parsed.

    Sets torch's thread count (``threads``), then either rewrites the zoo's
    checksums (``checksums_only``, :func:`rebuild_checksums` of
    :func:`default_zoo`) or trains the region's zoo (:func:`pretrain_region`).
    ``command`` is what ``MANIFEST.json`` records as the reproducing command.

    Raises
    ------
    NowcastError
        Unknown region or model, bad config, training failure.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    if checksums_only:
        log.info("wrote %s", rebuild_checksums(default_zoo(home)))
        return []
    return pretrain_region(region, only=only, iterations=iterations, force=force, scheduler=scheduler,
                           progress=progress, command=command, home=home)


def promote(candidate: Path, only: list[str], region: str, home: str | Path | None = None,
            command: str | None = None) -> Path:
    """``--promote``: :func:`promote_checkpoint` for the one model named, then its held-out skill and the checksums.

    ``MANIFEST.json`` then describes the promoted run, not the one it
    replaces: ``command`` (default: the promotion itself, naming the
    candidate) and its training time (seconds per iteration x iterations,
    from its metrics, by :func:`rebuild_checksums`).
    """
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import training_config

    if len(only) != 1:
        raise ConfigError("--promote needs exactly one model name in --only (the model the checkpoint becomes)")
    name = only[0]
    if name not in zoo_models(region, home):
        raise ConfigError(f"region {region!r} does not use model {name!r}")
    config = training_config(load_model_config(find_model_config(name, home)), home)
    target = promote_checkpoint(candidate, config)
    record_heldout_skill(name, home)
    record_promotion(target, command or f"python -m pipelines.pretrain --only {name} --promote {candidate}")
    log.info("wrote %s", rebuild_checksums(target.parent))
    return target


def record_promotion(target: Path, command: str) -> None:
    """Replace ``target``'s ``MANIFEST.json`` entry by one holding only the promoted run's ``command``.

    Without this the entry kept the command and training time of the run it
    replaced: :func:`rebuild_checksums` keeps an existing entry's command and
    time, and derives the time from the checkpoint's metrics only where the
    entry has none, as it now has not.
    """
    manifest = _read_manifest(target.parent)
    manifest[target.name] = {"command": command}
    _write_manifest(target.parent, manifest)


def main(argv: list[str] | None = None) -> int:
    """Command line of the pipeline (see the module docstring); ``nowcast pretrain`` is the same in the CLI."""
    from nowcast.logging_setup import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", default="swiss-south")
    parser.add_argument("--only", nargs="*", default=None, help="Train only these models of the region.")
    parser.add_argument("--iterations", type=int, default=None, help="Override every config's iteration count.")
    parser.add_argument("--force", action="store_true", help="Start from scratch instead of resuming.")
    parser.add_argument("--scheduler", default="threads", help="dask scheduler for simulating missing data.")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--checksums-only", action="store_true",
                        help="Only rewrite models/zoo/SHA256SUMS and MANIFEST.json from the checkpoints there.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 per run is fastest when runs share the cores)")
    parser.add_argument("--promote", type=Path, default=None, metavar="CHECKPOINT",
                        help="Instead of training: make this measured checkpoint the one model of --only "
                             "(its config must match), record its held-out skill and the checksums.")
    args = parser.parse_args(argv)
    configure_logging(0)
    command = "python -m pipelines.pretrain " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        if args.promote is not None:
            promote(args.promote, args.only or [], args.region)
            return 0
        run(args.region, only=args.only, iterations=args.iterations, force=args.force, scheduler=args.scheduler,
            progress=not args.no_progress, threads=args.threads, checksums_only=args.checksums_only,
            command=command)
    except NowcastError as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
