"""``train_iared`` end to end on real encoded videos: curriculum stages, finetune, checkpoints, stats lines."""
import json
import os

import pytest
import torch

from engine_fixtures import tiny_cfg
from video_iared.checkpoint.io import CheckpointError, save_checkpoint
from video_iared.build import timesformer_kwargs
from video_iared.models.timesformer import TimeSformer


def test_train_iared_runs_every_stage(data_dir, tmp_path):
    from video_iared.engine.train_iared import train_iared
    from video_iared.build import build_iared_model
    from video_iared.checkpoint import load_checkpoint

    out = str(tmp_path / "out")
    cfg = tiny_cfg(data_dir, out, ["IARED.ENABLE", "True", "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO", "[0.5, 0.5]",
                                   "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8", "IARED.CURRICULUM_EPOCHS", "2",
                                   "IARED.FINETUNE_EPOCHS", "1", "IARED.BASE_LR", "0.01", "IARED.BASELINE", "greedy",
                                   "IARED.FINETUNE_DISTILL", "0.5"])
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(cfg))
    dense_path = save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=None)
    final = train_iared(cfg, dense_path)
    assert os.path.isfile(final)
    for s in range(2):
        assert os.path.isfile(os.path.join(out, "checkpoints", f"iared_stage_{s:02d}.pyth"))
    lines = [json.loads(l) for l in open(os.path.join(out, "stats.jsonl"))]
    cur = [l for l in lines if l["stage"] == "iared_curriculum"]
    val = [l for l in lines if l["stage"] == "iared_val"]
    assert [(l["curriculum_stage"], l["epoch"]) for l in cur] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all("keep_rate_g0" in l and "keep_rate_g1" in l and "train_reward" in l for l in cur)
    assert all("top1_sampled" in l and "top1_threshold" in l for l in val)
    assert any(l["stage"] == "iared_finetune" for l in lines)
    # at stage 0 the second group keeps what the first kept
    assert cur[0]["keep_rate_g1"] == pytest.approx(cur[0]["keep_rate_g0"])

    model = build_iared_model(cfg)
    load_checkpoint(final, model)  # strict: interpreters and backbone all present
    sd_dense = dense.state_dict()
    # stages froze the backbone, the finetune changed it; the interpreters were trained
    assert not torch.equal(model.state_dict()["head.weight"], sd_dense["head.weight"])
    stage0 = torch.load(os.path.join(out, "checkpoints", "iared_stage_00.pyth"), weights_only=True)["model_state"]
    assert torch.equal(stage0["head.weight"], sd_dense["head.weight"])
    assert torch.equal(stage0["blocks.0.attn.qkv.weight"], sd_dense["blocks.0.attn.qkv.weight"])

    # the engine's test stage: per-clip fvcore GFLOPs, keep rates per video, the cost summary
    from video_iared.engine.multiview_test import test

    summary = test(cfg, checkpoint=final, label="IA-RED²")
    cost = summary["cost"]
    assert cost["videos"] == summary["videos"] > 0
    assert cost["gflops_min"] <= cost["gflops_mean"] <= cost["gflops_max"] <= cost["dense_gflops"]
    assert len(cost["keep_rate_per_group"]) == 2
    assert 0.0 < cost["gflops_fraction_analytic"] <= 1.0
    import csv

    rows = list(csv.DictReader(open(summary["predictions_csv"])))
    assert all(float(r["gflops"]) > 0 and len(r["keep_rates"].split()) == 2 for r in rows if r["status"] == "ok")

    # with no checkpoint named, the test stage of an IA-RED² config finds the curriculum's final checkpoint
    from video_iared.engine.multiview_test import build_test_model

    found = build_test_model(cfg, torch.device("cpu"))
    final_sd = torch.load(final, weights_only=True)["model_state"]
    assert all(torch.equal(v, final_sd[k]) for k, v in found.state_dict().items())


def test_target_cost_calibrates_the_threshold_for_the_test_stage(data_dir, tmp_path):
    """IARED.TARGET_COST: the threshold is calibrated on the val split after the curriculum and after the
    finetune, saved in the final checkpoint, and the test stage runs at it; a checkpoint without a calibration
    (or one made for another budget) is refused by name."""
    from video_iared.engine.multiview_test import build_test_model
    from video_iared.engine.train_iared import train_iared

    out = str(tmp_path / "out")
    opts = ["IARED.ENABLE", "True", "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO", "[0.5, 0.5]",
            "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8",
            "IARED.CURRICULUM_EPOCHS", "1", "IARED.FINETUNE_EPOCHS", "1", "IARED.INIT_KEEP_PROB", "0.9",
            "IARED.TARGET_COST", "0.5"]  # interpreters start near keep-all: over the budget at threshold 0.5
    cfg = tiny_cfg(data_dir, out, opts)
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(cfg))
    dense_path = save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=None)
    final = train_iared(cfg, dense_path)
    rec = torch.load(final, weights_only=True)["iared_calibration"]
    lines = [json.loads(l) for l in open(os.path.join(out, "stats.jsonl"))]
    cal = [l for l in lines if l["stage"] == "iared_calibration"]
    assert [l["after"] for l in cal] == ["curriculum", "finetune"]
    assert rec["threshold"] == cal[-1]["threshold"] >= cal[0]["threshold"] > 0.5  # raised: a bisection ran
    assert cal[0]["tried"][0][0] == 0.5 and cal[0]["tried"][0][1] > 0.5  # started over the budget
    assert rec["cost_fraction"] <= 0.5 and rec["target_cost"] == 0.5 and rec["clips"] > 0
    print("calibration points:", [l["tried"] for l in cal])

    model = build_test_model(cfg, torch.device("cpu"), final)
    assert model.threshold == rec["threshold"]
    with pytest.raises(CheckpointError, match="calibrated for 0.5"):
        build_test_model(tiny_cfg(data_dir, out, opts[:-1] + ["0.4"]), torch.device("cpu"), final)
    stage = os.path.join(out, "checkpoints", "iared_stage_01.pyth")
    with pytest.raises(CheckpointError, match="iared_stage_01.pyth carries no calibrated threshold"):
        build_test_model(cfg, torch.device("cpu"), stage)


