"""The trace-free cost (pruning.exact_cost) equals fvcore's trace of the same model on the same clip, to the MAC.

Every comparison traces the real model with fvcore (``flop_analysis``: its handles + the project's) on one clip
and compares the integer count with ``pruned_macs`` on that clip's kept sets: the three attention types, both
stems, the packed and masked paths, the extremes (all kept, only the CLS, empty frames, empty positions), the
regimes of the packed spatial attention (short frames, padded uneven frames, frame runs), batches whose clips
keep different counts, and the model's own threshold / keep_ratio decisions with an inactive group; for the
packed path both attention backends (bucketed groups, one varlen call per branch).
"""
from __future__ import annotations

from typing import List

import pytest
import torch
from torch import nn

from video_iared.profiling.flops import flop_analysis, heavy_unsupported_ops
from video_iared.pruning.cost import clip_gflops, dense_gflops
from video_iared.pruning.decisions import PolicyBound, PruningPolicy
from video_iared.pruning.exact_cost import arch_of, forward_gflops, pruned_macs
from video_iared.pruning.iared import IAREDTimeSformer
from video_iared.pruning.token_ops import PAD_FROM, RUNS_FROM

torch.set_num_threads(1)
T, IMG, P = 4, 64, 8
S = (IMG // P) ** 2  # 64 positions: frames long enough for padded groups and frame runs
N = T * S
ATTENTIONS = ("divided_space_time", "joint_space_time", "space_only")


class FixedKeeps(nn.Module):
    """The IA-RED² model run with given keep masks (B, G, N): what fvcore traces for an explicit keep set."""

    returns_decisions = True  # fvcore's trace sees the interpreters' work (profiling.flops.WithDecisions)

    def __init__(self, model: IAREDTimeSformer, masks: torch.Tensor) -> None:
        super().__init__()
        self.model, self.masks = model, masks

    def forward(self, x: torch.Tensor, return_decisions: bool = False):
        return self.model(x, keep_masks=list(self.masks.unbind(1)), return_decisions=return_decisions)


def _model(attention: str, stem: str = "patch", execution: str = "packed", groups=(1, 1)) -> IAREDTimeSformer:
    """``execution`` "packed" (bucketed attention), "varlen" (packed, varlen attention backend) or "masked"."""
    torch.manual_seed(0)
    backend = "varlen" if execution == "varlen" else "bucketed"
    m = IAREDTimeSformer(groups=groups, interp_heads=2, interp_head_dim=8, img_size=IMG, patch_size=P,
                         num_classes=5, embed_dim=32, depth=sum(groups), num_heads=4, num_frames=T,
                         attention_type=attention, stem=stem, stem_channels=8,
                         execution="masked" if execution == "masked" else "packed", attention_backend=backend)
    return m.eval()


def _fvcore_macs(module: nn.Module, clip: torch.Tensor) -> int:
    analysis = flop_analysis(module, clip)
    total = analysis.total()
    assert not heavy_unsupported_ops(analysis)
    return int(total)


def _nested(densities, gen) -> torch.Tensor:
    """One clip's keep masks (1, G, N): group g keeps each token alive after g-1 with probability densities[g]."""
    alive, out = torch.ones(1, N, dtype=torch.bool), []
    for d in densities:
        alive = alive & (torch.rand(1, N, generator=gen) < d)
        out.append(alive)
    return torch.stack(out, 1)


def _keep_sets() -> List[torch.Tensor]:
    """Keep masks (1, 2, N) per case: extremes, holes in time and space, random densities (every regime)."""
    gen = torch.Generator().manual_seed(1)
    cases = [_nested(d, gen) for d in [(1, 1), (0, 0), (1, 0), (0.9, 0.5), (0.6, 0.6), (0.45, 0.9), (0.5, 0.1),
                                       (0.3, 0.3), (0.95, 0.95)]]
    grid = torch.ones(1, 2, S, T, dtype=torch.bool)
    grid[:, :, :, 1] = False  # frame 1 empty from the first group on, frame 2 from the second
    grid[:, 1, :, 2] = False
    cases.append(grid.reshape(1, 2, N))
    grid = torch.rand(1, 2, S, T, generator=gen) < 0.7
    grid[:, :, : S // 2] = False  # half the positions without a kept frame
    grid[:, 1] &= grid[:, 0]
    cases.append(grid.reshape(1, 2, N))
    one = torch.zeros(1, 2, S, T, dtype=torch.bool)
    one[:, :, 3, 0] = True  # a single patch kept: runs of one row, one-token groups
    cases.append(one.reshape(1, 2, N))
    for most in (RUNS_FROM - 1, RUNS_FROM - 2, PAD_FROM - 1, PAD_FROM - 2):  # each side of both boundaries
        edge = torch.zeros(1, 2, S, T, dtype=torch.bool)
        edge[:, 0, :most, 0] = True  # the longest frame group: its CLS copy + ``most`` patches
        edge[:, 0, :most - 3, 1:] = True
        edge[:, 1, :most - 3] = True  # second group: every frame as long (no padding)
        cases.append(edge.reshape(1, 2, N))
    return cases


def test_keep_sets_cover_every_spatial_regime():
    """The cases reach the packed spatial attention's three forms: short groups, padded uneven groups, runs."""
    longest = [1 + int(k.reshape(-1, S, T).sum(1).amax()) for c in _keep_sets() for k in c[0]]
    assert min(longest) < PAD_FROM and max(longest) > RUNS_FROM
    assert {PAD_FROM - 1, PAD_FROM, RUNS_FROM - 1, RUNS_FROM} <= set(longest)


@pytest.mark.parametrize("execution", ["packed", "varlen", "masked"])
@pytest.mark.parametrize("stem", ["patch", "conv3d"])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_explicit_keep_sets_equal_fvcore(attention, stem, execution):
    model = _model(attention, stem, execution)
    cases = _keep_sets()
    batch = torch.cat(cases)  # one vectorised call for all the clips: clips keeping different counts
    ours = pruned_macs(arch_of(model), batch, [True, True], T, IMG, IMG)
    assert ours.dtype == torch.int64 and ours.shape == (len(cases),)
    clip = torch.randn(1, 3, T, IMG, IMG)
    ref = [_fvcore_macs(FixedKeeps(model, masks), clip) for masks in cases]
    assert ours.tolist() == ref
    if execution != "masked":
        assert len(set(ref)) > len(cases) // 2  # the count really depends on the kept sets


@pytest.mark.parametrize("stem", ["patch", "conv3d"])
def test_other_clip_size_and_frames(stem):
    """A clip of another size and length than trained: the position embedding's upsampling is counted."""
    model = _model("divided_space_time", stem)
    t, img = 2, 48
    n = t * (img // P) ** 2
    gen = torch.Generator().manual_seed(3)
    first = torch.rand(2, n, generator=gen) < 0.6
    masks = torch.stack([first, first & (torch.rand(2, n, generator=gen) < 0.5)], 1)
    clip = torch.randn(1, 3, t, img, img)
    ours = pruned_macs(arch_of(model), masks, [True, True], t, img, img).tolist()
    assert ours == [_fvcore_macs(FixedKeeps(model, masks[i:i + 1]), clip) for i in range(2)]


def _spread_interpreters(model: IAREDTimeSformer) -> None:
    """Interpreter weights large enough that keep probabilities spread over (0, 1): clips keep different counts."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for it in model.interpreters:
            it.qk.weight.copy_(torch.randn(it.qk.weight.shape, generator=gen) * 0.6)


@pytest.mark.parametrize("execution", ["packed", "varlen"])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_model_decisions_equal_per_clip_traces(attention, execution):
    """The model's own threshold and keep_ratio decisions on a batch of clips, one group inactive in a third
    run (its interpreter does not run): the batched forward's trace-free cost per clip equals fvcore's trace of
    every clip alone (``clip_gflops``, the figures the test stage used to report)."""
    model = _model(attention, execution=execution)
    _spread_interpreters(model)
    views = torch.randn(3, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(7))
    settings = [("threshold", 0.45, 2), ("keep_ratio", 0.5, 2), ("threshold", 0.5, 1)]
    for mode, value, active in settings:
        policy = PruningPolicy((mode,) * active + ("all",) * (2 - active), value, (0.6, 0.5))
        with torch.no_grad():
            _, decisions = model(views, policy=policy, return_decisions=True)
        ours = forward_gflops(model, decisions, views.shape)
        assert decisions.interpreted.tolist() == [True, active == 2]
        ref = clip_gflops(PolicyBound(model, policy), views)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
        if mode == "threshold" and active == 2:
            assert len(set(ours.tolist())) == 3  # three clips, three costs


def test_dense_cost_is_the_masked_path_without_interpreters():
    """``dense_gflops`` (one fvcore trace) is ``pruned_macs`` on the masked path with every token kept and no
    interpreter run; the packed path with every token kept costs a little less (the CLS normed once)."""
    model = _model("divided_space_time")
    arch = arch_of(model)
    full = torch.ones(1, 2, N, dtype=torch.bool)
    masked = pruned_macs(arch.__class__(**{**arch.__dict__, "execution": "masked"}), full, [False, False],
                         T, IMG, IMG)
    assert float(masked[0]) / 1e9 == pytest.approx(dense_gflops(model, torch.randn(1, 3, T, IMG, IMG)), rel=1e-12)
    assert int(pruned_macs(arch, full, [False, False], T, IMG, IMG)[0]) < int(masked[0])


def test_test_stage_forward_counts_without_tracing_and_traces_its_sample(monkeypatch, caplog):
    """``iared_forward`` (the test stage's and predict's): each view's GFLOPs from its kept sets, with exactly
    ``fvcore_sample`` views traced (across chunks), both logged side by side by the test stage's cost log."""
    import logging

    from video_iared.engine import multiview_test as mt

    model = _model("divided_space_time")
    _spread_interpreters(model)
    views = torch.randn(5, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(9))
    traced = []
    real = mt.clip_gflops
    monkeypatch.setattr(mt, "clip_gflops", lambda m, v: traced.append(len(v)) or real(m, v))
    fwd = mt.iared_forward(fvcore_sample=3)
    batches = [[{"index": i, "path": f"v{i}", "label": 0, "views": views[2 * i:2 * i + 2], "error": None}
                for i in range(2)], [{"index": 2, "path": "v2", "label": 1, "views": views[4:], "error": None}]]
    records = mt.run_multiview(model, batches, torch.device("cpu"), 2, forward_fn=fwd, show_progress=False)
    assert traced == [] and fwd.sample == []  # put aside during the run, traced after it
    fwd.trace_sample(model)
    assert traced == [2, 1]  # the first 3 views, from the first two chunks; none after
    ref = clip_gflops(model, views)
    per_video = [float(ref[:2].mean()), float(ref[2:4].mean()), float(ref[4])]
    assert [r["gflops"] for r in records] == pytest.approx(per_video, rel=1e-6)  # the records hold float32
    assert [b for _, b in fwd.sample] == pytest.approx(ref[:3].tolist(), rel=1e-12)
    assert [a for a, _ in fwd.sample] == pytest.approx(ref[:3].tolist(), rel=1e-12)
    summary = mt.summarize(records, 5, 2)
    with caplog.at_level(logging.INFO, logger=mt.__name__):
        cost = mt._log_iared_cost(records, model, views[:1], fwd, summary, "")
    assert cost["videos"] == 3
    line = next(r.getMessage() for r in caplog.records if "traced by fvcore" in r.getMessage())
    assert f"on the 3 views traced by fvcore: trace-free {float(ref[:3].mean()):.6f} vs fvcore" in line
    assert "over all 5 views" in line and not any(r.levelno >= logging.WARNING for r in caplog.records)
