"""Data-parallel training across processes and machines with PyTorch's own machinery.

``nowcast train`` runs in one process as it always did. Started by
``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) with more than one process, it joins the
process group (``gloo`` on CPU, ``NCCL`` on CUDA) and trains one model with
:class:`torch.nn.parallel.DistributedDataParallel`:

* every process (*rank*) takes its own contiguous slice of each *global*
  batch (``training.batch_size`` samples; rank ``r`` of ``W`` gets samples
  ``[r B/W, (r+1) B/W)``), so the ranks see disjoint data and together the
  batch one process would have seen; the scheduled-sampling mask is drawn for
  the global batch and sliced the same way;
* the losses are formed so that DDP's *average* of the ranks' gradients is
  the gradient of the **global**-batch loss (:meth:`Context.global_objective`):
  the weighted MSE is normalised by the weight summed over all ranks (a
  Lagrangian batch weighs its pixels unequally, so per-rank means would not
  average to the global one), the soft CSI is a ratio of global sums, and the
  distillation scales (memory variance, prediction loss) are global values.
  Training on ``W`` processes therefore follows the one-process run with the
  same global batch up to float rounding (tested on 2 CPU processes);
* each rank runs the frozen sources of a TMU target (the memory bank) on its
  own slice; the adaptive source weights come from the distillation errors
  averaged over the ranks, so every rank holds the same weights;
* rank 0 alone writes the checkpoint and the resume state (the others wait at
  a barrier) and logs; on resume rank 0 reads the state and sends it to the
  others, so only its machine needs the checkpoint folder.

Validation splits the validation batches between the ranks and sums their
errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from nowcast.errors import ConfigError

log = logging.getLogger(__name__)

#: Environment variables torchrun sets for every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_world_size() -> int:
    """``WORLD_SIZE`` of a torchrun launch (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}: not an integer") from None


def launched_rank() -> int:
    """``RANK`` of this process in a torchrun launch (0 when not launched by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ConfigError(f"RANK={os.environ['RANK']!r}: not an integer") from None


@dataclass
class Context:
    """This process's place in a data-parallel run, and the collectives training needs.

    Every collective is called by all ranks in the same order (the training
    loop's code path does not depend on the rank except for writing files).
    """

    rank: int
    world: int
    local_rank: int
    backend: str
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------ data
    def part(self, global_size: int, what: str = "training.batch_size") -> slice:
        """This rank's samples ``[r n, (r+1) n)`` of a global batch of ``global_size``, ``n = global_size / W``."""
        if global_size % self.world:
            raise ConfigError(
                f"{what} {global_size} is not a multiple of the {self.world} training processes: "
                f"each process takes an equal share of every batch (choose a batch size divisible by {self.world})"
            )
        n = global_size // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def take(self, item: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """This rank's slice of a global batch (a tensor or a ``(frames, weight)`` pair)."""
        if isinstance(item, (tuple, list)):
            part = self.part(item[0].shape[0])
            return tuple(t[part] for t in item)
        return item[self.part(item.shape[0])]

    # ------------------------------------------------------------ collectives
    def _comm(self, tensor: torch.Tensor) -> torch.Tensor:
        # NCCL reduces CUDA tensors only; gloo CPU ones.
        return tensor.to(self.device if self.backend == "nccl" else "cpu")

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a (detached) tensor, on the tensor's device."""
        buf = self._comm(tensor.detach()).clone()
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.to(tensor.device)

    def all_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a (detached) tensor."""
        return self.all_sum(tensor) / self.world

    def global_objective(self, fn: Callable[[torch.Tensor], torch.Tensor], local: torch.Tensor) -> torch.Tensor:
        """This rank's share of ``fn(sum over ranks of local)``, for DDP's gradient average.

        ``local`` is a 1-D tensor of sums over this rank's samples (attached to
        the graph); ``fn`` maps the global sums to a scalar loss. Returned:
        ``W * g . local + (fn(S) - g . S)`` with ``S`` the global sums and
        ``g = dfn/dS`` at ``S``. Its mean over ranks is ``fn(S)`` and the mean of
        its gradients is ``g . sum_r d local_r`` = the gradient of ``fn(S)``: so
        DDP, which averages gradients, trains on the global-batch loss exactly,
        whatever ``fn`` is (a ratio of sums, such as a weighted mean or a CSI).
        """
        total = self.all_sum(local)
        leaf = total.clone().requires_grad_(True)
        with torch.enable_grad():
            value = fn(leaf)
        (grad,) = torch.autograd.grad(value, leaf)
        return self.world * (grad * local).sum() + (value.detach() - (grad * total).sum())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; CPU tensors inside are fine)."""
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def barrier(self) -> None:
        if self.backend == "nccl" and self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (weights broadcast from rank 0)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)

    def close(self) -> None:
        """Leave the process group if :func:`setup` joined it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str | torch.device = "cpu") -> Context | None:
    """The data-parallel context of this process, or ``None`` for a one-process run.

    Uses the default process group when the caller initialised one;
    otherwise joins one when torchrun started this process with
    ``WORLD_SIZE > 1`` (backend ``nccl`` for a CUDA device, ``gloo`` for the
    CPU). A CUDA device without an index becomes ``cuda:LOCAL_RANK``, one GPU
    per process. A world of one process is the plain one-process run.
    """
    device = torch.device(device)
    owns = False
    if not dist.is_available():
        if launched_world_size() > 1:
            raise ConfigError("launched for several processes (WORLD_SIZE > 1), but this torch has no torch.distributed")
        return None
    if not dist.is_initialized():
        if launched_world_size() <= 1:
            return None
        missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
        if missing:
            raise ConfigError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set: start several processes with torchrun (docs/guide/cluster.md)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    world = dist.get_world_size()
    if world <= 1:
        if owns:
            dist.destroy_process_group()
        return None
    backend = str(dist.get_backend()).lower()
    ctx = Context(rank=dist.get_rank(), world=world, local_rank=local_rank, backend=backend, device=device, owns_group=owns)
    if device.type == "cpu" and "gloo" not in backend:
        raise ConfigError(f"training on the CPU needs the gloo backend, the process group uses {backend!r}")
    return ctx


__all__ = ["TORCHRUN_VARIABLES", "Context", "launched_rank", "launched_world_size", "setup"]
