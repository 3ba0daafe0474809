"""Validation at evenly spaced points of every run, gradient and gradient-free alike: anytime curves.

Lightning validates at epoch ends, so a 30-second search (one epoch, or part of one) is one dot
in every figure. :class:`AnytimeValidation` validates every run of a group at ``points`` evenly
spaced points of its budget - images, evaluations or seconds, whichever the run is limited by,
or its batches without a budget - by running the engine's own validation pass from the
training loop; each point is recorded with the run's images, evaluations and seconds so far, so
"accuracy at equal images / evaluations / time" reads straight off the curves.
Epoch ends are validated by Lightning as before; a point that falls on an epoch end is not
measured twice.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from fmnist_pl.engine.budget import BudgetStop

DEFAULT_POINTS = 20  # per run: enough for a curve, few enough not to slow a short run


class AnytimeValidation(pl.Callback):
    """Validate every run at ``points`` evenly spaced points of its budget (``stop``: the group's
    budget callback, which counts what was spent) or, without one, of its batches."""

    def __init__(self, points: int, epochs: int, stop: BudgetStop | None = None) -> None:
        self.points, self.epochs, self.stop = points, epochs, stop
        self._next = 1  # the next point's index (1..points)

    def _progress(self, trainer: pl.Trainer, pl_module: Any, batches: int) -> float:
        """How far the run is: the larger share of its budget and of its epochs' batches (whichever
        limit it will meet first)."""
        per_epoch = max(1, trainer.num_training_batches)
        share = (trainer.current_epoch * per_epoch + batches) / (self.epochs * per_epoch)
        if self.stop is not None:
            budget = self.stop.budget
            share = max(share, self.stop.spent(pl_module)[budget.kind] / budget.amount)
        return share

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        batches = batch_idx + 1  # this epoch's, this one included (the module counts it after the callbacks)
        progress = self._progress(trainer, pl_module, batches)
        if progress * self.points < self._next:
            return
        while self._next <= progress * self.points:
            self._next += 1
        if batches >= trainer.num_training_batches or trainer.should_stop:
            return  # an epoch end (or the budget's last step): Lightning validates it, and its row is the point
        if self.stop is not None:
            self.stop.pause()  # validation is not training: not on the budget's clock
        try:
            pl_module.record_point(*validate(pl_module, trainer), batches)
        finally:
            if self.stop is not None:
                self.stop.resume(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"next": self._next}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._next = int(state_dict.get("next", 1))


@torch.no_grad()
def validate(pl_module: Any, trainer: pl.Trainer) -> tuple[list[float], list[float]]:
    """Every run's validation loss and accuracy now, with the engine's own logits (its current weights)."""
    k = len(pl_module.members)
    loss = torch.zeros(k, dtype=torch.float64, device=pl_module.device)
    correct = torch.zeros(k, dtype=torch.long, device=pl_module.device)
    seen = 0
    was_training = pl_module.training
    pl_module.eval()
    try:
        for x, y in trainer.datamodule.val_dataloader():
            logits = pl_module.member_logits(x)
            targets = y.expand(k, -1)
            loss += pl_module.member_losses(logits, targets).sum(1)
            correct += (logits.argmax(1) == targets).sum(1)
            seen += len(y)
    finally:
        pl_module.train(was_training)
    return (loss / max(seen, 1)).tolist(), (correct.double() / max(seen, 1)).tolist()
