"""Training on the real tiny TimeSformer and real encoded videos: loss, stats.jsonl, checkpoints, resume."""
import os
import subprocess
import textwrap

import pytest
import torch
from torch import nn

from engine_fixtures import PYTHON, ROOT, make_dataset, tiny_cfg
from video_iared.checkpoint import io as ckpt_io
from video_iared.data import build_loader
from video_iared.engine.optim import build_optimizer
from video_iared.engine.stats import read_stats
from video_iared.engine.train import train, train_one_epoch
from video_iared.models import build_model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_dataset(str(tmp_path_factory.mktemp("syn") / "data"))


def test_tiny_model_loss_goes_down(data_dir, tmp_path):
    cfg = tiny_cfg(data_dir, str(tmp_path))
    torch.manual_seed(0)
    batch = next(iter(build_loader(cfg, "train")))  # 8 real clips (B, C, T, H, W)
    assert batch["clip"].shape == (8, 3, 4, 32, 32)
    model = build_model(cfg)
    opt = build_optimizer(model, "adamw", 3e-3, 0.05)
    losses = []
    for it in range(12):
        s = train_one_epoch(model, [batch], opt, nn.CrossEntropyLoss(), it, lambda e: 3e-3, torch.device("cpu"),
                            show_progress=False)
        losses.append(s["loss"])
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 9, losses  # going down, not just ending low


def test_train_writes_stats_and_checkpoints(data_dir, tmp_path, monkeypatch):
    cfg = tiny_cfg(data_dir, str(tmp_path), ["TRAIN.GRAD_ACCUM_STEPS", "2", "TRAIN.CLIP_GRAD_NORM", "1.0",
                                             "TRAIN.LABEL_SMOOTHING", "0.1"])
    from video_iared.data import loader as loader_mod

    epochs, real = [], loader_mod.set_loader_epoch
    monkeypatch.setattr(loader_mod, "set_loader_epoch", lambda l, e: (epochs.append(e), real(l, e)))
    last = train(cfg)
    assert epochs == [0, 1]  # every epoch gets its own shuffle and augmentation draws
    assert last.endswith("checkpoint_epoch_00002.pyth")
    ck = torch.load(last, weights_only=True)
    assert ck["epoch"] == 2 and ck["arch"]["embed_dim"] == 32 and "TIMESFORMER" in ck["cfg"]
    assert os.path.isfile(ckpt_io.best_checkpoint_path(str(tmp_path)))
    stats = read_stats(str(tmp_path / "stats.jsonl"))
    iters = [r for r in stats if r["stage"] == "train_iter"]
    # 24 train videos / 4 clips per micro-batch = 6 micro-batches per epoch, logged every one (LOG_PERIOD 1)
    assert len(iters) == 12
    for key in ("epoch", "iteration", "loss", "lr", "top1", "clips_per_s", "data_time", "bad_videos"):
        assert key in iters[0]
    vals = [r for r in stats if r["stage"] == "val"]
    assert [v["epoch"] for v in vals] == [1, 2] and all(v["clips"] == 8 for v in vals)


def test_resume_after_kill_continues_with_same_optimizer_state(data_dir, tmp_path):
    """Run A trains 3 epochs straight; run B is killed right after its epoch-1 checkpoint, then resumed.
    Both must end with the same weights: the epoch, optimizer state, schedule, data order and augmentations
    carried over — with persistent loader workers, whose own RNG a resumed run cannot restore."""
    extra = ["SOLVER.MAX_EPOCH", "3", "TRAIN.EVAL_PERIOD", "0", "SOLVER.OPTIMIZING_METHOD", "sgd",
             "SOLVER.BASE_LR", "0.05", "DATA_LOADER.NUM_WORKERS", "2"]
    a_dir, b_dir = str(tmp_path / "a"), str(tmp_path / "b")
    train(tiny_cfg(data_dir, a_dir, extra))

    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from engine_fixtures import tiny_cfg
        from video_iared.checkpoint import io as ckpt_io
        from video_iared.engine import train as train_mod
        real_save = ckpt_io.save_checkpoint
        def save_then_die(path, *a, **k):
            real_save(path, *a, **k)
            os._exit(137)  # killed right after the first checkpoint: no cleanup, no later epochs
        train_mod.ckpt_io.save_checkpoint = save_then_die
        train_mod.train(tiny_cfg({data_dir!r}, {b_dir!r}, {extra!r}))
    """)
    r = subprocess.run([PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 137, r.stdout[-2000:] + r.stderr[-2000:]
    assert ckpt_io.latest_checkpoint(b_dir).endswith("checkpoint_epoch_00001.pyth")
    saved = torch.load(ckpt_io.latest_checkpoint(b_dir), weights_only=True)
    assert saved["optimizer_state"]["state"]  # momentum buffers were saved

    last_b = train(tiny_cfg(data_dir, b_dir, extra))
    stats_b = read_stats(os.path.join(b_dir, "stats.jsonl"))
    assert [r["epoch"] for r in stats_b if r["stage"] == "train_epoch"] == [1, 2, 3]  # epoch 1 not repeated
    wa = torch.load(ckpt_io.latest_checkpoint(a_dir), weights_only=True)["model_state"]
    wb = torch.load(last_b, weights_only=True)["model_state"]
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    # a resumed run that is already complete trains nothing more
    assert train(tiny_cfg(data_dir, b_dir, extra)) == last_b


def test_k400_config_parses_then_fails_naming_the_list_file(tmp_path, capsys):
    from video_iared.tools_main import run_net

    rc = run_net(["--cfg", str(ROOT / "configs/k400.yaml"), "TRAIN.BATCH_SIZE", "4", "OUTPUT_DIR", str(tmp_path / "k400")])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "data_lists/k400/train.csv" in err and "list file not found" in err
    assert run_net(["--cfg", str(ROOT / "configs/k400.yaml"), "TRAIN.BATCH_SIZE", "0"]) == 2
    assert "TRAIN.BATCH_SIZE" in capsys.readouterr().err
