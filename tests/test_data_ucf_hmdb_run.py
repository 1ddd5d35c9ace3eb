"""run_net.py through configs/ucf101_dense.yaml and configs/hmdb51_dense.yaml on tiny sets laid out as the
real datasets are (official split files, <Class>/<video>.avi MPEG-4 videos), lists from prepare_lists.py,
then tools/split_average.py on the test outputs."""
import sys
from pathlib import Path

import pytest

from engine_fixtures import ROOT, tiny_opts
from data_fixtures import make_frames
from test_data_prepare import _hmdb_annotations, _ucf_annotations, _ucf_videos
from video_iared.engine.multiview_test import parse_summary_line
from video_iared.tools_main import run_net
from video_iared.utils.video_io import write_video

sys.path.insert(0, str(ROOT / "tools"))
import prepare_lists  # noqa: E402
import split_average  # noqa: E402


def _write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(str(path), make_frames(16, 32, 32), fps=25)


def _ucf(root: Path) -> Path:
    ann, vids = root / "ucfTrainTestlist", root / "UCF-101"
    _ucf_annotations(ann, groups=(8, 9, 10), test_clips=1)
    _ucf_videos(ann, vids, _write)
    return ann


def _hmdb(root: Path) -> Path:
    ann, vids = root / "testTrainMulti_7030_splits", root / "hmdb51"
    _hmdb_annotations(ann, classes=("brush_hair", "climb", "jump"), n_scenes=3)
    for f in ann.iterdir():
        if f.name.endswith("split1.txt"):
            for line in f.read_text().splitlines():
                _write(vids / f.name.split("_test_split")[0] / line.split()[0])
    return ann


@pytest.mark.parametrize("dataset, videos, make", [("ucf101", "UCF-101", _ucf), ("hmdb51", "hmdb51", _hmdb)])
def test_run_net_on_official_layout(dataset, videos, make, tmp_path, capsys):
    ann = make(tmp_path)
    vids, lists = tmp_path / videos, tmp_path / "lists"
    assert prepare_lists.main([dataset, "--annotations", str(ann), "--videos", str(vids), "--out", str(lists),
                               "--splits", "1", "--val-fraction", "0.4"]) == 0
    split1 = lists / "split1"
    assert (split1 / "val.csv").read_text().strip(), "the tiny set should hold out at least one source as val"
    out = tmp_path / "run"
    opts = tiny_opts(str(split1), str(out), [
        "DATA.PATH_PREFIX", str(vids), "SYNTHETIC.ENABLE", "False", "MODEL.NUM_CLASSES", "3", "NUM_GPUS", "0",
        "TRAIN.CHECKPOINT_FILE_PATH", "", "DATA.DECODING_BACKEND", "pyav", "SOLVER.MAX_EPOCH", "1",
        "SOLVER.STEPS", "[0]", "SOLVER.LRS", "[1]", "TEST.NUM_SPATIAL_CROPS", "1", "TRAIN.BATCH_SIZE", "4"])
    rc = run_net(["--cfg", str(ROOT / "configs" / f"{dataset}_dense.yaml")] + opts)
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    summary = parse_summary_line(captured.out.strip().splitlines()[-1])
    n_test = len((split1 / "test.csv").read_text().splitlines())
    assert summary["videos"] == n_test > 0 and summary["failed"] == 0
    assert split_average.main([str(out), str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("splits=2 video_top1_mean=") and float(last.split("=")[2].split()[0]) == pytest.approx(
        summary["video_top1"], abs=1e-3)


def test_shipped_configs_finetune_k400_on_split1():
    from video_iared.config import load_config

    for name, classes in (("ucf101", 101), ("hmdb51", 51)):
        dense, pruned = (load_config(str(ROOT / "configs" / f"{name}{s}.yaml")) for s in ("_dense", ""))
        for cfg in (dense, pruned):
            assert cfg.TRAIN.DATASET == cfg.TEST.DATASET == name and cfg.MODEL.NUM_CLASSES == classes
            assert cfg.DATA.PATH_TO_DATA_DIR == f"data_lists/{name}/split1" and cfg.TEST.SPLIT == "test"
            assert cfg.TRAIN.CHECKPOINT_FILE_PATH.endswith("_K400.pyth")
        assert not dense.IARED.ENABLE and pruned.IARED.ENABLE and list(pruned.IARED.GROUPS) == [4, 4, 4]
