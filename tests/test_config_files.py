"""Config files: broken files give one ``config error:`` line naming the file (and line, and key); ``--cfg NAME``
and ``_BASE_: NAME`` resolve as given, then in ./configs, then among the configs shipped in the package."""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from video_iared.config import ConfigError, config_names, load_config, resolve_config
from video_iared.tools_main import run_net

ROOT = Path(__file__).resolve().parents[1]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _cli_error(argv: List[str], capsys) -> str:
    """run_net's stderr for a config that must be refused: exactly one ``config error:`` line, exit status 2."""
    rc = run_net(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("config error: "), err
    return err


# --- broken files ------------------------------------------------------------------------------------------------

def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = _write(tmp_path, "x.yaml", "TRAIN:\n  ENABLE: True\n  BATCH_SIZE: 4: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert str(info.value) == f"{bad} line 3: mapping values are not allowed here"
    assert _cli_error(["--cfg", str(bad)], capsys) == f"config error: {bad} line 3: mapping values are not allowed here"


def test_yaml_parser_error_in_a_base_names_the_base(tmp_path):
    _write(tmp_path, "base.yaml", "TRAIN:\n  BATCH_SIZE: [4\nDATA:\n  NUM_FRAMES: 8\n")
    child = _write(tmp_path, "child.yaml", "_BASE_: base.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'base.yaml'} line ") and "expected ',' or ']'" in msg


def test_base_cycle_is_one_line_with_the_chain(tmp_path, capsys):
    a = _write(tmp_path, "a.yaml", "_BASE_: b.yaml\nNUM_GPUS: 0\n")
    b = _write(tmp_path, "b.yaml", "_BASE_: a.yaml\n")
    err = _cli_error(["--cfg", str(a)], capsys)
    assert err == f"config error: {a}: _BASE_ cycle: {a} -> {b} -> {a}"


def test_base_self_reference(tmp_path):
    a = _write(tmp_path, "a.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(a))
    assert str(info.value) == f"{a}: _BASE_ cycle: {a} -> {a}"


@pytest.mark.parametrize("value, kind", [("[b.yaml, c.yaml]", "list"), ("{x: 1}", "dict"), ("3", "int")])
def test_base_must_be_one_file_name(tmp_path, capsys, value, kind):
    a = _write(tmp_path, "a.yaml", f"_BASE_: {value}\n")
    err = _cli_error(["--cfg", str(a)], capsys)
    assert err == f"config error: {a}: _BASE_ must be one file name (a string), got {kind}"


def test_scalar_where_a_section_is_expected(tmp_path, capsys):
    a = _write(tmp_path, "a.yaml", "NUM_GPUS: 0\nTRAIN: 5\n")
    err = _cli_error(["--cfg", str(a)], capsys)
    assert err == f"config error: {a}: TRAIN is a section of config keys, not a value (got 5)"


def test_section_where_a_value_is_expected(tmp_path):
    a = _write(tmp_path, "a.yaml", "TRAIN:\n  BATCH_SIZE:\n    X: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(a))
    assert str(info.value) == f"{a}: TRAIN.BATCH_SIZE is a value, not a section of config keys (got {{'X': 1}})"


def test_wrong_type_in_a_base_names_the_base(tmp_path):
    base = _write(tmp_path, "base.yaml", "TRAIN:\n  BATCH_SIZE: four\n")
    child = _write(tmp_path, "child.yaml", "_BASE_: base.yaml\nTRAIN:\n  BATCH_SIZE: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    assert str(info.value).startswith(f"{base}: ") and "TRAIN.BATCH_SIZE" in str(info.value)


def test_empty_path_label_separator_is_refused_naming_the_key(capsys):
    with pytest.raises(ConfigError) as info:
        load_config(str(ROOT / "configs/k400.yaml"), ["DATA.PATH_LABEL_SEPARATOR", ""])
    assert str(info.value).startswith("DATA.PATH_LABEL_SEPARATOR: must not be empty")
    err = _cli_error(["--cfg", str(ROOT / "configs/k400.yaml"), "DATA.PATH_LABEL_SEPARATOR", ""], capsys)
    assert "DATA.PATH_LABEL_SEPARATOR" in err


# --- finding a config by name ------------------------------------------------------------------------------------

def test_bare_name_and_name_without_yaml_find_the_shipped_config(monkeypatch, tmp_path):
    expected = load_config(str(ROOT / "configs/k400.yaml"))
    for cwd in (ROOT, tmp_path):  # the checkout's ./configs, then (outside it) the packaged copy
        monkeypatch.chdir(cwd)
        for name in ("k400.yaml", "k400", "configs/k400.yaml"):
            assert os.path.samefile(resolve_config(name), ROOT / "configs/k400.yaml"), (cwd, name)
            assert load_config(name) == expected


def test_configs_in_the_working_directory_come_before_the_packaged_ones(monkeypatch, tmp_path):
    (tmp_path / "configs").mkdir()
    _write(tmp_path / "configs", "k400.yaml", "_BASE_: k400_dense.yaml\nNUM_GPUS: 3\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_config("k400") == os.path.join("configs", "k400.yaml")
    # its _BASE_ is not beside it, nor in ./configs: the packaged k400_dense.yaml
    cfg = load_config("k400")
    assert cfg.NUM_GPUS == 3 and cfg.DATA.SAMPLING_RATE == 32 and not cfg.IARED.ENABLE


def test_base_by_bare_name_from_a_file_elsewhere(monkeypatch, tmp_path):
    mine = _write(tmp_path, "mine.yaml", "_BASE_: synthetic_dense\nTRAIN:\n  BATCH_SIZE: 3\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(str(mine))
    reference = load_config(str(ROOT / "configs/synthetic_dense.yaml"))
    assert cfg.TRAIN.BATCH_SIZE == 3 and cfg.SYNTHETIC.ENABLE and cfg.TIMESFORMER == reference.TIMESFORMER


def test_a_miss_lists_the_names_and_the_closest(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    err = _cli_error(["--cfg", "k400_dens.yaml"], capsys)
    assert err.startswith("config error: k400_dens.yaml: no such config file")
    assert "k400.yaml, k400_dense.yaml, k400_hr.yaml" in err and "synthetic_dense.yaml" in err
    assert err.endswith("did you mean k400_dense.yaml?")
    a = _write(tmp_path, "a.yaml", "_BASE_: nothere.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(a))
    assert str(info.value).startswith(f"{a}: _BASE_ nothere.yaml: no such config file") and "ssv2.yaml" in str(info.value)


def test_config_names_are_the_shipped_files():
    assert config_names() == sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def _help_names(help_text: str) -> List[str]:
    text = " ".join(help_text.split())
    assert "configs shipped with the package: " in text, help_text
    return text.split("configs shipped with the package: ", 1)[1].split(", ")


def test_help_lists_the_config_names():
    proc = subprocess.run([sys.executable, str(ROOT / "tools/run_net.py"), "--help"], capture_output=True, text=True,
                          cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert _help_names(proc.stdout) == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))


def test_a_missing_list_file_says_how_to_build_it(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # a new user's first run on a real dataset: the config by name, no lists yet
    assert run_net(["--cfg", "k400", "TRAIN.BATCH_SIZE", "4"]) == 1
    err = capsys.readouterr().err
    assert ("error: data_lists/k400/train.csv: list file not found; build the lists with: python tools/prepare_lists.py "
            "k400 --annotations DIR --videos DIR (data_lists/README.md explains them)") in err


# --- the package installed without the repository ---------------------------------------------------------------

def _tiny_relative_opts() -> List[str]:
    """tiny_opts (engine_fixtures) with relative data / output folders and fewer videos: one epoch in seconds."""
    from engine_fixtures import tiny_opts

    return tiny_opts("data/syn", "out", ["SOLVER.MAX_EPOCH", "1", "TEST.NUM_SPATIAL_CROPS", "1",
                                        "SYNTHETIC.VIDEOS_PER_CLASS", "[2, 1, 1]"])


@pytest.mark.slow
def test_installed_console_script_runs_outside_the_repository(tmp_path):
    src = tmp_path / "src"
    for name in ("video_iared", "configs", "tools"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--target", str(site), str(src)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    assert (site / "video_iared/configs/synthetic_dense.yaml").is_file()
    assert (site / "video_iared/tools/flops.py").is_file()
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", "import video_iared; print(video_iared.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env)
    assert where.stdout.strip() == str(site / "video_iared/__init__.py"), where.stderr
    script = site / "bin/video-iared-run"
    proc = subprocess.run([str(script), "--cfg", "synthetic_dense.yaml"] + _tiny_relative_opts(),
                          capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("video_top1=")
    assert (work / "out/log.txt").is_file() and (work / "data/syn/train.csv").is_file()
    # every tool's console script starts from there; those taking --cfg name the packaged configs in --help
    scripts = sorted(p.name for p in (site / "bin").iterdir())
    assert len(scripts) == 10 and "video-iared-seed-grid" in scripts, scripts
    for name in scripts:
        proc = subprocess.run([str(site / "bin" / name), "--help"], capture_output=True, text=True, cwd=work, env=env)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        assert name == "video-iared-prepare-lists" or "synthetic_dense" in _help_names(proc.stdout), name
