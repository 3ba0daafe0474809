"""Lightning's learning-rate finder (``Tuner.lr_find``) per optimizer: a fast alternative to a grid.

One short run per optimizer raises the learning rate exponentially each step and records the
training loss; the suggestion is the rate where the loss falls fastest (Lightning's rule).
It uses training loss over ~100 steps, so it is a heuristic, cheaper and rougher than the
validation-set grid of ``sweep --lrs``.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any, Sequence

import lightning.pytorch as pl
from lightning.pytorch.tuner import Tuner

from fmnist_pl.data import FashionMNISTDataModule
from fmnist_pl.model import LitClassifier
from fmnist_pl.optimizers import OptimizerSpec


def find_lrs(specs: Sequence[OptimizerSpec], datamodule: FashionMNISTDataModule, hidden: Sequence[int],
             seed: int, accelerator: str = "auto", min_lr: float = 1e-6, max_lr: float = 1.0,
             steps: int = 100) -> dict[str, dict[str, Any]]:
    """Per optimizer: the finder's curve (learning rates, losses) and its suggestion."""
    out = {}
    for spec in specs:
        model = LitClassifier(spec.to_dict(), hidden=hidden, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp,
                                 max_epochs=1)
            finder = Tuner(trainer).lr_find(model, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr,
                                            num_training=steps, update_attr=False, attr_name="lr")
        lrs = [float(v) for v in finder.results["lr"]]
        losses = [float(v) if math.isfinite(v) else None for v in finder.results["loss"]]
        suggestion = finder.suggestion()
        out[spec.name] = {"finder_lrs": lrs, "finder_losses": losses,
                          "chosen": float(suggestion) if suggestion else None}
    return out
