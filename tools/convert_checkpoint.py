#!/usr/bin/env python
"""Write a clean weights-only checkpoint from an official TimeSformer .pyth, one of ours, or timm weights.

    python tools/convert_checkpoint.py SOURCE OUT[.pyth|.safetensors] [--cfg FILE [KEY VALUE ...]]

With --cfg the weights are loaded (strictly, resized / inflated) into the model the config builds, and that
model's weights are written; the load report is printed. timm image weights need --cfg. An IA-RED²
checkpoint's calibrated threshold (``iared_calibration``) is kept in the output (.safetensors: its metadata).
Every checkpoint is read with ``torch.load(weights_only=True)``; one whose pickle needs other globals is refused.
--trust-pickle (UNSAFE, off by default) fully unpickles SOURCE, for a file you trust, into a weights-only OUT.
"""
import argparse
import logging
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from video_iared.config import config_help

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=config_help())
    p.add_argument("source", help="checkpoint file or cached timm model name")
    p.add_argument("out", help="output file (.pyth or .safetensors)")
    p.add_argument("--cfg", nargs="+", default=[], metavar=("FILE", "KEY VALUE"),
                   help="config of the model to load the weights into (a path, or a name listed below), then KEY VALUE "
                        "overrides")
    p.add_argument("--trust-pickle", action="store_true",
                   help="UNSAFE: fully unpickle SOURCE (it can run code) when it holds more than tensors; only for a "
                        "file you trust. The output is weights only, loadable safely everywhere else")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from video_iared.checkpoint import CheckpointError, convert_checkpoint

    model = None
    if args.cfg:
        from video_iared.config import load_config_for_cli
        from video_iared.build import build_model

        cfg = load_config_for_cli(args.cfg[0], args.cfg[1:])
        if cfg is None:
            return 2
        cfg.defrost()
        cfg.TIMESFORMER.PRETRAINED_MODEL = ""  # load only `source`
        model = build_model(cfg)
    try:
        convert_checkpoint(args.source, args.out, model, trust_pickle=args.trust_pickle)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
