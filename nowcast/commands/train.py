"""``nowcast train``: train one model of the zoo from its config."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from nowcast.cli import app
from nowcast.commands.common import HomeOption, QuietOption, VerboseOption, setup

log = logging.getLogger(__name__)


@app.command()
def train(
    config: Annotated[str, typer.Option("--config", "-c", help="Model config: configs/models/NAME.yaml, a YAML path or a NAME.")],
    iterations: Annotated[
        Optional[int], typer.Option("--iterations", "-n", min=1, help="Train up to this iteration (default: training.iterations).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from NAME.state.pt beside the checkpoint.")] = True,
    device: Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1, ... or auto (CUDA when present).")] = "cpu",
    precision: Annotated[
        Optional[str], typer.Option("--precision", help="auto, bf16 or fp32 (default: the config's training.precision).")
    ] = None,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="Torch CPU threads (default: torch's choice; 1 is best on a busy shared machine).")
    ] = None,
    data_workers: Annotated[
        int, typer.Option("--data-workers", min=0, help="Processes making the next batches while the network trains (same batches, same result; worth it on a GPU).")
    ] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Train a source, a scratch/finetuned target or a TMU target, as its config says.

    The checkpoint goes where the config's ``checkpoint`` says (relative to
    the source checkout); installed from a wheel, a shipped-zoo model
    (models/zoo/NAME.pt) goes to HOME/models/NAME.pt, which the model lookup
    reads first (docs/models.md). An interrupted run resumes where it stopped.

    Started by torchrun with several processes (on one machine or several),
    it trains data-parallel: each process takes its share of every batch,
    gradients are averaged, process 0 writes the checkpoint and reports
    (docs/guide/cluster.md). --device cuda then means one GPU per process.
    """
    from nowcast.distributed import launched_rank
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import training_config
    from nowcast.training import train as run_training

    main_process = launched_rank() == 0  # under torchrun only process 0 reports
    setup(verbose, quiet or not main_process)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from nowcast.precision import check_choice, resolve_device

    check_choice(device=device, precision=precision or "auto")
    cfg = training_config(load_model_config(find_model_config(config, home)), home)
    if precision:
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"precision": precision})})
    result = run_training(cfg, resume=resume, max_iterations=iterations, progress=progress and not quiet,
                          device=resolve_device(device), data_workers=data_workers)
    if not main_process:
        return
    losses = ", ".join(f"{k} {result.final_losses[k]:.5g}" for k in ("loss", "prediction", "distillation", "val_mse") if k in result.final_losses)
    typer.echo(f"{cfg.name}: {result.iterations} iterations ({losses}); checkpoint {result.checkpoint} sha256 {result.sha256}")
    hint = calibration_hint(cfg, result.checkpoint)
    if hint:
        typer.echo(hint)


def calibration_hint(cfg, checkpoint) -> str | None:
    """The next step after training a Lagrangian rain forecaster (its change weights), or ``None`` for other models.

    Why: ``nowcast pretrain`` calibrates a region's forecaster itself, a model
    trained alone does not; without weights its forecasts apply the network's
    change as trained, which on the shipped model's test sets cost up to
    0.018 CSI at some leads (docs/benchmarks.md, "Skill, twelfth round").
    """
    if cfg.frame == "lagrangian" and cfg.role == "target" and cfg.data.normaliser.kind == "db":
        return (f"next: nowcast models calibrate {checkpoint}   # how much of its growth, decay and window trend "
                "forecasts apply, chosen on validation data (docs/models.md, 'Change weights')")
    return None
