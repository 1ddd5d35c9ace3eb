"""Config system: ``get_cfg()`` for the defaults, ``load_config(path, opts)`` for a YAML file plus overrides."""
from __future__ import annotations

import ast
from typing import List, Optional, Sequence

import yaml
from fvcore.common.config import CfgNode

from .defaults import get_defaults
from .validate import ConfigError, all_keys, unknown_key_message, validate_config

__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_config", "load_config_for_cli", "validate_config", "all_keys"]


def get_cfg() -> CfgNode:
    """A fresh copy of the default config."""
    return get_defaults()


def _check_file_keys(path: str, valid: set) -> None:
    """Walk a YAML file and its ``_BASE_`` chain; raise on keys the defaults do not have."""
    with open(path, "r") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys")

    def walk(node: dict, prefix: str) -> None:
        for name, value in node.items():
            if name == "_BASE_" and not prefix:
                continue
            full = f"{prefix}{name}"
            if isinstance(value, dict):
                if not any(k.startswith(full + ".") for k in valid):
                    raise ConfigError(unknown_key_message(full, valid, path))
                walk(value, full + ".")
            elif full not in valid:
                raise ConfigError(unknown_key_message(full, valid, path))

    walk(data, "")


def _base_chain(path: str) -> List[str]:
    import os

    with open(path, "r") as f:
        data = yaml.safe_load(f) or {}
    base = data.get("_BASE_") if isinstance(data, dict) else None
    if not base:
        return [path]
    if not os.path.isabs(base) and not base.startswith(("~", "/")):
        base = os.path.join(os.path.dirname(path), base)
    return _base_chain(base) + [path]


def _parse_value(text):
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def merge_opts(cfg: CfgNode, opts: Sequence[str]) -> None:
    """Merge ``KEY VALUE`` pairs into ``cfg`` with a clear error for an odd count, unknown key or wrong type."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; got an odd number of items: {opts}")
    valid = set(all_keys(cfg))
    for key, raw in zip(opts[0::2], opts[1::2]):
        if key not in valid:
            raise ConfigError(unknown_key_message(key, valid, "command-line overrides"))
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        old = node[leaf]
        value = _parse_value(raw)
        node[leaf] = _coerce(key, value, old)


def _coerce(key: str, value, old):
    """Check ``value`` against the default's type (ints widen to floats, tuples to lists)."""
    if isinstance(old, bool) or isinstance(value, bool):
        if isinstance(old, bool) and isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected {type(old).__name__}, got {value!r}")
    if isinstance(old, float) and isinstance(value, int):
        return float(value)
    if isinstance(old, list) and isinstance(value, tuple):
        return list(value)
    if isinstance(old, str) and not isinstance(value, str):
        return str(value)
    if type(value) is not type(old):
        raise ConfigError(f"{key}: expected {type(old).__name__}, got {value!r} ({type(value).__name__})")
    return value


def load_config(path: Optional[str] = None, opts: Optional[Sequence[str]] = None) -> CfgNode:
    """The defaults, merged with a YAML file (following ``_BASE_``) and ``KEY VALUE`` overrides, validated."""
    cfg = get_cfg()
    if path:
        valid = set(all_keys(cfg))
        for p in _base_chain(path):
            _check_file_keys(p, valid)
        try:
            cfg.merge_from_file(path)
        except ValueError as e:  # yacs type mismatch: it names the key
            raise ConfigError(f"{path}: {e}") from e
    merge_opts(cfg, opts or [])
    validate_config(cfg)
    cfg.freeze()
    return cfg


def load_config_for_cli(path: Optional[str], opts: Optional[Sequence[str]] = None) -> Optional[CfgNode]:
    """``load_config`` for the command-line tools: on a bad file or key, print one ``config error: ...`` line to
    stderr and return None (the tools then exit with status 2) instead of raising."""
    import sys

    try:
        return load_config(path, opts)
    except (ConfigError, FileNotFoundError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return None
