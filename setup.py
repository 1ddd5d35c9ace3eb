"""video_iared: IA-RED² interpretability-aware token pruning on TimeSformer."""
from setuptools import find_packages, setup

setup(
    name="video_iared",
    version="0.1.0",
    description="IA-RED² (interpretability-aware redundancy reduction) for TimeSformer video transformers",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["video_iared", "video_iared.*"]),
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
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
    entry_points={"console_scripts": ["video-iared-run=video_iared.cli:run_net_main"]},
)
