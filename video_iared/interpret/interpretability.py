"""Interpretability of IA-RED² on the synthetic benchmark: every method's token map against the ground-truth
foreground masks, deletion / insertion faithfulness curves, tables (Markdown, CSV) and plots.

Geometry: a test view is built from frames ``indices`` of the video, short-side scaled and cropped by the
test transform. The foreground mask goes through the SAME code (``TestTransform`` applied to the mask as a
0/255 image, un-normalised), so it is the fraction of foreground in every view pixel; a patch is foreground
when the mean of its pixels' fractions is at least ``fg_fraction``; a pixel when its fraction is >= 0.5.

``evaluate_interpretability(...)`` takes plain arguments; ``evaluate_from_cfg(cfg, checkpoint)`` and
``visualize_from_cfg(cfg, checkpoint, videos)`` are the config boundary used by the tools.
"""
from __future__ import annotations

import csv
import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from video_iared.build import build_model
from video_iared.checkpoint import load_checkpoint
from video_iared.checkpoint.io import weights_to_evaluate
from video_iared.data.build import build_sampler, load_records
from video_iared.data.device_normalize import as_normalizer, build_normalizer
from video_iared.data.readers import VideoDecodeError, build_reader
from video_iared.data.transforms import TestTransform
from video_iared.data.video_dataset import load_frames
from video_iared.engine.train_iared import apply_calibration
from video_iared.interpret.explain import INTERPRETER_METHODS, METHODS, Explanation, explain, map_to_tokens
from video_iared.interpret import interp_metrics as im
from video_iared.interpret.visualize import save_bar_plot, save_curve_plot, save_explanation_grid, save_kept_animation
from video_iared.synthetic import load_mask

logger = logging.getLogger(__name__)

MASK_METRICS = ("auc_patch", "auc_pixel", "ap_patch", "iou_topk", "pointing")
CURVE_METRICS = ("deletion_acc", "insertion_acc", "deletion_prob", "insertion_prob")
# higher is better for every metric but the deletion scores (a faithful map removes the evidence first)
LOWER_IS_BETTER = ("deletion_acc", "deletion_prob")


# ----------------------------------------------------------------------------- views and their masks
@dataclass
class View:
    """One test view of one video: the model input, the frames to show and the foreground.

    clip (C, T, S, S) model input: normalised float, or uint8 (``iter_views(normalize=False)``, normalised on
    the device by ``evaluate_interpretability``'s normaliser); display (T, S, S, 3) float in [0, 1]; coverage (T, S, S)
    float: foreground fraction of every view pixel; indices (T,) the video frames used.
    """

    video: int
    path: str
    label: int
    view: int
    clip: torch.Tensor
    display: np.ndarray
    coverage: np.ndarray
    indices: np.ndarray


