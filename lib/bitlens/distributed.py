"""Data-parallel training under `torchrun`, shared by both trainers.

`setup()` reads torchrun's environment (LOCAL_RANK, RANK, WORLD_SIZE), joins the process group (NCCL on CUDA,
gloo on CPU) and returns the rank's device; `wrap()` puts the model in DistributedDataParallel so that every
forward goes through the wrapper and gradients are averaged over the ranks; `gather_cat()` concatenates a tensor
of every rank with gradients for the local part; `teardown()` waits for every rank and leaves the group.
Without torchrun the world is one process and every function is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    local_rank: int = 0
    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """The rank that writes files and logs."""
        return self.rank == 0


def world_from_env() -> World:
    """The world torchrun describes in the environment (one process without it)."""
    def read(key: str, default: int) -> int:
        raw = os.environ.get(key, str(default))
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"environment variable {key}={raw!r} is not an integer (set by torchrun)") from None

    w = World(read("LOCAL_RANK", 0), read("RANK", 0), read("WORLD_SIZE", 1))
    if w.size < 1 or not 0 <= w.rank < w.size:
        raise ValueError(f"RANK={w.rank} is outside WORLD_SIZE={w.size}")
    return w


def setup(device: str) -> tuple[World, str]:
    """Join the process group when launched by torchrun; returns (world, this rank's device)."""
    world = world_from_env()
    if not world.distributed:
        return world, device
    import torch.distributed as dist

    if device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return world, device


def wrap(model: torch.nn.Module, world: World, device: str) -> torch.nn.Module:
    """DistributedDataParallel around `model` on more than one rank, the model itself otherwise."""
    if not world.distributed:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[world.local_rank] if device.startswith("cuda") else None)


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's `t` concatenated along dim 0, in rank order; gradients flow back to the local part."""
    import torch.distributed.nn.functional as dnf

    # a copy: gloo reads a sliced view from the start of its storage, not from its offset
    return torch.cat(dnf.all_gather(t.clone()), 0)


def broadcast_object(obj, world: World):
    """Rank 0's `obj` on every rank."""
    if not world.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def teardown(world: World) -> None:
    """Wait for every rank, then leave the process group (no rank tears it down while another still uses it)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
