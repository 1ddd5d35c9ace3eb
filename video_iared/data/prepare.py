"""Building our list files from the official annotations (tools/prepare_lists.py).

Kinetics: the official CSVs (``label,youtube_id,time_start,time_end,split``; train.csv, validate.csv,
test.csv) become ``{train,val,test}.csv`` (``path label``, paths relative to the video folder), with
class ids from the alphabetically sorted class names of the train CSV (``classes.json``: the names by
id; ``class_ids.json``: name -> id). SSv2: the official JSON files are validated and rewritten
with the entries of present videos only.
Rows whose video file is missing are left out of the lists and reported (``missing_<split>.txt``).
The original release's test.csv has no ``label`` column: its present videos go to ``test_unlabelled.txt``
(absolute paths, one a line: ``tools/predict.py --input``) and no ``test.csv`` is written (the published
K400 numbers are on the validation split; the TEST stage reads ``test.csv``, so copy ``val.csv`` there).
CSVs with an extra ``is_cc`` column (the later release) read the same: unknown columns are ignored.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from typing import Dict, List, Tuple

from .annotations import AnnotationError, read_ssv2_labels, read_ssv2_split, ssv2_class_names
from .ssv2 import LABELS_FILE

logger = logging.getLogger(__name__)

KINETICS_SPLITS = {"train": "train.csv", "val": "validate.csv", "test": "test.csv"}
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
UNLABELLED_TEST = "test_unlabelled.txt"


def kinetics_file_name(youtube_id: str, start: float, end: float, ext: str = ".mp4") -> str:
    """The usual name of a downloaded clip: ``<youtube_id>_<start:06d>_<end:06d>.mp4``."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}{ext}"


def _index_videos(video_dir: str) -> Dict[str, str]:
    """File name -> path relative to ``video_dir`` for every file below it (flat or per-class folders)."""
    index = {}
    for root, _, files in os.walk(video_dir):
        for name in files:
            index.setdefault(name, os.path.relpath(os.path.join(root, name), video_dir))
    return index


