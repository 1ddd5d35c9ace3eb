#!/usr/bin/env python
"""Batch clip inference: ``python tools/predict.py --cfg FILE --input DIR|GLOB|LIST --checkpoint W.pyth
[--output out.csv|out.json] [KEY VALUE ...]`` writes one row per video (top-k labels with class names and
probabilities, GFLOPs spent, kept-token fraction for an IA-RED² model; the error for an unreadable video)."""
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from video_iared.tools_main import predict_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(predict_main())
