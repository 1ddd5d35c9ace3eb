"""The interpretability interval table (interpret.paired_scores, reports.paired_markdown) on hand-made per-view
scores: each interpreter map minus each other method over the same views, with its paired bootstrap interval."""
import csv
import math

import numpy as np
import pytest

from video_iared.interpret.evaluation import InterpResult
from video_iared.interpret.paired_scores import paired_metrics
from video_iared.interpret.reports import paired_markdown, write_reports
from video_iared.interpret.view_scores import CURVE_METRICS, MASK_METRICS
from video_iared.utils.bootstrap import paired_bootstrap_ci

# 4 videos x 2 views; AUC per view of each method; deletion only on view 0 (INTERP.CURVE_VIEWS 1)
AUC = {"interpreter": [0.9, 0.8, 0.95, 0.85, 0.9, 0.92, 0.88, 0.86],
       "rollout": [0.7, 0.72, 0.6, 0.75, 0.65, 0.7, 0.8, 0.68],       # interpreter clearly higher: better
       "random": [0.92, 0.75, 0.97, 0.8, 0.93, 0.9, 0.85, 0.9]}       # a mix: tie
DELETION = {"interpreter": [0.1, 0.2, 0.15, 0.12], "rollout": [0.5, 0.45, 0.6, 0.55], "random": [0.3, 0.1, 0.2, 0.05]}


def _per_view():
    rows = []
    for m in AUC:
        for i, auc in enumerate(AUC[m]):
            video, view = divmod(i, 2)
            rows.append({"video": video, "path": f"v{video}.mp4", "label": 0, "view": view, "correct": 1,
                         "method": m, **{k: math.nan for k in MASK_METRICS + CURVE_METRICS}, "auc_patch": auc,
                         "deletion_acc": DELETION[m][video] if view == 0 else math.nan})
    return rows


def _video_means(scores):
    return list(np.asarray(scores).reshape(4, 2).mean(1))


def test_paired_metrics_match_the_bootstrap_on_the_same_views():
    pv = _per_view()
    got = {(p.method, p.versus, p.metric): p for p in paired_metrics(pv, list(AUC), ("auc_patch", "deletion_acc"))}
    # interpreter maps vs the other methods only (rollout is not compared with random)
    assert set(got) == {("interpreter", b, k) for b in ("rollout", "random") for k in ("auc_patch", "deletion_acc")}
    p = got[("interpreter", "rollout", "auc_patch")]
    # videos are resampled (their 2 views go together): each video scored by the mean over its views
    assert p.ci == paired_bootstrap_ci(_video_means(AUC["interpreter"]), _video_means(AUC["rollout"]))
    assert p.views == 8 and p.videos == 4
    assert p.ci.diff == pytest.approx(np.mean(AUC["interpreter"]) - np.mean(AUC["rollout"]))
    assert p.verdict == "better" and p.cell().endswith(" better")
    assert got[("interpreter", "random", "auc_patch")].verdict == "tie"
    # deletion: the NaN views are left out, and lower is better (the interpreter removes the evidence first)
    d = got[("interpreter", "rollout", "deletion_acc")]
    assert d.views == 4 and d.videos == 4
    assert d.ci == paired_bootstrap_ci(DELETION["interpreter"], DELETION["rollout"])
    assert d.ci.diff < 0 and not d.ci.tie and d.verdict == "better"
    # the same interval the other way round is "worse"
    rev = paired_metrics([dict(r, method={"interpreter": "rollout", "rollout": "interpreter"}.get(r["method"],
                                                                                                 r["method"]))
                          for r in pv], ["interpreter", "rollout"], ("deletion_acc",))[0]
    assert rev.ci.diff == pytest.approx(-d.ci.diff) and rev.verdict == "worse"


def test_interval_table_and_files(tmp_path):
    pv = _per_view()
    metrics = ("auc_patch", "deletion_acc")
    res = InterpResult([], {}, np.zeros(0), {m: {k: (0.5, 0.1, 4) for k in MASK_METRICS + CURVE_METRICS}
                                                       for m in AUC}, 4, 8, [],
                       {"dense": 100.0}, [], 0.3, pv, paired_metrics(pv, list(AUC), metrics))
    md = paired_markdown(res, 0.1)
    lines = md.splitlines()
    assert "| map | vs | AUC (patch) | deletion AUC (acc) ↓ |" in lines
    p = next(x for x in res.paired if x.versus == "rollout" and x.metric == "auc_patch")
    q = next(x for x in res.paired if x.versus == "rollout" and x.metric == "deletion_acc")
    assert f"| interpreter | rollout | {p.cell()} | {q.cell()} |" in lines
    assert "lower is better for deletion AUC (acc)" in md and "4–8 views of 4–4 videos" in md
    assert paired_markdown(InterpResult([], {}, np.zeros(0), {}, 0, 0, [], {}, [], 0.0), 0.1) == ""
    paths = write_reports(res, str(tmp_path), 0.1)
    assert {"ci_md", "ci_csv", "per_view"} <= set(paths)
    with open(tmp_path / "interpretability_ci.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["method"] == "interpreter" and rows[0]["versus"] == "rollout"
    assert float(rows[0]["diff"]) == pytest.approx(p.ci.diff) and rows[0]["verdict"] == "better"
    assert (tmp_path / "interpretability_ci.md").read_text() == md
    with open(tmp_path / "interpretability_per_view.csv") as f:
        assert len(list(csv.DictReader(f))) == len(pv)
