"""Writing the synthetic benchmark to disk: encoded videos, foreground masks, list / label files, meta.json.

Layouts (``fmt``):

- ``kinetics``: ``DIR/videos/<split>_<class>_<k>.mp4`` (H.264), ``DIR/{train,val,test}.csv`` with one
  ``videos/<name>.mp4 <label>`` per line (paths relative to DIR, the configs' ``DATA.PATH_PREFIX``),
  ``DIR/classes.json`` (class names, index = label).
- ``ssv2``: ``DIR/videos/<id>.webm`` (VP9) with integer ids, ``DIR/something-something-v2-labels.json``
  (template text without brackets -> string id, as the official file), ``DIR/something-something-v2-
  {train,validation,test}.json`` (lists of ``{"id", "label", "template", "placeholders"}``). The official
  test json has no labels; ours is a labelled third split in the validation format, so it can be scored.
  ``DIR/classes.json`` holds the templates (with ``[something]``).

Both: ``DIR/masks/<video stem>.npz`` (the bool (T, H, W) mask, True on the target object, stored bit-packed and
zlib-compressed: ``load_mask`` reads it, and the ``.npy`` of datasets written before) and ``DIR/meta.json``
(the generator settings and a summary). A dataset is built in ``DIR.partial-<pid>`` and renamed into place
at the end, with meta.json written last, so an existing DIR is always complete; a killed run leaves only a
partial folder, which the next run removes.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from video_iared.utils.video_io import write_video

from .classes import MOTION_CLASSES, get_classes, hflip_label, slug
from .options import SceneOptions
from .scenes import render_video

logger = logging.getLogger(__name__)

GENERATOR = "video_iared.synthetic"
VERSION = 5  # bump whenever the drawing changes, so that existing datasets are regenerated
SPLITS = ("train", "val", "test")
SSV2_FILES = {"train": "something-something-v2-train.json", "val": "something-something-v2-validation.json",
              "test": "something-something-v2-test.json"}
SSV2_LABELS = "something-something-v2-labels.json"
MAX_PER_CLASS = 10_000  # SSv2 ids are (split + 1) * 1e6 + label * 1e4 + k


SCENE_DEFAULTS = {"distractors": [0, 0], "camera_pan": 0.0, "camera_zoom": 0.0, "occluders": 0,
                  "background": "smooth", "distractor_scale": 1.0,
                  "target_tone": "pastel"}  # the harder-scene options (options.py) that add nothing


def settings_dict(num_classes: int, videos_per_class: Sequence[int], num_frames: int, size: Sequence[int],
                  fps: int, seed: int, fmt: str, scene: Optional[Dict] = None) -> Dict:
    """The settings that decide a dataset's content; meta.json stores them to tell whether DIR is up to date.

    ``scene`` holds the harder-scene options (keys of SCENE_DEFAULTS); it is stored only when one of them is
    not at its default, so a default dataset's meta.json is what it was before the options existed.
    """
    out = {"generator": GENERATOR, "version": VERSION, "num_classes": int(num_classes),
           "videos_per_class": [int(v) for v in videos_per_class], "num_frames": int(num_frames),
           "size": [int(s) for s in size], "fps": int(fps), "seed": int(seed), "format": str(fmt)}
    scene = {**SCENE_DEFAULTS, **(scene or {})}
    scene = {"distractors": [int(v) for v in scene["distractors"]], "camera_pan": float(scene["camera_pan"]),
             "camera_zoom": float(scene["camera_zoom"]), "occluders": int(scene["occluders"]),
             "background": str(scene["background"]), "distractor_scale": float(scene["distractor_scale"]),
             "target_tone": str(scene["target_tone"])}
    if scene != SCENE_DEFAULTS:
        out["scene"] = scene
    return out


def scene_options(settings: Dict) -> SceneOptions:
    """The SceneOptions of a settings dict; class-like distractors move like the classes in use."""
    s = {**SCENE_DEFAULTS, **settings.get("scene", {})}
    motions = tuple(c.motion for c in get_classes(settings["num_classes"]))
    return SceneOptions(tuple(s["distractors"]), motions, s["camera_pan"], s["camera_zoom"], s["occluders"],
                        s["background"], s["distractor_scale"], s["target_tone"])


def _check_settings(s: Dict) -> None:
    get_classes(s["num_classes"])  # raises on a bad count
    vpc = s["videos_per_class"]
    if len(vpc) != 3 or any(v < 0 or v >= MAX_PER_CLASS for v in vpc) or vpc[0] < 1:
        raise ValueError(f"synthetic benchmark: videos_per_class must be [train, val, test] counts in "
                         f"[0, {MAX_PER_CLASS}) with train >= 1, got {vpc}")
    if s["num_frames"] < 2:
        raise ValueError(f"synthetic benchmark: num_frames must be >= 2, got {s['num_frames']}")
    h, w = s["size"] if len(s["size"]) == 2 else (0, 0)
    if len(s["size"]) != 2 or h < 16 or w < 16 or h % 2 or w % 2:
        raise ValueError(f"synthetic benchmark: size must be [height, width], even and >= 16, got {s['size']}")
    if s["fps"] < 1:
        raise ValueError(f"synthetic benchmark: fps must be >= 1, got {s['fps']}")
    if s["format"] not in ("kinetics", "ssv2"):
        raise ValueError(f"synthetic benchmark: format must be 'kinetics' or 'ssv2', got {s['format']!r}")
    if len(s.get("scene", {}).get("distractors", [0, 0])) != 2:
        raise ValueError(f"synthetic benchmark: distractors must be [lo, hi], got {s['scene']['distractors']}")
    scene_options(s).check()


def video_stem(fmt: str, split: str, label: int, k: int) -> str:
    """File stem of video ``k`` of class ``label`` in ``split``: ``train_moving_left_0003`` or ``1000003``."""
    if fmt == "ssv2":
        return str((SPLITS.index(split) + 1) * 1_000_000 + label * MAX_PER_CLASS + k)
    return f"{split}_{slug(MOTION_CLASSES[label].name)}_{k:04d}"


def _make_one(job: Tuple) -> Dict:
    """Render, encode and save one video and its mask (runs in a pool worker)."""
    root, stem, ext, entropy, label, num_frames, h, w, fps, options = job
    frames, mask, info = render_video(entropy, MOTION_CLASSES[label].motion, num_frames, h, w, options)
    path = os.path.join(root, "videos", stem + ext)
    write_video(path, frames, fps=fps)
    save_mask(os.path.join(root, "masks", stem + ".npz"), mask)
    cov = info["coverage"]
    return {"stem": stem, "label": label, "object": info["object"], "bytes": os.path.getsize(path),
            "cov_mean": float(cov.mean()), "cov_min": float(cov.min()), "cov_max": float(cov.max()),
            "frames_in_5_20": int(((cov >= 0.05) & (cov <= 0.20)).sum()), "frames": len(cov)}


def _write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def _write_lists(root: str, fmt: str, names: List[str], records: Dict[str, List[Dict]]) -> None:
    templates = [c.template for c in get_classes(len(names))]
    _write_json(os.path.join(root, "classes.json"), templates if fmt == "ssv2" else names)
    if fmt == "kinetics":
        for split, recs in records.items():
            with open(os.path.join(root, f"{split}.csv"), "w") as f:
                f.writelines(f"videos/{r['stem']}.mp4 {r['label']}\n" for r in recs)
        return
    _write_json(os.path.join(root, SSV2_LABELS), {t.replace("[something]", "something"): str(i)
                                                   for i, t in enumerate(templates)})
    for split, recs in records.items():
        entries = []
        for r in recs:
            text = templates[r["label"]].replace("[something]", r["object"])
            entries.append({"id": r["stem"], "label": text[0].lower() + text[1:],
                            "template": templates[r["label"]], "placeholders": [r["object"]]})
        _write_json(os.path.join(root, SSV2_FILES[split]), entries)


def read_meta(data_dir: str) -> Dict:
    """``DIR/meta.json`` as a dict, or {} when it is missing or unreadable."""
    try:
        with open(os.path.join(data_dir, "meta.json")) as f:
            meta = json.load(f)
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def _remove_stale_partials(out_dir: str) -> None:
    parent, base = os.path.split(out_dir)
    for name in os.listdir(parent):
        if not name.startswith(base + ".partial-") and not name.startswith(base + ".old-"):
            continue
        pid = name.rsplit("-", 1)[-1]
        alive = False
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                alive = int(pid) != os.getpid()
            except OSError:
                pass
        if not alive:
            logger.info("removing leftover %s", os.path.join(parent, name))
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _jobs(tmp: str, settings: Dict) -> List[Tuple]:
    h, w = settings["size"]
    fmt, seed, num_classes = settings["format"], settings["seed"], settings["num_classes"]
    ext = ".webm" if fmt == "ssv2" else ".mp4"
    options = scene_options(settings)
    jobs = []
    for s_idx, split in enumerate(SPLITS):
        # Interleave classes so that any prefix of a list covers every class.
        for k in range(settings["videos_per_class"][s_idx]):
            for label in range(num_classes):
                jobs.append((tmp, video_stem(fmt, split, label, k), ext, (seed, s_idx, label, k), label,
                             settings["num_frames"], h, w, settings["fps"], options))
    return jobs


def _run_jobs(jobs: List[Tuple], fmt: str, workers: int) -> List[Dict]:
    # With decord imported first, its bundled FFmpeg libraries shadow PyAV's and VP9 encoding fails
    # ("avcodec_open2(libvpx-vp9) returned 22"): encode in fresh (spawned) processes then. Otherwise fork:
    # the workers use only numpy and PyAV, and fork needs no `if __name__ == "__main__"` guard in scripts.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if fmt == "ssv2" and "decord" in sys.modules:
        logger.info("decord is loaded in this process: encoding VP9 in spawned worker processes")
        method, workers = "spawn", max(workers, 1)
        use_pool = True
    else:
        use_pool = workers > 1
    if use_pool:
        with multiprocessing.get_context(method).Pool(workers) as pool:
            return pool.map(_make_one, jobs, chunksize=4)
    return [_make_one(j) for j in jobs]


def _summary(fmt: str, num_classes: int, records: Dict[str, List[Dict]], results: List[Dict]) -> Dict:
    return {
        "format": fmt,
        "videos": {split: len(recs) for split, recs in records.items()},
        "class_names": [c.name for c in get_classes(num_classes)],
        "hflip_labels": [hflip_label(i, num_classes) for i in range(num_classes)],
        "coverage": {
            "video_mean": float(np.mean([r["cov_mean"] for r in results])),
            "video_mean_min": float(min(r["cov_mean"] for r in results)),
            "video_mean_max": float(max(r["cov_mean"] for r in results)),
            "frame_min": float(min(r["cov_min"] for r in results)),
            "frame_max": float(max(r["cov_max"] for r in results)),
            "frames_in_5_20": sum(r["frames_in_5_20"] for r in results) / sum(r["frames"] for r in results),
        },
        "video_bytes": int(sum(r["bytes"] for r in results)),
    }


def _prepare(out_dir: str) -> str:
    """Check ``out_dir`` may be replaced, clear leftovers, and make the fresh partial folder; returns it."""
    if os.path.isdir(out_dir) and os.listdir(out_dir) and read_meta(out_dir).get("generator") != GENERATOR:
        raise ValueError(f"{out_dir} exists and is not a synthetic dataset (no meta.json written by {GENERATOR}); "
                         f"remove it or generate elsewhere")
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    _remove_stale_partials(out_dir)
    tmp = f"{out_dir}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "videos"))
    os.makedirs(os.path.join(tmp, "masks"))
    return tmp


def _swap_into_place(tmp: str, out_dir: str) -> None:
    old = f"{out_dir}.old-{os.getpid()}"
    if os.path.exists(out_dir):
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def generate_synthetic(
    out_dir: str,
    num_classes: int = 8,
    videos_per_class: Sequence[int] = (24, 6, 10),
    num_frames: int = 32,
    size: Sequence[int] = (64, 64),
    fps: int = 16,
    seed: int = 0,
    fmt: str = "kinetics",
    workers: int = 1,
    distractors: Sequence[int] = (0, 0),
    camera_pan: float = 0.0,
    camera_zoom: float = 0.0,
    occluders: int = 0,
    background: str = "smooth",
    distractor_scale: float = 1.0,
    target_tone: str = "pastel",
) -> Dict:
    """Generate the benchmark into ``out_dir`` (replacing an earlier synthetic dataset there) and return a summary.

    Video ``k`` of class ``label`` in split ``s`` depends only on ``(seed, s, label, k)`` and the frame
    settings, so asking for more videos or classes keeps the existing ones (with class-like distractors,
    whose motions are those of the classes in use, more classes change the videos). ``size`` is (height,
    width). ``distractors`` .. ``target_tone`` are the harder-scene options (options.py; the defaults add
    nothing). The summary holds ``out_dir``, ``format``, ``videos`` (per split), ``class_names``, ``bytes``
    (videos + masks + lists on disk), ``video_bytes``, ``seconds``, ``hflip_labels`` (label of each class's
    mirror image, None if not in use) and ``coverage`` (foreground fraction of the frame: ``video_mean``
    average, ``frame_min`` / ``frame_max`` over all frames, ``frames_in_5_20`` fraction of frames in range).
    Raises ValueError for bad settings or when ``out_dir`` holds something that is not a synthetic dataset.
    """
    scene = {"distractors": list(distractors), "camera_pan": camera_pan, "camera_zoom": camera_zoom,
             "occluders": occluders, "background": background, "distractor_scale": distractor_scale,
             "target_tone": target_tone}
    settings = settings_dict(num_classes, videos_per_class, num_frames, size, fps, seed, fmt, scene)
    _check_settings(settings)
    out_dir = os.path.abspath(out_dir)
    start = time.time()
    tmp = _prepare(out_dir)
    jobs = _jobs(tmp, settings)
    h, w = settings["size"]
    logger.info("generating %d synthetic videos (%s, %d classes, %d frames of %dx%d%s) into %s with %d worker(s)",
                len(jobs), fmt, num_classes, num_frames, h, w, f", scene {settings['scene']}" if "scene" in
                settings else "", out_dir, workers)
    results = _run_jobs(jobs, fmt, workers)
    records: Dict[str, List[Dict]] = {split: [] for split in SPLITS}
    for job, rec in zip(jobs, results):
        records[SPLITS[job[3][1]]].append(rec)
    _write_lists(tmp, fmt, [c.name for c in get_classes(num_classes)], records)
    summary = _summary(fmt, num_classes, records, results)
    _write_json(os.path.join(tmp, "meta.json"), {**settings, "summary": summary})  # last: marks completion
    _swap_into_place(tmp, out_dir)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
    summary.update(out_dir=out_dir, bytes=int(total), seconds=round(time.time() - start, 2))
    logger.info("synthetic dataset ready in %s: %s videos, %.1f MB, %.1f s, foreground coverage %.1f%% mean "
                "(frames %.1f-%.1f%%)", out_dir, summary["videos"], total / 1e6, summary["seconds"],
                100 * summary["coverage"]["video_mean"], 100 * summary["coverage"]["frame_min"],
                100 * summary["coverage"]["frame_max"])
    return summary


def generate_from_settings(out_dir: str, settings: Dict, workers: int = 1) -> Dict:
    """``generate_synthetic`` with a settings dict (settings_dict's, e.g. ensure.synthetic_settings(cfg))."""
    scene = {**SCENE_DEFAULTS, **settings.get("scene", {})}
    return generate_synthetic(out_dir, settings["num_classes"], settings["videos_per_class"],
                              settings["num_frames"], settings["size"], settings["fps"], settings["seed"],
                              settings["format"], workers, **scene)


def save_mask(path: str, mask: np.ndarray) -> None:
    """Write a bool (T, H, W) mask as ``path`` (.npz): its bits packed (np.packbits) and compressed, with its
    shape. 112x112x32 masks take ~2 KB instead of the 400 KB of a bool .npy."""
    np.savez_compressed(path, bits=np.packbits(mask.astype(bool), axis=None),
                        shape=np.asarray(mask.shape, np.int64))


def _read_mask(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path)
    with np.load(path) as f:
        if "bits" not in f or "shape" not in f:
            raise ValueError(f"{path}: expected a packed mask (arrays 'bits' and 'shape'), got {sorted(f.files)}")
        shape = tuple(int(v) for v in f["shape"])
        count = int(np.prod(shape)) if shape else 0
        bits = f["bits"]
        if bits.dtype != np.uint8 or bits.size != (count + 7) // 8:
            raise ValueError(f"{path}: {bits.size} packed bytes do not hold a mask of shape {shape}")
        return np.unpackbits(bits, count=count).astype(bool).reshape(shape)


def load_mask(data_dir: str, video_path: str) -> np.ndarray:
    """The foreground mask, bool (T, H, W), of a video of the dataset in ``data_dir``.

    ``video_path`` may be a list-file path (``videos/x.mp4``), an absolute path, a file name or an SSv2 id.
    Reads ``masks/<stem>.npz`` (packed), else the ``masks/<stem>.npy`` of a dataset written before packing.
    """
    stem = os.path.splitext(os.path.basename(str(video_path)))[0]
    base = os.path.join(data_dir, "masks", stem)
    path = next((base + ext for ext in (".npz", ".npy") if os.path.isfile(base + ext)), None)
    if path is None:
        raise FileNotFoundError(f"no foreground mask for video {video_path!r}: neither {base}.npz nor {base}.npy exists")
    mask = _read_mask(path)
    if mask.ndim != 3 or mask.dtype != bool:
        raise ValueError(f"{path}: expected a bool (T, H, W) mask, got {mask.dtype} {mask.shape}")
    return mask
