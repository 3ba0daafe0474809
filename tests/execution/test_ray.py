"""``--ray``: a real two-node Ray cluster on this machine gives the same results as training here.

The cluster (``ray.cluster_utils.Cluster``: a head node and a second node, one CPU each, so two
units must land on both) is started once for the module and always shut down. The tests that
start Ray themselves (``local:N``) check that it stops with them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fmnist_pl.config import CompareConfig, ConfigError
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.errors import GroupFailed
from fmnist_pl.execution.cluster import parse_address
from fmnist_pl.study.compare import compare
from tests.conftest import make_dataset, run_cli

ray = pytest.importorskip("ray")

from fmnist_pl.execution import ray_backend  # noqa: E402 - needs ray


# ------------------------------------------------------------------ addresses (no cluster needed)
@pytest.mark.parametrize(
    "spec, address, cpus",
    [
        ("auto", "auto", None),
        ("local", "local", None),
        (f"local:{os.cpu_count()}", "local", os.cpu_count()),
        ("ray://head.example:10001", "ray://head.example:10001", None),
        ("10.0.0.5:6379", "10.0.0.5:6379", None),
        ("ray://[::1]:10001", "ray://[::1]:10001", None),
    ],
)
def test_ray_addresses_parse(spec, address, cpus):
    target = parse_address(spec)
    assert (target.address, target.local_cpus) == (address, cpus)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "local:0",
        "local:x",
        f"local:{(os.cpu_count() or 1) + 1}",
        "head.example",
        "http://head:8265",
        "h:99999",
        "ray://h",
    ],
)
def test_bad_ray_addresses_are_one_line_errors(spec):
    with pytest.raises(ConfigError, match="--ray") as info:
        parse_address(spec)
    assert "\n" not in str(info.value)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout)


def test_an_unreachable_cluster_fails_fast_with_one_line_and_writes_nothing(fake_data, tmp_path):
    import socket

    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for spec in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        began = time.monotonic()
        proc = _cli(
            "compare",
            "--epochs",
            "1",
            "--data-dir",
            str(fake_data),
            "--output-dir",
            str(tmp_path / "out"),
            "--ray",
            spec,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.count("\n") == 1 and f"cannot reach 127.0.0.1:{port}" in proc.stderr
        assert time.monotonic() - began < 20
    assert not (tmp_path / "out").exists()
    # Something that is not Ray listening there (a proxy, a web server): refused in seconds, too.
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = f"ray://127.0.0.1:{server.server_address[1]}"
        proc = _cli(
            "compare",
            "--epochs",
            "1",
            "--data-dir",
            str(fake_data),
            "--output-dir",
            str(tmp_path / "out"),
            "--ray",
            spec,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 2 and "accepts connections but no Ray answers there" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
    proc = _cli("compare", "--ray", "nonsense")
    assert proc.returncode == 2 and "is not a Ray address" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_task_removes_the_scratch_folders_of_dead_workers_only(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{ray_backend.SCRATCH_PREFIX}{gone.pid}-abc"
    live = tmp_path / f"{ray_backend.SCRATCH_PREFIX}{os.getpid()}-def"
    other = tmp_path / "fmnist-pl-cache"  # not a scratch folder
    for folder in (dead, live, other):
        (folder / "checkpoints").mkdir(parents=True)
    ray_backend._remove_dead_scratch()
    assert not dead.exists() and live.exists() and other.exists()


def test_without_ray_the_cli_never_imports_it():
    code = (
        "import sys; from typer.testing import CliRunner; from fmnist_pl.cli import app; "
        "CliRunner().invoke(app, ['compare', '--help']); CliRunner().invoke(app, ['sweep', '--help']); "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


# ------------------------------------------------------------------ a two-node cluster on this machine
@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    nodes = {"num_cpus": 1, "object_store_memory": 300 * 2**20}
    c = Cluster(initialize_head=True, head_node_args={**nodes, "include_dashboard": False})
    try:
        c.add_node(**nodes)
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Generated data big enough that an epoch takes a fraction of a second (a worker can die mid-group)."""
    return load_arrays(make_dataset(tmp_path_factory.mktemp("fmnist"), n_train=6_000, n_test=500), counts=None)


