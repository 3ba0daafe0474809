"""Training in worker processes of this machine (fmnist_pl.execution.pool): same numbers, same files,
errors and dead workers answered in the driver, and the command line's choice of workers."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from fmnist_pl.config import CompareConfig, ConfigError
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.errors import GroupFailed
from fmnist_pl.execution import pool as pool_module
from fmnist_pl.execution.pool import TrainingPool, check_workers, default_workers
from fmnist_pl.runtime.forkserver import _children, fork_server_pid, stop_fork_server
from fmnist_pl.store import ResultsError
from fmnist_pl.study.compare import compare
from tests.conftest import cli_env, history_rows, small_config

FOUR = ("sgd", "momentum", "rmsprop", "adam")


def _config(tmp_path, name, **kw):
    return small_config(tmp_path, name, **({"optimizers": FOUR} | kw))


def _history(folder, run):
    return history_rows(folder, run)


@pytest.mark.parametrize(
    "cores, kw, expected",
    [
        (2, {}, 2),
        (16, {}, 4),
        (16, {"seeds": 3}, 12),
        (1, {}, 1),
        (8, {"optimizers": ("adam",)}, 1),
        (2, {"separate": True}, 1),
        (2, {"time_budget": 5.0}, 4),  # a seconds budget: a process for each run, taking turns
        (2, {"time_budget": 5.0, "seeds": 3}, 8),  # at most TURN_TAKERS
        (2, {"budget": "images=1000"}, 2),
        (2, {"accelerator": "gpu"}, 1),
    ],
)
def test_default_workers_are_one_per_core_and_at_most_one_per_run(monkeypatch, cores, kw, expected):
    monkeypatch.setattr(pool_module, "usable_cores", lambda: cores)
    monkeypatch.setattr(pool_module, "nvidia_gpu_present", lambda: False)
    assert default_workers(CompareConfig(**kw)) == expected


def test_auto_on_a_machine_with_a_gpu_trains_in_one_process(monkeypatch):
    monkeypatch.setattr(pool_module, "usable_cores", lambda: 16)
    monkeypatch.setattr(pool_module, "nvidia_gpu_present", lambda: True)
    assert default_workers(CompareConfig()) == 1
    assert default_workers(CompareConfig(accelerator="cpu")) == 4  # asked for the CPU: its cores


@pytest.mark.parametrize(
    "workers, kw, ray, message",
    [
        (0, {}, None, "at least 1"),
        (2, {}, "local", "with --ray the cluster's CPUs decide"),
        (2, {"accelerator": "gpu"}, None, "every run trains in this process"),
        (2, {"separate": True}, None, "times each run alone"),
    ],
)
def test_workers_that_cannot_be_used_are_refused(workers, kw, ray, message):
    with pytest.raises(ConfigError, match=message):
        check_workers(workers, CompareConfig(**kw), ray)
    check_workers(1, CompareConfig(**kw), ray)  # one process is always possible


def test_a_pool_trains_the_same_numbers_and_files_as_this_process(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    here = compare(_config(tmp_path, "here"), arrays=arrays, echo=lambda _: None)
    lines: list[str] = []
    with TrainingPool(2) as pool:
        pooled = compare(_config(tmp_path, "pooled"), arrays=arrays, echo=lines.append, backend=pool)
    assert "training 2 groups in 2 processes at once, 1 thread each" in lines
    assert any(line.startswith("group 2 of 2 done (momentum, adam) in process") for line in lines)
    groups = json.loads((pooled / "checkpoints/groups.json").read_text())["groups"]
    assert groups == [["sgd", "rmsprop"], ["momentum", "adam"]]  # every other optimizer in each
    assert json.loads((pooled / "config.json").read_text())["environment"]["training_processes"] == 2
    for run in FOUR:
        assert _history(pooled, run) == _history(here, run)
        a = json.loads((here / "runs" / run / "predictions.json").read_text())
        b = json.loads((pooled / "runs" / run / "predictions.json").read_text())
        assert a == b
        assert (pooled / "tensorboard" / run).is_dir()
    assert (pooled / "checkpoints/group-momentum/last.ckpt").is_file()
    assert 'id="missing"' not in (pooled / "report.html").read_text()


def test_an_error_in_a_worker_is_raised_here_as_it_was_raised_there(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    with TrainingPool(2) as pool:
        folder = compare(_config(tmp_path, "x", epochs=1), arrays=arrays, echo=lambda _: None, backend=pool)
    config = CompareConfig.from_dict(json.loads((folder / "config.json").read_text())["config"])
    ckpt = folder / "checkpoints/group-momentum/last.ckpt"
    for run in ("momentum", "adam"):  # the unit is unfinished again: --resume retrains it from its checkpoint
        (folder / "runs" / run / "metrics.json").unlink()
    # Loads as data but is not this compare's (no identity): found here, before any work is sent.
    torch.save({"epoch": 1}, ckpt)
    with TrainingPool(2) as pool, pytest.raises(ResultsError, match=f"{ckpt} was not written for this compare's runs"):
        compare(config, resume=True, arrays=arrays, echo=lambda _: None, backend=pool)
    # Not a checkpoint at all: found here, before any work is sent (one line, no progress bar).
    ckpt.write_bytes(b"not a checkpoint")
    with TrainingPool(2) as pool, pytest.raises(ResultsError, match=f"{ckpt} is not a valid checkpoint"):
        compare(config, resume=True, arrays=arrays, echo=lambda _: None, backend=pool)


def test_a_worker_that_dies_ends_the_compare_with_how_to_resume(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    config = _config(tmp_path, "killed", optimizers=("sgd", "adam"), epochs=200)
    ckpt = tmp_path / "killed/checkpoints/group-adam/last.ckpt"

    def kill_a_worker_after_its_first_epoch(pool: TrainingPool) -> None:
        deadline = time.time() + 120
        while not ckpt.exists() and time.time() < deadline:
            time.sleep(0.01)
        os.kill(max(pool.worker_pids()), 9)  # one of the two workers, SIGKILL

    with TrainingPool(2) as pool:
        killer = threading.Thread(target=kill_a_worker_after_its_first_epoch, args=(pool,))
        killer.start()
        with pytest.raises(GroupFailed, match=r"died .*continue with: fmnist-pl compare --resume .*killed"):
            compare(config, arrays=arrays, echo=lambda _: None, backend=pool)
        killer.join()
        assert pool.closed  # every worker was ended with it
    assert ckpt.is_file()  # the epochs it finished are kept for --resume


OWNER = """
import sys, time
from fmnist_pl.execution.pool import TrainingPool
if __name__ == "__main__":
    pool = TrainingPool(2)
    print(*pool.worker_pids(), flush=True)
    time.sleep(600)
