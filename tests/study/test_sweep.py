"""The sweep API in-process on generated data: selection on the tuning seeds' validation accuracy, the
verdict on fresh seeds, edges of the grid flagged, and gradient-free methods tuned by their stdev_init."""

import json
from pathlib import Path

import pytest

from fmnist_pl.config import MAX_SEED, CompareConfig
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.errors import ConfigError
from fmnist_pl.study.sweep import check_final, edge_warning, grid_edge, sweep
from tests.conftest import make_dataset, run_cli, small_config

SEARCH = ("snes.popsize=4", "snes.batch_size=100")  # a small population: 5 generations an epoch on 500 images


def _config(tmp_path: Path, name: str, **kw) -> CompareConfig:
    return small_config(tmp_path, name, **({"epochs": 1, "hidden": (16,), "lrs": (0.01, 0.1), "target": 0.88} | kw))


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _best_val(folder: Path, run: str) -> float:
    return max(row["val_acc"] for row in _read(folder / "runs" / run / "history.json"))


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, list[str]]:
    """One sweep of sgd, adam (lr) and snes (stdev_init) over a two-value grid, two tuning seeds, three final."""
    root = tmp_path_factory.mktemp("sweep")
    arrays = load_arrays(make_dataset(root / "data"), counts=None)
    config = _config(root, "S", optimizers=("sgd", "adam", "snes"), seeds=2, overrides=SEARCH)
    lines: list[str] = []
    final = sweep(config, echo=lines.append, final_seeds=3, arrays=arrays)
    assert final == root / "S" / "final"
    return root / "S", lines


def test_the_final_comparison_trains_on_fresh_seeds_and_says_which(swept):
    top, lines = swept
    grid_seeds = {r["seed"] for r in _read(top / "sweep/config.json")["runs"]}
    final = _read(top / "final/config.json")
    final_seeds = {r["seed"] for r in final["runs"]}
    assert grid_seeds == {42, 43} and final_seeds == {44, 45, 46}  # disjoint: after the last tuning seed
    assert (final["config"]["seed"], final["config"]["seeds"]) == (44, 3)
    text = "tuned on seeds 42-43 (validation), compared on fresh seeds 44-46"
    for name, row in final["sweep"].items():
        assert row["seeds"] == [42, 43] and row["final_seeds"] == [44, 45, 46] and row["seeds_text"] == text, name
        assert row["stage"] == "final"
    assert text in lines and text in (top / "final/report.html").read_text()
    # Not the grid's runs again: the final sgd run of seed 44 is not any tuning run's history.
    chosen = final["sweep"]["sgd"]["chosen"]
    assert _read(top / "final/runs/sgd/seed-44/history.json") != _read(
        top / f"sweep/runs/sgd/lr-{chosen:g}/seed-42/history.json"
    )


def test_the_choice_is_the_best_mean_validation_accuracy_and_the_grid_report_ranks_by_it(swept):
    top, lines = swept
    chosen = _read(top / "sweep.json")
    for name in ("sgd", "adam"):
        row = chosen[name]
        means = {
            lr: (
                _best_val(top / "sweep", f"{name}/lr-{lr:g}/seed-42")
                + _best_val(top / "sweep", f"{name}/lr-{lr:g}/seed-43")
            )
            / 2
            for lr in (0.01, 0.1)
        }
        ranked = sorted(means, key=lambda lr: -means[lr])
        assert [p["value"] for p in row["by_validation"]] == ranked
        assert [p["val_acc"] for p in row["by_validation"]] == pytest.approx([means[lr] for lr in ranked])
        assert row["chosen"] == ranked[0] and row["param"] == "lr"
        assert row["tuning"] == "lr: grid of 2 values, best validation accuracy (mean over seeds 42-43)"
        assert f"{name}: lr={row['chosen']:g} (tuned on validation" in "\n".join(lines)
    # The grid's own report: the choice by validation, ranked best first, and its test numbers disowned.
    html = (top / "sweep/report.html").read_text()
    section = html.split('<section id="sweep">')[1].split("</section>")[0]
    assert "Its test numbers are not for selection" in section
    sgd = chosen["sgd"]["by_validation"]
    assert (
        f"{sgd[0]['value']:g} ({sgd[0]['val_acc']:.4f}) &gt; {sgd[1]['value']:g} ({sgd[1]['val_acc']:.4f})" in section
    )
    assert _read(top / "sweep/config.json")["sweep"]["sgd"]["stage"] == "tuning"
    assert "not for selection" not in (top / "final/report.html").read_text()
    # Its ranking too: by best validation accuracy, no test on the test set.
    ranked = _read(top / "sweep/summary.json")["rankings"]["accuracy"]
    assert ranked["by"] == "best validation accuracy" and not ranked["tested"]
    assert _read(top / "sweep/summary.json")["significance"] is None
    assert "By mean best validation accuracy" in html


