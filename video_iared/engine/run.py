"""The stage dispatcher behind ``tools/run_net.py``: set-up, then benchmark / train / test / predict.

Dense model (IARED.ENABLE False): train -> predict -> test. Dense training starts from TRAIN.CHECKPOINT_FILE_PATH,
or from the trained model of TRAIN.PRETRAIN_CONFIG (trained first in its own OUTPUT_DIR unless that run is
complete). IA-RED² (IARED.ENABLE True): train the dense model into OUTPUT_DIR/dense (unless IARED.DENSE_CHECKPOINT
is given) -> test it (summary line labelled "dense") -> ``train_iared(cfg, dense_checkpoint)`` -> with IARED.DENSE_PLUS_N, "dense + N": the dense model
finetuned for IARED.FINETUNE_EPOCHS by IA-RED²'s finetune recipe (``engine.finetune``) into
OUTPUT_DIR/dense_plus_n, and its test (labelled "dense + N") -> predict -> test the IA-RED² model, then the
comparisons (IA-RED² vs dense and vs dense + N: top-1 difference with its paired bootstrap 95 % interval).
The test stage's summary line is the LAST line printed to stdout, so scripts can read it with ``tail -n 1``.
"""
from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode

from video_iared.checkpoint import io as ckpt_io
from video_iared.checkpoint.io import final_checkpoint_path, latest_checkpoint
from video_iared.config import load_config
from video_iared.data.build import check_splits
from video_iared.engine.comparison import paired_line, paired_top1, records_from_predictions
from video_iared.engine.device import init_from_cfg
from video_iared.engine.finetune import recipe_from_cfg
from video_iared.engine import distributed as du
from video_iared.engine.multiview_test import NoVideoEvaluatedError, summary_line, test
from video_iared.engine.predict import predict
from video_iared.engine.train import train
from video_iared.engine.train_iared import train_iared
from video_iared.synthetic import ensure_synthetic_dataset
from video_iared.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


DENSE_DIR = "dense"  # OUTPUT_DIR/dense: the dense model of an IA-RED² run
DENSE_PLUS_N_DIR = "dense_plus_n"  # OUTPUT_DIR/dense_plus_n: that model finetuned as IA-RED² is (IARED.DENSE_PLUS_N)
DENSE_PLUS_N = "dense + N"  # its label in the logs and on its summary line


def dense_config(cfg: CfgNode, folder: str = DENSE_DIR, init_weights: str = "") -> CfgNode:
    """The dense baseline's config inside an IA-RED² run: same backbone and data, IARED off, its own
    OUTPUT_DIR (OUTPUT_DIR/``folder``) so its checkpoints and predictions never mix with the pruned model's.
    ``init_weights``: its TRAIN.CHECKPOINT_FILE_PATH (dense + N starts from the trained dense model)."""
    dense = cfg.clone()
    dense.defrost()
    dense.IARED.ENABLE = False
    dense.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, folder)
    dense.TEST.CHECKPOINT_FILE_PATH = ""  # that one names the IA-RED² weights; the dense test gets its own
    if init_weights:
        dense.TRAIN.CHECKPOINT_FILE_PATH = init_weights
    dense.freeze()
    return dense


@dataclass
class _Baselines:
    """The dense models' test summaries of an IA-RED² run (None: not tested)."""

    dense: Optional[Dict] = None
    dense_plus_n: Optional[Dict] = None


def _emit(line: str) -> None:
    """Print a summary line to stdout (flushed, after any buffered log output)."""
    for h in logging.getLogger().handlers:
        h.flush()
    print(line, flush=True)


def _comparison(dense: Dict, pruned: Dict, name: str = "dense") -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b and not math.isnan(a) and not math.isnan(b) else "n/a"

    return (name + " vs IA-RED²: video top-1 {:.2f}% vs {:.2f}% ({:+.2f} points), GFLOPs per view {:.4f} vs {:.4f} "
            "({} fewer)".format(dense["video_top1"], pruned["video_top1"], pruned["video_top1"] - dense["video_top1"],
                               dense["gflops_per_view"], pruned["gflops_per_view"],
                               ratio(dense["gflops_per_view"], pruned["gflops_per_view"])))


def _outputs_written(output_dir: str) -> List[str]:
    """The files and folders of ``output_dir`` a run writes, those that exist (``name/`` for folders)."""
    names = ("log.txt", "stats.jsonl", "config.yaml", ckpt_io.CHECKPOINT_DIR, DENSE_DIR, DENSE_PLUS_N_DIR)
    return [n + ("/" if os.path.isdir(os.path.join(output_dir, n)) else "") for n in names
            if os.path.exists(os.path.join(output_dir, n))]


BenchmarkStage = Callable[[CfgNode], None]


