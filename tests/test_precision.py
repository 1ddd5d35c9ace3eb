"""Inference precision: autocast context, float32 islands, kept-set and prediction agreement, the precision
benchmark and end-to-end timing, on tiny models and real encoded videos."""
import functools
import os

import pytest
import torch
import torch.nn.functional as F

from video_iared.benchmarks.end_to_end import format_end_to_end_table, make_video_folder, run_end_to_end
from video_iared.benchmarks.precision_check import (interpreters_in_float32, kept_set_agreement,
                                                  video_prediction_agreement)
from video_iared.benchmarks.speed import benchmark_variants, format_precision_table
from video_iared.benchmarks.variant import Variant
from video_iared.engine.ensemble import ensemble_views
from video_iared.utils.precision import (PrecisionError, float32_forward, float32_islands, float32_softmax,
                                          forward_precision,
                                          maybe_compile, precision_dtype)
from video_iared.models.timesformer import TimeSformer
from video_iared.pruning.iared import IAREDTimeSformer

T, P, SIZE = 4, 8, 32
KW = dict(img_size=SIZE, patch_size=P, num_classes=5, embed_dim=32, depth=4, num_heads=4, num_frames=T,
          drop_path_rate=0.0)


def _iared(mode="threshold", sharpen=30.0):
    """A tiny IA-RED² model whose interpreters give well separated keep probabilities (random weights put
    them all near 0.5, where any rounding flips decisions); mean kept fraction well inside (0, 1)."""
    torch.manual_seed(0)
    m = IAREDTimeSformer(groups=(2, 2), interp_heads=2, interp_head_dim=8, mode=mode, keep_ratio=[0.6, 0.6],
                         **KW).eval()
    with torch.no_grad():
        for it in m.interpreters:
            it.qk.weight.mul_(sharpen)
    return m


def _clips(n=4, seed=0):
    return torch.randn(n, 3, T, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- utils.precision
def test_fp16_on_cpu_is_refused_naming_the_key():
    with pytest.raises(PrecisionError, match="TEST.PRECISION fp16 needs a cuda device"):
        forward_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="PREDICT.PRECISION"):
        precision_dtype("fp16", torch.device("cpu"), key="PREDICT.PRECISION")
    with pytest.raises(PrecisionError, match="unknown precision 'half'"):
        forward_precision("half", "cpu")


