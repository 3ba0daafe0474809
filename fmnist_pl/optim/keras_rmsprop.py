"""RMSprop exactly as Keras/TensorFlow computes it (ε inside the square root)."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch.optim import Optimizer

SOURCE = Path(__file__).with_name("keras_rmsprop.c")
# Every operation rounded on its own (no FMA contraction, no fast-math), so the kernel's numbers
# are _exact_update's; -march=native lets the compiler use this CPU's widest vectors, which
# changes no number (each lane rounds as the scalar operation does).
FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC")
NATIVE = ("-march=native",)


def _exact_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    squares: list[torch.Tensor],
    lr: float,
    rho: float,
    eps: float,
) -> None:
    """The Keras RMSprop update of every tensor with torch ops: the fused kernel's numbers, bit for bit.

    Each op rounds to float32 in the order the kernel (``keras_rmsprop.c``) computes, the
    hyperparameters rounded to float32 as torch rounds a Python scalar, and the square root is
    correctly rounded: numpy's, applied in place on the same memory, because torch's vectorized
    CPU ``sqrt`` can be one ulp off. This is the update wherever the kernel is not available (no
    C compiler); tests/optim/test_keras_rmsprop.py checks the equality bit for bit.
    """
    for p, g, s in zip(params, grads, squares):
        s.mul_(rho).add_(g * g * (1 - rho))
        denom = s + eps
        np.sqrt(denom.numpy(), out=denom.numpy())
        p.sub_(g.mul(lr).div_(denom))


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fmnist-pl"


def _cpu_key() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags (Linux), else its name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_kernel() -> Path:
    """The fused kernel as a shared library, built on first use (a short ``cc`` run) and kept in
    ``$XDG_CACHE_HOME/fmnist-pl`` (``~/.cache``; a temporary folder if that is not writable), one
    file per source, compiler and CPU. Raises OSError/RuntimeError when no C compiler can build it.
    """
    name = os.environ.get("CC", "cc")
    compiler = shutil.which(name)
    if compiler is None:
        raise FileNotFoundError(f"no C compiler ({name}) on the PATH")
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), compiler, " ".join(FLAGS + NATIVE), _cpu_key(), platform.machine()]).encode()
    ).hexdigest()[:16]
    user = os.getuid() if hasattr(os, "getuid") else 0
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / f"fmnist-pl-{user}"):
        target = folder / f"keras_rmsprop-{key}.so"
        if target.exists():
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder))
        except OSError:
            continue  # an unwritable (or read-only) cache folder: the next one
        try:
            built = tmp / target.name
            for flags in (FLAGS + NATIVE, FLAGS):  # a compiler without -march=native builds the portable one
                done = subprocess.run(
                    [compiler, *flags, "-o", str(built), str(SOURCE)], capture_output=True, text=True, timeout=300
                )
                if done.returncode == 0:
                    os.replace(built, target)  # one atomic rename: never a half-written library
                    return target
            raise RuntimeError(done.stderr.strip() or f"{compiler} exited with {done.returncode}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise PermissionError(f"no writable folder for the kernel ({_cache_dir()} or the temporary folder)")


@functools.cache
def _kernel() -> Callable[..., None] | str:
    """The fused kernel (built once per machine, loaded once per process), or why it is not available."""
    try:
        library = ctypes.CDLL(str(build_kernel()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {text}"
    kernel = library.fmnist_keras_rmsprop
    kernel.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_size_t] + [ctypes.c_float] * 4
    kernel.restype = None
    return kernel


class KerasRMSprop(Optimizer):
    """RMSprop in the Keras/TensorFlow form, with ε *inside* the square root.

    Keras computes ``s <- rho*s + (1-rho)*g²`` and ``w <- w - lr * g / sqrt(s + eps)``,
    while ``torch.optim.RMSprop`` divides by ``sqrt(s) + eps``. With eps = 1e-7 the two
    differ by orders of magnitude for every weight whose gradient is below ~3e-4
    (sqrt(1e-7) ≈ 3.2e-4 dominates the Keras denominator), enough to change a trained model's
    test accuracy (benchmarks/RESULTS.md). The reference ran Keras, so ``rmsprop`` uses this
    class; torch's form stays available as ``rmsprop-torch``.

    By default the update runs on whole parameter lists with ``torch._foreach_*`` ops (one
    kernel per op for all tensors), the trick torch's own ``foreach`` optimizers use to keep
    the per-step overhead low at small batch sizes. ``fused=True`` (CPU float32 tensors) runs
    the update as one hand-written C loop instead (``keras_rmsprop.c``), as torch's fused
    Adam/SGD are hand-written kernels: one pass over memory instead of five. Hand-written
    rather than generated by ``torch.compile``, whose start-up cost in every process (and guard
    check on every step) far exceeds what a 3-line loop needs: the system C compiler builds it
    once per machine (:func:`build_kernel`). Without a C compiler the same arithmetic runs as
    torch ops (:func:`_exact_update`, a warning says so), with the kernel's numbers bit for
    bit. ``fused`` and foreach agree to float rounding; :attr:`fused_ran` tells that the fused
    arithmetic ran, :attr:`kernel_steps` how many param-group updates the C kernel made.
    """

    fused_is_c_kernel = True
    """``fused`` runs a C kernel of ours, built on first use: :func:`fmnist_pl.optim.registry.build_shared` turns it on when asked."""

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7, *, fused: bool | None = None
    ) -> None:
        if lr <= 0 or not 0.0 <= rho < 1.0 or eps < 0:
            raise ValueError(f"invalid KerasRMSprop hyperparameters: lr={lr}, rho={rho}, eps={eps}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))
        self.fused = bool(fused)
        self.fused_ran = False  # True once the fused arithmetic has run (the C kernel or its exact eager twin)
        self.kernel_steps = 0  # param-group updates the C kernel made
        self._warned = False

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

    def _fused_step(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        squares: list[torch.Tensor],
        lr: float,
        rho: float,
        eps: float,
    ) -> bool:
        """The fused arithmetic: the C kernel on contiguous float32 tensors, else its exact eager twin."""
        kernel = _kernel()
        if callable(kernel) and all(
            t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu"
            for t in (*params, *grads, *squares)
        ):
            one_minus_rho = 1.0 - rho  # in double, then rounded to float32: as torch rounds (1 - rho)
            for p, g, s in zip(params, grads, squares):
                kernel(p.data_ptr(), g.data_ptr(), s.data_ptr(), p.numel(), lr, rho, one_minus_rho, eps)
            self.kernel_steps += 1
        else:
            if isinstance(kernel, str) and not self._warned:
                self._warned = True
                warnings.warn(
                    f"KerasRMSprop(fused=True) could not build its C kernel ({kernel}); its exact "
                    "eager form runs instead: the same numbers, slower",
                    RuntimeWarning,
                    stacklevel=3,
                )
            _exact_update(params, grads, squares, lr, rho, eps)
        self.fused_ran = True
        return True
