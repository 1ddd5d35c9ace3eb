"""DATA.NORMALIZE_ON_DEVICE: uint8 clips from the datasets, normalised on the device by ``ClipNormalizer`` to the
same numbers the worker-side ``normalize_clip`` gives (real encoded videos, decoded by our readers); floats pass
through; collate keeps uint8; the clip-level evaluation and the multi-view test give the same results with the
flag on and off."""
import numpy as np
import pytest
import torch

from engine_fixtures import tiny_cfg
from data_fixtures import frame_ids, write_test_video
from video_iared.checkpoint import io as ckpt_io
from video_iared.config import ConfigError, get_cfg, validate_config
from video_iared.data import build_dataset, build_loader, build_multiview_dataset, build_normalizer
from video_iared.data.device_normalize import ClipNormalizer, FloatPassThrough
from video_iared.data.loader import collate_clips, collate_list
from video_iared.data.readers import build_reader
from video_iared.data.transforms import TestTransform, TrainTransform, normalize_clip, normalize_pixels
from video_iared.engine.evaluate import evaluate
from video_iared.engine.multiview_test import test as run_test
from video_iared.build import build_model

MEAN, STD = [0.45, 0.40, 0.35], [0.225, 0.25, 0.20]
OFF = ["DATA.NORMALIZE_ON_DEVICE", "False"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """uint8 (T, H, W, 3) frames of a real encoded video, decoded by the PyAV reader."""
    path = write_test_video(str(tmp_path_factory.mktemp("dn") / "v.mp4"), num_frames=16, height=48, width=64)
    with build_reader(path, "pyav") as reader:
        f = reader.get_frames(np.arange(0, 16, 2))
    assert f.dtype == np.uint8 and frame_ids(f).tolist() == list(range(0, 16, 2))
    return f


def test_normalize_pixels_is_the_formula_and_leaves_its_input():
    x = torch.randint(0, 256, (2, 3, 4, 5, 5), dtype=torch.uint8)
    keep = x.clone()
    ref = (x.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(3, 1, 1, 1)) / torch.tensor(
        STD, dtype=torch.float64).view(3, 1, 1, 1)
    out = normalize_pixels(x, MEAN, STD, channel_dim=1)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), ref, atol=1e-6, rtol=0)
    assert torch.equal(x, keep)
    unit = x.float() / 255  # floats already scaled to [0, 1]: the same result, the input untouched
    unit_keep = unit.clone()
    assert torch.allclose(normalize_pixels(unit, MEAN, STD, channel_dim=-4), out, atol=1e-6, rtol=0)
    assert torch.equal(unit, unit_keep)


def test_train_transform_uint8_then_device_equals_worker_path(frames):
    norm = ClipNormalizer(MEAN, STD)
    for seed in range(4):  # random scale / crop / flip: the same draws for both from the same seed
        worker = TrainTransform((48, 56), 32, True, MEAN, STD)(frames, np.random.default_rng(seed))
        u8 = TrainTransform((48, 56), 32, True, MEAN, STD, normalize=False)(frames, np.random.default_rng(seed))
        assert u8.dtype == torch.uint8 and u8.shape == worker.shape == (3, 8, 32, 32) and u8.is_contiguous()
        assert worker.dtype == torch.float32
        assert torch.allclose(norm(u8), worker, atol=1e-6, rtol=0)
        assert torch.allclose(norm(u8.unsqueeze(0))[0], worker, atol=1e-6, rtol=0)  # batched (B, C, T, H, W)


def test_multiview_test_transform_uint8_then_device_equals_worker_path(frames):
    worker = TestTransform(32, 3, MEAN, STD)(frames)
    u8 = TestTransform(32, 3, MEAN, STD, normalize=False)(frames)
    assert u8.dtype == torch.uint8 and u8.shape == worker.shape == (3, 3, 8, 32, 32)
    assert torch.allclose(ClipNormalizer(MEAN, STD)(u8), worker, atol=1e-6, rtol=0)
    # the crops differ (left / centre / right), so a wrong crop or channel order would show
    assert not torch.equal(u8[0], u8[2])
    # and the worker path is normalize_clip of the same uint8 crop
    crop = u8[1].permute(1, 0, 2, 3)  # (T, C, H, W)
    assert torch.equal(normalize_clip(crop, MEAN, STD), worker[1])


