"""Process-group set-up under ``torchrun`` and the few collectives the engine needs.

A single-process run (no ``WORLD_SIZE`` > 1 in the environment) initialises nothing: every helper then works
on the one process, so the engine code is the same with and without torchrun.
"""
from __future__ import annotations

import datetime
import gc
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, List, Sequence

import torch
import torch.distributed as dist

from video_iared.utils.device import resolve_device  # noqa: F401  (re-exported: du.resolve_device)

logger = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """Where this process sits: its rank, the world size, its local rank and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matmuls and cuDNN convolutions on cuda (Ampere and later: ~8x the float32 matmul rate at
    a 10-bit mantissa); no effect on the cpu."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def init_distributed(device: str = "auto", num_gpus: int = 1, backend: str = "auto", tf32: bool = True) -> DistInfo:
    """Initialise ``torch.distributed`` from torchrun's env:// variables when WORLD_SIZE > 1.

    ``backend`` "auto" picks nccl on cuda and gloo on cpu (DIST_BACKEND). On cuda, ``tf32`` (CUDA_TF32) sets
    the TF32 matmul / convolution flags.
    """
    world = env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, num_gpus, local_rank)
    if dev.type == "cuda":
        set_tf32(tf32)
    if world <= 1:
        return DistInfo(0, 1, 0, dev)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise RuntimeError("DIST_BACKEND nccl needs cuda; use gloo (or auto) on the cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", timeout=datetime.timedelta(minutes=30))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every process's ``obj`` in rank order (a one-element list without a process group)."""
    if not is_initialized():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: List[float], device: torch.device = torch.device("cpu")) -> List[float]:
    """Element-wise sum of a list of numbers over all processes."""
    if not is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every process."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def fingerprint(tensors: Sequence[torch.Tensor]) -> str:
    """A digest of the exact bytes (and shapes, dtypes) of ``tensors``: equal iff they are bit-identical."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{tuple(t.shape)}{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_replicas_equal(tensors: Sequence[torch.Tensor], what: str) -> None:
    """Raise RuntimeError on every process when ``tensors`` are not bit-identical on all processes.

    For state that data-parallel training must keep in step by construction (the curriculum averages the
    interpreters' gradients itself, outside DDP): a silent divergence would make rank 0's checkpoint one
    replica among several. No-op without a process group.
    """
    if not is_initialized():
        return
    digests = all_gather_objects(fingerprint(tensors))
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise RuntimeError(f"{what}: the copies on rank(s) {differ} differ from rank 0's "
                           f"({len(digests)} processes); data-parallel replicas diverged")
    logger.info("%s: identical on all %d processes", what, len(digests))


def cleanup(synchronize: bool = True) -> None:
    """Leave the process group: with ``synchronize`` (a run that finished on every rank) a barrier first, so no
    rank tears the group down while another still talks to it, then the objects that may hold the group (a DDP
    reducer in a reference cycle) are collected before it is destroyed. After an error, ``synchronize=False``: the
    other ranks may never reach a barrier. (Seen once, in a fresh-clone CI run and not in 16 runs since: rank 0
    aborting at exit with "terminate called without an active exception" after its run had finished.)"""
    if is_initialized():
        if synchronize:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
