"""Device harness: the motion of every training/validation sequence, once, on every core.

Usage: ``python benchmarks/device/motion.py [STORE ...]``, store names under ``data/sim``
(default: the swiss-south training and validation stores).
"""
import logging
import sys

from pipelines.sequences import add_motion

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for name in sys.argv[1:] or ["swiss-south-train", "swiss-south-val"]:
        add_motion(f"data/sim/{name}.zarr", 4, "LK", scheduler="processes")
