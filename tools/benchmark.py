#!/usr/bin/env python
"""Benchmarks. ``--speed``: forward-pass time of the model variants at test size.

    python tools/benchmark.py --speed [--batch-sizes N ...] [--warmup N] [--reps N] [--precision fp32|bf16]
                              [--with-explicit] [--onnx]
                              --cfg FILE [KEY VALUE ...]

KEY VALUE config overrides go right after the config file, or at the end of the command line after every
option, where the last option is a flag or takes one value (an option that takes a list, such as
--batch-sizes or --methods, would read them as its own values).

On a dense config ``--speed`` prints a table (median, min, max seconds per forward pass and per clip) and one
``speed ...`` line per row, at batch 1 and 4, BENCHMARK.WARMUP_ITERS warm-up passes and BENCHMARK.NUM_ITERS
reps unless given. On an IA-RED² config (IARED.ENABLE, e.g. configs/k400.yaml) ``--speed`` times the dense
model and the IA-RED² model in keep_ratio mode at --keep-ratios (default 0.7 0.5 0.3) side by side at batch 1
and 8 (1 warm-up, 3 reps unless given), prints keep rate, fvcore GFLOPs, ms/clip, speed-up and its ratio to
the GFLOPs speed-up, and ends with ``min_speedup_to_gflops_ratio=<float> dense_ms_b1=<float>``.

Every benchmark first sets glibc's allocator to keep freed memory (``--malloc retain``, the default): with the
defaults the dense model page-faults its large buffers in on every forward pass (8 % of its time here), a
cost pruning would be credited with. ``--malloc default`` times the C library's defaults.

``--onnx`` adds dense and keep_ratio (--keep-ratios, default 0.7) exported to ONNX and run in ONNX Runtime beside
the eager models, interleaved in one run (ms/clip, speed-up vs dense eager, max logit difference), ending with
``onnx_speed <variant>_<runtime>_b<batch>_ms=<float> ...``.

Precision column (dense and IA-RED² in keep_ratio mode, every precision, interleaved round-robin):

    python tools/benchmark.py --speed --precision fp32 bf16 [--keep-ratios 0.7] [--compile] --cfg FILE ...

End-to-end multi-view test path (benchmarks.end_to_end: the test stage's dataset, run_multiview, cost accounting
and predictions files; ms per video per stage) for dense and IA-RED² keep_ratio at --keep-ratios (default 0.7
0.5), on a folder of 320p videos (written there first when --videos N > 0); per variant the speed-up over dense
excluding decoding and its ratio to the GFLOPs ratio; last line ``end_to_end_summary ...
min_speedup_to_gflops_ratio=<float>``:

    python tools/benchmark.py --end-to-end FOLDER [--videos 8] [--e2e-batch 4] [--precision fp32 bf16] --cfg FILE

The GPU check (benchmarks.gpu_check): host reads and attention calls per forward for dense and IA-RED² (both
attention backends, keep_ratio and threshold, batch 8), and on CUDA packed vs masked logits in fp32 / bf16,
synchronisations and attention kernels per forward, the keep-ratio speed table at batch 1 / 8 / 32 (or
--batch-sizes) in fp32 and bf16, a mixed-precision training step and, with two GPUs, a 2-process nccl run; without
CUDA it says which checks have not run. Last line ``gpu_check cuda=<0|1> varlen_keep_ratio_host_reads=...``:

    python tools/benchmark.py --gpu-check --cfg configs/k400.yaml [DEVICE cuda]

Token-reduction methods side by side (dense, random drop, EViT top-k, ToMe, IA-RED² keep_ratio / threshold):
accuracy, fvcore GFLOPs, latency, throughput, memory; a Markdown/CSV table and two plots (benchmarks.method_benchmark):

    python tools/benchmark.py --methods [METHOD ...] [--keep-ratios 0.7 0.5 0.3] [--thresholds 0.3 0.5 0.45/0.87]
                              [--tome-r R ...] [--dense-checkpoint F] [--iared-checkpoint F] [--no-accuracy]
                              [--quick] [--out-dir DIR] [--method-batch-sizes 1 8]
                              [--finetune-epochs N [--iared-curriculum-checkpoint F]] --cfg FILE ...
"""
import argparse
import logging
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser() -> argparse.ArgumentParser:
    """The command line: the shared and --speed / --gpu-check / --end-to-end options, --methods', the allocator
    and the KEY VALUE overrides."""
    from video_iared.config import config_help

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=config_help())
    p.add_argument("--cfg", nargs="+", required=True, metavar=("FILE", "KEY VALUE"),
                   help="a YAML config (a path, or a name listed below), then KEY VALUE overrides")
    p.add_argument("--speed", action="store_true", help="time the forward pass of the model variants")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help="--speed: default 1 8 on an IA-RED² config (keep-ratio table), else 1 4")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up passes; default: 1 for the keep-ratio, precision and --methods tables, else "
                        "BENCHMARK.WARMUP_ITERS (--end-to-end has its own)")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions; default: 3 for the keep-ratio and --methods tables, else "
                        "BENCHMARK.NUM_ITERS (--end-to-end has its own)")
    p.add_argument("--onnx", action="store_true",
                   help="--speed: also dense and IA-RED² keep_ratio (--keep-ratios, default 0.7) exported to ONNX, timed "
                        "in ONNX Runtime beside eager PyTorch in one run (the export extra: pip install -e .[export])")
    p.add_argument("--with-explicit", action="store_true",
                   help="also time a copy with explicit-matmul attention (the straightforward implementation)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], nargs="+", default=["fp32"],
                   help="one or more; more than one (or --keep-ratios) gives the interleaved precision table")
    p.add_argument("--keep-ratios", type=float, nargs="*", default=None,
                   help="IA-RED² keep_ratio-mode rows: default 0.7 0.5 0.3 for the keep-ratio table and --methods, "
                        "0.7 for the precision table and --end-to-end")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (TEST.COMPILE)")
    p.add_argument("--fp32-islands", action="store_true",
                   help="also time the IA-RED² rows with float32 interpreters and head (utils.precision)")
    p.add_argument("--gpu-check", action="store_true",
                   help="host reads / attention calls per forward; on CUDA: logits, syncs, kernels, speed, training")
    p.add_argument("--end-to-end", metavar="FOLDER", default="",
                   help="time decode + transforms + model of batch clip inference on the videos of FOLDER")
    p.add_argument("--videos", type=int, default=8, help="--end-to-end: write this many 320p videos first (0: use FOLDER's)")
    p.add_argument("--e2e-batch", type=int, default=4, help="--end-to-end: videos per batch (their views run TEST.VIEWS_PER_CHUNK at a time)")
    _add_method_options(p)
    p.add_argument("--malloc", choices=["retain", "default"], default="retain",
                   help="retain: keep freed memory in the process (glibc mallopt; no page faults per forward pass, "
                        "dense TimeSformer-B 8 %% faster here), the fair baseline; default: the C library's defaults "
                        "(video_iared.utils.malloc)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                   help="KEY VALUE config overrides, after every option (also accepted right after the config file)")
    return p


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """The --methods benchmark's options (benchmarks.method_benchmark.MethodBenchmarkOptions)."""
    from video_iared.benchmarks.method_options import parse_threshold
    p.add_argument("--methods", nargs="*", default=None, metavar="METHOD",
                   help="token-reduction methods side by side (none listed: all of dense random evit tome "
                        "iared_ratio iared_threshold)")
    p.add_argument("--thresholds", type=parse_threshold, nargs="+", default=[0.3, 0.5, 0.7],
                   help="--methods: IA-RED² thresholds; one per group as 0.45/0.87")
    p.add_argument("--tome-r", type=int, nargs="+", default=None,
                   help="--methods: ToMe merges per frame per block (default: matched to the keep ratios' tokens)")
    p.add_argument("--dense-checkpoint", default="auto",
                   help="--methods: trained dense weights; auto: run_net's for this config if any; '' random")
    p.add_argument("--iared-checkpoint", default="auto",
                   help="--methods: trained IA-RED² weights; auto: OUTPUT_DIR/checkpoints/checkpoint_iared.pyth if any")
    p.add_argument("--no-accuracy", action="store_true", help="--methods: speed and GFLOPs only (random clips)")
    p.add_argument("--max-videos", type=int, default=0, help="--methods: first N test videos (0: all)")
    p.add_argument("--gflops-views", type=int, default=8, help="--methods: views traced by fvcore per variant")
    p.add_argument("--method-batch-sizes", type=int, nargs="+", default=[1, 8], help="--methods: timed batch sizes")
    p.add_argument("--quick", action="store_true", help="--methods: the CI setting (few videos, budgets, reps)")
    p.add_argument("--iared-curriculum-checkpoint", default="auto",
                   help="--finetune-epochs: where the IA-RED² keep_ratio rows start (trained interpreters, dense "
                        "backbone); auto: the last iared_stage_XX.pyth beside the IA-RED² checkpoint; '' none")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="--methods: finetune the dense, random, EViT, ToMe and IA-RED² keep_ratio rows this many "
                        "epochs with IA-RED²'s finetune recipe (IARED.FINETUNE_LR, SOLVER.*) before measuring "
                        "accuracy (0: as they are); every finetuned row holds its own copy of the weights "
                        "(TimeSformer-B: ~0.5 GB each)")
    p.add_argument("--out-dir", default="", help="--methods: output folder (default OUTPUT_DIR/method_benchmark)")


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    _check_override_placement(p, args)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.malloc == "retain":
        from video_iared.utils.malloc import retain_freed_memory

        print(retain_freed_memory(), flush=True)
    else:
        print("malloc: the C library's defaults (--malloc default)", flush=True)

    from video_iared.config import load_config_for_cli

    cfg = load_config_for_cli(args.cfg[0], args.cfg[1:] + args.opts)
    if cfg is None:
        return 2
    if not (args.speed or args.end_to_end or args.methods is not None or args.gpu_check):
        p.error("choose a benchmark: --speed, --end-to-end FOLDER, --methods and/or --gpu-check")
    if cfg.NUM_THREADS > 0:
        import torch

        torch.set_num_threads(cfg.NUM_THREADS)
    from video_iared.engine.device import device_from_cfg
    from video_iared.utils.precision import PrecisionError, precision_dtype

    try:
        for prec in args.precision:  # fp16 on the cpu: refused before any model is built
            precision_dtype(prec, device_from_cfg(cfg), key="--precision")
        if args.speed:
            rc = _speed(cfg, args)
            if rc:
                return rc
        if args.gpu_check:
            from video_iared.benchmarks.gpu_check import run_gpu_check

            run_gpu_check(cfg, speed_batches=args.batch_sizes or (1, 8, 32),
                          warmup=2 if args.warmup is None else args.warmup, reps=5 if args.reps is None else args.reps)
        if args.end_to_end:
            from video_iared.benchmarks.end_to_end import end_to_end_from_cfg

            end_to_end_from_cfg(cfg, args.end_to_end, args.videos, args.precision,
                                [0.7, 0.5] if args.keep_ratios is None else args.keep_ratios, args.e2e_batch,
                                compile_model=args.compile or cfg.TEST.COMPILE)
        if args.methods is not None:
            _methods(cfg, args)
    except PrecisionError as e:
        print(f"precision error: {e}", file=sys.stderr)
        return 2
    return 0


