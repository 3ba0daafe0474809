"""Matplotlib figures built from results (plain data in, a Figure out; PNG bytes via :func:`png_bytes`).

Drawn when the report is rendered, from the results on disk, never at training time.
"""

from __future__ import annotations

import base64
import io
import itertools
import re
from collections import Counter
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display is needed or assumed
# Run names are user text: shown as typed, never parsed as mathtext ("$...$" would be TeX, or an error).
matplotlib.rcParams["text.parse_math"] = False
# No creation date or software version in the PNG: the same results give the same bytes.
_PNG_METADATA = {"Software": None}
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import EngFormatter, LogFormatterSciNotation, MaxNLocator  # noqa: E402


def png_bytes(fig: Figure) -> bytes:
    """``fig`` as PNG bytes; the figure is freed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata=_PNG_METADATA)
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI: the report is one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


class PlainLogFormatter(LogFormatterSciNotation):
    """matplotlib's own log-axis labels (which ticks get one, ``10^k`` and ``2 x 10^k``) as plain text:
    ``10⁻³``, ``2×10⁻³``.

    The base class writes mathtext (``$\\mathdefault{10^{-3}}$``), which prints literally since this
    module turns mathtext off; only the rendering of its label changes here.
    """

    def __call__(self, x: float, pos: int | None = None) -> str:
        label = super().__call__(x, pos)
        math = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
        if math is None:
            return label
        text = re.sub(r"\^\{(-?\d+)\}", lambda m: m.group(1).translate(_SUPERSCRIPT), math.group(1))
        return text.replace("\\times", "×")


def log_x(ax: Any) -> None:
    """A log x axis with plain-text tick labels (:class:`PlainLogFormatter`, major and minor ticks as
    matplotlib's log scale labels them): every log axis of the report is made here."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(PlainLogFormatter())
    ax.xaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


FEW_POINTS = 10  # curves with fewer epochs than this get a marker at each one: a line alone hides them


def learning_curves(history: list[dict[str, float]], title: str = "") -> Figure:
    """The reference's plot, on two axes: train/validation loss (from 0, unbounded above: a diverging
    loss of 1.7 stays in view) and train/validation accuracy per epoch."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    epochs = [row["epoch"] for row in history]
    marker = "o" if len(epochs) < FEW_POINTS else None
    for ax, keys, ylabel in (
        (loss_ax, ("train_loss", "val_loss"), "loss"),
        (acc_ax, ("train_acc", "val_acc"), "accuracy"),
    ):
        for key, style in zip(keys, ("-", "--")):
            ax.plot(epochs, [row[key] for row in history], style, marker=marker, ms=4, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    loss_ax.set_ylim(bottom=0)
    acc_ax.set_ylim(top=min(1.0, acc_ax.get_ylim()[1]))
    fig.suptitle(title)
    return fig


X_AXES = {
    "epoch": "epoch",
    "seconds": "seconds of training",
    "images": "training images seen",
    "evaluations": "forward evaluations (images x population)",
}


def _x(history: list[dict[str, float]], axis: str) -> list[float] | None:
    """A run's x values on ``axis``: epochs, cumulative seconds, or images seen (None if not recorded)."""
    if axis == "epoch":
        return [row["epoch"] for row in history]
    if axis == "seconds":
        return list(itertools.accumulate(row["seconds"] for row in history))
    counts = [row.get(axis) for row in history]  # "images" or "evaluations": running totals
    return None if None in counts else counts


# Beyond this many settings (a learning-rate grid: 4 optimizers x 36 rates) a line per setting in
# the legend and a band each hide the plot (and a 144-entry legend took longer to draw than the lines).
MANY_SETTINGS = 12


def overlay(runs: list[dict[str, Any]], key: str, ylabel: str, axis: str = "epoch") -> Figure:
    """One metric across runs against epochs, seconds or images seen; the seeds of one setting as
    their mean line (x averaged too) with a min-max band.

    With more than :data:`MANY_SETTINGS` settings, each setting is a thin line in its family's colour
    (``run["family"]``: the optimizer, with the architecture when there are several; the setting
    itself without it), no bands, and one legend entry per family."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    by_opt: dict[str, list[tuple[list[float], list[float]]]] = {}
    family: dict[str, str] = {}
    for run in runs:
        xs = _x(run["history"], axis)
        if xs is not None:
            by_opt.setdefault(run["setting"], []).append((xs, [row[key] for row in run["history"]]))
            family.setdefault(run["setting"], run.get("family", run["setting"]))
    many = len(by_opt) > MANY_SETTINGS
    colors = {f: f"C{i % 10}" for i, f in enumerate(dict.fromkeys(family.values()))}
    counts = Counter(family.values())
    seeds = max((len(curves) for curves in by_opt.values()), default=1)
    for label, curves in by_opt.items():
        n = min(len(ys) for _, ys in curves)
        if n == 0:
            continue
        cols = list(zip(*[ys[:n] for _, ys in curves]))
        xs = [sum(c) / len(c) for c in zip(*[x[:n] for x, _ in curves])]
        mean = [sum(c) / len(c) for c in cols]
        if many:
            ax.plot(
                xs, mean, marker="." if n < 40 else None, color=colors[family[label]], lw=0.8, alpha=0.6, markersize=3
            )
            continue
        (line,) = ax.plot(
            xs,
            mean,
            marker="." if n < 40 else None,
            label=label if len(curves) == 1 else f"{label} (mean of {len(curves)})",
        )
        if len(curves) > 1:
            ax.fill_between(xs, [min(c) for c in cols], [max(c) for c in cols], color=line.get_color(), alpha=0.2)
    if many:
        from matplotlib.lines import Line2D

        each = f", each the mean of {seeds} seeds" if seeds > 1 else ""
        ax.legend(
            handles=[Line2D([], [], color=c, label=f"{f} ({counts[f]} settings{each})") for f, c in colors.items()]
        )
    ax.set_xlabel(X_AXES[axis])
    if axis == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axis == "evaluations":
        log_x(ax)  # a population scores each image P times: decades apart from a gradient run
    if axis == "images":
        ax.xaxis.set_major_formatter(EngFormatter())  # 100k, 1M (the report turns mathtext off)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if not many:
        ax.legend()
    return fig


def digit_png(image: Any) -> bytes:
    """One 28x28 Fashion-MNIST image as a grayscale PNG (dark on white, as matplotlib's "binary").

    The report shows test predictions as an HTML grid of these with text captions: one image per
    cell, encoded once and shared by every run (the same first 40 test images), instead of a
    matplotlib figure with forty text labels per run (~0.1 s each to draw, here ~40 us an image).
    """
    from PIL import Image

    pixels = 255 - np.asarray(image, dtype=np.uint8).reshape(28, 28)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="png")  # uint8 [28, 28]: mode "L"
    return buf.getvalue()


def _lr_axes(fig: Figure, ax: Any, ylabel: str, title: str) -> Figure:
    log_x(ax)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return fig


def lr_finder(found: dict[str, dict[str, Any]]) -> Figure:
    """Lightning's lr_find curves: training loss vs learning rate (log x), suggestions circled."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, row in found.items():
        pts = [(lr, loss) for lr, loss in zip(row["finder_lrs"], row["finder_losses"]) if loss is not None]
        (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
        if row.get("chosen") is not None and pts:
            near = min(pts, key=lambda p: abs(p[0] - row["chosen"]))
            ax.plot([near[0]], [near[1]], "o", ms=12, mfc="none", color=line.get_color())
    return _lr_axes(fig, ax, "training loss (smoothed)", "learning-rate finder (circled: suggestion)")


def lr_sweep(sweep: dict[str, dict[str, Any]]) -> Figure:
    """Validation accuracy vs learning rate per optimizer (log x); chosen rates circled, diverged as x."""
    if all(row.get("method") == "lr_find" for row in sweep.values()):
        return lr_finder(sweep)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, row in sweep.items():
        (line,) = ax.plot(row["lrs"], row["val_acc"], "o-", label=name)
        if row.get("chosen") is not None:
            ax.plot([row["chosen"]], [max(row["val_acc"])], "o", ms=14, mfc="none", color=line.get_color())
        if row.get("diverged"):
            low = min((v for r in sweep.values() for v in r["val_acc"]), default=0.0)
            ax.plot(row["diverged"], [low] * len(row["diverged"]), "x", color=line.get_color(), ms=9)
    return _lr_axes(fig, ax, "best validation accuracy", "learning-rate sweep (circled: chosen; x: diverged)")


def tuning_curves(tuning: dict[str, Any]) -> Figure:
    """Expected best validation accuracy against the number of trials k, per method, with its bootstrap
    band and, dotted, the draw without replacement (which reaches the observed best at k = K); a star at
    k = 1 for the method's registry defaults; a second axis in model-epochs (the mean trial's, over the
    methods). Beside it, where the trials recorded their seconds, the same curves against seconds of
    training, each method at its own cost a trial: one shared axis would put a gradient-free method's
    trials (often 100x a gradient method's seconds) on the gradient methods' scale."""
    timed = {name: m for name, m in tuning["methods"].items() if m.get("seconds")}  # none in older files
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(12 if timed else 7, 4.4), squeeze=False)
    ax = axes[0][0]
    colors = {}
    for name, m in tuning["methods"].items():
        (line,) = ax.plot(m["ks"], m["curve"], "-", marker="o" if len(m["ks"]) <= 20 else None, ms=3, label=name)
        colors[name] = line.get_color()
        band = m["band"]
        ax.fill_between(band["ks"], band["lower"], band["upper"], color=line.get_color(), alpha=0.15, lw=0)
        if m.get("curve_without_replacement"):
            ax.plot(m["ks"], m["curve_without_replacement"], ":", lw=1.2, color=line.get_color())
        if m.get("defaults") is not None:
            ax.plot([1], [m["defaults"]], "*", ms=12, color=line.get_color(), mec="black", mew=0.5)
    cost = float(tuning["trial_cost"])
    top = ax.secondary_xaxis("top", functions=(lambda k: k * cost, lambda e: e / cost))
    top.set_xlabel("model-epochs (trials x epochs x tuning seeds; the mean trial's)")
    ax.set_xlabel("trials k")
    ax.set_ylabel("expected best validation accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(
        "expected best of k trials\n(band: bootstrap 95 %; dotted: without replacement; star: defaults)", fontsize=9
    )
    if timed:
        right = axes[0][1]
        for name, m in timed.items():
            right.plot(
                m["seconds"],
                m["curve"],
                "-",
                marker="o" if len(m["ks"]) <= 20 else None,
                ms=3,
                color=colors[name],
                label=name,
            )
        log_x(right)
        right.set_xlabel(
            "seconds of training of k trials\n(each method's mean trial: its share of its lockstep groups' time)"
        )
        right.set_ylabel("expected best validation accuracy")
        right.grid(True, which="both", alpha=0.3)
        right.legend()
        right.set_title("the same curves against compute\n(each method at its own cost a trial)", fontsize=9)
    fig.tight_layout()
    return fig


def target_profile(levels: list[float], profile: dict[str, list[float]]) -> Figure:
    """The share of each optimizer's runs that reached each level of the best validation accuracy
    (a performance profile): a method whose line stays high to the right reaches near-best accuracy
    reliably; one target alone would show a single column of this."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, shares in profile.items():
        ax.step([100 * level for level in levels], shares, where="post", label=name)
    ax.set_xlabel("target: % of the best validation accuracy any run reached")
    ax.set_ylabel("share of runs that reached it")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("time-to-target profile (over seeds and architectures)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
