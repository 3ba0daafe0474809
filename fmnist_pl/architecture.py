"""The network's shape as plain facts: layer sizes, parameter count, summary, names. No torch.

Everything that must agree on the architecture (the engine, the config, the report, the CLI's
summary) reads it from here, so the layer sizes are written down once.
"""

from __future__ import annotations

from typing import Any, Sequence

IN_FEATURES = 28 * 28  # Fashion-MNIST images, flattened (Keras' Flatten)
NUM_CLASSES = 10
REFERENCE_HIDDEN: tuple[int, ...] = (300, 100)  # Géron's Dense 300 -> Dense 100, which the reference trained


def layer_sizes(hidden: Sequence[int]) -> list[int]:
    """``[784, *hidden, 10]``: the widths from input to logits."""
    return [IN_FEATURES, *hidden, NUM_CLASSES]


def layer_shapes(hidden: Sequence[int]) -> list[tuple[int, int]]:
    """``(out, in)`` of every dense layer, in order (torch's ``Linear.weight`` layout)."""
    sizes = layer_sizes(hidden)
    return [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]


def parameter_count(hidden: Sequence[int]) -> int:
    """Weights and biases of the MLP: 266,610 for the reference's (300, 100)."""
    return sum(o * i + o for o, i in layer_shapes(hidden))


def model_summary(hidden: Sequence[int]) -> list[dict[str, Any]]:
    """Keras-style summary rows (layer, output shape, parameters) as plain data."""
    rows: list[dict[str, Any]] = [{"layer": "Flatten", "output": f"(None, {IN_FEATURES})", "params": 0}]
    for i, (o, n_in) in enumerate(layer_shapes(hidden)):
        act = "ReLU" if i < len(hidden) else "softmax (in the loss)"
        rows.append({"layer": f"Dense {o}, {act}", "output": f"(None, {o})", "params": o * n_in + o})
    return rows


def format_summary(hidden: Sequence[int]) -> str:
    """The model summary as text, Keras style (the reference printed ``model.summary()``)."""
    lines = [f"{'Layer':34} {'Output shape':14} {'Param #':>9}"]
    lines += [f"{r['layer']:34} {r['output']:14} {r['params']:>9,}" for r in model_summary(hidden)]
    lines.append(f"Total params: {parameter_count(hidden):,}")
    return "\n".join(lines)


def arch_name(hidden: Sequence[int]) -> str:
    """An architecture's short name, ``h300-100``: run-name prefix and report heading."""
    return "h" + "-".join(map(str, hidden))
