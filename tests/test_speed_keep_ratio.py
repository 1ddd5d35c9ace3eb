"""The keep-ratio speed table (tools/benchmark.py --speed on an IA-RED² config) on a tiny model: one row per
(keep rate, batch size) plus dense, fvcore GFLOPs falling with the keep rate, the machine-readable last line."""
import re

import pytest

from engine_fixtures import ROOT, load_tool
from video_iared.config import get_cfg
from video_iared.benchmarks.keep_ratio_speed import keep_ratio_speed_table


def test_keep_ratio_table_rows_and_last_line(capsys):
    cfg = get_cfg()
    cfg.merge_from_file("configs/k400.yaml")
    cfg.merge_from_list(["TIMESFORMER.EMBED_DIM", 32, "TIMESFORMER.NUM_HEADS", 2, "TIMESFORMER.DEPTH", 3,
                         "IARED.GROUPS", [1, 1, 1], "IARED.HEAD_DIM", 8, "IARED.NUM_HEADS", 2,
                         "DATA.NUM_FRAMES", 4, "DATA.TEST_CROP_SIZE", 32, "DATA.TRAIN_CROP_SIZE", 32])
    out = keep_ratio_speed_table(cfg, keep_rates=(0.7, 0.3), batch_sizes=(1, 2), warmup=0, reps=2)
    rows = out["rows"]
    assert [(r["keep"], r["batch"]) for r in rows] == [(None, 1), (0.7, 1), (0.3, 1), (None, 2), (0.7, 2), (0.3, 2)]
    assert rows[0]["gflops"] > rows[1]["gflops"] > rows[2]["gflops"] > 0
    assert all(len(r["times_s"]) == 2 and len(r["cpu_s"]) == 2 for r in rows)
    assert out["min_ratio"] == min(r["ratio"] for r in rows if r["keep"] is not None)
    # the narrow (head dim 4) forwards: one per model at batch 1, printed before the last line
    narrow = out["narrow_ms_b1"]
    assert narrow.pop("width") == 8 and set(narrow) == {"dense", "keep 0.7", "keep 0.3"} and min(narrow.values()) > 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-3].startswith("the same batch-1 forwards at width 8 (head dim 4; the kept")  # 2 heads x 4, printed[-3]
    last = printed[-1]
    m = re.fullmatch(r"min_speedup_to_gflops_ratio=([0-9.]+) dense_ms_b1=([0-9.]+)", last)
    assert m and float(m.group(1)) == round(out["min_ratio"], 4)
    assert abs(float(m.group(2)) - out["dense_ms_b1"]) < 0.01


def test_benchmark_tool_takes_trailing_overrides_and_explicit_batch_sizes(capsys):
    tool = load_tool("benchmark")
    tiny = ["TIMESFORMER.EMBED_DIM", "32", "TIMESFORMER.NUM_HEADS", "2", "TIMESFORMER.DEPTH", "2",
            "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO", "[0.5, 0.5]", "IARED.HEAD_DIM", "8", "IARED.NUM_HEADS", "2",
            "DATA.NUM_FRAMES", "4", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_CROP_SIZE", "32"]
    # overrides after the flags (as in run_net.py), and --batch-sizes 1 4 (the dense table's default) honoured
    # --malloc default: leave the allocator of this (pytest) process as the other tests expect it
    rc = tool.main(["--cfg", str(ROOT / "configs" / "k400.yaml"), "--speed", "--keep-ratios", "0.5",
                    "--batch-sizes", "1", "4", "--warmup", "0", "--reps", "1", "--malloc", "default"] + tiny)
    printed = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    header = next(i for i, line in enumerate(printed) if line.split()[:2] == ["keep", "tokens"])
    rows = [line.split() for line in printed[header + 1:header + 5]]
    assert [(r[0], r[-7]) for r in rows] == [("dense", "1"), ("0.50", "1"), ("dense", "4"), ("0.50", "4")]
    assert re.fullmatch(r"min_speedup_to_gflops_ratio=[0-9.]+ dense_ms_b1=[0-9.]+", printed[-1])


def test_benchmark_tool_refuses_misplaced_overrides(capsys):
    tool = load_tool("benchmark")
    cfg = str(ROOT / "configs" / "synthetic.yaml")
    for argv, says in [
        (["--cfg", cfg, "--speed", "OUTPUT_DIR", "/tmp/x", "--reps", "1"], "options after the KEY VALUE"),
        (["--cfg", cfg, "--methods", "OUTPUT_DIR", "/tmp/x"], "unknown --methods OUTPUT_DIR /tmp/x"),
    ]:
        with pytest.raises(SystemExit) as e:  # refused while parsing: before the allocator is touched
            tool.main(argv)
        assert e.value.code == 2 and says in capsys.readouterr().err
