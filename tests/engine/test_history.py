"""One member's training record: best epoch, divergence, checkpoint round trip."""

import math

import pytest

from fmnist_pl.engine.history import MemberHistory


def row(epoch, train_loss, val_loss):
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_acc": 0.5,
        "val_loss": val_loss,
        "val_acc": 0.5,
        "seconds": 1.0,
    }


def test_best_epoch_and_divergence():
    h = MemberHistory()
    assert h.record(row(1, 1.0, 0.9)) == "best"
    assert h.record(row(2, 0.8, 0.95)) == "ok"
    assert h.record(row(3, 0.7, 0.5)) == "best" and (h.best_epoch, h.best_val_loss) == (3, 0.5)
    assert not h.diverged
    assert h.record(row(4, math.nan, 0.4)) == "diverged"
    assert (h.status, h.diverged_epoch, h.best_epoch, len(h.epochs)) == ("diverged", 4, 3, 4)
    assert h.diverged
    with pytest.raises(ValueError):
        h.record(row(5, 0.1, 0.1))
    assert MemberHistory().record(row(1, 2e3, 0.5)) == "diverged"  # a loss above 1e3 has exploded
    assert MemberHistory.from_dict(h.to_dict()) == h
