"""The reference MLP, and the same network stacked K times for batched training and evaluation.

* :class:`MLP` - the plain ``nn.Module`` of the reference (784 -> 300 -> 100 -> 10, ReLU,
  Glorot-uniform weights and zero biases as Keras' ``Dense`` defaults).
* :func:`stacked_logits` - K such networks at once from weights stacked as ``[K, out, in]``:
  a few batched matrix multiplies instead of K sets of small ones. It is a pure function of
  the tensors it is given, so the lockstep engine (trained weights, :class:`StackedMLP`) and
  population evaluation (sampled weights, :mod:`fmnist_pl.engine.population`) share it.

On a CPU the first layer - nine tenths of the network's multiplies - runs on oneDNN's GEMM
(:class:`_FirstLayer`), the rest on torch's BLAS (MKL). MKL's SGEMM takes its AVX2 code on
AMD CPUs, where oneDNN's uses AVX-512: 2-2.5x the throughput at this layer's shapes
(``benchmarks/bench_gemm.py``; figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from fmnist_pl.architecture import REFERENCE_HIDDEN, layer_sizes


class MLP(nn.Module):
    """Flatten -> Dense(h, ReLU)... -> Dense(10) logits; 266,610 parameters for hidden=(300, 100)."""

    def __init__(self, hidden: Sequence[int] = REFERENCE_HIDDEN) -> None:
        super().__init__()
        sizes = layer_sizes(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(fan_in, fan_out)
            # Keras Dense defaults, which the reference used (torch's own default is Kaiming-uniform).
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < len(hidden):
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.layers if isinstance(m, nn.Linear)]


def seeded_mlp(hidden: Sequence[int], seed: int) -> MLP:
    """The initial weights of seed ``seed``: the same for every optimizer (a paired design)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return MLP(hidden)
    finally:
        torch.random.set_rng_state(generator_state)


