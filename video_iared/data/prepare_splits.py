"""List files from the official three-split protocols of UCF101 and HMDB51 (tools/prepare_lists.py).

UCF101 (``ucfTrainTestlist/``): ``classInd.txt`` (``1 ApplyEyeMakeup``, ids from 1), ``trainlist0N.txt``
(``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``) and ``testlist0N.txt`` (paths only: the class is the
folder). HMDB51 (``testTrainMulti_7030_splits/``): ``<class>_test_split<N>.txt`` with lines
``<video>.avi <flag>`` (1 train, 2 test, 0 unused); the videos are ``<class>/<video>.avi`` and the class ids
follow the alphabetical order of the class names.

Each split N becomes ``out_dir/split<N>/{train,val,test}.csv`` (``path label``, labels from 0, paths relative
to the video folder), ``classes.json`` and ``missing_<split>.txt``: the same list format as Kinetics, so the
datasets are read by the Kinetics adapter. Neither dataset has a validation split: ``val.csv`` holds out
``val_fraction`` of the train split by *source video* (UCF101's groups ``gXX`` are clips cut from one long
video, HMDB51's ``..._<n>.avi`` clips of one scene), so no clip of a held-out source trains; the held-out set
is a fixed function of the names (crc32), the same on every run. ``val_fraction 0`` writes no ``val.csv``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import zlib
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .annotations import AnnotationError

logger = logging.getLogger(__name__)

UCF_CLASS_INDEX = "classInd.txt"
HMDB_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d+)\.txt$")
HMDB_FLAGS = {"1": "train", "2": "test", "0": None}


class Entry(NamedTuple):
    """One annotated video: its path as the annotation names it, label (from 0), source video key, where."""

    path: str
    label: int
    source_key: str
    where: str


def _lines(path: str) -> List[Tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of an annotation file (BOM and CRLF tolerated)."""
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: not found")
    with open(path, encoding="utf-8-sig") as f:
        return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def _ucf_source_key(path: str) -> str:
    """``Class/v_Class_g08_c01.avi`` -> ``class/g08`` (the clips of one group come from one video)."""
    m = re.search(r"_g(\d+)_c\d+\.\w+$", path)
    return f"{path.split('/')[0].lower()}/g{m.group(1)}" if m else path.lower()


def read_ucf_class_index(path: str) -> List[str]:
    """Class names by label (from 0) from ``classInd.txt``; ids must run 1..N in order."""
    names = []
    for n, text in _lines(path):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(f"{path}:{n}: expected '<id> <ClassName>', got {text!r}")
        if int(parts[0]) != len(names) + 1:
            raise AnnotationError(f"{path}:{n}: class id {parts[0]} out of order (expected {len(names) + 1})")
        names.append(parts[1])
    if not names:
        raise AnnotationError(f"{path}: no classes")
    return names


def read_ucf_list(path: str, names: Sequence[str]) -> List[Entry]:
    """A ``trainlist0N.txt`` (``path id``) or ``testlist0N.txt`` (``path``) file: the class is the path's
    folder (matched case-insensitively: the official lists spell ``HandstandPushups`` both ways); a given id
    must agree with it."""
    ids = {name.lower(): i for i, name in enumerate(names)}
    out = []
    for n, text in _lines(path):
        parts = text.replace("\\", "/").split()
        where = f"{path}:{n}"
        if len(parts) not in (1, 2) or "/" not in parts[0]:
            raise AnnotationError(f"{where}: expected 'Class/video.avi [id]', got {text!r}")
        folder = parts[0].split("/")[0].lower()
        if folder not in ids:
            raise AnnotationError(f"{where}: class folder {parts[0].split('/')[0]!r} is not in {UCF_CLASS_INDEX}")
        label = ids[folder]
        if len(parts) == 2 and parts[1] != str(label + 1):
            raise AnnotationError(f"{where}: class id {parts[1]} disagrees with the folder {names[label]!r} (id {label + 1})")
        out.append(Entry(parts[0], label, _ucf_source_key(parts[0]), where))
    return out