def _config(tmp_path: Path, name: str, **kw) -> CompareConfig:
    base = dict(
        optimizers=("sgd", "adam"),
        epochs=3,
        seeds=2,
        hidden=(64,),
        val_size=500,
        progress=False,
        output_dir=str(tmp_path),
        name=name,
    )
    return CompareConfig(**(base | kw))


def _numbers(folder: Path) -> dict[str, object]:
    """Everything a run computed, without its wall times."""
    out = {}
    for metrics in sorted((folder / "runs").rglob("metrics.json")):
        run = metrics.parent
        history = [
            {k: v for k, v in row.items() if k != "seconds"} for row in json.loads((run / "history.json").read_text())
        ]
        m = json.loads(metrics.read_text())
        out[str(run.relative_to(folder / "runs"))] = (
            history,
            m["test"],
            json.loads((run / "predictions.json").read_text()),
        )
    return out


def on_cluster(address: str, config: CompareConfig, **kwargs) -> Path:
    """``compare`` on the Ray cluster at ``address``, connected for this call only (as the CLI does)."""
    with ray_backend.RayCluster(address) as backend:
        return compare(config, backend=backend, **kwargs)


def _done_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("group ") and " done " in line]


def test_a_sweep_split_over_two_nodes_equals_the_same_sweep_here(cluster, data, tmp_path):
    here = compare(_config(tmp_path, "here", lrs=(0.01, 0.1)), arrays=data, echo=lambda _: None)
    lines: list[str] = []
    there = on_cluster(cluster.address, _config(tmp_path, "there", lrs=(0.01, 0.1)), arrays=data, echo=lines.append)
    done = _done_lines(lines)
    assert len(done) == 2, lines  # one unit per seed: the cluster has two one-CPU nodes
    assert len({line.split(" on node ")[1].split()[0] for line in done}) == 2, done  # both nodes trained one
    assert _numbers(there) == _numbers(here) and len(_numbers(here)) == 8
    # The same folder layout, report and TensorBoard runs as a local run.
    for rel in ("report.html", "summary.json", "config.json", "checkpoints/groups.json"):
        assert (there / rel).exists(), rel
    assert sorted(p.parent.relative_to(there) for p in (there / "tensorboard").rglob("events.out.*")) == sorted(
        p.parent.relative_to(here) for p in (here / "tensorboard").rglob("events.out.*")
    )
    summary = json.loads((there / "summary.json").read_text())
    assert summary["rankings"] == json.loads((here / "summary.json").read_text())["rankings"]
    assert "Ray cluster (2 nodes" in json.loads((there / "config.json").read_text())["environment"]["device"]


def test_a_run_too_big_for_any_worker_is_refused_before_anything_is_written(cluster, data, tmp_path):
    with pytest.raises(ConfigError, match="alone needs about .* GiB, more than a worker of this cluster has"):
        on_cluster(cluster.address, _config(tmp_path, "huge", hidden=(40_000, 40_000)), arrays=data)
    assert not (tmp_path / "huge").exists()


