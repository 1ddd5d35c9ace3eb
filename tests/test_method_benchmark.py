"""The method benchmark (tools/benchmark.py --methods): its --quick form end to end on real encoded videos."""
import csv
import os

import pytest
import torch

from engine_fixtures import ROOT, load_tool, make_dataset, tiny_cfg, tiny_opts
from video_iared.benchmarks.method_variants import (
    ratio_token_fraction,
    tome_r_for_fraction,
    tome_token_counts,
)
from video_iared.profiling.memory import PeakRSS

EXTRA = ["TIMESFORMER.DEPTH", "4", "IARED.GROUPS", "[2, 2]", "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8",
         "IARED.KEEP_RATIO", "[0.5, 0.5]", "MODEL.DROPPATH_RATE", "0.0"]


def test_budget_arithmetic():
    assert ratio_token_fraction([2, 2], 0.5) == pytest.approx((2 * 0.5 + 2 * 0.25) / 4)
    assert tome_token_counts(16, 4, 3) == [13, 10, 7, 4]
    assert tome_token_counts(4, 4, 10) == [2, 1, 1, 1]  # capped by the A set, stops at one token
    r = tome_r_for_fraction(64, 4, 0.6)
    f = sum(tome_token_counts(64, 4, r)) / 256
    for other in (r - 1, r + 1):
        assert abs(f - 0.6) <= abs(sum(tome_token_counts(64, 4, other)) / 256 - 0.6)


def test_per_group_thresholds_are_rows_of_their_own():
    """``--thresholds 0.5 0.45/0.87``: a tuple is one threshold per group; the row's policy carries it."""
    import argparse

    from video_iared.benchmarks.method_options import parse_threshold
    from video_iared.benchmarks.method_variants import build_variants
    from video_iared.pruning.iared import IAREDTimeSformer

    assert parse_threshold("0.5") == 0.5 and parse_threshold("0.45/0.87") == (0.45, 0.87)
    with pytest.raises(argparse.ArgumentTypeError, match="one per group"):
        parse_threshold("0.4,0.8")
    kw = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    iared = IAREDTimeSformer(groups=(1, 1), interp_heads=2, interp_head_dim=8, **kw)
    rows = build_variants(iared, iared, ["iared_threshold"], [1, 1], [], [0.5, (0.45, 0.87)], None, kw,
                          calibrated=(0.45, 0.87))
    assert [v.budget for v in rows] == ["thr 0.5", "thr 0.45/0.87 (calibrated)"]
    assert [v.model.policy.threshold for v in rows] == [0.5, (0.45, 0.87)]


def test_peak_rss_sees_an_allocation():
    import mmap

    # fresh pages from the kernel: RSS grows whatever the allocator keeps from earlier tests (--malloc retain)
    with PeakRSS() as p:
        big = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(big), mmap.PAGESIZE):
            big[offset] = 1  # touched
    big.close()
    assert p.peak - p.start > 40 * 2**20