def test_forward_precision_applies_autocast_only_for_low_precision():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with forward_precision("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
        assert lin(x).dtype == torch.float32
    with forward_precision("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
        y = lin(x)
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float(), lin(x), atol=3e-2, rtol=3e-2)


def test_float32_forward_and_softmax_stay_float32_under_autocast():
    w = torch.randn(16, 64)
    x = torch.randn(3, 64)
    plain = lambda a: F.linear(a, w)  # noqa: E731
    forced = float32_forward(plain)
    with forward_precision("bf16", "cpu"):
        low, high = plain(x), forced(x.bfloat16())  # a bf16 input is cast back up as well
        sm = float32_softmax(low)
    assert low.dtype == torch.bfloat16 and high.dtype == torch.float32
    assert torch.allclose(high, F.linear(x.bfloat16().float(), w), atol=1e-5)
    assert not torch.equal(low.float(), high)  # bf16 really rounded: the float32 island changes the result
    assert sm.dtype == torch.float32 and torch.allclose(sm, low.float().softmax(-1), atol=1e-6)
    # the ensemble contract: bf16 logits in, float32 probabilities out
    probs = ensemble_views(low, "mean_softmax")
    assert probs.dtype == torch.float32 and abs(float(probs.sum()) - 1.0) < 1e-6


def test_maybe_compile_is_identity_when_off():
    m = torch.nn.Linear(2, 2)
    assert maybe_compile(m, False) is m
    c = maybe_compile(m, True)
    assert c is not m and c._orig_mod is m  # lazily compiled at the first call (not run here: slow)


# ----------------------------------------------------------------------------- benchmarks.precision_check
def test_interpreters_in_float32_is_temporary():
    m = _iared()
    x = torch.randn(2, 1 + T * 16, 32)
    with forward_precision("bf16", "cpu"):
        # the interpreter computes its keep probabilities in float32 inside autocast (Interpreter._q_k)
        assert m.interpreters[0](x).dtype == torch.float32
        with interpreters_in_float32(m) as n:
            assert n == 4  # forward and forward_packed of 2 interpreters
            assert m.interpreters[0](x).dtype == torch.float32
        assert "forward" not in vars(m.interpreters[0])
        # the classifier head runs in float32 inside autocast (TimeSformer.forward_head), so logits are float32
        assert m(_clips(1)).dtype == torch.float32
        with float32_islands(m) as n:
            assert n == 5  # ... and the model's forward_head
            assert m(_clips(1)).dtype == torch.float32
    assert not {"forward", "forward_packed"} & set(vars(m.interpreters[0])) and "forward_head" not in vars(m)


@pytest.mark.parametrize("mode", ["threshold", "keep_ratio"])
def test_returned_decisions_are_nested_and_match_the_keep_rates(mode):
    m = _iared(mode)
    with torch.no_grad():
        _, decisions = m(_clips(), return_decisions=True)
    keeps = decisions.keep_masks.unbind(1)
    assert len(keeps) == 2 and keeps[1].le(keeps[0]).all()  # nested: the kept set only shrinks
    rates = torch.stack([k.float().mean(1) for k in keeps], 1)
    assert torch.allclose(rates, decisions.keep_rates.float(), atol=1e-6)
    assert 0.05 < float(rates[:, -1].mean()) < 0.95


def test_kept_set_agreement_fp32_is_exact_and_bf16_keeps_99_percent():
    m = _iared()
    same = kept_set_agreement(m, _clips(), precision="fp32")
    assert same["agreement"] == 1.0 and same["flips"] == 0 and same["logit_rel_err"] == 0.0
    low = kept_set_agreement(m, _clips(), precision="bf16", fp32_interpreter=True)
    assert low["tokens"] == 4 * 2 * T * 16
    assert low["agreement"] >= 0.99, low
    assert 0.0 < low["logit_rel_err"] < 0.05  # bf16 did run, and stayed close
    assert low["flips_near_threshold"] <= low["flips_decided"] <= low["flips"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    return make_video_folder(str(d), num_videos=3, height=48, width=64, num_frames=12, fps=12, gop=6)


def _multiview_batches(paths):
    ds = _multiview_dataset(paths)
    return [[ds[0], ds[1]], [ds[2]]]


def test_video_prediction_agreement_on_decoded_views(videos):
    torch.manual_seed(0)
    model = TimeSformer(**KW).eval()
    batches = _multiview_batches(videos)
    assert batches[0][0]["views"].shape == (2, 3, T, SIZE, SIZE)
    same = video_prediction_agreement(model, batches, torch.device("cpu"), precision="fp32", views_per_chunk=3)
    assert same["videos"] == 3 and same["same_prediction"] == 1.0 and same["max_prob_diff"] == 0.0
    for islands in (False, True):
        low = video_prediction_agreement(model, batches, torch.device("cpu"), precision="bf16", views_per_chunk=3,
                                         fp32_islands=islands)
        assert low["videos"] == 3
        assert 0.0 < low["max_prob_diff"] < 0.05  # autocast really ran, and the ensembles stay close
        assert low["top1_diff"] == pytest.approx(low["top1_low"] - low["top1_fp32"])
    assert "forward_head" not in vars(model)


# ----------------------------------------------------------------------------- speed and end-to-end
def test_benchmark_variants_at_several_precisions_interleaves_rows_and_refuses_fp16_on_cpu():
    torch.manual_seed(0)
    variants = [Variant("dense", TimeSformer(**KW), gflops=1.0),
                Variant("iared keep 0.5", _iared("keep_ratio"), keep_ratio=0.5, gflops=0.5)]
    with pytest.raises(PrecisionError, match="--precision fp16"):
        benchmark_variants(variants, [1], T, SIZE, reps=1, precisions=["fp32", "fp16"])
    res = benchmark_variants(variants, [1, 2], T, SIZE, warmup=0, reps=2, precisions=["fp32", "bf16"])
    assert [(r.name, r.precision, r.batch_size) for r in res] == [
        ("dense", "fp32", 1), ("iared keep 0.5", "fp32", 1), ("dense", "bf16", 1), ("iared keep 0.5", "bf16", 1),
        ("dense", "fp32", 2), ("iared keep 0.5", "fp32", 2), ("dense", "bf16", 2), ("iared keep 0.5", "bf16", 2)]
    assert all(len(r.times_s) == 2 and len(r.cpu_times_s) == 2 and r.min_s > 0 for r in res)
    table = format_precision_table(res, {v.name: v.gflops for v in variants})
    assert table.count("bf16") == 4 and " 1.00x" in table


def test_end_to_end_times_the_multiview_test_path_on_real_videos(videos, tmp_path):
    import av

    from video_iared.benchmarks.end_to_end import summary_lines
    from video_iared.engine.multiview_test import dense_forward, iared_forward
    from video_iared.engine.results import load_predictions

    with av.open(videos[0]) as c:
        s = c.streams.video[0]
        assert (s.height, s.width, s.codec_context.name) == (48, 64, "h264")
    torch.manual_seed(0)
    dense, pruned = TimeSformer(**KW).eval(), _iared("keep_ratio")
    dataset = _multiview_dataset(videos)
    ds = dataset[0]["views"]  # (2 clips x 1 crop) views per video
    variants = [("dense", dense, "fp32", dense_forward(1.0)), ("iared keep 0.6", pruned, "fp32", iared_forward()),
                ("dense", dense, "bf16", dense_forward(1.0))]
    res = run_end_to_end(dataset, variants, num_classes=5, out_dir=str(tmp_path), batch_size=2, warmup_batches=1)
    assert [(r.name, r.precision) for r in res] == [(n, p) for n, _, p, _ in variants]
    for r in res:
        assert r.videos == 3 and r.views == ds.shape[0] == 2 and len(r.run_s) == 2  # batches of 2 + 1 videos
        assert r.load_ms > 0 and r.model_ms > 0 and r.write_ms > 0
        assert r.total_ms == pytest.approx(r.load_ms + r.model_ms + r.cost_ms + r.write_ms)
        assert len(load_predictions(str(tmp_path / f"{r.name.replace(' ', '_')}_{r.precision}.pt"))["index"]) == 3
    assert res[0].load_s == res[1].load_s  # one decode, shared: "excluding decoding" compares the same views
    assert res[0].cost_ms == 0 and res[1].cost_ms > 0  # dense: one constant; IA-RED²: the kept sets' count
    assert res[0].gflops_per_view == 1.0 and 0 < res[1].gflops_per_view < _dense_gflops()
    table = format_end_to_end_table(res)
    assert "speed-up*" in table and table.count("\n") == 4
    last = summary_lines(res).splitlines()[-1]
    speedup, gratio = res[0].after_decode_ms / res[1].after_decode_ms, 1.0 / res[1].gflops_per_view
    assert last == f"end_to_end_summary variants=3 min_speedup_to_gflops_ratio={speedup / gratio:.3f}"
    with pytest.raises(PrecisionError):
        run_end_to_end(dataset, [("dense", dense, "fp16", dense_forward())], 5, str(tmp_path))


def _multiview_dataset(paths):
    from video_iared.data.annotations import VideoRecord
    from video_iared.data.multiview import MultiViewDataset
    from video_iared.data.readers import build_reader
    from video_iared.data.sampling import ClipSampler
    from video_iared.data.transforms import TestTransform

    return MultiViewDataset([VideoRecord(p, i % 5, p) for i, p in enumerate(paths)],
                            functools.partial(build_reader, backend="pyav"), ClipSampler("dense", T, 2),
                            TestTransform(SIZE, 1, [0.45] * 3, [0.225] * 3), num_clips=2)


def _dense_gflops():
    from video_iared.profiling.flops import model_gflops

    return model_gflops(TimeSformer(**KW).eval(), torch.zeros(1, 3, T, SIZE, SIZE))


def test_precision_check_cli_reports_config_errors(capsys):
    from video_iared.benchmarks.precision_check import main

    cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "synthetic.yaml")
    assert main(["--cfg", cfg, "TEST.BATCH_SIZ", "4"]) == 2
    assert "TEST.BATCH_SIZE" in capsys.readouterr().err  # one line naming the key, no traceback
    assert main(["--cfg", cfg, "--max-videos", "1", "TEST.BATCH_SIZ", "4"]) == 2  # overrides after the options
    assert "TEST.BATCH_SIZE" in capsys.readouterr().err
