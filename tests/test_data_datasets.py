"""Datasets and loaders on real encoded videos: item format and frame order, SSv2 never flips, the
training replacement policy (shared across workers), failure records in evaluation, the decode watchdog,
multi-view from one decode per video, sharding without duplicates."""
import functools
import json
import logging
import os
import time
import traceback

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_fixtures import frame_ids, write_list, write_test_video
from video_iared.config import get_cfg
from video_iared.data import (
    AnnotationError, TooManyBadVideosError, VideoClipDataset, build_dataset, build_loader,
    build_multiview_dataset, build_multiview_loader, build_reader,
)
from video_iared.data.annotations import VideoRecord
from video_iared.data.loader import collate_clips, set_loader_epoch
from video_iared.data.multiview import MultiViewDataset
from video_iared.data.readers import VideoDecodeError, VideoReader
from video_iared.data.sampling import ClipSampler, dense_indices
from video_iared.data.transforms import TestTransform, TrainTransform

N_VIDEOS = 6


def _cfg(root, **data):
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = cfg.DATA.PATH_PREFIX = str(root)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 4
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 40], 32, 32
    cfg.DATA.DECODE_TIMEOUT = 10.0
    cfg.MODEL.NUM_CLASSES = 3
    cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE = 2, 2
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    cfg.DATA_LOADER.NUM_WORKERS = 0
    for k, v in data.items():
        cfg.DATA[k] = v
    return cfg


@pytest.fixture(scope="module")
def k400(tmp_path_factory):
    """6 good mp4 videos, and list files: train/val/test all good, plus bad.csv variants."""
    root = tmp_path_factory.mktemp("k400")
    rows = []
    for i in range(N_VIDEOS):
        write_test_video(str(root / "videos" / f"v{i}.mp4"), num_frames=32)
        rows.append(f"videos/v{i}.mp4 {i % 3}")
    for split in ("train", "val", "test"):
        write_list(str(root / f"{split}.csv"), rows)
    (root / "videos" / "empty.mp4").write_bytes(b"")
    (root / "videos" / "text.mp4").write_text("not a video\n" * 20)
    (root / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    return root


def _with_bad(root, name, bad_at):
    """A list file ``name``.csv where the videos at positions ``bad_at`` are undecodable files."""
    rows = []
    for i in range(N_VIDEOS):
        path = "videos/empty.mp4" if i in bad_at[:1] else "videos/text.mp4" if i in bad_at else f"videos/v{i}.mp4"
        rows.append(f"{path} {i % 3}")
    write_list(str(root / f"{name}.csv"), rows)


def _pixels(x):
    """A clip's pixel values (0-255, float): uint8 clips (DATA.NORMALIZE_ON_DEVICE) as they are, normalised
    float clips with the default mean / std undone."""
    return x.float() if x.dtype == torch.uint8 else (x * 0.225 + 0.45) * 255


@pytest.mark.parametrize("on_device", [True, False])
def test_eval_item_format_and_frame_order(k400, on_device):
    ds = build_dataset(_cfg(k400, NORMALIZE_ON_DEVICE=on_device), "val")
    assert len(ds) == N_VIDEOS and ds.class_names == ["a", "b", "c"]
    assert ds.videos[4] == (os.path.join(str(k400), "videos/v4.mp4"), 1)
    item = ds[4]
    assert set(item) == {"clip", "label", "index", "bad"} and item["label"] == 1 and item["bad"] == 0
    assert item["clip"].shape == (3, 4, 32, 32)
    assert item["clip"].dtype == (torch.uint8 if on_device else torch.float32)
    # the pixels (normalisation undone for floats) and the frame ids: the centre clip's documented indices, in order
    raw = _pixels(item["clip"]).permute(1, 2, 3, 0).numpy()  # (T, H, W, C)
    assert frame_ids(raw).tolist() == dense_indices(32, 4, 4, 0, 1).tolist() == [8, 13, 18, 23]


def test_training_items_random_and_reproducible(k400):
    ds = build_dataset(_cfg(k400), "train")  # seeded with RNG_SEED: draws per (epoch, item)
    a = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        a.append(ds[0]["clip"])
    ds.set_epoch(0)
    assert torch.equal(a[0], ds[0]["clip"]) and not torch.equal(a[0], a[1])
    assert a[0].shape == (3, 4, 32, 32)
    ds.seed = None  # unseeded: the draws come from torch's RNG
    torch.manual_seed(0)
    b = [ds[0]["clip"] for _ in range(2)]
    torch.manual_seed(0)
    assert torch.equal(ds[0]["clip"], b[0]) and not torch.equal(b[0], b[1])


def _red_on_left(clip):
    band = _pixels(clip)[0, :, -4:, :]  # red channel, bottom rows (T, 4, W)
    return bool(band[:, :, :8].mean() > band[:, :, -8:].mean())


def test_ssv2_never_flips_kinetics_does(tmp_path, k400):
    labels = {"Pushing something from left to right": "0", "Pushing something from right to left": "1"}
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    entries = []
    for i in range(2):
        write_test_video(str(tmp_path / f"{i}.webm"), num_frames=16)
        entries.append({"id": str(i), "template": "Pushing [something] from left to right"})
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(entries))
    cfg = _cfg(tmp_path, RANDOM_FLIP=True, TRAIN_JITTER_SCALES=[32, 32])
    cfg.TRAIN.DATASET = "ssv2"
    cfg.MODEL.NUM_CLASSES = len(labels)  # the model's classes are the labels file's
    ssv2 = build_dataset(cfg, "train")
    assert ssv2.transform.flip is False and ssv2.sampler.mode == "segment"
    never = []
    for epoch in range(8):
        ssv2.set_epoch(epoch)
        never += [_red_on_left(ssv2[0]["clip"]), _red_on_left(ssv2[1]["clip"])]
    assert all(never)
    kin = build_dataset(_cfg(k400, RANDOM_FLIP=True, TRAIN_JITTER_SCALES=[32, 32]), "train")
    assert kin.transform.flip is True and kin.sampler.mode == "dense"
    flips = []
    for epoch in range(16):
        kin.set_epoch(epoch)
        flips.append(_red_on_left(kin[0]["clip"]))
    assert 0 < sum(flips) < 16
    # SSv2 test split falls back to validation; a missing webm is reported at build time
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(entries + [{"id": "9", "template": "Pushing [something] from right to left"}]))
    cfg.TEST.DATASET = "ssv2"
    with pytest.raises(AnnotationError, match=r"(?s)1 of 3 listed videos do not exist.*validation.json\[2\]: .*9.webm"):
        build_dataset(cfg, "test")
    cfg.DATA.CHECK_FILES = False
    assert [lbl for _, lbl in build_dataset(cfg, "test").videos] == [0, 0, 1]


