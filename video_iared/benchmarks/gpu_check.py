"""``tools/benchmark.py --gpu-check``: what the pruned forward does on a GPU, in one command.

Every check builds the config's models with random weights (no checkpoint needed) and prints what it measured:

1. host reads and attention calls per eval forward (:mod:`profiling.dispatch_count`), dense and IA-RED² in
   keep_ratio and threshold mode for both attention backends, on the config's device (the CPU proves the
   logic: the varlen backend's layout is the same code on every device);
2. CUDA only: packed (varlen and bucketed) vs masked logits for the same decisions, fp32 and bf16 autocast;
3. CUDA only: synchronisations per forward (``torch.cuda.set_sync_debug_mode("warn")``: every sync warns)
   and attention kernels per forward (``torch.profiler``: CUDA kernels named flash / fmha / attention);
4. CUDA only: the keep-ratio speed table at batch 1 / 8 / 32 in fp32 and bf16
   (``benchmarks.speed.precision_speed_from_cfg``);
5. CUDA only: one mixed-precision training step of IA-RED² (sample policy) in bf16 and in fp16 + GradScaler;
6. CUDA with two GPUs or more: a 2-process nccl run (all-reduce, one DDP step, replicas compared).

Without CUDA the CUDA checks are not run, and the output says so plainly. The last line is machine readable:
``gpu_check cuda=<0|1> varlen_keep_ratio_host_reads=<int> varlen_threshold_host_reads=<int>
varlen_attention_calls=<int> dense_attention_calls=<int>``.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from video_iared.benchmarks.speed import precision_speed_from_cfg
from video_iared.build import build_keep_ratio_models
from video_iared.engine.amp import autocast, make_scaler
from video_iared.engine.device import device_from_cfg
from video_iared.profiling.dispatch_count import count_forward

KERNEL_HINTS = ("flash", "fmha", "attention", "varlen")


def _models(cfg, backend: str, device: torch.device):
    """(dense, IA-RED² with ``backend``) from the config, random weights shared, interpreters spread so that a
    threshold keeps part of the tokens, in eval mode on ``device``."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.IARED.ATTENTION_BACKEND = backend
    dense, (iared,) = build_keep_ratio_models(cfg, [float(cfg.IARED.KEEP_RATIO[0])])
    iared.set_operating_point(keep_ratio=[float(r) for r in cfg.IARED.KEEP_RATIO])
    gen = torch.Generator().manual_seed(cfg.RNG_SEED)
    with torch.no_grad():
        for it in iared.interpreters:
            it.qk.weight.copy_(torch.randn(it.qk.weight.shape, generator=gen) * it.qk.weight.shape[1] ** -0.5 * 4)
    return dense.to(device).eval(), iared.to(device).eval()


def _clips(cfg, batch: int, device: torch.device) -> torch.Tensor:
    T, S, C = cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0]
    return torch.randn(batch, C, T, S, S, generator=torch.Generator().manual_seed(cfg.RNG_SEED)).to(device)


def dispatch_rows(cfg, batch: int, device: torch.device) -> List[Dict[str, object]]:
    """Host reads and attention calls of one eval forward of ``batch`` random clips: dense, then IA-RED² per
    backend (varlen, bucketed) and mode (keep_ratio, threshold)."""
    x = _clips(cfg, batch, device)
    rows = []
    for backend in ("varlen", "bucketed"):
        dense, iared = _models(cfg, backend, device)
        if backend == "varlen":
            rows.append({"model": "dense", "backend": "-", "mode": "-", **count_forward(lambda: dense(x))})
        for mode in ("keep_ratio", "threshold"):
            iared.set_operating_point(mode=mode)
            out = []  # the forward's (logits, decisions), counted with the stack of its decisions
            counts = count_forward(lambda: out.append(iared(x, return_decisions=True)))
            kept = [round(float(r), 3) for r in out[0][1].keep_rates.mean(0)]
            rows.append({"model": "iared", "backend": backend, "mode": mode, "kept": kept, **counts})
    return rows


def print_dispatch_rows(rows: Sequence[Dict[str, object]], batch: int, device: torch.device) -> None:
    print(f"host reads and attention calls per eval forward (batch {batch}, {device.type}; counted at the "
          f"dispatcher, profiling.dispatch_count)", flush=True)
    print(f"{'model':>6} {'backend':>9} {'mode':>10} {'host reads':>10} {'attention calls':>15}  kept per group / "
          f"host-read ops", flush=True)
    for r in rows:
        print(f"{r['model']:>6} {r['backend']:>9} {r['mode']:>10} {r['host_reads']:>10} {r['attention_calls']:>15}  "
              f"{r.get('kept', '')} {r['host_read_ops'] or ''}", flush=True)


