"""One entry point for one CPU, one GPU or `torchrun --nproc_per_node N` (gloo on CPU, nccl on GPU).

Features are all-gathered *with* gradient, so every rank computes the loss on the global batch and,
after DDP averages gradients, the update equals one process on the whole batch (the paper's 8 x 32).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistInfo:
    """Read the world from torchrun's (or SLURM's) environment and join it; a no-op when alone."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", 1)))
    if world <= 1:
        return DistInfo()
    rank = int(env.get("RANK", env.get("SLURM_PROCID", 0)))
    local = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", 0)))
    if not dist.is_initialized():
        # the main rank alone checks every image of a dataset it meets for the first time (SF-IAL-Large: millions)
        # and validates each epoch while the others wait in a collective: NCCL's default 10 minutes is too short
        dist.init_process_group(backend="nccl" if str(device).startswith("cuda") else "gloo", rank=rank,
                                world_size=world, timeout=COLLECTIVE_TIMEOUT)
    if str(device).startswith("cuda"):
        torch.cuda.set_device(local)
    return DistInfo(rank, world, local)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the summed gradient of its own slice
    (all_reduce + slice: gloo has no reduce_scatter)."""

    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather(tensor: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate `tensor` from every rank in rank order (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if with_grad and tensor.requires_grad:
        return _GatherWithGrad.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean(value: float) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t.item() / dist.get_world_size())
