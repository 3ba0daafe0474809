"""Population evaluation: P weight vectors scored on one mini-batch, against its matmul bound and a Python loop.

What a gradient-free method (evolution strategy, genetic algorithm) pays per generation:
``fmnist_pl.engine.population.population_fitness`` - P forward passes of the reference MLP as a
few batched matrix multiplies. Printed side by side, in one process:

  batched      population_fitness(solutions [P, 266,610], a batch of images) -> [P] losses
  matmul bound the same three matrix multiplies alone, on preallocated tensors (no bias, ReLU,
               loss), each on the library the engine uses for it (the first layer on oneDNN on a
               CPU, see fmnist_pl/engine/mlp.py): what the arithmetic itself costs on this machine
  python loop  one plain ``F.linear`` forward per member, the straightforward way

Goals (issue: metaheuristics): batched within 2x of the matmul bound, at least 20x the loop.

Then one whole generation of each gradient-free registry entry at its defaults (EvoTorch's
``searcher.step()``: sampling, our batched fitness, ranking, the update), beside the fitness
alone: what share of a generation is the forward and what is the library's own work.

    python benchmarks/bench_population.py [--popsizes 50,200 --batch 256] [--no-methods]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_budget import cpu_model  # noqa: E402

from fmnist_pl.architecture import parameter_count  # noqa: E402
from fmnist_pl.engine import mlp  # noqa: E402
from fmnist_pl.engine.population import population_fitness, unflatten  # noqa: E402


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
    parser.add_argument(
        "--methods",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time one generation of each gradient-free method at its defaults",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    hidden = (300, 100)
    n = parameter_count(hidden)
    where = (
        torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"
    )
    print(
        f"device: {where}; torch {torch.__version__}; MLP 784-300-100-10 ({n:,} parameters), "
        f"batch {args.batch}, median of {args.repeat}"
    )
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

            onednn = mlp._uses_onednn(w0)

            def matmuls() -> None:
                if onednn:  # its own output: oneDNN's linear has no out= form
                    mlp._gemm(w0, x)
                else:
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
            print(
                f"{p:>5} {batched * 1e3:>11.2f} {bound * 1e3:>9.2f} {looped * 1e3:>9.2f} "
                f"{batched / bound:>14.2f} {looped / batched:>13.1f}"
            )
    if args.methods:
        from fmnist_pl.runtime.training import training_settings

        with training_settings():  # as the engine trains: freed memory kept (a generation allocates P x n tensors)
            generations(device, hidden, args.repeat)


def generations(device: torch.device, hidden: tuple[int, ...], repeat: int) -> None:
    """Median ms of one EvoTorch generation per gradient-free method, and of its fitness alone."""
    from torch.nn.utils import parameters_to_vector

    from fmnist_pl.data.idx import load_arrays, locate
    from fmnist_pl.engine.mlp import seeded_mlp
    from fmnist_pl.engine.search import make_search
    from fmnist_pl.optim.registry import REGISTRY, resolve

    try:  # real images if installed (the fitness does not depend on them, the ranking a little)
        images = load_arrays(locate(None)).train_images[:4096].reshape(-1, 784).float().div(255).to(device)
    except Exception:  # noqa: BLE001 - any missing/unreadable dataset: random images time the same
        images = torch.rand(4096, 784, device=device)
    labels = torch.randint(0, 10, (len(images),), device=device)
    center = parameters_to_vector(seeded_mlp(hidden, 42).parameters()).detach().to(device)
    print(f"\none generation at each method's defaults (median of {repeat}):")
    print(f"{'method':>7} {'P':>4} {'batch':>6} {'ms/gen':>8} {'fitness ms':>11} {'fitness share':>14} {'gen/s':>7}")
    for name in (n for n, info in REGISTRY.items() if info.gradient_free):
        (spec,) = resolve([name])
        hp = spec.hparams
        problem, searcher = make_search(spec, hidden, center, seed=0)
        batch = int(hp["batch_size"])
        at = [0]

        def step() -> None:
            i = at[0] % (len(images) // batch)
            at[0] += 1
            problem.set_batch(images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch])
            searcher.step()

        gen = seconds(step, repeat)
        per_gen = problem.evaluated  # solutions scored in the last generation (a GA: parents and children)
        solutions = center + 0.05 * torch.randn(per_gen, center.numel(), device=device)
        fit = seconds(lambda: population_fitness(solutions, images[:batch], labels[:batch], hidden), repeat)
        print(
            f"{name:>7} {hp['popsize']:>4} {batch:>6} {gen * 1e3:>8.1f} {fit * 1e3:>11.1f} "
            f"{fit / gen:>14.0%} {1 / gen:>7.1f}"
        )


if __name__ == "__main__":
    main()
