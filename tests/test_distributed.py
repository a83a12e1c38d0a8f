"""Data-parallel training (DDP through torchrun, gloo on the CPU) equals one process with the same global batch.

Two CPU processes on 127.0.0.1 train tiny models for a few iterations:

* a plain model on batches whose pixels weigh unequally (like Lagrangian
  batches: each sample has another share of weight-0 pixels, so the ranks'
  weight sums differ), with the soft-CSI term and scheduled sampling on;
* a TMU target with two tiny sources (the memory bank runs on each rank),
  adaptive weights and the ``balanced`` distillation scale, interrupted after
  2 iterations and resumed (the state read by rank 0 and sent to rank 1);
* through the CLI, ``torchrun -m nowcast train`` on Moving-MNIST (each rank
  makes only its share of every batch).

The ranks end with identical weights, and the weights, losses and
validation errors equal those of one process within float rounding.

This file is also the driver torchrun starts for the first two (run as a
script it trains on the process group and saves each rank's weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.distributed
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script by torchrun
    sys.path.insert(0, str(ROOT))

from nowcast.models.config import model_config_from_dict
from nowcast.models.predictor import Predictor
from tests.test_training import moving_square, small
from tests.test_zoo import tiny_config

needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch has no torch.distributed with gloo")

GLOBAL_BATCH = 4
ITERATIONS = 5
#: Largest weight difference allowed between 2 processes and 1 after 5 Adam steps at lr 3e-3. The
#: losses agree to ~1e-7 relative; Adam's update, ~lr * sign(gradient) where a gradient is as small
#: as its rounding, turns float32 rounding into up to ~1e-5 for a few weights (measured 1.0e-5 for
#: one of 6912, the others below 3e-7). The exact equality of the gradients is checked in float64
#: by test_shares_average_to_the_global_loss_and_gradient.
TOLERANCE = 5e-5


def masked_batches(start: int):
    """Global batch ``k`` (4 samples): moving squares with noise; sample ``i`` keeps ~30-90 % of its pixels."""
    k = start
    while True:
        g = torch.Generator().manual_seed(1000 + k)
        x = moving_square(GLOBAL_BATCH) + 0.1 * torch.rand(GLOBAL_BATCH, 6, 1, 16, 16, generator=g)
        keep = torch.linspace(0.3, 0.9, GLOBAL_BATCH).view(GLOBAL_BATCH, 1, 1, 1, 1)
        w = (torch.rand(GLOBAL_BATCH, 6, 1, 16, 16, generator=g) < keep).float()
        yield x, w
        k += 1


def val_batches() -> list:
    return [moving_square(GLOBAL_BATCH), next(masked_batches(99)), moving_square(2)]


def configs(root: Path, sources: list[str]):
    """The plain and the TMU config, checkpoints under ``root``."""
    # fp32: what is compared is the data-parallel arithmetic; 'auto' takes bf16 where the CPU has fast bf16
    # units, and bf16 rounds a 2-sample shard's convolutions differently from the 4-sample batch's
    common = {"iterations": ITERATIONS, "batch_size": GLOBAL_BATCH, "lr": 3e-3, "sampling_start": 0,
              "sampling_end": ITERATIONS, "val_every": 2, "checkpoint_every": 2, "precision": "fp32"}
    plain = small(root, "plain", training={**common, "soft_csi_weight": 0.5, "soft_csi_thresholds": [0.2, 0.5]})
    d = small(root, "tmu", tmu={"sources": sources, "variant": "normalized_sum", "weights": "adaptive",
                                "distill_scale": "balanced"}, training=common).model_dump()
    return plain, model_config_from_dict(d)


class _Spy(Predictor):
    """Records the networks train() builds, so each rank can save its own final weights."""

    built: ClassVar[list[Predictor]] = []

    @classmethod
    def from_config(cls, *args, **kwargs):
        model = Predictor.from_config(*args, **kwargs)
        cls.built.append(model)
        return model


def _driver(root: Path, sources: list[str], out: Path) -> None:
    """Run by torchrun on every rank: train both configs, save this rank's weights and histories."""
    import torch.distributed as dist

    from nowcast import training

    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # the caller's group: train() uses it and leaves it open
    rank = dist.get_rank()
    training.Predictor = _Spy
    plain, tmu = configs(root, sources)
    results = {"plain": training.train(plain, progress=False, batches=masked_batches, val_batches=val_batches())}
    training.train(tmu, progress=False, max_iterations=2, batches=masked_batches, val_batches=val_batches())
    results["tmu"] = training.train(tmu, progress=False, batches=masked_batches, val_batches=val_batches())
    weights = {name: {k: v.detach().clone() for k, v in _Spy.built[i].state_dict().items()}
               for name, i in (("plain", 0), ("tmu", 2))}
    torch.save(weights, out / f"rank{rank}.pt")
    history = {name: [{k: v for k, v in h.items() if k != "seconds"} for h in r.history] for name, r in results.items()}
    (out / f"rank{rank}.json").write_text(json.dumps(history))
    dist.destroy_process_group()


