"""Every bad input a new user can meet, through the real entry points: each gets one clear error line (naming the
file, line or key), a non-zero exit status when nothing usable came out, and nothing computed is lost.

The README section "What bad input gets" lists these cases; config-file errors are in test_config_files.py.
"""
import fcntl
import json
import os
import shutil
import subprocess
import textwrap

import pytest
import torch

from engine_fixtures import PYTHON, ROOT, load_tool, tiny_cfg, tiny_opts, write_broken_video
from video_iared.checkpoint import io as ckpt_io
from video_iared.engine.multiview_test import parse_summary_line
from video_iared.engine.results import read_predictions_csv, write_predictions
from video_iared.engine.stats import read_stats
from video_iared.engine.train import train
from video_iared.build import build_model
from video_iared.tools_main import predict_main, run_net

DENSE = str(ROOT / "configs" / "synthetic_dense.yaml")
IARED = str(ROOT / "configs" / "synthetic.yaml")
IARED_OPTS = ["IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO", "[0.5, 0.5]", "IARED.CURRICULUM_EPOCHS", "1",
              "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8", "IARED.FINETUNE_EPOCHS", "0", "IARED.TARGET_COST", "0.0"]
ONE_CROP = ["TEST.NUM_SPATIAL_CROPS", "1"]


@pytest.fixture(scope="module")
def dense_ckpt(data_dir, tmp_path_factory):
    """A 1-epoch dense checkpoint of the tiny model (4 classes)."""
    out = str(tmp_path_factory.mktemp("dense"))
    return train(tiny_cfg(data_dir, out, ["SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0"]))


def lists_copy(data_dir, dest, edit=None, classes=True):
    """A copy of the list files (videos stay where they are: DATA.PATH_PREFIX), ``edit(split, rows) -> rows``."""
    os.makedirs(dest, exist_ok=True)
    for split in ("train", "val", "test"):
        with open(os.path.join(data_dir, f"{split}.csv")) as f:
            rows = f.read().splitlines()
        rows = edit(split, rows) if edit else rows
        with open(os.path.join(dest, f"{split}.csv"), "w") as f:
            f.write("\n".join(rows) + "\n")
    if classes:
        shutil.copy(os.path.join(data_dir, "classes.json"), dest)
    return str(dest)


def on_lists(lists):
    """Overrides that read the list files of ``lists`` (not the generated synthetic benchmark)."""
    return ["DATA.PATH_TO_DATA_DIR", lists, "SYNTHETIC.ENABLE", "False"]


