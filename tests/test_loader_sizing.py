"""tools/benchmark_loader.py --sizing on small Kinetics-like videos: every backend gets a row, per-worker rates
follow from the per-clip times, workers per GPU = ceil(GPU rate / per-worker rate); an unavailable backend is
a row with its reason."""
import math
import sys

import pytest

from engine_fixtures import ROOT
from video_iared.benchmarks import loader_sizing
from video_iared.data.readers import torchcodec_reader

sys.path.insert(0, str(ROOT / "tools"))
import benchmark_loader  # noqa: E402

OPTS = ["DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "4", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "TEST.NUM_SPATIAL_CROPS", "3"]


def test_kinetics_like_frames_move():
    f = loader_sizing.kinetics_like_frames(seconds=0.2, fps=30, height=48, width=64)
    assert f.shape == (6, 48, 64, 3) and f.dtype.name == "uint8"
    assert (f[1][:, :-3] == f[0][:, 3:]).mean() > 0.5 and not (f[1] == f[0]).all()  # scrolled by 3 px


def test_sizing_rows_and_cli(tmp_path, capsys, monkeypatch):
    data = str(tmp_path / "v")
    loader_sizing.write_sizing_videos(data, 2, seconds=1.0, fps=30, height=48, width=64, gop=15)  # kept by --sizing
    argv = ["--cfg", str(ROOT / "configs" / "k400_dense.yaml"), "--sizing", data, "--sizing-videos", "2",
            "--sizing-clips", "2", "--gpu-train-clips-per-s", "500", "--gpu-test-views-per-s", "2000"]
    assert benchmark_loader.main(argv + OPTS) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sizing backend=")]
    assert [line.split()[1] for line in lines] == ["backend=pyav", "backend=decord", "backend=torchcodec"]
    for line in lines:
        f = dict(kv.split("=") for kv in line.split()[1:])
        rate, test_rate = float(f["train_clips_per_s_per_worker"]), float(f["test_views_per_s_per_worker"])
        # decode_ms and transform_ms are printed to 0.1 ms: their exact sum lies within 0.1 ms of the printed one
        printed = float(f["decode_ms"]) + float(f["transform_ms"])
        assert 1000 / (printed + 0.1) * 0.995 <= rate <= 1000 / max(printed - 0.1, 1e-3) * 1.005
        assert float(f["uint8_clips_per_s_per_worker"]) >= rate
        # printed rates are rounded to 2 decimals: the ceiling of the exact ratio is one of these
        assert int(f["workers_per_gpu_train"]) in {math.ceil(500 / rate * (1 + e)) for e in (-1e-3, 0, 1e-3)}
        assert int(f["workers_per_gpu_test"]) in {math.ceil(2000 / test_rate * (1 + e)) for e in (-1e-3, 0, 1e-3)}
    torchcodec_reader._decoder_class.cache_clear()
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # as if torchcodec were not installed
    try:
        assert benchmark_loader.main(["--backends", "pyav", "torchcodec"] + argv + OPTS) == 0
    finally:
        torchcodec_reader._decoder_class.cache_clear()
    out = capsys.readouterr().out
    assert "sizing backend=pyav decode_ms=" in out and "sizing backend=torchcodec skipped:" in out