"""


def test_workers_leave_when_their_owner_is_killed(tmp_path):
    """A kill -9 of the process that owns the pool ends its workers and their fork server: none is
    left running, and none keeps the owner's output pipes open (a caller reading them would wait)."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = {int(pid) for pid in proc.stdout.readline().split()}
    assert workers and proc.pid not in workers
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # returns once no process holds the pipes: the workers are gone
    deadline = time.time() + 10  # ended; allow their reaping (a zombie has ended)
    while any(_running(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]


def test_a_pool_closed_unused_ends_the_workers_its_fork_server_forked():
    """Bad input closes the pool at once, maybe while its fork server forks the workers: the server
    is stopped with every worker it forked, so none outlives this process to print a traceback
    (a worker unpickling semaphores that this process removes as it exits)."""
    pool = TrainingPool(2)
    try:
        workers = pool.worker_pids()  # waits until both are started
        server = fork_server_pid()
        assert len(workers) == 2 and server is not None
        assert sorted(_children(server)) == workers
        stop_fork_server()
        deadline = time.time() + 10
        while any(_running(pid) for pid in [server, *workers]) and time.time() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in [server, *workers] if _running(pid)]
    finally:
        pool.close()  # its workers are gone: closing still returns


def test_a_stopped_fork_server_is_dead_when_the_stop_returns_so_the_next_pool_starts_a_new_one(fake_data, tmp_path):
    """A server only signalled may have closed its socket but not yet ended: the stdlib's liveness
    check (waitpid) would still say "running", and the next pool's connection would be refused."""
    arrays = load_arrays(fake_data, counts=None)
    pool = TrainingPool(1)
    try:
        pool.worker_pids()
        server = fork_server_pid()
        assert server is not None
        stop_fork_server()
        assert not _running(server)  # ended, not only signalled
    finally:
        pool.close()
    with TrainingPool(1) as pool:  # at once
        pool.worker_pids()  # started, from a new server
        assert fork_server_pid() != server
        compare(
            _config(tmp_path, "next", optimizers=("sgd",), epochs=1), arrays=arrays, echo=lambda _: None, backend=pool
        )


