"""The config system: defaults, _BASE_ inheritance, KEY VALUE overrides, validation errors naming keys."""
import subprocess
import sys
from pathlib import Path

import pytest

from video_iared.config import ConfigError, get_cfg, load_config
from video_iared.config.defaults import _C

ROOT = Path(__file__).resolve().parents[1]


def test_get_cfg_is_a_fresh_copy():
    cfg = get_cfg()
    cfg.TRAIN.BATCH_SIZE = 123
    assert get_cfg().TRAIN.BATCH_SIZE == _C.TRAIN.BATCH_SIZE != 123


def test_every_default_key_has_a_comment():
    text = (ROOT / "video_iared/config/defaults.py").read_text()
    for line in text.splitlines():
        if line.startswith("_C.") and "CfgNode()" not in line:
            assert "#" in line, f"key without a comment: {line}"


def test_base_inheritance(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("TRAIN:\n  BATCH_SIZE: 3\nDATA:\n  NUM_FRAMES: 4\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nDATA:\n  NUM_FRAMES: 16\n")
    cfg = load_config(str(child))
    assert cfg.TRAIN.BATCH_SIZE == 3  # inherited
    assert cfg.DATA.NUM_FRAMES == 16  # overridden by the child


def test_shipped_configs_load_and_k400_inherits_dense():
    dense = load_config(str(ROOT / "configs/k400_dense.yaml"))
    pruned = load_config(str(ROOT / "configs/k400.yaml"))
    assert not dense.IARED.ENABLE and pruned.IARED.ENABLE
    assert pruned.DATA.SAMPLING_RATE == dense.DATA.SAMPLING_RATE == 32
    ssv2 = load_config(str(ROOT / "configs/ssv2.yaml"))
    assert ssv2.MODEL.NUM_CLASSES == 174 and not ssv2.DATA.RANDOM_FLIP
    for name in ("k400_hr", "k400_l", "ssv2_dense", "synthetic", "synthetic_dense"):
        load_config(str(ROOT / f"configs/{name}.yaml"))


def test_overrides_apply_with_types():
    cfg = load_config(str(ROOT / "configs/k400.yaml"), ["TRAIN.BATCH_SIZE", "4", "SOLVER.BASE_LR", "1", "DATA.MEAN", "[0.5, 0.5, 0.5]"])
    assert cfg.TRAIN.BATCH_SIZE == 4
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.DATA.MEAN == [0.5, 0.5, 0.5]
    assert cfg.is_frozen()


@pytest.mark.parametrize(
    "opts, words",
    [
        (["NOT.A.KEY", "1"], ["NOT.A.KEY"]),
        (["TRAIN.BATCH_SIZ", "4"], ["TRAIN.BATCH_SIZ", "did you mean TRAIN.BATCH_SIZE"]),
        (["TRAIN.BATCH_SIZE", "four"], ["TRAIN.BATCH_SIZE", "expected int"]),
        (["TRAIN.ENABLE", "1"], ["TRAIN.ENABLE"]),
        (["TRAIN.BATCH_SIZE"], ["KEY VALUE"]),
        (["IARED.GROUPS", "[4, 4]"], ["IARED.GROUPS", "TIMESFORMER.DEPTH"]),
        (["TIMESFORMER.ATTENTION_TYPE", "full"], ["TIMESFORMER.ATTENTION_TYPE", "divided_space_time"]),
        (["DATA.TRAIN_CROP_SIZE", "230"], ["DATA.TRAIN_CROP_SIZE"]),
        (["TEST.ENSEMBLE_METHOD", "vote"], ["TEST.ENSEMBLE_METHOD"]),
        (["IARED.TARGET_COST", "1.5"], ["IARED.TARGET_COST", "[0, 1)"]),
        (["IARED.CALIBRATION_PER_GROUP", "True", "IARED.MODE", "keep_ratio"],
         ["IARED.CALIBRATION_PER_GROUP", "IARED.MODE threshold"]),
        (["IARED.FINETUNE_EPOCHS", "-1"], ["IARED.FINETUNE_EPOCHS", ">= 0"]),
        (["IARED.DENSE_PLUS_N", "1"], ["IARED.DENSE_PLUS_N"]),
    ],
)
def test_bad_overrides_name_the_key(opts, words):
    with pytest.raises(ConfigError) as info:
        load_config(str(ROOT / "configs/k400.yaml"), opts)
    for w in words:
        assert w in str(info.value)


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_BASE_: %s\nSOLVER:\n  BASE_RL: 0.1\n" % (ROOT / "configs/k400.yaml"))
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    msg = str(info.value)
    assert "SOLVER.BASE_RL" in msg and "bad.yaml" in msg and "SOLVER.BASE_LR" in msg


def test_run_net_rejects_unknown_key_on_the_command_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/run_net.py"), "--cfg", str(ROOT / "configs/k400.yaml"), "NOT.A.KEY", "1"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "NOT.A.KEY" in proc.stderr
