"""One lockstep member's training record: per-epoch rows, best epoch, divergence. Plain data.

Kept apart from the LightningModule so the rules (what counts as diverged, which epoch is
best) are a small pure object one can read and test alone, and so that the record round-trips
through a checkpoint as a dict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

DIVERGENCE_LOSS = 1e3  # a mean cross-entropy this high (chance is ln 10 ≈ 2.3) has exploded


@dataclass
class MemberHistory:
    """Per-epoch history and end-of-training results of one member."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float = math.inf
    status: str = "ok"  # "ok" or "diverged"
    diverged_epoch: int | None = None
    # Validation between epoch ends (fmnist_pl.engine.anytime): epoch (fractional), images, evaluations,
    # seconds, val_loss, val_acc; the epoch ends are the rows of ``epochs``.
    points: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str | None = None  # the budget ("seconds", "images", "evaluations") that ended it, if one did
    test: dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """Whether the run has diverged: it then records no more epochs and gets no more updates."""
        return self.status == "diverged"

    def record(self, row: dict[str, float]) -> str:
        """Add one epoch's row; returns ``"diverged"``, ``"best"`` (a new best validation loss) or ``"ok"``.

        A loss that is not finite, or a training loss above :data:`DIVERGENCE_LOSS`, stops the
        run: it is marked diverged at this epoch and gets no more rows.
        """
        if self.diverged:
            raise ValueError("a diverged run records no more epochs")
        self.epochs.append(dict(row))
        train_loss, val_loss = row["train_loss"], row["val_loss"]
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)) or train_loss > DIVERGENCE_LOSS:
            self.status, self.diverged_epoch = "diverged", int(row["epoch"])
            return "diverged"
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val_loss, int(row["epoch"])
            return "best"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemberHistory:
        return cls(**data)
