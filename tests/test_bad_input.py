"""Nothing half-made, nothing mixed: input that used to pass the checks and fail later, files we read
back, two writers on one folder. Through the real CLI: exit code, one line, the folder's state."""

import json
import os
import pickle
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, start_cli
from tests.report.test_report import make_results


def one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "adam.betas=(2,3)"], "adam (Adam) rejects its hyperparameters: Invalid beta parameter at index 0"),
        (
            ["--set", "sgd.nesterov=true"],
            "sgd (SGD) rejects its hyperparameters: Nesterov momentum requires a momentum",
        ),
        (["--seed", "99999999999999999999"], "--seed must be a whole number from 0 to"),
        (["--seed", "-1"], "--seed must be a whole number from 0 to"),
        (["--hidden", "100000,100000"], "one run of hidden 100000,100000 at batch size 32 alone needs about 420.7 GiB"),
        (["--name", "x" * 300], "--name is 300 bytes long; a folder name has at most 255"),
        (["--optimizers", "sgd", "--lrs-typo"], "No such option"),
        # Gradient-free methods: names, types and ranges of their hyperparameters, and rules across them.
        (
            ["--optimizers", "snes", "--set", "snes.popsize=2.5"],
            "bad value 2.5 for snes.popsize: must be a whole number >= 2",
        ),
        (["--optimizers", "pgpe", "--set", "pgpe.popsize=51"], "pgpe.popsize: must be an even whole number >= 2"),
        (["--optimizers", "ga", "--set", "ga.mutation_probability=1.5"], "must be a number > 0 and <= 1"),
        (["--optimizers", "cmaes", "--set", "cmaes.separable=false"], "bad value False for cmaes.separable"),
        (["--optimizers", "snes", "--set", "snes.fitness=f1"], "must be one of cross_entropy, accuracy"),
        (["--optimizers", "snes", "--set", "snes.lr=0.1"], "unknown hyperparameter snes.lr; snes has: popsize"),
        (["--optimizers", "cem", "--set", "cem.parenthood_ratio=0.01"], "leaves 0 elite(s); CEM needs at least 2"),
        (["--optimizers", "snes", "--set", "snes.popsize=10000000"], "use a smaller --set snes.popsize"),
        (["--optimizers", "adam,snes", "--time-budget", "0"], "--time-budget must be a number of seconds > 0"),
        # Limits a library would choke on, checked at parse time, each naming the option that causes it.
        (["--time-budget", "1e30"], "--time-budget 1e+30 s is more than a year"),
        (["--time-budget", "1e14"], "--time-budget 1e+14 s is more than a year"),
        (["--batch-size", "100000000"], "--batch-size 100,000,000 is more than the 55,000 training images"),
        (["--optimizers", "snes", "--set", "snes.batch_size=1000000"], "use a smaller --set snes.batch_size"),
        (["--data-dir", "d" * 300], "--data-dir has a folder name of 300 bytes"),
        (["--ray", "local:100000"], "use local:N with N at most"),
        (
            ["--hidden", "300,100", "--hidden", ",".join(["1"] * 130)],
            "the run names make a file name of 26",
        ),
    ],
)
def test_input_that_used_to_fail_late_is_refused_before_anything_is_written(tmp_path, args, message):
    proc = run_cli("compare", *args, "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    one_line_error(proc, message)
    assert not (tmp_path / "out").exists()


def test_a_too_long_output_dir_is_one_line(tmp_path):
    proc = run_cli("compare", "--output-dir", str(tmp_path / ("o" * 300)), cwd=tmp_path)
    one_line_error(proc, "--output-dir has a folder name of 300 bytes")


@pytest.mark.parametrize("folder", [".", ".."])
def test_resume_of_dot_names_the_folder_it_means(tmp_path, folder):
    (tmp_path / "here").mkdir()
    proc = run_cli("compare", "--resume", folder, cwd=tmp_path / "here")
    meant = (tmp_path / "here") if folder == "." else tmp_path
    one_line_error(proc, f"{meant} holds no fmnist-pl results")


def test_the_lr_finder_of_a_gradient_free_method_is_refused(tmp_path):
    """A grid sweeps a search's stdev_init (tests/study/test_sweep.py); the lr finder has nothing to find."""
    proc = run_cli(
        "sweep", "--optimizers", "adam,snes", "--lr-find", "--output-dir", str(tmp_path / "out"), cwd=tmp_path
    )
    one_line_error(proc, "sweep --lr-find tunes gradient optimizers' learning rates; snes is gradient-free")
    assert not (tmp_path / "out").exists()


def test_a_grid_too_large_is_refused_at_once(tmp_path):
    started = time.time()
    proc = run_cli("sweep", "--lrs", "1e-4:1:100000000", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    one_line_error(proc, "--lrs asks for 100,000,000 learning rates; at most 1,000")
    assert time.time() - started < 30 and not (tmp_path / "out").exists()


def test_an_accelerator_that_is_not_there(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = run_cli("compare", "--accelerator", "gpu", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    one_line_error(proc, "--accelerator gpu, but torch")
    assert not (tmp_path / "out").exists()


def test_a_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    proc = run_cli("compare", "--data-dir", str(tmp_path / "f"), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    one_line_error(proc, "is a file, not a folder")


# ------------------------------------------------------------------ files we read back
def _edit(folder: Path, name: str, change) -> None:
    path = folder / name
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


@pytest.mark.parametrize(
    "file, change, message",
    [
        ("config.json", lambda d: [], "config.json: (the whole file): Input should be a valid dictionary"),
        ("config.json", lambda d: None, "config.json: (the whole file): Input should be a valid dictionary"),
        ("config.json", lambda d: {}, "config.json: format: Field required"),
        (
            "config.json",
            lambda d: d | {"config": d["config"] | {"hidden": "abc"}},
            "config.json: config.hidden: Input should be a valid tuple (found 'abc')",
        ),
        ("config.json", lambda d: d | {"config": d["config"] | {"epochs": 0}}, "--epochs must be a whole number >= 1"),
        (
            "config.json",
            lambda d: d | {"runs": [d["runs"][0] | {"run": "../../../other/runs/adam"}]},
            "config.json: runs.0.run: Value error, run name '../../../other/runs/adam' is not a plain relative path",
        ),
        (
            "runs/sgd/metrics.json",
            lambda d: d | {"test": d["test"] | {"last": d["test"]["last"] | {"accuracy": "high"}}},
            "runs/sgd/metrics.json: test.last.accuracy: Input should be a valid number",
        ),
        (
            "runs/sgd/metrics.json",
            lambda d: d | {"test": "oops"},
            "runs/sgd/metrics.json: test: Input should be a valid dictionary",
        ),
        ("runs/sgd/history.json", lambda d: [{"epoch": 1}], "runs/sgd/history.json: 0.train_loss: Field required"),
    ],
)
def test_results_of_the_wrong_shape_are_one_line_naming_file_and_field(tmp_path, file, change, message):
    folder = make_results(tmp_path / "cmp", ["sgd", "adam"])
    _edit(folder, file, change)
    for args in (["report", str(folder)], ["compare", "--resume", str(folder)]):
        proc = run_cli(*args, cwd=tmp_path)
        one_line_error(proc, message)
    assert not (folder / "report.html").exists()


def test_a_run_folder_outside_the_compare_is_never_read(tmp_path):
    outside = make_results(tmp_path / "other", ["adam"])
    folder = make_results(tmp_path / "cmp", ["sgd"])
    (folder / "runs" / "link").symlink_to(outside / "runs" / "adam")
    _edit(folder, "config.json", lambda d: d | {"runs": d["runs"] + [d["runs"][0] | {"run": "link"}]})
    proc = run_cli("report", str(folder), cwd=tmp_path)
    one_line_error(proc, "resolves outside")


def test_resume_refuses_options_that_conflict_with_the_saved_settings(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd"])  # saved: 3 epochs
    proc = run_cli("compare", "--resume", str(folder), "--epochs", "1", cwd=tmp_path)
    one_line_error(proc, "--epochs 1 (saved: 3) conflict: drop them")


# ------------------------------------------------------------------ real data: checkpoints, writers, stops
REAL = [
    "--epochs",
    "2",
    "--limit-train-batches",
    "40",
    "--optimizers",
    "sgd,adam",
    "--no-progress",
    "--accelerator",
    "cpu",
]
# Epoch ends only: 20 validations of 5,000 images would outweigh these 80 batches many times.
REAL_FAST = [*REAL, "--eval-points", "0"]


@pytest.fixture(scope="module")
def finished(real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad")
    proc = run_cli("compare", *REAL_FAST, "--output-dir", str(out), "--name", "done", cwd=out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "done"


@pytest.mark.realdata
@pytest.mark.parametrize(
    "content", [b"garbage bytes", pickle.dumps({"a": Path("x")})], ids=["garbage", "refused-pickle"]
)
def test_a_corrupt_checkpoint_is_one_line_and_deleting_it_restarts_the_group(finished, tmp_path, content):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(finished, folder)
    (folder / "runs/adam/metrics.json").unlink()  # its group is unfinished: resume loads its checkpoint
    groups = json.loads((folder / "checkpoints/groups.json").read_text())["groups"]
    head = next(g for g in groups if "adam" in g)[0]  # a group is named after its first run
    ckpt = folder / f"checkpoints/group-{head}/last.ckpt"
    ckpt.write_bytes(content)
    proc = run_cli("compare", "--resume", str(folder), cwd=tmp_path)
    one_line_error(proc, f"{ckpt} is not a valid checkpoint")
    assert "weights_only" not in proc.stderr and shlex.join(["rm", "--", str(ckpt)]) in proc.stderr
    ckpt.unlink()
    proc = run_cli("compare", "--resume", str(folder), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((folder / "runs/adam/history.json").read_text())
    first = json.loads((finished / "runs/adam/history.json").read_text())
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in first]  # restarted from scratch, same numbers


@pytest.mark.realdata
def test_two_compares_on_one_folder_one_writes_the_other_is_refused(real_data, tmp_path):
    # With 20 validations a run, the first is still writing when the second reaches the folder.
    args = [*REAL, "--output-dir", str(tmp_path), "--name", "same"]
    procs = [start_cli("compare", *args, "--seed", str(seed), cwd=tmp_path) for seed in (42, 7)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [o[1][-1500:] for o in outs]
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    lines = outs[loser][1].strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / 'same'} is being written by PID " in lines[0], outs[loser][1]
    seed = (42, 7)[winner]
    config = json.loads((tmp_path / "same/config.json").read_text())
    assert config["config"]["seed"] == seed
    for run in ("sgd", "adam"):
        assert json.loads((tmp_path / f"same/runs/{run}/metrics.json").read_text())["seed"] == seed


def _start(tmp_path: Path, name: str) -> subprocess.Popen:
    return start_cli("compare", *REAL_FAST, "--output-dir", str(tmp_path), "--name", name, cwd=tmp_path)


def _wait_until_caught(proc: subprocess.Popen, signum: int, deadline: float = 60) -> None:
    """Until ``proc`` has a handler for ``signum`` (the SigCgt mask in /proc/PID/status)."""
    end = time.time() + deadline
    while True:
        assert proc.poll() is None and time.time() < end
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signum - 1)):
            return
        time.sleep(0.002)


def _wait_for(proc: subprocess.Popen, path: Path, deadline: float = 300) -> None:
    end = time.time() + deadline
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end
        time.sleep(0.005)


@pytest.mark.realdata
@pytest.mark.parametrize("phase", ["importing", "setup written", "writing run files"])
def test_sigterm_at_any_phase_exits_143_with_one_line_and_resume_finishes(finished, tmp_path, phase):
    import signal

    proc = _start(tmp_path, "stop")
    folder = tmp_path / "stop"
    if phase == "importing":
        # As soon as the CLI's entry point catches SIGTERM (before it, Python's own start-up ends the
        # process the ordinary way), while the compare imports torch and Lightning.
        _wait_until_caught(proc, signal.SIGTERM)
    elif phase == "setup written":
        _wait_for(proc, folder / "config.json")
    else:
        _wait_for(proc, folder / "runs/sgd/history.json")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    if (folder / "config.json").exists():
        assert f"Continue with: fmnist-pl compare --resume {folder}" in lines[0]
        assert (folder / "report.html").exists()
        proc = run_cli("compare", "--resume", str(folder), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (folder / "samples.json").exists() and (folder / "summary.json").exists()
        for run in ("sgd", "adam"):
            got = json.loads((folder / f"runs/{run}/history.json").read_text())
            want = json.loads((finished / f"runs/{run}/history.json").read_text())
            assert [r["val_loss"] for r in got] == [r["val_loss"] for r in want]
    else:
        assert "interrupted before" in lines[0] and not folder.exists()


@pytest.mark.realdata
def test_a_full_disk_is_one_line_and_resume_finishes_once_there_is_space(finished, tmp_path, monkeypatch, capsys):
    """ENOSPC while a run's metrics.json is written (in-process, through the CLI's entry point, training
    in this process: `--workers 1`, so that the patched os.replace is the one that writes)."""
    import errno

    from fmnist_pl import cli

    real_replace = os.replace

    def disk_full(src, dst, *args, **kwargs):
        if str(dst).endswith("metrics.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    def main(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["fmnist-pl", *args])
        with pytest.raises(SystemExit) as exited:
            cli.main()
        return exited.value.code

    monkeypatch.setattr(os, "replace", disk_full)
    folder = tmp_path / "full"
    assert main("compare", *REAL_FAST, "--output-dir", str(tmp_path), "--name", "full", "--workers", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: no space left on the disk of" in err[0], err
    assert f"continue with: fmnist-pl compare --resume {folder}" in err[0]
    assert not list(folder.rglob("*.tmp")) and not list(folder.rglob("metrics.json"))  # nothing half-written
    monkeypatch.setattr(os, "replace", real_replace)
    assert main("compare", "--resume", str(folder)) == 0
    for run in ("sgd", "adam"):
        got = json.loads((folder / f"runs/{run}/metrics.json").read_text())
        want = json.loads((finished / f"runs/{run}/metrics.json").read_text())
        assert got["test"]["last"]["accuracy"] == want["test"]["last"]["accuracy"]


def test_a_too_long_fmnist_data_is_one_line(tmp_path):
    proc = run_cli("compare", cwd=tmp_path, env={"FMNIST_DATA": str(tmp_path / ("d" * 300))})
    one_line_error(proc, "(from FMNIST_DATA) cannot be used (File name too long)")
