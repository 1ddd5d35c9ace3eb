"""``tools/run_net.py`` end to end on the tiny config: the stage flow, the outputs and the last stdout line."""
import importlib.util
import os

import pytest

from engine_fixtures import ROOT, tiny_opts
from video_iared.engine.multiview_test import parse_summary_line
from video_iared.engine.results import read_predictions_csv
from video_iared.engine.stats import read_stats
from video_iared.tools_main import run_net

CFG = str(ROOT / "configs" / "synthetic_dense.yaml")
HAS_IARED_TRAINING = importlib.util.find_spec("video_iared.engine.train_iared") is not None


def test_dense_train_then_test_ends_with_summary_line(data_dir, tmp_path, capsys):
    out = str(tmp_path / "dense")
    rc = run_net(["--cfg", CFG] + tiny_opts(data_dir, out, ["SOLVER.MAX_EPOCH", "1", "TEST.NUM_SPATIAL_CROPS", "1"]))
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    lines = captured.out.strip().splitlines()
    s = parse_summary_line(lines[-1])
    assert lines[-1].startswith("video_top1=") and s["videos"] == 12 and s["failed"] == 0 and s["views"] == 2
    assert s["gflops_per_view"] > 0
    listed = [line.split(": ", 1)[1] for line in lines if "outputs in " + out in line]
    assert listed == ["log.txt, stats.jsonl, config.yaml, checkpoints/"]
    for name in ("log.txt", "stats.jsonl", "config.yaml", "predictions.csv", "predictions.pt",
                 "checkpoints/checkpoint_epoch_00001.pyth"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert len(read_predictions_csv(os.path.join(out, "predictions.csv"))) == 12
    assert {r["stage"] for r in read_stats(os.path.join(out, "stats.jsonl"))} == {"train_iter", "train_epoch", "val"}
    # a second run resumes, finds training complete and only tests again: same figures
    assert run_net(["--cfg", CFG] + tiny_opts(data_dir, out, ["SOLVER.MAX_EPOCH", "1", "TEST.NUM_SPATIAL_CROPS", "1"])) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert any("training already complete" in line for line in again)
    assert parse_summary_line(again[-1]) == s
    # a test-only run elsewhere lists only what it wrote (no checkpoints/ folder)
    test_out = str(tmp_path / "test_only")
    assert run_net(["--cfg", CFG] + tiny_opts(data_dir, test_out, [
        "TRAIN.ENABLE", "False", "TEST.NUM_SPATIAL_CROPS", "1",
        "TEST.CHECKPOINT_FILE_PATH", os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth")])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert parse_summary_line(lines[-1]) == s
    listed = [line.split(": ", 1)[1].split(", ") for line in lines if "outputs in " + test_out in line]
    assert len(listed) == 1 and "checkpoints/" not in listed[0] and "log.txt" in listed[0]


@pytest.mark.skipif(not HAS_IARED_TRAINING, reason="video_iared.engine.train_iared is not in this tree yet")
@pytest.mark.slow
def test_iared_flow_tests_dense_then_pruned(data_dir, tmp_path, capsys):
    out = str(tmp_path / "iared")
    rc = run_net(["--cfg", str(ROOT / "configs" / "synthetic.yaml")] + tiny_opts(data_dir, out, [
        "SOLVER.MAX_EPOCH", "1", "TEST.NUM_SPATIAL_CROPS", "1", "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO",
        "[0.5, 0.5]", "IARED.CURRICULUM_EPOCHS", "1", "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8"]))
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    lines = captured.out.strip().splitlines()
    dense = [line for line in lines if line.startswith("dense: video_top1=")]
    assert len(dense) == 1
    assert lines[-1].startswith("video_top1=")
    final = parse_summary_line(lines[-1])
    assert final["videos"] == 12 and final["gflops_per_view"] > 0
    assert any("dense vs IA-RED²" in line for line in lines)
    assert os.path.isfile(os.path.join(out, "dense", "predictions.csv"))
    rows = read_predictions_csv(os.path.join(out, "predictions.csv"))
    assert all(r["keep_rates"] is not None and len(r["keep_rates"]) == 2 for r in rows)


def test_benchmark_speed_stage(data_dir, tmp_path, capsys):
    rc = run_net(["--cfg", CFG] + tiny_opts(data_dir, str(tmp_path / "b"), [
        "BENCHMARK.TYPE", "speed", "BENCHMARK.NUM_ITERS", "2", "BENCHMARK.WARMUP_ITERS", "1", "TEST.BATCH_SIZE", "2"]))
    out = capsys.readouterr().out
    assert rc == 0
    assert "dense" in out and not os.path.isdir(os.path.join(str(tmp_path / "b"), "checkpoints"))


def test_config_errors_exit_2(tmp_path, capsys):
    assert run_net(["--cfg", CFG, "TRAIN.BATCH_SIZ", "4"]) == 2
    assert "TRAIN.BATCH_SIZE" in capsys.readouterr().err  # the did-you-mean hint
    assert run_net(["--cfg", str(tmp_path / "missing.yaml")]) == 2
