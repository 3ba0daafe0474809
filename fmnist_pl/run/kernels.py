"""Build, ahead of a compare, the compiled kernels its training will use: ``fmnist-pl build-kernels``.

On the CPU, Keras RMSprop's fused update is a ``torch.compile``-d kernel. A fit builds it in
the background at its first step, and the first time on a machine that is a C++ compile of
ten seconds or more, sharing the cores with the first epoch. Torch keeps built kernels in its
on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default ``/tmp/torchinductor_<user>``), keyed by
the tensors' layouts; building them here - for exactly the lockstep groups the compare will
train - lets its first run find them. ``make setup`` runs it for the default compare.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fmnist_pl.config import CompareConfig
from fmnist_pl.run.plan import groups, plan


@dataclass(frozen=True)
class KernelBuild:
    """One lockstep group: its runs' optimizers, those whose compiled kernel is now built, and how long it took."""

    hidden: tuple[int, ...]
    runs: int
    needs: tuple[str, ...]
    built: tuple[str, ...]
    seconds: float

    def describe(self) -> str:
        where = f"hidden {','.join(map(str, self.hidden))}, {self.runs} run(s) in lockstep"
        missing = [n for n in self.needs if n not in self.built]
        if missing:
            return (f"{', '.join(missing)} ({where}): the kernel could not be built (see the warning); the exact "
                    "eager form runs instead - the same numbers, slower")
        return f"{', '.join(self.built)} ({where}): kernel ready ({self.seconds:.1f} s)"


def build_kernels(config: CompareConfig) -> list[KernelBuild]:
    """Build the compiled kernels that ``compare(config)`` trains with on this machine's CPU.

    Groups as a compare on this machine cuts them (the planner's lockstep groups, split to fit
    the memory); groups without such an optimizer, gradient-free searches and GPU runs (a GPU
    step is a CUDA graph of torch's own kernels) need none and are skipped.
    """
    from fmnist_pl.engine.trainer import build_module, is_search
    from fmnist_pl.run.compare import _device, local_groups

    if _device(config.accelerator)[0] != "cpu":
        return []
    done = []
    for group in local_groups(config, groups(plan(config), config.trains_alone)):
        needs = tuple(dict.fromkeys(r.optimizer.name for r in group if not is_search([r])
                                    and getattr(r.optimizer.info.cls, "fused_needs_compile", False)))
        if not needs:
            continue
        start = time.perf_counter()
        built = build_module(group).build_kernels()
        done.append(KernelBuild(tuple(group[0].hidden), len(group), needs, tuple(built),
                                time.perf_counter() - start))
    return done
