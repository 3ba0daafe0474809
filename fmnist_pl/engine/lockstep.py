"""The lockstep engine: K MLPs (optimizers × seeds) trained together on the same batches.

Their weights are stacked as ``[K, out, in]`` (:class:`~fmnist_pl.engine.mlp.StackedMLP`), so
one step runs a few large batched matrix multiplies instead of K sets of small ones. At batch
32 the per-step overhead (Python, Lightning hooks, kernel launches), not the FLOPs, dominates
a single model; sharing it among K models is what makes the comparison fast. Each model is
still stepped by its own ``torch.optim`` optimizer settings with its own state, and its
gradients are exactly those of its own mean loss (the ensemble's loss is the *sum* of the
members' losses, whose gradient w.r.t. one member's weights is that member's gradient).
A run's numbers do not depend on its companions (see ``_stacked_layer`` in ``mlp.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from fmnist_pl.architecture import IN_FEATURES, NUM_CLASSES, REFERENCE_HIDDEN
from fmnist_pl.config import RunPlan
from fmnist_pl.engine.cuda_graph import CapturedStep
from fmnist_pl.engine.history import MemberHistory
from fmnist_pl.engine.mlp import StackedMLP, seeded_mlp
from fmnist_pl.optim.registry import build_shared, implementation


@dataclass
class MemberResult:
    """Everything training produced for one member, as data for the results writer."""

    plan: RunPlan
    history: MemberHistory  # its .test: "last"/"best" -> {"loss", "predictions"}
    test_targets: list[int]
    last_state: dict[str, torch.Tensor]  # plain-MLP state_dicts
    best_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    optimizer_implementation: str
    device: str
    lockstep_runs: int


class LitLockstep(pl.LightningModule):
    """K runs of one architecture in lockstep; manual optimization.

    One backward of the summed loss, then each member's optimizer steps on that member's
    slice of the stacked weights. The per-member optimizers see ``nn.Parameter`` *views* of
    the stacked tensors (no copies), so the update is written straight into the weights the
    batched forward uses. Per-member results are :class:`MemberHistory` objects and, after
    ``trainer.test``, :meth:`results`; TensorBoard gets one logger per member
    (``trainer.loggers[k]``), so runs overlay in TensorBoard.

    Args:
        members: the runs, seed-major (every seed group has the same optimizers in order).
        hidden: hidden layer sizes of every member.
        use_cuda_graphs: capture the step as a CUDA graph on a GPU.
        compile_fused: let optimizers whose fused kernel is compiled (Keras RMSprop) use it on the CPU.
    """

    def __init__(self, members: Sequence[RunPlan], hidden: Sequence[int] = REFERENCE_HIDDEN,
                 use_cuda_graphs: bool = True, compile_fused: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters({"members": [m.to_dict() for m in members], "hidden": list(hidden),
                                   "use_cuda_graphs": use_cuda_graphs, "compile_fused": compile_fused})
        self.automatic_optimization = False
        self.use_cuda_graphs, self.compile_fused = use_cuda_graphs, compile_fused
        self.members = list(members)
        seeds = [m.seed for m in self.members]
        self.group_seeds = list(dict.fromkeys(seeds))
        per_group = len(seeds) // len(self.group_seeds)
        if seeds != [s for s in self.group_seeds for _ in range(per_group)]:
            raise ValueError("members must be ordered seed-major with the same optimizers in every seed group")
        self.net = StackedMLP([seeded_mlp(hidden, s) for s in seeds], groups=len(self.group_seeds))
        for i, p in enumerate(self.net.parameters_in_order()):
            # The weights of each member's best validation epoch (early stopping's answer).
            self.register_buffer(f"best_{i}", p.detach().clone())
        self.register_buffer("active", torch.ones(len(self.members), dtype=torch.bool))
        self.histories = [MemberHistory() for _ in self.members]
        self._views: list[list[nn.Parameter]] = []
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(
            NUM_CLASSES, average="micro", multidim_average="samplewise")
        self._captured: CapturedStep | None = None
        self.previous_fit_seconds = 0.0  # training time before the checkpoint this fit resumed from
        self._fit_clock: float | None = None
        self._test: dict[str, dict[str, Any]] = {}
        self._test_targets: list[int] = []
        self._reset_epoch_sums()

    # ----------------------------------------------------------------- optimizers
    def optimizer_groups(self) -> dict[str, list[int]]:
        """Member indices per optimizer class: one ``torch.optim`` instance each (see ``build_shared``).

        ``sgd`` and ``momentum`` are both ``torch.optim.SGD``: one instance, a param group each.
        """
        groups: dict[str, list[int]] = {}
        for k, m in enumerate(self.members):
            groups.setdefault(m.optimizer.info.cls_path, []).append(k)
        return groups

    def fused_by_compile(self) -> bool:
        """Whether optimizers whose fused kernel is compiled (Keras RMSprop) use it.

        On the CPU, always (unless ``compile_fused=False``): one kernel instead of five passes.
        Not by how long the run is: a run's numbers must not depend on ``--epochs`` or
        ``--seeds``, and kernels differ in float rounding. On a GPU the whole step is one
        CUDA graph already.
        """
        return self.compile_fused and self.device.type == "cpu"

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        stacked = self.net.parameters_in_order()
        self._views = [[nn.Parameter(p.data[k]) for p in stacked] for k in range(len(self.members))]
        # capturable: optimizer step counters live on the GPU, so a CUDA graph can replay the step.
        capturable = self.device.type == "cuda" and self.use_cuda_graphs
        real = [build_shared([self.members[k].optimizer for k in ks], [self._views[k] for k in ks],
                             capturable=capturable, compile_fused=self.fused_by_compile())
                for ks in self.optimizer_groups().values()]
        # The epoch clock: an optimizer with one empty parameter, stepped through Lightning's public
        # LightningOptimizer.step once per EPOCH (at its first batch). In manual optimization that call is what advances
        # trainer.global_step, which ModelCheckpoint keys on (it skips a save at an unchanged step);
        # the real optimizers step raw inside the (possibly graph-captured) step, where Lightning's
        # wrapper cannot run, and once per batch its bookkeeping would cost a fifth of a GPU step.
        # So trainer.global_step counts epochs here.
        clock = torch.optim.SGD([nn.Parameter(torch.zeros(0, device=self.device))], lr=0.0)
        return [*real, clock]

    def _member_optimizer(self, k: int) -> torch.optim.Optimizer:
        return self.trainer.optimizers[list(self.optimizer_groups()).index(self.members[k].optimizer.info.cls_path)]

    def member_optimizer_state(self, k: int) -> dict[str, Any]:
        """Member ``k``'s optimizer state (per tensor, in layer order), for its own checkpoint."""
        opt = self._member_optimizer(k)
        return {"hparams": dict(self.members[k].optimizer.hparams),
                "state": [{n: (t.detach().cpu().clone() if torch.is_tensor(t) else t)
                           for n, t in opt.state.get(v, {}).items()} for v in self._views[k]]}

    def fit_seconds(self) -> float:
        """Wall seconds of training so far, across interruptions (each resume adds its own)."""
        now = time.perf_counter() - self._fit_clock if self._fit_clock is not None else 0.0
        return self.previous_fit_seconds + now

    def on_fit_start(self) -> None:
        self._fit_clock = time.perf_counter()
        datamodule = getattr(self.trainer, "datamodule", None)
        seeds = getattr(datamodule, "seeds", None)
        # One source of truth for seeds: the runs' plans. The data must shuffle for exactly these.
        if seeds is not None and (list(seeds) != self.group_seeds or not datamodule.stack_seeds):
            raise ValueError(f"the DataModule shuffles for seeds {list(seeds)} but these runs have seeds "
                             f"{self.group_seeds}: build it with seeds={self.group_seeds}, stack_seeds=True")
        # After a restore or a device move, re-point the views at the live stacked weights.
        for k, views in enumerate(self._views):
            for view, p in zip(views, self.net.parameters_in_order()):
                view.data = p.data[k]

    # ----------------------------------------------------------------- training
    def _reset_epoch_sums(self) -> None:
        # Zeroed in place, never reallocated: a captured CUDA graph keeps writing to these.
        k, device = len(self.members), self.active.device
        sums = getattr(self, "_train_loss_sum", None)
        if sums is None or sums.device != device:
            self._train_loss_sum = torch.zeros(k, device=device, dtype=torch.float64)
            self._train_correct = torch.zeros(k, device=device, dtype=torch.long)
            self._val_loss_sum = torch.zeros(k, device=device, dtype=torch.float64)
        else:
            for t in (self._train_loss_sum, self._train_correct, self._val_loss_sum):
                t.zero_()
        self._train_seen = 0
        self._val_seen = 0

    def member_targets(self, y: torch.Tensor) -> torch.Tensor:
        """``y: [G, B]`` -> ``[K, B]``, each member getting its seed group's labels."""
        per_group = len(self.members) // y.shape[0]
        return y.repeat_interleave(per_group, dim=0) if per_group > 1 else y

    @staticmethod
    def member_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-member, per-image cross-entropy ``[K, B]`` from logits ``[K, C, B]``."""
        return F.cross_entropy(logits, targets, reduction="none")

    def on_train_start(self) -> None:
        # Every real optimizer steps raw (LightningOptimizer.step's bookkeeping would cost more than
        # the arithmetic at batch 32); the clock (the last one) steps through Lightning once an epoch.
        self._raw_optimizers = list(self.trainer.optimizers[:-1])
        wrapped = self.optimizers()
        self._clock = wrapped[-1] if isinstance(wrapped, list) else wrapped
        self._active_list = self.active.tolist()
        self._captured = None
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.device.type == "cuda" and self.use_cuda_graphs and datamodule is not None:
            shape = torch.Size([len(self.group_seeds), datamodule.batch_size, IN_FEATURES])
            self._captured = CapturedStep(lambda x, y: self._step(x, y, lambda loss: loss.backward()),
                                          self._clear_grads, shape, self.device)

    def on_train_epoch_start(self) -> None:
        self._reset_epoch_sums()
        self._epoch_started = time.perf_counter()

    def _step(self, x: torch.Tensor, y: torch.Tensor, backward: Any) -> None:
        """One training step of every member: forward, one backward, each optimizer, epoch sums.

        Written so that it can be captured as a CUDA graph: no host syncs, no allocation of
        persistent state, no Python-side branching on tensor values.
        """
        logits = self.net(x)
        targets = self.member_targets(y)
        losses = self.member_losses(logits, targets).mean(1)
        backward(losses.sum())
        grads = [p.grad for p in self.net.parameters_in_order()]
        for k, views in enumerate(self._views):
            active = self._active_list[k]  # a diverged member gets no gradient, so no update
            for view, grad in zip(views, grads):
                view.grad = grad[k] if active else None
        for opt in self._raw_optimizers:
            opt.step()
        with torch.no_grad():
            # Hand-written epoch sums instead of torchmetrics objects on purpose: they stay on the
            # device with no host sync, and are two in-place adds a CUDA graph can capture.
            # Validation and test use torchmetrics.
            self._train_loss_sum += losses.detach() * y.shape[1]
            self._train_correct += (logits.argmax(1) == targets).sum(1)

    def _clear_grads(self) -> None:
        for p in self.net.parameters_in_order():
            p.grad = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        if self._captured is not None and self._captured.fits(x):
            self._captured(x, y)
        else:
            self._clear_grads()  # after a capture, .grad holds the graph's static buffers: never add to them
            self._step(x, y, self.manual_backward)
            self._clear_grads()
        if batch_idx == 0:  # Lightning counts wrapper steps only inside training_step
            self._clock.step()
        self._train_seen += y.shape[1]

    # ----------------------------------------------------------------- validation
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        targets = y.expand(len(self.members), -1)
        self._val_loss_sum += self.member_losses(logits, targets).sum(1)
        self._val_seen += len(y)
        self.val_acc.update(logits.argmax(1), targets)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._val_loss = (self._val_loss_sum / max(self._val_seen, 1)).tolist()
        self._val_acc = torch.atleast_1d(self.val_acc.compute()).tolist()  # torchmetrics squeezes K=1
        self.val_acc.reset()
        self._val_loss_sum.zero_()
        self._val_seen = 0

    def on_train_epoch_end(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self._epoch_started
        epoch = self.current_epoch + 1
        n = len(self.members)
        train_loss = (self._train_loss_sum / max(self._train_seen, 1)).tolist()
        train_acc = (self._train_correct.double() / max(self._train_seen, 1)).tolist()
        val_loss = getattr(self, "_val_loss", [float("nan")] * n)
        val_acc = getattr(self, "_val_acc", [float("nan")] * n)
        stacked, best = self.net.parameters_in_order(), self.best_tensors()
        for k, hist in enumerate(self.histories):
            if not hist.finished:
                continue
            row = {"epoch": epoch, "train_loss": train_loss[k], "train_acc": train_acc[k],
                   "val_loss": val_loss[k], "val_acc": val_acc[k], "seconds": seconds}
            outcome = hist.record(row)
            if outcome == "diverged":
                self.active[k] = False
                continue
            if outcome == "best":
                with torch.no_grad():
                    for b, p in zip(best, stacked):
                        b[k].copy_(p[k])
            if self.loggers:
                self.loggers[k].log_metrics(
                    {"train/loss": train_loss[k], "train/acc": train_acc[k], "val/loss": val_loss[k],
                     "val/acc": val_acc[k], "time/epoch_seconds": seconds}, step=epoch)
        active = self.active.tolist()
        if active != self._active_list and self._captured is not None:
            self._captured.invalidate()  # the captured step still updates the diverged run: capture anew
        self._active_list = active
        if not any(active):
            self.trainer.should_stop = True

    def best_tensors(self) -> list[torch.Tensor]:
        """The stacked weights of every member's best validation epoch, in ``parameters_in_order``."""
        return [getattr(self, f"best_{i}") for i in range(len(self.net.parameters_in_order()))]

    # ----------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        n = len(self.members)
        self._test = {which: {"loss": torch.zeros(n, dtype=torch.float64, device=self.device), "predictions": []}
                      for which in ("last", "best")}
        self._test_targets = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        targets = y.expand(len(self.members), -1)
        for which, logits in (("last", self.net(x)), ("best", self.net.logits_with(self.best_tensors(), x))):
            self._test[which]["predictions"].append(logits.argmax(1))
            self._test[which]["loss"] += self.member_losses(logits, targets).sum(1)
        self._test_targets.append(y)

    def on_test_epoch_end(self) -> None:
        target = torch.cat(self._test_targets)
        for which in ("last", "best"):
            preds = torch.cat(self._test[which]["predictions"], dim=1).tolist()
            losses = (self._test[which]["loss"] / len(target)).tolist()
            for k, hist in enumerate(self.histories):
                hist.test[which] = {"loss": losses[k], "predictions": preds[k]}
        self._test_targets = target.tolist()

    def results(self) -> list[MemberResult]:
        """Each member's history, test predictions, weights and optimizer state (after ``trainer.test``)."""
        best = self.best_tensors()
        return [MemberResult(
            plan=plan, history=hist, test_targets=self._test_targets,
            last_state=self.net.member_state_dict(k), best_state=self.net.member_state_dict(k, best),
            optimizer_state=self.member_optimizer_state(k),
            optimizer_implementation=implementation(self._member_optimizer(k)),
            device=str(self.device), lockstep_runs=len(self.members),
        ) for k, (plan, hist) in enumerate(zip(self.members, self.histories))]

    # ----------------------------------------------------------------- resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fmnist_histories"] = [h.to_dict() for h in self.histories]
        checkpoint["fmnist_fit_seconds"] = self.fit_seconds()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("fmnist_histories")
        if saved:
            self.histories = [MemberHistory.from_dict(h) for h in saved]
        self.previous_fit_seconds = float(checkpoint.get("fmnist_fit_seconds", 0.0))