def mask_coverage(mask: np.ndarray, transform: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
    """bool (T, H, W) per-frame mask -> foreground fraction (crops, T, S, S), through ``transform`` (a test
    transform with mean 0, std 1: it returns the image scaled to [0, 1]) — the clip's own resize and crop."""
    img = np.repeat((np.asarray(mask, dtype=np.uint8) * 255)[..., None], 3, axis=-1)
    return transform(img)[:, 0]


def patch_foreground(coverage: np.ndarray, patch: int, fraction: float) -> np.ndarray:
    """Pixel fractions (T, S, S) -> bool (T, S/patch, S/patch): the mean over the patch >= ``fraction``."""
    cov = torch.as_tensor(coverage, dtype=torch.float32)
    pooled = F.avg_pool2d(cov.unsqueeze(1), patch).squeeze(1)
    return (pooled >= fraction - 1e-6).numpy()


def upsample_map(m: np.ndarray, patch: int) -> np.ndarray:
    """Patch map (T, h, w) -> pixel map (T, h*patch, w*patch) (each patch's value on all its pixels)."""
    return np.repeat(np.repeat(np.asarray(m), patch, axis=-2), patch, axis=-1)


def iter_views(records: Sequence, data_dir: str, backend: str, sampler, crop_size: int, num_crops: int,
               num_clips: int, mean: Sequence[float], std: Sequence[float], decode_timeout: float = 0.0,
               failures: Optional[List[str]] = None, normalize: bool = True) -> Iterator[View]:
    """Every view of every listed video, with its frames and mask mapped through the same geometry.

    ``records``: ``VideoRecord``s; ``sampler``: a ``ClipSampler``; views ordered as in the multi-view test
    (view ``v`` = clip ``v // num_crops``, crop ``v % num_crops``). A video that fails to decode is logged
    and appended to ``failures`` (never replaced); a missing mask raises (wrong data directory). ``normalize``
    False: the views' ``clip`` stays uint8 (DATA.NORMALIZE_ON_DEVICE); ``display`` and the mask are the same."""
    model_tf = TestTransform(crop_size, num_crops, mean, std, normalize=normalize)
    raw_tf = TestTransform(crop_size, num_crops, [0.0] * 3, [1.0] * 3)
    reader_fn = functools.partial(build_reader, backend=backend, threads=1)
    for vi, rec in enumerate(records):
        mask = load_mask(data_dir, rec.path)
        picked: List[np.ndarray] = []

        def indices_fn(n: int, fps: Optional[float]) -> List[np.ndarray]:
            if n != mask.shape[0]:
                raise ValueError(f"{rec.path} ({rec.source}): the video has {n} frames but its mask has "
                                 f"{mask.shape[0]}")
            picked[:] = [sampler(n, c, num_clips, fps=fps) for c in range(num_clips)]
            return picked

        try:
            clips = load_frames(reader_fn, rec.path, indices_fn, decode_timeout)
        except VideoDecodeError as e:
            logger.warning("interpretability: undecodable video %s (%s): %s", rec.path, rec.source, e.reason)
            if failures is not None:
                failures.append(rec.path)
            continue
        for c, (frames, idx) in enumerate(zip(clips, picked)):
            if mask.shape[1:] != frames.shape[1:3]:
                raise ValueError(f"{rec.path} ({rec.source}): mask frames are {mask.shape[1:]} but video frames "
                                 f"{frames.shape[1:3]}")
            model_views = model_tf(frames)  # (crops, C, T, S, S)
            shown = raw_tf(frames).permute(0, 2, 3, 4, 1).numpy()  # (crops, T, S, S, 3)
            cover = mask_coverage(mask[idx], raw_tf).numpy()  # (crops, T, S, S)
            for k in range(num_crops):
                yield View(vi, rec.path, rec.label, c * num_crops + k, model_views[k], shown[k], cover[k], idx)


# ----------------------------------------------------------------------------- per-view scores
def mask_scores(maps: Dict[str, np.ndarray], coverage: np.ndarray, patch: int, fg_fraction: float, topk: float,
                seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Scores of every map (T, h, w) against one view's foreground (coverage (T, S, S)): method -> metric."""
    fg_patch = patch_foreground(coverage, patch, fg_fraction)
    fg_pixel = coverage >= 0.5
    out = {}
    for name, m in maps.items():
        rng = np.random.default_rng(seed)
        out[name] = {
            "auc_patch": im.roc_auc(m, fg_patch),
            "auc_pixel": im.roc_auc(upsample_map(m, patch), fg_pixel),
            "ap_patch": im.average_precision(m, fg_patch),
            "iou_topk": im.topk_iou(m, fg_patch, topk, rng),
            "pointing": im.pointing_game(m, fg_patch),
        }
    return out


def curve_masks(scores: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Deletion and insertion keep masks for one map's token scores (N,) in (h w t) order.

    Returns bool (2, F, N): [0, i] keeps all but the ``round(f_i N)`` top tokens (deletion), [1, i] keeps
    only them (insertion); ties in random order."""
    order = im.rank_order(scores, rng)
    N = scores.size
    out = np.zeros((2, len(fractions), N), dtype=bool)
    for i, f in enumerate(fractions):
        k = int(round(f * N))
        top = np.zeros(N, dtype=bool)
        top[order[:k]] = True
        out[0, i], out[1, i] = ~top, top
    return out


@torch.no_grad()
def curve_scores(model: nn.Module, clip: torch.Tensor, label: int, maps: Dict[str, np.ndarray],
                 fractions: Sequence[float], chunk: int = 32, seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
    """Deletion / insertion curves of one view (C, T, S, S) for every map: method -> {"deletion_acc":
    (F,), "insertion_acc", "deletion_prob", "insertion_prob"}, the accuracy (0/1) and the probability of
    ``label`` with the tokens kept (the same set for every group, through the IA-RED² ``keep_masks``)."""
    if not hasattr(model, "interpreters"):
        raise TypeError("deletion / insertion curves need the IA-RED² model (its keep_masks argument)")
    names = list(maps)
    masks = np.stack([curve_masks(map_to_tokens(torch.as_tensor(maps[n])[None]).numpy()[0], fractions,
                                  np.random.default_rng(seed)) for n in names])  # (M, 2, F, N)
    flat = torch.from_numpy(masks.reshape(-1, masks.shape[-1])).to(clip.device)
    # deletion at 0 and insertion at 1 are the full clip for every method, deletion at 1 and insertion
    # at 0 the empty one: run every distinct keep set once
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    rows = []  # per distinct keep set: (probability of the label, correct)
    for s in range(0, uniq.shape[0], chunk):
        km = uniq[s:s + chunk]
        logits = model(clip.unsqueeze(0).expand(km.shape[0], -1, -1, -1, -1), keep_masks=[km] * model.num_groups)
        rows.append(torch.stack([logits.float().softmax(-1)[:, label], (logits.argmax(-1) == label).float()], 1))
    table = torch.cat(rows)[inverse].reshape(len(names), 2, len(fractions), 2).cpu().numpy()
    out = {}
    for i, n in enumerate(names):
        out[n] = {"deletion_prob": table[i, 0, :, 0], "insertion_prob": table[i, 1, :, 0],
                  "deletion_acc": table[i, 0, :, 1], "insertion_acc": table[i, 1, :, 1]}
    return out


# ----------------------------------------------------------------------------- the evaluation
@dataclass
class InterpResult:
    """Per-video scores (averaged over the video's views) and mean curves.

    per_video: list of {"video", "path", "label", "correct", "method", metric: value}; curves: method ->
    metric -> (F,) mean over views; fractions (F,); summary: method -> metric -> (mean, std, n)."""

    per_video: List[Dict[str, object]]
    curves: Dict[str, Dict[str, np.ndarray]]
    fractions: np.ndarray
    summary: Dict[str, Dict[str, tuple]]
    videos: int
    views: int
    failed: List[str]
    accuracy: Dict[str, float]
    keep_rates: List[float]
    fg_patch_rate: float


def evaluate_interpretability(model: nn.Module, views: Iterator[View], patch: int, methods: Sequence[str] = METHODS,
                              fg_fraction: float = 0.5, topk: float = 0.1, curve_steps: int = 10,
                              curve_views: int = 1, target: str = "pred", batch: int = 8, seed: int = 0,
                              device: Optional[torch.device] = None,
                              failed: Optional[List[str]] = None,
                              normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> InterpResult:
    """Every method's maps on every view against the foreground; deletion / insertion curves.

    ``curve_views``: curves on the first n views of each video (0: none; they cost one forward per
    distinct keep set). ``target``: "pred" (explain the dense prediction) or "label" (the true class).
    Views run ``batch`` at a time; ``normalizer`` turns their clips into the model's input on ``device``
    (``device_normalize``: uint8 clips; None: float clips only)."""
    if target not in ("pred", "label"):
        raise ValueError(f"target must be 'pred' or 'label', got {target!r}")
    normalize = as_normalizer(normalizer)
    device = device or next(model.parameters()).device
    model.eval()
    fractions = np.linspace(0.0, 1.0, curve_steps + 1) if curve_steps > 0 else np.zeros(0)
    per_view: List[Dict[str, object]] = []
    curve_sum: Dict[str, Dict[str, np.ndarray]] = {}
    curve_n = 0
    acc = {"dense": [], "iared": []}
    keep, fg_rates = [], []
    t0 = time.time()

    def flush(buf: List[View]) -> None:
        nonlocal curve_n
        clips = normalize(torch.stack([v.clip for v in buf]).to(device, non_blocking=True))
        labels = torch.tensor([v.label for v in buf], device=device)
        exp: Explanation = explain(model, clips, methods, labels if target == "label" else None,
                                   seed=seed + len(per_view))
        dense_pred = exp.dense_logits.argmax(1)
        pruned_pred = exp.interp.logits.argmax(1) if exp.interp is not None else None
        if exp.interp is not None:
            keep.extend(exp.interp.kept.float().mean((2, 3, 4)).cpu().numpy().tolist())
        for b, v in enumerate(buf):
            maps = {m: exp.maps[m][b].cpu().numpy() for m in methods}
            scores = mask_scores(maps, v.coverage, patch, fg_fraction, topk, seed)
            fg_rates.append(float(patch_foreground(v.coverage, patch, fg_fraction).mean()))
            acc["dense"].append(float(dense_pred[b] == v.label))
            if pruned_pred is not None:
                acc["iared"].append(float(pruned_pred[b] == v.label))
            curves = None
            if curve_steps > 0 and v.view < curve_views:
                curves = curve_scores(model, clips[b], v.label, maps, fractions, seed=seed)
                curve_n += 1
                for m, cm in curves.items():
                    for k, arr in cm.items():
                        curve_sum.setdefault(m, {}).setdefault(k, np.zeros_like(fractions))
                        curve_sum[m][k] = curve_sum[m][k] + arr
            for m in methods:
                row = {"video": v.video, "path": v.path, "label": v.label, "view": v.view,
                       "correct": int(dense_pred[b] == v.label), "method": m, **scores[m]}
                for k in CURVE_METRICS:
                    row[k] = im.curve_auc(fractions, curves[m][k]) if curves is not None else math.nan
                per_view.append(row)
        logger.info("interpretability: %d views done, %.1f s", len(per_view) // len(methods), time.time() - t0)

    buf: List[View] = []
    for v in views:
        buf.append(v)
        if len(buf) == batch:
            flush(buf)
            buf = []
    if buf:
        flush(buf)
    if not per_view:
        raise RuntimeError("interpretability: no view was evaluated (every video failed, or the list is empty)")

    per_video = _average_views(per_view, methods)
    metrics = MASK_METRICS + CURVE_METRICS
    summary = {m: {k: im.mean_std([r[k] for r in per_video if r["method"] == m]) for k in metrics} for m in methods}
    curves = {m: {k: a / max(curve_n, 1) for k, a in d.items()} for m, d in curve_sum.items()}
    keep_rates = np.mean(np.asarray(keep), 0).tolist() if keep else []
    return InterpResult(per_video, curves, fractions, summary, len({r["video"] for r in per_video}),
                        len(per_view) // len(methods), list(failed or []),
                        {k: float(np.mean(a)) * 100 for k, a in acc.items() if a}, keep_rates,
                        float(np.mean(fg_rates)))


def _average_views(rows: List[Dict[str, object]], methods: Sequence[str]) -> List[Dict[str, object]]:
    """Per-view rows -> per-video rows (mean of each metric over the video's views, NaNs ignored)."""
    out = []
    videos = sorted({r["video"] for r in rows})
    by_key: Dict[tuple, List[Dict[str, object]]] = {}
    for r in rows:
        by_key.setdefault((r["video"], r["method"]), []).append(r)
    for vid in videos:
        for m in methods:
            rs = by_key.get((vid, m), [])
            if not rs:
                continue
            row = {k: rs[0][k] for k in ("video", "path", "label", "method")}
            row["views"] = len(rs)
            row["correct"] = float(np.mean([r["correct"] for r in rs]))
            for k in MASK_METRICS + CURVE_METRICS:
                vals = [r[k] for r in rs if np.isfinite(r[k])]
                row[k] = float(np.mean(vals)) if vals else math.nan
            out.append(row)
    return out


# ----------------------------------------------------------------------------- reports
def _fmt(ms: tuple) -> str:
    mean, std, n = ms
    return "n/a" if n == 0 else f"{mean:.3f} ± {std:.3f}"


def summary_markdown(res: InterpResult, topk: float) -> str:
    """The table of every method (mean ± std over videos) with a header naming the set-up."""
    heads = {"auc_patch": "AUC (patch)", "auc_pixel": "AUC (pixel)", "ap_patch": "AP (patch)",
             "iou_topk": f"IoU top-{topk * 100:g}%", "pointing": "pointing game",
             "deletion_acc": "deletion AUC (acc) ↓", "insertion_acc": "insertion AUC (acc) ↑",
             "deletion_prob": "deletion AUC (p) ↓", "insertion_prob": "insertion AUC (p) ↑"}
    metrics = [k for k in MASK_METRICS + CURVE_METRICS if any(res.summary[m][k][2] for m in res.summary)]
    lines = ["| method | " + " | ".join(heads[k] for k in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for m, row in res.summary.items():
        lines.append(f"| {m} | " + " | ".join(_fmt(row[k]) for k in metrics) + " |")
    names = {"dense": "dense forward", "iared": "IA-RED² (pruned) forward"}
    acc = ", ".join(f"{names.get(k, k)} {v:.2f}%" for k, v in res.accuracy.items())
    keep = ", ".join(f"{k:.3f}" for k in res.keep_rates)
    notes = [f"{res.videos} videos, {res.views} views ({len(res.failed)} failed); clip-level top-1: {acc}; "
             f"keep rate after each group: [{keep}]; foreground patches: {100 * res.fg_patch_rate:.1f}% (chance AP).",
             "mean ± std over videos (each video's views averaged first). Chance: AUC 0.5, AP = the foreground rate."]
    return "\n".join(notes + [""] + lines) + "\n"


def write_reports(res: InterpResult, out_dir: str, topk: float) -> Dict[str, str]:
    """interpretability.md / .csv (summary), interpretability_per_video.csv, interpretability_curves.csv,
    interpretability_bars.png, interpretability_curves.png in ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"interpretability{s}") for k, s in
             (("md", ".md"), ("csv", ".csv"), ("per_video", "_per_video.csv"), ("curves_csv", "_curves.csv"),
              ("bars", "_bars.png"), ("curves_png", "_curves.png"))}
    with open(paths["md"], "w") as f:
        f.write(summary_markdown(res, topk))
    metrics = MASK_METRICS + CURVE_METRICS
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method"] + [f"{k}_{s}" for k in metrics for s in ("mean", "std", "n")])
        for m, row in res.summary.items():
            w.writerow([m] + [f"{x:.6f}" if isinstance(x, float) else x for k in metrics for x in row[k]])
    with open(paths["per_video"], "w", newline="") as f:
        keys = ["video", "path", "label", "views", "correct", "method"] + list(metrics)
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in res.per_video:
            w.writerow({k: r[k] for k in keys})
    with open(paths["curves_csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "curve"] + [f"{x:.3f}" for x in res.fractions])
        for m, d in res.curves.items():
            for k, arr in d.items():
                w.writerow([m, k] + [f"{x:.6f}" for x in arr])
    save_bar_plot(paths["bars"], res.summary, list(MASK_METRICS),
                  title=f"Token maps vs foreground ({res.videos} videos)")
    if res.curves:
        save_curve_plot(paths["curves_png"], res.fractions, res.curves)
    else:
        del paths["curves_png"]
    return paths


# ----------------------------------------------------------------------------- config boundary
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