def run(cfg: CfgNode, benchmark: Optional[BenchmarkStage] = None) -> Optional[Dict]:
    """Run every stage the config enables; returns the final test summary (or None without a test stage).

    ``benchmark``: what ``BENCHMARK.TYPE`` runs after the set-up (``benchmarks.stage.run_benchmark_stage``, passed
    in by ``tools_main``: the benchmarks sit above the engine and the engine never imports them)."""
    info = init_from_cfg(cfg)
    setup_logging(cfg.OUTPUT_DIR if info.is_main else "", is_main=info.is_main)
    try:
        summary = _run(cfg, info, benchmark)
    except BaseException:
        du.cleanup(synchronize=False)
        raise
    du.cleanup()
    return summary


def _run(cfg: CfgNode, info: du.DistInfo, benchmark: Optional[BenchmarkStage]) -> Optional[Dict]:
    _set_up(cfg, info)
    if cfg.BENCHMARK.TYPE:
        if benchmark is None:
            raise ValueError(f"BENCHMARK.TYPE {cfg.BENCHMARK.TYPE}: run(cfg, benchmark=...) needs the benchmark stage "
                             "(video_iared.benchmarks.stage.run_benchmark_stage; tools/run_net.py passes it)")
        benchmark(cfg)
        return None

    check_splits(cfg)  # every split the run reads, before anything trains

    checkpoint = ""
    baselines = _Baselines()
    if cfg.IARED.ENABLE:
        checkpoint, baselines = _dense_then_iared(cfg, info)
    elif cfg.TRAIN.ENABLE:
        checkpoint = train(with_pretrained_init(cfg, info), info)

    if cfg.PREDICT.ENABLE:
        predict(cfg, info, checkpoint)

    summary = None
    if cfg.TEST.ENABLE:
        summary = test(cfg, info, checkpoint, label="IA-RED²" if cfg.IARED.ENABLE else "")
    if info.is_main:
        _report_outputs(cfg, summary, baselines)
    if summary and summary["videos"] == 0:
        raise NoVideoEvaluatedError(f"the test stage evaluated no video: all {summary['failed']} failed (the reasons "
                                    f"are in {os.path.join(cfg.OUTPUT_DIR, cfg.TEST.SAVE_RESULTS_PATH)}.csv)")
    return summary


def _set_up(cfg: CfgNode, info: du.DistInfo) -> None:
    """Before any stage: OUTPUT_DIR/config.yaml (rank 0), the seeds, NUM_THREADS, the synthetic dataset."""
    if info.is_main:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write(cfg.dump())
    seed_everything(cfg.RNG_SEED)
    if cfg.NUM_THREADS > 0:
        torch.set_num_threads(cfg.NUM_THREADS)
    logger.info("output dir: %s; device %s; %d process(es)", os.path.abspath(cfg.OUTPUT_DIR), info.device,
                info.world_size)

    if cfg.SYNTHETIC.ENABLE:
        if info.is_main:  # one writer; the others wait for the files
            ensure_synthetic_dataset(cfg)
        du.barrier()


def with_pretrained_init(cfg: CfgNode, info: du.DistInfo) -> CfgNode:
    """``cfg`` with TRAIN.CHECKPOINT_FILE_PATH set to the trained model of TRAIN.PRETRAIN_CONFIG (when that is set and
    no checkpoint is given). That config is trained first, as run_net would (its synthetic data generated, its own
    seed and OUTPUT_DIR); a complete run there is reused as it is. Only a dense config can be pretrained on."""
    name = cfg.TRAIN.PRETRAIN_CONFIG
    if not name or cfg.TRAIN.CHECKPOINT_FILE_PATH:
        return cfg
    pre = load_config(name)
    if pre.IARED.ENABLE or pre.TRAIN.PRETRAIN_CONFIG:
        raise ValueError(f"TRAIN.PRETRAIN_CONFIG {name}: must be a dense config (IARED.ENABLE False) that names no "
                         f"TRAIN.PRETRAIN_CONFIG of its own")
    logger.info("pretraining: the dense model of %s (OUTPUT_DIR %s) initialises this one", name, pre.OUTPUT_DIR)
    if pre.SYNTHETIC.ENABLE:
        if info.is_main:
            ensure_synthetic_dataset(pre)
        du.barrier()
    seed_everything(pre.RNG_SEED)
    weights = train(pre, info)
    seed_everything(cfg.RNG_SEED)
    logger.info("pretraining done: %s starts from %s", cfg.OUTPUT_DIR, weights)
    out = cfg.clone()
    out.defrost()
    out.TRAIN.CHECKPOINT_FILE_PATH = weights
    out.freeze()
    return out


