"""The method benchmark (tools/benchmark.py --methods): its --quick form end to end on real encoded videos."""
import csv
import importlib.util
import os

import pytest
import torch

from engine_fixtures import ROOT, make_dataset, tiny_cfg, tiny_opts
from video_iared.analysis.method_benchmark import (
    PeakRSS,
    ratio_token_fraction,
    tome_r_for_fraction,
    tome_token_counts,
)

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


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as p:
        big = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        big += 1
        del big
    assert p.peak - p.start > 40 * 2**20


def _load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", os.path.join(ROOT, "tools", "benchmark.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_methods_benchmark_end_to_end(tmp_path, capsys):
    from video_iared.checkpoint.io import save_checkpoint
    from video_iared.models.build import timesformer_kwargs
    from video_iared.models.timesformer import TimeSformer
    from video_iared.pruning.build import iared_kwargs
    from video_iared.pruning.iared import IAREDTimeSformer

    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    make_dataset(data)
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

    rc = _load_tool().main(["--methods", "--quick", "--dense-checkpoint", dense_ck, "--iared-checkpoint", iared_ck,
                            "--out-dir", str(tmp_path / "bench"),
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
    # a higher threshold keeps fewer tokens (random interpreters still give per-token probabilities around 0.5)
    assert float(by[("iared_threshold", "thr 0.5")]["token_fraction"]) < \
        float(by[("iared_threshold", "thr 0.3")]["token_fraction"])