def logits_check(cfg, batch: int, device: torch.device) -> None:
    """Packed (varlen, bucketed) vs masked logits for the same keep decisions, in fp32 and bf16 autocast."""
    x = _clips(cfg, batch, device)
    for dtype in (None, torch.bfloat16):
        _, ref_model = _models(cfg, "bucketed", device)
        threshold = ref_model.policy_for(["threshold"] * ref_model.num_groups)
        with torch.no_grad(), autocast(device, dtype):
            _, decisions = ref_model(x, policy=threshold, return_decisions=True)
            masks = list(decisions.keep_masks.unbind(1))
            ref = ref_model(x, policy=threshold.replace(execution="masked"), keep_masks=masks).float()
            for backend in ("varlen", "bucketed"):
                _, m = _models(cfg, backend, device)
                out = m(x, keep_masks=masks).float()
                print(f"logits packed {backend} vs masked, {'bf16' if dtype else 'fp32'}: max |diff| "
                      f"{(out - ref).abs().max().item():.3e} (logit scale {ref.abs().max().item():.3f})", flush=True)


def syncs_and_kernels(model: nn.Module, x: torch.Tensor) -> Dict[str, int]:
    """CUDA: synchronisations of one eval forward (sync debug mode "warn") and its attention kernels (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        model(x)  # warm-up: lazy initialisation syncs once
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                model(x)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(x)
            torch.cuda.synchronize()
    kernels = sum(e.count for e in prof.key_averages()
                  if e.device_type.name == "CUDA" and any(h in e.key.lower() for h in KERNEL_HINTS))
    syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    return {"syncs": syncs, "attention_kernels": kernels}


def training_step_check(cfg, device: torch.device) -> None:
    """One IA-RED² training step (sample policy, REINFORCE-free CE on the logits) in bf16 and fp16 + GradScaler."""
    x = _clips(cfg, 2, device)
    y = torch.zeros(2, dtype=torch.long, device=device)
    for dtype in (torch.bfloat16, torch.float16):
        _, model = _models(cfg, "auto", device)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        scaler = make_scaler(device, dtype)
        with autocast(device, dtype):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        finite = all(torch.isfinite(p).all() for p in model.parameters())
        print(f"training step {dtype}: loss {loss.item():.4f}, parameters finite {bool(finite)}, GradScaler "
              f"{'on' if scaler.is_enabled() else 'off'}", flush=True)


def _nccl_worker(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    t = torch.full((4,), float(rank + 1), device="cuda")
    dist.all_reduce(t)
    model = nn.parallel.DistributedDataParallel(nn.Linear(8, 2).cuda(), device_ids=[rank])
    model(torch.randn(4, 8, device="cuda")).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    gathered = [[torch.empty_like(g) for _ in range(world)] for g in grads]
    for g, out in zip(grads, gathered):
        dist.all_gather(out, g)
    same = all(torch.equal(o[0], o[1]) for o in gathered)
    if rank == 0:
        print(f"nccl 2 processes: all_reduce {t[0].item():g} (expected {world * (world + 1) / 2:g}), DDP gradients "
              f"equal on both ranks: {same}", flush=True)
    dist.destroy_process_group()


def nccl_check() -> None:
    import torch.multiprocessing as mp

    mp.spawn(_nccl_worker, args=(2, 29531), nprocs=2, join=True)


def run_gpu_check(cfg, batch: int = 8, speed_batches: Sequence[int] = (1, 8, 32), warmup: int = 2,
                  reps: int = 5) -> Dict[str, Optional[int]]:
    """All the checks above on the config's device (``engine.device.device_from_cfg``); returns the figures of
    the last line."""
    device = device_from_cfg(cfg)
    cuda = device.type == "cuda"
    rows = dispatch_rows(cfg, batch, device)
    print_dispatch_rows(rows, batch, device)
    pick = {(r["backend"], r["mode"]): r for r in rows}
    figures = {"cuda": int(cuda),
               "varlen_keep_ratio_host_reads": pick[("varlen", "keep_ratio")]["host_reads"],
               "varlen_threshold_host_reads": pick[("varlen", "threshold")]["host_reads"],
               "varlen_attention_calls": pick[("varlen", "keep_ratio")]["attention_calls"],
               "dense_attention_calls": pick[("-", "-")]["attention_calls"]}
    if not cuda:
        print("CUDA is not available here: the CUDA checks (packed vs masked logits on CUDA in fp32 / bf16, "
              "synchronisations and attention kernels per forward, the bf16 / fp32 speed table at batch "
              f"{'/'.join(map(str, speed_batches))}, the mixed-precision training step, the nccl run) have NOT run",
              flush=True)
    else:
        logits_check(cfg, min(batch, 4), device)
        x = _clips(cfg, batch, device)
        for backend in ("varlen", "bucketed"):
            dense, iared = _models(cfg, backend, device)
            for mode in ("keep_ratio", "threshold"):
                iared.set_operating_point(mode=mode)
                print(f"cuda {backend} {mode}: {syncs_and_kernels(iared, x)}", flush=True)
        print(f"cuda dense: {syncs_and_kernels(dense, x)}", flush=True)

        precision_speed_from_cfg(cfg, ("fp32", "bf16"), speed_batches, (0.7, 0.5, 0.3), warmup, reps)
        training_step_check(cfg, device)
        if torch.cuda.device_count() >= 2:
            nccl_check()
        else:
            print(f"nccl: {torch.cuda.device_count()} GPU here, the 2-process run needs two: NOT run", flush=True)
    print("gpu_check " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    return figures
