"""Kinetics adapter: labels from ``{train,val,test}.csv`` list files, dense sampling, flipping allowed."""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

from .annotations import VideoRecord, read_class_names, read_video_list

SAMPLING = "dense"
ALLOW_FLIP = True


def kinetics_records(
    data_dir: str, split: str, path_prefix: str = "", separator: str = " ", num_classes: Optional[int] = None
) -> Tuple[List[VideoRecord], Optional[List[str]]]:
    """The videos of ``data_dir/<split>.csv`` (paths joined to ``path_prefix``) and the class names of
    ``data_dir/classes.json`` when present."""
    records = read_video_list(os.path.join(data_dir, f"{split}.csv"), separator, num_classes, path_prefix)
    return records, read_class_names(os.path.join(data_dir, "classes.json"))
