"""Optimizer parameter groups, learning-rate schedules and the training step's accumulation / clipping rules."""
import math

import pytest
import torch
from torch import nn

from video_iared.engine.optim import build_optimizer, lr_at_epoch, param_groups
from video_iared.engine.train import train_one_epoch


class Toy(nn.Module):
    """Shaped like a tiny transformer: embeddings (3-D), a norm, linears, a frozen and an unused branch."""

    def __init__(self, dim=8, classes=3):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, 4, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.proj = nn.Linear(12, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.frozen = nn.Linear(dim, dim)
        self.frozen.requires_grad_(False)
        self.unused = nn.Linear(dim, dim)  # like a pruned path: never receives a gradient

    def no_weight_decay(self):
        return {"pos_embed", "time_embed", "cls_token"}

    def forward(self, x):  # x: (B, C, T, H, W) -> (B, classes)
        f = self.proj(x.flatten(1)[:, :12]) + self.pos_embed[:, 0] + self.cls_token[:, 0]
        return self.head(self.norm(f))


def test_weight_decay_skips_norms_biases_embeddings_and_frozen():
    groups = param_groups(Toy(), 0.05)
    decay = next(g for g in groups if g["weight_decay"] == 0.05)["names"]
    no_decay = next(g for g in groups if g["weight_decay"] == 0.0)["names"]
    assert sorted(decay) == ["head.weight", "proj.weight", "unused.weight"]
    assert {"pos_embed", "time_embed", "cls_token", "norm.weight", "norm.bias", "proj.bias"} <= set(no_decay)
    assert not any(n.startswith("frozen.") for n in decay + no_decay)


def test_build_optimizer_kinds():
    sgd = build_optimizer(Toy(), "sgd", 0.1, 1e-4, momentum=0.9, nesterov=True)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    adamw = build_optimizer(Toy(), "adamw", 1e-3, 0.05)
    assert isinstance(adamw, torch.optim.AdamW)
    with pytest.raises(ValueError, match="OPTIMIZING_METHOD"):
        build_optimizer(Toy(), "lamb", 1e-3, 0.0)


def test_cosine_schedule_with_warmup():
    kw = dict(policy="cosine", base_lr=1.0, max_epoch=10, cosine_end_lr=0.1, warmup_epochs=2, warmup_start_lr=0.0)
    assert lr_at_epoch(0.0, **kw) == 0.0
    end_of_warmup = 0.1 + 0.9 * (math.cos(math.pi * 2 / 10) + 1) / 2
    assert lr_at_epoch(1.0, **kw) == pytest.approx(end_of_warmup / 2)
    assert lr_at_epoch(2.0, **kw) == pytest.approx(end_of_warmup)  # continuous where warm-up ends
    assert lr_at_epoch(10.0, **kw) == pytest.approx(0.1)
    lrs = [lr_at_epoch(e / 4, **kw) for e in range(8, 41)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # decreasing after warm-up


def test_step_schedule():
    kw = dict(policy="steps_with_relative_lrs", base_lr=0.5, max_epoch=15, steps=[0, 11, 14], lrs=[1, 0.1, 0.01])
    assert lr_at_epoch(0, **kw) == 0.5
    assert lr_at_epoch(10.99, **kw) == 0.5
    assert lr_at_epoch(11, **kw) == pytest.approx(0.05)
    assert lr_at_epoch(14.5, **kw) == pytest.approx(0.005)


def _loader(n_batches=4, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(bs, 3, 2, 2, 2, generator=g)
        y = (x.flatten(1)[:, 0] > 0).long() + (x.flatten(1)[:, 1] > 0).long()
        out.append({"clip": x, "label": y, "bad": torch.zeros(bs, dtype=torch.long)})
    return out


def test_grad_accumulation_gives_the_same_step():
    full = _loader(1, bs=8)
    results = []
    for accum in (1, 2, 4):
        # the loader yields micro-batches: the same 8 clips as 1 x 8, 2 x 4 or 4 x 2
        micro = [{k: v[i:i + 8 // accum] for k, v in full[0].items()} for i in range(0, 8, 8 // accum)]
        torch.manual_seed(0)
        m = Toy()
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
        train_one_epoch(m, micro, opt, nn.CrossEntropyLoss(), 0, lambda e: 0.5, torch.device("cpu"),
                        grad_accum_steps=accum, show_progress=False)
        results.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.allclose(results[0], results[1], atol=1e-6)
    assert torch.allclose(results[0], results[2], atol=1e-6)
    assert not torch.allclose(results[0], torch.cat([p.detach().flatten() for p in (torch.manual_seed(0), Toy())[1].parameters()]))


def test_training_tolerates_parameters_without_gradient_and_loss_goes_down():
    torch.manual_seed(0)
    m = Toy()
    unused_before = m.unused.weight.detach().clone()
    opt = build_optimizer(m, "adamw", 0.02, 0.05)
    data = _loader(6)
    losses = []
    for epoch in range(6):
        s = train_one_epoch(m, data, opt, nn.CrossEntropyLoss(label_smoothing=0.1), epoch, lambda e: 0.02,
                            torch.device("cpu"), grad_accum_steps=2, clip_grad_norm=1.0, show_progress=False)
        losses.append(s["loss"])
    assert losses[-1] < losses[0] - 0.1
    assert m.unused.weight.grad is None
    # AdamW's decoupled decay skips parameters that got no gradient: the unused path is left as it was.
    assert torch.equal(m.unused.weight, unused_before)


def test_bf16_autocast_training_on_cpu():
    from video_iared.engine.amp import amp_dtype, make_scaler

    dev = torch.device("cpu")
    dtype = amp_dtype(dev, "mixed")  # TRAIN.MIXED_PRECISION on the cpu: bf16, no scaler
    assert dtype == torch.bfloat16 and not make_scaler(dev, dtype).is_enabled()
    with pytest.raises(ValueError, match="TEST.PRECISION fp16 needs a cuda device"):
        amp_dtype(dev, "fp16")
    torch.manual_seed(0)
    m = Toy()
    opt = build_optimizer(m, "sgd", 0.1, 0.0, momentum=0.9, nesterov=True)
    data = _loader(4)
    first = train_one_epoch(m, data, opt, nn.CrossEntropyLoss(), 0, lambda e: 0.1, dev, make_scaler(dev, dtype),
                            dtype, show_progress=False)["loss"]
    for epoch in range(1, 5):
        last = train_one_epoch(m, data, opt, nn.CrossEntropyLoss(), epoch, lambda e: 0.1, dev, None, dtype,
                               show_progress=False)["loss"]
    assert math.isfinite(last) and last < first
    assert all(p.dtype == torch.float32 for p in m.parameters())  # autocast, not a bf16 copy of the model
