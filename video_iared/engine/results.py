"""Per-video prediction files of the test stage: a readable CSV and a .pt with the full arrays.

The reference saves the labels twice and no predictions; here the .pt holds the ensembled probabilities
(N, K), the predicted class, the labels once, and optionally every view's logits (N, V, K). Failed videos
are rows with status "failed", their error, and NaN probabilities: reported, never substituted.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch

CSV_COLUMNS = [
    "index", "path", "label", "label_name", "status", "error", "pred", "correct",
    "top_classes", "top_names", "top_probs", "gflops", "keep_rates",
]


def _name(class_names: Sequence[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def _fmt_list(values: Sequence, fmt: str = "{}") -> str:
    return " ".join(fmt.format(v) for v in values)


def write_predictions(
    stem: str,
    records: List[Dict],
    num_classes: int,
    class_names: Optional[Sequence[str]] = None,
    topk: int = 5,
    ensemble_method: str = "mean_softmax",
    save_view_logits: bool = False,
) -> Tuple[str, str]:
    """Write ``stem.pt`` then ``stem.csv`` from per-video records; returns (csv path, pt path).

    A record: ``index`` (int), ``path`` (str), ``label`` (int), ``probs`` ((K,) tensor or None when failed),
    ``error`` (str or None), ``gflops`` (per view, float), ``keep_rates`` (list per group, or None),
    ``view_logits`` ((V, K) tensor, or None). The arrays go first, so a CSV that cannot be written loses no
    prediction; each file is written to a temporary and renamed.
    """
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    records = sorted(records, key=lambda r: r["index"])
    csv_path, pt_path = stem + ".csv", stem + ".pt"
    payload = _arrays(records, num_classes, save_view_logits)
    payload.update(ensemble_method=ensemble_method, class_names=list(class_names) if class_names is not None else None)
    torch.save(payload, pt_path + ".tmp")
    os.replace(pt_path + ".tmp", pt_path)
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in records:
            w.writerow(_csv_row(r, class_names, min(topk, num_classes)))
    os.replace(tmp, csv_path)
    return csv_path, pt_path


def _arrays(records: List[Dict], k: int, save_view_logits: bool) -> Dict:
    """The .pt payload's arrays of the sorted records: probabilities (N, K), predictions (N,), labels, GFLOPs,
    keep rates (N, G) and optionally the view logits (N, V, K); NaN / -1 where a video failed."""
    n = len(records)
    probs = torch.full((n, k), float("nan"))
    gflops = torch.full((n,), float("nan"), dtype=torch.float64)
    keep_lens = {len(r["keep_rates"]) for r in records if r.get("keep_rates") is not None}
    keep = torch.full((n, max(keep_lens)), float("nan")) if keep_lens else None
    view_logits = None
    for i, r in enumerate(records):
        if r.get("probs") is not None:
            probs[i] = r["probs"].float().cpu()
        g = r.get("gflops")
        if g is not None and not (isinstance(g, float) and math.isnan(g)):
            gflops[i] = float(g)
        if r.get("keep_rates") is not None:
            keep[i, : len(r["keep_rates"])] = torch.tensor([float(x) for x in r["keep_rates"]])
        if save_view_logits and r.get("view_logits") is not None:
            vl = r["view_logits"].float().cpu()
            if view_logits is None:
                view_logits = torch.full((n, vl.shape[0], k), float("nan"))
            view_logits[i, : vl.shape[0]] = vl
    failed = torch.tensor([r.get("probs") is None for r in records], dtype=torch.bool)
    preds = torch.where(failed, -1, probs.nan_to_num(-1.0).argmax(1)) if n else torch.zeros(0, dtype=torch.long)
    return {
        "index": torch.tensor([r["index"] for r in records], dtype=torch.long),
        "paths": [r["path"] for r in records],
        "labels": torch.tensor([int(r["label"]) for r in records], dtype=torch.long),
        "probabilities": probs,
        "predictions": preds,
        "errors": [r.get("error") or "" for r in records],
        "gflops": gflops,
        "keep_rates": keep,
        "view_logits": view_logits,
    }


def _csv_row(r: Dict, class_names: Optional[Sequence[str]], topk: int) -> Dict:
    """One CSV row of a record (a class without a name, in a shorter names list, is shown by its id)."""
    label = int(r["label"])
    row = {c: "" for c in CSV_COLUMNS}
    row.update(index=r["index"], path=r["path"], label=label, status="ok", gflops="")
    if class_names is not None and 0 <= label < len(class_names):
        row["label_name"] = class_names[label]
    if r.get("probs") is None:
        row.update(status="failed", error=(r.get("error") or "unknown error").replace("\n", " "))
    else:
        top = r["probs"].float().cpu().topk(topk)
        pred = int(top.indices[0])
        row.update(pred=pred, correct=int(pred == label), top_classes=_fmt_list(top.indices.tolist()),
                   top_probs=_fmt_list(top.values.tolist(), "{:.6f}"))
        if class_names is not None:
            row["top_names"] = "|".join(_name(class_names, j) for j in top.indices.tolist())
    g = r.get("gflops")
    if g is not None and not (isinstance(g, float) and math.isnan(g)):
        row["gflops"] = f"{float(g):.6f}"
    if r.get("keep_rates") is not None:
        row["keep_rates"] = _fmt_list([float(x) for x in r["keep_rates"]], "{:.6f}")
    return row


def read_predictions_csv(path: str) -> List[Dict]:
    """The rows of a predictions CSV with numeric fields parsed (lists as lists; empty fields as None)."""
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: not a predictions file (missing columns {sorted(missing)})")
        for row in reader:
            r: Dict = dict(row)
            r["index"] = int(r["index"])
            r["label"] = int(r["label"])
            r["pred"] = int(r["pred"]) if r["pred"] else None
            r["correct"] = int(r["correct"]) if r["correct"] else None
            r["top_classes"] = [int(x) for x in r["top_classes"].split()]
            r["top_probs"] = [float(x) for x in r["top_probs"].split()]
            r["top_names"] = r["top_names"].split("|") if r["top_names"] else []
            r["gflops"] = float(r["gflops"]) if r["gflops"] else None
            r["keep_rates"] = [float(x) for x in r["keep_rates"].split()] if r["keep_rates"] else None
            r["error"] = r["error"] or None
            out.append(r)
    return out


def load_predictions(path: str) -> Dict:
    """The .pt arrays (loaded with ``weights_only=True``: plain tensors, lists and strings only)."""
    return torch.load(path, map_location="cpu", weights_only=True)
