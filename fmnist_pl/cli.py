"""The ``fmnist-pl`` command line: parse, build a config, call the API, print. Nothing else.

Options that ``compare`` and ``sweep`` share are declared once (the ``Annotated`` aliases
below) and turned into a :class:`~fmnist_pl.config.CompareConfig` by one function. Only light
modules are imported at start-up (no torch, no Lightning), so ``--help`` and every error a
user can cause answer in a fraction of a second.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, List, Optional

import typer

from fmnist_pl import __version__
from fmnist_pl.config import CompareConfig, absolute_path, parse_hidden, parse_lrs
from fmnist_pl.data.idx import DEBIAN_DIR
from fmnist_pl.errors import USER_ERRORS, ConfigError, GroupFailed, Interrupted
from fmnist_pl.execution.cluster import parse_address
from fmnist_pl.optim.registry import REFERENCE_OPTIMIZERS, REGISTRY
from fmnist_pl.study.setup import check_output_folder

if TYPE_CHECKING:
    from fmnist_pl.execution.backend import Backend
    from fmnist_pl.report.figures import Drawer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Which optimizer trains the Fashion-MNIST MLP best? Train, compare, report.",
)

# Click's UsageError, whether Typer vendors Click (>= 0.25) or depends on it.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

# ------------------------------------------------------------------ options shared by compare and sweep
# Help texts are Rich markup: a "[word...]" in one would vanish from --help. A default that is not a
# value (a timestamp, one per core) goes in show_default, which Typer prints as "[default: (...)]".
BatchSize = Annotated[int, typer.Option(metavar="N", help="Batch size (Keras' default, which the reference used).")]
Optimizers = Annotated[
    str,
    typer.Option(
        "--optimizers", metavar="NAMES", help="Comma-separated registry names; see `fmnist-pl list-optimizers`."
    ),
]
Set = Annotated[
    List[str],
    typer.Option(
        "--set", metavar="OPT.PARAM=VALUE", help="Per-optimizer hyperparameter, e.g. adam.lr=3e-4 (repeatable)."
    ),
]
Seed = Annotated[
    int, typer.Option(metavar="N", help="First seed; every optimizer gets the same weights and batch order.")
]
Seeds = Annotated[
    int, typer.Option(metavar="N", help="Runs per optimizer (seed, seed+1, ...), paired across optimizers.")
]
Hidden = Annotated[
    List[str],
    typer.Option(
        metavar="SIZES",
        help="Hidden layer sizes; repeat to compare the "
        "optimizers on several architectures: --hidden 300,100 --hidden "
        "512,256,128.",
    ),
]
Schedule = Annotated[
    str,
    typer.Option(
        metavar="constant|cosine|warmup-cosine",
        help="Every gradient optimizer's learning-rate schedule over --epochs (one optimizer's: --set adam.schedule=cosine).",
    ),
]
Target = Annotated[
    float, typer.Option(metavar="ACCURACY", help="Report epochs and seconds to reach this validation accuracy.")
]
Accelerator = Annotated[str, typer.Option(metavar="auto|cpu|gpu", help="auto (GPU when present), cpu, gpu.")]
DataDir = Annotated[
    Optional[Path],
    typer.Option(metavar="DIR", help="Folder of the four IDX files.", show_default=f"$FMNIST_DATA, else {DEBIAN_DIR}"),
]
Download = Annotated[bool, typer.Option(help="Download with torchvision if no local copy exists (online only).")]
OutputDir = Annotated[Path, typer.Option(metavar="DIR", help="Where result folders are created.")]
Name = Annotated[
    Optional[str], typer.Option(metavar="NAME", help="Folder name under --output-dir.", show_default="a timestamp")
]
LimitTrainBatches = Annotated[Optional[int], typer.Option(metavar="N", help="Batches per epoch (quick smoke runs).")]
Progress = Annotated[bool, typer.Option(help="Show progress bars.")]
EvalPoints = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Validations per run, evenly spread over its budget (or its batches when it has fewer "
        "epochs than N): anytime curves for every method. 0: epoch ends only.",
    ),
]
Separate = Annotated[
    bool,
    typer.Option(
        help="Train each run alone, so that its seconds per epoch are its own "
        "optimizer's cost (slower than the default lockstep; same numbers)."
    ),
]
Ray = Annotated[
    Optional[str],
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Train on a Ray cluster: auto (the cluster this machine is in), "
        "ray://HOST:10001, HOST:6379, or local[:N] (start Ray here with N CPUs). Same folder, report and numbers as "
        "without it.",
    ),
]
Workers = Annotated[
    Optional[int],
    typer.Option(
        metavar="N",
        help="Processes that train at the same time on this CPU, each a share of the runs; 1 trains every "
        "run in this process. Same numbers either way.",
        show_default="one per core, at most one per run",
    ),
]
DEFAULT_OPTIMIZERS = ",".join(REFERENCE_OPTIMIZERS)


def fail(message: str) -> None:
    """One line on stderr, exit code 2: the convention for bad input (unless a stop caused it)."""
    from fmnist_pl.runtime import stops

    if stops.requested() is not None:
        raise stops.Stopped(stops.requested())
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _fields(name: str, value: object) -> dict[str, object]:
    """One command-line option -> the CompareConfig field(s) it sets, in the config's own form."""
    if name == "optimizers":
        return {"optimizers": tuple(n.strip() for n in str(value).split(",") if n.strip())}
    if name == "set_":
        return {"overrides": tuple(value)}  # type: ignore[arg-type]
    if name == "hidden":
        sizes = [parse_hidden(h) for h in value]  # type: ignore[union-attr]
        return {"hidden": sizes[0], "more_hidden": tuple(sizes[1:])}
    if name in ("data_dir", "output_dir"):
        return {name: str(value) if value else None}
    return {name: value}