def _training_pids() -> list[int]:
    """Worker processes running a unit now (Ray titles them after the task)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::train_task"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_a_worker_killed_mid_group_is_retried_from_its_checkpoint_with_the_same_numbers(cluster, data, tmp_path):
    config = _config(tmp_path, "killed", epochs=4, seeds=1, hidden=(300, 100))
    here = compare(replace(config, name="here"), arrays=data, echo=lambda _: None)
    killed: list[int] = []
    ckpts = tmp_path / "killed" / "checkpoints"

    def kill_after_first_epoch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            # The driver writes a unit's checkpoint once its first epoch is in the mailbox.
            if any(ckpts.rglob("last.ckpt")) and _training_pids():
                pid = _training_pids()[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
    killer.start()
    lines: list[str] = []
    there = on_cluster(cluster.address, config, arrays=data, echo=lines.append)
    killer.join(timeout=5)
    assert killed, "no worker was running a unit after its first epoch"
    done = _done_lines(lines)
    assert len(done) == 2 and all(f"pid {killed[0]} " not in line for line in done), done  # retried elsewhere
    assert _numbers(there) == _numbers(here)
    # The killed worker's scratch folder (its epoch checkpoint) was removed by a later task on this node.
    assert not list(Path(tempfile.gettempdir()).glob(f"{ray_backend.SCRATCH_PREFIX}{killed[0]}-*"))


def test_a_bug_in_a_unit_fails_once_with_its_traceback(cluster, data, tmp_path):
    from fmnist_pl.execution import cluster as cluster_module
    from fmnist_pl.execution import ray_backend
    from fmnist_pl.plan import plan

    config = _config(tmp_path, "bug", epochs=1)
    runs = plan(config)  # sgd/seed-42, adam/seed-42, sgd/seed-43, adam/seed-43
    not_seed_major = [runs[0], runs[2], runs[1]]  # the lockstep engine refuses this order
    (tmp_path / "bug").mkdir()
    session = cluster_module.connect(parse_address(cluster.address))
    try:
        began = time.monotonic()
        with pytest.raises(GroupFailed) as info:
            ray_backend.train(session, tmp_path / "bug", config, [not_seed_major], data, echo=lambda _: None)
        assert time.monotonic() - began < 60
    finally:
        ray.shutdown()
    message = str(info.value)
    assert "\n" not in message and "ValueError: members must be ordered seed-major" in message
    log = (tmp_path / "bug" / ray_backend.ERRORS_FILE).read_text()
    assert "lockstep.py" in log and log.count("ray::train_task() (pid=") == 1
    # Ray reruns a task whose worker died, never one that raised in our code.
    options = ray_backend.train_task._default_options
    assert options["max_retries"] == ray_backend.MAX_RETRIES > 0 and options["retry_exceptions"] is False


# ------------------------------------------------------------------ Ctrl-C, then --resume (the CLI, local:2)
def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _ray_daemons() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"raylet" in (proc / "cmdline").read_bytes().split(b"\0")[0]:
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.realdata
def test_ctrl_c_stops_the_cluster_work_and_resume_continues_to_the_same_numbers(real_data, tmp_path, request):
    args = [
        "compare",
        "--optimizers",
        "sgd,adam",
        "--seeds",
        "2",
        "--epochs",
        "4",
        "--limit-train-batches",
        "150",
        "--eval-points",
        "0",  # epoch ends only: what is stopped and resumed here is the cluster's work
        "--data-dir",
        str(real_data),
        "--output-dir",
        str(tmp_path),
        "--no-progress",
    ]
    before = _ray_daemons()
    folder = tmp_path / "stopped"
    # Its own process group, with the Ray instance it starts: after the test (and its checks that
    # nothing is left), whatever a failure left behind is killed with the group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist_pl.cli", *args, "--name", "stopped", "--ray", "local:2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    request.addfinalizer(lambda: _kill_group(proc.pid))
    try:
        deadline = time.monotonic() + 120
        while (
            not any((folder / "checkpoints").rglob("last.ckpt")) and proc.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert f"--resume {folder} --ray local:2" in err
    assert not (folder / "runs/adam/seed-43/metrics.json").exists()  # stopped mid-study
    deadline = time.monotonic() + 20
    while _ray_daemons() - before and time.monotonic() < deadline:  # the local Ray instance stops with it
        time.sleep(0.2)
    assert not _ray_daemons() - before
    resumed = _cli("compare", "--resume", str(folder), "--ray", "local:2", "--no-progress", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    here = _cli(*args, "--name", "here", timeout=300)
    assert here.returncode == 0, here.stderr[-3000:]
    assert _numbers(folder) == _numbers(tmp_path / "here") and len(_numbers(folder)) == 4
