#!/usr/bin/env python
"""Generate the synthetic benchmark: ``python tools/make_synthetic.py --cfg FILE [KEY VALUE ...]`` or
``python tools/make_synthetic.py --out DIR [--num-classes N --videos-per-class 24 6 10 --frames 32 ...]``."""
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from video_iared.synthetic.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
