"""Replay a whole training step as one CUDA graph.

At batch 32 a GPU step is bound by kernel-launch and Python overhead, not arithmetic;
replaying a captured graph launches all of the step's kernels in one call. The step must be
capturable: no host syncs, no Python branching on tensor values, persistent state updated in
place (see ``LitLockstep._step``).
"""

from __future__ import annotations

from typing import Callable

import torch

WARMUP_STEPS = 3  # eager steps on a side stream before capture, as torch's CUDA-graph docs advise


class CapturedStep:
    """Runs ``step(x, y)`` eagerly for a few warm-up batches, then captures it once and replays it.

    Args:
        step: one whole training step on ``(x, y)`` (forward, backward, optimizer steps, sums).
        clear: drops the gradients, so an eager step never adds into a graph's static buffers.
        shape: the full batch shape; only batches of it replay (the epoch's partial last batch
            runs eagerly through ``step``).
    """

    def __init__(
        self,
        step: Callable[[torch.Tensor, torch.Tensor], None],
        clear: Callable[[], None],
        shape: torch.Size,
        device: torch.device,
    ) -> None:
        self.step, self.clear, self.shape, self.device = step, clear, shape, device
        self._graph: torch.cuda.CUDAGraph | None = None
        self._warmup_left = WARMUP_STEPS
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None

    def fits(self, x: torch.Tensor) -> bool:
        return x.shape == self.shape

    def invalidate(self) -> None:
        """Capture anew at the next batch (what the step does has changed, e.g. a run stopped)."""
        self._graph = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self._graph is None and self._warmup_left > 0:
            self._warmup_left -= 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.clear()
                self.step(x, y)
                self.clear()
            torch.cuda.current_stream(self.device).wait_stream(side)
            return
        if self._graph is None:
            self._static = (x.clone(), y.clone())
            self.clear()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.step(*self._static)
            self._graph = graph  # capture records, it does not run: the replay below does this batch
        assert self._static is not None
        self._static[0].copy_(x)
        self._static[1].copy_(y)
        self._graph.replay()
