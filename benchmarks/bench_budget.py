"""How equal is a seconds budget? The same ``--budget seconds=S`` compare, repeated and in both orders.

Each repeat runs ``fmnist-pl compare --optimizers A,B --budget seconds=S`` and then the same with
``B,A``, and prints the images each method saw. A budget equal by construction would give every
repeat the same images, and the order of ``--optimizers`` would not change the ratio between the
methods. ``--load`` starts a CPU-bound process on one core for the whole benchmark, as another
program on the machine would be (the case where wall-clock budgets drift most).

Two ways of training side by side, alternating within each repeat: the runs taking turns in
short slices (the default: :mod:`fmnist_pl.runtime.turns`) and one after another (``--workers 1``).

    python benchmarks/bench_budget.py                       # sgd,adam, 20 s, 3 repeats
    python benchmarks/bench_budget.py --seconds 10 --repeats 2 --load
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def cpu_model() -> str:
    """The CPU's name, with its family, model and widest vector ISA: a cloud VM often names only the
    vendor ("AMD EPYC"), and machines sold under one name differ twofold in these benchmarks."""
    try:
        info: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    isa = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "no AVX")
    return f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}; {isa})"


def _spin() -> None:
    while True:
        pass


MODES = {"turns": [], "one after another": ["--workers", "1"]}


def machine_speed(seconds: float = 2.0) -> float:
    """Steps per second of a fixed batch-32 forward and backward of the 784-300-100-10 MLP, on this
    process's threads, just before a compare: how fast the machine is at that moment (a shared host's
    speed drifts), to tell the budget's own spread from the machine's."""
    import time

    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(784, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)
    )
    x, y = torch.rand(32, 784), torch.randint(0, 10, (32,))
    steps, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        steps += 1
    return steps / (time.perf_counter() - began)


def images_seen(optimizers: str, seconds: float, out: Path, name: str, mode: str) -> dict[str, int]:
    """Run one budget compare; the training images each of its runs saw."""
    subprocess.run(
        [sys.executable, "-m", "fmnist_pl", "compare", "--optimizers", optimizers, "--budget", f"seconds={seconds:g}"]
        + ["--epochs", "1000", "--no-progress", "--output-dir", str(out), "--name", name, *MODES[mode]],
        check=True,
        capture_output=True,
    )
    runs = {}
    for run in optimizers.split(","):
        metrics = json.loads((out / name / "runs" / run / "metrics.json").read_text())
        runs[run] = int(metrics["spent"]["images"])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", action="store_true", help="a busy process on one core throughout")
    args = parser.parse_args()
    a, b = args.optimizers.split(",")
    print(f"CPU: {cpu_model()}; budget seconds={args.seconds:g}; load: {'one busy core' if args.load else 'none'}")
    spinner = multiprocessing.Process(target=_spin, daemon=True) if args.load else None
    if spinner is not None:
        spinner.start()
    orders = [f"{a},{b}", f"{b},{a}"]
    seen = {mode: {a: [], b: []} for mode in MODES}
    speeds: dict[str, list[float]] = {mode: [] for mode in MODES}
    ratios = {mode: {order: [] for order in orders} for mode in MODES}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                for order in orders:
                    for m, mode in enumerate(MODES):
                        name = f"r{repeat}-{order.replace(',', '-')}-{m}"
                        speed = machine_speed()
                        runs = images_seen(order, args.seconds, Path(tmp), name, mode)
                        speeds[mode].append(speed)
                        print(
                            f"repeat {repeat + 1}, order {order}, {mode}: "
                            + ", ".join(f"{k} {v:,}" for k, v in runs.items())
                            + f"; machine before it: {speed:,.0f} reference steps/s"
                        )
                        for k, v in runs.items():
                            seen[mode][k].append(v)
                        ratios[mode][order].append(runs[a] / runs[b])
    finally:
        if spinner is not None:
            spinner.terminate()

    def spread(values: list[float]) -> float:
        return (max(values) - min(values)) / statistics.fmean(values)

    for mode in MODES:
        print(f"{mode}: the machine's reference speed before each compare spread {spread(speeds[mode]):.1%}")
        for k, values in seen[mode].items():
            print(f"{mode}: {k} images {min(values):,}-{max(values):,}, spread {spread(values):.1%} of the mean")
        every = [r for order in orders for r in ratios[mode][order]]
        for order, values in ratios[mode].items():
            listed = ", ".join(f"{r:.3f}" for r in values)
            print(f"{mode}: order {order}: {a}/{b} images ratio {statistics.fmean(values):.3f} ({listed})")
        print(f"{mode}: the {a}/{b} ratio over every repeat and order spread {spread(every):.1%}")


if __name__ == "__main__":
    main()
