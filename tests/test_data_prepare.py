"""List preparation from official annotation formats (tools/prepare_lists.py): Kinetics CSV variants,
UCF101 and HMDB51 split files. Tiny files written here; the videos are empty files (only names matter)."""
import os
import sys
from pathlib import Path

from video_iared.data.annotations import read_video_list
from video_iared.engine.predict import list_videos

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import prepare_lists  # noqa: E402


def _touch(root: Path, rels) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def test_k400_original_test_csv_without_labels_and_is_cc_column(tmp_path, capsys):
    """The 2017 release's test.csv has no label column (it stopped the whole preparation); the later CSVs
    carry an extra is_cc column. Train/val lists are written, the test videos go to a predict list."""
    ann, vids, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "lists"
    ann.mkdir()
    cc = "label,youtube_id,time_start,time_end,split,is_cc"
    (ann / "train.csv").write_text(f"{cc}\nzumba,aaa,14,24,train,0\nabseiling,bbb,0,10,train,1\n")
    (ann / "validate.csv").write_text(f"{cc}\nzumba,ccc,3,13,val,0\n")
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\nddd,1,11,test\neee,2,12,test\n")
    _touch(vids, ["zumba/aaa_000014_000024.mp4", "abseiling/bbb_000000_000010.mp4", "ccc_000003_000013.mp4",
                  "test/ddd_000001_000011.mp4"])
    assert prepare_lists.main(["k400", "--annotations", str(ann), "--videos", str(vids), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train: 2 rows, 2 listed, 0 videos missing" in printed and "test: 2 rows, 1 listed, 1 videos missing" in printed
    assert "note: test has no labels" in printed and "test_unlabelled.txt" in printed
    train = read_video_list(str(out / "train.csv"), " ", 2, str(vids))
    assert sorted((os.path.relpath(r.path, vids), r.label) for r in train) == [
        ("abseiling/bbb_000000_000010.mp4", 0), ("zumba/aaa_000014_000024.mp4", 1)]
    assert (out / "val.csv").read_text() == "ccc_000003_000013.mp4 1\n"
    assert not (out / "test.csv").exists()
    assert list_videos(str(out / "test_unlabelled.txt")) == [str(vids / "test/ddd_000001_000011.mp4")]
    assert "test.csv:3: eee_000002_000012.mp4" in (out / "missing_test.txt").read_text()


def test_k400_train_csv_without_labels_is_still_an_error(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("youtube_id,time_start,time_end,split\naaa,0,10,train\n")
    assert prepare_lists.main(["k400", "--annotations", str(tmp_path), "--videos", str(tmp_path)]) == 2
    assert "train.csv:1: header lacks columns ['label']" in capsys.readouterr().err
