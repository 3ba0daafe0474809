"""RMSprop exactly as Keras/TensorFlow computes it (ε inside the square root)."""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer


def _keras_update(params: list[torch.Tensor], grads: list[torch.Tensor], squares: list[torch.Tensor],
                  lr: torch.Tensor, rho: torch.Tensor, eps: torch.Tensor) -> None:
    """The Keras RMSprop update of every tensor, written for ``torch.compile`` to fuse.

    Eager, this is five passes over memory (as the foreach path is); compiled, it is one
    loop that reads ``p, g, s`` and writes ``p, s`` once. The hyperparameters are 0-d
    tensors so that another learning rate reuses the compiled kernel instead of recompiling.
    """
    for p, g, s in zip(params, grads, squares):
        s.copy_(s * rho + g * g * (1 - rho))
        p.sub_(g * lr / torch.sqrt(s + eps))


@functools.cache
def _compiled_update() -> Callable[..., None]:
    # Imported on first use: torch.compile's machinery costs ~1 s to import, and most runs never need it.
    import torch._dynamo  # noqa: F401

    return torch.compile(_keras_update, fullgraph=True, dynamic=False)


class KerasRMSprop(Optimizer):
    """RMSprop in the Keras/TensorFlow form, with ε *inside* the square root.

    Keras computes ``s <- rho*s + (1-rho)*g²`` and ``w <- w - lr * g / sqrt(s + eps)``,
    while ``torch.optim.RMSprop`` divides by ``sqrt(s) + eps``. With eps = 1e-7 the two
    differ by orders of magnitude for every weight whose gradient is below ~3e-4
    (sqrt(1e-7) ≈ 3.2e-4 dominates the Keras denominator), and 30 epochs of the reference
    MLP end about a point of test accuracy apart. The reference ran Keras, so ``rmsprop``
    uses this class; torch's form stays available as ``rmsprop-torch``.

    By default the update runs on whole parameter lists with ``torch._foreach_*`` ops (one
    kernel per op for all tensors), the trick torch's own ``foreach`` optimizers use to keep
    the per-step overhead low at small batch sizes. ``fused=True`` (CPU tensors) runs the
    update as one ``torch.compile``-d kernel instead, as torch's fused Adam/SGD do with
    hand-written ones: one pass over memory instead of five (about a third of the time; see
    ``benchmarks/results-*.txt``), for a compile the first time on a machine (seconds, less
    once torch's on-disk cache has it).
    If compiling fails (no C++ compiler, say), it warns once and keeps to the foreach update.
    The two agree to float rounding; :attr:`fused_ran` tells which one ran.
    """

    fused_needs_compile = True
    """``fused`` costs a compile: :func:`fmnist_pl.optim.registry.build_shared` turns it on only when asked."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, rho: float = 0.9,
                 eps: float = 1e-7, *, fused: bool | None = None) -> None:
        if lr <= 0 or not 0.0 <= rho < 1.0 or eps < 0:
            raise ValueError(f"invalid KerasRMSprop hyperparameters: lr={lr}, rho={rho}, eps={eps}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))
        self.fused = bool(fused)
        self.fused_ran = False  # True once the compiled kernel has run; False: foreach did every step so far

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            squares = []
            for p in params:
                state = self.state[p]
                if not state:
                    # Keras initialises the accumulator at zero, like torch.
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                squares.append(state["square_avg"])
            rho, lr, eps = group["rho"], group["lr"], group["eps"]
            if self.fused and params[0].device.type == "cpu" and self._fused_step(params, grads, squares, lr, rho, eps):
                continue
            torch._foreach_mul_(squares, rho)
            torch._foreach_addcmul_(squares, grads, grads, value=1.0 - rho)
            denom = torch._foreach_add(squares, eps)
            torch._foreach_sqrt_(denom)
            torch._foreach_addcdiv_(params, grads, denom, value=-lr)
        return loss

    def _fused_step(self, params: list[torch.Tensor], grads: list[torch.Tensor], squares: list[torch.Tensor],
                    lr: float, rho: float, eps: float) -> bool:
        """Run the compiled update; False (and foreach from then on) if it cannot be compiled."""
        hyper = [torch.tensor(v, dtype=torch.float64) for v in (lr, rho, eps)]
        if self.fused_ran:
            _compiled_update()(params, grads, squares, *hyper)
            return True
        # The first call compiles. Torch's C++ build helper warns that this CUDA build finds
        # no CUDA runtime - true on a CPU machine and irrelevant to a CPU kernel.
        quiet = logging.getLogger("torch.utils.cpp_extension")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            _compiled_update()(params, grads, squares, *hyper)
        except Exception as exc:  # any compile failure: the foreach update is always available
            self.fused = False
            warnings.warn(f"KerasRMSprop(fused=True) could not compile its kernel, using the foreach "
                          f"update instead ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                          RuntimeWarning, stacklevel=3)
            return False
        finally:
            quiet.setLevel(level)
        self.fused_ran = True
        return True
