"""Distillation during the IA-RED² finetune: the loss equals its hand computation, the teacher is the frozen
dense model (every token, eval mode), and only the student's parameters receive gradients."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from video_iared.pruning.decisions import PruningPolicy
from video_iared.pruning.distill import DistillationLoss, StudentWithTeacher, dense_teacher
from video_iared.pruning.iared import IAREDTimeSformer


def _tiny_iared(**kw):
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=16, num_classes=5, embed_dim=32, depth=2, num_heads=2, num_frames=4,
                groups=[1, 1], interp_heads=2, interp_head_dim=8, mode="keep_ratio", keep_ratio=[0.5, 0.5],
                drop_path_rate=0.1)
    args.update(kw)
    return IAREDTimeSformer(**args)


def test_loss_matches_hand_computation():
    student, teacher = nn.Linear(3, 4), nn.Linear(3, 4)
    pair = StudentWithTeacher(student, teacher)
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    logits = pair(x)
    loss = DistillationLoss(pair, nn.CrossEntropyLoss(), weight=0.7, temperature=2.0)(logits, y)
    t = teacher(x).detach()
    p_t = F.softmax(t / 2, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(logits / 2, -1))).sum(-1).mean()
    expected = F.cross_entropy(logits, y) + 0.7 * 4.0 * kl
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # identical student and teacher: the KL term vanishes
    pair2 = StudentWithTeacher(teacher, teacher)
    l2 = DistillationLoss(pair2, nn.CrossEntropyLoss(), 5.0)(pair2(x), y)
    assert l2.item() == pytest.approx(F.cross_entropy(teacher(x), y).item(), rel=1e-6)


def test_teacher_is_frozen_dense_and_stays_in_eval():
    model = _tiny_iared()
    teacher = dense_teacher(model)
    pair = StudentWithTeacher(model, teacher).train()
    assert model.training and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 4, 32, 32)
    pair(x)  # the forward stores the teacher's logits in pair.teacher_logits
    # the teacher keeps every token: its logits are the dense forward of the same weights
    ref = _tiny_iared()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(pair.teacher_logits, ref.eval()(x, policy=PruningPolicy.uniform("all", 2)), atol=1e-5)
    model.train()
    loss = DistillationLoss(pair, nn.CrossEntropyLoss(), 1.0)(pair(x), torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert model.head.weight.grad is not None and math.isfinite(float(model.head.weight.grad.abs().sum()))


def test_missing_teacher_logits_is_an_error():
    pair = StudentWithTeacher(nn.Linear(3, 4), nn.Linear(3, 4))
    with pytest.raises(RuntimeError, match="teacher logits"):
        DistillationLoss(pair, nn.CrossEntropyLoss(), 1.0)(torch.randn(2, 4), torch.tensor([0, 1]))


def test_teacher_copies_a_model_after_a_sampled_forward():
    """The model keeps no per-forward state (its decisions are returned): a copy after a training forward whose
    log-probability carries a graph is a plain deepcopy."""
    model = _tiny_iared(mode="threshold")
    _, decisions = model.train()(torch.randn(2, 3, 4, 32, 32), return_decisions=True)
    assert decisions.log_prob.requires_grad and decisions.policy.groups == ("sample", "sample")
    assert not [k for k, v in vars(model).items() if isinstance(v, torch.Tensor) or k.startswith("last_")]
    teacher = dense_teacher(model)
    assert teacher.policy.groups == ("all", "all") and not teacher.training