def _speed(cfg, args: argparse.Namespace) -> int:
    """--speed: the keep-ratio table (IA-RED² config, fp32), the dense table (one precision) or the precision table;
    then, with --onnx, ONNX Runtime beside eager. Returns the exit status (1: the export failed)."""
    from video_iared.benchmarks.speed import format_speed_table, precision_speed_from_cfg, run_speed_benchmark

    compile_model = args.compile or cfg.TEST.COMPILE
    if cfg.IARED.ENABLE and args.precision == ["fp32"] and not compile_model:
        # IA-RED² config: dense and keep_ratio rows side by side, speed-up vs fvcore GFLOPs speed-up; the
        # last line is machine readable (video_iared.benchmarks.keep_ratio_speed). Defaults: keep 0.7 0.5 0.3, batch 1 8.
        from video_iared.benchmarks.keep_ratio_speed import run_from_args

        run_from_args(cfg, args.keep_ratios or None, args.batch_sizes, args.warmup, args.reps)
    elif len(args.precision) == 1 and args.keep_ratios is None and not compile_model:
        results = run_speed_benchmark(cfg, args.batch_sizes or [1, 4], args.warmup, args.reps, args.precision[0],
                                      with_explicit=args.with_explicit)
        print(format_speed_table(results))
    else:
        warmup = 1 if args.warmup is None else args.warmup
        reps = cfg.BENCHMARK.NUM_ITERS if args.reps is None else args.reps
        keep = [0.7] if args.keep_ratios is None else args.keep_ratios
        precision_speed_from_cfg(cfg, args.precision, args.batch_sizes or [1, 4], keep, warmup, reps, compile_model,
                                 args.fp32_islands)
    if args.onnx:  # ONNX Runtime vs eager, dense and keep ratios (video_iared.deploy)
        from video_iared.deploy.onnx_export import ExportError, onnx_speed_rows

        try:
            onnx_speed_rows(cfg, args.keep_ratios or [0.7], args.batch_sizes or [1],
                            1 if args.warmup is None else args.warmup, 3 if args.reps is None else args.reps)
        except ExportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


