"""The config boundary of the interpretability tools: which weights, which views, then the evaluation with its
reports (``evaluate_from_cfg``, tools/eval_interpretability.py) or the pictures (``visualize_from_cfg``,
tools/visualize.py)."""
from __future__ import annotations

import logging
import os
from typing import Iterator, List, Optional, Sequence

import torch
from torch import nn

from video_iared.build import build_model
from video_iared.checkpoint import load_checkpoint
from video_iared.checkpoint.io import weights_to_evaluate
from video_iared.data.build import build_sampler, load_records
from video_iared.data.device_normalize import build_normalizer
from video_iared.engine.train_iared import apply_calibration
from video_iared.interpret.evaluation import InterpResult, evaluate_interpretability
from video_iared.interpret.explain import INTERPRETER_METHODS, explain
from video_iared.interpret.reports import write_reports
from video_iared.interpret.views import View, iter_views, patch_foreground
from video_iared.interpret.visualize import save_explanation_grid, save_kept_animation

logger = logging.getLogger("video_iared.interpret.interpretability")  # the evaluation's one logger name (views.py)


def resolve_checkpoint(cfg, checkpoint: str = "") -> str:
    """The weights to explain (``checkpoint.io.weights_to_evaluate``): ``checkpoint`` (--checkpoint), else
    TEST.CHECKPOINT_FILE_PATH, else the trained IA-RED² model of OUTPUT_DIR (checkpoints/checkpoint_iared.pyth),
    else its latest checkpoint."""
    path = weights_to_evaluate(cfg.OUTPUT_DIR, cfg.IARED.ENABLE, cfg.TEST.CHECKPOINT_FILE_PATH, explicit=checkpoint)
    if not path:
        raise FileNotFoundError(f"no weights to explain: pass --checkpoint, set TEST.CHECKPOINT_FILE_PATH, or "
                                f"train into {cfg.OUTPUT_DIR} first")
    return path


def build_explained_model(cfg, checkpoint: str = "") -> nn.Module:
    """``build_model(cfg)`` with the weights of ``resolve_checkpoint`` loaded strictly (and, with
    IARED.TARGET_COST, the checkpoint's calibrated threshold), in eval mode."""
    path = resolve_checkpoint(cfg, checkpoint)
    model = build_model(cfg)
    load_checkpoint(path, model, for_evaluation=True)
    apply_calibration(cfg, model, path)  # IARED.TARGET_COST: explain the operating point that was tested
    logger.info("explaining the weights of %s", path)
    return model.eval()


def views_from_cfg(cfg, max_videos: int = 0, failures: Optional[List[str]] = None,
                   pick: Optional[Sequence[int]] = None) -> Iterator[View]:
    """The test views of TEST.SPLIT as in the multi-view test (TEST.NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS); their
    clips uint8 under DATA.NORMALIZE_ON_DEVICE (``build_normalizer(cfg)`` makes them the model's input)."""
    records, _, adapter = load_records(cfg, cfg.TEST.SPLIT)
    if pick is not None:
        records = [records[i] for i in pick]
    elif max_videos > 0:
        records = records[:max_videos]
    d, t = cfg.DATA, cfg.TEST
    return iter_views(records, d.PATH_TO_DATA_DIR, d.DECODING_BACKEND, build_sampler(cfg, adapter), d.TEST_CROP_SIZE,
                      t.NUM_SPATIAL_CROPS, t.NUM_ENSEMBLE_VIEWS, d.MEAN, d.STD, d.DECODE_TIMEOUT, failures,
                      normalize=not d.NORMALIZE_ON_DEVICE)


