"""The tune API on generated data: trials asked from Optuna and trained as one compare, told back,
the expected-max curves and rankings in tuning.json, trials.csv and the final report, the final
runs on fresh seeds, and a tune stopped mid-round that continues to the same trials and numbers."""

import csv
import io
import json
import math
import signal
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from fmnist_pl.analysis.tuning import WORST
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.errors import ConfigError, Interrupted, OptimizerError
from fmnist_pl.execution.backend import InProcess, train_unit
from fmnist_pl.runtime.stops import Stopped
from fmnist_pl.study import tune as tune_module
from fmnist_pl.study.compare import report
from fmnist_pl.study.live import LiveCurves
from fmnist_pl.study.tune import STUDY_FILE, TuneConfig, study_name, tune
from tests.conftest import make_dataset, run_cli, small_config

SEARCH = ("snes.batch_size=100",)  # fitness batches of 100 of the 500 generated images


def _config(root: Path, name: str, **kw) -> TuneConfig:
    base = small_config(root, name, optimizers=("sgd", "adam", "snes"), epochs=1, hidden=(16,), overrides=SEARCH)
    # snes' popsize searched over a small range: the generated data trains in seconds
    return TuneConfig(base, **({"trials": 4, "final_seeds": 2, "space": ("snes.popsize=4:8",)} | kw))


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _study(top: Path, name: str, index: int = 0) -> optuna.Study:
    """A method's study, by the name its tune.json gives it."""
    prefix = _read(top / "tune.json")["study_prefix"]
    assert prefix.startswith(f"{top.name}-")
    return optuna.load_study(study_name=study_name(prefix, name, index), storage=f"sqlite:///{top / STUDY_FILE}")


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    return load_arrays(make_dataset(tmp_path_factory.mktemp("data")), counts=None)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, arrays) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("tune")
    lines: list[str] = []
    final = tune(_config(root, "T"), echo=lines.append, arrays=arrays)
    assert final == root / "T" / "final"
    return root / "T", lines


def test_every_method_gets_its_trials_and_the_study_holds_what_was_trained(tuned):
    top, lines = tuned
    summary = _read(top / "tuning.json")
    assert list(summary["methods"]) == ["sgd", "adam", "snes"]
    round_runs = {r["setting"] for r in _read(top / "round-1" / "config.json")["runs"]}
    for name, m in summary["methods"].items():
        assert [t["number"] for t in m["trials"]] == [0, 1, 2, 3]
        assert {f"{name}/trial-00{n}" for n in range(4)} | {f"{name}/defaults"} <= round_runs
        study = _study(top, name)
        told = {t.number: t.value for t in study.trials}
        assert told == {t["number"]: t["value"] for t in m["trials"]}
        # A trial's value is its run's best validation accuracy (one tuning seed)
        run = top / "round-1" / "runs" / name / "trial-001" / "history.json"
        assert m["trials"][1]["value"] == pytest.approx(max(r["val_acc"] for r in _read(run)))
        # Sampled values reach the optimizer: the round's run has them
        planned = next(r for r in _read(top / "round-1" / "config.json")["runs"] if r["setting"] == f"{name}/trial-002")
        assert planned["optimizer"]["hparams"] == m["trials"][2]["hparams"]
    assert (top / STUDY_FILE).is_file()
    adam_lrs = {t["hparams"]["lr"] for t in summary["methods"]["adam"]["trials"]}
    assert len(adam_lrs) == 4  # four different configurations, not the defaults four times


def test_curves_rankings_and_the_choice_follow_from_the_trials(tuned):
    top, lines = tuned
    summary = _read(top / "tuning.json")
    for m in summary["methods"].values():
        values = [v for v in m["values"]]
        assert m["curve"][0] == pytest.approx(sum(values) / len(values))  # k = 1: the mean trial
        assert m["curve"] == sorted(m["curve"])  # more trials never hurt
        assert m["chosen"]["value"] == max(values)
        assert m["model_epochs"] == [k * 1 for k in m["ks"]]  # 1 epoch x 1 tuning seed per trial
        assert m["curve_without_replacement"][-1] == max(values)  # the unbiased draw reaches the best at K
        assert m["curve_without_replacement"][0] == pytest.approx(m["curve"][0])  # both are the mean at k = 1
        seconds = [t["seconds"] for t in m["trials"]]
        assert all(s > 0 for s in seconds) and m["seconds"] == pytest.approx([k * sum(seconds) / 4 for k in m["ks"]])
    assert summary["trial_seconds"] == pytest.approx(
        sum(m["seconds"][0] for m in summary["methods"].values()) / len(summary["methods"])
    )
    assert [r["k"] for r in summary["rankings"]] == [1, 4]
    at_k4 = [o["method"] for o in summary["rankings"][-1]["order"]]
    assert at_k4 == sorted(summary["methods"], key=lambda n: -summary["methods"][n]["curve"][3])
    assert any(line.startswith("ranking at k=4: ") for line in lines)
    assert any(line.startswith("The ranking ") for line in lines)