def _methods(cfg, args: argparse.Namespace) -> None:
    """--methods: the token-reduction methods side by side (benchmarks.method_benchmark)."""
    from video_iared.benchmarks.method_benchmark import ALL_METHODS, MethodBenchmarkOptions, run_method_benchmark

    run_method_benchmark(cfg, MethodBenchmarkOptions(
        methods=args.methods or list(ALL_METHODS), thresholds=args.thresholds, tome_r=args.tome_r,
        keep_ratios=args.keep_ratios or [0.7, 0.5, 0.3], dense_checkpoint=args.dense_checkpoint,
        iared_checkpoint=args.iared_checkpoint, accuracy=not args.no_accuracy, max_videos=args.max_videos,
        gflops_views=args.gflops_views, batch_sizes=args.method_batch_sizes,
        warmup=1 if args.warmup is None else args.warmup, reps=3 if args.reps is None else args.reps,
        precision=args.precision[0], out_dir=args.out_dir, quick=args.quick,
        finetune_epochs=args.finetune_epochs, iared_curriculum_checkpoint=args.iared_curriculum_checkpoint))


def _check_override_placement(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, with the fix, two ways argparse misreads KEY VALUE overrides placed among the options: options
    after them (read as overrides), and overrides after --methods (read as method names)."""
    flags = [t for t in args.opts if t.startswith("--")]
    if flags:
        p.error(f"options after the KEY VALUE overrides ({' '.join(flags)}): put every option before them, or the "
                f"overrides right after the config file (--cfg FILE KEY VALUE ...)")
    if args.methods:
        from video_iared.benchmarks.method_benchmark import ALL_METHODS

        unknown = [m for m in args.methods if m not in ALL_METHODS]
        if unknown:
            p.error(f"unknown --methods {' '.join(unknown)} (choose from {' '.join(ALL_METHODS)}); KEY VALUE "
                    f"overrides after --methods go right after the config file instead (--cfg FILE KEY VALUE ...)")


if __name__ == "__main__":
    sys.exit(main())
