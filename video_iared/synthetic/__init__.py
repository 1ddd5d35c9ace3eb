"""The embedded synthetic benchmark: real encoded videos whose class is the motion of one foreground object.

``generate_synthetic(out_dir, ...)`` writes a dataset (Kinetics or SSv2 layout, with per-frame foreground
masks); ``ensure_synthetic_dataset(cfg)`` does so for a config when it is missing or out of date;
``load_mask(data_dir, video_path)`` reads a video's mask back. See generator.py for the layouts.
"""
from .classes import MAX_CLASSES, MOTION_CLASSES, MotionClass, get_classes, hflip_label
from .ensure import ensure_synthetic_dataset, synthetic_settings
from .generator import generate_from_settings, generate_synthetic, load_mask, read_meta, video_stem
from .options import SceneOptions
from .scenes import build_scene, render_video

__all__ = [
    "MAX_CLASSES", "MOTION_CLASSES", "MotionClass", "get_classes", "hflip_label", "ensure_synthetic_dataset",
    "synthetic_settings", "generate_from_settings", "generate_synthetic", "load_mask", "read_meta", "video_stem",
    "SceneOptions", "build_scene", "render_video",
]