def _running(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_start_with_the_engine_frozen_and_the_collector_on():
    """The fork server imports the engine with the garbage collector paused (the start's critical
    path), then freezes what it imported: a worker must find those objects frozen - out of its
    collections - and the collector itself running again, or training's reference cycles would
    pile up for a whole compare."""
    import gc

    with TrainingPool(1) as pool:
        enabled = pool.run_in_worker(gc.isenabled).result(timeout=120)
        frozen = pool.run_in_worker(gc.get_freeze_count).result(timeout=120)
    assert enabled
    assert frozen > 100_000  # torch and Lightning's objects (~650,000 on CPython 3.11)


def test_runs_of_a_seconds_budget_take_turns_and_their_seconds_leave_the_waits_out(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    config = _config(tmp_path, "turns", optimizers=("sgd", "adam"), epochs=1000, budget="seconds=1.5", eval_points=4)
    lines: list[str] = []
    began = time.perf_counter()
    with TrainingPool(2) as pool:
        folder = compare(config, arrays=arrays, echo=lines.append, backend=pool)
    elapsed = time.perf_counter() - began
    assert any("in 2 processes taking turns of 0.5 s, one training at a time" in line for line in lines)
    for run in ("sgd", "adam"):
        metrics = json.loads((folder / "runs" / run / "metrics.json").read_text())
        spent = metrics["spent"]
        assert metrics["stopped_by"] == "seconds" and spent["seconds"] >= 1.5
        # Each waited while the other trained (3 s of budgets in 0.5 s turns), and its own wall
        # time leaves that out: the two together fit in the compare's time.
        assert spent["waited"] > 0.4
        assert metrics["timing"]["fit_seconds"] + spent["waited"] <= elapsed
    html = (folder / "report.html").read_text()
    assert "the runs took turns in short slices" in html


CHECK_IN_A_WORKER = """
import sys
from fmnist_pl.config import CompareConfig
from fmnist_pl.execution.pool import TrainingPool
from fmnist_pl.optim.registry import OptimizerError
from fmnist_pl.plan import plan

if __name__ == "__main__":
    with TrainingPool(1) as pool:
        def runs(*overrides):
            return plan(CompareConfig(optimizers=("sgd", "adam"), overrides=overrides))
        pool.check(runs("adam.lr=0.003", "sgd.momentum=0.5"), CompareConfig())  # waits for the workers
        try:
            pool.check(runs("adam.betas=(2,3)"), CompareConfig())
        except OptimizerError as exc:
            print("REFUSED", exc)
    print("DYNAMO HERE", "torch._dynamo" in sys.modules)
"""


def test_a_pools_check_builds_the_optimizers_in_its_worker_not_here():
    """Hyperparameters a class rejects are refused before anything is written, and the building
    happens in a worker: the first optimizer a process builds imports torch._dynamo, a second of a
    tune's start and of the time between its rounds that this process, which trains nothing, need
    not spend."""
    done = subprocess.run(
        [sys.executable, "-c", CHECK_IN_A_WORKER], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED adam (Adam) rejects its hyperparameters: Invalid beta parameter at index 0" in done.stdout
    assert "DYNAMO HERE False" in done.stdout