def test_trials_csv_has_a_row_per_trial(tuned):
    top, _ = tuned
    rows = list(csv.DictReader(io.StringIO((top / "trials.csv").read_text())))
    assert len(rows) == 12
    assert {r["method"] for r in rows} == {"sgd", "adam", "snes"}
    assert all(r["status"] == "complete" and 0 <= float(r["val_acc"]) <= 1 for r in rows)
    assert rows[0]["lr"] != "" and rows[0]["popsize"] == ""  # sgd has an lr, no popsize
    summary = _read(top / "tuning.json")
    for row in rows:  # the validation curve in brief, as tuning.json has it (one epoch a trial here)
        trial = next(t for t in summary["methods"][row["method"]]["trials"] if t["run"] == row["run"])
        assert (row["epochs"], row["best_acc_epoch"]) == ("1", "1") and trial["epochs"] == 1
        assert float(row["last_val_acc"]) == pytest.approx(float(row["val_acc"]), abs=1e-6)
        assert int(row["model_epochs"]) == trial["model_epochs"] > 0


def test_the_final_runs_use_the_choice_on_fresh_seeds_and_show_the_tuning(tuned):
    top, _ = tuned
    summary = _read(top / "tuning.json")
    final = _read(top / "final" / "config.json")
    assert final["config"]["seed"] == 43 and final["config"]["seeds"] == 2  # tuned on seed 42
    for run in final["runs"]:
        chosen = summary["methods"][run["optimizer"]["name"]]["chosen"]["hparams"]
        hparams = run["optimizer"]["hparams"]
        assert {k: hparams[k] for k in chosen} == chosen
    assert _read(top / "final" / "summary.json")["tuning"] == summary  # summary.json holds what the report shows
    assert _read(top / "round-1" / "summary.json")["tuning"] is None
    html = (top / "final" / "report.html").read_text()
    assert "Tuning: every method with the same number of trials" in html
    assert "expected best validation accuracy vs number of trials" in html
    assert "this round of a tune" not in html
    # A round's report is rendered on demand: the tune's own report is the final one.
    assert not (top / "round-1" / "report.html").exists() and (top / "round-1" / "summary.json").exists()
    round_html = report(top / "round-1").read_text()
    assert "round of a tune's trials" in round_html


class _StopAfterFirstUnit(InProcess):
    """Train the first unit of the first round, then stop as Ctrl-C would."""

    def train(self, out, config, todo, arrays, echo):
        train_unit(out, config, todo[0], arrays, config.accelerator, config.progress)
        raise Stopped(signal.SIGINT)


def test_a_tune_stopped_mid_round_continues_to_the_same_trials_and_numbers(tmp_path, tuned, arrays):
    top, _ = tuned
    config = _config(tmp_path, "T")  # the same name: the same study names, so the same sampler seeds
    with pytest.raises(Interrupted, match="tune --resume"):
        tune(config, echo=lambda _: None, backend=_StopAfterFirstUnit(), arrays=arrays)
    stopped = tmp_path / "T"
    for name in ("sgd", "adam", "snes"):
        assert len(_study(stopped, name).trials) == 4  # asked, not yet told
    # The stopped round has what finished summarized, and no report (the tune's is the final one).
    summary = _read(stopped / "round-1" / "summary.json")
    assert summary and not (stopped / "round-1" / "report.html").exists()
    tune(config, echo=lambda _: None, arrays=arrays)
    for name in ("sgd", "adam", "snes"):
        assert len(_study(stopped, name).trials) == 4  # nothing asked twice
    again, first = _read(stopped / "tuning.json"), _read(top / "tuning.json")
    for name in first["methods"]:
        a, b = again["methods"][name], first["methods"][name]
        assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
        assert a["values"] == b["values"]


def test_rounds_are_asked_after_the_earlier_ones_are_told_in_a_given_storage(tmp_path, arrays):
    # --sampler tpe --batch 2 --storage URL: two rounds, the second asked after the first was told (what
    # lets an adaptive sampler learn), the studies in the database given (not study.db in the folder).
    base = small_config(tmp_path, "B", optimizers=("sgd", "adam"), epochs=1, hidden=(16,))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    tune(
        TuneConfig(base, trials=4, sampler="tpe", batch=2, storage=url, final_seeds=1),
        echo=lambda _: None,
        arrays=arrays,
    )
    top = tmp_path / "B"
    assert not (top / STUDY_FILE).exists() and (tmp_path / "shared.db").is_file()
    prefix = _read(top / "tune.json")["study_prefix"]
    for name in ("sgd", "adam"):
        trials = optuna.load_study(study_name=study_name(prefix, name, 0), storage=url).trials
        assert [t.state.name for t in trials] == ["COMPLETE"] * 4
        first, second = trials[:2], trials[2:]
        assert max(t.datetime_complete for t in first) <= min(t.datetime_start for t in second)
        runs = {r["setting"] for r in _read(top / "round-1" / "config.json")["runs"]}
        later = {r["setting"] for r in _read(top / "round-2" / "config.json")["runs"]}
        assert {f"{name}/trial-000", f"{name}/trial-001"} <= runs and {
            f"{name}/trial-002",
            f"{name}/trial-003",
        } <= later
    assert _read(top / "tuning.json")["setup"]["storage"] == "--storage (given)"


