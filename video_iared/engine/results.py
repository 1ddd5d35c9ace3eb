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
    """Write ``stem.csv`` and ``stem.pt`` from per-video records; returns both paths.

    A record: ``index`` (int), ``path`` (str), ``label`` (int), ``probs`` ((K,) tensor or None when failed),
    ``error`` (str or None), ``gflops`` (per view, float), ``keep_rates`` (list per group, or None),
    ``view_logits`` ((V, K) tensor, or None).
    """
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    records = sorted(records, key=lambda r: r["index"])
    n, k = len(records), num_classes
    probs = torch.full((n, k), float("nan"))
    preds = torch.full((n,), -1, dtype=torch.long)
    gflops = torch.full((n,), float("nan"), dtype=torch.float64)
    keep_lens = {len(r["keep_rates"]) for r in records if r.get("keep_rates") is not None}
    keep = torch.full((n, max(keep_lens)), float("nan")) if keep_lens else None
    view_logits = None
    csv_path, pt_path = stem + ".csv", stem + ".pt"
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for i, r in enumerate(records):
            label = int(r["label"])
            row = {c: "" for c in CSV_COLUMNS}
            row.update(index=r["index"], path=r["path"], label=label, status="ok", gflops="")
            if class_names is not None and 0 <= label < len(class_names):
                row["label_name"] = class_names[label]
            if r.get("probs") is None:
                row.update(status="failed", error=(r.get("error") or "unknown error").replace("\n", " "))
            else:
                p = r["probs"].float().cpu()
                probs[i] = p
                top = p.topk(min(topk, k))
                preds[i] = int(top.indices[0])
                row.update(
                    pred=int(top.indices[0]),
                    correct=int(int(top.indices[0]) == label),
                    top_classes=_fmt_list(top.indices.tolist()),
                    top_probs=_fmt_list(top.values.tolist(), "{:.6f}"),
                )
                if class_names is not None:
                    row["top_names"] = "|".join(class_names[j] for j in top.indices.tolist())
            g = r.get("gflops")
            if g is not None and not (isinstance(g, float) and math.isnan(g)):
                gflops[i] = float(g)
                row["gflops"] = f"{float(g):.6f}"
            if r.get("keep_rates") is not None:
                kr = [float(x) for x in r["keep_rates"]]
                keep[i, : len(kr)] = torch.tensor(kr)
                row["keep_rates"] = _fmt_list(kr, "{:.6f}")
            w.writerow(row)
            if save_view_logits and r.get("view_logits") is not None:
                vl = r["view_logits"].float().cpu()
                if view_logits is None:
                    view_logits = torch.full((n, vl.shape[0], k), float("nan"))
                view_logits[i, : vl.shape[0]] = vl
    os.replace(tmp, csv_path)
    payload = {
        "index": torch.tensor([r["index"] for r in records], dtype=torch.long),
        "paths": [r["path"] for r in records],
        "labels": torch.tensor([int(r["label"]) for r in records], dtype=torch.long),
        "probabilities": probs,
        "predictions": preds,
        "errors": [r.get("error") or "" for r in records],
        "gflops": gflops,
        "keep_rates": keep,
        "view_logits": view_logits,
        "ensemble_method": ensemble_method,
        "class_names": list(class_names) if class_names is not None else None,
    }
    torch.save(payload, pt_path + ".tmp")
    os.replace(pt_path + ".tmp", pt_path)
    return csv_path, pt_path


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
