"""Pure checks of a merged config: each raises ``ConfigError`` naming the key; nothing is mutated."""
from __future__ import annotations

import difflib
from typing import Iterable, List

from fvcore.common.config import CfgNode


class ConfigError(ValueError):
    """An invalid config key, value or combination of values."""


def all_keys(cfg: CfgNode, prefix: str = "") -> List[str]:
    """Every leaf key of ``cfg`` as a dotted name, e.g. ``TRAIN.BATCH_SIZE``."""
    keys = []
    for name, value in cfg.items():
        full = f"{prefix}{name}"
        if isinstance(value, CfgNode):
            keys.extend(all_keys(value, full + "."))
        else:
            keys.append(full)
    return keys


def unknown_key_message(key: str, valid: Iterable[str], where: str = "") -> str:
    """An error message for an unknown key, with the closest valid key when there is one."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    src = f" in {where}" if where else ""
    return f"unknown config key {key}{src}{hint}"


_CHOICES = {
    "DEVICE": ("auto", "cpu", "cuda"),
    "DIST_BACKEND": ("auto", "gloo", "nccl"),
    "TRAIN.DATASET": ("kinetics", "ssv2", "ucf101", "hmdb51"),
    "TEST.DATASET": ("kinetics", "ssv2", "ucf101", "hmdb51"),
    "TEST.SPLIT": ("val", "test"),
    "DATA.DECODING_BACKEND": ("pyav", "decord", "torchcodec"),
    "DATA.PIPELINE": ("ours", "pytorchvideo"),
    "MODEL.ARCH": ("vit",),
    "TIMESFORMER.ATTENTION_TYPE": ("divided_space_time", "joint_space_time", "space_only"),
    "TIMESFORMER.STEM": ("patch", "conv3d"),
    "IARED.MODE": ("threshold", "keep_ratio"),
    "IARED.EXECUTION": ("packed", "masked"),
    "IARED.ATTENTION_BACKEND": ("auto", "varlen", "bucketed"),
    "IARED.BASELINE": ("none", "mean", "greedy"),
    "SOLVER.OPTIMIZING_METHOD": ("sgd", "adamw"),
    "SOLVER.LR_POLICY": ("cosine", "steps_with_relative_lrs"),
    "TEST.ENSEMBLE_METHOD": ("mean_softmax", "sum_logits", "max"),
    "TEST.PRECISION": ("fp32", "bf16", "fp16"),
    "TRAIN.AMP_DTYPE": ("auto", "bf16", "fp16"),
    "SYNTHETIC.FORMAT": ("kinetics", "ssv2"),
    "BENCHMARK.TYPE": ("", "loader", "speed"),
    "INTERP.TARGET": ("pred", "label"),
}


def _get(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def validate_config(cfg: CfgNode) -> None:
    """Raise ``ConfigError`` (naming the key) if ``cfg`` holds an invalid value or combination."""
    # the order of the sections is the order in which errors are reported: the first failing key wins
    _check_choices(cfg)
    _check_batching(cfg)
    _check_data(cfg)
    _check_model(cfg)
    if cfg.IARED.ENABLE:
        _check_iared(cfg.IARED, cfg.TIMESFORMER.DEPTH)
    _check_solver(cfg.SOLVER)
    _check_test_and_predict(cfg)
    _check_synthetic(cfg)
    _require(cfg.BENCHMARK.NUM_ITERS >= 1, "BENCHMARK.NUM_ITERS", "must be >= 1")
    _check_interp(cfg.INTERP)


def _check_choices(cfg: CfgNode) -> None:
    """Every key of ``_CHOICES`` holds one of its choices."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        _require(value in choices, key, f"{value!r} is not one of {list(choices)}")


def _check_batching(cfg: CfgNode) -> None:
    """GPU count, batch sizes and gradient accumulation."""
    _require(cfg.NUM_GPUS >= 0, "NUM_GPUS", "must be >= 0")
    _require(cfg.TRAIN.BATCH_SIZE > 0, "TRAIN.BATCH_SIZE", "must be > 0")
    _require(cfg.TEST.BATCH_SIZE > 0, "TEST.BATCH_SIZE", "must be > 0")
    _require(cfg.TRAIN.GRAD_ACCUM_STEPS >= 1, "TRAIN.GRAD_ACCUM_STEPS", "must be >= 1")
    _require(
        cfg.TRAIN.BATCH_SIZE % cfg.TRAIN.GRAD_ACCUM_STEPS == 0,
        "TRAIN.GRAD_ACCUM_STEPS",
        f"must divide TRAIN.BATCH_SIZE ({cfg.TRAIN.BATCH_SIZE})",
    )