def test_a_folder_continues_only_with_the_settings_it_started_with(tuned, arrays):
    top, _ = tuned
    with pytest.raises(ConfigError, match="started with other settings \\(--trials\\)"):
        tune(_config(top.parent, "T", trials=5), echo=lambda _: None, arrays=arrays)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"sampler": "bogus"}, "--sampler 'bogus': choose from qmc, random, tpe, grid"),
        ({"sampler": "grid"}, "a grid searches one hyperparameter; adam searches 4 (lr, beta1, one_minus_beta2, eps)"),
        ({"trials": 0}, "--trials must be a whole number from 1 to 1000"),
        ({"space": ("adam.lr=1:0.1",)}, "adam.lr"),
        ({"final_seeds": 0}, "--final-seeds"),
    ],
)
def test_bad_settings_are_one_line_before_anything_is_written(tmp_path, kw, message):
    with pytest.raises((ConfigError, OptimizerError), match=message.replace("(", "\\(").replace(")", "\\)")):
        _config(tmp_path, "bad", **kw)
    assert not (tmp_path / "bad").exists()


def test_the_command_line_refuses_bad_input_with_one_line_and_exit_2(tmp_path):
    out = run_cli("tune", "--optimizers", "sgd", "--space", "sgd.momentum=0:1", "--output-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "momentum" in out.stderr
    out = run_cli("tune", "--resume", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "holds no tune" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_options_that_would_change_the_tune(tmp_path):
    out = run_cli("tune", "--resume", str(tmp_path), "--trials", "8")
    assert out.returncode == 2 and "drop --trials" in out.stderr


def test_tune_config_round_trips_through_its_file(tmp_path):
    config = _config(tmp_path, "R", sampler="tpe", batch=2, storage="sqlite:////tmp/x.db")
    assert TuneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert replace(config, trials=3) != config


def test_protocols_set_the_published_settings_scaled_down(tmp_path):
    from fmnist_pl.study.tune import TuneConfig

    base = small_config(tmp_path, "P", optimizers=("sgd", "adam", "snes"))
    deepobs = TuneConfig.for_protocol(base, "deepobs", scale=0.25)
    assert (deepobs.sampler, deepobs.trials, deepobs.final_seeds, deepobs.ks) == ("grid", 9, 2, (1, 9))
    assert "adam.lr=1e-05:100.0:log" in deepobs.space and "adam.beta1=0.9" in deepobs.space
    assert "sgd.lr=1e-05:100.0:log" in deepobs.space
    assert not any(item.startswith("snes.stdev_init") for item in deepobs.space)  # its step size: searched
    assert "snes.popsize=100" in deepobs.space
    assert "Scaled down by --scale 0.25: 9 of 36 trials, 2 of 10 final seeds" in deepobs.describe_protocol()
    valley = TuneConfig.for_protocol(base, "crowded-valley", scale=0.2)
    assert (valley.sampler, valley.trials, valley.ks, valley.space) == ("random", 10, (1, 5, 10), ())
    algoperf = TuneConfig.for_protocol(base, "algoperf", scale=0.4)
    assert (algoperf.sampler, algoperf.trials, algoperf.studies, algoperf.final_seeds) == ("qmc", 2, 2, 2)
    full = TuneConfig.for_protocol(base, "algoperf")
    assert (full.trials, full.studies, full.final_seeds, full.ks) == (5, 5, 5, (1, 5))
    with pytest.raises(ConfigError, match="crowded-valley reports the one-shot defaults too: drop --no-defaults"):
        TuneConfig.for_protocol(base, "crowded-valley", defaults=False)
    with pytest.raises(ConfigError, match="--protocol 'valley': choose from deepobs, crowded-valley, algoperf"):
        TuneConfig.for_protocol(base, "valley")
    with pytest.raises(ConfigError, match="--scale must be a number in \\(0, 1\\]"):
        TuneConfig.for_protocol(base, "deepobs", scale=2)


def test_a_grid_walks_its_points_and_studies_give_algoperfs_score(tmp_path, arrays):
    base = small_config(tmp_path, "G", optimizers=("sgd",), epochs=2, hidden=(16,), target=0.3, eval_points=0)
    grid = TuneConfig(base, trials=3, sampler="grid", space=("sgd.lr=0.001:0.1:log",), final_seeds=2, defaults=False)
    tune(grid, echo=lambda _: None, arrays=arrays)
    got = _read(tmp_path / "G" / "tuning.json")["methods"]["sgd"]
    assert [t["hparams"]["lr"] for t in got["trials"]] == pytest.approx([0.001, 0.01, 0.1])
    # --no-defaults: no one-shot run; --eval-points 0: trials and final runs validate at epoch ends only.
    assert got["defaults"] is None and not (tmp_path / "G" / "round-1" / "runs" / "sgd" / "defaults").exists()
    for folder in (tmp_path / "G" / "round-1", tmp_path / "G" / "final"):
        runs = [p.parent for p in folder.glob("runs/**/metrics.json")]
        assert len(runs) == (3 if folder.name == "round-1" else 2)
        assert all(len(_read(r / "history.json")) == 2 and not (r / "anytime.json").exists() for r in runs)
    # Anytime points: the time to the target is read between epoch ends too.
    studies = TuneConfig(replace(base, name="A", eval_points=20), trials=2, studies=2, final_seeds=2)
    lines: list[str] = []
    tune(studies, echo=lines.append, arrays=arrays)
    summary = _read(tmp_path / "A" / "tuning.json")
    sgd = summary["methods"]["sgd"]
    assert [t["run"] for t in sgd["trials"]] == [
        "sgd/s1-trial-000",
        "sgd/s1-trial-001",
        "sgd/s2-trial-000",
        "sgd/s2-trial-001",
    ]
    assert sgd["trials"][0]["params"] != sgd["trials"][2]["params"]  # independent studies, other points
    per_study = sgd["studies"]["per_study"]
    assert [s["study"] for s in per_study] == [1, 2]
    for s in per_study:  # AlgoPerf: each study's fastest trial to the target
        reached = [t["images_to_target"] for t in sgd["trials"] if t["study"] == s["study"] and t["images_to_target"]]
        assert s["images_to_target"] == (min(reached) if reached else None)
    times = sorted(s["images_to_target"] for s in per_study if s["images_to_target"] is not None)
    assert len(times) == 2, "the generated data reaches 30 % in one epoch"
    assert sgd["studies"]["score"] == pytest.approx(sum(times) / 2)  # the median of two
    assert summary["score_ranking"] == ["sgd"]
    assert any(line.startswith("AlgoPerf score") for line in lines)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "A" / "trials.csv").read_text())))
    assert [r["study"] for r in rows] == ["1", "1", "2", "2"]


