"""Multi-view testing and batch inference on the real tiny model and real encoded videos."""
import os
import shutil

import pytest
import torch

from engine_fixtures import tiny_cfg, write_broken_video
from video_iared.checkpoint import io as ckpt_io
from video_iared.data import build_multiview_dataset, build_normalizer
from video_iared.engine.multiview_test import test as run_test
from video_iared.engine.predict import predict, read_rows
from video_iared.engine.results import load_predictions, read_predictions_csv
from video_iared.build import build_model

VIEW_OPTS = ["TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3", "TEST.VIEWS_PER_CHUNK", "4",
             "TEST.SAVE_VIEW_LOGITS", "True", "TEST.VIEW_SWEEP", "True", "DATA.TEST_CROP_SIZE", "24",
             "DATA.TRAIN_CROP_SIZE", "24"]


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory):
    """The tiny dataset plus one of our checkpoints of a (randomly initialised) tiny model."""
    root = tmp_path_factory.mktemp("mv")
    cfg = tiny_cfg(data_dir, str(root / "out"), VIEW_OPTS)
    torch.manual_seed(0)
    model = build_model(cfg)
    ckpt = ckpt_io.save_checkpoint(str(root / "weights.pyth"), model, 1, arch=model.arch())
    return data_dir, ckpt, root


def test_two_clips_three_crops_one_result_per_video(setup, tmp_path):
    data_dir, ckpt, _ = setup
    cfg = tiny_cfg(data_dir, str(tmp_path), VIEW_OPTS + ["TEST.CHECKPOINT_FILE_PATH", ckpt])
    summary = run_test(cfg)
    pt = load_predictions(summary["predictions_pt"])
    n = len(build_multiview_dataset(cfg, "test"))
    assert n == 12 and summary["videos"] == n and summary["failed"] == 0 and summary["views"] == 6
    assert pt["index"].tolist() == list(range(n))  # exactly one result per video
    assert pt["view_logits"].shape == (n, 6, 4)
    # mean-softmax ensemble by hand, from the stored per-view logits
    vl = pt["view_logits"].double()
    e = vl.exp()
    hand = (e / e.sum(-1, keepdim=True)).mean(1)
    assert torch.allclose(pt["probabilities"].double(), hand, atol=1e-6)
    assert pt["predictions"].tolist() == hand.argmax(1).tolist()
    # the stored logits are the model's on that video's views (chunks of 4 cut across videos correctly)
    model = build_model(cfg)
    model.load_state_dict(torch.load(ckpt, weights_only=True)["model_state"])
    model.eval()
    ds = build_multiview_dataset(cfg, "test")
    for i in (0, 5, 11):
        with torch.no_grad():
            direct = model(build_normalizer(cfg)(ds[i]["views"]))  # uint8 views (DATA.NORMALIZE_ON_DEVICE)
        assert torch.allclose(direct, pt["view_logits"][i], atol=1e-4)
    # video-level accuracy from the file agrees with the summary line's figure
    acc = 100.0 * (pt["predictions"] == pt["labels"]).float().mean().item()
    assert summary["video_top1"] == pytest.approx(acc)
    assert summary["gflops_per_view"] > 0
    assert [(r["clips"], r["crops"]) for r in summary["view_sweep"]] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    assert summary["view_sweep"][-1]["video_top1"] == pytest.approx(summary["video_top1"])
    # CSV and .pt agree (the predictions file round-trips)
    rows = read_predictions_csv(summary["predictions_csv"])
    assert [r["pred"] for r in rows] == pt["predictions"].tolist()
    assert [r["label"] for r in rows] == pt["labels"].tolist()


