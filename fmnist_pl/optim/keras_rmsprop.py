"""RMSprop exactly as Keras/TensorFlow computes it (ε inside the square root)."""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import warnings
from typing import Any, Callable, Iterable

import numpy as np
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


def _exact_update(params: list[torch.Tensor], grads: list[torch.Tensor], squares: list[torch.Tensor],
                  lr: torch.Tensor, rho: torch.Tensor, eps: torch.Tensor) -> None:
    """The compiled kernel's arithmetic, eagerly and without a compile: bit for bit its numbers.

    The kernel (inductor's C++ for ``_keras_update``) rounds every operation to float32 in
    the order written there, and takes a correctly rounded square root (the CPU's vector
    instruction). Eager torch ops round the same way except ``torch.sqrt``, whose vectorized
    CPU version can be one ulp off; numpy's ``sqrt`` is the correctly rounded one, applied in
    place on the same memory. tests/optim/test_keras_rmsprop.py checks the equality bit for bit.
    """
    for p, g, s in zip(params, grads, squares):
        s.mul_(rho).add_(g * g * (1 - rho))
        denom = s + eps
        np.sqrt(denom.numpy(), out=denom.numpy())
        p.sub_(g.mul(lr).div_(denom))


@functools.cache
def _compiled_update() -> Callable[..., None]:
    # Imported on first use: torch.compile's machinery costs ~1 s to import, and most runs never need it.
    import torch._dynamo  # noqa: F401

    return torch.compile(_keras_update, fullgraph=True, dynamic=False)


def _guarded(t: torch.Tensor) -> tuple[torch.Size, tuple[int, ...], int, torch.dtype, bool]:
    """What the compiled kernel's guards see of a tensor."""
    return t.shape, t.stride(), t.storage_offset(), t.dtype, t.requires_grad


def _signature(tensors: Iterable[torch.Tensor]) -> tuple[Any, ...]:
    return tuple(_guarded(t) for t in tensors)


Layout = tuple[int, int, torch.Size, tuple[int, ...], int, torch.dtype, bool]
"""What the compiled kernel's guards see of a tensor, and which storage it views (its key and bytes)."""


def _layout(tensors: list[list[torch.Tensor]]) -> list[list[Layout]]:
    """The layouts of ``tensors``, without holding them (a step's gradients are freed after the step)."""
    return [[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes(), *_guarded(t)) for t in ts] for ts in tensors]


