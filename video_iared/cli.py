"""Console entry points (installed by setup.py); each mirrors a script in tools/."""
import sys


def run_net_main() -> None:
    """``video-iared-run --cfg FILE [KEY VALUE ...]``, the same as ``python tools/run_net.py``."""
    from video_iared.tools_main import run_net

    sys.exit(run_net(sys.argv[1:]))