def test_training_replaces_bad_video_logged_and_counted(k400, caplog):
    _with_bad(k400, "train", bad_at=[1])
    try:
        ds = build_dataset(_cfg(k400, MAX_BAD_FRACTION=0.5), "train")
        with caplog.at_level(logging.WARNING):
            item = ds[1]
            again = ds[1]
        j = item["index"]
        assert j != 1 and item["bad"] == 1 and item["label"] == j % 3 and item["clip"].shape == (3, 4, 32, 32)
        assert again["index"] == j and again["bad"] == 1  # known bad: skipped, not decoded again
        assert ds[0]["bad"] == 0
        assert ds.bad.count() == 1 and ds.bad.indices() == [1]
        assert sum("empty.mp4" in m for m in caplog.messages) == 1  # logged once with the path
    finally:
        _restore(k400, "train")


def _restore(root, split):
    write_list(str(root / f"{split}.csv"), [f"videos/v{i}.mp4 {i % 3}" for i in range(N_VIDEOS)])


def test_too_many_bad_videos_counted_across_workers(k400):
    # Bad videos at 0 and 3: with 2 workers and batch 1, worker 0 loads 0, 2, 4 and worker 1 loads 1, 3, 5,
    # so each worker meets ONE bad video; only a count shared between them exceeds 1.2 (0.2 x 6).
    _with_bad(k400, "train", bad_at=[0, 3])
    try:
        ds = build_dataset(_cfg(k400, MAX_BAD_FRACTION=0.2), "train")
        loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_clips)
        with pytest.raises(TooManyBadVideosError) as e:
            for _ in loader:
                pass
        msg = str(e.value)
        # The re-raised worker error's frames hold the loader's iterator in a reference cycle; left to the
        # garbage collector, its workers were shut down 10 s late inside whichever later test the collection
        # hit (the queues it signals them through are finalized first). Clearing the frames frees it now.
        traceback.clear_frames(e.tb)
        assert "2 of 6 training videos" in msg and "empty.mp4" in msg and "text.mp4" in msg and "train.csv:4" in msg
    finally:
        _restore(k400, "train")


