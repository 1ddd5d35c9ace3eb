"""Checkpoints: loading weights of any supported format (``load_checkpoint``) and training checkpoints (io)."""
from .convert import detect_format, inflate_image_state_dict, read_source
from .export import convert_checkpoint, write_weights
from .io import CheckpointError
from .load import LoadReport, load_checkpoint, load_state_dict_checked

__all__ = [
    "CheckpointError",
    "LoadReport",
    "convert_checkpoint",
    "detect_format",
    "inflate_image_state_dict",
    "load_checkpoint",
    "load_state_dict_checked",
    "read_source",
    "write_weights",
]
