"""torchrun with 2 gloo processes on the cpu: DDP training runs, and the sharded test counts every video once
with the same video-level accuracy as a single process."""
import os
import shutil
import subprocess
import time

import pytest
import torch

from engine_fixtures import PYTHON, ROOT, tiny_cfg, tiny_opts, write_broken_video
from video_iared.checkpoint import io as ckpt_io
from video_iared.engine import distributed as du
from video_iared.engine.multiview_test import parse_summary_line
from video_iared.engine.results import load_predictions
from video_iared.engine.stats import read_stats
from video_iared.build import build_model
from video_iared.tools_main import run_net

TORCHRUN = os.path.join(os.path.dirname(PYTHON), "torchrun")


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = du.init_distributed("auto", 0, "auto")
    assert (info.rank, info.world_size, info.device.type) == (0, 1, "cpu") and not du.is_initialized()
    assert du.all_gather_objects({"a": 1}) == [{"a": 1}] and du.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]


def _last_summary(stdout: str) -> dict:
    lines = [l for l in stdout.splitlines() if l.startswith("video_top1=")]
    assert lines, stdout[-3000:]
    return parse_summary_line(lines[-1])


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun not installed in the venv")
@pytest.mark.slow
def test_torchrun_two_processes_match_single_process(synthetic_dataset, tmp_path, capsys):
    data_dir = synthetic_dataset(tmp_path / "data0")
    # an odd number of test videos (13, one of them broken): sharding must neither pad nor drop
    d = str(tmp_path / "data")
    shutil.copytree(data_dir, d, ignore=shutil.ignore_patterns("videos"))
    os.symlink(os.path.join(data_dir, "videos"), os.path.join(d, "videos"))
    write_broken_video(os.path.join(d, "broken.mp4"))
    with open(os.path.join(d, "test.csv"), "a") as f:
        f.write("broken.mp4 1\n")
    # weights to test: a tiny model's checkpoint, tested in this process (no torchrun)
    single = str(tmp_path / "single")
    common = ["TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "1", "TEST.BATCH_SIZE", "2",
              "SYNTHETIC.ENABLE", "False", "DIST_BACKEND", "gloo"]
    torch.manual_seed(0)
    model = build_model(tiny_cfg(d, single))
    ckpt = ckpt_io.save_checkpoint(str(tmp_path / "w.pyth"), model, 1, arch=model.arch())
    assert run_net(["--cfg", str(ROOT / "configs/synthetic_dense.yaml")] + tiny_opts(
        d, single, common + ["TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", ckpt])) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("video_top1=")  # the summary line is the last line
    s1 = _last_summary(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    dist_dir = str(tmp_path / "dist")
    r2 = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "tools/run_net.py",
                         "--cfg", "configs/synthetic_dense.yaml"]
                        + tiny_opts(d, dist_dir, common + ["SOLVER.MAX_EPOCH", "1", "TEST.CHECKPOINT_FILE_PATH", ckpt]),
                        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    s2 = _last_summary(r2.stdout)
    assert s1["videos"] == s2["videos"] == 12 and s1["failed"] == s2["failed"] == 1
    assert s2["video_top1"] == pytest.approx(s1["video_top1"]) and s2["video_top5"] == pytest.approx(s1["video_top5"])
    p1 = load_predictions(os.path.join(single, "predictions.pt"))
    p2 = load_predictions(os.path.join(dist_dir, "predictions.pt"))
    assert p2["index"].tolist() == list(range(13))  # every video once, in order
    assert torch.equal(p1["predictions"], p2["predictions"])
    assert torch.allclose(p1["probabilities"].nan_to_num(-1), p2["probabilities"].nan_to_num(-1), atol=1e-5)
    # DDP training ran on both ranks; only rank 0 wrote checkpoints and stats (one line per iteration)
    assert sorted(os.listdir(os.path.join(dist_dir, "checkpoints"))) == ["checkpoint_best.pyth", "checkpoint_epoch_00001.pyth"]
    iters = [r for r in read_stats(os.path.join(dist_dir, "stats.jsonl")) if r["stage"] == "train_iter"]
    assert [r["iteration"] for r in iters] == [1, 2, 3]  # 24 videos / (2 processes x 4 clips)


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun not installed in the venv")
@pytest.mark.slow
def test_torchrun_iared_curriculum_keeps_replicas_equal_and_reports_whole_splits(synthetic_dataset, tmp_path):
    """The IA-RED² stage under torchrun (2 gloo processes): the curriculum averages the interpreters' gradients
    by hand, the finetune runs under DDP, the calibration sums its costs over processes. The run checks that the
    replicas stayed bit-identical after every stage and at the end (it raises otherwise), and its statistics
    count every process's clips: the whole train (24) and val (8) splits."""
    from video_iared.checkpoint.io import save_checkpoint
    from video_iared.build import timesformer_kwargs
    from video_iared.models.timesformer import TimeSformer

    d = synthetic_dataset(tmp_path / "data")
    out = str(tmp_path / "iared")
    iared = ["IARED.ENABLE", "True", "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO", "[0.5, 0.5]",
             "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8",
             "IARED.CURRICULUM_EPOCHS", "1", "IARED.FINETUNE_EPOCHS", "1", "IARED.INIT_KEEP_PROB", "0.9",
             "IARED.TARGET_COST", "0.5", "TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1",
             "SYNTHETIC.ENABLE", "False", "DIST_BACKEND", "gloo"]
    torch.manual_seed(0)
    dense = TimeSformer(**timesformer_kwargs(tiny_cfg(d, out, iared)))
    dense_path = save_checkpoint(str(tmp_path / "dense.pyth"), dense, 1, arch=None)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "tools/run_net.py",
                        "--cfg", "configs/synthetic_dense.yaml"]
                       + tiny_opts(d, out, iared + ["IARED.DENSE_CHECKPOINT", dense_path]),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert _last_summary(r.stdout)["videos"] == 12
    logs = r.stdout + r.stderr
    for what in ("IA-RED² stage 0: the trained interpreter", "IA-RED² stage 1: the trained interpreter",
                 "IA-RED² final model (parameters and threshold)"):
        assert f"{what}: identical on all 2 processes" in logs, what
    lines = read_stats(os.path.join(out, "stats.jsonl"))
    cur = [l for l in lines if l["stage"] == "iared_curriculum"]
    val = [l for l in lines if l["stage"] == "iared_val"]
    fin = [l for l in lines if l["stage"] == "iared_finetune"]
    cal = [l for l in lines if l["stage"] == "iared_calibration"]
    assert [l["train_clips"] for l in cur] == [24, 24] and [l["clips"] for l in val] == [8, 8]
    assert [(l["clips"], l["val_clips"]) for l in fin] == [(24, 8)]  # the finetune's train and val figures
    assert [l["clips"] for l in cal] == [8, 8] and [l["after"] for l in cal] == ["curriculum", "finetune"]
    rec = torch.load(os.path.join(out, "checkpoints", "checkpoint_iared.pyth"), weights_only=True)["iared_calibration"]
    assert rec["threshold"] == cal[-1]["threshold"] and rec["cost_fraction"] <= 0.5