def test_the_command_line_refuses_a_protocol_with_the_options_it_sets(tmp_path):
    out = run_cli("tune", "--protocol", "deepobs", "--trials", "4", "--output-dir", str(tmp_path))
    assert out.returncode == 2 and "--protocol deepobs sets --trials: drop them" in out.stderr
    out = run_cli("tune", "--scale", "0.5", "--output-dir", str(tmp_path))
    assert out.returncode == 2 and "--scale scales a --protocol" in out.stderr
    out = run_cli("tune", "--protocol", "crowded-valley", "--no-defaults", "--output-dir", str(tmp_path))
    assert out.returncode == 2 and "--protocol crowded-valley reports the one-shot defaults too" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_rungs_and_the_halving_cut():
    from fmnist_pl.study.tune import halving_survivors, rungs

    assert (
        rungs(9, 3) == [1, 3, 9] and rungs(10, 3) == [1, 3, 10] and rungs(4, 2) == [1, 2, 4] and rungs(3, 3) == [1, 3]
    )
    entries = [("sgd", f"trial-00{i}") for i in range(5)] + [("adam", "trial-000"), ("adam", "trial-001")]
    values = {"sgd": [0.5, None, 0.7, 0.7, 0.2], "adam": [0.1, 0.9]}
    results = {f"{n}/{label}": values[n][int(label[-1])] for n, label in entries}
    assert halving_survivors(entries, results, 2) == {
        "sgd": {"trial-002", "trial-003", "trial-000"},
        "adam": {"trial-001"},
    }
    assert halving_survivors(entries, results, 3) == {"sgd": {"trial-002", "trial-003"}, "adam": {"trial-001"}}
    # several studies of one method: each keeps its own share
    studies = [("sgd", "s1-trial-000"), ("sgd", "s1-trial-001"), ("sgd", "s2-trial-000"), ("sgd", "s2-trial-001")]
    scores = dict(zip(studies, [0.9, 0.8, 0.1, 0.2]))
    got = halving_survivors(studies, {f"{n}/{label}": scores[(n, label)] for n, label in studies}, 2)
    assert got == {"sgd": {"s1-trial-000", "s2-trial-001"}}


@pytest.mark.parametrize("eta", [2, 3, 4])
def test_halving_never_drops_the_trial_that_finishes_best_when_the_order_holds_at_every_rung(eta):
    """A constructed case where the answer is knowable: each trial's accuracy at e epochs is its
    quality times a learning curve common to all, so the order at every rung is the final order."""
    import random

    from fmnist_pl.study.tune import halving_survivors, rungs

    rng = random.Random(eta)
    quality = {f"trial-{i:03d}": rng.uniform(0.5, 1.0) for i in range(27)}
    entries = [("adam", label) for label in quality]
    plan = rungs(9, eta)
    for epochs in plan[:-1]:
        curve = 1 - 0.5**epochs
        results = {f"adam/{label}": quality[label] * curve for _, label in entries}
        keep = halving_survivors(entries, results, eta)["adam"]
        entries = [e for e in entries if e[1] in keep]
    assert max(quality, key=quality.get) in {label for _, label in entries}
    assert len(entries) == math.ceil(27 / eta ** (len(plan) - 1))  # each cut kept its share


