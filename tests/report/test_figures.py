"""The report's figures drawn by worker processes are the figures drawn here."""

import os
import signal

from fmnist_pl.report.figures import Drawer, FigureJob, draw, draw_all


def _jobs() -> list[FigureJob]:
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 0.5 / e, "train_acc": 0.8 + e / 100,
                "val_acc": 0.79 + e / 100, "seconds": 1.5} for e in (1, 2, 3)]
    runs = [{"setting": name, "history": history} for name in ("sgd", "adam")]
    return [FigureJob("overlay", (runs, "val_acc", "validation accuracy", axis)) for axis in ("epoch", "seconds")] + [
        FigureJob("learning_curves", (history,), {"title": f"run {i}"}) for i in range(4)]


def test_workers_draw_the_same_figures_as_this_process():
    jobs = _jobs()
    here = [draw(job) for job in jobs]
    assert all(uri.startswith("data:image/png;base64,") for uri in here) and len(set(here)) == len(jobs)
    with Drawer(workers=2) as drawer:
        pids = {drawer._pool.submit(os.getpid).result() for _ in range(4)}
        assert os.getpid() not in pids  # separate processes
        assert drawer.submit(jobs)() == here  # in order, byte for byte
    assert draw_all(jobs)() == here  # no drawer: drawn here when collected


def test_a_lost_worker_or_ctrl_c_does_not_lose_a_figure():
    jobs = _jobs()
    here = [draw(job) for job in jobs]
    with Drawer(workers=1) as drawer:
        pid = drawer._pool.submit(os.getpid).result()
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

    script = ("import os, sys; from fmnist_pl.report.figures import Drawer; d = Drawer(workers=1); "
              "print(d._pool.submit(os.getpid).result(), flush=True); os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    worker = int(proc.stdout.split()[0])  # run() returned: nothing kept the output pipes open
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]
