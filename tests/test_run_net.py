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


@pytest.mark.skipif(not HAS_IARED_TRAINING, reason="video_iared.engine.train_iared is not in this tree yet")
@pytest.mark.slow
def test_dense_plus_n_is_the_dense_model_given_iared_finetune_and_changes_nothing_of_iared(data_dir, tmp_path, capsys):
    import torch

    from video_iared.benchmarks.baseline_finetune import finetune_variant_model
    from video_iared.build import build_model
    from video_iared.checkpoint import load_checkpoint
    from video_iared.config import load_config
    from video_iared.data.loader import build_loader
    from video_iared.engine.finetune import recipe_from_cfg
    from video_iared.engine.results import load_predictions

    iared_cfg = str(ROOT / "configs" / "synthetic.yaml")
    extra = ["SOLVER.MAX_EPOCH", "1", "TEST.NUM_SPATIAL_CROPS", "1", "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO",
             "[0.5, 0.5]", "IARED.CURRICULUM_EPOCHS", "1", "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8",
             "IARED.FINETUNE_EPOCHS", "2", "IARED.TARGET_COST", "0.0"]
    runs = {}
    for key in ("True", "False"):
        out = str(tmp_path / f"dense_plus_n_{key}")
        rc = run_net(["--cfg", iared_cfg] + tiny_opts(data_dir, out, extra + ["IARED.DENSE_PLUS_N", key]))
        captured = capsys.readouterr()
        assert rc == 0, captured.err[-3000:]
        runs[key] = (out, captured.out.strip().splitlines())

    out, lines = runs["True"]
    assert lines[-1].startswith("video_top1=")  # the contract: IA-RED²'s summary line stays the last
    dn = [line for line in lines if line.startswith("dense + N: video_top1=")]
    assert len(dn) == 1 and parse_summary_line(dn[0])["videos"] == 12
    assert any(line.startswith("dense: video_top1=") for line in lines)
    paired = [line.split("] ", 1)[1] for line in lines if "paired bootstrap 95 % interval" in line]
    assert [p.split(":")[0] for p in paired] == ["IA-RED² vs dense", "IA-RED² vs dense + N"]
    assert all("over 12 videos (0 left out" in p for p in paired)
    assert any("dense vs IA-RED²: video top-1" in line for line in lines)  # the old line, unchanged
    assert any("dense + N vs IA-RED²: video top-1" in line for line in lines)
    dn_dir = os.path.join(out, "dense_plus_n")
    assert len(read_predictions_csv(os.path.join(dn_dir, "predictions.csv"))) == 12
    epochs = [r for r in read_stats(os.path.join(dn_dir, "stats.jsonl")) if r["stage"] == "train_epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]

    # its weights: the dense model finetuned by the method benchmark's row finetune, the one recipe
    cfg = load_config(iared_cfg, tiny_opts(data_dir, out, extra))
    dense_cfg = cfg.clone()
    dense_cfg.defrost()
    dense_cfg.IARED.ENABLE = False
    torch.manual_seed(0)
    dense = build_model(dense_cfg)
    load_checkpoint(os.path.join(out, "dense", "checkpoints", "checkpoint_epoch_00001.pyth"), dense)
    tuned = finetune_variant_model(dense, build_loader(dense_cfg, "train"), recipe_from_cfg(cfg), torch.device("cpu"))
    ours = build_model(dense_cfg)
    load_checkpoint(os.path.join(dn_dir, "checkpoints", "checkpoint_epoch_00002.pyth"), ours)
    for (name, a), b in zip(tuned.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name

    # with the key off: no dense + N, and IA-RED²'s model and figures are the same
    off, off_lines = runs["False"]
    assert not os.path.exists(os.path.join(off, "dense_plus_n"))
    assert not any("dense + N" in line for line in off_lines)
    assert off_lines[-1] == lines[-1]
    assert sum("paired bootstrap" in line for line in off_lines) == 1
    on_pt, off_pt = (load_predictions(os.path.join(d, "predictions.pt")) for d in (out, off))
    assert torch.equal(on_pt["probabilities"], off_pt["probabilities"])
    on_w, off_w = (torch.load(os.path.join(d, "checkpoints", "checkpoint_iared.pyth"), weights_only=False)["model_state"]
                   for d in (out, off))
    assert all(torch.equal(on_w[k], off_w[k]) for k in on_w) and on_w.keys() == off_w.keys()
