"""``nowcast models list``: the trained checkpoints nowcast can find, and which copy it uses."""

from __future__ import annotations

import json
import logging
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
