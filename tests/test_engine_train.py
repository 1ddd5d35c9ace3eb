"""Training on the real tiny TimeSformer and real encoded videos: loss, stats.jsonl, checkpoints, resume."""
import os

import pytest
import torch
from torch import nn

from engine_fixtures import ROOT
from video_iared.checkpoint import io as ckpt_io
from video_iared.data import build_loader, build_normalizer
from video_iared.engine.optim import build_optimizer
from video_iared.engine.stats import read_stats
from video_iared.engine.train import train, train_one_epoch
from video_iared.build import build_model


def test_tiny_model_loss_goes_down(tiny_config):
    cfg = tiny_config()
    torch.manual_seed(0)
    batch = next(iter(build_loader(cfg, "train")))  # 8 real clips (B, C, T, H, W)
    assert batch["clip"].shape == (8, 3, 4, 32, 32)
    model = build_model(cfg)
    opt = build_optimizer(model, "adamw", 3e-3, 0.05)
    losses = []
    for it in range(12):
        s = train_one_epoch(model, [batch], opt, nn.CrossEntropyLoss(), it, lambda e: 3e-3, torch.device("cpu"),
                            show_progress=False, normalizer=build_normalizer(cfg))  # uint8 clips by default
        losses.append(s["loss"])
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 9, losses  # going down, not just ending low


def test_train_writes_stats_and_checkpoints(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config(["TRAIN.GRAD_ACCUM_STEPS", "2", "TRAIN.CLIP_GRAD_NORM", "1.0", "TRAIN.LABEL_SMOOTHING", "0.1"])
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


def test_k400_config_parses_then_fails_naming_the_list_file(tmp_path, capsys):
    from video_iared.tools_main import run_net

    rc = run_net(["--cfg", str(ROOT / "configs/k400.yaml"), "TRAIN.BATCH_SIZE", "4", "OUTPUT_DIR", str(tmp_path / "k400")])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "data_lists/k400/train.csv" in err and "list file not found" in err
    assert run_net(["--cfg", str(ROOT / "configs/k400.yaml"), "TRAIN.BATCH_SIZE", "0"]) == 2
    assert "TRAIN.BATCH_SIZE" in capsys.readouterr().err
