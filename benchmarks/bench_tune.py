"""What tuning costs: ``fmnist-pl tune`` against the same configurations in one compare, and against
the usual Optuna + Lightning way, side by side on this machine.

1. Overhead: ``tune`` of ``--methods`` x ``--trials`` trials (sampling, the SQLite study, selection,
   the final runs on fresh seeds and the reports included) against one ``compare`` of the very
   configurations the tune trained (read back from its first round's config.json), in ``--rounds``
   rounds with the order alternating; the median round's ratio. Goal: <= 1.3x.
2. Against the usual way: a learning-rate study of sgd and adam (``--rates`` rates each, full
   epochs), then one final run of each at the chosen rate. The usual way is an Optuna study whose
   objective trains one lean Lightning model per trial (the data as in-memory tensors, no logger,
   no progress bar, no checkpoints), one trial after another; fmnist-pl is ``tune`` with the other
   hyperparameters fixed at the registry's values, doing the same work (``--no-defaults``: no
   one-shot default runs; ``--eval-points 0``: validation at epoch ends, as the objective does), and
   again at its defaults (which add both). Goal: >= 4x on a CPU. Both are timed as whole commands
   (start, imports and data loading included), in ``--rounds`` rounds with the order alternating
   (the median round printed in full, then each round's ratio); the line after says how much of
   the tune's time its training groups took, and so the most lockstep training alone can give on
   this CPU.
3. Pruning: a tune of sgd and adam (9 trials, 9 epochs) with ``--prune halving --eta 3`` against the
   same tune training every trial to the end (``--limit`` batches an epoch, 300 by default).

    python benchmarks/bench_tune.py                     # all three, at the issue's sizes
    python benchmarks/bench_tune.py --only usual --epochs 1 --rates 4
    python benchmarks/bench_tune.py --only usual --rounds 3   # the usual way's time drifts more than the tune's

Each command runs in a fresh interpreter, one after another, with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_budget import cpu_model  # noqa: E402  (one CPU probe for the benchmarks that print it)

T, U = TypeVar("T"), TypeVar("U")

USUAL = r"""
import sys, time
import lightning.pytorch as pl, optuna, torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
sys.path.insert(0, {root!r})
from fmnist_pl.data.idx import load_arrays, locate

epochs, rates = {epochs}, {rates}
arrays = load_arrays(locate(None), counts=None)
x = torch.as_tensor(arrays.train_images).float().div(255).flatten(1)
y = torch.as_tensor(arrays.train_labels).long()
val_x, val_y, train_x, train_y = x[:5000], y[:5000], x[5000:], y[5000:]

class Lean(pl.LightningModule):
    def __init__(self, opt, lr):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
        self.opt, self.lr, self.correct, self.seen = opt, lr, 0, 0
    def training_step(self, batch, i):
        xb, yb = batch
        return F.cross_entropy(self.net(xb), yb)
    def validation_step(self, batch, i):
        xb, yb = batch
        self.correct += int((self.net(xb).argmax(1) == yb).sum()); self.seen += len(yb)
    def on_validation_epoch_start(self):
        self.correct = self.seen = 0
    def on_validation_epoch_end(self):
        self.acc = max(getattr(self, "acc", 0.0), self.correct / max(1, self.seen))
    def configure_optimizers(self):
        if self.opt == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return torch.optim.Adam(self.parameters(), lr=self.lr, eps=1e-7)

def train(opt, lr, seed):
    pl.seed_everything(seed, verbose=False)
    model = Lean(opt, lr)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(train_x, train_y), batch_size=32, shuffle=True),
                DataLoader(TensorDataset(val_x, val_y), batch_size=1000))
    return model.acc

optuna.logging.set_verbosity(optuna.logging.WARNING)
ranges = {{"sgd": (1e-4, 1.0), "adam": (1e-5, 1e-1)}}
began = time.perf_counter()
for opt in ("sgd", "adam"):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.QMCSampler(scramble=True, seed=0))
    study.optimize(lambda t: train(opt, t.suggest_float("lr", *ranges[opt], log=True), 42), n_trials=rates)
    train(opt, study.best_params["lr"], 43)
print(f"USUAL {{time.perf_counter() - began:.1f}}")
"""


def timed(argv: list[str]) -> float:
    return timed_output(argv)[0]


def timed_output(argv: list[str]) -> tuple[float, str]:
    """A whole command's wall time (its start and imports included), and what it printed."""
    began = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"{' '.join(argv[:6])} ... failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return time.perf_counter() - began, out.stdout


