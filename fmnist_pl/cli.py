"""The ``fmnist-pl`` command line: parse, call :mod:`fmnist_pl.compare`, print. Nothing else.

Only light modules are imported at start-up (no torch, no Lightning), so ``--help`` and
every error a user can cause answer in a fraction of a second.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from fmnist_pl import optimizers
from fmnist_pl.config import CompareConfig, ConfigError, parse_hidden
from fmnist_pl.idx import DataError
from fmnist_pl.optimizers import OptimizerError
from fmnist_pl.results import ResultsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Which optimizer trains the Fashion-MNIST MLP best? Train, compare, report.")

USER_ERRORS = (ConfigError, DataError, OptimizerError, ResultsError)
# Click's UsageError, whether Typer vendors Click (>= 0.25) or depends on it.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def fail(message: str) -> None:
    """One line on stderr, exit code 2: the convention for bad input."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _names(text: str) -> tuple[str, ...]:
    """``--optimizers sgd, adam`` -> ``("sgd", "adam")``; the registry checks the names."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _positive(name: str):
    def check(value: Optional[float]) -> Optional[float]:
        if value is not None and not value > 0:
            raise typer.BadParameter(f"must be > 0, got {value}", param_hint=name)
        return value
    return check


@app.command()
def compare(
    epochs: int = typer.Option(30, help="Epochs per run (the reference: 30)."),
    batch_size: int = typer.Option(32, help="Batch size (Keras' default, which the reference used)."),
    optimizers_: str = typer.Option(",".join(optimizers.REFERENCE_OPTIMIZERS), "--optimizers",
                                    help="Comma-separated registry names; see `fmnist-pl list-optimizers`."),
    lr: Optional[float] = typer.Option(None, callback=_positive("--lr"),
                                       help="One learning rate for every optimizer."),
    set_: List[str] = typer.Option([], "--set", help="Per-optimizer hyperparameter, e.g. adam.lr=3e-4 (repeatable)."),
    seed: int = typer.Option(42, help="First seed; every optimizer gets the same weights and batch order."),
    seeds: int = typer.Option(1, help="Runs per optimizer (seed, seed+1, ...), paired across optimizers."),
    hidden: List[str] = typer.Option(["300,100"], help="Hidden layer sizes; repeat to compare the optimizers "
                                     "on several architectures: --hidden 300,100 --hidden 512,256,128."),
    target: float = typer.Option(0.88, help="Report epochs and seconds to reach this validation accuracy."),
    accelerator: str = typer.Option("auto", help="auto (GPU when present), cpu, gpu."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder of the four IDX files [default: $FMNIST_DATA, "
                                            "else /usr/share/datasets/fashion-mnist]."),
    download: bool = typer.Option(False, help="Download with torchvision if no local copy exists (online only)."),
    output_dir: Path = typer.Option(Path("outputs"), help="Where compare folders are created."),
    name: Optional[str] = typer.Option(None, help="Folder name under --output-dir [default: a timestamp]."),
    limit_train_batches: Optional[int] = typer.Option(None, help="Batches per epoch (quick smoke runs)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the compare in this folder (its own settings)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    separate: bool = typer.Option(False, help="Train each run alone, so that its seconds per epoch are its own "
                                  "optimizer's cost (slower than the default lockstep)."),
) -> None:
    """Train every optimizer on Fashion-MNIST, then write the HTML report and print the ranking."""
    from fmnist_pl.compare import compare as run_compare

    try:
        if resume is not None:
            config = resume_config(resume)
        else:
            config = CompareConfig(
                optimizers=_names(optimizers_), epochs=epochs,
                batch_size=batch_size, lr=lr, overrides=tuple(set_), seed=seed, seeds=seeds,
                hidden=parse_hidden(hidden[0]), more_hidden=tuple(parse_hidden(h) for h in hidden[1:]),
                accelerator=accelerator, target=target,
                data_dir=str(data_dir) if data_dir else None, download=download, output_dir=str(output_dir),
                name=name, limit_train_batches=limit_train_batches, progress=progress, separate=separate)
    except USER_ERRORS as exc:
        fail(str(exc))
    run_and_report(lambda: run_compare(config, resume=resume is not None, echo=typer.echo))


def run_and_report(train: Callable[[], Path]) -> None:
    """Run ``train``; then print the ranking and the report's path. Bad input: exit 2; interrupted: 130."""
    from fmnist_pl.compare import Interrupted

    try:
        out = train()
    except USER_ERRORS as exc:
        fail(str(exc))
    except Interrupted as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(130)
    print_ranking(out)
    typer.echo(f"report: {out / 'report.html'}")


def resume_config(folder: Path) -> CompareConfig:
    from fmnist_pl import results

    loaded = results.load_compare(folder)  # raises ResultsError for a folder without results
    saved = dict(loaded["config"]["config"])
    saved.update(output_dir=str(folder.parent), name=folder.name)
    return CompareConfig.from_dict(saved)