def test_evaluation_never_replaces_returns_failure_record(k400):
    _with_bad(k400, "val", bad_at=[2])
    try:
        ds = build_dataset(_cfg(k400), "val")
        item = ds[2]
        assert item["clip"] is None and item["index"] == 2 and "empty.mp4" in item["path"] and item["error"]
        batch = collate_clips([ds[1], ds[2], ds[3]])
        assert batch["clip"].shape == (2, 3, 4, 32, 32) and batch["index"].tolist() == [1, 3]
        assert [f["index"] for f in batch["failed"]] == [2] and batch["failed"][0]["error"] == item["error"]
        mv = build_multiview_dataset(_cfg(k400), "val")[2]
        assert mv["views"] is None and mv["error"] and mv["index"] == 2
    finally:
        _restore(k400, "val")


class SlowReader(VideoReader):
    """A fake reader whose decode hangs for ``delay`` seconds (stands in for a stuck decoder)."""

    def __init__(self, path, delay):
        self.path, self.num_frames, self.fps, self.delay = path, 32, 16.0, delay

    def _read(self, idx):
        time.sleep(self.delay)
        return np.zeros((len(idx), 32, 32, 3), np.uint8)


def _slow_or_real(path, slow_name):
    return SlowReader(path, 30.0) if os.path.basename(path) == slow_name else build_reader(path, "pyav")


def test_hanging_decoder_is_bounded_by_decode_timeout(k400):
    recs = [VideoRecord(os.path.join(str(k400), f"videos/v{i}.mp4"), i % 3, f"l:{i}") for i in range(3)]
    fn = functools.partial(_slow_or_real, slow_name="v1.mp4")
    sampler = ClipSampler("dense", 4, 4)
    train = VideoClipDataset(recs, fn, sampler, TrainTransform((32, 32), 32, False, [0.45] * 3, [0.225] * 3),
                             True, max_bad_fraction=0.5, decode_timeout=0.3)
    t0 = time.perf_counter()
    item = train[1]
    assert time.perf_counter() - t0 < 3.0
    assert item["index"] in (0, 2) and item["bad"] == 1
    evaluation = MultiViewDataset(recs, fn, sampler, TestTransform(32, 1, [0.45] * 3, [0.225] * 3), 1, decode_timeout=0.3)
    rec = evaluation[1]
    assert rec["views"] is None and "DECODE_TIMEOUT" in rec["error"]
    assert evaluation[0]["views"].shape == (1, 3, 4, 32, 32)


class CountingReaders:
    """``path -> reader`` that counts opens and get_frames calls (decodes) per path."""

    def __init__(self):
        self.opens, self.decodes = {}, {}

    def __call__(self, path):
        self.opens[path] = self.opens.get(path, 0) + 1
        reader = build_reader(path, "pyav")
        real = reader.get_frames

        def counted(indices):
            self.decodes[path] = self.decodes.get(path, 0) + 1
            return real(indices)

        reader.get_frames = counted
        return reader


def test_multiview_all_views_from_one_decode(k400):
    cfg = _cfg(k400)
    ds = build_multiview_dataset(cfg, "test")
    counter = CountingReaders()
    ds.reader_fn = counter
    items = [ds[i] for i in range(len(ds))]
    assert all(it["views"].shape == (6, 3, 4, 32, 32) and it["error"] is None for it in items)
    assert set(counter.opens.values()) == {1} and set(counter.decodes.values()) == {1}
    assert len(counter.decodes) == N_VIDEOS  # one decode per video, not one per view (6)
    v = items[0]["views"]
    raw = _pixels(v).permute(0, 2, 3, 4, 1).numpy()  # (V, T, H, W, C)
    ids = [frame_ids(raw[i]).tolist() for i in range(6)]
    assert ids[0] == ids[1] == ids[2] == dense_indices(32, 4, 4, 0, 2).tolist() == [0, 5, 10, 15]
    assert ids[3] == ids[5] == dense_indices(32, 4, 4, 1, 2).tolist() == [16, 21, 26, 31]
    assert not torch.equal(v[0], v[1])  # crops of one clip differ in space


def test_multiview_loader_shards_without_duplicates(k400):
    cfg = _cfg(k400)
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    seen = []
    for rank in range(4):  # 6 videos over 4 ranks: 2, 2, 1, 1 (no padding)
        batches = list(build_multiview_loader(cfg, "test", rank, 4))
        assert all(isinstance(b, list) for b in batches)
        seen.append([it["index"] for b in batches for it in b])
    assert [len(s) for s in seen] == [2, 2, 1, 1]
    assert sorted(i for s in seen for i in s) == list(range(N_VIDEOS))