def run(capsys, argv, fn=run_net):
    rc = fn(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error:") or line.startswith("config error:")]


# ----------------------------------------------------------------------------- 1. checkpoints that run code
class Payload:
    """Unpickling this creates a folder: the marker that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture()
def payload(tmp_path, dense_ckpt):
    """A real checkpoint (loadable weights) that also carries a ``__reduce__`` payload."""
    marker = str(tmp_path / "PWNED")
    state = torch.load(dense_ckpt, weights_only=True)
    state["extra"] = Payload(marker)
    path = str(tmp_path / "payload.pyth")
    torch.save(state, path)
    return path, marker


ENTRY_POINTS = ["TEST.CHECKPOINT_FILE_PATH", "TRAIN.CHECKPOINT_FILE_PATH", "TIMESFORMER.PRETRAINED_MODEL",
                "IARED.DENSE_CHECKPOINT", "auto-resume", "predict --checkpoint", "convert_checkpoint"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_payload_checkpoint_never_runs_code(entry, payload, data_dir, tmp_path, capsys):
    path, marker = payload
    out = str(tmp_path / "out")
    fast = ["SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0"] + ONE_CROP
    if entry == "predict --checkpoint":
        rc, _, err = run(capsys, ["--cfg", DENSE, "--input", os.path.join(data_dir, "videos"), "--checkpoint", path]
                         + tiny_opts(data_dir, out), predict_main)
    elif entry == "convert_checkpoint":
        rc, _, err = run(capsys, [path, str(tmp_path / "clean.pyth")], load_tool("convert_checkpoint").main)
    elif entry == "auto-resume":
        os.makedirs(ckpt_io.checkpoint_dir(out))
        path = shutil.copy(path, ckpt_io.epoch_checkpoint_path(out, 1))
        rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out, fast))
    elif entry == "IARED.DENSE_CHECKPOINT":
        rc, _, err = run(capsys, ["--cfg", IARED] + tiny_opts(data_dir, out, fast + IARED_OPTS + [entry, path]))
    else:
        extra = ["TRAIN.ENABLE", "False"] if entry.startswith("TEST") else []
        rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out, fast + extra + [entry, path]))
    assert rc != 0 and not os.path.exists(marker)
    lines = error_lines(err)
    assert len(lines) == 1 and path in lines[0] and "os.makedirs" in lines[0] and "--trust-pickle" in lines[0], err


def test_trust_pickle_is_an_explicit_opt_in(payload, tmp_path, capsys):
    """The opt-in really unpickles (the payload above is live: without the refusal the marker would appear) and
    writes a weights-only file that loads safely."""
    path, marker = payload
    clean = str(tmp_path / "clean.pyth")
    rc, _, err = run(capsys, ["--trust-pickle", path, clean], load_tool("convert_checkpoint").main)
    assert rc == 0, err
    assert os.path.isdir(marker)
    assert set(torch.load(clean, weights_only=True)) == {"model_state", "arch"}


# ----------------------------------------------------------------------------- 2-5. silent wrong results
def test_evaluating_with_another_class_count_is_refused(dense_ckpt, data_dir, tmp_path, capsys):
    lists = lists_copy(data_dir, tmp_path / "lists", classes=False)  # no classes.json: the head check itself
    opts = tiny_opts(data_dir, str(tmp_path / "o"), ONE_CROP + ["TRAIN.ENABLE", "False", "MODEL.NUM_CLASSES", "5",
                                                                *on_lists(lists)])
    rc, _, err = run(capsys, ["--cfg", DENSE, "TEST.CHECKPOINT_FILE_PATH", dense_ckpt] + opts)
    assert rc == 1 and "4 classes but MODEL.NUM_CLASSES is 5" in err, err
    rc, _, err = run(capsys, ["--cfg", DENSE, "--input", os.path.join(data_dir, "videos"), "--checkpoint",
                              dense_ckpt] + opts, predict_main)
    assert rc == 1 and "4 classes but MODEL.NUM_CLASSES is 5" in err, err


def test_non_finite_weights_are_refused_naming_the_tensor(dense_ckpt, data_dir, tmp_path, capsys):
    state = torch.load(dense_ckpt, weights_only=True)
    state["model_state"]["blocks.1.mlp.fc1.weight"][0, 0] = float("nan")
    state["model_state"]["head.bias"][1] = float("inf")
    bad = str(tmp_path / "nan.pyth")
    torch.save(state, bad)
    opts = tiny_opts(data_dir, str(tmp_path / "o"), ONE_CROP + ["TRAIN.ENABLE", "False"])
    rc, _, err = run(capsys, ["--cfg", DENSE, "TEST.CHECKPOINT_FILE_PATH", bad] + opts)
    assert rc == 1 and "non-finite" in err and "blocks.1.mlp.fc1.weight" in err and "head.bias" in err, err


def test_non_finite_logits_fail_the_video_and_a_test_where_all_failed_exits_non_zero(dense_ckpt, data_dir, tmp_path,
                                                                                      capsys):
    state = torch.load(dense_ckpt, weights_only=True)
    state["model_state"]["head.weight"].fill_(3e38)  # finite weights whose logits overflow to Inf
    huge = str(tmp_path / "huge.pyth")
    torch.save(state, huge)
    out = str(tmp_path / "o")
    rc, stdout, err = run(capsys, ["--cfg", DENSE, "TEST.CHECKPOINT_FILE_PATH", huge]
                          + tiny_opts(data_dir, out, ONE_CROP + ["TRAIN.ENABLE", "False"]))
    assert rc == 1 and "evaluated no video: all 12 failed" in err, err
    s = parse_summary_line(stdout.strip().splitlines()[-1])  # the machine-readable line is still the last one
    assert s["videos"] == 0 and s["failed"] == 12
    rows = read_predictions_csv(os.path.join(out, "predictions.csv"))
    assert all(r["status"] == "failed" and "non-finite logits" in r["error"] for r in rows)
    rc, _, err = run(capsys, ["--cfg", DENSE, "--input", os.path.join(data_dir, "videos"), "--checkpoint", huge]
                     + tiny_opts(data_dir, out), predict_main)
    assert rc == 1 and "none of the" in err, err


def test_every_test_video_broken_exits_non_zero(dense_ckpt, data_dir, tmp_path, capsys):
    broken = write_broken_video(str(tmp_path / "broken.mp4"))
    lists = lists_copy(data_dir, tmp_path / "lists",
                       lambda split, rows: [f"{broken} {i % 4}" for i in range(3)] if split == "test" else rows)
    rc, stdout, err = run(capsys, ["--cfg", DENSE, "TEST.CHECKPOINT_FILE_PATH", dense_ckpt] + tiny_opts(
        data_dir, str(tmp_path / "o"), ONE_CROP + ["TRAIN.ENABLE", "False", *on_lists(lists)]))
    assert rc == 1 and "all 3 failed" in err
    assert parse_summary_line(stdout.strip().splitlines()[-1])["failed"] == 3


def test_more_classes_than_class_names_stops_before_training(data_dir, tmp_path, capsys):
    out = str(tmp_path / "o")
    lists = lists_copy(data_dir, tmp_path / "lists")
    rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out, ["MODEL.NUM_CLASSES", "5", *on_lists(lists)]))
    assert rc == 1 and "classes.json names 4 classes but MODEL.NUM_CLASSES is 5" in err, err
    assert not os.path.exists(ckpt_io.checkpoint_dir(out))  # nothing trained


def test_results_writer_keeps_predictions_when_names_are_short(tmp_path):
    records = [{"index": i, "path": f"v{i}.mp4", "label": i % 2, "error": None, "probs": torch.eye(4)[3 - i],
                "gflops": 1.0, "keep_rates": None, "view_logits": None} for i in range(2)]
    csv_path, pt_path = write_predictions(str(tmp_path / "p"), records, 4, ["a", "b"])
    rows = read_predictions_csv(csv_path)
    assert [r["pred"] for r in rows] == [3, 2] and rows[0]["top_names"][0] == "3"  # no name: the id
    assert torch.load(pt_path, weights_only=True)["predictions"].tolist() == [3, 2]


# ----------------------------------------------------------------------------- 7. errors that were tracebacks
def test_output_dir_under_a_file(data_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = str(tmp_path / "afile" / "x")
    rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out))
    assert rc == 1 and len(error_lines(err)) == 1 and "afile" in err and "Traceback" not in err, err
    rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out), load_tool("check_videos").main)
    assert rc == 2 and len(error_lines(err)) == 1 and "afile" in err and "Traceback" not in err, err


def test_a_full_disk_is_named_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    model = build_model(tiny_cfg(str(tmp_path), str(tmp_path)))
    path = str(tmp_path / "checkpoints" / "c.pyth")
    ckpt_io.save_checkpoint(path, model, 1)
    before = open(path, "rb").read()
    monkeypatch.setattr(ckpt_io, "_open_temporary", lambda folder, name: (os.open("/dev/full", os.O_WRONLY), os.path.join(folder, ".c.pyth.x.tmp")))
    with pytest.raises(ckpt_io.CheckpointError, match=r"c\.pyth: cannot write the checkpoint: \[Errno 28\] No space"):
        ckpt_io.save_checkpoint(path, model, 2)
    assert open(path, "rb").read() == before


def test_too_many_bad_videos_with_loader_workers_is_one_message(data_dir, tmp_path, capsys):
    broken = write_broken_video(str(tmp_path / "broken.mp4"))
    lists = lists_copy(data_dir, tmp_path / "lists",
                       lambda split, rows: [f"{broken} {i % 4}" for i in range(8)] if split == "train" else rows)
    out = str(tmp_path / "o")
    rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out, [
        *on_lists(lists), "DATA_LOADER.NUM_WORKERS", "1", "DATA.MAX_BAD_FRACTION", "0.05"]))
    assert rc == 1 and "Traceback" not in err and "DataLoader worker" not in err, err
    assert error_lines(err)[0].startswith("error: 1 of 8 training videos failed to decode"), err
    assert "training videos failed to decode" in open(os.path.join(out, "log.txt")).read()  # recorded in the log


def test_predict_with_an_iared_config_and_a_dense_checkpoint(dense_ckpt, data_dir, tmp_path, capsys):
    out = str(tmp_path / "o")
    rc, _, err = run(capsys, ["--cfg", IARED, "--input", os.path.join(data_dir, "videos"), "--checkpoint", dense_ckpt]
                     + tiny_opts(data_dir, out, IARED_OPTS), predict_main)
    assert rc == 1 and len(error_lines(err)) == 1 and "dense checkpoint" in err and "IARED.ENABLE" in err, err
    assert "dense checkpoint" in open(os.path.join(out, "log.txt")).read()


# ----------------------------------------------------------------------------- 8-10. small losses and lies
def test_stale_checkpoint_temporaries_are_cleaned_but_not_live_ones(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "checkpoint_epoch_00001.pyth").write_bytes(b"good")
    stale = folder / ".checkpoint_epoch_00002.pyth.abc123.tmp"
    stale.write_bytes(b"half")
    live = folder / ".checkpoint_epoch_00002.pyth.def456.tmp"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as atomic_write holds its temporary
        assert ckpt_io.remove_stale_temporaries(str(folder)) == [str(stale)]
    assert sorted(os.listdir(folder)) == [live.name, "checkpoint_epoch_00001.pyth"]


@pytest.mark.slow
def test_kill_mid_epoch_then_resume(data_dir, tmp_path):
    """Run A trains 3 epochs straight; run B is killed while writing its epoch-2 checkpoint (after epoch 2's stats
    rows), then resumed from epoch 1: same weights as A (epoch, optimizer, schedule, data order and augmentations
    carried over, with persistent loader workers), the killed write's temporary removed, and stats.jsonl holding
    one run's rows, not the killed epoch's too."""
    extra = ["SOLVER.MAX_EPOCH", "3", "TRAIN.EVAL_PERIOD", "1", "SOLVER.OPTIMIZING_METHOD", "sgd",
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
        def save_or_die(path, model, epoch, *a, **k):
            if epoch < 2:
                return real_save(path, model, epoch, *a, **k)
            def half(f):
                f.write(b"PK" * 1000)
                f.flush()
                os._exit(137)  # killed mid-write: no cleanup, no later epochs
            ckpt_io.atomic_write(path, half)
        train_mod.ckpt_io.save_checkpoint = save_or_die
        train_mod.train(tiny_cfg({data_dir!r}, {b_dir!r}, {extra!r}))
    """)
    r = subprocess.run([PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 137, r.stdout[-2000:] + r.stderr[-2000:]
    folder = ckpt_io.checkpoint_dir(b_dir)
    assert ckpt_io.latest_checkpoint(b_dir).endswith("checkpoint_epoch_00001.pyth")
    assert [n for n in os.listdir(folder) if n.endswith(".tmp")]  # the killed write's temporary
    killed = read_stats(os.path.join(b_dir, "stats.jsonl"))
    assert [r["epoch"] for r in killed if r["stage"] == "train_epoch"] == [1, 2]

    last_b = train(tiny_cfg(data_dir, b_dir, extra))
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    stats_a = read_stats(os.path.join(a_dir, "stats.jsonl"))
    stats_b = read_stats(os.path.join(b_dir, "stats.jsonl"))
    for stage in ("train_iter", "train_epoch", "val"):
        assert [(r["epoch"], r.get("iteration")) for r in stats_b if r["stage"] == stage] == \
            [(r["epoch"], r.get("iteration")) for r in stats_a if r["stage"] == stage], stage
    wa = torch.load(ckpt_io.latest_checkpoint(a_dir), weights_only=True)["model_state"]
    wb = torch.load(last_b, weights_only=True)["model_state"]
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    assert train(tiny_cfg(data_dir, b_dir, extra)) == last_b  # complete: nothing more to train


def test_bad_videos_counted_distinct_and_replaced_by_different_videos(data_dir, tmp_path):
    broken = [write_broken_video(str(tmp_path / f"broken{i}.mp4")) for i in range(7)]
    lists = lists_copy(data_dir, tmp_path / "lists", lambda split, rows: (
        rows[:10] + [f"{b} 0" for b in broken] + rows[10:] if split == "train" else rows))
    out = str(tmp_path / "o")
    cfg = tiny_cfg(data_dir, out, [*on_lists(lists), "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0",
                                   "DATA.MAX_BAD_FRACTION", "0.5", "TRAIN.BATCH_SIZE", "31"])
    from video_iared.data.build import build_dataset

    ds = build_dataset(cfg, "train")
    assert len(ds) == 31
    got = [ds[i]["index"] for i in range(10, 17)]
    assert ds.bad.count() == 7 and all(not 10 <= j < 17 for j in got) and len(set(got)) > 1, got
    train(cfg)
    epoch = [r for r in read_stats(os.path.join(out, "stats.jsonl")) if r["stage"] == "train_epoch"][0]
    assert epoch["bad_videos"] == 7 and epoch["replaced"] == 7, epoch


# ----------------------------------------------------------------------------- 11-12. list files and splits
def test_a_list_file_with_a_byte_order_mark(data_dir, tmp_path):
    from video_iared.data.annotations import read_video_list

    path = tmp_path / "train.csv"
    path.write_bytes("\ufeffvideos/a.mp4 1\nvideos/b.mp4 0\n".encode("utf-8"))
    assert [r.path for r in read_video_list(str(path))] == ["videos/a.mp4", "videos/b.mp4"]


def test_a_missing_test_video_stops_the_run_before_training(data_dir, tmp_path, capsys):
    lists = lists_copy(data_dir, tmp_path / "lists",
                       lambda split, rows: rows + ["videos/gone.mp4 1"] if split == "test" else rows)
    out = str(tmp_path / "o")
    rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out, [*on_lists(lists)]))
    assert rc == 1 and "test.csv:13" in err and "gone.mp4" in err, err
    assert not os.path.exists(ckpt_io.checkpoint_dir(out))


