"""The shared motion module moves rain exactly as pysteps does."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.motion import (
    DB_ZERO,
    advect_leads,
    displacements,
    from_db,
    motion_field,
    to_db,
    to_lagrangian,
    unknown_mask,
)


def _blob(ny: int = 48, nx: int = 48, cy: float = 20.0, cx: float = 18.0) -> np.ndarray:
    y, x = np.mgrid[:ny, :nx]
    return (12.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 40.0)).astype(np.float32)


def _velocity(shape, u=1.5, v=-0.75, shear=0.02) -> np.ndarray:
    y = np.arange(shape[0])[:, None] * np.ones(shape)
    return np.stack([np.full(shape, u) + shear * y, np.full(shape, v)])


def test_advect_leads_equals_pysteps_extrapolate():
    from pysteps.extrapolation.semilagrangian import extrapolate

    db = to_db(_blob())
    vel = _velocity(db.shape)
    ours = advect_leads(np.repeat(db[None], 6, axis=0), vel, outval=DB_ZERO)
    ref = extrapolate(db, vel, 6, outval=DB_ZERO)
    np.testing.assert_array_equal(ours, ref)


def test_to_lagrangian_undoes_a_known_translation():
    # A blob moving 2 px/step along x: every frame in the analysis frame is the analysis frame.
    frames = np.stack([to_db(_blob(cx=10.0 + 2.0 * t)) for t in range(-3, 5)])
    vel = np.stack([np.full(frames.shape[1:], 2.0), np.zeros(frames.shape[1:])])
    lag, valid = to_lagrangian(frames, list(range(-3, 5)), vel)
    analysis = frames[3]
    for k in range(frames.shape[0]):
        inside = valid[k]
        assert inside.mean() > 0.6
        np.testing.assert_allclose(lag[k][inside], analysis[inside], atol=1e-9)


def test_to_lagrangian_marks_sources_outside_the_domain():
    frames = np.zeros((3, 16, 16))
    vel = np.stack([np.full((16, 16), 3.0), np.zeros((16, 16))])
    _, valid = to_lagrangian(frames, [-1, 0, 2], vel)
    assert valid[1].all()
    # an input one step old was upstream: its first 3 columns came from outside
    assert not valid[0][:, :3].any() and valid[0][:, 4:].all()
    # a frame 2 steps ahead: its Lagrangian source lies 6 columns downstream
    assert not valid[2][:, -6:].any() and valid[2][:, :-7].all()


def test_displacement_is_additive_for_uniform_motion():
    vel = np.stack([np.full((8, 8), 1.25), np.full((8, 8), -0.5)])
    d = displacements(vel, 4)
    np.testing.assert_allclose(d[3, 0], -5.0)
    np.testing.assert_allclose(d[3, 1], 2.0)


def test_db_round_trip_threshold_both_sides():
    rate = np.array([0.0, 0.0999, 0.1, 1.0, 57.0, np.nan], dtype=np.float32)
    back = from_db(to_db(rate))
    assert back[0] == 0.0 and back[1] == 0.0  # below the threshold: dry
    np.testing.assert_allclose(back[2:5], rate[2:5], rtol=1e-5)  # at the threshold: kept
    assert back[5] == 0.0  # NaN counts as dry for the transform


def test_motion_of_dry_window_is_zero_and_unknown_method_is_refused():
    assert not motion_field(np.zeros((3, 16, 16), dtype=np.float32)).any()
    with pytest.raises(ValueError, match="valid names"):
        motion_field(np.zeros((3, 16, 16), dtype=np.float32), method="nope")


def test_unknown_mask_follows_the_motion():
    nodata = np.zeros((16, 16), dtype=bool)
    nodata[:, 8] = True
    vel = np.stack([np.full((16, 16), 1.0), np.zeros((16, 16))])
    unknown = unknown_mask(nodata, vel, 2)
    assert unknown[0][:, 9].all() and unknown[1][:, 10].all()
    assert not unknown[1][:, 5].any()


def test_batched_torch_transform_agrees_with_the_pysteps_path():
    import torch

    from nowcast.motion import to_lagrangian_torch

    rng = np.random.default_rng(0)
    frames = np.stack([to_db(_blob(cx=10.0 + 1.7 * t, cy=20.0 + 0.4 * t)) for t in range(-3, 6)])
    frames = frames + rng.normal(0, 0.5, frames.shape)
    vel = _velocity(frames.shape[1:], u=1.7, v=0.4, shear=0.03)
    offsets = list(range(-3, 6))
    ref, ref_valid = to_lagrangian(frames, offsets, vel)
    ours, valid = to_lagrangian_torch(torch.from_numpy(frames)[None].double(), offsets, torch.from_numpy(vel)[None].double())
    ours, valid = ours[0].numpy(), valid[0].numpy()
    agree = valid == ref_valid
    assert agree.mean() > 0.995  # they may differ only on the edge of the domain
    both = valid & ref_valid
    np.testing.assert_allclose(ours[both], ref[both], atol=1e-6)


def _swirl(shape, centre=(20.0, 26.0), rate=0.08, drift=(2.5, -1.5)) -> np.ndarray:
    """Rotation plus drift: trajectories curve and leave the domain, so the midpoint rule matters."""
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    return np.stack([drift[0] - rate * (y - centre[0]), drift[1] + rate * (x - centre[1])])


def test_displacements_equal_pysteps_bit_for_bit():
    from nowcast.motion import displacements_pysteps

    vel = _swirl((40, 56))
    ours = displacements(vel, 9)
    np.testing.assert_array_equal(ours, displacements_pysteps(vel, 9))
    # and every step is what one pysteps call for k steps returns
    from pysteps.extrapolation.semilagrangian import extrapolate

    _, d5 = extrapolate(None, vel, 5, return_displacement=True)
    np.testing.assert_array_equal(ours[4], d5)


def test_displacements_refuse_a_velocity_that_is_not_a_field():
    with pytest.raises(ValueError, match="non-finite"):
        displacements(np.full((2, 8, 8), np.nan), 2)
    with pytest.raises(ValueError, match=r"\(2, ny, nx\)"):
        displacements(np.zeros((8, 8)), 2)


def test_to_lagrangian_with_shared_displacements_equals_its_own():
    rng = np.random.default_rng(3)
    frames = rng.normal(size=(4, 40, 56))
    vel = _swirl((40, 56))
    offsets = [-3, -2, -1, 0]
    own = to_lagrangian(frames, offsets, vel)
    shared = to_lagrangian(frames, offsets, vel, disp=displacements(vel, 12))
    np.testing.assert_array_equal(own[0], shared[0])
    np.testing.assert_array_equal(own[1], shared[1])
    with pytest.raises(ValueError, match="3 steps old"):
        to_lagrangian(frames, offsets, vel, disp=displacements(vel, 2))
