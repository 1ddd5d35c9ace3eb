"""CUDA defaults (issue 19.3), checked on the CPU: the one device rule, the TF32 switch, the training dtypes
(bf16 beside fp16 + GradScaler), and autocast reaching the curriculum / calibration forwards."""
import pytest
import torch

from video_iared.config import get_cfg
from video_iared.config.validate import ConfigError, validate_config
from video_iared.engine import distributed as du
from video_iared.engine.amp import make_scaler, policy_dtype, train_dtype
from video_iared.engine.device import device_from_cfg, init_from_cfg
from video_iared.pruning.calibrate import measure_threshold
from video_iared.pruning.iared import IAREDTimeSformer

CUDA = torch.device("cuda")  # a device object only: nothing runs on it
CPU = torch.device("cpu")


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_cuda_tf32_is_on_by_default_and_set_tf32_flips_both_flags(tf32_flags):
    assert get_cfg().CUDA_TF32 is True
    du.set_tf32(False)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    du.set_tf32(True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_the_device_rule_on_a_machine_without_cuda_leaves_the_flags_alone(tf32_flags, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    du.set_tf32(True)
    cfg = get_cfg()
    cfg.CUDA_TF32 = False
    for device in ("auto", "cpu"):
        cfg.DEVICE = device
        assert device_from_cfg(cfg) == CPU
        assert init_from_cfg(cfg).device == CPU
    assert torch.backends.cuda.matmul.allow_tf32  # only set for a cuda run
    cfg.NUM_GPUS = 0
    cfg.DEVICE = "auto"
    assert device_from_cfg(cfg) == CPU


def test_the_device_rule_picks_cuda_when_present_and_sets_tf32_from_the_config(tf32_flags, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = get_cfg()
    cfg.CUDA_TF32 = False
    du.set_tf32(True)
    assert device_from_cfg(cfg).type == "cuda"  # DEVICE auto
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    cfg.NUM_GPUS = 0  # 0 forces the cpu
    assert device_from_cfg(cfg) == CPU


def test_training_dtypes_bf16_beside_fp16_with_a_scaler():
    assert train_dtype(CPU, False) is None and train_dtype(CUDA, False, "fp16") is None
    assert train_dtype(CUDA, True) == torch.float16  # auto on cuda: fp16 + GradScaler
    assert train_dtype(CUDA, True, "bf16") == torch.bfloat16
    assert train_dtype(CPU, True) == torch.bfloat16  # auto on the cpu
    with pytest.raises(Exception, match="TRAIN.AMP_DTYPE"):
        train_dtype(CPU, True, "fp16")  # no fp16 autocast worth running on the cpu: refused, not swapped
    assert not make_scaler(CPU, torch.bfloat16).is_enabled()
    # the REINFORCE forwards: bf16 under any mixed precision, float32 without
    assert policy_dtype(torch.float16) == torch.bfloat16 and policy_dtype(None) is None


def test_amp_dtype_choices_are_validated_naming_the_key():
    cfg = get_cfg()
    cfg.TRAIN.AMP_DTYPE = "fp8"
    with pytest.raises(ConfigError, match="TRAIN.AMP_DTYPE"):
        validate_config(cfg)


def _tiny_iared():
    torch.manual_seed(0)
    return IAREDTimeSformer(groups=(1, 1), interp_heads=2, interp_head_dim=8, img_size=32, patch_size=8,
                            num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=3).eval()


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_calibration_forwards_run_under_the_given_autocast(dtype):
    model = _tiny_iared()
    seen = []
    model.blocks[0].mlp.register_forward_hook(lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu")))
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    point = measure_threshold(model, [{"clip": clip, "label": torch.tensor([0, 1])}], CPU, 0.5, 1.0, dtype=dtype)
    assert seen == [dtype is not None] and point.clips == 2
