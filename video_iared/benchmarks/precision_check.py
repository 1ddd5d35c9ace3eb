"""Does bf16 inference change what the model decides? Kept token sets and video predictions, fp32 vs bf16.

Two checks, both on the same inputs run twice (float32, then under autocast):

- ``kept_set_agreement(model, clips)``: the IA-RED² keep decision of every patch token at every group,
  float32 vs low precision; the fraction of (clip, group, token) decisions that agree, and how far from
  the threshold the flipped ones were in float32 (a flip of a token whose float32 probability lies
  within bfloat16's rounding step of the threshold is a tie, not an error).
  ``fp32_interpreter=True`` runs the interpreters in float32 inside the bf16 forward (what
  ``utils.precision.float32_forward`` on ``Interpreter.forward*`` does) to measure how much that helps.
  ``fp32_islands=True`` of the prediction check also keeps the classifier head in float32.
- ``video_prediction_agreement(model, batches)``: multi-view evaluation (``run_multiview``, the test
  stage's own loop) at both precisions on the SAME decoded views: the fraction of videos whose ensembled
  top-1 class is the same, and both top-1 accuracies.

``python -m video_iared.benchmarks.precision_check --cfg FILE [KEY VALUE ...]`` runs both on TEST.SPLIT with
the weights ``build_test_model`` picks and prints ``precision_check ...`` lines.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from video_iared.config import load_config_for_cli
from video_iared.data import build_multiview_loader, build_normalizer
from video_iared.engine.device import device_from_cfg
from video_iared.engine.multiview_test import build_test_model, dense_forward, run_multiview
from video_iared.utils.precision import float32_islands, forward_precision
from video_iared.utils.precision import precision_dtype

logger = logging.getLogger(__name__)

# bfloat16 keeps 8 significant bits: a value near 0.5 is rounded to a multiple of 2^-9 (round to nearest
# of a 2^-8 grid), and the interpreter's mean over heads of sigmoids adds a few such roundings.
BF16_TIE_BAND = 2.0 ** -7


def interpreters_in_float32(model: nn.Module):
    """``float32_islands`` restricted to the interpreters (the keep decision only)."""
    return float32_islands(model, interpreters=True, head=False)


@torch.no_grad()
def _decisions(model: nn.Module, clips: torch.Tensor, precision: str, fp32_interpreter: bool):
    """(float32 logits, per group the kept set (B, N) bool after its decision, per group the float32 keep
    probabilities or None, the policy) of one forward of ``model`` at ``precision``."""
    ctx = interpreters_in_float32(model) if fp32_interpreter else contextlib.nullcontext()
    with ctx, forward_precision(precision, clips.device):
        logits, decisions = model(clips, return_decisions=True)
    probs = [None if p is None else p.float() for p in decisions.probs]
    return logits.float(), list(decisions.keep_masks.unbind(1)), probs, decisions.policy


def kept_set_agreement(model: nn.Module, clips: torch.Tensor, precision: str = "bf16",
                       fp32_interpreter: bool = False, tie_band: float = BF16_TIE_BAND) -> Dict:
    """Keep decisions of ``model`` (IA-RED², eval mode) on ``clips`` (B, C, T, H, W), float32 vs ``precision``.

    Returns ``agreement`` (fraction of the B x G x N token decisions that agree), ``per_group`` (G,),
    ``flips`` (number that differ), ``flips_decided`` (those where the token was alive in both runs before
    the group: flips made by this group's decision, not inherited from an earlier one),
    ``flips_near_threshold`` (decided flips whose float32 probability was within ``tie_band`` of the
    threshold; keep_ratio mode: of the float32 k-th probability of the clip), ``max_flip_margin`` (the
    largest such distance among the decided flips), ``kept_fp32`` / ``kept_low`` (mean
    kept fraction after the last group) and ``logit_rel_err`` (max |logits diff| / max |fp32 logits|).
    """
    model.eval()
    lg32, keep32, p32, policy = _decisions(model, clips, "fp32", False)
    lgl, keepl, _, _ = _decisions(model, clips, precision, fp32_interpreter)
    per_group, flips, decided, near, margins = [], 0, 0, 0, []
    alive, alive_low = torch.ones_like(keep32[0]), torch.ones_like(keep32[0])
    for g, (a, b) in enumerate(zip(keep32, keepl)):
        diff = a != b
        per_group.append(1.0 - diff.float().mean().item())
        flips += int(diff.sum())
        # a token dropped earlier in one run only differs here by inheritance, not by this group's decision
        own = diff & alive & alive_low
        decided += int(own.sum())
        if p32[g] is not None and own.any():
            if policy.groups[g] == "keep_ratio":
                # distance from the clip's cut: the k-th largest float32 probability among its alive tokens
                k = a.sum(1).clamp(min=1)
                cut = p32[g].masked_fill(~alive, -1.0).sort(1, descending=True).values.gather(1, (k - 1).unsqueeze(1))
            else:
                cut = torch.full_like(p32[g][:, :1], policy.threshold_at(g))
            m = (p32[g] - cut).abs()[own]
            margins.extend(m.tolist())
            near += int((m <= tie_band).sum())
        alive, alive_low = a, b
    total = sum(k.numel() for k in keep32)
    return {
        "precision": precision,
        "fp32_interpreter": fp32_interpreter,
        "agreement": 1.0 - flips / total,
        "per_group": per_group,
        "tokens": total,
        "flips": flips,
        "flips_decided": decided,
        "flips_near_threshold": near,
        "max_flip_margin": max(margins) if margins else 0.0,
        "kept_fp32": keep32[-1].float().mean().item(),
        "kept_low": keepl[-1].float().mean().item(),
        "logit_rel_err": ((lgl - lg32).abs().max() / lg32.abs().max().clamp(min=1e-12)).item(),
    }


def video_prediction_agreement(model: nn.Module, batches: Sequence[List[Dict]], device: torch.device,
                               precision: str = "bf16", views_per_chunk: int = 16,
                               ensemble_method: str = "mean_softmax", fp32_islands: bool = False,
                               normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Dict:
    """Multi-view evaluation of the same decoded ``batches`` (lists of multi-view items, the loader's
    contract) in float32 and at ``precision``; the ensembles are float32 in both runs. ``fp32_islands``
    keeps the interpreters and the classifier head in float32 in the low-precision run (``float32_islands``);
    ``normalizer``: the views' on the device (``run_multiview``: uint8 views under DATA.NORMALIZE_ON_DEVICE).

    Returns ``videos``, ``same_prediction`` (fraction of videos with the same top-1 class), ``top1_fp32``,
    ``top1_low`` (percent), ``top1_diff`` (points, low - fp32), ``max_prob_diff`` (largest change of any
    ensembled class probability).
    """
    fwd = dense_forward(None)  # logits only: the cost is not what is compared here
    runs = {}
    for p in ("fp32", precision):
        ctx = float32_islands(model) if fp32_islands and p != "fp32" else contextlib.nullcontext()
        with ctx:
            recs = run_multiview(model, batches, device, views_per_chunk, ensemble_method,
                                 precision_dtype(p, device), fwd, show_progress=False, normalizer=normalizer)
        runs[p] = {r["index"]: r for r in recs if r["probs"] is not None}
    common = sorted(set(runs["fp32"]) & set(runs[precision]))
    if not common:
        raise ValueError("no video was evaluated at both precisions")
    a = torch.stack([runs["fp32"][i]["probs"] for i in common])
    b = torch.stack([runs[precision][i]["probs"] for i in common])
    labels = torch.tensor([runs["fp32"][i]["label"] for i in common])
    t32 = 100.0 * (a.argmax(1) == labels).float().mean().item()
    tlo = 100.0 * (b.argmax(1) == labels).float().mean().item()
    return {
        "precision": precision,
        "videos": len(common),
        "same_prediction": (a.argmax(1) == b.argmax(1)).float().mean().item(),
        "top1_fp32": t32,
        "top1_low": tlo,
        "top1_diff": tlo - t32,
        "max_prob_diff": (a - b).abs().max().item(),
    }


def check_from_cfg(cfg, precision: str = "bf16", max_videos: int = 0) -> Dict:
    """Both checks on cfg's TEST.SPLIT with the weights ``build_test_model`` picks; prints result lines."""
    device = device_from_cfg(cfg)
    normalize = build_normalizer(cfg)
    model = build_test_model(cfg, device)
    batches, n = [], 0
    for batch in build_multiview_loader(cfg, cfg.TEST.SPLIT):  # decode once, run twice
        batches.append(batch)
        n += len(batch)
        if max_videos and n >= max_videos:
            break
    out = {}
    for islands in (False, True):
        pred = video_prediction_agreement(model, batches, device, precision, cfg.TEST.VIEWS_PER_CHUNK,
                                          cfg.TEST.ENSEMBLE_METHOD, fp32_islands=islands, normalizer=normalize)
        out["predictions_fp32_islands" if islands else "predictions"] = pred
        print("precision_check predictions fp32_islands={i} videos={videos} same_prediction={same_prediction:.4f} "
              "top1_fp32={top1_fp32:.2f} top1_{p}={top1_low:.2f} top1_diff={top1_diff:+.2f} "
              "max_prob_diff={max_prob_diff:.4g}".format(i=int(islands), p=precision, **pred), flush=True)
    if cfg.IARED.ENABLE:
        views = torch.cat([it["views"] for b in batches for it in b if it.get("views") is not None])
        views = normalize(views.to(device, non_blocking=True))
        for fp32_interp in (False, True):
            rows = [kept_set_agreement(model, chunk, precision, fp32_interp) for chunk in views.split(cfg.TEST.VIEWS_PER_CHUNK)]
            total = sum(r["tokens"] for r in rows)
            flips = sum(r["flips"] for r in rows)
            agg = {"agreement": 1.0 - flips / total, "tokens": total, "flips": flips,
                   "flips_decided": sum(r["flips_decided"] for r in rows),
                   "flips_near_threshold": sum(r["flips_near_threshold"] for r in rows),
                   "max_flip_margin": max(r["max_flip_margin"] for r in rows),
                   "kept_fp32": sum(r["kept_fp32"] for r in rows) / len(rows),
                   "kept_low": sum(r["kept_low"] for r in rows) / len(rows)}
            out["kept_fp32_interpreter" if fp32_interp else "kept"] = agg
            print("precision_check kept_sets interpreter={i} views={v} agreement={agreement:.5f} tokens={tokens} "
                  "flips={flips} flips_decided={flips_decided} flips_near_threshold={flips_near_threshold} max_flip_margin={max_flip_margin:.4g} "
                  "kept_fp32={kept_fp32:.4f} kept_{p}={kept_low:.4f}".format(
                      i="fp32" if fp32_interp else precision, v=views.shape[0], p=precision, **agg), flush=True)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", nargs="+", required=True, metavar=("FILE", "KEY VALUE"))
    p.add_argument("--precision", choices=["bf16", "fp16"], default="bf16")
    p.add_argument("--max-videos", type=int, default=0, help="0 = the whole split")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                   help="KEY VALUE config overrides, after every option (also accepted right after the config file)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    cfg = load_config_for_cli(args.cfg[0], args.cfg[1:] + args.opts)
    if cfg is None:
        return 2
    if cfg.NUM_THREADS > 0:
        torch.set_num_threads(cfg.NUM_THREADS)
    res = check_from_cfg(cfg, args.precision, args.max_videos)
    return 0 if not math.isnan(res["predictions"]["same_prediction"]) else 1


if __name__ == "__main__":
    sys.exit(main())