def test_failed_video_is_reported_not_substituted(setup, tmp_path):
    data_dir, ckpt, root = setup
    # a copy of the dataset whose test list has one broken video in the middle
    d2 = str(tmp_path / "data")
    shutil.copytree(data_dir, d2, ignore=shutil.ignore_patterns("videos"))
    os.symlink(os.path.join(data_dir, "videos"), os.path.join(d2, "videos"))
    write_broken_video(os.path.join(d2, "broken.mp4"))
    lines = open(os.path.join(d2, "test.csv")).read().splitlines()
    lines.insert(4, "broken.mp4 2")
    open(os.path.join(d2, "test.csv"), "w").write("\n".join(lines) + "\n")
    cfg = tiny_cfg(d2, str(tmp_path / "out"), VIEW_OPTS + ["TEST.CHECKPOINT_FILE_PATH", ckpt])
    summary = run_test(cfg)
    assert summary["failed"] == 1 and summary["videos"] == 12
    pt = load_predictions(summary["predictions_pt"])
    assert pt["index"].tolist() == list(range(13))
    assert pt["paths"][4].endswith("broken.mp4") and pt["errors"][4] and pt["predictions"][4] == -1
    assert torch.isnan(pt["probabilities"][4]).all() and torch.isnan(pt["view_logits"][4]).all()
    row = read_predictions_csv(summary["predictions_csv"])[4]
    assert row["status"] == "failed" and row["error"] and row["top_classes"] == []
    # its neighbours are their own videos, with their own predictions (nothing was substituted)
    assert not torch.equal(pt["view_logits"][3], pt["view_logits"][5])


def test_batch_inference_on_a_folder_with_a_broken_file(setup, tmp_path):
    data_dir, ckpt, _ = setup
    folder = tmp_path / "incoming"
    folder.mkdir()
    videos = sorted(os.listdir(os.path.join(data_dir, "videos")))[:5]
    for v in videos:
        shutil.copy(os.path.join(data_dir, "videos", v), folder / v)
    write_broken_video(str(folder / "zz_truncated.mp4"))
    (folder / "notes.txt").write_text("not a video, not listed")
    for out_name in ("predict.csv", "predict.json"):
        cfg = tiny_cfg(data_dir, str(tmp_path / "out"), VIEW_OPTS + [
            "TEST.CHECKPOINT_FILE_PATH", ckpt, "PREDICT.ENABLE", "True", "PREDICT.INPUT", str(folder),
            "PREDICT.OUTPUT", out_name, "PREDICT.TOP_K", "3"])
        rows = read_rows(predict(cfg))
        assert [os.path.basename(r["path"]) for r in rows] == videos + ["zz_truncated.mp4"]
        for r in rows[:-1]:
            assert r["status"] == "ok" and len(r["top_classes"]) == 3 and len(r["top_names"]) == 3
            assert r["top_probs"] == sorted(r["top_probs"], reverse=True) and 0 < sum(r["top_probs"]) <= 1.0001
            assert r["views"] == 6 and r["gflops"] > 0
        assert rows[-1]["status"] == "failed" and rows[-1]["error"] and rows[-1]["top_classes"] == []


def test_predict_tool_on_a_list_file(setup, tmp_path, capsys):
    from engine_fixtures import ROOT, tiny_opts
    from video_iared.tools_main import predict_main

    data_dir, ckpt, _ = setup
    videos = sorted(os.listdir(os.path.join(data_dir, "videos")))[:3]
    lst = tmp_path / "todo.txt"
    lst.write_text("# videos to label\n" + "".join(f"{os.path.join(data_dir, 'videos', v)} 0\n" for v in videos)
                   + "missing_video.mp4\n")
    rc = predict_main(["--cfg", str(ROOT / "configs/synthetic_dense.yaml"), "--input", str(lst), "--checkpoint", ckpt,
                       "--output", "labels.json"] + tiny_opts(data_dir, str(tmp_path / "out"), VIEW_OPTS))
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.endswith("labels.json")
    rows = read_rows(str(tmp_path / "out" / "labels.json"))
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    assert "missing_video.mp4" in rows[-1]["path"] and rows[-1]["error"]
    # a path that names nothing is a clear error, not an empty file
    assert predict_main(["--cfg", str(ROOT / "configs/synthetic_dense.yaml"), "--input", str(tmp_path / "nope*.mp4"),
                         "--checkpoint", ckpt] + tiny_opts(data_dir, str(tmp_path / "out"), VIEW_OPTS)) == 1
    assert "PREDICT.INPUT" in capsys.readouterr().err