def print_ranking(folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from fmnist_pl import metrics, results

    loaded = results.load_compare(folder)
    table = Table(title="Test set, last epoch")
    for col in ("run", "status", "accuracy", "macro-F1", "best val epoch", "s/epoch"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    def fmt(value: float | int | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    for row in map(metrics.summary_row, loaded["runs"]):
        table.add_row(row["run"], row["status"], fmt(row["test_acc"], ".4f"), fmt(row["test_f1"], ".4f"),
                      fmt(row["best_epoch"], "d"), fmt(row["seconds_per_epoch"], ".2f"))
    console = Console()
    console.print(table)
    for label, r in metrics.rankings(loaded["runs"]).items():
        typer.echo(f"ranking by {label}: {r['text'] or 'no finished run'}")
    from fmnist_pl.report import group_by_optimizer, significance

    sig = significance(group_by_optimizer(loaded["runs"]))
    if sig:
        typer.echo(f"significance ({sig['test']}, Holm, alpha {sig['alpha']}): {sig['text']}")
    if loaded["missing"]:
        typer.echo(f"missing runs: {', '.join(loaded['missing'])}")


@app.command()
def sweep(
    lrs: Optional[str] = typer.Option(None, help="Learning rates: START:STOP:COUNT (log grid) like 1e-4:1e0:7, "
                                      "or 0.001,0.01."),
    lr_find: bool = typer.Option(False, "--lr-find", help="Use Lightning's learning-rate finder instead of a grid."),
    epochs: int = typer.Option(10, help="Epochs per sweep run."),
    final_epochs: Optional[int] = typer.Option(None, help="Epochs of the final comparison [default: --epochs]."),
    optimizers_: str = typer.Option(",".join(optimizers.REFERENCE_OPTIMIZERS), "--optimizers",
                                    help="Comma-separated registry names."),
    set_: List[str] = typer.Option([], "--set", help="Other per-optimizer hyperparameters (repeatable)."),
    batch_size: int = typer.Option(32, help="Batch size."),
    seed: int = typer.Option(42, help="First seed."),
    seeds: int = typer.Option(1, help="Seeds per optimizer and rate (the choice uses their mean)."),
    hidden: str = typer.Option("300,100", help="Hidden layer sizes."),
    accelerator: str = typer.Option("auto", help="auto, cpu, gpu."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder of the four IDX files."),
    output_dir: Path = typer.Option(Path("outputs"), help="Where the sweep folder is created."),
    name: Optional[str] = typer.Option(None, help="Folder name [default: a timestamp]; rerun to resume."),
    limit_train_batches: Optional[int] = typer.Option(None, help="Batches per epoch (quick smoke runs)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Tune each optimizer's learning rate on the VALIDATION set, then compare them at their tuned rates."""
    from fmnist_pl.compare import parse_lrs
    from fmnist_pl.compare import sweep as run_sweep

    try:
        if final_epochs is not None and final_epochs < 1:
            raise ConfigError(f"--final-epochs must be a whole number >= 1, got {final_epochs}")
        config = CompareConfig(
            optimizers=_names(optimizers_), epochs=epochs,
            batch_size=batch_size, overrides=tuple(set_), seed=seed, seeds=seeds, hidden=parse_hidden(hidden),
            accelerator=accelerator, data_dir=str(data_dir) if data_dir else None, output_dir=str(output_dir),
            name=name, limit_train_batches=limit_train_batches, progress=progress,
            lrs=parse_lrs(lrs) if lrs and not lr_find else ())
    except USER_ERRORS as exc:
        fail(str(exc))
    run_and_report(lambda: run_sweep(config, final_epochs=final_epochs, echo=typer.echo, lr_find=lr_find))


@app.command()
def report(folder: Path = typer.Argument(..., help="A compare folder, e.g. outputs/<run>.")) -> None:
    """Re-render report.html from the results saved in FOLDER, without training."""
    from fmnist_pl import report as report_module

    try:
        path = report_module.render(folder)
    except USER_ERRORS as exc:
        fail(str(exc))
    typer.echo(f"report: {path}")


@app.command("list-optimizers")
def list_optimizers() -> None:
    """Print the optimizer registry with each optimizer's hyperparameters."""
    for info in optimizers.REGISTRY.values():
        params = ", ".join(f"{k}={v}" for k, v in info.defaults.items())
        typer.echo(f"{info.name:14} {info.class_name:13} {params}")
        typer.echo(f"{'':14} {info.description}")


def main() -> None:
    """Console entry point: Click's usage errors become one line and exit code 2."""
    try:
        rc = app(standalone_mode=False)
    except UsageError as exc:
        hint = f" (see `fmnist-pl {exc.ctx.info_name} --help`)" if exc.ctx and exc.ctx.parent else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
