"""Reading the annotation files: Kinetics-style list files, the SSv2 JSON files and classes.json.

Every error names the file and line (or JSON entry) it is about. Records keep their source so a missing
video is reported as ``list.csv:17: path``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

logger = logging.getLogger(__name__)


class AnnotationError(ValueError):
    """A malformed list / JSON annotation file, or listed videos that do not exist."""


@dataclass(frozen=True)
class VideoRecord:
    """One listed video: its full path, its label (-1 when unknown, e.g. the SSv2 test split), and where
    it was listed (``file:line`` or ``file[entry]``)."""

    path: str
    label: int
    source: str


def _describe_sep(sep: str) -> str:
    return {" ": "space", "\t": "tab", ",": "comma", ";": "semicolon"}.get(sep, repr(sep))


# the datasets whose `path label` list files tools/prepare_lists.py writes (ssv2's lists are its JSON files)
LIST_DATASETS = ("k400", "ucf101", "hmdb51")


def prepare_lists_hint(missing: str, dataset: str = "") -> str:
    """The tail of a "not found" message for a list file: the ``tools/prepare_lists.py`` command that builds it (for
    ``dataset``, else the dataset a folder of the path is named after) and where data_lists/README.md explains it."""
    folders = os.path.normpath(os.path.abspath(missing)).split(os.sep)[:-1]
    names = (dataset,) if dataset else LIST_DATASETS
    at = max((i for i, f in enumerate(folders) if f in names), default=-1)
    if at < 0:
        name, out = dataset or "{" + ",".join(LIST_DATASETS) + "}", os.path.dirname(missing) or "."
    else:  # the dataset's folder, where prepare_lists writes (./data_lists/<dataset> unless --out)
        name, out = folders[at], os.sep.join(folders[:at + 1])
        out = "" if out == os.path.abspath(os.path.join("data_lists", name)) else out
    return (f"; build the lists with: python tools/prepare_lists.py {name} --annotations DIR --videos DIR"
            f"{f' --out {out}' if out else ''} (data_lists/README.md explains them)")


def read_video_list(
    list_path: str,
    separator: str = " ",
    num_classes: Optional[int] = None,
    path_prefix: str = "",
) -> List[VideoRecord]:
    """Parse a ``path<separator>label`` list file (PySlowFast's ``{train,val,test}.csv``).

    Paths may contain the separator (the label is the last field). Raises ``AnnotationError`` naming
    ``file:line`` for a blank line, a missing separator (with the separator the line seems to use), a
    label that is not an integer id (a header row, a class name) or a label outside ``[0, num_classes)``.
    """
    if not os.path.isfile(list_path):
        raise AnnotationError(f"{list_path}: list file not found{prepare_lists_hint(list_path)}")
    with open(list_path, "r", encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    records = []
    for n, line in enumerate(lines, start=1):
        where = f"{list_path}:{n}"
        if not line.strip():
            raise AnnotationError(f"{where}: blank line (every line must be 'path{separator}label')")
        if separator not in line.strip():
            seen = [s for s in ("\t", ",", ";", " ") if s != separator and s in line.strip()]
            hint = f"; the line seems to use a {_describe_sep(seen[0])} (set DATA.PATH_LABEL_SEPARATOR)" if seen else ""
            raise AnnotationError(
                f"{where}: no {_describe_sep(separator)} separator between path and label in {line!r}{hint}"
            )
        path, label_text = line.strip().rsplit(separator, 1)
        label_text = label_text.strip()
        if not re.fullmatch(r"[+-]?\d+", label_text):
            kind = "a header row?" if n == 1 else "a class name instead of an id? (tools/prepare_lists.py maps names to ids)"
            raise AnnotationError(f"{where}: label {label_text!r} is not an integer class id ({kind})")
        label = int(label_text)
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise AnnotationError(
                f"{where}: label {label} outside [0, {num_classes}) (MODEL.NUM_CLASSES)" if num_classes is not None
                else f"{where}: negative label {label}"
            )
        records.append(VideoRecord(os.path.join(path_prefix, path.strip()) if path_prefix else path.strip(), label, where))
    if not records:
        raise AnnotationError(f"{list_path}: the list file is empty")
    return records


def check_files_exist(records: Sequence[VideoRecord], show: int = 20) -> None:
    """Raise one ``AnnotationError`` listing every record whose video file is missing (with the count)."""
    missing = [r for r in records if not os.path.isfile(r.path)]
    if missing:
        lines = "\n".join(f"  {r.source}: {r.path}" for r in missing[:show])
        more = f"\n  ... and {len(missing) - show} more" if len(missing) > show else ""
        raise AnnotationError(
            f"{len(missing)} of {len(records)} listed videos do not exist (DATA.CHECK_FILES False skips this check):\n"
            f"{lines}{more}"
        )


def _load_json(path: str):
    if not os.path.isfile(path):
        hint = prepare_lists_hint(path, "ssv2") if os.path.basename(path).startswith("something-something-v2") else ""
        raise AnnotationError(f"{path}: file not found{hint}")
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e


def ssv2_template_key(template: str) -> str:
    """The label key of an SSv2 template: ``"Putting [something] on [something]"`` -> without brackets."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_labels(labels_json: str) -> Dict[str, int]:
    """``something-something-v2-labels.json`` (``{"Approaching something with your camera": "0", ...}``)
    as a map from template (without brackets) to label id."""
    data = _load_json(labels_json)
    if not isinstance(data, dict):
        raise AnnotationError(f"{labels_json}: expected a JSON object mapping template -> id")
    out = {}
    for name, value in data.items():
        try:
            out[ssv2_template_key(name)] = int(value)
        except (TypeError, ValueError):
            raise AnnotationError(f"{labels_json}[{name!r}]: label id {value!r} is not an integer") from None
    return out


def ssv2_class_names(labels: Dict[str, int]) -> List[str]:
    """Class names indexed by label id."""
    names = [""] * (max(labels.values()) + 1)
    for name, idx in labels.items():
        names[idx] = name
    return names


def read_ssv2_split(
    split_json: str,
    labels: Dict[str, int],
    path_prefix: str = "",
    num_classes: Optional[int] = None,
    ext: str = ".webm",
) -> List[VideoRecord]:
    """An SSv2 split file (a list of ``{"id", "template", ...}``) as records ``<prefix>/<id>.webm``.

    Entries without a template (the official test split) get label -1. Raises ``AnnotationError`` naming
    ``file[entry]`` for a missing id, an unknown template or a label outside ``[0, num_classes)``.
    """
    data = _load_json(split_json)
    if not isinstance(data, list):
        raise AnnotationError(f"{split_json}: expected a JSON list of videos")
    records = []
    unlabelled = 0
    for n, entry in enumerate(data):
        where = f"{split_json}[{n}]"
        if not isinstance(entry, dict) or "id" not in entry:
            raise AnnotationError(f"{where}: entry has no 'id': {entry!r}"[:300])
        path = os.path.join(path_prefix, f"{entry['id']}{ext}")
        if "template" not in entry:
            unlabelled += 1
            records.append(VideoRecord(path, -1, where))
            continue
        key = ssv2_template_key(entry["template"])
        if key not in labels:
            raise AnnotationError(f"{where}: template {entry['template']!r} is not in the labels file")
        label = labels[key]
        if num_classes is not None and not 0 <= label < num_classes:
            raise AnnotationError(f"{where}: label {label} outside [0, {num_classes}) (MODEL.NUM_CLASSES)")
        records.append(VideoRecord(path, label, where))
    if unlabelled:
        logger.info("%s: %d of %d videos have no template (label -1)", split_json, unlabelled, len(data))
    if not records:
        raise AnnotationError(f"{split_json}: the split holds no videos")
    return records


def read_class_names(path: str) -> Optional[List[str]]:
    """Class names from ``classes.json`` (a list indexed by label, or ``{name: id}``); None if absent."""
    if not os.path.isfile(path):
        return None
    data = _load_json(path)
    if isinstance(data, list):
        return [str(x) for x in data]
    if isinstance(data, dict):
        try:
            items = sorted((int(v), str(k)) for k, v in data.items())
        except (TypeError, ValueError):
            raise AnnotationError(f"{path}: expected a list of names or a {{name: id}} object") from None
        names = [""] * (items[-1][0] + 1 if items else 0)
        for idx, name in items:
            names[idx] = name
        return names
    raise AnnotationError(f"{path}: expected a list of names or a {{name: id}} object")
