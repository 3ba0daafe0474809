"""Verdicts one can publish: the ranking is the tests' (never a rounding), every figure has its 95 %
interval, one seed says it compares networks, and the Setup lists what changes the protocol."""

import re
from pathlib import Path

from markupsafe import escape

from fmnist_pl import report, store
from fmnist_pl.analysis.summary import write_summary
from fmnist_pl.cli import print_ranking
from tests.report.test_report import _metrics

IMAGES = 10_000  # the test images every run is scored on (the metrics' support)
ONE_SEED = "one seed: these tests compare two trained networks, not two optimizers"


def write_folder(
    folder: Path, accuracies: dict[str, list[float]], config: dict | None = None, per_epoch: int | None = None
) -> Path:
    """A compare folder whose setting ``name`` got ``accuracies[name][k]`` with seed 42 + k: right on the
    first ``round(accuracy x IMAGES)`` test images (so the paired tests see exactly those differences).
    ``per_epoch``: the training images each epoch saw, recorded in the history (None: not recorded)."""
    seeds = max(len(a) for a in accuracies.values())
    runs = [
        {
            "run": f"{name}/seed-{42 + k}" if seeds > 1 else name,
            "setting": name,
            "variant": name,
            "optimizer": {"name": name, "class": "SGD", "hparams": {"lr": 0.01}},
            "seed": 42 + k,
            "hidden": [300, 100],
        }
        for k in range(seeds)
        for name in accuracies
    ]
    store.write_json(
        folder / "config.json",
        {
            "format": store.FORMAT_VERSION,
            "config": {"epochs": 3, "batch_size": 32, "seeds": seeds, "seed": 42, "target": 0.88} | (config or {}),
            "runs": runs,
            "split": {"train": 55000, "val": 5000, "test": IMAGES},
            "model": {
                "hidden": [300, 100],
                "parameters": 266610,
                "summary": [{"layer": "Dense", "output": "(None, 300)", "params": 235500}],
            },
            "environment": {"torch": "x"},
            "created": "now",
        },
    )
    targets = [i % 10 for i in range(IMAGES)]
    for run in runs:
        k = run["seed"] - 42
        if k >= len(accuracies[run["setting"]]):
            continue  # a missing run
        acc = accuracies[run["setting"]][k]
        d = folder / "runs" / run["run"]
        history = [
            {
                "epoch": e,
                "train_loss": 1.71 / e,
                "train_acc": acc,
                "val_loss": 0.4 + (e - 2) ** 2 / 10,
                "val_acc": acc,
                "seconds": 2.0,
                **({"images": e * per_epoch, "evaluations": e * per_epoch} if per_epoch else {}),
            }
            for e in (1, 2, 3)
        ]
        store.write_files(store.history_files(d, history))
        right = round(acc * IMAGES)
        preds = [t if j < right else (t + 1) % 10 for j, t in enumerate(targets)]
        store.write_json(d / "predictions.json", {"targets": targets, "last": preds, "best": preds})
        metrics = {
            "status": "ok",
            "epochs": 3,
            "best_epoch": 2,
            "test": {"last": _metrics(acc), "best": _metrics(acc)},
            "timing": {"seconds_per_epoch": 2.0, "fit_seconds": 6.0},
            "optimizer_state_bytes": 0,
        }
        store.write_json(d / "metrics.json", run | metrics)
    store.write_json(
        folder / "samples.json",
        {"train_images": [[0] * 784] * 10, "train_labels": list(range(10)), "test_images": [[0] * 784] * 10},
    )
    return folder


def section(html: str, name: str) -> str:
    """The text of one section of the report, tags dropped."""
    part = html.split(f'<section id="{name}">')[1].split("</section>")[0]
    return " ".join(re.sub(r"<[^>]+>", " ", part).split())


