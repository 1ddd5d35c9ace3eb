"""tools/prepare_lists.py and tools/check_videos.py on small files written here."""
import csv
import json
import os
import sys
from pathlib import Path


from data_fixtures import make_frames, write_list, write_test_video
from video_iared.data.annotations import read_class_names, read_ssv2_labels, read_ssv2_split, read_video_list
from video_iared.utils.video_io import write_video

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_videos  # noqa: E402
import prepare_lists  # noqa: E402

HEADER = "label,youtube_id,time_start,time_end,split"


def test_prepare_k400_lists(tmp_path, capsys):
    ann, vids, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "lists"
    ann.mkdir()
    (ann / "train.csv").write_text("\n".join([
        HEADER, "zumba,aaa,14,24,train", '"abseiling",bbb,0,10,train', "bowling,ccc,5,15,train", "zumba,ddd,1,11,train",
    ]) + "\n")
    (ann / "validate.csv").write_text("\n".join([HEADER, "bowling,eee,3,13,val", "abseiling,fff,0,10,val"]) + "\n")
    for rel in ["zumba/aaa_000014_000024.mp4", "abseiling/bbb_000000_000010.mp4", "ddd_000001_000011.mp4",
                "val/eee_000003_000013.mp4"]:
        (vids / rel).parent.mkdir(parents=True, exist_ok=True)
        (vids / rel).write_bytes(b"")
    assert prepare_lists.main(["k400", "--annotations", str(ann), "--videos", str(vids), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train: 4 rows, 3 listed, 1 videos missing" in printed and "val: 2 rows, 1 listed, 1 videos missing" in printed
    assert read_class_names(str(out / "classes.json")) == ["abseiling", "bowling", "zumba"]  # alphabetical ids
    assert json.loads((out / "class_ids.json").read_text()) == {"abseiling": 0, "bowling": 1, "zumba": 2}
    recs = read_video_list(str(out / "train.csv"), " ", 3, str(vids))
    assert sorted((os.path.relpath(r.path, vids), r.label) for r in recs) == [
        ("abseiling/bbb_000000_000010.mp4", 0), ("ddd_000001_000011.mp4", 2), ("zumba/aaa_000014_000024.mp4", 2)]
    missing = (out / "missing_train.txt").read_text()
    assert "train.csv:4: ccc_000005_000015.mp4" in missing
    assert (out / "val.csv").read_text() == "val/eee_000003_000013.mp4 1\n"
    assert not (out / "test.csv").exists()  # no official test.csv given


def test_prepare_k400_bad_header_named(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("youtube_id,label\naaa,zumba\n")
    assert prepare_lists.main(["k400", "--annotations", str(tmp_path), "--videos", str(tmp_path)]) == 2
    assert "train.csv:1: header lacks columns" in capsys.readouterr().err


def test_prepare_ssv2_lists(tmp_path):
    ann, vids, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "lists"
    ann.mkdir()
    vids.mkdir()
    (ann / "something-something-v2-labels.json").write_text(json.dumps({"Holding something": "0", "Moving something up": "1"}))
    (ann / "something-something-v2-train.json").write_text(json.dumps([
        {"id": "1", "template": "Holding [something]"}, {"id": "2", "template": "Moving [something] up"}]))
    (ann / "something-something-v2-validation.json").write_text(json.dumps([{"id": "3", "template": "Holding [something]"}]))
    (vids / "1.webm").write_bytes(b"")
    (vids / "3.webm").write_bytes(b"")
    assert prepare_lists.main(["ssv2", "--annotations", str(ann), "--videos", str(vids), "--out", str(out)]) == 0
    labels = read_ssv2_labels(str(out / "something-something-v2-labels.json"))
    train = read_ssv2_split(str(out / "something-something-v2-train.json"), labels, str(vids))
    assert [(os.path.basename(r.path), r.label) for r in train] == [("1.webm", 0)]  # 2.webm is missing
    assert "something-something-v2-train.json[1]: 2.webm" in (out / "missing_train.txt").read_text()
    assert read_class_names(str(out / "classes.json")) == ["Holding something", "Moving something up"]


def test_check_videos_report(tmp_path, capsys):
    root = tmp_path / "d"
    write_test_video(str(root / "good.mp4"), num_frames=32)
    write_test_video(str(root / "short.mp4"), num_frames=8)
    write_video(str(root / "fastfps.mp4"), make_frames(20), fps=2400, gop=4)
    (root / "broken.mp4").write_text("garbage\n" * 10)
    write_list(str(root / "train.csv"), ["good.mp4 0", "short.mp4 1", "fastfps.mp4 0", "broken.mp4 1", "gone.mp4 0"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"DATA:\n  PATH_TO_DATA_DIR: {root}\n  PATH_PREFIX: {root}\n  NUM_FRAMES: 4\n  SAMPLING_RATE: 4\n"
                   f"MODEL:\n  NUM_CLASSES: 2\nOUTPUT_DIR: {tmp_path / 'out'}\n")
    rc = check_videos.main(["--cfg", str(cfg), "--split", "train", "DATA_LOADER.NUM_WORKERS", "2"])
    assert rc == 1  # some videos failed
    summary = capsys.readouterr().out
    assert "5 videos: 1 ok, 1 fps fallback, 1 too short, 2 failed" in summary
    with open(tmp_path / "out" / "check_videos_train.csv") as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}
    assert rows["good.mp4"]["status"] == "ok" and rows["good.mp4"]["num_frames"] == "32"
    assert rows["short.mp4"]["status"] == "too_short"  # 8 frames < 4 x 4
    assert rows["fastfps.mp4"]["status"] == "fps_fallback" and rows["fastfps.mp4"]["fps"] == ""
    assert rows["broken.mp4"]["status"] == "failed" and rows["broken.mp4"]["reason"].startswith("cannot open")
    assert rows["gone.mp4"]["reason"] == "file not found" and rows["gone.mp4"]["source"].endswith("train.csv:5")


def test_loader_benchmark_runs_and_reports_every_backend(tmp_path, capsys):
    from video_iared.benchmarks.loader_benchmark import benchmark_loader
    from video_iared.config import load_config

    for i in range(4):
        write_test_video(str(tmp_path / f"v{i}.mp4"), num_frames=24)
    for split in ("train", "test"):
        write_list(str(tmp_path / f"{split}.csv"), [f"v{i}.mp4 {i % 2}" for i in range(4)])
    cfg = load_config(None, [
        "DATA.PATH_TO_DATA_DIR", str(tmp_path), "DATA.PATH_PREFIX", str(tmp_path), "DATA.NUM_FRAMES", "4",
        "DATA.SAMPLING_RATE", "2", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA.TRAIN_CROP_SIZE", "32",
        "DATA.TEST_CROP_SIZE", "32", "TIMESFORMER.PATCH_SIZE", "16", "MODEL.NUM_CLASSES", "2",
        "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "2", "DATA_LOADER.NUM_WORKERS", "0",
        "BENCHMARK.NUM_ITERS", "2", "BENCHMARK.WARMUP_ITERS", "1",
    ])
    out = benchmark_loader(cfg, with_model=False, progress=False)
    assert set(out["backends"]) == {"pyav", "decord", "torchcodec"}
    for r in out["backends"].values():
        assert r["decode_ms_per_clip"] > 0 and r["train_clips_per_s"] > 0 and r["test_views_per_s"] == 3 * r["test_videos_per_s"] > 0
    printed = capsys.readouterr().out
    assert all(f"loader backend={b}" in printed for b in ("pyav", "decord", "torchcodec"))
