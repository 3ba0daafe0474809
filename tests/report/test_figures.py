"""The report's figures drawn by worker processes are the figures drawn here."""

import os
import signal

from fmnist_pl.report.figures import Drawer, FigureJob, draw, draw_all


def _jobs() -> list[FigureJob]:
    history = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 0.5 / e,
            "train_acc": 0.8 + e / 100,
            "val_acc": 0.79 + e / 100,
            "seconds": 1.5,
        }
        for e in (1, 2, 3)
    ]
    runs = [{"setting": name, "history": history} for name in ("sgd", "adam")]
    return [FigureJob("overlay", (runs, "val_acc", "validation accuracy", axis)) for axis in ("epoch", "seconds")] + [
        FigureJob("learning_curves", (history,), {"title": f"run {i}"}) for i in range(4)
    ]


def test_workers_draw_the_same_figures_as_this_process():
    jobs = _jobs()
    here = [draw(job) for job in jobs]
    assert all(uri.startswith("data:image/png;base64,") for uri in here) and len(set(here)) == len(jobs)
    with Drawer(workers=2) as drawer:
        pids = set(drawer.worker_pids())
        assert len(pids) == 2 and os.getpid() not in pids  # separate processes
        assert drawer.submit(jobs)() == here  # in order, byte for byte
    assert draw_all(jobs)() == here  # no drawer: drawn here when collected


def test_a_lost_worker_or_ctrl_c_does_not_lose_a_figure():
    jobs = _jobs()
    here = [draw(job) for job in jobs]
    with Drawer(workers=1) as drawer:
        (pid,) = drawer.worker_pids()
        os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the whole process group: a worker ignores it
        assert drawer.submit(jobs)() == here
        os.kill(pid, signal.SIGKILL)  # a worker killed: the pool is broken, this process draws them all
        assert drawer.submit(jobs)() == here
    closed = Drawer(workers=1)
    closed.close()
    assert closed.submit(jobs)() == here


def test_a_worker_leaves_when_its_parent_is_killed(tmp_path):
    """kill -9 of a compare must not leave its figure worker behind (holding the caller's pipes)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "import os, sys; from fmnist_pl.report.figures import Drawer; d = Drawer(workers=1); "
        "print(*d.worker_pids(), flush=True); os.kill(os.getpid(), 9)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    worker = int(proc.stdout.split()[0])  # run() returned: nothing kept the output pipes open
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]


def test_a_big_grid_overlay_has_one_legend_entry_per_optimizer():
    """A 2-optimizer x 8-rate grid (16 settings > MANY_SETTINGS): a thin line per setting in its
    optimizer's colour and a two-entry legend, not sixteen entries and bands."""
    from fmnist_pl.report import plots

    history = [{"epoch": e, "val_acc": 0.7 + e / 100} for e in (1, 2)]
    runs = [
        {"setting": f"{opt}/lr-{k}", "family": opt, "history": history} for opt in ("sgd", "adam") for k in range(8)
    ]
    fig = plots.overlay(runs, "val_acc", "validation accuracy")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sgd (8 settings)", "adam (8 settings)"]
    assert len(ax.lines) == 16 and not ax.collections  # a line per setting, no min-max bands
    assert {line.get_color() for line in ax.lines[:8]} == {"C0"} and {line.get_color() for line in ax.lines[8:]} == {
        "C1"
    }
    few = plots.overlay(runs[:3], "val_acc", "validation accuracy").axes[0]
    assert len(few.get_legend().get_texts()) == 3  # a small compare keeps a legend entry per setting


def test_a_runs_panel_has_losses_and_accuracies_on_separate_axes():
    """A loss of 1.71 once ran off a shared [0, 1] axis; few epochs get a marker each."""
    from fmnist_pl.report import plots

    def history(epochs):
        return [
            {"epoch": e, "train_loss": 1.71 / e, "val_loss": 0.9, "train_acc": 0.6 + e / 100, "val_acc": 0.58}
            for e in range(1, epochs + 1)
        ]

    fig = plots.learning_curves(history(3), title="adam")
    loss, acc = fig.axes
    assert (loss.get_ylabel(), acc.get_ylabel()) == ("loss", "accuracy")
    assert [line.get_label() for line in loss.lines] == ["train loss", "val loss"]
    assert [line.get_label() for line in acc.lines] == ["train acc", "val acc"]
    assert loss.get_ylim()[0] == 0 and loss.get_ylim()[1] >= 1.71  # the whole loss curve in view
    assert acc.get_ylim()[1] <= 1.0
    assert all(line.get_marker() == "o" for ax in fig.axes for line in ax.lines)
    many = plots.learning_curves(history(12))
    assert all(line.get_marker() in (None, "None", "") for ax in many.axes for line in ax.lines)


def test_log_axes_print_plain_tick_labels():
    """Mathtext is off (run names are text), so matplotlib's log labels printed "$\\mathdefault{10^{-3}}$"."""
    from fmnist_pl.report import plots

    def labels(fig):
        fig.canvas.draw()
        ax = fig.axes[0]
        return [t.get_text() for t in [*ax.get_xticklabels(), *ax.get_xticklabels(minor=True)] if t.get_text()]

    sweep = {
        "sgd": {"lrs": [1e-4, 1e-3, 1e-2, 1e-1], "val_acc": [0.5, 0.7, 0.8, 0.6], "chosen": 1e-2, "diverged": []},
        "adam": {"lrs": [1e-4, 1e-3], "val_acc": [0.8, 0.7], "chosen": 1e-4, "diverged": [1e-2]},
    }
    wide = labels(plots.lr_sweep(sweep))
    assert "10⁻³" in wide and not any("mathdefault" in t or "$" in t for t in wide)
    narrow = {"sgd": {"lrs": [2e-3, 3e-3, 5e-3], "val_acc": [0.5, 0.7, 0.8], "chosen": 5e-3, "diverged": []}}
    within = labels(plots.lr_sweep(narrow))  # less than a decade: matplotlib labels minor ticks too
    assert "2×10⁻³" in within and not any("mathdefault" in t for t in within)
    finder = {"adam": {"method": "lr_find", "finder_lrs": [1e-6, 1e-4, 1e-2], "finder_losses": [2.3, 1.0, 5.0]}}
    assert not any("mathdefault" in t for t in labels(plots.lr_sweep(finder)))
    history = [
        {"epoch": e, "val_acc": 0.7, "seconds": 1.0, "images": e * 1000, "evaluations": e * 10**6} for e in (1, 2)
    ]
    evaluations = labels(plots.overlay([{"setting": "cma", "history": history}], "val_acc", "acc", "evaluations"))
    assert evaluations and not any("mathdefault" in t for t in evaluations)
