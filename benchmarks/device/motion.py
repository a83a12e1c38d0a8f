"""Device harness: the motion of every training/validation sequence, once, on every core."""
import logging

from pipelines.sequences import add_motion

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for s in ("train", "val"):
        add_motion(f"data/sim/swiss-south-{s}.zarr", 4, "LK", scheduler="processes")
