"""``nowcast models list`` (the trained checkpoints nowcast can find, and which copy it uses) and ``calibrate``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from nowcast.cli import app
from nowcast.commands.common import HomeOption, QuietOption, VerboseOption, setup

log = logging.getLogger(__name__)

models_app = typer.Typer(
    help="The model zoo: trained checkpoints, where they are found and how they compare with extrapolation.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """List every checkpoint found, in lookup order: HOME/models first, then the shipped zoo.

    A checkpoint in HOME/models (trained or retrained by you) is used instead
    of a shipped one of the same name; the shipped zoo is the source
    checkout's models/zoo (development) or the one inside the installed
    package. Columns: name, role, TMU sources, frame, training data and its
    provenance, iterations, held-out skill against pysteps extrapolation
    (mean CSI over the first hour, model vs extrapolation), SHA-256 (first 12
    characters; '!' if it differs from the SHA256SUMS beside it) and where it
    was found. See docs/models.md.
    """
    from nowcast.models.zoo import zoo_listing

    setup(verbose, quiet)
    listing = zoo_listing(home)
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    _print_table(listing)


def _print_table(listing: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or redirected: full lines, no wrapping at 80 columns
        console = Console(width=220)
    order = " > ".join(f"{d['where']} {d['dir']}" for d in listing["lookup_order"])
    console.print(f"[bold]lookup order[/]: {order}", highlight=False, soft_wrap=True)
    if not listing["models"]:
        console.print("no model checkpoint found", highlight=False)
        return
    table = Table(title=None)
    for col, justify in (("name", "left"), ("role", "left"), ("sources", "left"), ("frame", "left"),
                         ("trained on", "left"), ("it", "right"), ("held-out skill vs extrapolation", "left"),
                         ("sha256", "left"), ("found", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in listing["models"]:
        if "error" in m:
            table.add_row(m["name"], "-", "-", "-", f"[red]unreadable: {m['error']}[/]", "-", "-", "-", m["found"])
            continue
        sha = m["sha256"][:12] + ("" if m.get("sha256_listed") is not False else " !")
        found = m["found"] + (f" (shadows {', '.join(s['where'] for s in m['shadows'])})" if m["shadows"] else "")
        table.add_row(
            m["name"], m["role"], ", ".join(m["sources"]) or "-", m["frame"], m["trained_on"],
            str(m.get("iterations") if m.get("iterations") is not None else "-"),
            (m.get("heldout_skill_brief") or "-") + (f"; {m['change_weights']}" if m.get("change_weights") else ""),
            sha, found,
        )
    console.print(table)


def _weights_list(text: str, option: str) -> tuple[float, ...]:
    """``0,0.25,1`` as numbers; a one-line ValueError naming the option otherwise."""
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise ValueError(f"{option} {text!r}: give comma-separated numbers, e.g. 0,0.25,0.5,1") from None


@models_app.command("calibrate")
def models_calibrate(
    model: Annotated[str, typer.Argument(help="Checkpoint path (.pt) or model name; the file found is rewritten.")],
    validation: Annotated[
        list[Path] | None,
        typer.Option("--validation", help="Validation sequence store (repeat for several; default: the model's "
                                          "validation store and the twins of its test sets, made if missing)."),
    ] = None,
    sequences: Annotated[int, typer.Option("--sequences", min=1, help="First N sequences of each store.")] = 64,
    trend_frames: Annotated[int | None, typer.Option(
        "--trend-frames", min=0,
        help="Read the window trend over this many frames (motion and network keep the model's input frames); "
             "0: the model's input frames. Longer validation sequences are made if missing. "
             "Default: the model config's calibration.trend_frames.")] = None,
    trend_estimator: Annotated[str | None, typer.Option(
        "--trend-estimator",
        help="How the trend is read: 'slope' over the whole history, or 'minmod' of the slopes over its older and "
             "newer halves (needs --trend-frames 6 or more). Default: the model config's.")] = None,
    trend_smoothing: Annotated[float | None, typer.Option(
        "--trend-smoothing", min=0.0,
        help="Smooth every frame's rain within the rain over this many pixels before the trend is read. "
             "Default: the model config's.")] = None,
    trend_persistence_min: Annotated[float | None, typer.Option(
        "--trend-persistence-min", min=-1.0, max=1.0,
        help="Add the trend only to scenes whose trend went on within their window (the correlation of the older "
             "and newer halves' rates at least this; -1: every scene). Default: the model config's.")] = None,
    trend_network_agrees: Annotated[bool | None, typer.Option(
        "--trend-network-agrees/--trend-everywhere",
        help="Add the trend only where the network's own change grows over the hour (or wherever it is read). "
             "Default: the model config's.")] = None,
    trend_align: Annotated[bool | None, typer.Option(
        "--trend-align/--no-trend-align",
        help="Remove from the trend the growth a residual displacement of the older frames explains (a translation "
             "and a rotation fitted per scene). Default: the model config's.")] = None,
    trend_ceiling: Annotated[str | None, typer.Option(
        "--trend-ceiling",
        help="Let the trend lift rain at most to the window's heaviest: of the whole scene (scene), within 8 grid "
             "cells (local), or without bound (none). Default: the model config's.")] = None,
    trend_persistence_samples: Annotated[float | None, typer.Option(
        "--trend-persistence-samples", min=0.0,
        help="The persistence gate opens only where its correlation is read over at least this many independent "
             "samples (pixels / 4 pi sigma^2 of the trend's smoothing); 0: over 50 pixels. "
             "Default: the model config's.")] = None,
    trend_growth_min: Annotated[float | None, typer.Option(
        "--trend-growth-min", min=0.0,
        help="Add the trend only to a scene whose rate, where it grows, averages at least this (network units per "
             "step; a field that only moves reads less); 0: any scene. Default: the model config's.")] = None,
    trend_persistence_full: Annotated[float | None, typer.Option(
        "--trend-persistence-full",
        help="Weigh the trend by a ramp on the persistence instead of a step at the gate: nothing at "
             "--trend-persistence-min, rising linearly to the whole trend at this correlation (above the gate; "
             "-1: the step). Default: the model config's.")] = None,
    trend_growth_ratio_min: Annotated[float | None, typer.Option(
        "--trend-growth-ratio-min",
        help="Add the trend only to a scene whose growth did not slow within its window: where the rate grows, the "
             "newer half's rate at least this fraction of the older half's (e.g. 0.85; a growth the older half did "
             "not show passes); 0: no floor. Needs --trend-frames 6 or more. Default: the model config's.")] = None,
    network_weights: Annotated[str | None, typer.Option(
        "--network-weights", help="Comma-separated weights of the network's growth and decay tried (e.g. 0). "
                                  "Default: the model config's.")] = None,
    trend_forms: Annotated[str | None, typer.Option(
        "--trend-forms", help="Comma-separated forms of the trend tried: signed, growth. Default: the model config's.")
    ] = None,
    trend_lifetimes: Annotated[str | None, typer.Option(
        "--trend-lifetimes", help="Comma-separated e-folding lifetimes of the trend tried, in steps (e.g. 3,6,12). "
                                  "Default: the model config's.")] = None,
    rule: Annotated[str | None, typer.Option(
        "--rule", help="Selection rule: 13, 14, 15 or best-worst-lead (docs/models.md). Default: the model config's.")] = None,
    trend_weights: Annotated[str | None, typer.Option(
        "--trend-weights", help="Comma-separated trend weights the candidates try, e.g. 0,0.25,0.5,0.75,1,1.5,2. "
                                "Default: the model config's.")] = None,
    home: HomeOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Choose how much of a Lagrangian model's growth, decay and window trend its forecasts apply, on validation data.

    Scores the model under every candidate weighting of its network's growth
    and decay and of the window's own steady trend beside pysteps
    extrapolation, keeps the one that is worst by the least at any lead
    (ties to the one that changes the forecast least), and stores it in the
    checkpoint (docs/models.md, "Change weights"). Its held-out skill is
    measured again under the new weights where its held-out store exists,
    and otherwise marked as not measured. `nowcast pretrain` does this for a
    region's forecaster after training; run it after `nowcast train`.
    `--trend-frames 8` (the shipped model's) reads the trend over the newest
    8 frames, and forecasts then read them from the archive (falling back to
    the model's window where older frames are missing). Without the trend
    options, the model config's `calibration` section says how.
    """
    from nowcast.errors import ConfigError, EnvironmentFault
    from nowcast.models.calibration import ChangeWeights
    from nowcast.models.skill import update_metadata
    from nowcast.models.zoo import load_named_checkpoint
    from pipelines.pretrain import calibrate_target, heldout_path, record_heldout_skill

    setup(verbose, quiet)
    ckpt = load_named_checkpoint(model, home)
    # the options override the model config's calibration section
    try:  # an impossible setting is refused in one line before minutes of scoring
        weights_grid = None if trend_weights is None else _weights_list(trend_weights, "--trend-weights")
        network_grid = None if network_weights is None else _weights_list(network_weights, "--network-weights")
        lifetimes = None if trend_lifetimes is None else _weights_list(trend_lifetimes, "--trend-lifetimes")
        forms = None if trend_forms is None else tuple(f.strip() for f in trend_forms.split(","))
        settings = ckpt.config.calibration.resolve(
            trend_frames=trend_frames, trend_estimator=trend_estimator, trend_smoothing_px=trend_smoothing,
            trend_persistence_min=trend_persistence_min, trend_network_agrees=trend_network_agrees,
            trend_align=trend_align, trend_ceiling=trend_ceiling, trend_persistence_samples=trend_persistence_samples,
            trend_growth_min=trend_growth_min, trend_persistence_full=trend_persistence_full,
            trend_growth_ratio_min=trend_growth_ratio_min, rule=rule,
            trend_weights=weights_grid, network_weights=network_grid, trend_forms=forms, trend_lifetimes=lifetimes)
        settings.check()
    except ValueError as exc:
        raise ConfigError(f"nowcast models calibrate: {exc}") from None
    command = "nowcast models calibrate " + " ".join(
        [model] + [f"--validation {v}" for v in validation or []] + [f"--sequences {sequences}"] + settings.options())
    try:
        entry = calibrate_target(ckpt.path, sequences, stores=list(validation) if validation else None, command=command,
                                 settings=settings)
        if entry is None:
            typer.echo(f"{ckpt.path}: not a Lagrangian rain model; nothing to calibrate")
            raise typer.Exit(code=2)
        config = ckpt.config
        if heldout_path(config).exists():
            record_heldout_skill(config.name, home, leads=int(config.data.output_frames), checkpoint=ckpt.path,
                                 config=config)
        elif ckpt.metadata.get("heldout_skill"):
            update_metadata(ckpt.path, heldout_skill=None)
            log.warning("%s: held-out skill marked as not measured: it was measured without these weights and "
                        "its held-out store %s is not here", ckpt.path, heldout_path(config))
    except OSError as exc:  # the machine's fault (unwritable folder, disk full), not the checkpoint's
        raise EnvironmentFault(f"{ckpt.path}: cannot rewrite the checkpoint ({exc.strerror}); copy it to "
                               "HOME/models and calibrate the copy") from exc
    weights = ChangeWeights.from_metadata(entry, ckpt.path)
    typer.echo(f"{ckpt.path}: {weights.brief()} (worst lead on validation "
               f"{entry['worst_lead_difference']:+.4f}"
               + ("" if entry.get("network_worst_lead_difference") is None
                  else f", the network as trained {entry['network_worst_lead_difference']:+.4f}") + ")")
