"""The varlen attention backend (issue 19.2), proved on the CPU.

``IARED.ATTENTION_BACKEND varlen`` runs each attention branch of a block as ONE variable-length call over the
batch (on the CPU through the padded reference, ``varlen.padded_varlen_attention``). Checked here: the same
logits as the masked reference path and the bucketed path on the extremes (all kept, only the CLS, empty frames,
empty positions, one patch) for the three attention types, in batches whose clips keep different counts; the
same decisions in keep_ratio and threshold mode; gradients; and, counted at the dispatcher
(``profiling.dispatch_count``), no host read in keep_ratio mode, one per group in threshold mode, and as many
attention calls as the dense model.
"""
from __future__ import annotations

import pytest
import torch

from video_iared.profiling.dispatch_count import DispatchCounter, count_forward
from video_iared.config import get_cfg
from video_iared.config.validate import ConfigError, validate_config
from video_iared.models.timesformer import TimeSformer
from video_iared.pruning.decisions import PruningPolicy
from video_iared.pruning.iared import IAREDTimeSformer
from video_iared.pruning.varlen import padded_varlen_attention, resolve_backend

torch.set_num_threads(1)
T, IMG, P = 4, 32, 8
S = (IMG // P) ** 2
N = T * S
ATTENTIONS = ("divided_space_time", "joint_space_time", "space_only")
KW = dict(img_size=IMG, patch_size=P, num_classes=5, embed_dim=32, depth=4, num_heads=4, num_frames=T)


def _iared(attention: str, backend: str = "varlen", execution: str = "packed") -> IAREDTimeSformer:
    torch.manual_seed(0)
    m = IAREDTimeSformer(groups=(2, 1, 1), interp_heads=2, interp_head_dim=8, attention_type=attention,
                         execution=execution, attention_backend=backend, **KW)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # keep probabilities spread over (0, 1): clips keep different counts
        for it in m.interpreters:
            it.qk.weight.copy_(torch.randn(it.qk.weight.shape, generator=gen) * 0.6)
    return m.eval()


def _extreme_masks() -> list:
    """Keep masks (B, N) per group for a batch of 6 clips: all kept, only the CLS, frame 1 empty, half the
    positions empty, a single patch, random; nested over the three groups."""
    gen = torch.Generator().manual_seed(1)
    first = torch.ones(6, S, T, dtype=torch.bool)
    first[1] = False
    first[2, :, 1] = False
    first[3, : S // 2] = False
    first[4] = False
    first[4, 3, 0] = True
    first[5] = torch.rand(S, T, generator=gen) < 0.6
    masks = [first.reshape(6, N)]
    for density in (0.6, 0.3):
        masks.append(masks[-1] & (torch.rand(6, N, generator=gen) < density))
    masks[1][0] = masks[2][0] = True  # the all-kept clip stays full
    return masks


def test_resolve_backend():
    assert resolve_backend("auto", torch.device("cuda")) == "varlen"
    assert resolve_backend("auto", torch.device("cpu")) == "bucketed"
    assert resolve_backend("varlen", torch.device("cpu")) == "varlen"
    with pytest.raises(ValueError, match="attention backend 'flash'"):
        resolve_backend("flash", torch.device("cpu"))
    with pytest.raises(ValueError, match="attention_backend"):
        _iared("divided_space_time", backend="flash")


def test_config_key_is_validated():
    cfg = get_cfg()
    assert cfg.IARED.ATTENTION_BACKEND == "auto"
    cfg.IARED.ATTENTION_BACKEND = "fast"
    with pytest.raises(ConfigError, match="IARED.ATTENTION_BACKEND"):
        validate_config(cfg)


def test_padded_reference_equals_attention_per_segment():
    """One padded masked SDPA over all segments = each segment's own attention (empty segments included)."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 0, 1, 5, 0, 2])
    cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to(torch.int32)
    q, k, v = (torch.randn(int(lengths.sum()), 2, 4, generator=gen) for _ in range(3))
    out = padded_varlen_attention(q, k, v, cu, 5, 0.5)
    ref = []
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        if b > a:
            att = torch.softmax(torch.einsum("qhd,khd->hqk", q[a:b], k[a:b]) * 0.5, -1)
            ref.append(torch.einsum("hqk,khd->qhd", att, v[a:b]))
    torch.testing.assert_close(out, torch.cat(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_varlen_logits_equal_masked_and_bucketed_on_the_extremes(attention):
    x = torch.randn(6, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(2))
    masks = _extreme_masks()
    with torch.no_grad():
        ref = _iared(attention, execution="masked")(x, keep_masks=masks)
        varlen = _iared(attention, "varlen")(x, keep_masks=masks)
        bucketed = _iared(attention, "bucketed")(x, keep_masks=masks)
    torch.testing.assert_close(varlen, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bucketed, ref, rtol=1e-4, atol=1e-5)
    assert (ref[0] - ref[1]).abs().max() > 1e-3  # the keep sets change the logits


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("mode", ["keep_ratio", "threshold"])
def test_varlen_decisions_equal_bucketed(attention, mode):
    """The model's own decisions: same keep masks and logits with either backend (keep_ratio without a host
    read: the kept count follows from the ratios)."""
    x = torch.randn(3, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(3))
    out = {}
    for backend in ("varlen", "bucketed"):
        m = _iared(attention, backend)
        policy = PruningPolicy.uniform(mode, 3, 0.5, (0.7, 0.6, 0.5))
        with torch.no_grad():
            logits, decisions = m(x, policy=policy, return_decisions=True)
        out[backend] = (logits, decisions.keep_masks)
    assert torch.equal(out["varlen"][1], out["bucketed"][1])
    torch.testing.assert_close(out["varlen"][0], out["bucketed"][0], rtol=1e-4, atol=1e-5)
    kept = out["varlen"][1].sum(2)
    if mode == "keep_ratio":
        assert (kept == kept[0]).all()  # every clip keeps round(alive * ratio)
    else:
        assert len(set(kept[:, -1].tolist())) > 1  # clips keep different counts


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_varlen_gradients_equal_bucketed(attention):
    """Training through the varlen path (no attention dropout): the same gradients as the bucketed path."""
    x = torch.randn(4, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(4))
    masks = _extreme_masks()
    masks = [m[:4] for m in masks]
    grads = {}
    for backend in ("varlen", "bucketed"):
        m = _iared(attention, backend).train()
        m(x, keep_masks=masks).square().sum().backward()
        grads[backend] = torch.cat([p.grad.flatten() for p in m.blocks.parameters() if p.grad is not None])
    torch.testing.assert_close(grads["varlen"], grads["bucketed"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention,calls_per_block", [("divided_space_time", 2), ("joint_space_time", 1),
                                                         ("space_only", 1)])
def test_host_reads_and_attention_calls_per_forward(attention, calls_per_block):
    x = torch.randn(3, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(6))
    dense = TimeSformer(attention_type=attention, **KW).eval()
    assert count_forward(lambda: dense(x)) == {"host_reads": 0, "attention_calls": 4 * calls_per_block,
                                                "host_read_ops": {}, "math_attention_suspected": False}
    m = _iared(attention, "varlen")
    keep_ratio = PruningPolicy.uniform("keep_ratio", 3, keep_ratio=(0.7, 0.7, 0.7))
    kr = count_forward(lambda: m(x, policy=keep_ratio))
    th = count_forward(lambda: m(x, policy=keep_ratio.replace(groups=("threshold",) * 3)))
    assert kr["host_reads"] == 0 and kr["attention_calls"] == 4 * calls_per_block
    assert th["host_reads"] == 3 and th["host_read_ops"] == {"aten._local_scalar_dense": 3}  # one per group
    assert th["attention_calls"] == 4 * calls_per_block
    b = _iared(attention, "bucketed")
    assert count_forward(lambda: b(x, policy=keep_ratio))["host_reads"] > 0  # the counter sees the bucketed path's reads


def test_counter_counts_what_it_claims():
    with torch.no_grad(), DispatchCounter() as c:
        t = torch.tensor([0, 1, 2])
        t.nonzero()
        int(t.sum())
        torch.equal(t, t)
        torch.nn.functional.scaled_dot_product_attention(*(torch.randn(1, 2, 3, 4) for _ in range(3)))
    assert c.host_reads == 3 and c.attention_calls == 1


def test_gpu_check_on_the_cpu_says_what_has_not_run(capsys):
    from video_iared.benchmarks.gpu_check import logits_check, run_gpu_check, training_step_check

    cfg = get_cfg()
    cfg.merge_from_list(["IARED.ENABLE", True, "TIMESFORMER.EMBED_DIM", 32, "TIMESFORMER.NUM_HEADS", 4,
                         "TIMESFORMER.DEPTH", 4, "IARED.GROUPS", [2, 1, 1], "TIMESFORMER.PATCH_SIZE", 8,
                         "DATA.NUM_FRAMES", T, "DATA.TEST_CROP_SIZE", IMG, "DATA.TRAIN_CROP_SIZE", IMG,
                         "MODEL.NUM_CLASSES", 5, "DEVICE", "cpu"])
    figures = run_gpu_check(cfg, batch=2)
    out = capsys.readouterr().out
    assert "have NOT run" in out
    assert out.strip().splitlines()[-1] == ("gpu_check cuda=0 varlen_keep_ratio_host_reads=0 "
                                            "varlen_threshold_host_reads=3 varlen_attention_calls=8 "
                                            "dense_attention_calls=8")
    assert figures["varlen_attention_calls"] == 8
    # the device-generic parts of the CUDA checks, run here on the CPU
    logits_check(cfg, 2, torch.device("cpu"))
    training_step_check(cfg, torch.device("cpu"))
    out = capsys.readouterr().out
    diffs = [float(line.split("max |diff| ")[1].split()[0]) for line in out.splitlines() if "max |diff|" in line]
    assert len(diffs) == 4 and max(diffs[:2]) < 1e-4  # fp32 exact to rounding; bf16 printed for the record
    assert out.count("parameters finite True") == 2