def test_train_iared_does_not_depend_on_the_rng_state_before_it(data_dir, tmp_path):
    """``make demo`` trains and tests the dense model before ``train_iared``; a run with IARED.DENSE_CHECKPOINT
    calls it straight away. Whatever the RNG went through before, the IA-RED² model must come out the same."""
    from video_iared.engine.train_iared import train_iared

    opts = ["IARED.ENABLE", "True", "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO", "[0.5, 0.5]",
            "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8", "IARED.CURRICULUM_EPOCHS", "1", "IARED.FINETUNE_EPOCHS", "0"]
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(tiny_cfg(data_dir, str(tmp_path), opts)))
    dense_path = save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=None)
    finals = []
    for i, history in enumerate((1, 12345)):
        torch.manual_seed(history)
        torch.rand(history % 97)  # some other use of the RNG before
        final = train_iared(tiny_cfg(data_dir, str(tmp_path / f"run{i}"), opts), dense_path)
        finals.append(torch.load(final, weights_only=True)["model_state"])
    assert finals[0].keys() == finals[1].keys()
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_per_group_calibration_reaches_the_test_stage(data_dir, tmp_path):
    """IARED.CALIBRATION_PER_GROUP: the final checkpoint carries one threshold per group (and their keep
    fraction), the test stage's model runs at them."""
    from video_iared.engine.multiview_test import build_test_model
    from video_iared.engine.train_iared import train_iared

    out = str(tmp_path / "out")
    opts = ["IARED.ENABLE", "True", "IARED.GROUPS", "[1, 1]", "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8",
            "IARED.KEEP_RATIO", "[0.5, 0.5]", "IARED.CURRICULUM_EPOCHS", "1", "IARED.FINETUNE_EPOCHS", "0",
            "IARED.INIT_KEEP_PROB", "0.9", "IARED.TARGET_COST", "0.5", "IARED.CALIBRATION_PER_GROUP", "True"]
    cfg = tiny_cfg(data_dir, out, opts)
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(cfg))
    final = train_iared(cfg, save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=None))
    rec = torch.load(final, weights_only=True)["iared_calibration"]
    assert isinstance(rec["threshold"], list) and len(rec["threshold"]) == 2 and 0.0 < rec["group_keep"] < 1.0
    assert rec["cost_fraction"] <= 0.5 and rec["target_cost"] == 0.5
    cal = [json.loads(l) for l in open(os.path.join(out, "stats.jsonl"))]
    assert [l["threshold"] for l in cal if l["stage"] == "iared_calibration"] == [rec["threshold"]]
    model = build_test_model(cfg, torch.device("cpu"), final)
    assert model.threshold == tuple(rec["threshold"])


def test_keep_ratio_mode_is_calibrated_to_the_budget(data_dir, tmp_path):
    """IARED.MODE keep_ratio with IARED.TARGET_COST: the keep ratio (the same in every group) is set to the budget,
    saved in the final checkpoint and used by the test stage."""
    from video_iared.engine.multiview_test import build_test_model
    from video_iared.engine.train_iared import train_iared

    out = str(tmp_path / "out")
    opts = ["IARED.ENABLE", "True", "IARED.GROUPS", "[1, 1]", "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8",
            "IARED.CURRICULUM_EPOCHS", "1", "IARED.FINETUNE_EPOCHS", "1", "IARED.MODE", "keep_ratio",
            "IARED.KEEP_RATIO", "[1.0, 1.0]", "IARED.TARGET_COST", "0.5"]
    cfg = tiny_cfg(data_dir, out, opts)
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(cfg))
    final = train_iared(cfg, save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=None))
    rec = torch.load(final, weights_only=True)["iared_calibration"]
    r = rec["keep_ratio"]
    assert "threshold" not in rec and len(r) == 2 and r[0] == r[1] and 0.0 < r[0] < 1.0
    assert rec["cost_fraction"] <= 0.5 and rec["target_cost"] == 0.5
    model = build_test_model(cfg, torch.device("cpu"), final)
    assert model.mode == "keep_ratio" and model.keep_ratio == r
    with pytest.raises(CheckpointError, match="calibrated in keep_ratio mode"):  # tested in the other mode
        build_test_model(tiny_cfg(data_dir, out, opts[:-5] + ["threshold"] + opts[-4:]), torch.device("cpu"), final)
