"""Readers: same frames from PyAV and decord, correct indices, seeking, clamping, fps fallback, bad files."""
import logging

import numpy as np
import pytest

from data_fixtures import bad_file, frame_ids, make_frames, write_test_video
from video_iared.data.readers import VideoDecodeError, build_reader, sanitize_fps
from video_iared.utils.video_io import write_video

BACKENDS = ["pyav", "decord"]


@pytest.fixture(scope="module")
def videos(encoded_videos):
    """40-frame videos at gop 8 (conftest: written once per session, read-only)."""
    return encoded_videos


def test_frame_ids_read_back_the_written_frames():
    f = make_frames(40)
    assert frame_ids(f).tolist() == list(range(40))


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_backends_return_identical_frames(videos, ext):
    # Measured: PyAV and decord give bit-identical RGB frames on H.264 (.mp4) and VP9 (.webm) here, so the
    # tolerance is 0, not a pixel margin.
    idx = [0, 3, 9, 17, 39, 21, 21, 8]
    a = build_reader(videos[ext], "pyav").get_frames(idx)
    d = build_reader(videos[ext], "decord").get_frames(idx)
    assert a.shape == d.shape == (8, 48, 64, 3) and a.dtype == d.dtype == np.uint8
    assert np.array_equal(a, d)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_metadata_and_requested_frames(videos, backend, ext):
    r = build_reader(videos[ext], backend)
    assert r.num_frames == 40 and r.fps == pytest.approx(16.0) and r.duration == pytest.approx(2.5)
    idx = [31, 2, 2, 39, 0, 16, 15]  # unsorted, repeated, across keyframes (gop 8)
    assert frame_ids(r.get_frames(idx)).tolist() == idx
    assert frame_ids(r.get_frames(range(40))).tolist() == list(range(40))


def test_pyav_seeks_instead_of_decoding_from_the_start(videos):
    r = build_reader(videos["mp4"], "pyav")
    assert frame_ids(r.get_frames([35])).tolist() == [35]
    assert r.frames_decoded <= 8  # from keyframe 32 to 35, not 36 frames from the start
    before = r.frames_decoded
    # a union spanning two distant GOPs: decodes 0..1 and 32..34, skipping the GOPs in between by seeking
    assert frame_ids(r.get_frames([1, 34, 0, 33])).tolist() == [1, 34, 0, 33]
    assert r.frames_decoded - before <= 2 + 8


@pytest.mark.parametrize("backend", BACKENDS)
def test_indices_past_the_end_repeat_the_last_frame_logged_once(tmp_path, backend, caplog):
    path = write_test_video(str(tmp_path / f"short_{backend}.mp4"), num_frames=20)
    r = build_reader(path, backend)
    with caplog.at_level(logging.INFO, logger="video_iared.data.readers.base"):
        out = r.get_frames([18, 19, 20, 35])
        r.get_frames([60])
        build_reader(path, backend).get_frames([25])  # the same video opened again (next epoch)
    assert frame_ids(out).tolist() == [18, 19, 19, 19]
    assert sum("repeating the last frame" in m for m in caplog.messages) == 1


@pytest.mark.parametrize("value", [0, 0.0, float("nan"), float("inf"), 5000.0, None, "abc"])
def test_absurd_fps_values_fall_back(value, caplog):
    name = f"x_{value}.mp4"
    with caplog.at_level(logging.WARNING):
        assert sanitize_fps(value, name) is None
        assert sanitize_fps(value, name) is None
    assert caplog.text.count(name) == 1 and "counting frames" in caplog.text
    assert sanitize_fps(29.97) == pytest.approx(29.97)


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_with_absurd_fps_counts_frames(tmp_path, backend, caplog):
    path = str(tmp_path / f"fast_{backend}.mp4")
    write_video(path, make_frames(20), fps=2400, gop=4)
    with caplog.at_level(logging.WARNING):
        r = build_reader(path, backend)
    assert r.fps is None and r.duration is None and r.num_frames == 20
    assert "falling back to counting frames" in caplog.text
    assert frame_ids(r.get_frames([19, 5])).tolist() == [19, 5]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["zero_byte", "text", "truncated", "audio_only", "no_frames", "missing"])
def test_bad_files_raise_video_decode_error_with_path(tmp_path, videos, backend, kind):
    path = bad_file(kind, tmp_path, videos["mp4"])
    with pytest.raises(VideoDecodeError) as e:
        r = build_reader(path, backend)
        r.get_frames(range(40))  # a truncated file may open; its missing frames must not come back silently
    assert e.value.path == path and str(e.value).startswith(path) and e.value.reason


def test_bframes_h264_same_frames_from_both_readers(videos):
    # Real Kinetics files use B-frames (decode order != presentation order); frames are found by pts.
    path = videos["bframes"]
    idx = [37, 1, 13, 14, 25, 0, 39]
    a, d = build_reader(path, "pyav"), build_reader(path, "decord")
    assert a.num_frames == d.num_frames == 40
    fa = a.get_frames(idx)
    assert frame_ids(fa).tolist() == idx
    assert np.array_equal(fa, d.get_frames(idx))


def test_pyav_falls_back_to_decoding_from_the_start_when_seeking_misses(videos, caplog):
    r = build_reader(videos["mp4"], "pyav")
    r._keyframe_before = lambda index: 39  # a broken seek index: every seek lands at the end of the file
    with caplog.at_level(logging.WARNING):
        out = r.get_frames([1, 5, 35])
    assert frame_ids(out).tolist() == [1, 5, 35]
    assert "seeking missed" in caplog.text