def training_seconds(printed: str) -> float:
    """The seconds a command spent in its training groups: per compare it ran, the slowest group's
    ("group 2 of 2 done (...) in process 7 in 39.3 s"). Right where a compare's groups all train side
    by side (no more groups than processes, as in this benchmark's tunes); 0 where it trained in one
    process, which prints no such lines."""
    total = 0.0
    for stage in printed.split("\ntraining ")[1:]:
        times = [float(m) for m in re.findall(r" done \(.*\) in (?:process \d+ in )?([0-9.]+) s", stage)]
        total += max(times, default=0.0)
    return total


def alternating(rounds: int, first: Callable[[int], T], second: Callable[[int], U]) -> list[tuple[T, U]]:
    """``(first(i), second(i))`` for each round ``i``, ``first`` run first in even rounds and second in
    odd ones: a shared machine drifts, and neither side should always have the earlier minutes."""
    out = []
    for i in range(rounds):
        if i % 2 == 0:
            a = first(i)
            out.append((a, second(i)))
        else:
            b = second(i)
            out.append((first(i), b))
    return out


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fmnist_pl", *args]


def overhead(args: argparse.Namespace, tmp: Path) -> str:
    """tune vs one compare of the same configurations (including the tune's final runs' share), in
    ``--rounds`` rounds, the order alternating (a shared machine drifts): the median round's ratio."""
    common = ["--epochs", str(args.epochs), "--no-progress", "--output-dir", str(tmp)]
    if args.limit:
        common += ["--limit-train-batches", str(args.limit)]

    def tune(i: int) -> float:
        return timed(
            cli("tune", "--optimizers", args.methods, "--trials", str(args.trials), "--name", f"tune-{i}", *common)
        )

    def compare(i: int) -> float:
        # The very configurations the first tune trained (its sampler is seeded: every tune asks the same).
        setup = json.loads((tmp / "tune-0" / "round-1" / "config.json").read_text())["config"]
        trials = [t for t in setup["trials"] if t[1] != "defaults"]  # without the one-shot default runs
        script = (
            "import sys; sys.path.insert(0, {root!r})\n"
            "from fmnist_pl.config import CompareConfig\nfrom fmnist_pl.study.compare import compare\n"
            "from fmnist_pl.execution.pool import TrainingPool, default_workers\n"
            "if __name__ == '__main__':\n"
            "    c = CompareConfig.from_dict({setup!r})\n"
            "    with TrainingPool(default_workers(c)) as pool:\n"
            "        compare(c, echo=lambda _: None, backend=pool)\n"
        ).format(root=str(ROOT), setup=setup | {"trials": trials, "name": f"compare-{i}", "progress": False})
        return timed([sys.executable, "-c", script])

    rounds = alternating(args.rounds, tune, compare)  # tune first in round 0: the compare trains what it asked
    summary = json.loads((tmp / "tune-0" / "tuning.json").read_text())
    k = len(next(iter(summary["methods"].values()))["values"])
    configurations = k * len(summary["methods"])
    what = f"tune of {args.methods} x {k} trials x {args.epochs} epochs{f' ({args.limit} batches each)' if args.limit else ''}"
    each = "; ".join(f"{t:.1f} s against {c:.1f} s ({t / c:.2f}x)" for t, c in rounds)
    median = statistics.median(t / c for t, c in rounds)
    return (
        f"overhead: {what} against one compare of the same {configurations} configurations, "
        f"{len(rounds)} round{'s' if len(rounds) > 1 else ''} (order alternating): {each}; "
        f"median ratio {median:.2f}x (goal <= 1.3x)"
    )


