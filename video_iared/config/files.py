"""Config files: which file ``--cfg NAME`` / ``_BASE_: NAME`` means, reading it (a YAML error names the file and
line), its ``_BASE_`` chain and its keys checked against the defaults. Every error is a ``ConfigError`` naming the
file."""
from __future__ import annotations

import difflib
import os
import textwrap
from importlib import resources
from pathlib import Path
from typing import List, Optional, Set, Tuple

import yaml

from .validate import ConfigError, unknown_key_message

YAML_SUFFIXES = (".yaml", ".yml")
LOCAL_DIR = "configs"  # a checkout's configs, relative to the working directory


def packaged_config_dir() -> Optional[Path]:
    """The configs shipped with the package: ``video_iared/configs`` in an installed copy (setup.py maps the
    repository's top-level ``configs/`` there), else the checkout's ``configs/`` beside the package (a source tree
    or an editable install, where no copy exists). None when there is neither."""
    shipped = resources.files("video_iared") / "configs"
    if shipped.is_dir():
        return Path(str(shipped))
    checkout = Path(__file__).resolve().parents[2] / LOCAL_DIR
    return checkout if checkout.is_dir() else None


def _search_dirs() -> List[Path]:
    dirs = [Path(LOCAL_DIR)]
    packaged = packaged_config_dir()
    if packaged is not None:
        dirs.append(packaged)
    return [d for d in dirs if d.is_dir()]


def config_names() -> List[str]:
    """The file names ``--cfg`` finds by name (./configs and the packaged configs), sorted."""
    return sorted({p.name for d in _search_dirs() for p in d.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file()})


def config_help() -> str:
    """The ``--help`` paragraph naming the configs a tool's ``--cfg`` finds by name."""
    stems = [os.path.splitext(n)[0] for n in config_names()]
    text = ("--cfg takes a path or the name of a config (.yaml optional), looked up in ./configs, then among the "
            "configs shipped with the package: " + (", ".join(stems) or "(none found)"))
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def _candidates(name: str, referenced_by: str) -> List[str]:
    given = os.path.expanduser(name)
    if os.path.isabs(given):
        return [given]
    # a README command (--cfg configs/k400.yaml) typed elsewhere: ./configs/k400.yaml, the packaged k400.yaml
    bare = given[len(LOCAL_DIR) + 1:] if given.startswith(LOCAL_DIR + "/") else given
    out = [os.path.join(os.path.dirname(referenced_by), given) if referenced_by else given,
           os.path.join(LOCAL_DIR, bare)]
    packaged = packaged_config_dir()
    if packaged is not None:
        out.append(str(packaged / bare))
    return out


def check_config_reference(cfg, key: str = "TRAIN.PRETRAIN_CONFIG") -> None:
    """The config named by ``key`` (e.g. TRAIN.PRETRAIN_CONFIG) exists: else ``ConfigError`` naming the key. Its own
    keys are checked when it is loaded."""
    section, leaf = key.split(".")
    name = cfg[section][leaf]
    if name:
        try:
            resolve_config(name)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e}") from e


def resolve_config(name: str, referenced_by: str = "") -> str:
    """The config file that ``--cfg NAME`` (or ``_BASE_: NAME`` in the file ``referenced_by``) means. Tried in
    order: the path as given (for a ``_BASE_``: relative to ``referenced_by``'s folder); ``configs/NAME`` in the
    working directory (a checkout); the configs shipped in the package (a leading ``configs/`` dropped, so the
    README's ``--cfg configs/k400.yaml`` works outside the repository too). ``.yaml`` may be omitted.

    Raises ``ConfigError`` on a miss, listing the names available and the closest one.
    """
    for candidate in _candidates(name, referenced_by):
        suffixed = [candidate + s for s in YAML_SUFFIXES] if not candidate.endswith(YAML_SUFFIXES) else []
        for path in [candidate] + suffixed:
            if os.path.isfile(path):
                return path
    raise ConfigError(_miss_message(name, referenced_by))


def _miss_message(name: str, referenced_by: str) -> str:
    names = config_names()
    packaged = packaged_config_dir()
    looked = [f"beside {referenced_by}" if referenced_by else "as given", f"in ./{LOCAL_DIR}"]
    if packaged is not None:
        looked.append(f"among the packaged configs ({packaged})")
    what = f"{referenced_by}: _BASE_ {name}" if referenced_by else name
    looked_in = ", ".join(looked[:-1]) + " and " + looked[-1]
    msg = f"{what}: no such config file (looked {looked_in}); available: {', '.join(names) or 'none'}"
    by_stem = {os.path.splitext(n)[0]: n for n in names}
    close = difflib.get_close_matches(os.path.splitext(os.path.basename(name))[0], list(by_stem), n=1, cutoff=0.6)
    return msg + (f"; did you mean {by_stem[close[0]]}?" if close else "")


def read_config_file(path: str) -> dict:
    """The mapping of config keys in the YAML file ``path`` ({} for an empty file); a YAML syntax error names the
    file and line, a top level that is not a mapping names the file."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: {e.problem or e.context}") from e
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys, got {type(data).__name__}")
    return data


def base_chain(path: str) -> List[Tuple[str, dict]]:
    """``path`` and the files its ``_BASE_`` names, the root first, each with its keys (``_BASE_`` removed).
    Raises ``ConfigError`` for a ``_BASE_`` that is not one file name, names no file, or closes a cycle."""
    chain: List[Tuple[str, dict]] = []
    seen: List[str] = []
    current = path
    while True:
        real = os.path.realpath(current)
        if real in seen:
            shown = " -> ".join([p for p, _ in chain] + [current])
            raise ConfigError(f"{path}: _BASE_ cycle: {shown}")
        seen.append(real)
        data = dict(read_config_file(current))
        chain.append((current, data))
        if "_BASE_" not in data:
            return chain[::-1]
        base = data.pop("_BASE_")
        if not isinstance(base, str) or not base.strip():
            got = "nothing" if base is None or base == "" else type(base).__name__
            raise ConfigError(f"{current}: _BASE_ must be one file name (a string), got {got}")
        current = resolve_config(base.strip(), referenced_by=current)


def section_names(valid: Set[str]) -> Set[str]:
    """Every section of the dotted leaf keys ``valid``: {"TRAIN", "TRAIN.X"} for "TRAIN.X.Y"."""
    out = set()
    for key in valid:
        parts = key.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def check_file_keys(path: str, data: dict, valid: Set[str], sections: Set[str]) -> None:
    """Raise ``ConfigError`` naming ``path`` and the key for a key of ``data`` (one file's mapping) that the defaults
    do not have, a value where the defaults have a section, or a section where they have a value."""

    def walk(node: dict, prefix: str) -> None:
        for name, value in node.items():
            full = f"{prefix}{name}"
            if full in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"{path}: {full} is a section of config keys, not a value (got {value!r})")
                walk(value, full + ".")
            elif full in valid:
                if isinstance(value, dict):
                    raise ConfigError(f"{path}: {full} is a value, not a section of config keys (got {value!r})")
            else:
                raise ConfigError(unknown_key_message(full, valid, path))

    walk(data, "")
