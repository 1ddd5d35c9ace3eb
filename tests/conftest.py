"""Fixtures shared by the test modules.

The plain helper modules next to this file (not collected: their names do not match ``test_*.py``) keep the
functions that tests and subprocess scripts call directly:

- ``engine_fixtures``: ``ROOT``, ``PYTHON``, ``tiny_opts`` / ``tiny_cfg`` (the tiny-model config),
  ``make_dataset`` (generate the tiny synthetic benchmark into a folder), ``load_tool``, ``write_broken_video``;
- ``data_fixtures``: self-identifying encoded videos (``make_frames``, ``write_test_video``, ``frame_ids``),
  ``write_bframes_video``, ``bad_file``, ``write_list``;
- ``pruning_fixtures``: ``packed_and_masked``.

The fixtures below build the synthetic data once per session (PyAV encodes real videos) and hand it out:

- ``synthetic_dataset``: a factory copying the tiny synthetic benchmark (24 train, 8 val, 12 test videos,
  generated once) into a folder of the caller's, which the caller may then change;
- ``data_dir``: one such copy per test module;
- ``tiny_config``: ``tiny_cfg`` on the module's ``data_dir`` with the test's ``tmp_path`` as OUTPUT_DIR;
- ``encoded_videos``: read-only 40-frame self-identifying videos (mp4 H.264, webm VP9, avi MPEG-4 at gop 8;
  ``bframes``: H.264 with B-frames), shared by every test that only reads them.
"""
from __future__ import annotations

import os
import shutil
import stat

import pytest

from data_fixtures import write_bframes_video, write_test_video
from engine_fixtures import make_dataset, tiny_cfg


@pytest.fixture(scope="session")
def _synthetic_master(tmp_path_factory) -> str:
    """The tiny synthetic benchmark, generated once per session; only copies of it are handed out."""
    return make_dataset(str(tmp_path_factory.mktemp("synthetic_master") / "data"))


@pytest.fixture(scope="session")
def synthetic_dataset(_synthetic_master):
    """``synthetic_dataset(dest) -> str``: a private copy of the tiny synthetic benchmark at ``dest`` (which must
    not exist yet), up to date for ``tiny_cfg`` (its meta.json is copied: nothing is regenerated)."""

    def copy(dest) -> str:
        return shutil.copytree(_synthetic_master, str(dest))

    return copy


@pytest.fixture(scope="module")
def data_dir(synthetic_dataset, tmp_path_factory) -> str:
    """The tiny synthetic benchmark, one copy per test module (its tests may add to it)."""
    return synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data")


@pytest.fixture
def tiny_config(data_dir, tmp_path):
    """``tiny_config(extra=None, out_dir=None)``: ``tiny_cfg`` on the module's ``data_dir``, OUTPUT_DIR the test's
    ``tmp_path`` unless ``out_dir`` is given."""

    def make(extra=None, out_dir=None):
        return tiny_cfg(data_dir, str(out_dir or tmp_path), extra)

    return make


@pytest.fixture(scope="session")
def encoded_videos(tmp_path_factory) -> dict:
    """{"mp4", "webm", "avi": 40-frame 48x64 self-identifying videos at 16 fps, gop 8; "bframes": the same frames
    as H.264 with B-frames}, written once per session and read-only (a test that needs to change one copies it)."""
    d = tmp_path_factory.mktemp("encoded_videos")
    out = {ext: write_test_video(str(d / f"v.{ext}"), num_frames=40, gop=8) for ext in ("mp4", "webm", "avi")}
    out["bframes"] = write_bframes_video(str(d / "b.mp4"))
    for path in out.values():
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return out