def _check_data(cfg: CfgNode) -> None:
    """``DATA.*`` (sampling, crops and scales, normalisation, failure policy, list files) and the loader."""
    _require(cfg.DATA.NUM_FRAMES > 0, "DATA.NUM_FRAMES", "must be > 0")
    _require(cfg.DATA.SAMPLING_RATE > 0, "DATA.SAMPLING_RATE", "must be > 0")
    _require(cfg.DATA.TARGET_FPS >= 0, "DATA.TARGET_FPS", "must be >= 0 (0 disables fps scaling)")
    scales = list(cfg.DATA.TRAIN_JITTER_SCALES)
    _require(
        len(scales) == 2 and 0 < scales[0] <= scales[1],
        "DATA.TRAIN_JITTER_SCALES",
        f"must be [min, max] with 0 < min <= max, got {scales}",
    )
    _require(
        cfg.DATA.TRAIN_CROP_SIZE <= scales[0],
        "DATA.TRAIN_CROP_SIZE",
        f"{cfg.DATA.TRAIN_CROP_SIZE} is larger than the smallest jitter scale {scales[0]}",
    )
    for key in ("DATA.MEAN", "DATA.STD"):
        _require(len(_get(cfg, key)) == cfg.DATA.INPUT_CHANNEL_NUM[0], key, "needs one value per input channel")
    _require(all(s > 0 for s in cfg.DATA.STD), "DATA.STD", "must be > 0")
    _require(isinstance(cfg.DATA.NORMALIZE_ON_DEVICE, bool), "DATA.NORMALIZE_ON_DEVICE",
             f"must be True or False, got {cfg.DATA.NORMALIZE_ON_DEVICE!r}")
    _require(0.0 <= cfg.DATA.MAX_BAD_FRACTION <= 1.0, "DATA.MAX_BAD_FRACTION", "must be in [0, 1]")
    _require(cfg.DATA.DECODE_TIMEOUT > 0, "DATA.DECODE_TIMEOUT", "must be > 0")
    _require(cfg.DATA.PATH_LABEL_SEPARATOR != "", "DATA.PATH_LABEL_SEPARATOR",
             "must not be empty: it separates path and label in the list files (e.g. ' ' or ',')")
    _require(cfg.DATA_LOADER.NUM_WORKERS >= 0, "DATA_LOADER.NUM_WORKERS", "must be >= 0")


def _check_model(cfg: CfgNode) -> None:
    """``TIMESFORMER.*`` (heads, stem, patch size against the crops) and ``MODEL.*``."""
    ts = cfg.TIMESFORMER
    _require(ts.EMBED_DIM % ts.NUM_HEADS == 0, "TIMESFORMER.NUM_HEADS", f"must divide TIMESFORMER.EMBED_DIM ({ts.EMBED_DIM})")
    if ts.STEM == "conv3d":
        _require(ts.STEM_CHANNELS > 0, "TIMESFORMER.STEM_CHANNELS", "must be > 0")
        _require(ts.PATCH_SIZE % 4 == 0, "TIMESFORMER.PATCH_SIZE",
                 f"must be a multiple of 4 with TIMESFORMER.STEM conv3d, got {ts.PATCH_SIZE}")
    for key in ("DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE"):
        _require(
            _get(cfg, key) % ts.PATCH_SIZE == 0,
            key,
            f"{_get(cfg, key)} is not a multiple of TIMESFORMER.PATCH_SIZE ({ts.PATCH_SIZE})",
        )
    _require(cfg.MODEL.NUM_CLASSES > 0, "MODEL.NUM_CLASSES", "must be > 0")
    _require(0.0 <= cfg.MODEL.DROPPATH_RATE < 1.0, "MODEL.DROPPATH_RATE", "must be in [0, 1)")


