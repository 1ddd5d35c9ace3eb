"""The synthetic benchmark: real encoded files decoded by PyAV and decord, masks, layouts, determinism."""
import json
import os

import decord  # noqa: I001  (before av on purpose: see the ssv2 fixture)
import av
import numpy as np
import pytest

from video_iared.config import get_cfg
from video_iared.synthetic import (
    MOTION_CLASSES,
    ensure_synthetic_dataset,
    generate_synthetic,
    hflip_label,
    load_mask,
    read_meta,
)
from video_iared.synthetic.cli import main as cli_main

T, H, W = 16, 64, 64


def _pyav_frames(path: str) -> np.ndarray:
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _decord_frames(path: str) -> np.ndarray:
    vr = decord.VideoReader(path)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def _list(root: str, split: str):
    with open(os.path.join(root, f"{split}.csv")) as f:
        return [(p, int(lab)) for p, lab in (line.split(" ") for line in f.read().splitlines())]


def _chroma(frames: np.ndarray) -> np.ndarray:
    """max - min over RGB in [0, 1]: high on the saturated foreground, low on background and distractors."""
    f = frames.astype(np.float32) / 255.0
    return f.max(-1) - f.min(-1)


def _centroid_x(mask: np.ndarray) -> np.ndarray:
    xs = np.arange(mask.shape[-1]) + 0.5
    return (mask * xs).sum((1, 2)) / mask.sum((1, 2))


def _centroids(mask: np.ndarray) -> np.ndarray:
    """(T, 2) x, y centroids of a (T, H, W) mask."""
    ys = np.arange(mask.shape[1])[:, None] + 0.5
    return np.stack([_centroid_x(mask), (mask * ys).sum((1, 2)) / mask.sum((1, 2))], 1)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, -2), dx, -1)
    return out


@pytest.fixture(scope="module")
def kinetics_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("syn") / "kinetics")
    summary = generate_synthetic(root, num_classes=8, videos_per_class=(2, 1, 1), num_frames=T, size=(H, W),
                                 fps=8, seed=3, fmt="kinetics", workers=1)
    return root, summary


@pytest.fixture(scope="module")
def ssv2_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("syn") / "ssv2")
    # decord is imported above: this also checks that VP9 encoding then moves to a worker process
    generate_synthetic(root, num_classes=12, videos_per_class=(1, 1, 1), num_frames=12, size=(40, 56), fps=8,
                       seed=0, fmt="ssv2", workers=1)
    return root


def test_kinetics_layout(kinetics_dir):
    root, summary = kinetics_dir
    names = json.load(open(os.path.join(root, "classes.json")))
    assert names == [c.name for c in MOTION_CLASSES[:8]]
    for split, per_class in zip(("train", "val", "test"), (2, 1, 1)):
        rows = _list(root, split)
        assert len(rows) == 8 * per_class == summary["videos"][split]
        assert sorted(lab for _, lab in rows) == sorted(list(range(8)) * per_class)
        for path, _ in rows:
            assert path.startswith("videos/") and path.endswith(".mp4")
            assert os.path.isfile(os.path.join(root, path))
            assert load_mask(root, path).shape == (T, H, W)
    meta = read_meta(root)
    assert meta["videos_per_class"] == [2, 1, 1] and meta["size"] == [H, W] and meta["seed"] == 3
    assert not any(n.startswith("kinetics.partial") for n in os.listdir(os.path.dirname(root)))


def test_ssv2_layout(ssv2_dir):
    root = ssv2_dir
    labels = json.load(open(os.path.join(root, "something-something-v2-labels.json")))
    templates = json.load(open(os.path.join(root, "classes.json")))
    assert len(templates) == 12 and all("[something]" in t for t in templates)
    assert labels == {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)}
    assert labels["Moving something from left to right"] == "1"
    for split in ("train", "validation", "test"):
        entries = json.load(open(os.path.join(root, f"something-something-v2-{split}.json")))
        assert len(entries) == 12
        for e in entries:
            assert set(e) == {"id", "label", "template", "placeholders"} and e["id"].isdigit()
            obj = e["placeholders"][0]
            assert e["label"].lower() == e["template"].replace("[something]", obj).lower()
            assert e["template"] in templates
            path = os.path.join(root, "videos", e["id"] + ".webm")
            with av.open(path) as c:
                assert c.streams.video[0].codec_context.name == "vp9"
        ids = [e["id"] for e in entries]
        assert len(set(ids)) == len(ids)
    frames = _pyav_frames(os.path.join(root, "videos", entries[0]["id"] + ".webm"))
    assert frames.shape == (12, 40, 56, 3)
    assert load_mask(root, entries[0]["id"]).shape == (12, 40, 56)


