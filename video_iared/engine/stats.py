"""The JSON-lines training log (``OUTPUT_DIR/stats.jsonl``), written by the main process only."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, List


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

    def write(self, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = {k: _clean(v) for k, v in record.items()}
        line.setdefault("time", round(time.time(), 3))
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


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
