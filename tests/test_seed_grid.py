"""The seeds x budgets grid (benchmarks.seed_grid): which runs it starts, and its report's figures by hand."""
import os

import numpy as np
import pytest
import torch

from video_iared.benchmarks import seed_grid
from video_iared.config import get_cfg
from video_iared.engine.results import write_predictions
from video_iared.utils.bootstrap import paired_bootstrap_ci

LABELS = [0, 1, 2, 0, 1, 2, 0, 1]


def _cfg():
    cfg = get_cfg()
    cfg.IARED.ENABLE = True
    cfg.IARED.FINETUNE_EPOCHS = 2
    cfg.freeze()
    return cfg


def _write(folder, correct, gflops):
    """A predictions file whose video i is right when correct[i] (3 classes)."""
    records = []
    for i, (y, ok) in enumerate(zip(LABELS, correct)):
        probs = torch.full((3,), 0.1)
        probs[y if ok else (y + 1) % 3] = 0.8
        records.append({"index": i, "path": f"v{i}.mp4", "label": y, "probs": probs, "error": None, "gflops": gflops})
    write_predictions(os.path.join(folder, "predictions"), records, 3)


def _fake_run(outcomes):
    """A stand-in for engine.run.run: writes the predictions a real run would, from ``outcomes[(seed, budget)]``."""
    calls = []

    def run(cfg):
        calls.append((cfg.RNG_SEED, cfg.IARED.TARGET_COST, cfg.IARED.DENSE_PLUS_N, cfg.IARED.DENSE_CHECKPOINT))
        stages = os.path.join(cfg.OUTPUT_DIR, "checkpoints")
        os.makedirs(stages, exist_ok=True)
        for g in range(len(cfg.IARED.GROUPS)):  # the curriculum: trained here unless the grid copied it in
            path = os.path.join(stages, f"iared_stage_{g:02d}.pyth")
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(f"stage {g} trained by seed {cfg.RNG_SEED} at budget {cfg.IARED.TARGET_COST}")
        key = (cfg.RNG_SEED, cfg.IARED.TARGET_COST)
        _write(cfg.OUTPUT_DIR, outcomes[key], 1.0 * cfg.IARED.TARGET_COST)
        _write(os.path.join(cfg.OUTPUT_DIR, "dense"), [1, 1, 1, 1, 1, 1, 0, 0], 1.0)
        if cfg.IARED.DENSE_PLUS_N:
            _write(os.path.join(cfg.OUTPUT_DIR, "dense_plus_n"), outcomes[(cfg.RNG_SEED, "n")], 1.0)
    return run, calls


OUTCOMES = {(0, 0.7): [1, 1, 1, 1, 1, 0, 0, 0], (0, 0.5): [1, 1, 1, 0, 0, 0, 0, 0], (0, "n"): [1, 1, 1, 1, 1, 1, 1, 0],
            (1, 0.7): [1, 1, 1, 1, 1, 1, 0, 0], (1, 0.5): [1, 1, 0, 0, 0, 0, 0, 1], (1, "n"): [1, 1, 1, 1, 1, 1, 0, 0]}


@pytest.fixture
def grid(tmp_path):
    dense = tmp_path / "dense.pyth"
    dense.write_bytes(b"weights")
    run, calls = _fake_run(OUTCOMES)
    out = str(tmp_path / "grid")
    seed_grid.run_grid(_cfg(), str(dense), [0, 1], [0.7, 0.5], out, run)
    return out, calls, str(dense)


def test_each_cell_runs_once_dense_plus_n_with_the_first_budget_only(grid):
    out, calls, dense = grid
    assert calls == [(0, 0.7, True, dense), (0, 0.5, False, dense), (1, 0.7, True, dense), (1, 0.5, False, dense)]
    # a seed's later budgets start from its first budget's curriculum (it does not depend on the budget)
    for seed in (0, 1):
        for g in range(len(_cfg().IARED.GROUPS)):
            with open(os.path.join(out, f"seed{seed}_cost0.5", "checkpoints", f"iared_stage_{g:02d}.pyth")) as f:
                assert f.read() == f"stage {g} trained by seed {seed} at budget 0.7"
    run, again = _fake_run(OUTCOMES)
    seed_grid.run_grid(_cfg(), dense, [0, 1], [0.7, 0.5], out, run)  # resumed: everything is done
    assert again == []
    os.remove(os.path.join(out, "seed1_cost0.5", "predictions.pt"))
    seed_grid.run_grid(_cfg(), dense, [0, 1], [0.7, 0.5], out, run)
    assert again == [(1, 0.5, False, dense)]


def test_run_nets_own_run_of_the_config_is_the_cell_it_is(tmp_path):
    """The config's run (seed 0, cost 0.7, dense + N, its own dense model) is read from OUTPUT_DIR, not run again."""
    cfg = _cfg().clone()
    cfg.defrost()
    cfg.OUTPUT_DIR, cfg.IARED.TARGET_COST = str(tmp_path / "main"), 0.7
    cfg.freeze()
    dense = tmp_path / "main" / "dense" / "checkpoints" / "checkpoint_epoch_00002.pyth"
    dense.parent.mkdir(parents=True)
    dense.write_bytes(b"weights")
    run, calls = _fake_run(OUTCOMES)
    own = cfg.clone()
    own.defrost()
    own.IARED.DENSE_PLUS_N = True
    own.freeze()
    run(own)  # what run_net wrote
    calls.clear()
    out = str(tmp_path / "grid")
    seed_grid.run_grid(cfg, str(dense), [0, 1], [0.7, 0.5], out, run)
    assert [c[:2] for c in calls] == [(0, 0.5), (1, 0.7), (1, 0.5)]
    rows = seed_grid.summarize(cfg, out, [0, 1], [0.7, 0.5], str(dense), num_resamples=200)
    assert {(r.seed, r.budget) for r in rows} >= {("0", 0.7), ("1", 0.5), ("all", 0.5)}
    assert not os.path.exists(os.path.join(out, "seed0_cost0.7"))
    # another dense model: the config's own run is not this grid's cell
    other = tmp_path / "other.pyth"
    other.write_bytes(b"w")
    assert seed_grid.cell_dir(cfg, out, 0, 0.7, str(other)) == os.path.join(out, "seed0_cost0.7")