def against_usual(args: argparse.Namespace, tmp: Path) -> str:
    """A learning-rate study of sgd and adam, the usual way and with tune, each timed as a whole
    command, in ``--rounds`` rounds with the order alternating; the round of the median ratio is
    printed in full."""
    fixed = ["adam.beta1=0.9", "adam.one_minus_beta2=0.001", "adam.eps=1e-7"]
    command = (
        cli("tune", "--optimizers", "sgd,adam", "--trials", str(args.rates), "--epochs", str(args.epochs))
        + [x for item in fixed for x in ("--space", item)]
        + ["--final-seeds", "1", "--no-progress", "--output-dir", str(tmp)]
    )

    def usual_way() -> tuple[float, float]:
        seconds, printed = timed_output(
            [sys.executable, "-c", USUAL.format(root=str(ROOT), epochs=args.epochs, rates=args.rates)]
        )
        return seconds, float(next(line for line in printed.splitlines() if line.startswith("USUAL")).split()[1])

    def same_work(i: int) -> tuple[float, float]:
        # The same work as the usual way: no one-shot default runs, validation at epoch ends only.
        seconds, printed = timed_output(command + ["--name", f"same-{i}", "--no-defaults", "--eval-points", "0"])
        return seconds, training_seconds(printed)

    rounds = [(*u, *t) for u, t in alternating(args.rounds, lambda _: usual_way(), same_work)]
    usual, studies, same, trained = sorted(rounds, key=lambda r: r[0] / r[2])[len(rounds) // 2]
    # And as a user gets it: a default run per method and 20 anytime validations per run on top.
    full = timed(command + ["--name", "full"])
    out = (
        f"against the usual way: lr study of sgd and adam, {args.rates} rates each, {args.epochs} full epochs, then "
        f"one final run each (whole commands, start and imports included): Optuna + lean Lightning {usual:.1f} s "
        f"({studies:.1f} s in its studies); fmnist-pl tune of the same work (--no-defaults --eval-points 0) "
        f"{same:.1f} s: {usual / same:.2f}x faster (goal >= 4x on a CPU); tune at its defaults (+2 default runs, "
        f"20 anytime validations a run) {full:.1f} s: {usual / full:.2f}x"
        + (
            f"\n  the same-work tune's {same:.1f} s: {trained:.1f} s in its training groups, {same - trained:.1f} s "
            f"besides (start, sampling, storage, the report); its training groups against the usual way's "
            f"studies ({studies:.1f} s): {studies / trained:.2f}x, the most lockstep training gives on this CPU "
            "with no fixed cost on either side"
            if trained
            else ""
        )
    )
    if len(rounds) > 1:
        each = "; ".join(f"{u:.1f} s against {t:.1f} s ({u / t:.2f}x)" for u, _, t, _ in rounds)
        median = statistics.median(u / t for u, _, t, _ in rounds)
        out += (
            f"\n  the usual way against the same-work tune in {len(rounds)} rounds (order alternating; the line "
            f"above is their middle one by ratio): {each}; median ratio {median:.2f}x"
        )
    return out


def pruning(args: argparse.Namespace, tmp: Path) -> str:
    """A tune with successive halving against the same tune training every trial to the end."""
    command = cli("tune", "--optimizers", "sgd,adam", "--trials", "9", "--epochs", "9", "--final-seeds", "1")
    command += ["--limit-train-batches", str(args.limit or 300), "--no-progress", "--output-dir", str(tmp)]
    seconds, epochs = {}, {}
    for prune in ("none", "halving"):
        seconds[prune] = timed(command + ["--name", f"prune-{prune}", "--prune", prune, "--eta", "3"])
        summary = json.loads((tmp / f"prune-{prune}" / "tuning.json").read_text())
        epochs[prune] = sum(t["model_epochs"] for m in summary["methods"].values() for t in m["trials"])
    return (
        f"pruning: tune of sgd,adam x 9 trials x 9 epochs ({args.limit or 300} batches each), one final run each: "
        f"every trial to the end {seconds['none']:.1f} s ({epochs['none']} trial epochs); --prune halving --eta 3 "
        f"(rungs 1, 3, 9; survivors go on from their rung) {seconds['halving']:.1f} s ({epochs['halving']} trial "
        f"epochs): {seconds['halving'] / seconds['none']:.2f}x the time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("overhead", "usual", "prune"))
    parser.add_argument("--methods", default="sgd,momentum,rmsprop,adam")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="batches per epoch in the overhead and pruning studies")
    parser.add_argument("--rates", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds of the overhead and the usual-way pairs, the order alternating"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(f"CPU: {cpu_model()}; python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "overhead"):
            print(overhead(args, Path(tmp)), flush=True)
        if args.only in (None, "usual"):
            print(against_usual(args, Path(tmp)), flush=True)
        if args.only in (None, "prune"):
            print(pruning(args, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