# ----------------------------------------------------------------------------- cases that already held
def test_list_file_errors_name_the_file_and_line(data_dir, tmp_path, capsys):
    lists = lists_copy(data_dir, tmp_path / "lists",
                       lambda split, rows: ["path label"] + rows if split == "val" else rows)
    rc, _, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, str(tmp_path / "o"),
                                                          [*on_lists(lists)]))
    assert rc == 1 and "val.csv:1: label 'label' is not an integer class id (a header row?)" in err, err


def test_bad_videos_in_train_test_and_predict_are_counted_reported_never_substituted(data_dir, tmp_path, capsys):
    broken = write_broken_video(str(tmp_path / "broken.mp4"))
    lists = lists_copy(data_dir, tmp_path / "lists", lambda split, rows: rows + [f"{broken} 1"])
    out = str(tmp_path / "o")
    rc, stdout, err = run(capsys, ["--cfg", DENSE] + tiny_opts(data_dir, out, ONE_CROP + [
        *on_lists(lists), "SOLVER.MAX_EPOCH", "1", "DATA.MAX_BAD_FRACTION", "0.1"]))
    assert rc == 0, err
    s = parse_summary_line(stdout.strip().splitlines()[-1])
    assert s["videos"] == 12 and s["failed"] == 1
    failed = [r for r in read_predictions_csv(os.path.join(out, "predictions.csv")) if r["status"] == "failed"]
    assert [r["path"] for r in failed] == [broken] and failed[0]["error"]
    epoch = [r for r in read_stats(os.path.join(out, "stats.jsonl")) if r["stage"] == "train_epoch"][0]
    assert epoch["bad_videos"] == 1
    videos = tmp_path / "predict_in"
    shutil.copytree(os.path.join(data_dir, "videos"), videos)
    shutil.copy(broken, videos / "zz_broken.mp4")
    rc, _, err = run(capsys, ["--cfg", DENSE, "--input", str(videos), "--output", "p.json"]
                     + tiny_opts(data_dir, out), predict_main)
    assert rc == 0, err
    rows = json.load(open(os.path.join(out, "p.json")))
    assert rows[-1]["status"] == "failed" and rows[-1]["path"].endswith("zz_broken.mp4")
    assert all(r["status"] == "ok" for r in rows[:-1])