def _share(folder: Path, run: str, after_epoch: int) -> float:
    """A run's share of its lockstep group's seconds in ``folder``, for its epochs after ``after_epoch``."""
    runs = folder / "runs" / run
    k = _read(runs / "metrics.json")["timing"]["lockstep_runs"]
    seconds = sum(row["seconds"] for row in _read(runs / "history.json") if row["epoch"] > after_epoch) / k
    assert seconds > 0
    return seconds


def test_a_pruned_tune_trains_rungs_and_keeps_the_pruned_trials_partial_runs(tmp_path, arrays):
    base = small_config(tmp_path, "H", optimizers=("sgd", "adam", "snes"), epochs=2, hidden=(16,), overrides=SEARCH)
    config = TuneConfig(base, trials=4, prune="halving", eta=2, final_seeds=2, space=("snes.popsize=4:8",))
    lines: list[str] = []
    tune(config, echo=lines.append, arrays=arrays)
    top = tmp_path / "H"
    rung = _read(top / "round-1.rung-1" / "config.json")
    final = _read(top / "round-1" / "config.json")
    # a rung trains the whole plan and stops early: the exact prefix its survivors go on from
    assert rung["config"]["epochs"] == 2 and rung["config"]["stop_epoch"] == 1
    assert final["config"]["epochs"] == 2 and final["config"]["stop_epoch"] is None
    assert len(rung["runs"]) == 15  # 4 trials of each method, and its default run (never cut)
    assert len([r for r in final["runs"] if not r["setting"].endswith("defaults")]) == 6  # the best 2 of each
    summary = _read(top / "tuning.json")
    for name in ("sgd", "adam", "snes"):  # a gradient-free run goes on from its own group's checkpoint
        trials = summary["methods"][name]["trials"]
        assert sorted(t["status"] for t in trials) == ["complete", "complete", "pruned", "pruned"]
        study = _study(top, name)
        states = {t.number: t.state.name for t in study.trials}
        curves = {t.number: t.intermediate_values for t in study.trials}
        for t in trials:
            assert states[t["number"]] == ("PRUNED" if t["status"] == "pruned" else "COMPLETE")
            # Optuna's learning curve of the trial (optuna-dashboard plots it): every epoch it trained
            assert sorted(curves[t["number"]]) == ([1] if t["status"] == "pruned" else [1, 2])
            assert max(curves[t["number"]].values()) == t["value"]  # one tuning seed: its best epoch
            history = _read(top / "round-1.rung-1" / "runs" / t["run"] / "history.json")
            assert len([r for r in history if "fraction" not in r]) == 1  # every trial's first rung is kept
            if t["status"] == "complete":
                # the survivor went on from its rung: the rung's epoch is its first
                again = _read(top / "round-1" / "runs" / t["run"] / "history.json")
                assert len(again) == 2 and again[0] == history[0]
                assert t["value"] == max(r["val_acc"] for r in again)
                assert t["model_epochs"] == 2 * base.seeds
            else:
                assert t["model_epochs"] == 1 * base.seeds
            # its share of each group it trained in, each epoch counted once (a survivor's rung epoch in the rung)
            assert t["seconds"] == pytest.approx(
                _share(top / "round-1.rung-1", t["run"], 0)
                + (_share(top / "round-1", t["run"], 1) if t["status"] == "complete" else 0.0)
            )
            if t["status"] == "pruned":
                assert t["value"] == max(r["val_acc"] for r in history)
        pruned_best = max(t["value"] for t in trials if t["status"] == "pruned")
        rung_values = {
            t["run"]: max(r["val_acc"] for r in _read(top / "round-1.rung-1" / "runs" / t["run"] / "history.json"))
            for t in trials
        }
        kept = [rung_values[t["run"]] for t in trials if t["status"] == "complete"]
        assert min(kept) >= pruned_best  # the cut kept the best at the rung
    assert any("rung 1 (1 epochs): 6 trials go on" in line for line in lines)
    assert any("going on after epoch 1 of round-1.rung-1" in line for line in lines)
    assert "1 of a 2-epoch plan (a successive-halving rung)" in report(top / "round-1.rung-1").read_text()
    assert "successive halving, eta 2, epoch rungs 1, 2" in _read(top / "tuning.json")["setup"]["prune"]


