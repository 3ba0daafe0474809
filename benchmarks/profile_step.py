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
    python benchmarks/profile_step.py --optimizers sgd,adam --lrs 1e-3:2e-3:4 --seeds 1 --threads 1 \
        --steps 400 --profiled 400 --phases   # a tune's group of 8 trials: where its step goes
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
from fmnist_pl.engine import lockstep, mlp  # noqa: E402
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


class Phases(pl.Callback):
    """Where a step's time goes, on a CPU: the engine's own calls wrapped with a clock (nothing of the
    step is copied here, so this cannot drift from it) - the network's forward, the backward, the
    optimizers, the first layer's oneDNN GEMMs (inside the forward and the backward), the rest of the
    step, and Lightning's loop between two steps (the next batch, the hooks). A context manager: it
    counts only inside (the wrappers' own cost, a few microseconds a call, is in the figures)."""

    NAMES = ("step", "forward", "backward", "optimizers", "gemm", "between")

    def __init__(self, module: LitLockstep) -> None:
        self.total = dict.fromkeys(self.NAMES, 0.0)
        self.steps, self.on, self._end = 0, False, None
        module.net.forward = self._timed("forward", module.net.forward)
        module._step_optimizers = self._timed("optimizers", module._step_optimizers)
        module._step = self._timed("step", module._step)
        torch.Tensor.backward = self._timed("backward", torch.Tensor.backward)
        if mlp._LINEAR is not None:
            mlp._LINEAR = self._timed("gemm", mlp._LINEAR)

    def _timed(self, name: str, fn):
        def timed(*args, **kw):
            if not self.on:
                return fn(*args, **kw)
            began = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.total[name] += time.perf_counter() - began

        return timed

    def __enter__(self) -> Phases:
        self.on = True
        return self

    def __exit__(self, *exc) -> None:
        self.on = False

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.on and self._end is not None:
            self.total["between"] += time.perf_counter() - self._end

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps += self.on
        self._end = time.perf_counter()

    def line(self) -> str:
        us = {name: seconds / max(1, self.steps) * 1e6 for name, seconds in self.total.items()}
        rest = us["step"] - us["forward"] - us["backward"] - us["optimizers"]
        return (
            f"where a step goes ({self.steps} steps, clocks around the engine's calls): forward {us['forward']:.0f} us, "
            f"backward {us['backward']:.0f} us, optimizers {us['optimizers']:.0f} us, the rest of the step {rest:.0f} us "
            f"(losses, each run's gradients, epoch sums); Lightning's loop between steps {us['between']:.0f} us (the next "
            f"batch, hooks); of the forward and backward, the first layer's oneDNN GEMMs {us['gemm']:.0f} us"
        )


class TimeThenProfile(pl.Callback):
    """Times ``steps`` training steps after ``warmup`` (as the engine runs them: CUDA graph replays
    on a GPU), then records ``profiled`` more under torch.profiler."""

    def __init__(
        self, warmup: int, steps: int, profiled: int, device: torch.device, phases: Phases | None = None
    ) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.warmup, self.steps, self.profiled, self.device = warmup, steps, profiled, device
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.prof = profile(activities=activities)
        self.window = phases if phases is not None else self.prof  # what the steps after the timed ones record
        self.seconds = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            sync(self.device)
            self._t = time.perf_counter()
        elif batch_idx == self.warmup + self.steps:
            sync(self.device)
            self.seconds = (time.perf_counter() - self._t) / self.steps
            self.window.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx == self.warmup + self.steps + self.profiled - 1:
            sync(self.device)
            self.window.__exit__(None, None, None)
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
        "--phases",
        action="store_true",
        help="instead of the profiler: clocks around the step's parts for --profiled steps (a CPU)",
    )
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
    phases = Phases(module) if args.phases else None
    timer = TimeThenProfile(args.warmup, args.steps, args.profiled, device, phases)
    trainer = make_trainer(
        out,
        [m.name for m in members],
        1,
        "gpu" if device.type == "cuda" else "cpu",
        out / "ckpt",
        progress=False,
        limit_train_batches=args.warmup + args.steps + args.profiled,
    )
    trainer.callbacks.extend([timer] + ([phases] if phases is not None else []))
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
    if phases is not None:
        print(phases.line())
        return
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n{args.profiled} steps under torch.profiler, by {key}:")
    print(timer.prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=70))


if __name__ == "__main__":
    main()