def _config(**options: object) -> CompareConfig:
    """The options -> a validated config (raises the one-line user errors)."""
    fields: dict[str, object] = {}
    for name, value in options.items():
        fields |= _fields(name, value)
    return CompareConfig(**fields)  # type: ignore[arg-type]


def _print_version(asked: bool) -> None:
    """``--version``: print the version and exit before any command runs (an eager option)."""
    if asked:
        typer.echo(f"fmnist-pl {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """The options that come before the command (``--version``)."""


# The commands are long only because Typer declares every option in the signature; each body is
# a few lines that build the config and call the API (fmnist_pl.study).
@app.command()
def compare(
    ctx: typer.Context,
    epochs: Annotated[int, typer.Option(metavar="N", help="Epochs per run; the default is the reference's.")] = 30,
    batch_size: BatchSize = 32,
    optimizers: Optimizers = DEFAULT_OPTIMIZERS,
    lr: Annotated[
        Optional[float],
        typer.Option(
            metavar="RATE",
            help="One learning rate for every gradient optimizer (gradient-free ones keep theirs; see --set).",
        ),
    ] = None,
    set_: Set = [],
    seed: Seed = 42,
    seeds: Seeds = 1,
    hidden: Hidden = ["300,100"],
    target: Target = 0.88,
    schedule: Schedule = "constant",
    accelerator: Accelerator = "auto",
    data_dir: DataDir = None,
    download: Download = False,
    output_dir: OutputDir = Path("outputs"),
    name: Name = None,
    limit_train_batches: LimitTrainBatches = None,
    progress: Progress = True,
    separate: Separate = False,
    time_budget: Annotated[
        Optional[float],
        typer.Option(
            metavar="SECONDS",
            help="The same as --budget seconds=SECONDS.",
        ),
    ] = None,
    budget: Annotated[
        Optional[str],
        typer.Option(
            metavar="KIND=AMOUNT",
            help="Stop every run once it has spent this: seconds=30 (training time after a warm-up step, "
            "the training thread's CPU time on a CPU; each run trains alone), images=2e6 (training images seen) or "
            "evaluations=1e8 (forward evaluations: images x population for a search). --epochs still caps it.",
        ),
    ] = None,
    eval_points: EvalPoints = 20,
    resume: Annotated[
        Optional[Path], typer.Option(metavar="DIR", help="Continue the compare in this folder (its own settings).")
    ] = None,
    ray: Ray = None,
    workers: Workers = None,
) -> None:
    """Train every optimizer on Fashion-MNIST, then write the HTML report and print the ranking."""
    from fmnist_pl.study.compare import compare as run_compare

    try:
        config = (
            resume_config(resume, ctx, progress)
            if resume is not None
            else _config(
                optimizers=optimizers,
                set_=set_,
                hidden=hidden,
                data_dir=data_dir,
                output_dir=output_dir,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                seeds=seeds,
                target=target,
                schedule=schedule,
                accelerator=accelerator,
                download=download,
                name=name,
                limit_train_batches=limit_train_batches,
                progress=progress,
                separate=separate,
                time_budget=time_budget,
                budget=budget,
                eval_points=eval_points,
            )
        )
        if ray is not None:
            parse_address(ray)
        processes = _workers(workers, config, ray)
        check_output_folder(config)  # before any worker process starts
    except USER_ERRORS as exc:
        fail(str(exc))
    run_and_report(
        lambda drawer, backend: run_compare(
            config, resume=resume is not None, echo=typer.echo, backend=backend, drawer=drawer
        ),
        processes,
        ray,
    )


@app.command()
def sweep(
    lrs: Annotated[
        Optional[str],
        typer.Option(
            metavar="START:STOP:COUNT|LIST",
            help="The grid: START:STOP:COUNT (log grid) like 1e-4:1e0:7, or 0.001,0.01. It sets a gradient "
            "optimizer's lr and a gradient-free method's stdev_init (the spread its search starts with).",
        ),
    ] = None,
    lr_find: Annotated[
        bool, typer.Option("--lr-find", help="Use Lightning's learning-rate finder instead of a grid.")
    ] = False,
    epochs: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Epochs per run of the learning-rate search, and of the "
            "final comparison unless --final-epochs is given.",
        ),
    ] = 10,
    final_epochs: Annotated[
        Optional[int],
        typer.Option(
            metavar="N", help="Epochs per run of the final comparison at the tuned rates.", show_default="--epochs"
        ),
    ] = None,
    final_seeds: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Seeds of the final comparison: fresh ones after the tuning seeds (seed+seeds, ...), so that "
            "the luck that won the selection is not carried into the verdict.",
        ),
    ] = 2,
    batch_size: BatchSize = 32,
    optimizers: Optimizers = DEFAULT_OPTIMIZERS,
    set_: Set = [],
    seed: Seed = 42,
    seeds: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Tuning seeds: runs per optimizer and grid value (seed, seed+1, ...); the choice is their mean "
            "validation accuracy.",
        ),
    ] = 1,
    hidden: Hidden = ["300,100"],
    target: Target = 0.88,
    schedule: Schedule = "constant",
    accelerator: Accelerator = "auto",
    data_dir: DataDir = None,
    download: Download = False,
    output_dir: OutputDir = Path("outputs"),
    name: Name = None,
    limit_train_batches: LimitTrainBatches = None,
    progress: Progress = True,
    eval_points: EvalPoints = 20,
    separate: Separate = False,
    ray: Ray = None,
    workers: Workers = None,
) -> None:
    """Tune each optimizer on the VALIDATION set of the tuning seeds, then compare the tuned ones on fresh seeds.

    The grid tunes a gradient optimizer's lr and a gradient-free method's stdev_init. Rerun the
    same command (same --output-dir and --name) to resume it.
    """
    from fmnist_pl.study.sweep import check_final
    from fmnist_pl.study.sweep import sweep as run_sweep

    try:
        config = _config(
            optimizers=optimizers,
            set_=set_,
            hidden=hidden,
            data_dir=data_dir,
            output_dir=output_dir,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            seeds=seeds,
            target=target,
            schedule=schedule,
            accelerator=accelerator,
            download=download,
            name=name,
            limit_train_batches=limit_train_batches,
            progress=progress,
            separate=separate,
            eval_points=eval_points,
            lrs=parse_lrs(lrs) if lrs and not lr_find else (),
        )
        check_final(config, final_epochs, final_seeds)
        if ray is not None:
            parse_address(ray)
        processes = _workers(workers, config, ray)
        check_output_folder(config, "sweep")
    except USER_ERRORS as exc:
        fail(str(exc))
    run_and_report(
        lambda drawer, backend: run_sweep(
            config,
            final_epochs=final_epochs,
            echo=typer.echo,
            lr_find=lr_find,
            backend=backend,
            drawer=drawer,
            final_seeds=final_seeds,
        ),
        processes,
        ray,
    )


@app.command()
def tune(
    ctx: typer.Context,
    trials: Annotated[
        int, typer.Option(metavar="K", help="Configurations per method, sampled from its search space.")
    ] = 16,
    sampler: Annotated[
        str,
        typer.Option(
            metavar="qmc|random|tpe|grid",
            help="How trials are drawn: qmc (quasi-random, as AlgoPerf), random, tpe (adaptive; use with --batch), "
            "or grid (one searched hyperparameter).",
        ),
    ] = "qmc",
    space: Annotated[
        List[str],
        typer.Option(
            metavar="OPT.PARAM=LOW:HIGH[:log|:int]",
            help="Change a search range, e.g. adam.lr=1e-5:1e-1:log, or fix one: sgd.lr=0.01 (repeatable). "
            "`fmnist-pl list-optimizers --spaces` shows the ranges.",
        ),
    ] = [],
    batch: Annotated[
        Optional[int],
        typer.Option(
            metavar="N", help="Trials per method asked and trained together in one round.", show_default="all"
        ),
    ] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Optuna storage of the studies (e.g. postgresql://...).",
            show_default="sqlite in the folder",
        ),
    ] = None,
    protocol: Annotated[
        Optional[str],
        typer.Option(
            metavar="deepobs|crowded-valley|algoperf",
            help="A published tuning protocol: it sets --trials, --sampler, --final-seeds, the studies and the "
            "budgets the ranking is read at (the report names its source).",
        ),
    ] = None,
    scale: Annotated[
        float,
        typer.Option(metavar="F", help="Scale a --protocol's trials, studies and final seeds by F (0 < F <= 1)."),
    ] = 1.0,
    studies: Annotated[
        int, typer.Option(metavar="N", help="Independent studies per method (AlgoPerf's score: median over them).")
    ] = 1,
    prune: Annotated[
        str,
        typer.Option(
            metavar="none|halving",
            help="halving: successive halving on epoch rungs, keeping each method's best 1/--eta at every rung; "
            "those go on from the rung's checkpoints.",
        ),
    ] = "none",
    eta: Annotated[int, typer.Option(metavar="N", help="Successive halving's reduction factor.")] = 3,
    epochs: Annotated[int, typer.Option(metavar="N", help="Epochs per trial (and of the final runs).")] = 10,
    final_epochs: Annotated[
        Optional[int], typer.Option(metavar="N", help="Epochs per final run.", show_default="--epochs")
    ] = None,
    final_seeds: Annotated[
        int,
        typer.Option(metavar="N", help="Fresh seeds of the final comparison of the chosen configurations."),
    ] = 2,
    batch_size: BatchSize = 32,
    optimizers: Optimizers = DEFAULT_OPTIMIZERS,
    set_: Set = [],
    seed: Seed = 42,
    seeds: Annotated[int, typer.Option(metavar="N", help="Tuning seeds: a trial's value is their mean.")] = 1,
    hidden: Hidden = ["300,100"],
    budget: Annotated[
        Optional[str],
        typer.Option(metavar="KIND=AMOUNT", help="Stop every trial at images=… or evaluations=… (see compare)."),
    ] = None,
    target: Target = 0.88,
    schedule: Schedule = "constant",
    accelerator: Accelerator = "auto",
    data_dir: DataDir = None,
    download: Download = False,
    output_dir: OutputDir = Path("outputs"),
    name: Name = None,
    limit_train_batches: LimitTrainBatches = None,
    progress: Progress = True,
    eval_points: EvalPoints = 20,
    defaults: Annotated[
        bool,
        typer.Option(
            help="Also train each method once at its registry defaults: the one-shot marker of the curves "
            "(Crowded Valley's untuned budget)."
        ),
    ] = True,
    resume: Annotated[
        Optional[Path], typer.Option(metavar="DIR", help="Continue the tune in DIR as it was started.")
    ] = None,
    ray: Ray = None,
    workers: Workers = None,
) -> None:
    """Tune every method with the same number of trials on the VALIDATION set, then compare the tuned ones on fresh seeds.

    The report shows the expected best validation accuracy against the number of trials, and the
    ranking at 1, 4 and all trials. Optuna's studies are in study.db (optuna-dashboard reads it).
    """
    from fmnist_pl.study.tune import TuneConfig
    from fmnist_pl.study.tune import tune as run_tune

    try:
        if resume is not None:
            config = _saved_tune(resume, ctx, progress)
        else:
            base = _config(
                optimizers=optimizers,
                set_=set_,
                hidden=hidden,
                data_dir=data_dir,
                output_dir=output_dir,
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                seeds=seeds,
                target=target,
                schedule=schedule,
                accelerator=accelerator,
                download=download,
                name=name,
                limit_train_batches=limit_train_batches,
                progress=progress,
                budget=budget,
                eval_points=eval_points,
            )
            rest = {
                "defaults": defaults,
                "space": tuple(space),
                "storage": storage,
                "batch": batch,
                "final_epochs": final_epochs,
                "prune": prune,
                "eta": eta,
            }
            if protocol is not None:
                fixed = ("trials", "sampler", "final_seeds", "studies")
                sets = [f"--{k.replace('_', '-')}" for k in _given(ctx) if k in fixed]
                if sets:
                    raise ConfigError(
                        f"--protocol {protocol} sets {', '.join(sets)}: drop them (--scale scales it down)"
                    )
                config = TuneConfig.for_protocol(base, protocol, scale, **rest)
            else:
                if scale != 1.0:
                    raise ConfigError("--scale scales a --protocol: give one, or set --trials and --final-seeds")
                config = TuneConfig(
                    base, trials=trials, sampler=sampler, final_seeds=final_seeds, studies=studies, **rest
                )
        if ray is not None:
            parse_address(ray)
        processes = _workers(workers, config.base, ray)
        check_output_folder(config.base, "tune")
    except USER_ERRORS as exc:
        fail(str(exc))
    run_and_report(
        lambda drawer, backend: run_tune(config, echo=typer.echo, backend=backend, drawer=drawer), processes, ray
    )


def _saved_tune(folder: Path, ctx: typer.Context, progress: bool) -> Any:
    """``tune --resume DIR``: the settings DIR's tune started with; options that would change them are refused."""
    from dataclasses import replace

    from fmnist_pl import store
    from fmnist_pl.study.tune import TUNE_FILE, TuneConfig

    folder = Path(absolute_path(folder, "--resume"))
    typed = _given(ctx)
    # Where the data is may change (a folder moved to another machine); what the tune trains may not.
    relocated = {k: typed.pop(k) for k in ("data_dir", "download") if k in typed}
    given = [f"--{k.replace('_', '-')}" for k in typed]
    if given:
        raise ConfigError(f"--resume continues the tune in {folder} as it was started; drop {', '.join(given)}")
    try:
        saved = TuneConfig.from_dict(store.read_json(folder / TUNE_FILE))
    except FileNotFoundError:
        raise ConfigError(
            f"{folder} holds no tune ({TUNE_FILE} is missing); give the folder `fmnist-pl tune` printed"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder / TUNE_FILE} is not a tune's settings ({exc})") from None
    base = replace(saved.base, output_dir=str(folder.parent), name=folder.name, progress=progress, **relocated)
    return replace(saved, base=base)


def _workers(asked: int | None, config: CompareConfig, ray: str | None) -> int:
    """The training processes to start: ``--workers`` (checked against the rest), else the default."""
    from fmnist_pl.execution.pool import check_workers, default_workers

    if asked is None:
        return 1 if ray is not None else default_workers(config)
    check_workers(asked, config, ray)
    return asked


def _backend(workers: int, ray: str | None) -> Backend:
    """Where the runs train: a Ray cluster (``--ray``), else ``workers`` processes of this machine."""
    if ray is not None:
        from fmnist_pl.execution.ray_backend import RayCluster

        return RayCluster(ray)
    from fmnist_pl.execution.pool import local_backend

    return local_backend(workers)


def run_and_report(train: Callable[[Drawer, Backend], Path], workers: int = 1, ray: str | None = None) -> None:
    """Run ``train``; then print the ranking and the report's path. Bad input: exit 2; interrupted: 130.

    ``train`` gets the backend (a Ray cluster for ``ray``, else this machine's ``workers``
    training processes) and the report figures' worker process, started here, first: their
    imports run while this process plans and reads the data, and the figures are drawn while
    the summary is computed. The command line starts them (not the Python API), as a spawned
    process imports the ``__main__`` module again - this one's is guarded; a user's script might not be.
    """
    try:
        with _backend(workers, ray) as backend:
            # Imported once the pool has started (the report's modules bring numpy, ~80 ms): the pool's
            # fork server imports Lightning, the start's critical path.
            from fmnist_pl.report.figures import Drawer

            with Drawer() as drawer:
                out = train(drawer, backend)
    except USER_ERRORS as exc:
        fail(str(exc))
    except GroupFailed as exc:  # a bug, not bad input: exit 1 (its traceback is in errors.log)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Interrupted as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(exc.exit_code) from None
    print_ranking(out)
    typer.echo(f"report: {shlex.quote(str(out / 'report.html'))}")


def _given(ctx: typer.Context) -> dict[str, object]:
    """The options typed on the command line (not left at their defaults), as config fields."""
    out: dict[str, object] = {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)  # Click's ParameterSource (Typer may vendor Click)
        if name in ("resume", "progress", "ray", "workers") or source is None or source.name == "DEFAULT":
            continue
        out |= _fields(name, value)
    return out


def resume_config(folder: Path, ctx: typer.Context | None = None, progress: bool = True) -> CompareConfig:
    """The saved config of ``folder``; an option typed beside ``--resume`` must agree with it."""
    from fmnist_pl import store

    folder = Path(absolute_path(folder, "--resume"))  # "." and "~/x" name the folder they mean
    loaded = store.load_compare(folder)  # raises ResultsError for a folder without results
    saved = CompareConfig.from_dict(loaded["config"]["config"]).to_dict()
    given = _given(ctx) if ctx is not None else {}
    flag = {"overrides": "--set", "more_hidden": "--hidden"}
    asked = CompareConfig.from_dict(saved | given).to_dict()  # the same normal form as the saved settings
    # Where the data is may change (a folder moved to another machine); what it trains may not.
    relocated = {k: given.pop(k) for k in ("data_dir", "download") if k in given}
    conflicts = [
        f"{flag.get(k, '--' + k.replace('_', '-'))} {given[k]!r} (saved: {saved[k]!r})"
        for k in given
        if k in ("output_dir", "name") or asked[k] != saved[k]
    ]
    if conflicts:
        raise ConfigError(
            f"--resume continues with the settings saved in {folder / store.CONFIG_FILE}; "
            f"{'; '.join(conflicts)} conflict: drop them, or start a new compare with another --name"
        )
    return CompareConfig.from_dict(
        saved | relocated | {"output_dir": str(folder.parent), "name": folder.name, "progress": progress}
    )


def print_ranking(folder: Path) -> None:
    """The summary table, the ranking with its 95 % intervals and every pair's verdict, as computed into
    ``summary.json`` (nothing recomputed here; worded as the report words them)."""
    from rich.console import Console
    from rich.table import Table

    from fmnist_pl import store
    from fmnist_pl.analysis.summary import interval_text, intervals_note, pair_view, ranking_note

    summary = store.read_json(folder / store.SUMMARY_FILE)
    table = Table(title="Test set, last epoch")
    for col in ("run", "status", "accuracy", "macro-F1", "best val epoch", "s/epoch"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")

    def fmt(value: float | int | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    for row in summary["rows"]:
        table.add_row(
            row["run"],
            row["status"],
            fmt(row["test_acc"], ".4f"),
            fmt(row["test_f1"], ".4f"),
            fmt(row["best_epoch"], "d"),
            fmt(row["seconds_per_epoch"], ".2f"),
        )
    Console().print(table)
    acc, f1 = summary["rankings"]["accuracy"], summary["rankings"]["macro-F1"]
    sig = summary["significance"]
    typer.echo(f"ranking by accuracy: {acc['text'] or 'no finished run'}")
    typer.echo(f"  {ranking_note(acc, sig)}")
    f1_of = {e["name"]: e for e in f1["entries"]}
    width = max((len(e["name"]) for e in acc["entries"]), default=0)
    for e in acc["entries"]:
        f = f1_of.get(e["name"])
        f1_text = f"{f['mean']:.4f} {interval_text(f['low'], f['high'])}" if f else "–"
        typer.echo(
            f"  {e['name']:<{width}}  accuracy {e['mean']:.4f} {interval_text(e['low'], e['high'])}  macro-F1 {f1_text}"
        )
    if acc["entries"]:
        typer.echo(f"  {intervals_note(acc)}")
    if acc["left_out"]:
        typer.echo(f"  left out (diverged or unfinished): {', '.join(acc['left_out'])}")
    if sig:
        if sig["caveat"]:
            typer.secho(sig["caveat"], fg="yellow", bold=True)
        typer.echo(f"pairs ({sig['test']}, alpha {sig['alpha']:g}):")
        for pair in map(pair_view, sig["pairs"]):
            typer.echo(
                f"  {pair['pair']}: {pair['diff']} {pair['interval']} ({pair['interval_kind']}), {pair['test']}, "
                f"p {pair['p']}, p (Holm) {pair['p_holm']}: {pair['verdict']}"
            )
            for more in (pair["record"], pair["power"]):
                if more:
                    typer.echo(f"    {more}")
    if summary["missing"]:
        typer.echo(f"missing runs: {', '.join(summary['missing'])}")


@app.command()
def report(folder: Path = typer.Argument(..., metavar="FOLDER", help="A compare folder, e.g. outputs/<run>.")) -> None:
    """Rebuild summary.json and report.html from the results saved in FOLDER, without training."""
    from fmnist_pl.study.compare import report as rebuild

    try:
        path = rebuild(folder)
    except USER_ERRORS as exc:
        fail(str(exc))
    typer.echo(f"report: {shlex.quote(str(path))}")


@app.command("list-optimizers")
def list_optimizers(
    spaces: Annotated[bool, typer.Option("--spaces", help="Also show each one's search space (tune).")] = False,
) -> None:
    """Print the optimizer registry, gradient and gradient-free, with each one's hyperparameters."""
    from fmnist_pl.optim import spaces as search

    for kind in ("gradient", "gradient-free"):
        typer.echo(f"{kind} optimizers:")
        for info in (i for i in REGISTRY.values() if i.kind == kind):
            params = ", ".join(f"{k}={v}" for k, v in info.defaults.items())
            typer.echo(f"  {info.name:14} {info.class_name:16} {params}")
            typer.echo(f"  {'':14} {info.description}")
            if spaces and info.name in search.SPACES:
                space = search.SPACES[info.name]
                for line in search.describe(space).splitlines():
                    typer.echo(f"  {'':14} search: {line}")
                typer.echo(f"  {'':14} ranges: {space.source}")


def main() -> None:
    """Console entry point: Click's usage errors become one line and exit code 2; Ctrl-C or SIGTERM
    before a compare has started (while torch loads, say) exit 130/143 with one line, too. The
    interpreter's exit skips collecting what the libraries created at import (:func:`freeze_at_exit`)."""
    from fmnist_pl.runtime.imports import freeze_at_exit

    freeze_at_exit()
    _main()


def _main() -> None:
    from fmnist_pl.runtime import stops

    try:
        with stops.stops_as_exceptions():
            rc = app(standalone_mode=False)
    except stops.Stopped as stop:
        typer.echo("interrupted before anything was written", err=True)
        sys.exit(stop.exit_code)
    except UsageError as exc:
        hint = f" (see `fmnist-pl {exc.ctx.info_name} --help`)" if exc.ctx and exc.ctx.parent else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception:
        if stops.requested() is None:
            raise
        # A stop that landed inside a library (torch's import, say) and came out as another error.
        typer.echo("interrupted before anything was written", err=True)
        sys.exit(128 + stops.requested())
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
