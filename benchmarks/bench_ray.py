"""Ray's cost: the same small sweep as whole commands, here and with ``--ray local:N``, side by side.

    python benchmarks/bench_ray.py                         # 2 optimizers x 2 rates x 2 seeds, real data
    python benchmarks/bench_ray.py --workers 2 --epochs 2 --batches 300

Prints the CPU, each command's wall time and the ratio, the seconds Ray needs to start and stop
a local instance, and per group (unit of work): the task's wall time on its worker, how much of
it was training (the group's fit seconds), and the rest - Ray's overhead per group (the worker's
start, imports, Lightning's set-up, the test pass, sending the files back).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fmnist_pl.data.idx import locate  # noqa: E402


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    import os

    return f"{model}, {isa}, {os.cpu_count()} cores"


def timed(args: list[str]) -> tuple[float, str]:
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fmnist_pl.cli", *args], capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def ray_start_stop(workers: int) -> float:
    code = (
        f"import time, ray; t = time.perf_counter(); ray.init(address='local', num_cpus={workers}, "
        "logging_level='ERROR'); ray.shutdown(); print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=300, help="training batches per epoch")
    args = ap.parse_args()
    data = locate(None)
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            "sweep",
            "--optimizers",
            "sgd,adam",
            "--lrs",
            "0.01,0.1",
            "--seeds",
            "2",
            "--epochs",
            str(args.epochs),
            "--limit-train-batches",
            str(args.batches),
            "--data-dir",
            str(data),
            "--output-dir",
            tmp,
            "--no-progress",
        ]
        here, _ = timed([*common, "--name", "here"])
        there, out = timed([*common, "--name", "ray", "--ray", f"local:{args.workers}"])
        done = re.findall(r"group (\d+) of \d+ done \(\d+ runs?: ([^)]*)\) on .* in ([\d.]+) s", out)
        fits = []
        for phase in ("sweep", "final"):
            for m in sorted((Path(tmp) / "ray" / phase / "runs").rglob("metrics.json")):
                fits.append(
                    (
                        m.parent.relative_to(Path(tmp) / "ray" / phase / "runs").as_posix(),
                        phase,
                        json.loads(m.read_text())["timing"]["fit_seconds"],
                    )
                )
        start_stop = ray_start_stop(args.workers)
    print(f"CPU: {cpu()}")
    print(
        f"sweep: sgd, adam x lr 0.01, 0.1 x 2 seeds, {args.epochs} epochs x {args.batches} batches, then the "
        f"final compare at the chosen rates (same epochs)"
    )
    print(f"  here (one process):           {here:7.1f} s wall")
    print(f"  --ray local:{args.workers}:                {there:7.1f} s wall  ({there / here:.2f}x)")
    print(
        f"  Ray start + stop (local:{args.workers}):   {start_stop:7.1f} s, once per command (the sweep's two "
        "compares share one instance)"
    )
    # Each group's fit seconds are shared by its runs (metrics.json: the group's wall time).
    per_group = []
    for _, names, seconds in done:
        first = names.split(", ")[0]
        fit = next((f for run, _, f in fits if run == first), None)
        if fit is not None:
            per_group.append((float(seconds), fit))
    if per_group:
        task = sum(t for t, _ in per_group) / len(per_group)
        fit = sum(f for _, f in per_group) / len(per_group)
        print(
            f"  per group ({len(per_group)} groups): task {task:.2f} s on its worker, training {fit:.2f} s -> "
            f"{task - fit:.2f} s per group in the task (Lightning set-up, test pass, files back)"
        )
        slots = (there - start_stop) * args.workers - sum(f for _, f in per_group)
        print(
            f"  all but training, per group: {slots / len(per_group):.2f} worker-seconds (adds the workers' start "
            "and imports, scheduling, the driver's setup and report)"
        )


if __name__ == "__main__":
    main()
