"""Something-Something-v2 adapter: official JSON files, segment sampling, never flipped (labels such as
"Pushing something from left to right" change meaning under a flip)."""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Tuple

from .annotations import VideoRecord, read_ssv2_labels, read_ssv2_split, ssv2_class_names

logger = logging.getLogger(__name__)

SAMPLING = "segment"
ALLOW_FLIP = False
LABELS_FILE = "something-something-v2-labels.json"


def ssv2_split_file(data_dir: str, split: str) -> str:
    """The JSON file of ``split``: train, validation, and test (the validation file when no test file)."""
    name = {"train": "train", "val": "validation", "test": "test"}.get(split)
    if name is None:
        raise ValueError(f"unknown split {split!r}; expected train, val or test")
    path = os.path.join(data_dir, f"something-something-v2-{name}.json")
    if split == "test" and not os.path.isfile(path):
        logger.info("%s not found: testing on the validation split", path)
        path = os.path.join(data_dir, "something-something-v2-validation.json")
    return path


def ssv2_records(
    data_dir: str, split: str, path_prefix: str = "", num_classes: Optional[int] = None
) -> Tuple[List[VideoRecord], List[str]]:
    """The videos ``<path_prefix>/<id>.webm`` of ``split`` and the class names (from the labels file)."""
    labels = read_ssv2_labels(os.path.join(data_dir, LABELS_FILE))
    records = read_ssv2_split(ssv2_split_file(data_dir, split), labels, path_prefix, num_classes)
    return records, ssv2_class_names(labels)
