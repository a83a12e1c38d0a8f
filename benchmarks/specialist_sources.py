"""Specialist radar sources: each zoo radar source retrained on one simulated regime only.

Why: the TMU's claim over finetuning is that it combines what *several*
sources know, where finetuning copies one. In every setting tried before
(tenth, eleventh and thirty-second rounds) the radar sources were simulated
with the same mix of regimes, so each knew what the others knew, and the TMU
tied finetuning from one of them. Here the two radar sources are made to know
different things: KBMX only its growth/decay sequences, Korpo only its
convective ones (:data:`SPECIALISTS`). The target arms that use them are the
``finetune-kbmx-growth``, ``finetune-korpo-convective`` and ``tmu-split``
methods of ``benchmarks/radar_transfer.py`` (thirty-fourth round).

Each specialist's store is :func:`benchmarks.radar_transfer.regime_training_store`
of its zoo source's store (simulated first if missing): the same sequences,
only those of one regime, so no new data is made. Each specialist's YAML
(``benchmarks/configs/transfer-split/``) must name that store; a YAML edited
to name another is refused, not trained.

Usage (resumable; what is complete is skipped)::

    python benchmarks/specialist_sources.py [--threads 1] [--only src-nexrad-kbmx-growth]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.radar_transfer import (
    SPLIT_CONFIGS,
    ensure_trained,
    regime_store_path,
    regime_training_store,
)

log = logging.getLogger("specialist_sources")

#: Specialist name -> (the zoo source it is made from, the one regime it is trained on).
SPECIALISTS: dict[str, tuple[str, str]] = {
    "src-nexrad-kbmx-growth": ("src-nexrad-kbmx", "growth_decay"),
    "src-finland-korpo-convective": ("src-finland-korpo", "convective"),
}


def specialist_config(name: str):
    """The specialist's model config, checked to train on its zoo source's store of its one regime.

    Raises
    ------
    SystemExit
        The YAML names another store than the regime subset it is documented
        to train on (a study that silently trained on other data would
        compare other things).
    """
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.training import sequences_path

    base, regime = SPECIALISTS[name]
    config = load_model_config(ROOT / SPLIT_CONFIGS / f"{name}.yaml")
    zoo = load_model_config(find_model_config(base))
    expected = regime_store_path(zoo, (regime,))
    named = sequences_path(config)
    if named.resolve() != expected.resolve():
        raise SystemExit(f"{SPLIT_CONFIGS}/{name}.yaml: data.path is {named}, not the {regime} store of {base} ({expected})")
    if config.architecture != zoo.architecture or config.data.domain != zoo.data.domain:
        raise SystemExit(f"{SPLIT_CONFIGS}/{name}.yaml: architecture or domain differs from {base}'s")
    return config, zoo, regime


def make_specialist(name: str, data_workers: int = 0) -> Path:
    """Make the specialist's regime store (and its zoo source's store if missing), then train it."""
    from pipelines.pretrain import ensure_sequences

    config, zoo, regime = specialist_config(name)
    ensure_sequences(zoo)
    store = regime_training_store(zoo, (regime,))
    log.info("%s: %s", name, store)
    return ensure_trained(config, data_workers=data_workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SPECIALISTS), default=sorted(SPECIALISTS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: runs share the cores)")
    parser.add_argument("--data-workers", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    for name in args.only:
        log.info("%s -> %s", name, make_specialist(name, args.data_workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
