"""Config system: ``get_cfg()`` for the defaults, ``load_config(path, opts)`` for a YAML file plus overrides."""
from __future__ import annotations

import ast
import sys
from typing import Optional, Sequence

from fvcore.common.config import CfgNode

from .defaults import get_defaults
from .files import (base_chain, check_config_reference, check_file_keys, config_help, config_names,
                    packaged_config_dir, resolve_config, section_names)
from .validate import ConfigError, all_keys, unknown_key_message, validate_config

__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_config", "load_config_for_cli", "validate_config", "all_keys",
           "resolve_config", "config_names", "config_help", "packaged_config_dir"]


def get_cfg() -> CfgNode:
    """A fresh copy of the default config."""
    return get_defaults()


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


def merge_file(cfg: CfgNode, path: str) -> None:
    """Merge the config file ``path`` (found by ``resolve_config``) and its ``_BASE_`` chain into ``cfg``, root
    first; every error names the file it is about (and the key, or the line of a YAML syntax error)."""
    valid = set(all_keys(cfg))
    sections = section_names(valid)
    for name, data in base_chain(resolve_config(path)):
        check_file_keys(name, data, valid, sections)
        try:
            cfg.merge_from_other_cfg(CfgNode(data))
        except (ValueError, AssertionError) as e:  # yacs: a type mismatch or a YAML type it cannot hold, keyed
            raise ConfigError(f"{name}: {e}") from e


def load_config(path: Optional[str] = None, opts: Optional[Sequence[str]] = None) -> CfgNode:
    """The defaults, merged with a config file (a path or a name, see ``resolve_config``; following ``_BASE_``)
    and ``KEY VALUE`` overrides, validated and frozen."""
    cfg = get_cfg()
    if path:
        merge_file(cfg, path)
    merge_opts(cfg, opts or [])
    validate_config(cfg)
    check_config_reference(cfg, "TRAIN.PRETRAIN_CONFIG")
    cfg.freeze()
    return cfg


def load_config_for_cli(path: Optional[str], opts: Optional[Sequence[str]] = None) -> Optional[CfgNode]:
    """``load_config`` for the command-line tools: on a bad file or key, print one ``config error: ...`` line to
    stderr and return None (the tools then exit with status 2) instead of raising."""
    try:
        return load_config(path, opts)
    except (ConfigError, FileNotFoundError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return None
