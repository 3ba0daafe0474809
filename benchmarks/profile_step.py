"""Where a lockstep training step of many models spends its time on this device (torch.profiler).

The DeepOBS-scale study (4 optimizers x 36 learning rates x 10 seeds = 1,440 models) trains in one
lockstep group on a GPU, one CUDA graph a step. This times that step as the engine runs it, inside
Lightning's loop (graph replays on a GPU), records the next steps under torch.profiler (which
lists a replayed graph's kernels one by one) and prints the kernels and operators that take the
device's time, and the memory-traffic floor of the step (the weights read by the forward, their
gradients written by the backward, weights, gradients and optimizer state read and written by
the update, at the device's measured copy rate):

    python benchmarks/profile_step.py                      # the study's 1,440 models
    python benchmarks/profile_step.py --lrs 1 --seeds 1    # the default compare's four
    python benchmarks/profile_step.py --as-before          # the optimizer step as before 2026-11-28:
                                                           # one instance per class, one stream
    python benchmarks/profile_step.py --optimizers adam --lrs 1 --seeds 1 --threads 1   # a lone model
    python benchmarks/profile_step.py --optimizers adam --lrs 1e-3:2e-3:8 --seeds 1 --threads 1
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_budget import cpu_model  # noqa: E402  (one CPU probe for the benchmarks that print it)

from fmnist_pl.config import CompareConfig, parse_lrs  # noqa: E402
from fmnist_pl.data.datamodule import FashionMNISTDataModule  # noqa: E402
from fmnist_pl.data.idx import load_arrays, locate  # noqa: E402
from fmnist_pl.engine import lockstep  # noqa: E402
from fmnist_pl.engine.lockstep import LitLockstep  # noqa: E402
from fmnist_pl.engine.trainer import make_trainer
from fmnist_pl.optim.registry import REFERENCE_OPTIMIZERS  # noqa: E402
from fmnist_pl.plan import plan  # noqa: E402
from fmnist_pl.runtime.training import training_settings  # noqa: E402


class Done(Exception):
    """Ends the fit once the steps are timed and profiled (no validation, no epoch checkpoint)."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimeThenProfile(pl.Callback):
    """Times ``steps`` training steps after ``warmup`` (as the engine runs them: CUDA graph replays
    on a GPU), then records ``profiled`` more under torch.profiler."""

    def __init__(self, warmup: int, steps: int, profiled: int, device: torch.device) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.warmup, self.steps, self.profiled, self.device = warmup, steps, profiled, device
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.prof = profile(activities=activities)
        self.seconds = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            sync(self.device)
            self._t = time.perf_counter()
        elif batch_idx == self.warmup + self.steps:
            sync(self.device)
            self.seconds = (time.perf_counter() - self._t) / self.steps
            self.prof.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx == self.warmup + self.steps + self.profiled - 1:
            sync(self.device)
            self.prof.__exit__(None, None, None)
            raise Done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", default="1e-4:1e0:36", help="learning rates as lo:hi:n; 1: each optimizer's default")
    parser.add_argument("--optimizers", default=",".join(REFERENCE_OPTIMIZERS), help="registry names, comma-separated")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's own)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--profiled", type=int, default=10)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument(
        "--as-before",
        action="store_true",
        help="one optimizer instance per class, stepped one after another (no CUDA streams)",
    )
    args = parser.parse_args()
    if args.as_before:
        lockstep.SETTINGS_PER_OPTIMIZER = 10**9
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seeds = list(range(42, 42 + args.seeds))
    config = CompareConfig(
        optimizers=tuple(args.optimizers.split(",")),
        lrs=parse_lrs(args.lrs) if ":" in args.lrs else (),
        seeds=args.seeds,
    )
    members = plan(config)
    k = len(members)
    where = (
        torch.cuda.get_device_name(0) if device.type == "cuda" else f"{cpu_model()}, {torch.get_num_threads()} threads"
    )
    module = LitLockstep(members, concurrent_optimizers=not args.as_before)
    how = "on separate CUDA streams" if device.type == "cuda" and not args.as_before else "one after another"
    print(
        f"{where}; torch {torch.__version__}; {k} models in one lockstep group; "
        f"{len(module.optimizer_groups())} optimizer instances, stepped {how}"
    )
    out = Path(tempfile.mkdtemp(prefix="fmnist-profile-"))
    timer = TimeThenProfile(args.warmup, args.steps, args.profiled, device)
    trainer = make_trainer(
        out,
        [m.name for m in members],
        1,
        "gpu" if device.type == "cuda" else "cpu",
        out / "ckpt",
        progress=False,
        limit_train_batches=args.warmup + args.steps + args.profiled,
    )
    trainer.callbacks.append(timer)
    try:
        with training_settings():
            trainer.fit(module, datamodule=FashionMNISTDataModule(arrays=load_arrays(locate()), seeds=seeds))
    except Done:
        pass
    finally:
        shutil.rmtree(out, ignore_errors=True)  # its TensorBoard logs: nothing this script reads
    per = timer.seconds
    print(
        f"a step as the engine runs it ({'CUDA graph replays' if device.type == 'cuda' else 'eager'}): "
        f"{per * 1e3:.2f} ms, {per / k * 1e6:.1f} us per model; 1,719 steps (an epoch's training): {per * 1719:.1f} s"
    )
    stacked = module.net.parameters_in_order()
    size = sum(p.numel() * p.element_size() for p in stacked)
    states = sum(
        v.numel() * v.element_size()
        for opt in trainer.optimizers[:-1]
        for s in opt.state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.dim() > 0
    )
    if device.type == "cuda":
        src = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        dst.copy_(src)
        sync(device)
        t = time.perf_counter()
        for _ in range(20):
            dst.copy_(src)
        sync(device)
        rate = 2 * src.numel() * 20 / (time.perf_counter() - t)  # bytes read + written per second
        # the forward reads the weights, the backward writes their gradients, the optimizer reads
        # weights, gradients and states and writes weights and states
        traffic = 2 * size + 3 * size + 2 * states
        print(
            f"weights {size / 2**30:.2f} GiB, optimizer state {states / 2**30:.2f} GiB; copy rate "
            f"{rate / 1e12:.2f} TB/s: memory-traffic floor of a step {traffic / rate * 1e3:.2f} ms"
        )
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n{args.profiled} steps under torch.profiler, by {key}:")
    print(timer.prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=70))


if __name__ == "__main__":
    main()