def _replica_check_worker(rank: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        same = [torch.arange(6.0).reshape(2, 3), torch.tensor(0.5, dtype=torch.float64)]
        du.check_replicas_equal(same, "equal tensors")  # must pass
        diverged = [same[0] + (1e-7 if rank == 1 else 0.0), same[1]]  # one ulp-scale change on rank 1 only
        try:
            du.check_replicas_equal(diverged, "the interpreter")
            result = "no error"
        except RuntimeError as e:
            result = str(e)
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
            f.write(result)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_replica_check_raises_on_every_rank_when_copies_differ(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.spawn(_replica_check_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:  # a hang in a collective: fail instead of waiting for gloo's timeout
            for p in ctx.processes:
                p.kill()
            pytest.fail("the replica check hung")
    for rank in (0, 1):
        text = (tmp_path / f"rank{rank}.txt").read_text()
        assert text.startswith("the interpreter: the copies on rank(s) [1] differ from rank 0's"), text
    # without a process group the check is a no-op; the fingerprint sees dtype and shape, not only values
    du.check_replicas_equal([torch.zeros(3)], "single process")
    assert du.fingerprint([torch.zeros(3)]) != du.fingerprint([torch.zeros(3, dtype=torch.float64)])
    assert du.fingerprint([torch.zeros(3)]) != du.fingerprint([torch.zeros(1, 3)])


def test_device_choice_comes_from_config(monkeypatch):
    assert du.resolve_device("cpu", 1).type == "cpu"
    assert du.resolve_device("auto", 0).type == "cpu"  # NUM_GPUS 0 forces the cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert du.resolve_device("auto", 1).type == "cpu"
    with pytest.raises(RuntimeError, match="DEVICE is 'cuda'"):
        du.resolve_device("cuda", 1)