def test_a_trial_that_diverges_at_a_rung_is_told_as_the_worst_not_as_pruned(tmp_path, arrays):
    # Learning rates up to 1e4: the larger ones explode in the first epoch, the rung's.
    base = small_config(tmp_path, "D", optimizers=("sgd",), epochs=2, hidden=(16,))
    config = TuneConfig(base, trials=4, prune="halving", eta=2, final_seeds=1, space=("sgd.lr=1e-3:1e4:log",))
    tune(config, echo=lambda _: None, arrays=arrays)
    trials = _read(tmp_path / "D" / "tuning.json")["methods"]["sgd"]["trials"]
    statuses = [t["status"] for t in trials]
    assert "diverged" in statuses and "complete" in statuses, statuses
    went_on = {r["setting"] for r in _read(tmp_path / "D" / "round-1" / "config.json")["runs"]}
    assert any(t["status"] == "diverged" and t["run"] not in went_on for t in trials)  # one diverged at the rung
    study = {t.number: t for t in _study(tmp_path / "D", "sgd").trials}
    for t in trials:
        told = study[t["number"]]
        if t["status"] == "diverged":  # as a diverged trial of an unpruned tune: complete, the worst value
            assert (told.state.name, told.value) == ("COMPLETE", WORST)
            if t["run"] not in went_on:  # it diverged in its first epoch: no epoch before it to show
                assert told.intermediate_values == {} and t["epochs"] is None
        else:
            assert told.state.name == ("PRUNED" if t["status"] == "pruned" else "COMPLETE")


def test_live_curves_give_a_study_each_trials_epochs_as_its_runs_end_them(tmp_path, arrays):
    # Two epochs, two tuning seeds: a trial's live value after an epoch is the mean of its seeds', read from
    # their TensorBoard files, and equals what the round's end writes from their histories.
    base = small_config(tmp_path, "L", optimizers=("sgd",), epochs=2, seeds=2, hidden=(16,))
    tune(TuneConfig(base, trials=2, final_seeds=1, defaults=False), echo=lambda _: None, arrays=arrays)
    top = tmp_path / "L"
    told = {t.user_attrs["run"]: t.intermediate_values for t in _study(top, "sgd").trials}
    assert all(sorted(curve) == [1, 2] for curve in told.values())
    storage = optuna.storages.InMemoryStorage()  # the trials as asked, nothing reported
    scratch = optuna.create_study(storage=storage, direction="maximize")
    study_id = storage.get_study_id_from_name(scratch.study_name)
    following = {
        run: (storage, storage.get_trial_id_from_study_id_trial_number(study_id, scratch.ask().number)) for run in told
    }
    with LiveCurves(lambda: [top / "round-1"], following, every_s=0.01) as live:
        for _ in range(500):
            if len(live.reported) == 4:
                break
            time.sleep(0.01)
    assert live.reported == {(run, epoch) for run in told for epoch in (1, 2)}
    shown = {run: storage.get_trial(trial_id).intermediate_values for run, (_, trial_id) in following.items()}
    assert shown == told


def _same_trials(top: Path, first_top: Path) -> None:
    """The tune in ``top`` asked, trained and told what the uninterrupted one in ``first_top`` did."""
    again, first = _read(top / "tuning.json"), _read(first_top / "tuning.json")
    for name in first["methods"]:
        a, b = again["methods"][name], first["methods"][name]
        assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
        assert a["values"] == b["values"]
        assert len(_study(top, name).trials) == 4
        # each trial's learning curve reported once, whole, whether or not a stop came between
        curves = [t.intermediate_values for t in _study(top, name).trials]
        assert curves == [t.intermediate_values for t in _study(first_top, name).trials] and all(curves)


def test_a_tune_stopped_while_asking_continues_to_the_same_trials(tmp_path, tuned, arrays, monkeypatch):
    config = _config(tmp_path, "T")
    real, calls = tune_module._ask, []

    def stop_on_the_sixth(*args, **kw):
        calls.append(1)
        if len(calls) == 6:  # sgd's four and one of adam's asked
            raise Stopped(signal.SIGKILL)
        real(*args, **kw)

    monkeypatch.setattr(tune_module, "_ask", stop_on_the_sixth)
    with pytest.raises(Stopped):
        tune(config, echo=lambda _: None, arrays=arrays)
    monkeypatch.setattr(tune_module, "_ask", real)
    assert len(_study(tmp_path / "T", "adam").trials) == 1
    tune(config, echo=lambda _: None, arrays=arrays)
    _same_trials(tmp_path / "T", tuned[0])


def _tune_killed_at_value(config: TuneConfig, n: int, arrays, monkeypatch) -> None:
    """Run ``config``'s tune until Optuna is about to write its ``n``-th hyperparameter value (it writes an
    asked trial's values one at a time), and stop it there as a kill would."""
    real, calls = optuna.trial.Trial._suggest, []

    def stop_at_the_nth(self, *args, **kw):
        calls.append(1)
        if len(calls) == n:
            raise Stopped(signal.SIGKILL)
        return real(self, *args, **kw)

    monkeypatch.setattr(optuna.trial.Trial, "_suggest", stop_at_the_nth)
    with pytest.raises(Stopped):
        tune(config, echo=lambda _: None, arrays=arrays)
    monkeypatch.setattr(optuna.trial.Trial, "_suggest", real)