def test_floats_pass_through_and_bad_input_is_refused():
    x = torch.randn(2, 3, 4, 8, 8)
    norm = ClipNormalizer(MEAN, STD)
    off = get_cfg()
    off.DATA.NORMALIZE_ON_DEVICE = False
    assert norm(x) is x and FloatPassThrough()(x) is x and build_normalizer(off)(x) is x
    assert isinstance(build_normalizer(off), FloatPassThrough)
    u8 = torch.zeros(2, 3, 4, 8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="build_normalizer"):
        FloatPassThrough()(u8)
    with pytest.raises(TypeError, match="uint8"):
        norm(u8.long())
    with pytest.raises(ValueError, match="DATA.MEAN"):
        norm(torch.zeros(2, 4, 4, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="std"):
        ClipNormalizer(MEAN, [0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match="same number"):
        ClipNormalizer(MEAN, STD[:2])
    assert norm.stats(torch.device("cpu"))[0] is norm.stats(torch.device("cpu"))[0]  # made once per device
    assert isinstance(build_normalizer(get_cfg()), ClipNormalizer)  # the default: on the device
    cfg = get_cfg()
    validate_config(cfg)
    cfg.DATA.NORMALIZE_ON_DEVICE = "yes"
    with pytest.raises(ConfigError, match="DATA.NORMALIZE_ON_DEVICE"):
        validate_config(cfg)


@pytest.mark.parametrize("pipeline", ["ours", "pytorchvideo"])
def test_datasets_return_uint8_with_the_flag_and_float_without(data_dir, tmp_path, pipeline):
    on = tiny_cfg(data_dir, str(tmp_path), ["DATA.PIPELINE", pipeline])
    off = tiny_cfg(data_dir, str(tmp_path), ["DATA.PIPELINE", pipeline] + OFF)
    norm = build_normalizer(on)
    for split in ("train", "val"):  # train items are seeded by RNG_SEED: the same draws in both datasets
        a, b = build_dataset(on, split)[1]["clip"], build_dataset(off, split)[1]["clip"]
        assert a.dtype == torch.uint8 and b.dtype == torch.float32 and a.shape == b.shape == (3, 4, 32, 32)
        assert torch.allclose(norm(a), b, atol=1e-6, rtol=0)
    a, b = build_multiview_dataset(on, "test")[0]["views"], build_multiview_dataset(off, "test")[0]["views"]
    assert a.dtype == torch.uint8 and b.dtype == torch.float32 and a.shape == b.shape
    assert torch.allclose(norm(a), b, atol=1e-6, rtol=0)


def test_collate_and_loader_keep_uint8(tiny_config):
    cfg = tiny_config()
    batch = next(iter(build_loader(cfg, "train")))
    assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape == (8, 3, 4, 32, 32)
    items = [{"clip": torch.full((3, 2, 4, 4), i, dtype=torch.uint8), "label": i, "index": i, "bad": 0}
             for i in range(3)]
    out = collate_clips(items + [{"clip": None, "label": 9, "index": 9, "bad": 0, "path": "p", "error": "e"}])
    assert out["clip"].dtype == torch.uint8 and out["clip"][:, 0, 0, 0, 0].tolist() == [0, 1, 2]
    assert out["failed"][0]["index"] == 9
    assert collate_list(items)[1]["clip"].dtype == torch.uint8
    if torch.cuda.is_available():  # the pinned-memory path the loader takes on a GPU run
        from torch.utils.data._utils.pin_memory import pin_memory

        pinned = pin_memory(out)
        assert pinned["clip"].is_pinned() and pinned["clip"].dtype == torch.uint8
        dev = torch.device("cuda")
        x = ClipNormalizer(MEAN, STD)(pinned["clip"].to(dev, non_blocking=True))
        assert x.device.type == "cuda" and torch.allclose(x.cpu(), ClipNormalizer(MEAN, STD)(out["clip"]), atol=1e-6)


def test_evaluation_and_multiview_test_same_with_flag_on_and_off(data_dir, tmp_path):
    cfg = tiny_cfg(data_dir, str(tmp_path / "on"), ["TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3",
                                                   "TEST.SAVE_VIEW_LOGITS", "True"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ckpt = ckpt_io.save_checkpoint(str(tmp_path / "w.pyth"), model, 1, arch=model.arch())
    off = cfg.clone()
    off.defrost()
    off.DATA.NORMALIZE_ON_DEVICE, off.OUTPUT_DIR = False, str(tmp_path / "off")
    cpu = torch.device("cpu")
    clip_on = evaluate(model, build_loader(cfg, "val"), cpu, normalizer=build_normalizer(cfg))
    clip_off = evaluate(model, build_loader(off, "val"), cpu, normalizer=build_normalizer(off))
    assert clip_on["clips"] == clip_off["clips"] == 8
    assert clip_on["top1"] == clip_off["top1"] and clip_on["loss"] == pytest.approx(clip_off["loss"], abs=1e-6)
    with pytest.raises(TypeError, match="build_normalizer"):  # uint8 clips and no normaliser: a clear error
        evaluate(model, build_loader(cfg, "val"), cpu)
    results = []
    for c in (cfg, off):
        c.defrost()
        c.TEST.CHECKPOINT_FILE_PATH = ckpt
        summary = run_test(c)
        results.append((summary, torch.load(summary["predictions_pt"], weights_only=False)))
    (s_on, p_on), (s_off, p_off) = results
    assert s_on["videos"] == s_off["videos"] == 12 and s_on["video_top1"] == s_off["video_top1"]
    assert p_on["predictions"].tolist() == p_off["predictions"].tolist()
    assert torch.allclose(p_on["view_logits"], p_off["view_logits"], atol=1e-5)


class _Spy(torch.nn.Module):
    """Records its inputs; logits from a fixed projection of their means."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 2)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.head(x.mean((2, 3, 4)))


def test_end_to_end_benchmark_normalises_on_the_device(tmp_path):
    import functools

    from video_iared.benchmarks.end_to_end import make_video_folder, run_end_to_end
    from video_iared.data.annotations import VideoRecord
    from video_iared.data.multiview import MultiViewDataset
    from video_iared.data.readers import build_reader
    from video_iared.data.sampling import ClipSampler
    from video_iared.data.transforms import TestTransform
    from video_iared.engine.multiview_test import dense_forward

    videos = make_video_folder(str(tmp_path / "v"), 2, height=48, width=64, num_frames=16, gop=8)
    seen = {}
    for on in (True, False):
        dataset = MultiViewDataset([VideoRecord(p, 0, p) for p in videos], functools.partial(build_reader, backend="pyav"),
                                   ClipSampler("dense", 4, 2), TestTransform(32, 1, MEAN, STD, normalize=not on), 1)
        spy = _Spy()
        res = run_end_to_end(dataset, [("spy", spy, "fp32", dense_forward(1.0))], 2, str(tmp_path / f"out{on}"),
                             batch_size=2, warmup_batches=0, normalizer=ClipNormalizer(MEAN, STD) if on else None)
        assert res[0].videos == 2 and res[0].model_ms > 0
        seen[on] = torch.cat(spy.seen)
    assert seen[True].dtype == seen[False].dtype == torch.float32 and seen[True].shape == (2, 3, 4, 32, 32)
    assert torch.allclose(seen[True], seen[False], atol=1e-6, rtol=0)
