"""The method table's paired intervals (benchmarks.method_compare) on hand-made per-video correctness."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from video_iared.benchmarks.method_compare import (add_paired_top1, compare_fields, matched_markdown, matched_pairs,
                                                   matched_rows)
from video_iared.benchmarks.method_outputs import _error_bars, csv_columns, markdown_table, plot
from video_iared.benchmarks.variant import Variant
from video_iared.utils.bootstrap import paired_bootstrap_ci


def _records(correct, failed=()):
    """Per-video records of 2 classes, label 0: probs pick class 0 where ``correct`` is 1; None where failed."""
    out = []
    for i, c in enumerate(correct):
        probs = None if i in failed else torch.tensor([0.9, 0.1] if c else [0.2, 0.8])
        out.append({"index": i, "label": 0, "probs": probs})
    return out


def _row(method, budget, correct, token_fraction=1.0, failed=(), **results):
    v = Variant.at_budget(method, budget, nn.Identity(), token_fraction)
    v.video_records = _records(correct, failed)
    ok = [c for i, c in enumerate(correct) if i not in failed]
    v.results.update(top1=100.0 * sum(ok) / len(ok), gflops=token_fraction, ms_b1=10.0 * token_fraction, **results)
    return v


DENSE = [1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0]
IARED = [1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 0]   # one video gained, two lost vs dense
EVIT = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]    # every video lost: an interval clear of 0


def test_rows_get_the_paired_interval_against_dense_and_dense_plus_n():
    dense = _row("dense", "", DENSE)
    dense_n = _row("dense", "", IARED, finetune_epochs=3)  # "dense + 3": the dense row finetuned
    iared = _row("iared_ratio", "keep 0.7", IARED, 0.7)
    evit = _row("evit", "keep 0.7", EVIT, 0.7)
    refs = add_paired_top1([dense, dense_n, iared, evit])
    assert set(refs) == {"dense", "dense_n"} and refs["dense"] is dense and refs["dense_n"] is dense_n
    ci = paired_bootstrap_ci(IARED, DENSE)
    r = iared.results
    assert r["top1_vs_dense"] == pytest.approx(100.0 * (sum(IARED) - sum(DENSE)) / 12)  # -1/12: -8.33 points
    assert (r["top1_vs_dense_lo"], r["top1_vs_dense_hi"]) == pytest.approx((100 * ci.lower, 100 * ci.upper))
    assert r["top1_vs_dense_tie"] is True and r["top1_vs_dense_videos"] == 12 and r["top1_vs_dense_left_out"] == 0
    # against dense + 3 (the same correctness): a difference of exactly 0, a zero-width interval, a tie
    assert (r["top1_vs_dense_n"], r["top1_vs_dense_n_lo"], r["top1_vs_dense_n_hi"]) == (0.0, 0.0, 0.0)
    assert r["top1_vs_dense_n_tie"] is True
    e = evit.results
    assert e["top1_vs_dense"] == pytest.approx(-75.0) and e["top1_vs_dense_tie"] is False
    assert e["top1_vs_dense_hi"] < 0 and e["top1_vs_dense_lo"] >= -100.0
    assert "top1_vs_dense" not in dense.results  # not against itself
    assert dense_n.results["top1_vs_dense"] == pytest.approx(r["top1_vs_dense"])
    # the new CSV fields come after every existing column
    cols = csv_columns([1, 8])
    assert cols[-len(compare_fields()):] == compare_fields() and cols.index("finetune_epochs") < cols.index(
        "top1_vs_dense")
    table = markdown_table([dense, dense_n, iared, evit], [1])
    assert "Δ top-1 vs dense [95 % CI]" in table and "Δ top-1 vs dense + 3 [95 % CI]" in table
    assert f"| -8.33 [{100 * ci.lower:+.2f}, {100 * ci.upper:+.2f}] tie | +0.00 [+0.00, +0.00] tie |" in table
    evit_row = next(line for line in table.splitlines() if line.startswith("| EViT"))
    assert f"| {e['top1_vs_dense']:+.2f} [{e['top1_vs_dense_lo']:+.2f}, {e['top1_vs_dense_hi']:+.2f}] |" in evit_row


def test_failed_videos_are_left_out_of_both_rows():
    dense = _row("dense", "", DENSE)
    iared = _row("iared_threshold", "thr 0.5", IARED, 0.6, failed=(2, 9))  # its two lost videos failed
    add_paired_top1([dense, iared])
    keep = [i for i in range(12) if i not in (2, 9)]
    ci = paired_bootstrap_ci([IARED[i] for i in keep], [DENSE[i] for i in keep])
    r = iared.results
    assert r["top1_vs_dense_videos"] == 10 and r["top1_vs_dense_left_out"] == 2
    assert r["top1_vs_dense"] == pytest.approx(100 * ci.diff) == pytest.approx(10.0)
    assert r["top1_vs_dense_lo"] == pytest.approx(100 * ci.lower)
    assert "top1_vs_dense_n" not in r  # no dense + N row: against dense only


def test_matched_budget_pairs_and_error_bars(tmp_path):
    dense = _row("dense", "", DENSE)
    rows = [dense, _row("random", "keep 0.7", EVIT, 0.7), _row("random", "keep 0.5", DENSE, 0.5),
            _row("tome", "r 2", DENSE, 0.72), _row("tome", "r 4", EVIT, 0.48),
            _row("iared_ratio", "keep 0.5", IARED, 0.5), _row("iared_threshold", "thr 0.5", IARED, 0.49)]
    add_paired_top1(rows)
    pairs = matched_pairs(rows)
    got = [(p.iared.budget, p.baseline.method, p.baseline.budget) for p in pairs]
    # same budget label first, else the nearest GFLOPs (ToMe's r, the thresholded row); no EViT rows
    assert got == [("keep 0.5", "random", "keep 0.5"), ("keep 0.5", "tome", "r 4"),
                   ("thr 0.5", "random", "keep 0.5"), ("thr 0.5", "tome", "r 4")]
    ci = paired_bootstrap_ci(IARED, EVIT)
    assert pairs[1].result.ci == ci and pairs[1].result.ci.tie is False
    rec = matched_rows(pairs)[1]
    assert rec["iared_method"] == "iared_ratio" and rec["baseline_budget"] == "r 4"
    assert rec["top1_diff"] == pytest.approx(100 * ci.diff) and rec["tie"] is False and rec["videos"] == 12
    md = matched_markdown(pairs)
    assert f"| IA-RED² keep_ratio keep 0.5 | ToMe (per frame) r 4 | 0.500 / 0.480 |" in md
    assert ci.describe(100.0) in md
    # GFLOPs measured: the thresholded row is matched on them, not on its token fraction
    rows[-1].results["gflops"] = 0.71
    assert [(p.baseline.method, p.baseline.budget) for p in matched_pairs(rows) if p.iared.budget == "thr 0.5"] == \
        [("random", "keep 0.7"), ("tome", "r 2")]
    bars = _error_bars(rows[5:], "dense")
    r = rows[5].results
    assert bars[0][0] == pytest.approx(r["top1_vs_dense"] - r["top1_vs_dense_lo"])
    assert bars[1][0] == pytest.approx(r["top1_vs_dense_hi"] - r["top1_vs_dense"])
    assert _error_bars([dense], "dense") == [[0.0], [0.0]]
    path = plot(rows, "gflops", "GFLOPs", str(tmp_path / "p.png"), "t")
    assert open(path, "rb").read(4) == b"\x89PNG"