def test_training_loader_with_workers(k400):
    cfg = _cfg(k400)
    cfg.DATA_LOADER.NUM_WORKERS = 2
    loader = build_loader(cfg, "train")
    batches = list(loader)
    assert len(batches) == 3
    b = batches[0]
    assert b["clip"].shape == (2, 3, 4, 32, 32) and b["label"].shape == (2,) and b["bad"].tolist() == [0, 0]
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(N_VIDEOS))


def test_val_loader_subset_is_evenly_spaced_and_sharded(k400):
    cfg = _cfg(k400)
    full = [i for b in build_loader(cfg, "val") for i in b["index"].tolist()]
    assert full == list(range(N_VIDEOS))
    picked = [i for b in build_loader(cfg, "val", max_videos=3) for i in b["index"].tolist()]
    assert picked == [0, 2, 5]  # round(linspace(0, 5, 3)): first, middle, last — not the first three
    shards = [[i for b in build_loader(cfg, "val", r, 2, max_videos=3) for i in b["index"].tolist()] for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == picked and all(shards)
    assert [i for b in build_loader(cfg, "val", max_videos=10) for i in b["index"].tolist()] == full


def test_training_draws_depend_on_seed_epoch_and_index_only(k400):
    """Item i of epoch e is the same clip in a fresh dataset (a resumed run), in any order, and through a loader
    with persistent workers that already served other epochs; another epoch draws another clip."""
    cfg = _cfg(k400)
    ds = build_dataset(cfg, "train")
    ds.set_epoch(3)
    epoch3 = [ds[i]["clip"] for i in range(N_VIDEOS)]
    ds.set_epoch(4)
    assert not all(torch.equal(ds[i]["clip"], epoch3[i]) for i in range(N_VIDEOS))
    resumed = build_dataset(cfg, "train")
    resumed.set_epoch(3)
    assert all(torch.equal(resumed[i]["clip"], epoch3[i]) for i in reversed(range(N_VIDEOS)))
    cfg.DATA_LOADER.NUM_WORKERS = 2
    loader = build_loader(cfg, "train")
    for epoch in (0, 3):
        set_loader_epoch(loader, epoch)
        got = {i: c for b in loader for i, c in zip(b["index"].tolist(), b["clip"])}
    assert sorted(got) == list(range(N_VIDEOS))
    assert all(torch.equal(got[i], epoch3[i]) for i in got)
    other = build_dataset(_cfg(k400), "train")
    other.seed = cfg.RNG_SEED + 1
    other.set_epoch(3)
    assert not all(torch.equal(other[i]["clip"], epoch3[i]) for i in range(N_VIDEOS))


class CorruptReader(VideoReader):
    """Opens fine (32 frames) but fails in the decode itself, after the clip's frames were drawn."""

    def __init__(self, path):
        self.path, self.num_frames, self.fps = path, 32, 16.0

    def _read(self, idx):
        raise VideoDecodeError(self.path, "corrupt packet")


def _corrupt_or_real(path, corrupt_name):
    return CorruptReader(path) if os.path.basename(path) == corrupt_name else build_reader(path, "pyav")


def test_replacement_draws_do_not_depend_on_known_bad_videos(k400):
    """Item 1 reads a corrupt video (its clip start drawn, then the decode fails) and is replaced by another: the
    same clip whether video 1 is already flagged (skipped undecoded, as in an unbroken run) or met for the first
    time (a resumed run, another worker)."""
    recs = [VideoRecord(os.path.join(str(k400), f"videos/v{i}.mp4"), i % 3, f"l:{i}") for i in range(N_VIDEOS)]
    fn = functools.partial(_corrupt_or_real, corrupt_name="v1.mp4")
    sets = []
    for flagged in (False, True):
        ds = VideoClipDataset(recs, fn, ClipSampler("dense", 4, 4), TrainTransform((32, 40), 32, True, [0.45] * 3,
                              [0.225] * 3), True, max_bad_fraction=0.5, seed=0)
        if flagged:
            ds.bad.mark(1)
        ds.set_epoch(2)
        sets.append((ds[1], ds[2]))
    (a, a2), (b, _) = sets
    assert a["index"] == b["index"] != 1 and a["bad"] == b["bad"] == 1
    assert torch.equal(a["clip"], b["clip"])
    assert not torch.equal(a["clip"], a2["clip"])  # the replacement draws are its own, not item 2's
