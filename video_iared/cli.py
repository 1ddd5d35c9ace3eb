"""Console entry points (installed by setup.py): ``video-iared-<tool>`` runs the ``main()`` of ``tools/<tool>.py``.

An installed copy holds the tools as ``video_iared.tools`` (setup.py maps the repository's ``tools/`` there); a
checkout or an editable install has only the repository's ``tools/``, beside the package, and runs that.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

CHECKOUT_TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str) -> ModuleType:
    """The module of the tool ``name`` (``"flops"`` for ``tools/flops.py``): the installed ``video_iared.tools.name``,
    else the checkout's ``tools/name.py``."""
    try:
        return importlib.import_module(f"video_iared.tools.{name}")
    except ModuleNotFoundError as e:
        if e.name not in ("video_iared.tools", f"video_iared.tools.{name}"):
            raise  # a missing dependency of the tool, not a missing tool
    path = CHECKOUT_TOOLS / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"error: tool {name} is neither installed (video_iared.tools) nor in {CHECKOUT_TOOLS}")
    spec = importlib.util.spec_from_file_location(f"video_iared_tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_entry(name: str) -> Callable[[], None]:
    """The console-script function that runs ``tools/<name>.py``'s ``main`` on the command line and exits with its
    return value."""

    def entry() -> None:
        sys.exit(load_tool(name).main(sys.argv[1:]))

    entry.__doc__ = f"``python tools/{name}.py`` as a console script."
    return entry


def run_net_main() -> None:
    """``video-iared-run --cfg FILE|NAME [KEY VALUE ...]``, the same as ``python tools/run_net.py``."""
    from video_iared.tools_main import run_net

    sys.exit(run_net(sys.argv[1:]))


def predict_main() -> None:
    """``video-iared-predict``: ``python tools/predict.py``."""
    from video_iared.tools_main import predict_main as main

    sys.exit(main(sys.argv[1:]))


# setup.py's console scripts: video-iared-flops, video-iared-check-videos, ...
flops_main = tool_entry("flops")
benchmark_main = tool_entry("benchmark")
check_videos_main = tool_entry("check_videos")
prepare_lists_main = tool_entry("prepare_lists")
convert_checkpoint_main = tool_entry("convert_checkpoint")
visualize_main = tool_entry("visualize")
eval_interpretability_main = tool_entry("eval_interpretability")
seed_grid_main = tool_entry("seed_grid")
