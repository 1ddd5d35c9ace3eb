"""The curriculum: what each stage freezes, which policies act, and that a REINFORCE step moves the policy."""
import pytest
import torch

from video_iared.pruning.curriculum import (FINETUNE, curriculum_epoch, evaluate_policies, reinforce_step,
                                            set_stage, stage_policies, stage_policy)
from video_iared.pruning.iared import IAREDTimeSformer


def _model(groups=(1, 1, 2)):
    torch.manual_seed(0)
    return IAREDTimeSformer(groups=groups, interp_heads=2, interp_head_dim=8, img_size=32, patch_size=8,
                            num_classes=3, embed_dim=32, depth=sum(groups), num_heads=4, num_frames=4,
                            drop_path_rate=0.0)


def test_stage_policies():
    assert stage_policies(0, 3, "threshold", True) == ["sample", "all", "all"]
    assert stage_policies(1, 3, "threshold", True) == ["threshold", "sample", "all"]
    assert stage_policies(2, 3, "keep_ratio", False) == ["keep_ratio"] * 3
    assert stage_policies(FINETUNE, 3, "threshold", True) == ["threshold"] * 3
    with pytest.raises(ValueError, match="stage 3"):
        stage_policies(3, 3, "threshold", True)


def test_set_stage_requires_grad_per_stage():
    model = _model()
    for s in range(3):
        names = set(set_stage(model, s))
        assert names == {n for n, _ in model.named_parameters() if n.startswith(f"interpreters.{s}.")}
        assert names  # the interpreter has parameters (qk weight and bias)
        for n, p in model.named_parameters():
            assert p.requires_grad == n.startswith(f"interpreters.{s}."), n
    names = set(set_stage(model, FINETUNE))
    assert not any(n.startswith("interpreters.") for n in names)
    assert {"cls_token", "pos_embed", "blocks.0.attn.qkv.weight", "head.weight"} <= names
    for n, p in model.named_parameters():
        assert p.requires_grad == (not n.startswith("interpreters.")), n


@pytest.mark.parametrize("baseline", ["none", "mean", "greedy"])
def test_reinforce_step_updates_only_the_stage_interpreter(baseline):
    model = _model()
    stage = 1
    set_stage(model, stage)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(4, 3, 4, 32, 32)
    y = torch.tensor([0, 1, 2, 0])
    out = reinforce_step(model, x, y, opt, stage, "threshold", tau=0.5, baseline=baseline)
    assert out["clips"] == 4 and len(out["keep_rates"]) == 3
    # groups after the stage keep every alive token: their keep rate equals the stage's
    assert out["keep_rates"][2] == pytest.approx(out["keep_rates"][1])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= {n for n, _ in model.named_parameters() if n.startswith("interpreters.1.")}
    if baseline == "none":  # rewards are never all zero here (wrong -> -tau), so the policy moves
        assert changed
    assert stage_policy(model, stage, "threshold", True).groups == ("threshold", "sample", "all")


def test_curriculum_epoch_and_evaluation_report_per_group():
    model = _model()
    set_stage(model, 0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    loader = [{"clip": torch.randn(3, 3, 4, 32, 32, generator=g), "label": torch.tensor([0, 1, 2])} for _ in range(2)]
    tr = curriculum_epoch(model, loader, opt, 0, "threshold", 0.5, "mean", torch.device("cpu"))
    assert tr["clips"] == 6 and len(tr["keep_rates"]) == 3 and 0.0 <= tr["top1_sampled"] <= 100.0
    val = evaluate_policies(model, loader, torch.device("cpu"), 0, "threshold", 0.5)
    for k in ("top1_sampled", "top1_threshold", "keep_rates_sampled", "keep_rates_threshold", "reward_threshold"):
        assert k in val
    # at stage 0 only group 0 decides: later groups keep its set
    kr = val["keep_rates_threshold"]
    assert kr[0] == pytest.approx(kr[1]) == pytest.approx(kr[2]) and kr[0] < 1.0
