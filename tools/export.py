#!/usr/bin/env python
"""Export a trained model for deployment.

    python tools/export.py --cfg FILE --checkpoint W.pyth --format onnx [--output F.onnx] [--mode keep_ratio|threshold]
                           [--batch-size 1] [KEY VALUE ...]

The dense model, or the IA-RED² model (IARED.ENABLE) in keep_ratio mode (static shapes, any --batch-size) or
threshold mode (batch 1; the kept token count a dynamic axis through ONNX NonZero), at the test clip size
(DATA.NUM_FRAMES x DATA.TEST_CROP_SIZE). The exported model is run in ONNX Runtime on random clips and its
logits compared with PyTorch's (refused above 1e-4). Needs the export extra: pip install -e .[export].
Ends with one line: onnx=<path> mode=<dense|keep_ratio|threshold> batch=<int> max_abs_diff=<float>
"""
import argparse
import logging
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", dest="cfg_file", required=True, help="path to a YAML config (model settings)")
    p.add_argument("--checkpoint", required=True, help="weights to export (TEST.CHECKPOINT_FILE_PATH)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    p.add_argument("--output", default="", help="output file (default OUTPUT_DIR/model[_<mode>].onnx)")
    p.add_argument("--mode", choices=["keep_ratio", "threshold"], default="",
                   help="IA-RED² policy to export (default IARED.MODE)")
    p.add_argument("--batch-size", type=int, default=1, help="clips per call (static; threshold mode: 1)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from video_iared.config import load_config_for_cli
    from video_iared.deploy.onnx_export import ExportError, export_from_cfg
    from video_iared.tools_main import user_errors

    cfg = load_config_for_cli(args.cfg_file, ["TEST.CHECKPOINT_FILE_PATH", args.checkpoint] + list(args.opts))
    if cfg is None:
        return 2
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        rec = export_from_cfg(cfg, args.checkpoint, args.output, args.mode, args.batch_size)
    except (ExportError, ValueError) + user_errors() as e:  # FileNotFoundError is an OSError
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"onnx={os.path.abspath(rec['path'])} mode={rec['mode']} batch={args.batch_size} "
          f"max_abs_diff={rec['max_abs_diff']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
