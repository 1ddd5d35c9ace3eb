"""DATA.PIPELINE pytorchvideo: pytorchvideo's EncodedVideo (pyav / decord) under our datasets gives the frames
our readers give for the same video and indices, the same dataset items, and the same run_net results on the
synthetic data; our clip dataset as pytorchvideo items; pytorchvideo's LabeledVideoDataset through our
transforms."""
import glob
import os

import numpy as np
import pytest

from engine_fixtures import ROOT, tiny_cfg, tiny_opts
from data_fixtures import frame_ids, write_test_video
from video_iared.data import pytorchvideo_pipeline as pvp
from video_iared.data.annotations import VideoRecord
from video_iared.data.build import build_dataset
from video_iared.data.readers import VideoDecodeError, build_reader
from video_iared.data.transforms import TestTransform
from video_iared.engine.multiview_test import parse_summary_line
from video_iared.tools_main import run_net


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_encoded_video_frames_equal_our_reader(encoded_videos, decoder, ext):
    path = encoded_videos[ext]  # 40 frames, gop 8
    ours, theirs = build_reader(path, decoder), pvp.EncodedVideoReader(path, decoder)
    assert (theirs.num_frames, theirs.fps) == (ours.num_frames, ours.fps) == (40, 16.0)
    for idx in ([31, 2, 2, 39, 0, 16, 15], list(range(40)), [7], [38, 39]):
        a, b = ours.get_frames(idx), theirs.get_frames(idx)
        assert b.dtype == np.uint8 and np.array_equal(a, b) and frame_ids(b).tolist() == idx
    import decord  # pytorchvideo's decord decoder must not leave decord's process-wide bridge switched to torch

    assert hasattr(decord.VideoReader(path).get_batch([0]), "asnumpy")


def test_synthetic_videos_and_items_equal(data_dir, tmp_path):
    for path in sorted(glob.glob(os.path.join(data_dir, "**", "*.mp4"), recursive=True))[:4]:
        ours, theirs = build_reader(path, "pyav"), pvp.EncodedVideoReader(path, "pyav")
        idx = list(range(0, ours.num_frames, 3))
        assert np.array_equal(ours.get_frames(idx), theirs.get_frames(idx))
    for split in ("train", "test"):
        a, b = (build_dataset(tiny_cfg(data_dir, str(tmp_path), ["DATA.PIPELINE", p]), split) for p in ("ours", "pytorchvideo"))
        assert b.reader_fn.func is pvp.EncodedVideoReader
        for i in range(3):
            x, y = a[i], b[i]
            assert np.array_equal(x["clip"].numpy(), y["clip"].numpy()) and x["label"] == y["label"]


def test_bad_file_is_a_video_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 40)
    for path in (str(bad), str(tmp_path / "missing.mp4")):
        with pytest.raises(VideoDecodeError) as e:
            pvp.EncodedVideoReader(path, "pyav").get_frames([0])
        assert e.value.path == path


def test_our_dataset_as_pytorchvideo_items_and_their_dataset_through_our_transforms(tiny_config):
    ds = build_dataset(tiny_config(), "test")
    item = pvp.LabeledVideoItems(ds)[1]
    assert set(item) >= {"video", "label", "video_name", "video_index", "clip_index", "aug_index"}
    assert tuple(item["video"].shape) == (3, 4, 32, 32) and item["video_index"] == 1
    assert item["video_name"] == os.path.basename(ds.records[1].path) and item["label"] == ds.records[1].label
    theirs = pvp.labeled_video_dataset(ds.records[:3], TestTransform(32, 1, [0.45] * 3, [0.225] * 3),
                                       clip_seconds=0.5, sampler="uniform")
    items = [next(iter(theirs))]
    assert tuple(items[0]["video"].shape) == (1, 3, 8, 32, 32)  # 0.5 s at 16 fps, our transform's crop
    assert items[0]["label"] == ds.records[0].label and items[0]["video_name"] == os.path.basename(ds.records[0].path)
    with pytest.raises(ValueError, match="pyav or decord"):
        pvp.encoded_video_reader_fn("torchcodec")
    assert isinstance(ds.records[0], VideoRecord)


def test_run_net_same_results_with_either_pipeline(data_dir, tmp_path, capsys, monkeypatch):
    calls = []
    real = pvp.EncodedVideoReader._read
    monkeypatch.setattr(pvp.EncodedVideoReader, "_read", lambda self, idx: calls.append(1) or real(self, idx))
    summaries = {}
    for pipeline in ("ours", "pytorchvideo"):
        opts = tiny_opts(data_dir, str(tmp_path / pipeline), ["SOLVER.MAX_EPOCH", "1", "TEST.NUM_SPATIAL_CROPS", "1",
                                                              "DATA.PIPELINE", pipeline])
        assert run_net(["--cfg", str(ROOT / "configs" / "synthetic_dense.yaml")] + opts) == 0
        summaries[pipeline] = parse_summary_line(capsys.readouterr().out.strip().splitlines()[-1])
        assert bool(calls) == (pipeline == "pytorchvideo")  # pytorchvideo decoded every clip of its run
    assert summaries["ours"] == summaries["pytorchvideo"] and summaries["ours"]["videos"] == 12