def test_a_choice_at_an_edge_of_the_grid_is_flagged(swept):
    top, lines = swept
    chosen = _read(top / "sweep.json")
    for name, row in chosen.items():  # a grid of two values: every choice is at one of its edges
        edge = "smallest" if row["chosen"] == 0.01 else "largest"
        assert row["at_edge"] == edge
        line = (
            f"{name} chose {row['param']} {row['chosen']:g}, the {edge} of --lrs: the best may lie beyond; extend --lrs"
        )
        assert line in lines
    html = (top / "final/report.html").read_text()
    assert html.count('class="warn at-edge"') == 3


def test_a_gradient_free_method_is_tuned_by_its_stdev_init(swept):
    top, lines = swept
    row = _read(top / "sweep.json")["snes"]
    assert row["param"] == "stdev_init" and row["tuning"].startswith("stdev_init: grid of 2 values")
    for value in (0.01, 0.1):
        grid = top / f"sweep-stdev_init-{value:g}"
        runs = _read(grid / "config.json")["runs"]
        assert {r["optimizer"]["hparams"]["stdev_init"] for r in runs} == {value}
        assert {r["optimizer"]["hparams"]["popsize"] for r in runs} == {4}  # the user's --set, kept
        assert {r["seed"] for r in runs} == {42, 43}
    final = _read(top / "final/runs/snes/seed-44/metrics.json")
    assert final["optimizer"]["hparams"]["stdev_init"] == row["chosen"]
    assert "sgd" not in {r["optimizer"]["name"] for r in _read(top / "sweep-stdev_init-0.01/config.json")["runs"]}
    assert f"snes: stdev_init={row['chosen']:g} (tuned on validation" in "\n".join(lines)


def test_grid_edges():
    assert grid_edge(0.1, [0.01, 0.1, 1.0]) is None
    assert grid_edge(0.01, [0.01, 0.1, 1.0]) == "smallest" and grid_edge(1.0, [0.01, 0.1, 1.0]) == "largest"
    assert grid_edge(0.1, [0.1]) == "only" and grid_edge(None, [0.1, 1.0]) is None
    assert edge_warning("adam", {"chosen": 0.1, "param": "lr", "at_edge": None}) is None
    assert "the only value of --lrs" in edge_warning("adam", {"chosen": 0.1, "param": "lr", "at_edge": "only"})


def test_final_options_are_checked_in_one_line(tmp_path):
    config = _config(tmp_path, "x")
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match=f"--final-seeds must be a whole number >= 1, got {bad!r}"):
            check_final(config, None, bad)
    with pytest.raises(ConfigError, match="--final-epochs must be a whole number >= 1, got 0"):
        check_final(config, 0, 2)
    with pytest.raises(ConfigError, match="--final-seeds 2 needs seeds up to"):
        check_final(_config(tmp_path, "x", seed=MAX_SEED - 1), None, 2)
    check_final(config, 3, 1)


def test_a_resumed_sweep_keeps_its_final_seeds(swept, tmp_path):
    top, _ = swept
    config = _config(top.parent, "S", optimizers=("sgd", "adam", "snes"), seeds=2, overrides=SEARCH)
    with pytest.raises(ConfigError, match="was started with a final comparison of .* on seeds 44-46 .* seeds 44-45"):
        sweep(config, echo=lambda _: None, final_seeds=2, arrays=load_arrays(top.parent / "data", counts=None))


def test_the_finder_refuses_a_gradient_free_method_and_names_the_grid(tmp_path):
    config = _config(tmp_path, "lf", optimizers=("adam", "snes"), lrs=())
    with pytest.raises(
        ConfigError, match="sweep --lr-find tunes gradient .* snes is gradient-free: tune its stdev_init"
    ):
        sweep(config, lr_find=True, echo=lambda _: None)
    assert not (tmp_path / "lf").exists()


def test_a_bad_final_seeds_is_one_line_before_anything_starts(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("sweep", "--lrs", "0.01,0.1", "--final-seeds", "0", "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --final-seeds must be a whole number >= 1, got 0"
    assert not out.exists()


def test_a_rerun_with_other_eval_points_is_refused_before_anything_is_trained(tmp_path):
    from fmnist_pl.study.sweep import _check_same_points

    top = tmp_path / "sw"
    (top / "final").mkdir(parents=True)
    (top / "final" / "config.json").write_text(json.dumps({"config": {"eval_points": 20}}))
    _check_same_points(top, small_config(tmp_path, "sw", eval_points=20))  # as started: fine
    with pytest.raises(ConfigError, match="started with --eval-points 20, and this command asks for 0"):
        _check_same_points(top, small_config(tmp_path, "sw", eval_points=0))