@pytest.mark.parametrize("fmt", ["kinetics", "ssv2"])
def test_pyav_and_decord_decode_the_same_frames(fmt, kinetics_dir, ssv2_dir):
    root = kinetics_dir[0] if fmt == "kinetics" else ssv2_dir
    videos = sorted(os.listdir(os.path.join(root, "videos")))[:3]
    for name in videos:
        path = os.path.join(root, "videos", name)
        a, b = _pyav_frames(path), _decord_frames(path)
        mask = load_mask(root, name)
        assert a.shape == b.shape == mask.shape + (3,)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_foreground_pixels_are_where_the_mask_says(kinetics_dir):
    root = kinetics_dir[0]
    for path, label in _list(root, "train"):
        chroma = _chroma(_pyav_frames(os.path.join(root, path)))
        mask = load_mask(root, path)
        inner = mask & ~_dilate(~mask, 1)  # away from the edges that encoding blurs
        outer = ~_dilate(mask, 2)
        # both tones of the object are strongly coloured (a few pixels less so: the codec's 4:2:0 chroma)
        assert np.percentile(chroma[inner], 10) > 0.35 and chroma[inner].mean() > 0.45, path
        assert (chroma[outer] > 0.25).mean() < 0.002, path  # background and distractors are not
        # The foreground found from the pixels alone sits where the mask says.
        found = chroma > 0.27
        assert np.abs(_centroids(found) - _centroids(mask)).max() < 1.5, path
        assert (found & mask).sum() / (found | mask).sum() > 0.8, path  # IoU; 4:2:0 chroma blurs the edges


def test_coverage_is_5_to_20_percent(kinetics_dir):
    root, summary = kinetics_dir
    cov = np.stack([load_mask(root, p).mean((1, 2)) for split in ("train", "val", "test")
                    for p, _ in _list(root, split)])
    assert 0.05 <= cov.mean(1).min() and cov.mean(1).max() <= 0.20
    assert 0.04 <= cov.min() and cov.max() <= 0.22
    assert abs(summary["coverage"]["video_mean"] - cov.mean()) < 1e-6


def test_mask_centroid_moves_in_the_class_direction(kinetics_dir):
    root = kinetics_dir[0]
    expected = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}
    for path, label in _list(root, "train"):
        c = _centroids(load_mask(root, path))
        shift = c[-1] - c[0]
        if label in expected:
            along = np.dot(shift, expected[label])
            assert along > 0.2 * W, (path, shift)
            e = expected[label]
            assert abs(shift[0] * e[1] - shift[1] * e[0]) < 0.1 * W, (path, shift)  # little sideways drift
            steps = np.diff(c, axis=0) @ np.array(expected[label])
            assert (steps > 0).all(), path  # monotonic: frame order matters
        elif label in (4, 5, 6, 7):  # rotate / grow / shrink stay in place
            assert np.abs(shift).max() < 2.0, (path, shift)
        if label in (6, 7):
            area = load_mask(root, path).sum((1, 2))
            assert (area[-1] > 1.5 * area[0]) == (label == 6), path


def test_horizontal_flip_turns_left_into_right(kinetics_dir):
    root = kinetics_dir[0]
    assert hflip_label(0, 8) == 1 and hflip_label(4, 8) == 5 and hflip_label(2, 8) == 2
    assert hflip_label(4, 5) is None  # cw without ccw: a flipped video has no class
    for path, label in _list(root, "train"):
        if label != 0:
            continue
        flipped = _pyav_frames(os.path.join(root, path))[:, :, ::-1]
        found = _chroma(flipped) > 0.27  # foreground located in the flipped pixels
        x = _centroid_x(found)
        assert x[-1] - x[0] > 0.2 * W and (np.diff(x) > -0.5).all()  # what a "moving right" video does
        assert np.abs(x - _centroid_x(load_mask(root, path)[:, :, ::-1])).max() < 1.5


def test_same_seed_same_frames_other_seed_other_frames(tmp_path):
    kw = dict(num_classes=2, num_frames=8, size=(32, 32), fps=8, fmt="kinetics")
    a = generate_synthetic(str(tmp_path / "a"), videos_per_class=(1, 0, 0), seed=5, **kw)["out_dir"]
    b = generate_synthetic(str(tmp_path / "b"), videos_per_class=(1, 0, 0), seed=5, **kw)["out_dir"]
    c = generate_synthetic(str(tmp_path / "c"), videos_per_class=(1, 0, 0), seed=6, **kw)["out_dir"]
    # more videos per class and another worker count: the first videos do not change
    d = generate_synthetic(str(tmp_path / "d"), videos_per_class=(2, 1, 0), seed=5, workers=2, **kw)["out_dir"]
    for path, _ in _list(a, "train"):
        fa = _pyav_frames(os.path.join(a, path))
        assert np.array_equal(fa, _pyav_frames(os.path.join(b, path)))
        assert np.array_equal(fa, _pyav_frames(os.path.join(d, path)))
        assert open(os.path.join(a, path), "rb").read() == open(os.path.join(d, path), "rb").read()
        assert np.array_equal(load_mask(a, path), load_mask(d, path))
        assert np.abs(fa.astype(int) - _pyav_frames(os.path.join(c, path))).mean() > 5


