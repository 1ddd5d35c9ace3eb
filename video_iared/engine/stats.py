"""The JSON-lines training log (``OUTPUT_DIR/stats.jsonl``), written by the main process only."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Sequence


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every line parses with a strict reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):
        return _clean(value.item())
    return value


class StatsWriter:
    """Appends one JSON object per line; each line is flushed so a killed run keeps what it logged."""

    def __init__(self, path: str, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        if enabled:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def drop(self, which: Callable[[Dict[str, Any]], bool]) -> int:
        """Remove the rows for which ``which(row)`` is true (and lines cut by a kill), so that after a resume the
        file describes one run, not the killed partial epochs too; atomic (temporary file + rename). Returns the
        number of lines removed."""
        if not (self.enabled and os.path.isfile(self.path)):
            return 0
        with open(self.path) as f:
            lines = f.readlines()
        keep = [line for line in lines if not _dropped(line, which)]
        if len(keep) == len(lines):
            return 0
        with open(self.path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(self.path + ".tmp", self.path)
        return len(lines) - len(keep)

    def write(self, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = {k: _clean(v) for k, v in record.items()}
        line.setdefault("time", round(time.time(), 3))
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


def _dropped(line: str, which: Callable[[Dict[str, Any]], bool]) -> bool:
    if not line.strip():
        return False
    try:
        row = json.loads(line)
    except json.JSONDecodeError:  # a line cut by the kill
        return True
    return bool(which(row))


def epoch_rows_after(epoch: int, stages: Sequence[str]) -> Callable[[Dict[str, Any]], bool]:
    """A ``StatsWriter.drop`` predicate: rows of ``stages`` whose epoch is after ``epoch``."""
    return lambda row: row.get("stage") in stages and isinstance(row.get("epoch"), int) and row["epoch"] > epoch


def read_stats(path: str) -> List[Dict[str, Any]]:
    """Every record of a stats.jsonl file; a malformed line raises naming the file and line number."""
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e})") from e
    return out