def evaluate_from_cfg(cfg, checkpoint: str = "", out_dir: str = "") -> InterpResult:
    """The quantitative evaluation of ``tools/eval_interpretability.py``; reports into ``out_dir``
    (default OUTPUT_DIR/interpretability)."""
    it = cfg.INTERP
    torch.manual_seed(cfg.RNG_SEED)
    model = build_explained_model(cfg, checkpoint)
    failures: List[str] = []
    views = views_from_cfg(cfg, it.MAX_VIDEOS, failures)
    methods, steps = list(it.METHODS), it.CURVE_STEPS
    if not hasattr(model, "interpreters"):
        # a dense TimeSformer (IARED.ENABLE False): no interpreters, and no keep_masks to drop tokens with
        methods = [m for m in methods if m not in INTERPRETER_METHODS]
        steps = 0
        logger.warning("dense model: evaluating %s without the interpreter maps and deletion/insertion curves",
                       methods)
        if not methods:
            raise ValueError("INTERP.METHODS holds only interpreter methods, but the model is dense "
                             "(IARED.ENABLE False)")
    res = evaluate_interpretability(model, views, cfg.TIMESFORMER.PATCH_SIZE, methods, it.FG_FRACTION,
                                    it.TOPK, steps, it.CURVE_VIEWS, it.TARGET, seed=cfg.RNG_SEED,
                                    failed=failures, normalizer=build_normalizer(cfg))
    out_dir = out_dir or os.path.join(cfg.OUTPUT_DIR, "interpretability")
    paths = write_reports(res, out_dir, it.TOPK)
    logger.info("interpretability reports: %s", ", ".join(paths.values()))
    return res


def pick_videos(labels: Sequence[int], n: int) -> List[int]:
    """Indices of ``n`` videos: the first video of each class in list order, then the next ones."""
    first, rest, seen = [], [], set()
    for i, y in enumerate(labels):
        (rest if y in seen else first).append(i)
        seen.add(y)
    return sorted((first + rest)[:n])


def visualize_from_cfg(cfg, checkpoint: str = "", num_videos: int = 4, out_dir: str = "",
                       animation: str = "gif") -> List[str]:
    """PNG grids and animations of the first view of ``num_videos`` test videos (one per class first, see
    ``pick_videos``); files in ``out_dir`` (default OUTPUT_DIR/visualize). Returns the paths."""
    model = build_explained_model(cfg, checkpoint)
    normalize, device = build_normalizer(cfg), next(model.parameters()).device
    records, names, _ = load_records(cfg, cfg.TEST.SPLIT)
    pick = pick_videos([r.label for r in records], num_videos)
    out_dir = out_dir or os.path.join(cfg.OUTPUT_DIR, "visualize")
    os.makedirs(out_dir, exist_ok=True)
    methods = ["interpreter", "attention", "rollout", "gradcam"]
    if not hasattr(model, "interpreters"):  # a dense model: no interpreter column, no kept masks
        methods = methods[1:]
    written: List[str] = []
    for v in views_from_cfg(cfg, pick=pick):
        if v.view != 0:
            continue
        exp = explain(model, normalize(v.clip.unsqueeze(0).to(device)), methods)
        pred = int(exp.dense_logits[0].argmax())
        pruned = int(exp.interp.logits[0].argmax()) if exp.interp is not None else None
        name = lambda k: names[k] if names and 0 <= k < len(names) else str(k)  # noqa: E731
        title = f"{os.path.basename(v.path)} — class: {name(v.label)}; dense prediction: {name(pred)}"
        if pruned is not None:
            title += f"; IA-RED² prediction: {name(pruned)}"
        stem = os.path.join(out_dir, os.path.splitext(os.path.basename(v.path))[0])
        kept = exp.interp.kept[0].cpu().numpy() if exp.interp is not None else None
        maps = {m: exp.maps[m][0].cpu().numpy() for m in methods}
        fg = patch_foreground(v.coverage, cfg.TIMESFORMER.PATCH_SIZE, cfg.INTERP.FG_FRACTION)
        written.append(save_explanation_grid(stem + "_grid.png", v.display, maps, kept, title, foreground=fg))
        if kept is not None:
            written.append(save_kept_animation(f"{stem}_kept.{animation}", v.display, kept, title=title))
    logger.info("visualizations: %s", ", ".join(written))
    return written