def _dense_then_iared(cfg: CfgNode, info: du.DistInfo) -> Tuple[str, _Baselines]:
    """IA-RED²'s stages before predict / test: the dense model (trained unless IARED.DENSE_CHECKPOINT, tested
    when TEST.ENABLE), the curriculum, then dense + N (IARED.DENSE_PLUS_N). Returns (the checkpoint to predict /
    test, the dense models' test summaries)."""
    checkpoint = ""
    baselines = _Baselines()
    dense_cfg = dense_config(cfg)
    dense_ckpt = cfg.IARED.DENSE_CHECKPOINT
    if not dense_ckpt and cfg.TRAIN.ENABLE:
        logger.info("IA-RED²: training the dense model first (into %s)", dense_cfg.OUTPUT_DIR)
        dense_ckpt = train(with_pretrained_init(dense_cfg, info), info)
    if not dense_ckpt:
        dense_ckpt = latest_checkpoint(dense_cfg.OUTPUT_DIR) or ""
    if cfg.TEST.ENABLE and dense_ckpt:
        baselines.dense = test(dense_cfg, info, dense_ckpt, label="dense")
        if info.is_main:
            _emit("dense: " + summary_line(baselines.dense))
    if cfg.TRAIN.ENABLE:
        if not dense_ckpt:
            raise FileNotFoundError("IA-RED² needs a dense checkpoint: set IARED.DENSE_CHECKPOINT or TRAIN.ENABLE")
        checkpoint = train_iared(cfg, dense_ckpt)
    elif cfg.TEST.ENABLE and not cfg.TEST.CHECKPOINT_FILE_PATH:
        # a test-only run of an IA-RED² OUTPUT_DIR evaluates the curriculum's final checkpoint
        checkpoint = final_checkpoint_path(cfg.OUTPUT_DIR) if os.path.isfile(final_checkpoint_path(cfg.OUTPUT_DIR)) else ""
    if cfg.IARED.DENSE_PLUS_N:
        # after IA-RED²'s training, which seeds itself: its model and figures are those of a run without this
        baselines.dense_plus_n = _dense_plus_n(cfg, info, dense_ckpt)
    return checkpoint, baselines


def _dense_plus_n(cfg: CfgNode, info: du.DistInfo, dense_ckpt: str) -> Optional[Dict]:
    """Equal budgets: the dense model ``dense_ckpt`` finetuned for the N = IARED.FINETUNE_EPOCHS epochs of
    IA-RED²'s finetune, by the same recipe (``engine.finetune``: SOLVER's optimizer at IARED.FINETUNE_LR, cosine,
    the same draws), into OUTPUT_DIR/dense_plus_n; tested when TEST.ENABLE. Returns its test summary or None."""
    epochs = cfg.IARED.FINETUNE_EPOCHS
    if epochs <= 0:
        logger.info("%s skipped: IARED.FINETUNE_EPOCHS is 0 (dense + 0 is the dense model)", DENSE_PLUS_N)
        return None
    dn_cfg = dense_config(cfg, DENSE_PLUS_N_DIR, init_weights=dense_ckpt)
    checkpoint = ""
    if cfg.TRAIN.ENABLE and dense_ckpt:
        logger.info("%s: the dense model %s finetuned %d epochs by IA-RED²'s finetune recipe (%s, lr %.2e cosine), "
                    "into %s", DENSE_PLUS_N, dense_ckpt, epochs, cfg.SOLVER.OPTIMIZING_METHOD, cfg.IARED.FINETUNE_LR,
                    dn_cfg.OUTPUT_DIR)
        checkpoint = train(dn_cfg, info, recipe=recipe_from_cfg(cfg))
    if not checkpoint:
        checkpoint = latest_checkpoint(dn_cfg.OUTPUT_DIR) or ""
    if not (cfg.TEST.ENABLE and checkpoint):
        return None
    summary = test(dn_cfg, info, checkpoint, label=DENSE_PLUS_N)
    if info.is_main:
        _emit(DENSE_PLUS_N + ": " + summary_line(summary))
    return summary


def _report_outputs(cfg: CfgNode, summary: Optional[Dict], baselines: _Baselines) -> None:
    """Rank 0 at the end: what OUTPUT_DIR holds, the predictions, the comparisons with the dense models and the
    summary line (last)."""
    logger.info("outputs in %s: %s", os.path.abspath(cfg.OUTPUT_DIR), ", ".join(_outputs_written(cfg.OUTPUT_DIR)))
    if summary:
        logger.info("predictions: %s and %s", summary.get("predictions_csv"), summary.get("predictions_pt"))
        if baselines.dense:
            logger.info(_comparison(baselines.dense, summary))
        if baselines.dense_plus_n:
            logger.info(_comparison(baselines.dense_plus_n, summary, DENSE_PLUS_N))
        for line in _paired_lines(summary, baselines):
            logger.info(line)
        _emit(summary_line(summary))


def _paired_lines(summary: Dict, baselines: _Baselines) -> List[str]:
    """IA-RED² vs each dense model tested: the top-1 difference in points with its paired bootstrap 95 % interval
    over the videos both evaluated (from the predictions files the test stages wrote)."""
    pruned = records_from_predictions(summary["predictions_pt"])
    return [paired_line("IA-RED²", name, paired_top1(pruned, records_from_predictions(base["predictions_pt"])))
            for name, base in (("dense", baselines.dense), (DENSE_PLUS_N, baselines.dense_plus_n)) if base]
