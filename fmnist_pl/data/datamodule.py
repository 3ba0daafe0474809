"""The reference split as on-device tensors, and the LightningDataModule that batches it.

Data flow: four IDX files (:mod:`fmnist_pl.data.idx`) -> uint8 tensors (checked) -> float32
in [0, 1] -> the reference split (validation = the FIRST 5,000 training images) -> tensors on
the training device -> batches as shuffled index slices. No per-sample ``__getitem__`` and no
PIL: at batch 32 the textbook ``Dataset``/``DataLoader`` path costs more per step than the
model does (see ``benchmarks/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning.pytorch as pl
import torch

from fmnist_pl.data.idx import VAL_SIZE, FashionMNISTArrays, load_arrays


class BatchStream:
    """An epoch's mini-batches as index slices of tensors that already live on the device.

    Training (``seeds`` given): each seed has its own ``torch.Generator`` and so its own
    shuffle. With ``stack_seeds`` a batch is ``x: [G, B, 784]``, ``y: [G, B]`` (the lockstep
    engine trains every seed at once); without it (one seed) it is plain ``[B, 784]``, ``[B]``.
    Seed ``s`` always gives the same batch order, whatever else runs beside it, which is what
    makes the comparison paired. The last batch of an epoch is partial, as in Keras
    (55,000 / 32 -> 1,719 steps). The permutation is drawn on the CPU, so a seed's batch order
    is the same on every device.

    Evaluation (``seeds=None``): in order, plain ``[B, 784]`` batches.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seeds: Sequence[int] | None, stack_seeds: bool = True
    ) -> None:
        if seeds is not None and not stack_seeds and len(seeds) != 1:
            raise ValueError(f"plain (unstacked) batches need exactly one seed, got {list(seeds)}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seeds = list(seeds) if seeds is not None else None
        self.stack_seeds = stack_seeds
        self._generators = [torch.Generator().manual_seed(s) for s in self.seeds] if self.seeds is not None else None

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def state_dict(self) -> dict:
        """Generator states, so that a resumed run continues with the batch order it would have had."""
        return {"generators": [g.get_state() for g in self._generators or []]}

    def load_state_dict(self, state: dict) -> None:
        for g, s in zip(self._generators or [], state.get("generators", [])):
            g.set_state(s)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b = len(self.y), self.batch_size
        if self._generators is None:  # evaluation: in order
            for i in range(len(self)):
                yield self.x[i * b : (i + 1) * b], self.y[i * b : (i + 1) * b]
            return
        perms = torch.stack([torch.randperm(n, generator=g) for g in self._generators]).to(self.x.device)
        if not self.stack_seeds:
            perms = perms[0]
        for i in range(len(self)):
            idx = perms[..., i * b : (i + 1) * b]
            # index_select copies whole rows; indexing with a tensor (x[idx]) takes the general
            # gather kernel, ~1.5x slower for this row gather. The same values either way.
            rows = idx.reshape(-1)
            yield (
                self.x.index_select(0, rows).view(*idx.shape, *self.x.shape[1:]),
                self.y.index_select(0, rows).view(idx.shape),
            )


class FashionMNISTDataModule(pl.LightningDataModule):
    """The reference split of Fashion-MNIST as on-device tensors, batched by index slices.

    Args:
        folder: a folder holding the four IDX files (see :func:`fmnist_pl.data.idx.locate`).
        batch_size: training batch size; 32 is Keras' default, which the reference used.
        seeds: one shuffle stream per seed. The lockstep engine checks that these are exactly
            the seeds of the runs it trains (the one source of a run's seed is its plan).
        stack_seeds: training batches carry a leading seed axis ``[G, B, ...]`` (the lockstep
            engine); False gives plain ``[B, ...]`` batches of one seed (a textbook module).
        eval_batch_size: validation/test batch size; evaluation needs no small batches.
        arrays: already-loaded arrays (tests, benchmarks, an in-process API call), instead of
            reading ``folder``.
        val_size: the first ``val_size`` training images are the validation set (reference: 5,000).

    How many batches an epoch runs is the Trainer's business (``limit_train_batches``).
    """

    def __init__(
        self,
        folder: Path | None = None,
        batch_size: int = 32,
        seeds: Sequence[int] = (42,),
        stack_seeds: bool = True,
        eval_batch_size: int = 5_000,
        arrays: FashionMNISTArrays | None = None,
        val_size: int = VAL_SIZE,
    ) -> None:
        super().__init__()
        if folder is None and arrays is None:
            raise ValueError("give a data folder or loaded arrays")
        self.folder, self.batch_size, self.seeds = folder, batch_size, list(seeds)
        self.stack_seeds, self.eval_batch_size = stack_seeds, eval_batch_size
        self._arrays, self.val_size = arrays, val_size
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_stream: BatchStream | None = None
        self._pending_state: dict | None = None

    def prepare(self) -> None:
        """Load, check, scale (÷255, as the reference) and split; idempotent."""
        if self.splits:
            return
        arrays = self._arrays if self._arrays is not None else load_arrays(Path(self.folder))
        self.splits = split_arrays(arrays, self.val_size)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def to(self, device: torch.device) -> None:
        """Move every split onto ``device`` once (a no-op when already there)."""
        self.prepare()
        self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> BatchStream:
        self.to(self._device())
        x, y = self.splits["train"]
        self._train_stream = BatchStream(x, y, self.batch_size, self.seeds, self.stack_seeds)
        if self._pending_state:
            self._train_stream.load_state_dict(self._pending_state)
            self._pending_state = None
        return self._train_stream

    def val_dataloader(self) -> BatchStream:
        self.to(self._device())
        return BatchStream(*self.splits["val"], self.eval_batch_size, None)

    def test_dataloader(self) -> BatchStream:
        self.to(self._device())
        return BatchStream(*self.splits["test"], self.eval_batch_size, None)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Lightning's hook, short-cut for batches that are already there.

        This module's batches are slices of splits that already live on the training device
        (``to``), so Lightning's generic walk through the batch (``move_data_to_device``) would
        move nothing, at ~30 us a training step. Any other batch goes the usual way."""
        if isinstance(batch, (tuple, list)) and all(torch.is_tensor(t) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def state_dict(self) -> dict:
        # Saved in Lightning checkpoints: a resumed run continues the exact batch order.
        return self._train_stream.state_dict() if self._train_stream is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending_state = state_dict


def split_arrays(arrays: FashionMNISTArrays, val_size: int = VAL_SIZE) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The reference split: pixels ÷ 255 as float32, the FIRST ``val_size`` training images validate."""
    if not 0 < val_size < len(arrays.train_labels):
        raise ValueError(f"val_size {val_size} must leave training images (have {len(arrays.train_labels)})")
    train_x = arrays.train_images.reshape(len(arrays.train_images), -1).float().div_(255.0)
    test_x = arrays.test_images.reshape(len(arrays.test_images), -1).float().div_(255.0)
    train_y, test_y = arrays.train_labels.long(), arrays.test_labels.long()
    return {
        "train": (train_x[val_size:], train_y[val_size:]),
        "val": (train_x[:val_size], train_y[:val_size]),
        "test": (test_x, test_y),
    }