@pytest.mark.parametrize("sampler", ["qmc", "tpe"])
def test_a_tune_stopped_between_optunas_writes_of_a_trial_continues_to_the_same_trials(
    tmp_path, tuned, arrays, monkeypatch, sampler
):
    # Optuna writes an asked trial's values one at a time: a kill may land between two of them.
    if sampler == "qmc":
        reference = tuned[0]
    else:  # the same tune, never stopped
        tune(_config(tmp_path / "whole", "T", sampler=sampler), echo=lambda _: None, arrays=arrays)
        reference = tmp_path / "whole" / "T"
    config = _config(tmp_path, "T", sampler=sampler)
    _tune_killed_at_value(config, 6, arrays, monkeypatch)  # sgd's four trials (lr each), then adam's first's lr
    (cut,) = _study(tmp_path / "T", "adam").trials
    assert cut.state.name == "RUNNING" and list(cut.params) == ["lr"] and "run" not in cut.user_attrs
    tune(config, echo=lambda _: None, arrays=arrays)
    _same_trials(tmp_path / "T", reference)
    assert _study(tmp_path / "T", "adam").trials[0].user_attrs["run"] == "adam/trial-000"


def test_a_cut_off_ask_of_tpe_past_its_random_start_is_completed_as_first_asked(tmp_path, arrays, monkeypatch):
    # TPE samples at random for its first 10 trials; here the 12th (its model's, multivariate, with the
    # constant liar) is cut off after its lr was written.
    base = small_config(tmp_path, "P", optimizers=("adam",), epochs=1, hidden=(16,))
    config = TuneConfig(base, trials=12, sampler="tpe", batch=11, final_seeds=1, defaults=False)
    tune(replace(config, base=replace(base, output_dir=str(tmp_path / "whole"))), echo=lambda _: None, arrays=arrays)
    _tune_killed_at_value(config, 11 * 4 + 2, arrays, monkeypatch)  # eleven trials of four values, the twelfth's lr
    cut = _study(tmp_path / "P", "adam").trials[-1]
    assert (cut.number, cut.state.name, list(cut.params)) == (11, "RUNNING", ["lr"])
    tune(config, echo=lambda _: None, arrays=arrays)
    got, want = _study(tmp_path / "P", "adam").trials, _study(tmp_path / "whole" / "P", "adam").trials
    assert [t.params for t in got] == [t.params for t in want] and len(got) == 12
    assert [t.value for t in got] == [t.value for t in want]


def test_a_tune_stopped_while_telling_tells_the_rest_and_asks_nothing_twice(tmp_path, tuned, arrays, monkeypatch):
    config = _config(tmp_path, "T")
    real, calls = optuna.Study.tell, []

    def stop_on_the_sixth(self, *args, **kw):
        calls.append(1)
        if len(calls) == 6:  # sgd's four and one of adam's told
            raise Stopped(signal.SIGKILL)
        return real(self, *args, **kw)

    monkeypatch.setattr(optuna.Study, "tell", stop_on_the_sixth)
    with pytest.raises(Stopped):
        tune(config, echo=lambda _: None, arrays=arrays)
    monkeypatch.setattr(optuna.Study, "tell", real)
    states = [t.state.name for t in _study(tmp_path / "T", "adam").trials]
    assert states == ["COMPLETE", "RUNNING", "RUNNING", "RUNNING"]
    tune(config, echo=lambda _: None, arrays=arrays)
    _same_trials(tmp_path / "T", tuned[0])


def test_a_moved_tune_continues_and_a_bad_storage_is_one_line(tmp_path, arrays):
    base = small_config(tmp_path, "M", optimizers=("sgd",), epochs=1, hidden=(16,))
    config = TuneConfig(base, trials=2, final_seeds=2)
    tune(config, echo=lambda _: None, arrays=arrays)
    (tmp_path / "M").rename(tmp_path / "moved")
    moved = replace(config, base=replace(base, name="moved"))
    tune(moved, echo=lambda _: None, arrays=arrays)  # everything done: nothing retrained, nothing refused
    assert _read(tmp_path / "moved" / "tune.json")["study_prefix"].startswith("M-")
    with pytest.raises(ConfigError, match="--storage 'bogus://x' is not a database URL"):
        TuneConfig(base, storage="bogus://x")
    with pytest.raises(ConfigError, match="--storage holds a password"):
        TuneConfig(base, storage="postgresql://me:secret@localhost/db")
    with pytest.raises(ConfigError, match="--storage holds a password"):
        TuneConfig(base, storage="postgresql://me@localhost/db?password=secret")
    with pytest.raises(ConfigError, match="names a SQLite file relative to where the command runs"):
        TuneConfig(base, storage="sqlite:///study.db")
    with pytest.raises(ConfigError, match="give --trials >= --eta"):
        TuneConfig(replace(base, epochs=3), prune="halving", trials=2)
    with pytest.raises(ConfigError, match="--set sgd.lr=0.1: sgd.lr belongs to its search space"):
        TuneConfig(replace(base, overrides=("sgd.lr=0.1",)))
    with pytest.raises(ConfigError, match="give --batch >= --eta"):
        TuneConfig(replace(base, epochs=3), prune="halving", batch=2)
    with pytest.raises(ConfigError, match="needs --epochs >= --eta"):
        TuneConfig(replace(base, epochs=2), prune="halving")
    with pytest.raises(ConfigError, match="and no --budget"):
        TuneConfig(replace(base, epochs=3, budget="images=1000"), prune="halving")