def _alike(layouts: list[list[Layout]]) -> list[list[torch.Tensor]]:
    """Zeroed tensors the compiled kernel's guards cannot tell from those ``layouts`` describe: the same
    shapes, strides, offsets and grad flags, and the same aliasing - the views of one storage are
    views of one zeroed storage of its size, allocated once.

    Once, not once per view: in a lockstep group member k's weights are a view of its layer's
    stacked tensor at offset k x size, and a storage per view (offset + size each) grew with the
    square of the group.
    """
    bases: dict[int, torch.Tensor] = {}

    def alike(key: int, nbytes: int, shape: torch.Size, stride: tuple[int, ...], offset: int, dtype: torch.dtype,
              grad: bool) -> torch.Tensor:
        if key not in bases:
            bases[key] = torch.zeros(nbytes // dtype.itemsize, dtype=dtype)
        view = bases[key].as_strided(shape, stride, offset)
        return torch.nn.Parameter(view) if grad else view

    return [[alike(*layout) for layout in ls] for ls in layouts]


class _Builds:
    """The compiled kernel, built in a background thread while training goes on with
    :func:`_exact_update` (the same numbers), one signature (tensor shapes) at a time.

    So a compile - ten seconds or more the first time on a machine, a second or two from
    torch's on-disk cache - never stalls training; once built, the main thread's call finds it
    in torch.compile's cache (the build ran on look-alike tensors, so its guards match).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one compile at a time: Dynamo compiles are not concurrent
        self.state: dict[tuple[Any, ...], str] = {}  # "building" | "ready" | the failure text

    def kernel(self, tensors: list[list[torch.Tensor]], hyper: list[torch.Tensor]) -> Callable[..., None] | str | None:
        """The compiled kernel if built; None while it builds (started here the first time); the
        failure text if it could not be built."""
        key = _signature(t for ts in tensors for t in ts)
        state = self.state.get(key)
        if state == "ready":
            return _compiled_update()
        if state is None:
            self.state[key] = "building"
            threading.Thread(target=self._build, args=(key, _layout(tensors), hyper), daemon=True,
                             name="keras-rmsprop-compile").start()
            return None
        return None if state == "building" else state

    def _build(self, key: tuple[Any, ...], layouts: list[list[Layout]], hyper: list[torch.Tensor]) -> None:
        """Compile for one signature. Its look-alike tensors exist only during its own build: a 36-rate
        sweep starts 36 builds at its first step, one after another, and look-alikes made at once
        for all of them (two stacked tensors each) held gigabytes."""
        # Torch's C++ build helper warns that this CUDA build finds no CUDA runtime - true on a
        # CPU machine and irrelevant to a CPU kernel.
        quiet = logging.getLogger("torch.utils.cpp_extension")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        with self.lock, torch.no_grad():  # the step runs without grad: the kernel's guards say so
            try:
                _compiled_update()(*_alike(layouts), *hyper)
            except Exception as exc:  # no C++ compiler, say: the eager path has the same numbers
                text = str(exc).splitlines()[0] if str(exc) else ""
                self.state[key] = f"{type(exc).__name__}: {text}"
                return
            finally:
                quiet.setLevel(level)
        self.state[key] = "ready"


_BUILDS = _Builds()


def compiles_running() -> bool:
    """Whether a background compile is still going (a short run can end before its kernel is built)."""
    return any(t.name == "keras-rmsprop-compile" and t.is_alive() for t in threading.enumerate())


def wait_for_compiles(timeout: float | None = None) -> None:
    """Block until the background compiles started so far are done (benchmarks time steady state).

    Also run at interpreter exit: a daemon thread still inside torch's C++ compile code when the
    interpreter finalizes is ended with ``pthread_exit``, which aborts the process ("terminate
    called without an active exception") or crashes it. The command line does not wait: it leaves
    with ``os._exit`` once its work is written (:func:`fmnist_pl.cli.main`).
    """
    for thread in threading.enumerate():
        if thread.name == "keras-rmsprop-compile":
            thread.join(timeout)


atexit.register(wait_for_compiles)


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
    ``benchmarks/results-*.txt``). The kernel is compiled in a background thread (seconds the
    first time on a machine, less from torch's on-disk cache); until it is ready - or forever,
    if it cannot be compiled (no C++ compiler, say: a warning says so) - the same arithmetic
    runs eagerly (:func:`_exact_update`), with the kernel's numbers bit for bit, so no step
    waits for the compiler and no number depends on when it finished. ``fused`` and foreach
    agree to float rounding; :attr:`fused_ran` tells that the fused arithmetic ran,
    :attr:`compiled_steps` how many steps the compiled kernel took.
    """

    fused_needs_compile = True
    """``fused`` costs a compile: :func:`fmnist_pl.optim.registry.build_shared` turns it on only when asked."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, rho: float = 0.9,
                 eps: float = 1e-7, *, fused: bool | None = None) -> None:
        if lr <= 0 or not 0.0 <= rho < 1.0 or eps < 0:
            raise ValueError(f"invalid KerasRMSprop hyperparameters: lr={lr}, rho={rho}, eps={eps}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))
        self.fused = bool(fused)
        self.fused_ran = False  # True once the fused arithmetic has run (compiled or its exact eager twin)
        self.compiled_steps = 0  # of which the compiled kernel took this many
        self._warned = False
        self._compiled_for: dict[int, bool] = {}  # per param group (by its first tensor): kernel built

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
        """The fused arithmetic: the compiled kernel once built, its exact eager twin until then."""
        hyper = [torch.tensor(v, dtype=torch.float64) for v in (lr, rho, eps)]
        kernel = _compiled_update() if self._compiled_for.get(id(params[0])) else _BUILDS.kernel(
            [params, grads, squares], hyper)
        if callable(kernel):
            self._compiled_for[id(params[0])] = True  # skip the signature from now on
            kernel(params, grads, squares, *hyper)
            self.compiled_steps += 1
        else:
            if isinstance(kernel, str) and not self._warned:
                self._warned = True
                warnings.warn(f"KerasRMSprop(fused=True) could not compile its kernel ({kernel}); its exact "
                              "eager form runs instead: the same numbers, slower", RuntimeWarning, stacklevel=3)
            _exact_update(params, grads, squares, *hyper)
        self.fused_ran = True
        return True
