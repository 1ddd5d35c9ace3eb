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


# ----------------------------------------------------------------------------- UCF101 / HMDB51
UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]


def _ucf_annotations(ann: Path, groups=(8, 9, 10, 11), test_clips=2) -> None:
    """classInd.txt, trainlist01.txt, testlist01.txt as the official ucfTrainTestlist spells them (CRLF, the
    HandstandPushups / HandStandPushups spelling of the real lists)."""
    ann.mkdir(parents=True)
    (ann / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)))
    file_cls = {"HandstandPushups": "HandStandPushups"}
    train = [f"{c}/v_{file_cls.get(c, c)}_g{g:02d}_c01.avi {i}" for i, c in enumerate(UCF_CLASSES, 1) for g in groups]
    test = [f"{c}/v_{file_cls.get(c, c)}_g01_c{k:02d}.avi" for c in UCF_CLASSES for k in range(1, test_clips + 1)]
    (ann / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")
    (ann / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")


def _ucf_videos(ann: Path, vids: Path, write) -> None:
    """Every listed video, written by ``write(path)``; the HandstandPushups folder spelt as some copies do."""
    for name in ("trainlist01.txt", "testlist01.txt"):
        for line in (ann / name).read_text().splitlines():
            rel = line.split()[0].replace("HandstandPushups/", "HandStandPushups/")
            write(vids / rel)


def test_ucf101_lists_from_official_files(tmp_path, capsys):
    ann, vids, out = tmp_path / "ucfTrainTestlist", tmp_path / "UCF-101", tmp_path / "lists"
    _ucf_annotations(ann)
    _ucf_videos(ann, vids, lambda p: _touch(p.parent, [p.name]))
    (vids / "Archery/v_Archery_g01_c02.avi").unlink()
    argv = ["ucf101", "--annotations", str(ann), "--videos", str(vids), "--out", str(out), "--splits", "1"]
    assert prepare_lists.main(argv + ["--val-fraction", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "split1/test: 6 rows, 5 listed, 1 videos missing" in printed
    d = out / "split1"
    train, val = (read_video_list(str(d / f"{s}.csv"), " ", 3) for s in ("train", "val"))
    test = read_video_list(str(d / "test.csv"), " ", 3)
    assert len(train) + len(val) == 12 and train and val  # held out by group, nothing lost
    groups = lambda recs: {(r.label, r.path.split("_g")[1][:2]) for r in recs}  # noqa: E731
    assert not groups(train) & groups(val)
    assert ("HandStandPushups/v_HandStandPushups_g01_c01.avi", 2) in {(r.path, r.label) for r in test}
    assert all(r.label == UCF_CLASSES.index(r.path.split("/")[0].replace("HandStand", "Handstand")) for r in train + test)
    assert "testlist01.txt:4: Archery/v_Archery_g01_c02.avi" in (d / "missing_test.txt").read_text()
    assert prepare_lists.main(argv + ["--val-fraction", "0.5"]) == 0 and (d / "val.csv").read_text() == "".join(
        f"{r.path} {r.label}\n" for r in val)  # the same held-out set on every run
    assert prepare_lists.main(argv + ["--val-fraction", "0"]) == 0
    assert len(read_video_list(str(d / "train.csv"), " ", 3)) == 12


def test_ucf101_errors_name_file_and_line(tmp_path, capsys):
    ann = tmp_path / "ann"
    _ucf_annotations(ann)
    lines = (ann / "trainlist01.txt").read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0] + " 3"  # an ApplyEyeMakeup video labelled as class 3
    (ann / "trainlist01.txt").write_text("\n".join(lines) + "\n")
    assert prepare_lists.main(["ucf101", "--annotations", str(ann), "--videos", str(tmp_path), "--splits", "1",
                               "--out", str(tmp_path / "o")]) == 2
    assert "trainlist01.txt:3: class id 3 disagrees with the folder 'ApplyEyeMakeup' (id 1)" in capsys.readouterr().err


def _hmdb_annotations(ann: Path, classes=("brush_hair", "climb"), n_scenes=3) -> None:
    """<class>_test_split<N>.txt for splits 1 and 2: per scene two clips; flags 1 train, 2 test, 0 unused
    (with the trailing space of the official files)."""
    ann.mkdir(parents=True)
    for split in (1, 2):
        for cls in classes:
            rows = []
            for s in range(n_scenes):
                flag = 2 if s == (split - 1) % n_scenes else 1
                rows += [f"Movie{s}_{cls}_f_nm_np1_fr_med_{k}.avi {flag} " for k in range(2)]
            rows.append(f"Unused_{cls}_f_nm_np1_fr_med_0.avi 0 ")
            (ann / f"{cls}_test_split{split}.txt").write_text("\n".join(rows) + "\n")


def test_hmdb51_lists_from_official_files(tmp_path, capsys):
    ann, vids, out = tmp_path / "testTrainMulti_7030_splits", tmp_path / "hmdb51", tmp_path / "lists"
    _hmdb_annotations(ann)
    for f in ann.iterdir():
        cls = f.name.split("_test_split")[0]
        _touch(vids / cls, [line.split()[0] for line in f.read_text().splitlines()])
    assert prepare_lists.main(["hmdb51", "--annotations", str(ann), "--videos", str(vids), "--out", str(out),
                               "--splits", "1", "2", "--val-fraction", "0"]) == 0
    assert "split2/test: 4 rows, 4 listed, 0 videos missing" in capsys.readouterr().out
    test1 = read_video_list(str(out / "split1" / "test.csv"), " ", 2)
    assert [(r.path, r.label) for r in test1] == [("brush_hair/Movie0_brush_hair_f_nm_np1_fr_med_0.avi", 0),
                                                ("brush_hair/Movie0_brush_hair_f_nm_np1_fr_med_1.avi", 0),
                                                ("climb/Movie0_climb_f_nm_np1_fr_med_0.avi", 1),
                                                ("climb/Movie0_climb_f_nm_np1_fr_med_1.avi", 1)]
    train1 = read_video_list(str(out / "split1" / "train.csv"), " ", 2)
    assert len(train1) == 8 and not any("Unused" in r.path or "Movie0" in r.path for r in train1)
    (ann / "climb_test_split1.txt").write_text("Movie0_climb_f_nm_np1_fr_med_0.avi 3\n")
    assert prepare_lists.main(["hmdb51", "--annotations", str(ann), "--videos", str(vids), "--out", str(out)]) == 2
    assert "climb_test_split1.txt:1: expected '<video>.avi <0|1|2>'" in capsys.readouterr().err
