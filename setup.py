"""video_iared: IA-RED² interpretability-aware token pruning on TimeSformer."""
from setuptools import find_packages, setup

# configs/ and tools/ stay at the top of the repository: the one copy that users, the docs and `python tools/X.py`
# use. They are installed inside the package as well, as video_iared/configs (YAML package data, found at run time
# with importlib.resources: video_iared.config.files) and video_iared/tools (the code of the console scripts below:
# video_iared.cli), so that after a non-editable `pip install .` every tool works from any directory. An editable
# install (`pip install -e .`) makes no copy; both modules then read the checkout's configs/ and tools/ beside the
# package.
SHIPPED = {"video_iared.configs": "configs", "video_iared.tools": "tools"}

setup(
    name="video_iared",
    version="0.1.0",
    description="IA-RED² (interpretability-aware redundancy reduction) for TimeSformer video transformers",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["video_iared", "video_iared.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    package_data={"video_iared.configs": ["*.yaml"]},
    # No torch pin: plain `pip install torch torchvision` resolves to a build whose torchvision loads,
    # which timm and pytorchvideo both need (see the README's install notes).
    install_requires=[
        "torch",
        "torchvision",
        "timm>=0.9",
        "pytorchvideo",
        "decord",
        "av",
        "einops",
        "fvcore",
        "yacs",
        "iopath",
        "numpy",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "safetensors",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout"],
        # tools/export.py --format onnx and benchmark.py --speed --onnx (the dynamo exporter needs onnxscript)
        "export": ["onnx", "onnxscript", "onnxruntime"],
        # DATA.DECODING_BACKEND torchcodec; it loads FFmpeg 4-9's shared libraries from the system (make install
        # adds them where missing: .ci/ensure_ffmpeg_libs.sh)
        "torchcodec": ["torchcodec"],
    },
    # each runs the main() of tools/<name>.py (video_iared.cli)
    entry_points={"console_scripts": [
        "video-iared-run=video_iared.cli:run_net_main",
        "video-iared-predict=video_iared.cli:predict_main",
        "video-iared-flops=video_iared.cli:flops_main",
        "video-iared-benchmark=video_iared.cli:benchmark_main",
        "video-iared-check-videos=video_iared.cli:check_videos_main",
        "video-iared-prepare-lists=video_iared.cli:prepare_lists_main",
        "video-iared-convert-checkpoint=video_iared.cli:convert_checkpoint_main",
        "video-iared-visualize=video_iared.cli:visualize_main",
        "video-iared-eval-interpretability=video_iared.cli:eval_interpretability_main",
        "video-iared-seed-grid=video_iared.cli:seed_grid_main",
    ]},
)
