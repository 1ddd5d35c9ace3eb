"""The torchcodec reader: the same frames as PyAV, bit for bit, on every decodable case the reader tests cover
(H.264 / VP9 / MPEG-4, B-frames, seeking across GOPs, clamping, broken fps) and on the synthetic benchmark's
videos (both formats), through a dataset item too; bad files raise VideoDecodeError naming the path; a
missing torchcodec / FFmpeg is one clear BackendUnavailableError before any video is read."""
import glob
import os
import sys

import numpy as np
import pytest

from data_fixtures import bad_file, frame_ids, make_frames, write_test_video
from video_iared.data.readers import BackendUnavailableError, VideoDecodeError, build_reader, check_backend
from video_iared.data.readers import torchcodec_reader
from video_iared.utils.video_io import write_video

try:
    check_backend("torchcodec")
    UNAVAILABLE = ""
except BackendUnavailableError as e:  # make install provides both; say why when they are absent
    UNAVAILABLE = str(e)
needs_torchcodec = pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)


def _same_as_pyav(path: str, idx) -> np.ndarray:
    a, t = build_reader(path, "pyav"), build_reader(path, "torchcodec")
    assert (t.num_frames, t.fps) == (a.num_frames, a.fps)
    fa, ft = a.get_frames(idx), t.get_frames(idx)
    assert ft.dtype == np.uint8 and ft.shape == fa.shape
    assert np.array_equal(fa, ft)
    return ft


@pytest.fixture(scope="module")
def videos(encoded_videos):
    """mp4 / webm / avi at gop 8 and H.264 with B-frames, as in test_data_readers (conftest: read-only)."""
    return encoded_videos


@needs_torchcodec
@pytest.mark.parametrize("kind", ["mp4", "webm", "avi", "bframes"])
def test_same_frames_as_pyav(videos, kind):
    idx = [31, 2, 2, 39, 0, 16, 15, 37, 1, 13]  # unsorted, repeated, across keyframes
    some, every = _same_as_pyav(videos[kind], idx), _same_as_pyav(videos[kind], range(40))
    if kind != "avi":  # MPEG-4 at the writer's default quality blurs the gray band past STEP (all readers alike)
        assert frame_ids(some).tolist() == idx and frame_ids(every).tolist() == list(range(40))


@needs_torchcodec
def test_short_video_clamps_and_absurd_fps_counts_frames(tmp_path):
    short = write_test_video(str(tmp_path / "short.mp4"), num_frames=20)
    assert frame_ids(_same_as_pyav(short, [18, 19, 20, 35])).tolist() == [18, 19, 19, 19]
    fast = str(tmp_path / "fast.mp4")
    write_video(fast, make_frames(20), fps=2400, gop=4)
    r = build_reader(fast, "torchcodec")
    assert r.fps is None and r.num_frames == 20 and frame_ids(r.get_frames([19, 5])).tolist() == [19, 5]


@needs_torchcodec
@pytest.mark.parametrize("kind", ["zero_byte", "text", "truncated", "audio_only", "no_frames", "missing"])
def test_bad_files_raise_video_decode_error_with_path(tmp_path, videos, kind):
    path = bad_file(kind, tmp_path, videos["mp4"])
    with pytest.raises(VideoDecodeError) as e:
        build_reader(path, "torchcodec").get_frames(range(40))
    assert e.value.path == path and str(e.value).startswith(path) and e.value.reason


@needs_torchcodec
@pytest.mark.parametrize("fmt", ["kinetics", "ssv2"])
def test_synthetic_videos_and_dataset_items_match_pyav(tmp_path, fmt):
    from video_iared.synthetic.generator import generate_synthetic

    root = str(tmp_path / fmt)
    generate_synthetic(root, num_classes=2, videos_per_class=(1, 0, 1), num_frames=24, size=(32, 32), fmt=fmt)
    paths = sorted(glob.glob(os.path.join(root, "**", "*.mp4"), recursive=True)
                   + glob.glob(os.path.join(root, "**", "*.webm"), recursive=True))
    assert len(paths) == 4
    for p in paths:
        _same_as_pyav(p, [23, 0, 11, 12, 5])


@needs_torchcodec
def test_clip_dataset_items_equal_with_either_backend(data_dir, tmp_path):
    from engine_fixtures import tiny_cfg
    from video_iared.data.build import build_dataset, decoding_device

    data = data_dir
    items = {}
    for backend in ("pyav", "torchcodec"):
        cfg = tiny_cfg(data, str(tmp_path / "out"), ["DATA.DECODING_BACKEND", backend])
        assert decoding_device(cfg) == "cpu"  # no CUDA here (NUM_GPUS 0 in the tiny config)
        ds = build_dataset(cfg, "test")
        items[backend] = [ds[i] for i in range(3)]
    for a, t in zip(items["pyav"], items["torchcodec"]):
        assert np.array_equal(a["clip"].numpy(), t["clip"].numpy()) and a["label"] == t["label"]


def test_missing_torchcodec_is_one_clear_error(monkeypatch):
    torchcodec_reader._decoder_class.cache_clear()
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # as if the extra were not installed
    try:
        with pytest.raises(BackendUnavailableError, match=r"pip install -e \.\[torchcodec\]"):
            check_backend("torchcodec")
        with pytest.raises(ImportError):  # an ImportError: load_frames lets it through, no bad-video count
            build_reader("any.mp4", "torchcodec")
    finally:
        torchcodec_reader._decoder_class.cache_clear()
    with pytest.raises(ValueError, match="needs the torchcodec backend"):
        build_reader("any.mp4", "pyav", device="cuda")


def test_run_net_without_torchcodec_prints_one_error_line(monkeypatch, data_dir, tmp_path, capsys):
    from engine_fixtures import tiny_opts
    from video_iared.tools_main import run_net

    data = data_dir
    torchcodec_reader._decoder_class.cache_clear()
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # as if the extra were not installed
    try:
        cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                           "synthetic_dense.yaml")
        rc = run_net(["--cfg", cfg] + tiny_opts(data, str(tmp_path / "out"), ["DATA.DECODING_BACKEND", "torchcodec"]))
    finally:
        torchcodec_reader._decoder_class.cache_clear()
    # without BackendUnavailableError among the user errors, run_net raised it (a traceback) instead of returning 1
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip().splitlines()[-1].startswith("error: DATA.DECODING_BACKEND torchcodec: the torchcodec package")