def _torchrun(args: list[str], tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "NOWCAST_HOME": str(tmp_path / "home")}
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only, whatever the host name resolves to
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _close_histories(ddp: list[dict], one: list[dict]) -> None:
    assert [h["iteration"] for h in ddp] == [h["iteration"] for h in one]
    for hd, h1 in zip(ddp, one):
        assert set(hd) == set(h1)
        for key, value in h1.items():
            assert hd[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (h1["iteration"], key)


@needs_gloo
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    from nowcast.models.zoo import load_checkpoint
    from nowcast.training import train
    from tests.test_training import _sources

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sources = [str(p) for p in _sources(tmp_path / "sources")]
        out = tmp_path / "out"
        out.mkdir()
        _torchrun([str(Path(__file__)), "--driver", str(tmp_path / "ddp"), json.dumps(sources), str(out)], tmp_path)

        # one process, the same global batches, the TMU target uninterrupted
        plain, tmu = configs(tmp_path / "one", sources)
        one = {"plain": train(plain, progress=False, batches=masked_batches, val_batches=val_batches()),
               "tmu": train(tmu, progress=False, batches=masked_batches, val_batches=val_batches())}
    finally:
        torch.set_num_threads(before)

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    histories = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    ddp_plain, ddp_tmu = configs(tmp_path / "ddp", sources)
    for name, cfg in (("plain", ddp_plain), ("tmu", ddp_tmu)):
        # the ranks hold the same weights bit for bit, and rank 0 wrote them
        assert all(torch.equal(ranks[0][name][k], ranks[1][name][k]) for k in ranks[0][name]), name
        ckpt = load_checkpoint(cfg.checkpoint_path)
        assert all(torch.equal(v, ranks[0][name][k]) for k, v in ckpt.state_dict.items())
        assert ckpt.metadata["iterations"] == ITERATIONS and ckpt.metadata["training_processes"] == 2
        # and equal one process's within float rounding
        single = load_checkpoint(one[name].checkpoint).state_dict
        diff = _max_diff(ranks[0][name], single)
        assert diff < TOLERANCE, (name, diff)
        assert max(float(v.abs().max()) for v in single.values()) > 0.05  # the weights are not all tiny
        # losses, distillation errors, source weights, validation: the global ones on every rank
        assert histories[0][name] == histories[1][name]
        _close_histories(histories[0][name], [{k: v for k, v in h.items() if k != "seconds"} for h in one[name].history])
    assert ckpt.metadata["metrics"]["resumed"] is True
    assert len(one["tmu"].history) == ITERATIONS == len(histories[0]["tmu"])


@needs_gloo
def test_torchrun_cli_on_moving_mnist(tmp_path):
    """``torchrun ... -m nowcast train --config`` trains data-parallel; one result line; equals one process."""
    from nowcast.models.zoo import load_checkpoint
    from nowcast.training import train

    cfg = tiny_config(tmp_path / "ddp", "mm", architecture={"layers": 1}, data={"frame_size": 32},
                      training={"iterations": 3, "batch_size": 4, "val_every": 3, "checkpoint_every": 3,
                                "precision": "fp32"})  # as above: the data-parallel arithmetic, not bf16's
    path = tmp_path / "mm.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    proc = _torchrun(["-m", "nowcast", "train", "--config", str(path), "--no-progress", "--threads", "1"], tmp_path)
    assert proc.stdout.count("mm: 3 iterations") == 1, proc.stdout  # rank 0 reports
    ddp = load_checkpoint(cfg.checkpoint_path)
    assert ddp.metadata["training_processes"] == 2

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single_cfg = tiny_config(tmp_path / "one", "mm", architecture={"layers": 1}, data={"frame_size": 32},
                                 training={"iterations": 3, "batch_size": 4, "val_every": 3, "checkpoint_every": 3,
                                           "precision": "fp32"})
        single = train(single_cfg, progress=False)
    finally:
        torch.set_num_threads(before)
    one = load_checkpoint(single.checkpoint)
    assert _max_diff(ddp.state_dict, one.state_dict) < TOLERANCE
    assert ddp.metadata["metrics"]["val_mse"] == pytest.approx(one.metadata["metrics"]["val_mse"], rel=1e-4)


def _two_rank_shares(loss_of_share):
    """``loss_of_share(ctx, part)`` on ranks 0 and 1 of 2, in this process: the collectives sum both ranks' values."""
    from nowcast.distributed import Context

    calls: list[list[torch.Tensor]] = [[], []]
    totals: list[torch.Tensor] | None = None

    class Fake(Context):
        def all_sum(self, tensor):
            calls[self.rank].append(tensor.detach().clone())
            return tensor.detach().clone() if totals is None else totals[len(calls[self.rank]) - 1].clone()

    ranks = [Fake(rank=r, world=2, local_rank=r, backend="gloo", device=torch.device("cpu")) for r in (0, 1)]
    for _ in range(3):  # what each rank contributes (a contribution may depend on an earlier sum: repeat)
        for ctx in ranks:
            loss_of_share(ctx, ctx.part(GLOBAL_BATCH))
        totals = [a + b for a, b in zip(*calls)]
        calls[:] = [[], []]
    return [loss_of_share(ctx, ctx.part(GLOBAL_BATCH)) for ctx in ranks]


def test_shares_average_to_the_global_loss_and_gradient():
    """The ranks' losses average to the global-batch loss and their gradients (DDP averages them) to its gradient."""
    from nowcast.models.config import TMUConfig
    from nowcast.training import (
        _weighted_mean,
        distillation_errors,
        masked_mse,
        soft_csi_from_sums,
        soft_csi_loss,
        soft_csi_sums,
    )

    g = torch.Generator().manual_seed(0)
    pred = torch.rand(GLOBAL_BATCH, 5, 1, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    truth = torch.rand(GLOBAL_BATCH, 5, 1, 8, 8, generator=g, dtype=torch.float64)
    _, w = next(masked_batches(0))
    weight = w[:, :5, :, :8, :8].double()  # unequal weight sums per sample
    thresholds = [0.3, 0.7]

    def loss(p, t, wt):
        return masked_mse(p, t, wt) + 0.5 * soft_csi_loss(p, t, wt, thresholds)

    def share(ctx, part):
        p, t, wt = pred[part], truth[part], weight[part]
        mse = ctx.global_objective(_weighted_mean, torch.stack([((p - t) ** 2 * wt).sum(), wt.sum()]))
        return mse + 0.5 * ctx.global_objective(soft_csi_from_sums, soft_csi_sums(p, t, wt, thresholds))

    whole = loss(pred, truth, weight)
    (expected,) = torch.autograd.grad(whole, pred)
    shares = _two_rank_shares(share)
    mean = (shares[0] + shares[1]) / 2
    (got,) = torch.autograd.grad(mean, pred)
    torch.testing.assert_close(mean, whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-14)
    # a naive share (the rank's own weighted mean) would not do: the ranks' weight sums differ
    naive = (masked_mse(pred[:2], truth[:2], weight[:2]) + masked_mse(pred[2:], truth[2:], weight[2:])).detach() / 2
    assert abs(float(naive - masked_mse(pred, truth, weight).detach())) > 1e-3

    # distillation errors: variance (global) and balanced (times the global prediction loss)
    memories = [torch.randn(GLOBAL_BATCH, 5, 4, 2, 2, generator=g, dtype=torch.float64) * s for s in (3.0, 0.2)]
    distilled = [torch.zeros_like(m, requires_grad=True) for m in memories]
    pred_loss = masked_mse(pred, truth, weight).detach()
    for scale in ("plain", "variance", "balanced"):
        tmu = TMUConfig(sources=["a", "b"], distill_scale=scale)
        whole = distillation_errors(tmu, distilled, memories, pred_loss)
        grads = torch.autograd.grad(whole.sum(), distilled)

        def share(ctx, part, tmu=tmu):
            p_loss = ctx.global_objective(_weighted_mean, torch.stack(
                [((pred[part] - truth[part]) ** 2 * weight[part]).sum(), weight[part].sum()]))
            return distillation_errors(tmu, [d[part] for d in distilled], [m[part] for m in memories], p_loss, ctx)

        shares = _two_rank_shares(share)
        mean = (shares[0] + shares[1]) / 2
        torch.testing.assert_close(mean, whole, rtol=1e-10, atol=1e-12)
        for got, want in zip(torch.autograd.grad(mean.sum(), distilled), grads):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_a_process_makes_only_its_slice_of_every_batch(tmp_path):
    """``make_batches(part=...)`` equals the slice of the global batch: Moving-MNIST, Zarr, Lagrangian Zarr."""
    from nowcast.training import make_batches
    from tests.test_lagrangian import _moving_store, _train_config

    lagrangian = _train_config(tmp_path, _moving_store(tmp_path / "seq.zarr"), persistent_fraction=0.5)
    plain = model_config_from_dict({**lagrangian.model_dump(), "frame": "eulerian"})
    mnist = tiny_config(tmp_path, training={"batch_size": 4})
    for cfg in (mnist, plain, lagrangian):
        whole = list(make_batches(cfg, start=3, n_batches=2))
        for part in (slice(0, 2), slice(2, 4)):
            for full, mine in zip(whole, make_batches(cfg, start=3, n_batches=2, part=part)):
                if isinstance(full, tuple):
                    assert all(torch.equal(f[part], m) for f, m in zip(full, mine)), cfg.frame
                else:
                    assert torch.equal(full[part], mine), cfg.data.kind


def test_batch_not_divisible_by_processes_is_a_config_error():
    from nowcast.distributed import Context
    from nowcast.errors import ConfigError

    ctx = Context(rank=1, world=2, local_rank=1, backend="gloo", device=torch.device("cpu"))
    assert ctx.part(4) == slice(2, 4)
    x = torch.arange(4.0).view(4, 1)
    assert torch.equal(ctx.take(x), x[2:]) and torch.equal(ctx.take((x, x))[1], x[2:])
    with pytest.raises(ConfigError, match="batch_size 3 is not a multiple of the 2 training processes"):
        ctx.part(3)


def test_one_process_runs_without_a_process_group(monkeypatch):
    from nowcast import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup("cpu") is None


if __name__ == "__main__" and sys.argv[1:2] == ["--driver"]:
    _driver(Path(sys.argv[2]), json.loads(sys.argv[3]), Path(sys.argv[4]))