@pytest.mark.slow
def test_quick_methods_benchmark_end_to_end(synthetic_dataset, tmp_path, capsys):
    from video_iared.checkpoint.io import save_checkpoint
    from video_iared.build import timesformer_kwargs
    from video_iared.models.timesformer import TimeSformer
    from video_iared.build import iared_kwargs
    from video_iared.pruning.decisions import PolicyBound, PruningPolicy
    from video_iared.pruning.iared import IAREDTimeSformer

    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    synthetic_dataset(data)
    cfg = tiny_cfg(data, out, EXTRA)
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(cfg))
    iared = IAREDTimeSformer(**iared_kwargs(cfg), **timesformer_kwargs(cfg))
    iared.load_state_dict(dense.state_dict(), strict=False)
    dense_ck = save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=dense.arch())
    # as train_iared saves it with IARED.TARGET_COST: the benchmark adds the calibrated threshold's row
    calibration = {"threshold": 0.55, "target_cost": 0.5, "cost_fraction": 0.49, "top1": 50.0, "clips": 8}
    iared_ck = save_checkpoint(str(tmp_path / "iared.pyth"), iared, 1, arch=iared.arch(),
                               extra={"iared_calibration": calibration})

    # --malloc default: the allocator of this (pytest) process stays as the other tests expect it
    rc = load_tool("benchmark").main(["--methods", "--quick", "--dense-checkpoint", dense_ck, "--iared-checkpoint", iared_ck,
                            "--out-dir", str(tmp_path / "bench"), "--malloc", "default",
                            "--cfg", os.path.join(ROOT, "configs", "synthetic_dense.yaml"),
                            *tiny_opts(data, out, EXTRA)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| dense |" in printed and "IA-RED² threshold" in printed
    bench = tmp_path / "bench"
    for name in ("methods.md", "methods.csv", "methods.json", "acc_vs_gflops.png", "acc_vs_latency.png"):
        assert (bench / name).stat().st_size > 0, name
    assert (bench / "acc_vs_gflops.png").read_bytes()[:4] == b"\x89PNG"
    with open(bench / "methods.csv") as f:
        rows = list(csv.DictReader(f))
    methods = [r["method"] for r in rows]
    # --quick: two budgets per method, dense once; the thresholds 0.3, 0.5 and the checkpoint's calibrated 0.55
    assert methods == ["dense"] + ["random"] * 2 + ["evit"] * 2 + ["tome"] * 2 + ["iared_ratio"] * 2 + \
        ["iared_threshold"] * 3
    assert [r["budget"] for r in rows if r["method"] == "iared_threshold"] == ["thr 0.3", "thr 0.5",
                                                                               "thr 0.55 (calibrated)"]
    by = {(r["method"], r["budget"]): r for r in rows}
    dense_g = float(by[("dense", "")]["gflops"])
    for m in ("random", "evit", "iared_ratio"):
        g07, g05 = float(by[(m, "keep 0.7")]["gflops"]), float(by[(m, "keep 0.5")]["gflops"])
        assert g05 < g07 < dense_g, (m, g05, g07, dense_g)
    for r in rows:
        assert 0.0 <= float(r["top1"]) <= 100.0
        assert float(r["ms_b1"]) > 0 and float(r["clips_per_s_b2"]) > 0
        assert float(r["ms_b1_min"]) <= float(r["ms_b1"]) <= float(r["ms_b1_max"])
    # IA-RED² rows: GFLOPs over every test view (4 videos x their views), the other rows over the traced view
    views = {r["gflops_views"] for r in rows if r["method"].startswith("iared")}
    assert len(views) == 1 and int(views.pop()) > 1
    assert {r["gflops_views"] for r in rows if not r["method"].startswith("iared")} == {"1"}
    # a higher threshold keeps fewer tokens (random interpreters still give per-token probabilities around 0.5)
    assert float(by[("iared_threshold", "thr 0.5")]["token_fraction"]) < \
        float(by[("iared_threshold", "thr 0.3")]["token_fraction"])


def test_finetune_variant_model_trains_a_copy_with_the_method_active(synthetic_dataset, tmp_path):
    """A row's finetune trains a copy at the row's budget (the random baseline keeps exactly half its tokens in
    every training forward), leaves the shared model untouched, and returns it in eval mode."""
    from video_iared.benchmarks.baseline_finetune import finetune_variant_model, recipe_from_cfg
    from video_iared.data.loader import build_loader
    from video_iared.build import timesformer_kwargs
    from video_iared.baselines.token_reduction import Budget, build_baseline
    from video_iared.models.timesformer import TimeSformer
    from video_iared.pruning.decisions import PolicyBound

    data = str(tmp_path / "data")
    synthetic_dataset(data)
    cfg = tiny_cfg(data, str(tmp_path / "out"), EXTRA + ["IARED.FINETUNE_LR", "0.01"])
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(cfg))
    base = build_baseline("random", dense, [2, 2], [1.0, 1.0], seed=0, timesformer_kwargs=timesformer_kwargs(cfg))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    seen = []  # (training, budget) of every forward of the copy: the hook travels with the deepcopy
    base.register_forward_hook(lambda m, a, kw, o: seen.append((m.training, kw.get("policy"))), with_kwargs=True)
    recipe = recipe_from_cfg(cfg, 1)
    recipe.drop_path_rate = 0.1  # the eval-built model has none: the finetune puts the config's back
    row = PolicyBound(base, Budget(keep_ratio=(0.5, 0.5)))
    tuned = finetune_variant_model(row, build_loader(cfg, "train"), recipe, torch.device("cpu"), "random keep 0.5")
    train_budgets = [b for training, b in seen if training]
    assert train_budgets == [Budget(keep_ratio=(0.5, 0.5))] * 3  # 24 videos / 8 per batch
    assert isinstance(tuned, PolicyBound) and tuned.policy == row.policy and tuned.model is not base
    with torch.no_grad():
        _, decisions = tuned(torch.zeros(2, 3, 4, 32, 32), return_decisions=True)
    assert torch.equal(decisions.keep_rates, torch.tensor([[0.5, 0.25]] * 2))  # the budget's exact counts
    assert isinstance(tuned.model.blocks[0].drop_path, torch.nn.Identity)
    assert tuned.model.blocks[3].drop_path.drop_prob == pytest.approx(0.1)
    assert not tuned.training and not tuned.model.training and base.keep_ratio == [1.0, 1.0]
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())  # the shared model untouched
    changed = [k for k, v in tuned.model.state_dict().items() if not torch.equal(v, before[k])]
    assert "head.weight" in changed and any(k.startswith("blocks.3.") for k in changed)


