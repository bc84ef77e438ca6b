"""Data-parallel training with ``torch.distributed``, started by ``torchrun``.

``torchrun --nproc-per-node N -m worldmodels.cli train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; with ``WORLD_SIZE > 1``, ``init`` joins the process group: gloo when training
runs on the CPU (GPUs visible or not, they are left alone), gloo for CPU tensors and nccl for
CUDA ones when it runs on CUDA, each rank on GPU ``LOCAL_RANK``. Every rank builds the same
global batches (same seeds) and trains on its slice of each; DDP averages the gradients, so N
ranks take the steps one process takes on the whole batch. Rank 0 alone writes files; the
others wait for it at barriers. In a single process every function here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from worldmodels.core.errors import UserError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """True on the rank that writes checkpoints, TensorBoard and summaries (and in one process)."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(device: torch.device | str = "cpu") -> None:
    """Join the process group (once; the rendezvous comes from torchrun's environment).

    Training on a CUDA ``device`` puts this rank on GPU ``LOCAL_RANK`` first (``"cuda"`` then
    means that GPU); on any other device CUDA is not touched, so CPU ranks run on a GPU machine.
    """
    if not is_distributed() or dist.is_initialized():
        return
    if torch.device(device).type != "cuda":
        dist.init_process_group("gloo")
        return
    if local_rank() >= torch.cuda.device_count():
        raise UserError(f"rank {rank()} needs GPU {local_rank()} but {torch.cuda.device_count()} are visible: "
                        "start at most one process per GPU, or train with --device cpu")
    torch.cuda.set_device(local_rank())
    dist.init_process_group("cpu:gloo,cuda:nccl")


def barrier() -> None:
    if is_distributed():
        init()
        dist.barrier()


def on_main(fn: Callable, *args, **kwargs) -> None:
    """``fn(*args, **kwargs)`` on rank 0 only; every rank returns once it is done."""
    if is_main():
        fn(*args, **kwargs)
    barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank, so that all ranks take the same decisions."""
    if not is_distributed():
        return obj
    init()
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(batch: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """This rank's slice of a global batch; None when it has fewer items than there are ranks.

    With the batch size divisible by N the ranks' slices are equal, and DDP's mean of their
    gradients is the gradient on the whole batch.
    """
    n = world_size()
    if n == 1:
        return batch
    if len(next(iter(batch.values()))) < n:
        return None
    return {k: torch.tensor_split(v, n)[rank()] for k, v in batch.items()}


class _Loss(torch.nn.Module):
    """``model.loss`` as a ``forward``, the call DDP hooks to average gradients."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **batch: Tensor) -> dict[str, Tensor]:
        return self.model.loss(**batch)


def wrap(model: torch.nn.Module, device: torch.device) -> Callable[..., dict[str, Tensor]]:
    """``model.loss``, or with several ranks a DDP module computing it.

    DDP starts every rank from rank 0's weights; each rank's torch RNG is then reseeded with
    its rank, so noise drawn inside the loss (the VAE's ``z``) differs between the slices.
    """
    if not is_distributed():
        return model.loss
    init(device)
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    ddp = DistributedDataParallel(_Loss(model), device_ids=device_ids)
    torch.manual_seed(torch.initial_seed() + rank())
    return ddp
