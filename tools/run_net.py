#!/usr/bin/env python
"""The single entry point: ``python tools/run_net.py --cfg FILE [KEY VALUE ...]``."""
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from video_iared.tools_main import run_net  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_net())