def test_finetune_of_an_iared_row_trains_at_its_budget_with_the_interpreters_frozen(synthetic_dataset, tmp_path):
    """The IA-RED² keep_ratio row: its policy goes with every training forward (in train mode the model's own
    policy would sample), the interpreters stay fixed, and the copy comes back with the row's policy."""
    from video_iared.benchmarks.baseline_finetune import finetune_variant_model, recipe_from_cfg
    from video_iared.data.loader import build_loader
    from video_iared.build import timesformer_kwargs
    from video_iared.build import iared_kwargs
    from video_iared.pruning.decisions import PolicyBound, PruningPolicy
    from video_iared.pruning.iared import IAREDTimeSformer

    data = str(tmp_path / "data")
    synthetic_dataset(data)
    cfg = tiny_cfg(data, str(tmp_path / "out"), EXTRA + ["IARED.FINETUNE_LR", "0.01"])
    torch.manual_seed(0)
    model = IAREDTimeSformer(**iared_kwargs(cfg), **timesformer_kwargs(cfg))
    interp = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("interpreters.")}
    policy = PruningPolicy.uniform("keep_ratio", 2, keep_ratio=(0.5, 0.5))
    loader, recipe = build_loader(cfg, "train"), recipe_from_cfg(cfg, 1)
    seen = []
    model.register_forward_hook(lambda m, a, kw, o: seen.append((m.training, kw.get("policy"))), with_kwargs=True)
    tuned = finetune_variant_model(PolicyBound(model, policy), loader, recipe, torch.device("cpu"), "iared keep 0.5",
                                   frozen=("interpreters.",))
    assert [p for training, p in seen if training] == [policy] * 3
    assert tuned.policy == policy and not tuned.training and not tuned.model.training
    with torch.no_grad():
        _, decisions = tuned(torch.zeros(2, 3, 4, 32, 32), return_decisions=True)
    assert torch.equal(decisions.keep_rates, torch.tensor([[0.5, 0.25]] * 2))
    assert all(torch.equal(tuned.model.state_dict()[k], v) for k, v in interp.items())
    assert not torch.equal(tuned.model.head.weight, model.head.weight)