def _check_iared(ia: CfgNode, depth: int) -> None:
    """``IARED.*`` when IA-RED² is enabled; ``depth`` is ``TIMESFORMER.DEPTH``, which the groups must sum to."""
    _require(len(ia.GROUPS) > 0 and all(g > 0 for g in ia.GROUPS), "IARED.GROUPS", "must be positive block counts")
    _require(
        sum(ia.GROUPS) == depth,
        "IARED.GROUPS",
        f"sums to {sum(ia.GROUPS)}, but TIMESFORMER.DEPTH is {depth}",
    )
    _require(
        len(ia.KEEP_RATIO) == len(ia.GROUPS),
        "IARED.KEEP_RATIO",
        f"needs one ratio per group ({len(ia.GROUPS)}), got {len(ia.KEEP_RATIO)}",
    )
    _require(all(0.0 < r <= 1.0 for r in ia.KEEP_RATIO), "IARED.KEEP_RATIO", "ratios must be in (0, 1]")
    _require(0.0 <= ia.THRESHOLD < 1.0, "IARED.THRESHOLD", "must be in [0, 1)")
    _require(0.0 <= ia.TARGET_COST < 1.0, "IARED.TARGET_COST", "must be in [0, 1) (0: no calibration)")
    _require(not ia.CALIBRATION_PER_GROUP or ia.MODE == "threshold", "IARED.CALIBRATION_PER_GROUP",
             "calibrates one threshold per group: needs IARED.MODE threshold")
    _require(ia.CALIBRATION_VIDEOS >= 0, "IARED.CALIBRATION_VIDEOS", "must be >= 0 (0: the whole val split)")
    _require(ia.CALIBRATION_FVCORE_CLIPS >= 0, "IARED.CALIBRATION_FVCORE_CLIPS", "must be >= 0 (0: no trace)")
    _require(ia.NUM_HEADS > 0 and ia.HEAD_DIM > 0, "IARED.NUM_HEADS", "heads and IARED.HEAD_DIM must be > 0")
    _require(ia.TAU >= 0, "IARED.TAU", "must be >= 0")
    _require(0.0 < ia.INIT_KEEP_PROB < 1.0, "IARED.INIT_KEEP_PROB", "must be in (0, 1)")
    _require(ia.BASE_LR > 0 and ia.FINETUNE_LR > 0, "IARED.BASE_LR", "and IARED.FINETUNE_LR must be > 0")
    _require(ia.FINETUNE_DISTILL >= 0, "IARED.FINETUNE_DISTILL", "must be >= 0")
    _require(ia.DISTILL_TEMPERATURE > 0, "IARED.DISTILL_TEMPERATURE", "must be > 0")
    _require(ia.FINETUNE_EPOCHS >= 0, "IARED.FINETUNE_EPOCHS", "must be >= 0")
    _require(isinstance(ia.DENSE_PLUS_N, bool), "IARED.DENSE_PLUS_N",
             f"must be True or False (dense + N is trained for IARED.FINETUNE_EPOCHS), got {ia.DENSE_PLUS_N!r}")


def _check_solver(s: CfgNode) -> None:
    """``SOLVER.*``: the step schedule, learning rate and epoch counts."""
    if s.LR_POLICY == "steps_with_relative_lrs":
        _require(len(s.STEPS) == len(s.LRS), "SOLVER.STEPS", "needs as many entries as SOLVER.LRS")
    _require(s.BASE_LR > 0, "SOLVER.BASE_LR", "must be > 0")
    _require(s.MAX_EPOCH >= 0, "SOLVER.MAX_EPOCH", "must be >= 0")
    _require(s.WARMUP_EPOCHS >= 0, "SOLVER.WARMUP_EPOCHS", "must be >= 0")


def _check_test_and_predict(cfg: CfgNode) -> None:
    """``TEST.*`` view counts and ``PREDICT.*``."""
    t = cfg.TEST
    _require(t.NUM_ENSEMBLE_VIEWS >= 1, "TEST.NUM_ENSEMBLE_VIEWS", "must be >= 1")
    _require(t.NUM_SPATIAL_CROPS >= 1, "TEST.NUM_SPATIAL_CROPS", "must be >= 1")
    _require(t.VIEWS_PER_CHUNK >= 1, "TEST.VIEWS_PER_CHUNK", "must be >= 1")
    _require(cfg.PREDICT.TOP_K >= 1, "PREDICT.TOP_K", "must be >= 1")
    if cfg.PREDICT.ENABLE:
        _require(bool(cfg.PREDICT.INPUT), "PREDICT.INPUT", "is required when PREDICT.ENABLE is True")