def _small_cfg(data_dir: str, seed: int = 0):
    cfg = get_cfg()
    cfg.SYNTHETIC.ENABLE = True
    cfg.SYNTHETIC.NUM_CLASSES = 3
    cfg.SYNTHETIC.VIDEOS_PER_CLASS = [1, 1, 0]
    cfg.SYNTHETIC.NUM_FRAMES = 8
    cfg.SYNTHETIC.SIZE = [32, 32]
    cfg.SYNTHETIC.SEED = seed
    cfg.DATA.PATH_TO_DATA_DIR = data_dir
    cfg.DATA.PATH_PREFIX = data_dir
    return cfg


def test_ensure_generates_once_and_regenerates_on_change(tmp_path):
    data_dir = str(tmp_path / "syn")
    os.makedirs(f"{data_dir}.partial-999999999/videos")  # left behind by a killed generation
    assert ensure_synthetic_dataset(_small_cfg(data_dir), workers=1) == data_dir
    assert not os.path.exists(f"{data_dir}.partial-999999999")
    meta_path = os.path.join(data_dir, "meta.json")
    first = os.stat(meta_path).st_mtime_ns
    ensure_synthetic_dataset(_small_cfg(data_dir), workers=1)
    assert os.stat(meta_path).st_mtime_ns == first  # up to date: not regenerated
    ensure_synthetic_dataset(_small_cfg(data_dir, seed=1), workers=1)
    assert read_meta(data_dir)["seed"] == 1
    assert len(_list(data_dir, "train")) == 3


def test_bad_settings_and_foreign_folders_raise(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        generate_synthetic(str(tmp_path / "x"), num_classes=len(MOTION_CLASSES) + 1)
    with pytest.raises(ValueError, match="size"):
        generate_synthetic(str(tmp_path / "x"), size=(33, 32))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "train.csv").write_text("a.mp4 0\n")
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        generate_synthetic(str(foreign), num_classes=2, videos_per_class=(1, 0, 0), num_frames=4, size=(32, 32))
    assert (foreign / "train.csv").read_text() == "a.mp4 0\n"  # untouched
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_mask(str(tmp_path), "videos/nope.mp4")


def test_cli_writes_a_dataset(tmp_path):
    out = str(tmp_path / "cli")
    assert cli_main(["--out", out, "--num-classes", "2", "--videos-per-class", "1", "0", "1", "--frames", "4",
                     "--size", "32", "32", "--workers", "1"]) == 0
    assert len(_list(out, "test")) == 2 and read_meta(out)["num_frames"] == 4
    assert cli_main(["--out", out, "--size", "31", "32"]) == 2


def test_masks_are_stored_packed_and_read_back_exactly(tmp_path):
    from video_iared.synthetic.generator import save_mask

    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(5, 12, 13)) < 0.3  # 780 bits: not a multiple of 8
    masks = tmp_path / "masks"
    masks.mkdir()
    save_mask(str(masks / "a.npz"), mask)
    back = load_mask(str(tmp_path), "videos/a.mp4")
    assert back.dtype == bool and back.shape == mask.shape and np.array_equal(back, mask)
    # datasets written before packing keep their bool .npy masks
    np.save(masks / "b.npy", ~mask)
    assert np.array_equal(load_mask(str(tmp_path), "b"), ~mask)
    # a packed file whose bytes do not fit its shape is refused, naming the file
    np.savez_compressed(masks / "c.npz", bits=np.packbits(mask)[:-3], shape=np.asarray(mask.shape))
    with pytest.raises(ValueError, match="c.npz"):
        load_mask(str(tmp_path), "c")
    with pytest.raises(FileNotFoundError, match="d.npz"):
        load_mask(str(tmp_path), "d")


def test_generated_masks_are_small_packed_files(kinetics_dir):
    kinetics_dir, _ = kinetics_dir
    names = sorted(os.listdir(os.path.join(kinetics_dir, "masks")))
    assert names and all(n.endswith(".npz") for n in names)
    size = os.path.getsize(os.path.join(kinetics_dir, "masks", names[0]))
    assert size < T * H * W / 8  # below even the uncompressed packed size
