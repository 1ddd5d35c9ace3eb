"""Interpreter scores, policies, log-probabilities, rewards, baselines and the policy-loss gradient."""
import math

import pytest
import torch

from video_iared.pruning.interpreter import Interpreter
from video_iared.pruning.policy import decide, log_prob, sample_keep, threshold_keep, topk_keep
from video_iared.pruning.rewards import compute_baseline, compute_reward, kept_fraction, policy_loss
from video_iared.pruning.token_ops import PackedLayout


def test_interpreter_matches_hand_computation():
    torch.manual_seed(0)
    interp = Interpreter(dim=16, num_heads=3, head_dim=4)
    tokens = torch.randn(2, 1 + 5, 16)
    probs = interp(tokens).detach()
    assert probs.shape == (2, 5)
    w, b = interp.qk.weight.detach(), interp.qk.bias.detach()
    for bi in range(2):
        normed = torch.nn.functional.layer_norm(tokens[bi], (16,), eps=1e-6)  # no affine parameters
        qk = normed @ w.T + b
        q, k = qk[0, :12].view(3, 4), qk[1:, 12:].view(5, 3, 4)
        for j in range(5):
            s = sum(torch.sigmoid((q[h] * k[j, h]).sum() / math.sqrt(4)) for h in range(3)) / 3
            assert abs(float(s) - float(probs[bi, j])) < 1e-6
    assert not any("weight" in n for n, _ in interp.norm.named_parameters())
    # packed scoring of a subset gives the same numbers for the kept tokens
    keep = torch.tensor([[1, 0, 1, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)[:, :5]
    lay = PackedLayout(keep, 5, 1, 1)
    packed = interp.forward_packed(lay.pack(tokens), lay)
    torch.testing.assert_close(packed, probs[keep])


def test_threshold_topk_sample_respect_alive():
    probs = torch.tensor([[0.9, 0.2, 0.6, 0.51, 0.95], [0.1, 0.7, 0.8, 0.3, 0.4]])
    alive = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert threshold_keep(probs, alive, 0.5).tolist() == [[True, False, True, True, False],
                                                           [False, True, True, False, False]]
    # ratio 0.5: round(4*0.5)=2 of the alive in clip 0, round(2.5)=2 in clip 1
    assert topk_keep(probs, alive, 0.5).tolist() == [[True, False, True, False, False],
                                                      [False, True, True, False, False]]
    g = torch.Generator().manual_seed(0)
    samples = torch.stack([sample_keep(probs, alive, g) for _ in range(4000)]).float().mean(0)
    assert (samples[~alive] == 0).all()
    torch.testing.assert_close(samples[alive], probs[alive], atol=0.03, rtol=0)
    assert torch.equal(decide(probs, alive, "all"), alive)
    with pytest.raises(ValueError, match="unknown policy"):
        decide(probs, alive, "nope")


def test_log_prob_by_hand():
    probs = torch.tensor([[0.8, 0.3, 0.5]])
    keep = torch.tensor([[True, False, False]])
    alive = torch.tensor([[True, True, False]])  # the dead token takes no action
    expected = math.log(0.8) + math.log(1 - 0.3)
    assert abs(float(log_prob(probs, keep, alive)[0]) - expected) < 1e-6


def test_reward_and_baselines_by_hand():
    correct = torch.tensor([True, False, True, True])
    frac = torch.tensor([0.5, 0.2, 1.0, 0.3])
    r = compute_reward(correct, frac, tau=0.4)
    torch.testing.assert_close(r, torch.tensor([0.75, -0.4, 0.0, 0.91]))
    torch.testing.assert_close(compute_baseline(r, "none"), torch.zeros(4))
    torch.testing.assert_close(compute_baseline(r, "mean"), torch.full((4,), (0.75 - 0.4 + 0.91) / 4))
    greedy = torch.tensor([0.1, 0.2, 0.3, 0.4])
    torch.testing.assert_close(compute_baseline(r, "greedy", greedy), greedy)
    with pytest.raises(ValueError, match="greedy"):
        compute_baseline(r, "greedy")
    logp = torch.tensor([-1.0, -2.0, -3.0, -4.0], requires_grad=True)
    loss = policy_loss(r, compute_baseline(r, "none"), logp)
    assert abs(float(loss.detach()) - float(-(r * logp.detach()).mean())) < 1e-6
    loss.backward()
    torch.testing.assert_close(logp.grad, -r / 4)
    # compute-weighted kept fraction: groups of 4, 4, 4 blocks
    rates = torch.tensor([[1.0, 0.5, 0.25]])
    torch.testing.assert_close(kept_fraction(rates, [4, 4, 4]), torch.tensor([1.75 / 3]))
    torch.testing.assert_close(kept_fraction(rates, [2, 1, 1]), torch.tensor([(2 + 0.5 + 0.25) / 4]))


@pytest.mark.parametrize("execution", ["packed", "masked"])
def test_policy_loss_reaches_every_interpreter_parameter(execution):
    from video_iared.pruning.iared import IAREDTimeSformer

    torch.manual_seed(0)
    model = IAREDTimeSformer(groups=[1, 1, 1], interp_heads=2, interp_head_dim=8, execution=execution,
                             img_size=32, patch_size=8, num_classes=4, embed_dim=32, depth=3, num_heads=4,
                             num_frames=4, drop_path_rate=0.0)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.interpreters.parameters():
        p.requires_grad_(True)
    model.train()
    x = torch.randn(3, 3, 4, 32, 32)
    logits, decisions = model(x, return_decisions=True)
    correct = logits.argmax(1) == torch.tensor([0, 1, 2])
    frac = kept_fraction(decisions.keep_rates, model.groups)
    r = compute_reward(correct, frac, 0.5)
    loss = policy_loss(r, compute_baseline(r, "none") - 1.0, decisions.log_prob)  # nonzero advantage
    loss.backward()
    for name, p in model.interpreters.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("interpreters."))


@pytest.mark.parametrize("p0", [0.5, 0.9, 0.2])
def test_interpreter_initial_keep_probability(p0):
    torch.manual_seed(0)
    interp = Interpreter(dim=64, num_heads=4, head_dim=16, init_keep_prob=p0)
    with torch.no_grad():
        probs = interp(torch.randn(4, 1 + 50, 64))
    assert abs(float(probs.mean()) - p0) < 0.05
    with pytest.raises(ValueError, match="init_keep_prob"):
        Interpreter(dim=8, num_heads=1, head_dim=4, init_keep_prob=1.0)