def test_a_missing_dense_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pyth"):
        seed_grid.run_grid(_cfg(), str(tmp_path / "nope.pyth"), [0], [0.7], str(tmp_path), _fake_run(OUTCOMES)[0])


def test_report_rows_match_the_hand_computed_figures(grid):
    out, _, _ = grid
    rows = seed_grid.summarize(_cfg(), out, [0, 1], [0.7, 0.5], num_resamples=2000)
    by = {(r.seed, r.budget): r for r in rows}
    r = by[("0", 0.7)]
    assert r.videos == 8 and r.top1 == pytest.approx(62.5) and r.dense_plus_n_top1 == pytest.approx(87.5)
    assert r.dense_top1 == pytest.approx(75.0)
    assert r.vs_dense_plus_n.diff == pytest.approx(-0.25) and r.gflops_ratio == pytest.approx(1 / 0.7)
    assert by[("1", 0.5)].dense_plus_n_top1 == pytest.approx(75.0)  # seed 1's dense + N, from its first budget
    pooled = by[("all", 0.7)]  # per video: mean over seeds of (IA-RED² correct), and of (dense + N correct)
    a = np.mean([OUTCOMES[(0, 0.7)], OUTCOMES[(1, 0.7)]], axis=0)
    n = np.mean([OUTCOMES[(0, "n")], OUTCOMES[(1, "n")]], axis=0)
    assert pooled.top1 == pytest.approx(100 * a.mean()) and pooled.dense_plus_n_top1 == pytest.approx(100 * n.mean())
    assert pooled.vs_dense_plus_n == paired_bootstrap_ci(a, n, num_resamples=2000)
    assert pooled.vs_dense_plus_n.diff == pytest.approx((a - n).mean())


def test_report_files_and_the_machine_readable_line(grid):
    out, _, _ = grid
    rows = seed_grid.summarize(_cfg(), out, [0, 1], [0.7, 0.5], num_resamples=500)
    table = seed_grid.write_report(rows, out, [0, 1], [0.7, 0.5])
    assert table.count("\n") == 2 + 6 - 1 and "| all | 0.7 |" in table
    for ext in ("md", "csv", "json"):
        assert os.path.getsize(os.path.join(out, f"seed_grid.{ext}")) > 0
    line = seed_grid.summary_line(rows, [0, 1], [0.7, 0.5])
    fields = dict(tok.split("=", 1) for tok in line.split()[1:])
    assert line.startswith("seed_grid ") and fields["budgets"] == "0.7,0.5" and fields["videos"] == "8"
    pooled = [r for r in rows if r.seed == "all" and r.budget == 0.5][0]
    assert float(fields["cost0.5_half_width"]) == pytest.approx(100 * pooled.vs_dense_plus_n.half_width, abs=1e-4)
    assert float(fields["cost0.7_gflops_ratio"]) == pytest.approx(1 / 0.7, abs=1e-4)


def test_report_needs_every_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="predictions"):
        seed_grid.summarize(_cfg(), str(tmp_path), [0], [0.7])


def test_versus_another_grid_pairs_the_same_cells(grid, tmp_path):
    """--versus: this grid's IA-RED² minus another grid's (same seeds and budgets), per cell and seed-averaged."""
    out, _, dense = grid
    flipped = {k: [1 - v for v in outs] if k[1] == 0.5 else outs for k, outs in OUTCOMES.items()}
    other = str(tmp_path / "other")
    seed_grid.run_grid(_cfg(), dense, [0, 1], [0.7, 0.5], other, _fake_run(flipped)[0])
    rows = seed_grid.versus(_cfg(), out, other, [0, 1], [0.7, 0.5], dense, num_resamples=1000)
    by = {(r.seed, r.budget): r for r in rows}
    assert by[("0", 0.7)].diff.diff == 0.0 and by[("0", 0.7)].diff.tie  # the same predictions
    r = by[("1", 0.5)]  # [1,1,0,0,0,0,0,1] against its complement: 3 of 8 vs 5 of 8
    assert (r.top1, r.other_top1) == (pytest.approx(37.5), pytest.approx(62.5)) and r.diff.diff == pytest.approx(-0.25)
    a = np.mean([OUTCOMES[(0, 0.5)], OUTCOMES[(1, 0.5)]], axis=0)
    assert by[("all", 0.5)].diff == paired_bootstrap_ci(a, 1 - a, num_resamples=1000)
    fields = dict(tok.split("=", 1) for tok in seed_grid.summary_line(
        seed_grid.summarize(_cfg(), out, [0, 1], [0.7, 0.5], num_resamples=200), [0, 1], [0.7, 0.5], rows).split()[1:])
    assert float(fields["cost0.5_vs_other"]) == pytest.approx(100 * by[("all", 0.5)].diff.diff, abs=1e-4)
    assert fields["cost0.7_vs_other_ci"] == "[+0.0000,+0.0000]"
    with pytest.raises(FileNotFoundError, match="missing"):
        seed_grid.versus(_cfg(), out, str(tmp_path / "none"), [0, 1], [0.7, 0.5], dense)
