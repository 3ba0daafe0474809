"""Population evaluation: P weight vectors scored on one mini-batch, against its matmul bound and a Python loop.

What a gradient-free method (evolution strategy, genetic algorithm) pays per generation:
``fmnist_pl.engine.population.population_fitness`` - P forward passes of the reference MLP as a
few batched matrix multiplies. Printed side by side, in one process:

  batched      population_fitness(solutions [P, 266,610], a batch of images) -> [P] losses
  matmul bound the same three matrix multiplies alone, on preallocated tensors (no bias, ReLU,
               loss): what the arithmetic itself costs on this machine
  python loop  one plain ``F.linear`` forward per member, the straightforward way

Goals (issue: metaheuristics): batched within 2x of the matmul bound, at least 20x the loop.

    python benchmarks/bench_population.py [--popsizes 50,200 --batch 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fmnist_pl.architecture import parameter_count  # noqa: E402
from fmnist_pl.engine.population import population_fitness, unflatten  # noqa: E402
from bench_compare import cpu_model  # noqa: E402


def seconds(fn, repeat: int) -> float:
    """Median wall seconds of ``fn`` over ``repeat`` calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--popsizes", default="50,200")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    hidden = (300, 100)
    n = parameter_count(hidden)
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else \
        f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; MLP 784-300-100-10 ({n:,} parameters), "
          f"batch {args.batch}, median of {args.repeat}")
    print(f"{'P':>5} {'batched ms':>11} {'bound ms':>9} {'loop ms':>9} {'batched/bound':>14} {'loop/batched':>13}")
    torch.manual_seed(0)
    x = torch.rand(args.batch, 784, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    with torch.no_grad():
        for p in (int(v) for v in args.popsizes.split(",")):
            solutions = torch.randn(p, n, device=device) * 0.05
            weights, biases = unflatten(solutions, hidden)
            batched = seconds(lambda: population_fitness(solutions, x, y, hidden), args.repeat)
            # The bound: the same GEMMs alone (first layer shared by all members, as the engine does it).
            w0 = weights[0].reshape(p * 300, 784).contiguous()
            w1, w2 = weights[1].contiguous(), weights[2].contiguous()
            xt = x.T.contiguous()
            h1, h2 = torch.rand(p, 300, args.batch, device=device), torch.rand(p, 100, args.batch, device=device)
            out0, out1 = torch.empty(p * 300, args.batch, device=device), torch.empty(p, 100, args.batch, device=device)
            out2 = torch.empty(p, 10, args.batch, device=device)

            def matmuls() -> None:
                torch.mm(w0, xt, out=out0)
                torch.bmm(w1, h1, out=out1)
                torch.bmm(w2, h2, out=out2)

            bound = seconds(matmuls, args.repeat)

            def loop() -> None:
                for k in range(p):
                    h = F.relu(F.linear(x, weights[0][k], biases[0][k]))
                    h = F.relu(F.linear(h, weights[1][k], biases[1][k]))
                    F.cross_entropy(F.linear(h, weights[2][k], biases[2][k]), y)

            looped = seconds(loop, max(3, args.repeat // 3))
            print(f"{p:>5} {batched * 1e3:>11.2f} {bound * 1e3:>9.2f} {looped * 1e3:>9.2f} "
                  f"{batched / bound:>14.2f} {looped / batched:>13.1f}")


if __name__ == "__main__":
    main()
