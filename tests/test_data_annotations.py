"""Annotation files: every malformed list line is an error naming file:line; SSv2 JSON; classes.json."""
import json

import pytest

from data_fixtures import write_list
from video_iared.data.annotations import (
    AnnotationError, check_files_exist, read_class_names, read_ssv2_labels, read_ssv2_split, read_video_list,
)


def test_good_list_with_prefix_and_spaces_in_paths(tmp_path):
    p = write_list(str(tmp_path / "train.csv"), ["a/x.mp4 0", "b/with space.mp4 3"])
    recs = read_video_list(p, " ", 4, "/data")
    assert [(r.path, r.label) for r in recs] == [("/data/a/x.mp4", 0), ("/data/b/with space.mp4", 3)]
    assert recs[1].source == f"{p}:2"


@pytest.mark.parametrize(
    "rows,line,words",
    [
        (["path label", "a.mp4 0"], 1, "header row"),
        (["a.mp4 0", "b.mp4,1"], 2, "comma"),
        (["a.mp4 0", "b.mp4 abseiling"], 2, "class name"),
        (["a.mp4 0", "b.mp4 7"], 2, "outside [0, 5)"),
        (["a.mp4 0", "", "b.mp4 1"], 2, "blank line"),
        (["a.mp4 -1"], 1, "outside"),
    ],
)
def test_bad_list_lines_name_file_and_line(tmp_path, rows, line, words):
    p = write_list(str(tmp_path / "val.csv"), rows)
    with pytest.raises(AnnotationError) as e:
        read_video_list(p, " ", 5)
    assert f"{p}:{line}:" in str(e.value) and words in str(e.value)


def test_tab_separated_file_with_space_separator_is_named(tmp_path):
    p = write_list(str(tmp_path / "t.csv"), ["a.mp4\t0"])
    with pytest.raises(AnnotationError, match=r"t.csv:1: .*tab"):
        read_video_list(p, " ")
    assert read_video_list(p, "\t")[0].label == 0


def test_missing_videos_reported_together_with_count(tmp_path):
    (tmp_path / "ok.mp4").write_bytes(b"x")
    p = write_list(str(tmp_path / "l.csv"), ["ok.mp4 0", "gone1.mp4 0", "gone2.mp4 1"])
    recs = read_video_list(p, " ", 2, str(tmp_path))
    with pytest.raises(AnnotationError) as e:
        check_files_exist(recs)
    msg = str(e.value)
    assert msg.startswith("2 of 3 listed videos do not exist")
    assert f"{p}:2: " in msg and f"{p}:3: " in msg and "gone2.mp4" in msg and "ok.mp4" not in msg


def test_missing_list_file(tmp_path):
    with pytest.raises(AnnotationError, match="list file not found"):
        read_video_list(str(tmp_path / "nope.csv"))


def _ssv2(tmp_path):
    labels = {"Pushing something from left to right": "0", "Putting something on something": "1"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    split = [
        {"id": "12", "label": "pushing a cup from left to right", "template": "Pushing [something] from left to right",
         "placeholders": ["a cup"]},
        {"id": "7", "label": "putting a pen on a book", "template": "Putting [something] on [something]",
         "placeholders": ["a pen", "a book"]},
    ]
    (tmp_path / "split.json").write_text(json.dumps(split))
    return read_ssv2_labels(str(tmp_path / "labels.json"))


def test_ssv2_templates_map_to_ids_without_brackets(tmp_path):
    labels = _ssv2(tmp_path)
    recs = read_ssv2_split(str(tmp_path / "split.json"), labels, "/v", 2)
    assert [(r.path, r.label) for r in recs] == [("/v/12.webm", 0), ("/v/7.webm", 1)]
    (tmp_path / "test.json").write_text(json.dumps([{"id": "99"}]))
    assert read_ssv2_split(str(tmp_path / "test.json"), labels)[0].label == -1


def test_ssv2_unknown_template_and_bad_json_are_named(tmp_path):
    labels = _ssv2(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "1", "template": "Dancing with [something]"}]))
    with pytest.raises(AnnotationError, match=r"bad.json\[0\]: template 'Dancing with \[something\]'"):
        read_ssv2_split(str(tmp_path / "bad.json"), labels)
    (tmp_path / "broken.json").write_text('[\n{"id": 1,\n}')
    with pytest.raises(AnnotationError, match=r"broken.json:3: invalid JSON"):
        read_ssv2_split(str(tmp_path / "broken.json"), labels)


def test_class_names_list_dict_or_absent(tmp_path):
    assert read_class_names(str(tmp_path / "classes.json")) is None
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b"]))
    assert read_class_names(str(tmp_path / "classes.json")) == ["a", "b"]
    (tmp_path / "classes.json").write_text(json.dumps({"b": 1, "a": 0}))
    assert read_class_names(str(tmp_path / "classes.json")) == ["a", "b"]
