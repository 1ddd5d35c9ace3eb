"""Atomic checkpoint writes, finding the latest checkpoint, resuming model + optimizer, architecture checks."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from video_iared.checkpoint import io as ckpt_io

ARCH = dict(embed_dim=8, depth=1, num_heads=2, patch_size=4, attention_type="divided_space_time", num_classes=3)


def _model_and_opt(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    return m, opt


def _step(m, opt, n=3):
    for i in range(n):
        opt.zero_grad()
        x = torch.randn(5, 4, generator=torch.Generator().manual_seed(i))
        m(x).square().mean().backward()
        opt.step()


def test_save_resume_restores_model_and_optimizer(tmp_path):
    m, opt = _model_and_opt()
    _step(m, opt)
    path = ckpt_io.save_checkpoint(ckpt_io.epoch_checkpoint_path(str(tmp_path), 3), m, 3, opt, cfg_yaml="A: 1\n", arch=ARCH)
    raw = torch.load(path, weights_only=True)  # the whole file is weights_only-loadable
    assert raw["epoch"] == 3 and raw["cfg"] == "A: 1\n" and raw["arch"] == ARCH
    assert set(raw) >= {"model_state", "optimizer_state", "epoch", "cfg", "arch"}

    m2, opt2 = _model_and_opt(seed=1)
    assert ckpt_io.resume_training(path, m2, opt2, arch=ARCH) == 3
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    for p, q in zip(m.parameters(), m2.parameters()):
        assert torch.equal(opt.state[p]["momentum_buffer"], opt2.state[q]["momentum_buffer"])
    # continuing both gives the same weights: the momentum really was restored
    _step(m, opt, 2)
    _step(m2, opt2, 2)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_latest_checkpoint_picks_highest_epoch_and_ignores_temporaries(tmp_path):
    m, opt = _model_and_opt()
    assert ckpt_io.latest_checkpoint(str(tmp_path)) is None
    for e in (1, 2, 10):
        ckpt_io.save_checkpoint(ckpt_io.epoch_checkpoint_path(str(tmp_path), e), m, e, opt)
    d = ckpt_io.checkpoint_dir(str(tmp_path))
    open(os.path.join(d, ".checkpoint_epoch_00011.pyth.abc.tmp"), "wb").write(b"partial")
    ckpt_io.save_checkpoint(ckpt_io.best_checkpoint_path(str(tmp_path)), m, 99)
    assert ckpt_io.latest_checkpoint(str(tmp_path)).endswith("checkpoint_epoch_00010.pyth")


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    m, opt = _model_and_opt()
    path = str(tmp_path / "last.pyth")
    ckpt_io.save_checkpoint(path, m, 1, opt)
    before = open(path, "rb").read()

    def half_then_die(obj, f, *a, **k):
        f.write(b"\x80\x02half a pickle")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(ckpt_io.torch, "save", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save_checkpoint(path, m, 2, opt)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["last.pyth"]  # the temporary file is cleaned up


def test_killed_process_mid_write_never_replaces_checkpoint(tmp_path):
    """A real SIGKILL-like exit (os._exit: no cleanup at all) half-way through writing the next checkpoint."""
    out = str(tmp_path)
    script = textwrap.dedent(f"""
        import os, torch
        from torch import nn
        from video_iared.checkpoint import io as ckpt_io
        m = nn.Linear(64, 64)
        ckpt_io.save_checkpoint(ckpt_io.epoch_checkpoint_path({out!r}, 1), m, 1)
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            f.write(b"\\x80\\x02" + b"x" * 1000)
            f.flush()
            os._exit(137)
        ckpt_io.torch.save = dying_save
        with torch.no_grad():
            m.weight.add_(1.0)
        ckpt_io.save_checkpoint(ckpt_io.epoch_checkpoint_path({out!r}, 1), m, 2)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 137, r.stderr
    latest = ckpt_io.latest_checkpoint(out)
    state = ckpt_io.read_checkpoint(latest)  # loads: not corrupt
    assert state["epoch"] == 1
    leftovers = [n for n in os.listdir(ckpt_io.checkpoint_dir(out)) if n.endswith(".tmp")]
    assert len(leftovers) == 1  # the dead write's temporary, which nothing reads


def test_architecture_mismatch_is_a_clear_error(tmp_path):
    m, opt = _model_and_opt()
    path = ckpt_io.save_checkpoint(str(tmp_path / "c.pyth"), m, 1, opt, arch=ARCH)
    other = dict(ARCH, embed_dim=16, depth=2)
    with pytest.raises(ckpt_io.CheckpointError, match=r"c\.pyth.*embed_dim: checkpoint 8 vs model 16.*depth"):
        ckpt_io.resume_training(path, m, opt, arch=other)


def test_truncated_file_error_names_the_file(tmp_path):
    p = tmp_path / "broken.pyth"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ckpt_io.CheckpointError, match="broken.pyth"):
        ckpt_io.read_checkpoint(str(p))
    with pytest.raises(ckpt_io.CheckpointError, match="not found"):
        ckpt_io.read_checkpoint(str(tmp_path / "missing.pyth"))
