"""The first layer's GEMMs on torch's BLAS (MKL) and on oneDNN, side by side at the engine's shapes.

The first layer (784 -> 300) is nine tenths of the MLP's multiplies. A lockstep group multiplies
the first-layer weights of its M members, stacked ``[M x 300, 784]``, by a batch of 32 images
(forward) and the batch's gradient by the images (the weight gradient). torch sends fp32 ``mm`` to
MKL, whose SGEMM runs its AVX2 code on AMD CPUs; oneDNN's runs AVX-512 wherever the CPU has it.
This prints both libraries' GFLOPS, each shape and thread count in one process, one after another:
the reason ``fmnist_pl/engine/mlp.py`` runs this layer on oneDNN on a CPU.

    python benchmarks/bench_gemm.py [--members 1,8,16] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_budget import cpu_model  # noqa: E402  (one CPU probe for the benchmarks that print it)
from bench_population import seconds  # noqa: E402  (the median of timed calls after warm-up ones)

from fmnist_pl.engine import mlp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="1,8,16", help="models whose first layers are stacked, comma-separated")
    parser.add_argument("--threads", default="1,2", help="torch CPU threads, comma-separated")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    if mlp._LINEAR is None:
        sys.exit("this torch build has no oneDNN linear: the engine multiplies on BLAS only")
    print(f"CPU: {cpu_model()}; torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})")
    print(f"{'threads':>7} {'models':>6} {'GEMM':<16} {'MKL GFLOPS':>10} {'oneDNN GFLOPS':>13} {'ratio':>6}")
    torch.manual_seed(0)
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for members in (int(m) for m in args.members.split(",")):
            rows = members * 300
            w, grad = torch.randn(rows, 784), torch.randn(rows, args.batch)
            x = torch.rand(args.batch, 784)
            xt = x.T.contiguous()
            flops = 2 * rows * 784 * args.batch
            cases = {
                "forward w @ xT": (lambda: torch.mm(w, xt), lambda: mlp._gemm(w, x)),
                "weight grad g @ x": (lambda: torch.mm(grad, x), lambda: mlp._gemm(grad, xt)),
            }
            for name, (blas, onednn) in cases.items():
                a, b = (flops / seconds(fn, args.repeat) / 1e9 for fn in (blas, onednn))
                print(f"{threads:>7} {members:>6} {name:<16} {a:>10.0f} {b:>13.0f} {b / a:>5.2f}x")


if __name__ == "__main__":
    main()
