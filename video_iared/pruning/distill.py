"""Distillation from the dense model during the IA-RED² finetune (as DynamicViT and EViT finetune their
pruned students): the loss is ``CE(student, label) + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

The teacher is the dense backbone the curriculum started from, frozen, seeing every token of the same clip;
the student is the pruned model seeing only the tokens its interpreters keep. Matching the teacher's whole
distribution, not only its label, keeps the pruned model's predictions where the dense model's were — the
quantity the IA-RED² issue measures (top-1 against the dense model it started from).

Measured on the synthetic benchmark's earlier linear-patch model (in-memory runs, dense model 33.75 % top-1, keep
about 0.47): six finetune epochs at lr 5e-4 reached 28.75 % with weight 1.0 and 23.75-28.75 % without
distillation. On the conv-stem model (run_net, the same dense checkpoint at 87.50 %, 10 finetune epochs at lr
2e-4, identical curricula) it was worse: `make demo` 88.12 % with weight 1.0 vs 88.75 % without; RNG_SEED 1 / 2
90.62 / 88.75 % vs 91.88 / 90.00 % (a plausible reading: the 87.5 % teacher pulls the student towards its own
errors). configs/synthetic.yaml finetunes without it.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from video_iared.pruning.decisions import PolicyBound, PruningPolicy


class StudentWithTeacher(nn.Module):
    """The pruned student and a frozen copy of the teacher in one module for the engine's training loop.

    ``forward(x)`` returns the student's logits and keeps the teacher's float32 logits of the same clips in
    ``teacher_logits`` for :class:`DistillationLoss`. The teacher stays in eval mode (no dropout / drop-path)
    and has no trainable parameter, so DDP and the optimizer see only the student.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher_logits: Optional[torch.Tensor] = None

    def train(self, mode: bool = True) -> "StudentWithTeacher":
        self.training = mode
        self.student.train(mode)
        self.teacher.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.teacher_logits = self.teacher(x).float()
        return self.student(x)


def dense_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of an IA-RED² model that keeps every token (policy "all" in every group): the dense
    backbone, as a ``PolicyBound`` (the copy is its ``.model``), in eval mode."""
    teacher = PolicyBound(copy.deepcopy(model), PruningPolicy.uniform("all", model.num_groups))
    return teacher.eval()


class DistillationLoss(nn.Module):
    """``base_loss(logits, labels) + weight * T^2 * KL(teacher || student)`` at temperature T, reading the
    teacher's logits from ``source.teacher_logits`` (set by the forward pass that produced ``logits``)."""

    def __init__(self, source: StudentWithTeacher, base_loss: nn.Module, weight: float,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if weight < 0 or temperature <= 0:
            raise ValueError(f"distillation weight must be >= 0 and temperature > 0, got {weight}, {temperature}")
        self.source = source
        self.base_loss = base_loss
        self.weight = float(weight)
        self.temperature = float(temperature)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.base_loss(logits, labels)
        teacher = self.source.teacher_logits
        if teacher is None or teacher.shape != logits.shape:
            raise RuntimeError("DistillationLoss: no teacher logits for these clips (run StudentWithTeacher first)")
        t = self.temperature
        kl = F.kl_div(F.log_softmax(logits.float() / t, -1), F.softmax(teacher / t, -1), reduction="batchmean")
        return loss + self.weight * t * t * kl