@pytest.mark.slow
def test_methods_benchmark_finetunes_the_comparison_rows(synthetic_dataset, tmp_path):
    """--finetune-epochs: every comparison row gets its own finetuned copy; the IA-RED² keep_ratio rows start from
    the curriculum's last stage checkpoint with the interpreters frozen; the threshold rows stay as trained."""
    from video_iared.benchmarks.method_benchmark import MethodBenchmarkOptions, run_method_benchmark
    from video_iared.benchmarks.method_weights import last_stage_checkpoint
    from video_iared.checkpoint.io import save_checkpoint
    from video_iared.build import timesformer_kwargs
    from video_iared.models.timesformer import TimeSformer
    from video_iared.build import iared_kwargs
    from video_iared.pruning.decisions import PolicyBound, PruningPolicy
    from video_iared.pruning.iared import IAREDTimeSformer

    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    synthetic_dataset(data)
    cfg = tiny_cfg(data, out, EXTRA)
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(cfg))
    dense_ck = save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=dense.arch())
    stage = IAREDTimeSformer(**iared_kwargs(cfg), **timesformer_kwargs(cfg))
    stage.load_state_dict(dense.state_dict(), strict=False)  # the curriculum: dense backbone, own interpreters
    ck_dir = tmp_path / "run" / "checkpoints"
    stage0 = IAREDTimeSformer(**iared_kwargs(cfg), **timesformer_kwargs(cfg))
    save_checkpoint(str(ck_dir / "iared_stage_00.pyth"), stage0, 1, arch=None)
    stage_ck = save_checkpoint(str(ck_dir / "iared_stage_01.pyth"), stage, 2, arch=None)
    final = IAREDTimeSformer(**iared_kwargs(cfg), **timesformer_kwargs(cfg))  # "finetuned": other weights
    final_ck = save_checkpoint(str(ck_dir / "checkpoint_iared.pyth"), final, 2, arch=None)
    assert last_stage_checkpoint(final_ck, 2) == stage_ck and last_stage_checkpoint("", 2) == ""
    assert last_stage_checkpoint(final_ck, 3) == ""  # the stage of another group count is not picked

    opts = MethodBenchmarkOptions(methods=["dense", "random", "evit", "tome", "iared_ratio", "iared_threshold"],
                                  dense_checkpoint=dense_ck, iared_checkpoint=final_ck, quick=True, finetune_epochs=1,
                                  out_dir=str(tmp_path / "b"))
    variants = run_method_benchmark(cfg, opts)
    tuned = {v.name: v.results.get("finetune_epochs") for v in variants}
    assert [v.method for v in variants if tuned[v.name] == 1] == ["dense"] + ["random"] * 2 + ["evit"] * 2 + \
        ["tome"] * 2 + ["iared_ratio"] * 2
    assert all(tuned[v.name] is None for v in variants if v.method == "iared_threshold")
    note = ("finetune: the dense, random drop, EViT top-k, ToMe (per frame), IA-RED² keep_ratio rows trained 1 epoch "
            "with the method active")
    assert note in (tmp_path / "b" / "methods.md").read_text()
    # each budget got its own copy: the two EViT rows no longer share weights
    evit = [v.model.model for v in variants if v.method == "evit"]
    assert evit[0] is not evit[1] and not torch.equal(evit[0].head.weight, evit[1].head.weight)
    # IA-RED² keep_ratio: the stage checkpoint's interpreters, untouched; its backbone trained from the dense one
    ratio = [v.model.model for v in variants if v.method == "iared_ratio"]
    for m in ratio:
        assert all(torch.equal(p, stage.state_dict()[k]) for k, p in m.state_dict().items() if k.startswith("interp"))
        assert not torch.equal(m.head.weight, dense.head.weight)
    thr = next(v.model.model for v in variants if v.method == "iared_threshold")
    assert all(torch.equal(p, final.state_dict()[k]) for k, p in thr.state_dict().items())
    with pytest.raises(ValueError, match="--finetune-epochs needs the accuracy run"):
        run_method_benchmark(cfg, MethodBenchmarkOptions(methods=["dense"], dense_checkpoint="", iared_checkpoint="",
                                                         accuracy=False, finetune_epochs=1, quick=True,
                                                         out_dir=str(tmp_path / "c")))
