"""The textbook Lightning path: one network, one optimizer, automatic optimization.

As Lightning's ``backbone_image_classifier.py``: the LightningModule receives a plain
``nn.Module`` and only adds the step, the metrics and the optimizer. It is the trusted
reference the lockstep engine is tested against, and what Lightning's ``Tuner.lr_find`` drives.
Log keys follow lightning-hydra-template: ``train/loss``, ``val/acc``, ``test/f1``, ...
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from fmnist_pl.architecture import NUM_CLASSES
from fmnist_pl.optim.registry import OptimizerSpec


class LitClassifier(pl.LightningModule):
    """``net`` trained by ``optimizer`` on plain ``[B, 784]`` batches.

    Args:
        net: any ``nn.Module`` mapping images to 10 logits (e.g. ``seeded_mlp(hidden, seed)``).
        optimizer: the registry entry and hyperparameters to train with.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerSpec) -> None:
        super().__init__()
        self.save_hyperparameters({"optimizer": optimizer.to_dict()})
        self.net = net
        self.optimizer_spec = optimizer
        self.lr = float(optimizer.hparams["lr"])  # an attribute, so Lightning's Tuner.lr_find can vary it
        metric = {"task": "multiclass", "num_classes": NUM_CLASSES}
        self.train_acc = torchmetrics.Accuracy(**metric, average="micro")
        self.val_acc = torchmetrics.Accuracy(**metric, average="micro")
        self.test_acc = torchmetrics.Accuracy(**metric, average="micro")
        self.test_f1 = torchmetrics.F1Score(**metric, average="macro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        preds = logits.argmax(-1)
        acc = getattr(self, f"{stage}_acc")
        acc(preds, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, batch_size=len(y))
        if stage == "test":
            self.test_f1(preds, y)
            self.log("test/f1", self.test_f1, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        spec = OptimizerSpec(self.optimizer_spec.name, dict(self.optimizer_spec.hparams) | {"lr": self.lr})
        return spec.build(self.parameters())