def _check_synthetic(cfg: CfgNode) -> None:
    """``SYNTHETIC.*`` when the synthetic benchmark is enabled."""
    syn = cfg.SYNTHETIC
    if syn.ENABLE:
        _require(bool(cfg.DATA.PATH_TO_DATA_DIR), "DATA.PATH_TO_DATA_DIR", "is required when SYNTHETIC.ENABLE is True")
        _require(
            syn.NUM_CLASSES == cfg.MODEL.NUM_CLASSES,
            "MODEL.NUM_CLASSES",
            f"must equal SYNTHETIC.NUM_CLASSES ({syn.NUM_CLASSES}) on the synthetic benchmark",
        )
        _require(len(syn.VIDEOS_PER_CLASS) == 3, "SYNTHETIC.VIDEOS_PER_CLASS", "needs [train, val, test] counts")
        _require(len(syn.SIZE) == 2, "SYNTHETIC.SIZE", "needs [height, width]")
        _validate_synthetic_scene(syn)


def _check_interp(it: CfgNode) -> None:
    """``INTERP.*``: fractions, curve sizes and attribution method names."""
    _require(0.0 < it.FG_FRACTION <= 1.0, "INTERP.FG_FRACTION", "must be in (0, 1]")
    _require(0.0 < it.TOPK <= 1.0, "INTERP.TOPK", "must be in (0, 1]")
    _require(it.CURVE_STEPS >= 0 and it.CURVE_VIEWS >= 0 and it.MAX_VIDEOS >= 0, "INTERP.CURVE_STEPS",
             "INTERP.CURVE_STEPS, CURVE_VIEWS and MAX_VIDEOS must be >= 0")
    # the names of video_iared.interpret.explain.METHODS (not imported: validation stays free of torch)
    methods = ("interpreter", "interpreter_g0", "interpreter_g1", "interpreter_g2", "kept", "attention", "rollout",
               "gradcam", "chefer", "random")
    _require(len(it.METHODS) > 0 and all(m in methods for m in it.METHODS), "INTERP.METHODS",
             f"must be a non-empty list of {list(methods)}")


def _validate_synthetic_scene(syn: CfgNode) -> None:
    """The harder-scene keys of SYNTHETIC (limits as in synthetic/options.py, not imported: config is a leaf)."""
    d = syn.DISTRACTORS
    _require(len(d) == 2 and 0 <= d[0] <= d[1] <= 6, "SYNTHETIC.DISTRACTORS",
             f"needs [lo, hi] with 0 <= lo <= hi <= 6, got {list(d)}")
    _require(0.0 <= syn.CAMERA_PAN <= 1.0, "SYNTHETIC.CAMERA_PAN", f"must be in [0, 1], got {syn.CAMERA_PAN}")
    _require(0.0 <= syn.CAMERA_ZOOM <= 1.0, "SYNTHETIC.CAMERA_ZOOM", f"must be in [0, 1], got {syn.CAMERA_ZOOM}")
    _require(0 <= syn.OCCLUDERS <= 3, "SYNTHETIC.OCCLUDERS", f"must be in [0, 3], got {syn.OCCLUDERS}")
    _require(syn.BACKGROUND in ("smooth", "textured"), "SYNTHETIC.BACKGROUND",
             f"{syn.BACKGROUND!r} is not one of ['smooth', 'textured']")
    _require(0.0 < syn.DISTRACTOR_SCALE <= 1.0, "SYNTHETIC.DISTRACTOR_SCALE",
             f"must be in (0, 1], got {syn.DISTRACTOR_SCALE}")
    _require(syn.TARGET_TONE in ("pastel", "dark"), "SYNTHETIC.TARGET_TONE",
             f"{syn.TARGET_TONE!r} is not one of ['pastel', 'dark']")