def test_a_resume_may_say_where_the_data_is_now(tuned, tmp_path):
    top, _ = tuned
    out = run_cli("tune", "--resume", str(top), "--data-dir", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "drop" not in out.stderr and "nowhere" in out.stderr


@pytest.mark.realdata
def test_the_command_line_can_do_the_work_of_an_optuna_objective(real_data, tmp_path):
    """``--no-defaults --eval-points 0`` (how benchmarks/bench_tune.py matches the usual way's work): no
    one-shot runs, and trials and final runs validated at epoch ends only."""
    args = ["--optimizers", "sgd,adam", "--trials", "2", "--epochs", "1", "--limit-train-batches", "20"]
    args += ["--hidden", "16", "--final-seeds", "2", "--no-defaults", "--eval-points", "0", "--no-progress"]
    out = run_cli("tune", *args, "--data-dir", str(real_data), "--output-dir", str(tmp_path), "--name", "t")
    assert out.returncode == 0, out.stderr[-2000:]
    top = tmp_path / "t"
    saved = _read(top / "tune.json")
    assert saved["defaults"] is False and saved["base"]["eval_points"] == 0
    runs = sorted(str(p.parent.relative_to(top)) for p in top.glob("*/runs/**/metrics.json"))
    assert len(runs) == 8 and not [r for r in runs if "defaults" in r], runs  # 2 x 2 trials, 2 x 2 final runs
    assert not list(top.glob("*/runs/**/anytime.json"))
    assert not (top / "round-1" / "report.html").exists() and (top / "final" / "report.html").exists()


def test_a_pruned_tune_killed_as_its_survivors_go_on_ends_with_an_unpruned_tunes_numbers(tmp_path, arrays, monkeypatch):
    """Stopped right after the survivors' checkpoints are put together from the rung's (before a step of
    theirs), then continued: each survivor's value equals the same trial's in a tune without pruning."""
    from fmnist_pl.engine import carry as carry_module

    base = small_config(tmp_path, "P", optimizers=("sgd", "adam"), epochs=2, hidden=(16,))
    real = carry_module.carry

    def stop_after_carrying(*args, **kw):
        given = real(*args, **kw)
        assert given  # the survivors' groups got their checkpoints
        raise Stopped(signal.SIGKILL)

    monkeypatch.setattr(carry_module, "carry", stop_after_carrying)
    config = TuneConfig(base, trials=4, prune="halving", eta=2, final_seeds=2)
    with pytest.raises((Stopped, Interrupted)):
        tune(config, echo=lambda _: None, arrays=arrays)
    monkeypatch.setattr(carry_module, "carry", real)
    tune(config, echo=lambda _: None, arrays=arrays)
    tune(TuneConfig(replace(base, name="U"), trials=4, final_seeds=2), echo=lambda _: None, arrays=arrays)
    pruned, whole = _read(tmp_path / "P" / "tuning.json"), _read(tmp_path / "U" / "tuning.json")
    for name in ("sgd", "adam"):
        unpruned = {t["run"]: t for t in whole["methods"][name]["trials"]}
        survivors = [t for t in pruned["methods"][name]["trials"] if t["status"] == "complete"]
        assert len(survivors) == 2
        for t in survivors:
            assert t["params"] == unpruned[t["run"]]["params"]
            assert t["value"] == unpruned[t["run"]]["value"]


def test_a_trials_curve_in_optuna_has_its_whole_epochs_only(tmp_path, arrays, monkeypatch):
    """Under a budget a run's last epoch may be partial (700 images: epoch 1 whole, then 200 of the
    second epoch's 500): Optuna's step 2 would claim an epoch the trial did not train. TensorBoard logs
    that part epoch, so no curve is followed live there (a study cannot take a value back)."""
    followed = []

    class Recorded(LiveCurves):
        def __init__(self, folders, trials, *args):
            followed.append(dict(trials))
            super().__init__(folders, trials, 0.001)

    monkeypatch.setattr(tune_module, "LiveCurves", Recorded)
    base = small_config(tmp_path, "B", optimizers=("sgd",), epochs=3, hidden=(16,), budget="images=700")
    tune(TuneConfig(base, trials=2, final_seeds=2), echo=lambda _: None, arrays=arrays)
    assert followed == [{}]
    for t in _study(tmp_path / "B", "sgd").trials:
        history = _read(tmp_path / "B" / "round-1" / "runs" / t.user_attrs["run"] / "history.json")
        assert len(history) == 2 and history[-1]["fraction"] < 1  # it stopped inside epoch 2
        assert t.intermediate_values == {1: history[0]["val_acc"]}