def test_two_seeds_split_is_not_distinguishable_and_the_ranking_says_so(tmp_path, capsys):
    # adam wins seed 42, momentum seed 43: not distinguishable. sgd is 0.15 behind adam in both seeds: different.
    folder = write_folder(tmp_path / "cmp", {"adam": [0.87, 0.85], "momentum": [0.85, 0.86], "sgd": [0.72, 0.70]})
    summary = write_summary(folder)
    ranked = summary["rankings"]["accuracy"]
    assert ranked["text"] == "adam ~ momentum > sgd" and ranked["tested"]
    adam = ranked["entries"][0]
    assert adam["interval"] == "95% t-interval of the mean over 2 seeds" and adam["low"] < 0.86 < adam["high"]
    pairs = {(p["a"], p["b"]): p for p in summary["significance"]["pairs"]}
    assert pairs[("adam", "momentum")]["verdict"] == "not distinguishable"
    assert pairs[("adam", "sgd")]["verdict"] == "different"

    html = report.render(folder).read_text()
    ranking = section(html, "ranking")
    assert "adam ~ momentum &gt; sgd" in ranking and "=" not in ranking.split("never a rounding")[1]
    low, high = adam["low"], adam["high"]
    assert f"adam 2 0.8600 [{low:.4f}, {high:.4f}]" in ranking  # mean and 95% interval side by side
    assert "95% t-interval of the mean over 2 seeds" in ranking
    verdicts = section(html, "significance")
    assert verdicts.startswith("Do the optimizers differ? Training runs paired over 2 seeds")
    assert "adam vs momentum +0.0050" in verdicts and "not distinguishable" in verdicts
    assert "adam better in 1 of 2 seeds, worse in 1 (+0.0200, -0.0100)" in verdicts
    need = pairs[("adam", "momentum")]["seeds_for_power"]
    assert need > 2 and f"would need about {need} seeds" in verdicts
    assert ONE_SEED not in html

    print_ranking(folder)
    out = capsys.readouterr().out
    assert "ranking by accuracy: adam ~ momentum > sgd" in out
    assert f"adam      accuracy 0.8600 [{low:.4f}, {high:.4f}]" in out
    assert "adam vs momentum: +0.0050" in out and ": not distinguishable" in out
    assert "adam better in 1 of 2 seeds" in out and f"about {need} seeds" in out
    assert ONE_SEED not in out


def test_one_seed_a_rounding_tie_is_tested_and_the_caveat_shown(tmp_path, capsys):
    """0.8251 vs 0.8249 (2 of 10,000 images): "~" from McNemar's test, not ">" from the order."""
    folder = write_folder(tmp_path / "one", {"a": [0.8249], "b": [0.8251]})
    summary = write_summary(folder)
    ranked = summary["rankings"]["accuracy"]
    assert ranked["text"] == "b ~ a" and summary["significance"]["caveat"].startswith(ONE_SEED)
    b = ranked["entries"][0]
    assert b["interval"] == "95% Wilson interval over 10,000 test images" and b["low"] < 0.8251 < b["high"]
    html = report.render(folder).read_text()
    assert "b ~ a" in section(html, "ranking") and ONE_SEED in section(html, "ranking")
    verdicts = section(html, "significance")
    assert verdicts.startswith("Do these trained networks differ? One seed") and ONE_SEED in verdicts
    assert "McNemar exact (2 images only b got right, 0 only a)" in verdicts and "not distinguishable" in verdicts
    print_ranking(folder)
    out = capsys.readouterr().out
    assert "ranking by accuracy: b ~ a" in out and ONE_SEED in out
    assert not re.search(r"\w = \w", out)  # no rounding tie anywhere


def test_unequal_seeds_are_not_tested_and_the_report_says_why(tmp_path, capsys):
    folder = write_folder(tmp_path / "part", {"adam": [0.87, 0.85], "sgd": [0.72]})  # sgd's seed 43 is missing
    summary = write_summary(folder)
    ranked = summary["rankings"]["accuracy"]
    assert summary["significance"] is None and not ranked["tested"] and ranked["text"] == "adam, sgd"
    assert ranked["untested"].startswith("the settings have different seeds")
    ranking = section(report.render(folder).read_text(), "ranking")
    assert "not tested (the settings have different seeds" in ranking and "adam, sgd" in ranking
    assert "&gt;" not in ranking and " ~ " not in ranking  # no verdict claimed
    print_ranking(folder)
    assert "not tested (the settings have different seeds" in capsys.readouterr().out


def test_setup_lists_the_protocol_and_the_environment(tmp_path):
    from fmnist_pl.study.setup import environment

    env = environment("cpu")
    assert env["fmnist-pl"] and env["evotorch"] and env["ray"]  # a version, or "not installed" for Ray
    assert isinstance(env["command"], str) and env["command"]
    limited = {"limit_train_batches": 100, "time_budget": 30.0, "val_size": 5000}
    folder = write_folder(tmp_path / "seen", {"adam": [0.87], "sgd": [0.8]}, limited, per_epoch=3200)
    config = store.read_json(folder / "config.json")
    store.write_json(folder / "config.json", config | {"environment": env})
    setup = section(report.render(folder).read_text(), "setup")
    assert "images seen per epoch 3,200, from the runs" in setup
    assert "--limit-train-batches 100 batches an epoch" in setup and "--time-budget 30 s of training per run" in setup
    assert "seeds 1 (first seed 42" in setup and "batch size 32" in setup and "validation images 5,000" in setup
    assert f"fmnist-pl {env['fmnist-pl']}" in setup and f"ray {env['ray']}" in setup
    assert f"evotorch {env['evotorch']}" in setup and f"command {escape(env['command'])}" in setup
    # Without the runs' totals: what the options allow.
    plain = write_folder(tmp_path / "computed", {"adam": [0.87], "sgd": [0.8]}, limited)
    setup = section(report.render(plain).read_text(), "setup")
    assert "images seen per epoch 3,200 (--limit-train-batches 100 x --batch-size 32)" in setup