def _stacked_layer(bias: torch.Tensor, weight: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``weight @ h + bias`` per member: ``[K, out, in] @ [K, in, B] -> [K, out, B]``.

    Never with K = 1. A batched multiply of ONE matrix runs the BLAS's multi-threaded GEMM,
    which for small layers (the 10x100 output layer) splits the reduction across threads and
    rounds differently from the per-member single-threaded GEMMs of K >= 2. A lone member is
    therefore multiplied beside an inert zero twin, so that a run's numbers do not depend on
    how many runs share its lockstep group (tests/engine/test_lockstep.py checks every epoch).
    """
    if weight.shape[0] == 1:
        twin = (
            torch.cat([bias, torch.zeros_like(bias)]),
            torch.cat([weight, torch.zeros_like(weight)]),
            torch.cat([h, torch.zeros_like(h)]),
        )
        return torch.baddbmm(*twin)[:1]
    return torch.baddbmm(bias, weight, h)


def _onednn_linear() -> Callable[..., torch.Tensor] | None:
    """oneDNN's fp32 ``linear`` as torch binds it for its own compiler's CPU code, where this build has it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_LINEAR = _onednn_linear()


def _gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ bᵀ`` for contiguous ``a: [..., M, K]``, ``b: [N, K]`` on oneDNN: ``[..., M, N]``.

    A row of the result depends only on its row of ``a`` (the same reduction whatever ``M``), so a
    member's numbers do not depend on how many members share the multiply
    (tests/engine/test_mlp.py checks it at the shapes the engine uses).
    """
    assert _LINEAR is not None
    return _LINEAR(a, b, None, "none", [], "")


class _FirstLayer(torch.autograd.Function):
    """``relu(w @ xᵀ + b)`` per seed group: the first layer of every member, ``w: [G, M, 784]`` (a group's
    members' weights stacked row-wise), ``b: [G, M, 1]``, ``x: [G, B, 784]`` -> ``[G, M, B]``,
    its GEMMs forward and backward on oneDNN.

    Its own autograd function because torch routes fp32 ``mm`` to MKL only. It takes all the seed
    groups at once so that the weight gradient comes back as one tensor (one group's as oneDNN
    writes it, several stacked): a gradient per group's slice would make autograd zero a
    whole-size gradient and copy each slice in, every step. The ReLU is inside it, as its output
    may not be modified in place outside.
    """

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = _per_group(w, [xi.contiguous() for xi in x]).add_(b).relu_()
        ctx.save_for_backward(w, x, h)
        return h

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        w, x, h = ctx.saved_tensors
        grad = torch.ops.aten.threshold_backward(grad, h, 0)
        grad_w = grad_b = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_w = _per_group(grad.contiguous(), [xi.T.contiguous() for xi in x])
        if ctx.needs_input_grad[1]:
            grad_b = grad.sum(2, keepdim=True)
        if ctx.needs_input_grad[2]:
            grad_x = torch.bmm(grad.transpose(1, 2), w)
        return grad_w, grad_b, grad_x


def _per_group(a: torch.Tensor, b: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[G, M, N]``: ``a[i] @ b[i]ᵀ`` for ``a: [G, M, K]`` (one group: one call)."""
    if len(b) == 1:
        return _gemm(a, b[0])
    return torch.stack([_gemm(a[i], bi) for i, bi in enumerate(b)])


def _uses_onednn(w: torch.Tensor) -> bool:
    return _LINEAR is not None and w.device.type == "cpu" and w.dtype == torch.float32


def stacked_logits(
    weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], x: torch.Tensor, groups: int = 1
) -> torch.Tensor:
    """Logits ``[K, 10, B]`` of K MLPs whose layer ``i`` is ``weights[i]: [K, out, in]``, ``biases[i]: [K, out]``.

    ``x`` is ``[B, 784]`` (every member sees it) or ``[G, B, 784]`` with ``groups = G``:
    members are ordered seed-major, member ``k`` belongs to group ``k // (K / G)`` and sees
    that group's images. The first layer of the members of one group is one GEMM (they share
    the input); the deeper layers are batched over the K members.

    Activations are kept feature-major (``[K, features, B]``, i.e. ``h = W @ x``) so that every
    weight gradient ``dW = dh @ xᵀ`` comes out of one bmm already in the weights' own layout;
    the batch-major form ``x @ Wᵀ`` makes autograd copy the whole first-layer gradient each
    step. The logits stay ``[K, C, B]``, which ``F.cross_entropy`` takes directly (class dim 1).
    """
    g, k = groups, weights[0].shape[0]
    m = k // g
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.shape[0] != g:
        x = x.expand(g, *x.shape[1:])
    w0, b0 = weights[0], biases[0]
    out0, batch = w0.shape[1], x.shape[1]
    if g == 1 and not w0.is_contiguous():
        # Members' weights are slices of one [P, n] population tensor (population.py): merging them
        # into one GEMM would copy them all first, so each member multiplies its own slice instead.
        if _uses_onednn(w0) and not (torch.is_grad_enabled() and (w0.requires_grad or x.requires_grad)):
            images = x[0].contiguous()
            h = torch.stack([_gemm(w0[p], images) for p in range(k)]).add_(b0.unsqueeze(2)).relu_()
        else:
            h = torch.baddbmm(b0.unsqueeze(2), w0, x[0].T.unsqueeze(0).expand(k, -1, -1)).relu_()
    elif _uses_onednn(w0):
        # [M*out, in] @ [in, B] -> [M*out, B]: one GEMM per seed group (members share x), on oneDNN.
        h = _FirstLayer.apply(w0.reshape(g, m * out0, -1), b0.reshape(g, m * out0, 1), x)
    else:
        # [G, M*out, in] @ [G, in, B] -> [G, M*out, B]: one GEMM per seed group (members share x).
        h = torch.baddbmm(b0.reshape(g, m * out0, 1), w0.reshape(g, m * out0, -1), x.transpose(1, 2)).relu_()
    h = h.view(k, out0, batch)
    last = len(weights) - 1
    for i in range(1, len(weights)):
        h = _stacked_layer(biases[i].unsqueeze(2), weights[i], h)
        if i < last:
            h = h.relu_()
    return h


class StackedMLP(nn.Module):
    """K MLPs of one architecture as trainable stacked parameters ``[K, out, in]`` / ``[K, out]``.

    Members are ordered seed-major in ``groups`` seed groups (see :func:`stacked_logits`).
    """

    def __init__(self, members: Sequence[MLP], groups: int = 1) -> None:
        super().__init__()
        if len(members) % groups:
            raise ValueError(f"{len(members)} members do not split into {groups} equal groups")
        self.groups, self.k = groups, len(members)
        per_member = [m.linears() for m in members]
        n_layers = len(per_member[0])
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([layers[i].weight.detach() for layers in per_member])) for i in range(n_layers)]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([layers[i].bias.detach() for layers in per_member])) for i in range(n_layers)]
        )
        # Listed once: a training step reads this list three times, and a ParameterList's iteration
        # (an index-string lookup per item) is Python overhead a batch-32 step feels. Device moves and
        # checkpoint loads update these Parameter objects in place, so the list stays right.
        self._in_order: tuple[nn.Parameter, ...] = (*self.weights, *self.biases)

    @property
    def hidden(self) -> list[int]:
        return [w.shape[1] for w in self.weights[:-1]]

    def parameters_in_order(self) -> tuple[nn.Parameter, ...]:
        """Every stacked tensor: weights of each layer, then biases of each layer."""
        return self._in_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [G, B, 784]`` or ``[B, 784]`` (shared by all) -> logits ``[K, 10, B]``."""
        return stacked_logits(list(self.weights), list(self.biases), x, self.groups)

    def logits_with(self, tensors: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The same forward with other stacked tensors (e.g. the best epoch's), in :meth:`parameters_in_order`."""
        n = len(self.weights)
        return stacked_logits(list(tensors[:n]), list(tensors[n:]), x, self.groups)

    def member_state_dict(self, k: int, tensors: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Member ``k`` as the ``state_dict`` of a plain :class:`MLP` (loadable with ``MLP.load_state_dict``)."""
        tensors = list(tensors) if tensors is not None else self.parameters_in_order()
        n = len(self.weights)
        out = {}
        for i in range(n):
            out[f"layers.{2 * i + 1}.weight"] = tensors[i][k].detach().clone().cpu()
            out[f"layers.{2 * i + 1}.bias"] = tensors[n + i][k].detach().clone().cpu()
        return out