def _read_kinetics_csv(path: str, label_optional: bool = False) -> List[Dict[str, str]]:
    """The rows of an official Kinetics CSV (dicts by column, plus ``_line``). With ``label_optional`` (the
    test split) a CSV without a ``label`` column is accepted; its rows carry no ``label`` key."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = [c for c in KINETICS_COLUMNS if not (label_optional and c == "label")]
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{path}:1: header lacks columns {missing} (expected label,youtube_id,time_start,time_end,split)")
        rows = []
        for n, row in enumerate(reader, start=2):
            if not row.get("youtube_id"):
                raise AnnotationError(f"{path}:{n}: empty youtube_id")
            try:
                float(row["time_start"]), float(row["time_end"])
            except (TypeError, ValueError):
                raise AnnotationError(f"{path}:{n}: time_start/time_end are not numbers: {row}") from None
            row["_line"] = str(n)
            rows.append(row)
    return rows


def _kinetics_split_lines(src: str, rows: List[Dict[str, str]], ids: Dict[str, int], videos: Dict[str, str],
                          ext: str, separator: str) -> Tuple[List[str], List[str]]:
    """(list lines ``path<sep>label``, or bare relative paths for unlabelled rows; ``file:line: name`` of the
    rows whose video is not among ``videos``)."""
    lines, missing = [], []
    for row in rows:
        label = row.get("label")
        if label is not None and label not in ids:
            raise AnnotationError(f"{src}:{row['_line']}: class {label!r} does not occur in the train split")
        name = kinetics_file_name(row["youtube_id"], row["time_start"], row["time_end"], ext)
        if name not in videos:
            missing.append(f"{src}:{row['_line']}: {name}")
        else:
            lines.append(videos[name] if label is None else f"{videos[name]}{separator}{ids[label]}")
    return lines, missing


def prepare_kinetics_lists(annotation_dir: str, video_dir: str, out_dir: str, ext: str = ".mp4",
                           separator: str = " ") -> Dict[str, Dict[str, int]]:
    """Write ``out_dir/{train,val,test}.csv``, ``classes.json``, ``class_ids.json`` and
    ``missing_<split>.txt``; returns ``{split: {"rows", "written", "missing"[, "unlabelled"]}}``. Splits whose
    official CSV is absent are skipped (logged). A test CSV without labels is written as
    ``test_unlabelled.txt`` (absolute video paths, for tools/predict.py) instead of ``test.csv``."""
    train_csv = os.path.join(annotation_dir, KINETICS_SPLITS["train"])
    if not os.path.isfile(train_csv):
        raise AnnotationError(f"{train_csv}: not found (the class ids come from the train split)")
    tables = {s: _read_kinetics_csv(os.path.join(annotation_dir, f), label_optional=s == "test")
              for s, f in KINETICS_SPLITS.items() if os.path.isfile(os.path.join(annotation_dir, f))}
    names = sorted({r["label"] for r in tables["train"]})
    ids = {name: i for i, name in enumerate(names)}
    videos = _index_videos(video_dir)
    os.makedirs(out_dir, exist_ok=True)
    report: Dict[str, Dict[str, int]] = {}
    for split, rows in tables.items():
        src = os.path.join(annotation_dir, KINETICS_SPLITS[split])
        lines, missing = _kinetics_split_lines(src, rows, ids, videos, ext, separator)
        unlabelled = bool(rows) and "label" not in rows[0]
        if unlabelled:  # predict's list format: one absolute path a line (relative ones would be cwd-relative)
            lines = [os.path.abspath(os.path.join(video_dir, line)) for line in lines]
        with open(os.path.join(out_dir, UNLABELLED_TEST if unlabelled else f"{split}.csv"), "w") as f:
            f.write("".join(line + "\n" for line in lines))
        with open(os.path.join(out_dir, f"missing_{split}.txt"), "w") as f:
            f.write("".join(m + "\n" for m in missing))
        report[split] = {"rows": len(rows), "written": len(lines), "missing": len(missing), "unlabelled": int(unlabelled)}
        logger.info("kinetics %s: %d rows, %d written, %d videos missing%s", split, len(rows), len(lines),
                    len(missing), " (no labels)" if unlabelled else "")
    with open(os.path.join(out_dir, "classes.json"), "w") as f:
        json.dump(names, f, indent=0)
    with open(os.path.join(out_dir, "class_ids.json"), "w") as f:
        json.dump(ids, f, indent=0)
    return report


def prepare_ssv2_lists(annotation_dir: str, video_dir: str, out_dir: str) -> Dict[str, Dict[str, int]]:
    """Validate the SSv2 JSON files and write them to ``out_dir`` keeping only the entries whose video
    exists, plus ``classes.json`` and ``missing_<split>.txt`` (videos ``<id>.webm`` not under
    ``video_dir``); returns the counts."""
    labels_path = os.path.join(annotation_dir, LABELS_FILE)
    labels = read_ssv2_labels(labels_path)
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(labels_path, os.path.join(out_dir, LABELS_FILE))
    report: Dict[str, Dict[str, int]] = {}
    for split in ("train", "validation", "test"):
        src = os.path.join(annotation_dir, f"something-something-v2-{split}.json")
        if not os.path.isfile(src):
            logger.info("%s not found: skipped", src)
            continue
        records = read_ssv2_split(src, labels, video_dir)  # validates every entry (errors name the entry)
        present = [os.path.isfile(r.path) for r in records]
        missing = [f"{r.source}: {os.path.basename(r.path)}" for r, ok in zip(records, present) if not ok]
        with open(src, encoding="utf-8") as f:
            entries = json.load(f)
        with open(os.path.join(out_dir, os.path.basename(src)), "w") as f:
            json.dump([e for e, ok in zip(entries, present) if ok], f)  # the official format, present videos only
        with open(os.path.join(out_dir, f"missing_{split}.txt"), "w") as f:
            f.write("".join(m + "\n" for m in missing))
        report[split] = {"rows": len(records), "written": len(records) - len(missing), "missing": len(missing)}
        logger.info("ssv2 %s: %d videos, %d missing", split, len(records), len(missing))
    with open(os.path.join(out_dir, "classes.json"), "w") as f:
        json.dump(ssv2_class_names(labels), f, indent=0)
    return report


def format_report(report: Dict[str, Dict[str, int]], out_dir: str) -> str:
    """The summary tools/prepare_lists.py prints: one line per split, a note for an unlabelled test split."""
    lines = [f"{s}: {r['rows']} rows, {r['written']} listed, {r['missing']} videos missing" for s, r in report.items()]
    if any(r.get("unlabelled") for r in report.values()):
        lines.append(f"note: test has no labels: listed in {UNLABELLED_TEST} for tools/predict.py --input, no test.csv "
                     "written (the TEST stage reads test.csv: copy val.csv to test.csv to test on the validation split)")
    return "\n".join(lines + [f"written to {out_dir} (missing rows: missing_<split>.txt)"])