def read_hmdb_splits(annotation_dir: str, split: int) -> Tuple[List[str], Dict[str, List[Entry]]]:
    """The class names (sorted) and ``{"train": [...], "test": [...]}`` of HMDB51 split ``split`` from the
    ``<class>_test_split<split>.txt`` files in ``annotation_dir``."""
    files = {}
    for name in sorted(os.listdir(annotation_dir)):
        m = HMDB_SPLIT_FILE.match(name)
        if m and int(m.group("n")) == split:
            files[m.group("cls")] = os.path.join(annotation_dir, name)
    if not files:
        raise AnnotationError(f"{annotation_dir}: no <class>_test_split{split}.txt files")
    names = sorted(files)
    roles: Dict[str, List[Entry]] = {"train": [], "test": []}
    for label, cls in enumerate(names):
        for n, text in _lines(files[cls]):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in HMDB_FLAGS:
                raise AnnotationError(f"{files[cls]}:{n}: expected '<video>.avi <0|1|2>', got {text!r}")
            role = HMDB_FLAGS[parts[1]]
            if role:
                scene = re.sub(r"_\d+$", "", os.path.splitext(parts[0])[0])  # one scene's clips differ in the last number
                key = f"{cls}/{scene}"
                roles[role].append(Entry(f"{cls}/{parts[0]}", label, key, f"{files[cls]}:{n}"))
    return names, roles


def _held_out(key: str, fraction: float) -> bool:
    """Whether source ``key`` goes to val: a fixed hash of the name, so every run holds out the same videos."""
    return zlib.crc32(key.encode("utf-8")) % 10000 < round(fraction * 10000)


class _VideoIndex:
    """Resolves an annotated relative path under the video folder: exactly, else case-insensitively."""

    def __init__(self, video_dir: str) -> None:
        self.exact = set()
        self.folded: Dict[str, str] = {}
        for root, _, files in os.walk(video_dir):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), video_dir).replace(os.sep, "/")
                self.exact.add(rel)
                self.folded.setdefault(rel.lower(), rel)

    def find(self, rel: str) -> Optional[str]:
        return rel if rel in self.exact else self.folded.get(rel.lower())


def write_split_lists(out_dir: str, names: Sequence[str], roles: Dict[str, List[Entry]], videos: _VideoIndex,
                      val_fraction: float, separator: str = " ") -> Dict[str, Dict[str, int]]:
    """Write ``{train,val,test}.csv``, ``missing_<split>.txt`` and ``classes.json`` into ``out_dir`` (val
    carved out of train by source video); returns ``{split: {"rows", "written", "missing"}}``."""
    splits = {"train": [e for e in roles["train"] if not _held_out(e.source_key, val_fraction)],
              "val": [e for e in roles["train"] if _held_out(e.source_key, val_fraction)],
              "test": roles["test"]}
    if val_fraction <= 0:
        del splits["val"]
    os.makedirs(out_dir, exist_ok=True)
    report = {}
    for split, entries in splits.items():
        lines, missing = [], []
        for e in entries:
            found = videos.find(e.path)
            if found is None:
                missing.append(f"{e.where}: {e.path}")
            else:
                lines.append(f"{found}{separator}{e.label}")
        for name, rows in ((f"{split}.csv", lines), (f"missing_{split}.txt", missing)):
            with open(os.path.join(out_dir, name), "w") as f:
                f.write("".join(r + "\n" for r in rows))
        report[split] = {"rows": len(entries), "written": len(lines), "missing": len(missing)}
        logger.info("%s %s: %d rows, %d written, %d videos missing", out_dir, split, len(entries), len(lines), len(missing))
    with open(os.path.join(out_dir, "classes.json"), "w") as f:
        json.dump(list(names), f, indent=0)
    return report


def prepare_ucf101_lists(annotation_dir: str, video_dir: str, out_dir: str, splits: Sequence[int] = (1, 2, 3),
                         val_fraction: float = 0.1) -> Dict[str, Dict[str, int]]:
    """``out_dir/split<N>/`` for each of ``splits`` from ``ucfTrainTestlist/``; returns
    ``{"split1/train": counts, ...}``."""
    names = read_ucf_class_index(os.path.join(annotation_dir, UCF_CLASS_INDEX))
    videos = _VideoIndex(video_dir)
    report = {}
    for n in splits:
        roles = {role: read_ucf_list(os.path.join(annotation_dir, f"{role}list{n:02d}.txt"), names)
                 for role in ("train", "test")}
        for split, counts in write_split_lists(os.path.join(out_dir, f"split{n}"), names, roles, videos, val_fraction).items():
            report[f"split{n}/{split}"] = counts
    return report


def prepare_hmdb51_lists(annotation_dir: str, video_dir: str, out_dir: str, splits: Sequence[int] = (1, 2, 3),
                         val_fraction: float = 0.1) -> Dict[str, Dict[str, int]]:
    """``out_dir/split<N>/`` for each of ``splits`` from ``testTrainMulti_7030_splits/``; returns
    ``{"split1/train": counts, ...}``."""
    videos = _VideoIndex(video_dir)
    report = {}
    for n in splits:
        names, roles = read_hmdb_splits(annotation_dir, n)
        for split, counts in write_split_lists(os.path.join(out_dir, f"split{n}"), names, roles, videos, val_fraction).items():
            report[f"split{n}/{split}"] = counts
    return report
