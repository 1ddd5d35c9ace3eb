"""TRAIN.PRETRAIN_CONFIG: run_net's dense training starts from another config's trained model, trained first."""
import os

import pytest
import yaml

from engine_fixtures import ROOT, tiny_opts
from video_iared.config import ConfigError, load_config
from video_iared.engine.device import init_from_cfg
from video_iared.engine.run import run, with_pretrained_init


def _write_config(path, opts):
    """A YAML config file: configs/synthetic_dense.yaml with the KEY VALUE ``opts`` as its own keys."""
    data = {"_BASE_": str(ROOT / "configs" / "synthetic_dense.yaml")}
    for key, value in zip(opts[::2], opts[1::2]):
        section, *rest = key.split(".")
        parsed = yaml.safe_load(value) if isinstance(value, str) else value
        if rest:
            data.setdefault(section, {})[rest[0]] = parsed
        else:
            data[section] = parsed
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_pretrain_config_is_trained_once_then_reused(data_dir, tmp_path):
    pre = _write_config(tmp_path / "pre.yaml", tiny_opts(data_dir, str(tmp_path / "pre"), ["SOLVER.MAX_EPOCH", "1"]))
    cfg = load_config(str(ROOT / "configs" / "synthetic_dense.yaml"),
                      tiny_opts(data_dir, str(tmp_path / "main"), ["TRAIN.PRETRAIN_CONFIG", pre, "SOLVER.MAX_EPOCH", "1"]))
    info = init_from_cfg(cfg)
    out = with_pretrained_init(cfg, info)
    weights = out.TRAIN.CHECKPOINT_FILE_PATH
    assert os.path.isfile(weights) and os.path.dirname(weights) == str(tmp_path / "pre" / "checkpoints")
    assert cfg.TRAIN.CHECKPOINT_FILE_PATH == "" and out.OUTPUT_DIR == cfg.OUTPUT_DIR  # cfg itself is untouched
    stamp = os.path.getmtime(weights)
    assert with_pretrained_init(cfg, info).TRAIN.CHECKPOINT_FILE_PATH == weights  # complete: reused, not retrained
    assert os.path.getmtime(weights) == stamp
    # an explicit checkpoint wins: nothing is pretrained
    given = cfg.clone()
    given.defrost()
    given.TRAIN.CHECKPOINT_FILE_PATH = weights
    assert with_pretrained_init(given, info) is given
    # run_net's dense stage logs where it started from
    run(cfg)
    log = open(tmp_path / "main" / "log.txt").read()
    assert f"starts from {weights}" in log


def test_a_missing_or_pruned_pretrain_config_is_named(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="TRAIN.PRETRAIN_CONFIG: no_such_config"):
        load_config(str(ROOT / "configs" / "synthetic_dense.yaml"), ["TRAIN.PRETRAIN_CONFIG", "no_such_config"])
    pruned = _write_config(tmp_path / "p.yaml", tiny_opts(data_dir, str(tmp_path / "p"), ["IARED.ENABLE", "True", "IARED.GROUPS", "[1, 1]", "IARED.KEEP_RATIO", "[0.5, 0.5]"]))
    cfg = load_config(str(ROOT / "configs" / "synthetic_dense.yaml"),
                      tiny_opts(data_dir, str(tmp_path / "m"), ["TRAIN.PRETRAIN_CONFIG", pruned]))
    with pytest.raises(ValueError, match="TRAIN.PRETRAIN_CONFIG .*p.yaml: must be a dense config"):
        with_pretrained_init(cfg, init_from_cfg(cfg))
