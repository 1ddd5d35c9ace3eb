"""Ensembling rules, view subsets, video-level summaries, and the predictions file round trip."""
import math

import pytest
import torch

from video_iared.engine.ensemble import ensemble_views, spread, sweep_settings, view_subset
from video_iared.engine.meters import mean_class_accuracy, topk_correct
from video_iared.engine.multiview_test import parse_summary_line, summarize, summary_line, view_sweep
from video_iared.engine.results import load_predictions, read_predictions_csv, write_predictions


def test_mean_softmax_equals_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    e = [[math.exp(2), 1, math.exp(-1)], [1, math.exp(3), 1]]
    hand = [(e[0][k] / sum(e[0]) + e[1][k] / sum(e[1])) / 2 for k in range(3)]
    assert ensemble_views(logits, "mean_softmax").tolist() == pytest.approx(hand, abs=1e-6)


def test_rules_can_disagree_and_sum_logits_ranks_like_the_sum():
    # view 0 is very sure of class 0, views 1-2 mildly prefer class 1
    logits = torch.tensor([[9.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert ensemble_views(logits, "sum_logits").argmax() == logits.sum(0).argmax() == 0
    assert ensemble_views(logits, "max").argmax() == 0
    p = ensemble_views(torch.tensor([[0.0, 4.0], [0.0, 4.0], [3.0, 0.0]]), "mean_softmax")
    assert p.argmax() == 1 and p.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ENSEMBLE_METHOD"):
        ensemble_views(logits, "median")


def test_view_subsets():
    assert spread(1, 3) == [1]  # the centre crop
    assert spread(2, 4) == [1, 3] and spread(4, 4) == [0, 1, 2, 3]
    assert view_subset(2, 3, 1, 1) == [4]  # 1 of 2 clips: clip 1 (spread rounds up), centre crop 1 -> 1 * 3 + 1
    assert view_subset(2, 3, 2, 3) == list(range(6))
    assert view_subset(2, 3, 2, 1) == [1, 4]  # both clips, centre crop
    assert sweep_settings(4, 3) == [(1, 1), (1, 3), (2, 1), (2, 3), (4, 1), (4, 3)]


def test_topk_and_mean_class_accuracy():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    labels = torch.tensor([1, 0, 1, 1])
    assert topk_correct(scores, labels, (1, 2)) == [2, 4]
    # class 0: 1/1 right; class 1: 1/3 right -> (1 + 1/3) / 2
    assert mean_class_accuracy(scores.argmax(1), labels, 3) == pytest.approx(100 * (1 + 1 / 3) / 2)


def _records():
    g = torch.Generator().manual_seed(0)
    recs = []
    for i in range(5):
        vl = torch.randn(6, 4, generator=g)
        vl[:, i % 4] += 2.0 if i != 3 else -2.0  # video 3 is wrong
        recs.append({"index": i, "path": f"v{i}.mp4", "label": i % 4, "error": None, "view_logits": vl,
                     "probs": ensemble_views(vl), "gflops": 1.5, "keep_rates": [0.8, 0.5]})
    recs.append({"index": 5, "path": "broken.mp4", "label": 2, "error": "VideoDecodeError: moov atom not found",
                 "view_logits": None, "probs": None, "gflops": math.nan, "keep_rates": None})
    return recs


def test_summary_counts_failed_videos_and_line_round_trips():
    s = summarize(_records(), 4, views=6)
    assert s["videos"] == 5 and s["failed"] == 1 and s["views"] == 6
    assert s["video_top1"] == pytest.approx(80.0) and s["gflops_per_view"] == pytest.approx(1.5)
    line = summary_line(s)
    assert line.startswith("video_top1=80.0000 ") and line.endswith("gflops_per_view=1.500000")
    assert parse_summary_line("dense: " + line)["failed"] == 1
    rows = view_sweep(_records(), 2, 3, "mean_softmax")
    assert [(r["clips"], r["crops"]) for r in rows] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    assert rows[-1]["video_top1"] == pytest.approx(s["video_top1"])  # all views = the full result


def test_predictions_files_round_trip(tmp_path):
    recs = _records()
    names = ["a", "b", "c", "d"]
    csv_path, pt_path = write_predictions(str(tmp_path / "pred"), recs, 4, names, topk=3, save_view_logits=True)
    rows = read_predictions_csv(csv_path)
    pt = load_predictions(pt_path)
    assert [r["index"] for r in rows] == pt["index"].tolist() == list(range(6))
    assert pt["labels"].tolist() == [r["label"] for r in recs]
    for r, rec, probs, pred in zip(rows, recs, pt["probabilities"], pt["predictions"]):
        if rec["probs"] is None:
            assert r["status"] == "failed" and "moov atom" in r["error"] and pred == -1
            assert torch.isnan(probs).all() and r["top_classes"] == []
            continue
        top = rec["probs"].topk(3)
        assert r["top_classes"] == top.indices.tolist() == [int(c) for c in probs.topk(3).indices]
        assert r["top_probs"] == pytest.approx(top.values.tolist(), abs=1e-6)
        assert r["top_names"] == [names[j] for j in top.indices.tolist()]
        assert r["pred"] == int(pred) and r["keep_rates"] == pytest.approx([0.8, 0.5])
        assert torch.allclose(probs, rec["probs"])
    # predictions are stored, not a second copy of the labels (the reference's bug)
    assert not torch.equal(pt["predictions"], pt["labels"])
    assert pt["view_logits"].shape == (6, 6, 4) and torch.equal(pt["view_logits"][0], recs[0]["view_logits"])
