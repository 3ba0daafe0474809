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

import math
from typing import Any, Sequence

import torch
from torch import nn

from fmnist_pl.architecture import IN_FEATURES, REFERENCE_HIDDEN
from fmnist_pl.config import RunPlan
from fmnist_pl.engine.cuda_graph import CapturedStep
from fmnist_pl.engine.evaluated import LitEvaluated, MemberResult
from fmnist_pl.engine.mlp import StackedMLP, seeded_mlp
from fmnist_pl.optim import schedules
from fmnist_pl.optim.registry import build_shared, implementation

SETTINGS_PER_OPTIMIZER = 12
"""Settings (param groups) one optimizer instance steps; a class with more gets several instances.

torch steps an instance's groups one after another, each with a few multi-tensor kernels over one
setting's tensors (its seeds). On a GPU such a kernel is far too small to fill the device: one
instance for a whole study would spend its step in a long queue of tiny kernels, far above what
the step's memory traffic needs (benchmarks/profile_step.py; figures: benchmarks/RESULTS.md).
Instances step on their own CUDA streams, so that several run at once (the study's 144 settings:
12 instances). The split does not depend on the device, so that a checkpoint holds the same
optimizers on a CPU and a GPU; on a CPU the extra ``step`` calls are negligible against a step of
such a study."""


class LitLockstep(LitEvaluated):
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
        fused_kernel: let optimizers whose fused update is a C kernel of ours (Keras RMSprop) use it on the CPU.
        concurrent_optimizers: on a GPU, step the optimizer instances on separate CUDA streams
            (the same kernels, so the same numbers; off: one after another, for benchmarks).

    Longer than our usual class, as a LightningModule is one object by design: the stacked
    weights, their per-run optimizers and the step (eager or a CUDA graph) share state that
    splitting would only pass around.
    """

    def __init__(
        self,
        members: Sequence[RunPlan],
        hidden: Sequence[int] = REFERENCE_HIDDEN,
        use_cuda_graphs: bool = True,
        fused_kernel: bool = True,
        concurrent_optimizers: bool = True,
    ) -> None:
        super().__init__(members)
        # In the checkpoint, not in the loggers: Lightning would write every member's key into each
        # member's hparams.yaml (1,440 runs: 1,440 files of 1,440 entries). Each run's TensorBoard
        # HPARAMS are its own, logged with its test results (execution/unit.py).
        self.save_hyperparameters(
            {
                "members": [m.to_dict() for m in members],
                "hidden": list(hidden),
                "use_cuda_graphs": use_cuda_graphs,
                "fused_kernel": fused_kernel,
                "concurrent_optimizers": concurrent_optimizers,
            },
            logger=False,
        )
        self.automatic_optimization = False
        self.use_cuda_graphs, self.fused_kernel = use_cuda_graphs, fused_kernel
        self.concurrent_optimizers = concurrent_optimizers
        seeds = [m.seed for m in self.members]
        self.group_seeds = list(dict.fromkeys(seeds))
        per_group = len(seeds) // len(self.group_seeds)
        if seeds != [s for s in self.group_seeds for _ in range(per_group)]:
            raise ValueError("members must be ordered seed-major with the same optimizers in every seed group")
        self.net = StackedMLP([seeded_mlp(hidden, s) for s in seeds], groups=len(self.group_seeds))
        for i, p in enumerate(self.net.parameters_in_order()):
            # The weights of each member's best validation epoch (early stopping's answer).
            self.register_buffer(f"best_{i}", p.detach().clone())
        self._views: list[list[nn.Parameter]] = []
        self._captured: CapturedStep | None = None
        self._streams: list[torch.cuda.Stream] = []
        self._groups = self._split_optimizers()
        self._instance_of = {k: i for i, ks in enumerate(self._groups) for k in ks}

    # ----------------------------------------------------------------- optimizers
    def optimizer_groups(self) -> list[list[int]]:
        """Member indices per ``torch.optim`` instance (see ``build_shared``), as split at construction."""
        return self._groups

    def _split_optimizers(self) -> list[list[int]]:
        """Member indices per ``torch.optim`` instance: an optimizer class's settings, at most
        :data:`SETTINGS_PER_OPTIMIZER` of them, as evenly as possible; a setting's members (its
        seeds) in order.

        ``sgd`` and ``momentum`` are both ``torch.optim.SGD``: one instance, a param group each.
        """
        settings: dict[str, dict[str, list[int]]] = {}
        for k, m in enumerate(self.members):
            # A setting is one param group of build_shared's: an instance holds whole ones.
            settings.setdefault(m.optimizer.info.cls_path, {}).setdefault(m.optimizer.setting(), []).append(k)
        groups = []
        for per_setting in settings.values():
            members = list(per_setting.values())
            parts = math.ceil(len(members) / SETTINGS_PER_OPTIMIZER)
            bounds = [len(members) * i // parts for i in range(parts + 1)]
            groups += [[k for setting in members[a:b] for k in setting] for a, b in zip(bounds, bounds[1:])]
        return groups

    def uses_fused_kernel(self) -> bool:
        """Whether optimizers whose fused update is a C kernel of ours (Keras RMSprop) use it.

        On the CPU, always (unless ``fused_kernel=False``): one kernel instead of five passes.
        Not by how long the run is: a run's numbers must not depend on ``--epochs`` or
        ``--seeds``, and kernels differ in float rounding. On a GPU the whole step is one
        CUDA graph already.
        """
        return self.fused_kernel and self.device.type == "cpu"

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        stacked = self.net.parameters_in_order()
        self._views = [[nn.Parameter(p.data[k]) for p in stacked] for k in range(len(self.members))]
        # capturable: optimizer step counters live on the GPU, so a CUDA graph can replay the step.
        capturable = self.device.type == "cuda" and self.use_cuda_graphs
        real = [
            build_shared(
                [self.members[k].optimizer for k in ks],
                [self._views[k] for k in ks],
                capturable=capturable,
                fused_kernel=self.uses_fused_kernel(),
            )
            for ks in self.optimizer_groups()
        ]
        return [*real, self.epoch_clock()]

    def optimizer_layout(self) -> list[list[list[tuple[int, int]]]]:
        """Per optimizer instance, per param group, the (member, tensor) of each parameter in the order
        torch's ``state_dict`` numbers them: where each run's optimizer state sits in a checkpoint
        (:mod:`fmnist_pl.engine.carry`). Builds the optimizers: for a module that is not training."""
        optimizers = self.configure_optimizers()[:-1]
        where = {id(view): (k, j) for k, views in enumerate(self._views) for j, view in enumerate(views)}
        return [[[where[id(p)] for p in group["params"]] for group in opt.param_groups] for opt in optimizers]

    def _member_optimizer(self, k: int) -> torch.optim.Optimizer:
        return self.trainer.optimizers[self._instance_of[k]]

    def member_optimizer_state(self, k: int) -> dict[str, Any]:
        """Member ``k``'s optimizer state (per tensor, in layer order), for its own checkpoint."""
        opt = self._member_optimizer(k)
        return {
            "hparams": dict(self.members[k].optimizer.hparams),
            "state": [
                {n: (t.detach().cpu().clone() if torch.is_tensor(t) else t) for n, t in opt.state.get(v, {}).items()}
                for v in self._views[k]
            ],
        }

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = getattr(self.trainer, "datamodule", None)
        seeds = getattr(datamodule, "seeds", None)
        # One source of truth for seeds: the runs' plans. The data must shuffle for exactly these.
        if seeds is not None and (list(seeds) != self.group_seeds or not datamodule.stack_seeds):
            raise ValueError(
                f"the DataModule shuffles for seeds {list(seeds)} but these runs have seeds "
                f"{self.group_seeds}: build it with seeds={self.group_seeds}, stack_seeds=True"
            )
        # After a restore or a device move, re-point the views at the live stacked weights.
        for k, views in enumerate(self._views):
            for view, p in zip(views, self.net.parameters_in_order()):
                view.data = p.data[k]

    # ----------------------------------------------------------------- training
    def member_targets(self, y: torch.Tensor) -> torch.Tensor:
        """``y: [G, B]`` -> ``[K, B]``, each member getting its seed group's labels."""
        per_group = len(self.members) // y.shape[0]
        return y.repeat_interleave(per_group, dim=0) if per_group > 1 else y

    def on_train_start(self) -> None:
        # Every real optimizer steps raw (LightningOptimizer.step's bookkeeping would cost more than
        # the arithmetic at batch 32); the clock (the last one) steps through Lightning once an epoch.
        super().on_train_start()
        self._raw_optimizers = list(self.trainer.optimizers[:-1])
        self._scheduled = [g for opt in self._raw_optimizers for g in opt.param_groups if "schedule" in g]
        self._active_list = self.active.tolist()
        self._captured = None
        datamodule = getattr(self.trainer, "datamodule", None)
        # A captured graph replays the rate it was captured with: scheduled rates step without one.
        graphs = self.use_cuda_graphs and not self._scheduled
        if self.device.type == "cuda" and graphs and datamodule is not None:
            shape = torch.Size([len(self.group_seeds), datamodule.batch_size, IN_FEATURES])
            self._captured = CapturedStep(self._step, self._clear_grads, shape, self.device)
        several = len(self._raw_optimizers) > 1
        self._streams = (
            [torch.cuda.Stream(self.device) for _ in self._raw_optimizers]
            if self.device.type == "cuda" and self.concurrent_optimizers and several
            else []
        )

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step of every member: forward, one backward, each optimizer, epoch sums.

        Written so that it can be captured as a CUDA graph: no host syncs, no allocation of
        persistent state, no Python-side branching on tensor values.

        The backward is the tensor's own, not ``manual_backward``: this engine runs in full
        precision on one device (``make_trainer``), where Lightning's wrapper adds only its
        before/after-backward hooks, which nothing here uses, and their cost on every step (a
        CUDA graph could not capture them anyway).
        """
        logits = self.net(x)
        targets = self.member_targets(y)
        losses = self.member_losses(logits, targets).mean(1)
        losses.sum().backward()
        # unbind: every member's slice of a stacked gradient in one call, not K indexing calls.
        member_grads = zip(*(p.grad.unbind(0) for p in self.net.parameters_in_order()))
        for views, grads, active in zip(self._views, member_grads, self._active_list):
            for view, grad in zip(views, grads):
                view.grad = grad if active else None  # a diverged member gets no gradient, so no update
        self._step_optimizers()
        with torch.no_grad():
            # Hand-written epoch sums instead of torchmetrics objects on purpose: they stay on the
            # device with no host sync, and are two in-place adds a CUDA graph can capture.
            # Validation and test use torchmetrics.
            self._train_loss_sum += losses.detach() * y.shape[1]
            self._train_correct += (logits.argmax(1) == targets).sum(1)

    def _step_optimizers(self) -> None:
        """Every optimizer instance steps; on a GPU each on its own stream, forked from the current
        stream and joined back to it (inside a CUDA-graph capture too: the graph then has a branch
        per instance, which the device runs side by side).

        Safe for the caching allocator: the gradients (made on the current stream) are freed only
        after the join, and an instance's state, used on its stream, lives as long as the optimizer.
        """
        if not self._streams:
            for opt in self._raw_optimizers:
                opt.step()
            return
        here = torch.cuda.current_stream(self.device)
        for opt, stream in zip(self._raw_optimizers, self._streams):
            stream.wait_stream(here)
            with torch.cuda.stream(stream):
                opt.step()
        for stream in self._streams:
            here.wait_stream(stream)

    def _clear_grads(self) -> None:
        for p in self.net.parameters_in_order():
            p.grad = None

    def _schedule(self, batch_idx: int) -> None:
        """Set every scheduled setting's rate for this step (:mod:`fmnist_pl.optim.schedules`).

        From the step's place in the fit (epoch x batches + batch), not a ``LambdaLR``'s own counter:
        a resumed group then needs no scheduler state, and these optimizers step raw, outside
        Lightning's scheduler loop. The schedule spans ``--epochs`` (a budget may stop it early)."""
        batches = max(1, int(self.trainer.num_training_batches))
        step, total = self.current_epoch * batches + batch_idx, max(1, int(self.trainer.max_epochs)) * batches
        for group in self._scheduled:
            group["lr"] = group["base_lr"] * schedules.factor(group["schedule"], step, total)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        if self._scheduled:
            self._schedule(batch_idx)
        if self._captured is not None and self._captured.fits(x):
            self._captured(x, y)
        else:
            self._clear_grads()  # after a capture, .grad holds the graph's static buffers: never add to them
            self._step(x, y)
            self._clear_grads()
        self.tick(batch_idx)
        self._train_seen += y.shape[1]
        self._train_evaluations += y.shape[1]  # one forward (and its backward) per image

    # ----------------------------------------------------------------- what LitEvaluated asks
    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def best_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits_with(self.best_tensors(), x)

    def keep_best(self, k: int) -> None:
        with torch.no_grad():
            for b, p in zip(self.best_tensors(), self.net.parameters_in_order()):
                b[k].copy_(p[k])

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        active = self.active.tolist()
        if active != self._active_list and self._captured is not None:
            self._captured.invalidate()  # the captured step still updates the diverged run: capture anew
        self._active_list = active

    def holds(self, checkpoint: dict[str, Any]) -> bool:
        # The first layer's stacked weights: K members of this hidden size.
        shape = (len(self.members), self.members[0].hidden[0], IN_FEATURES)
        # Its optimizers as split here (and the epoch clock): a checkpoint of another split cannot resume.
        optimizers = len(self.optimizer_groups()) + 1
        return (
            super().holds(checkpoint)
            and self._has_tensor(checkpoint, "net.weights.0", shape)
            and len(checkpoint.get("optimizer_states", ())) == optimizers
        )

    def best_tensors(self) -> list[torch.Tensor]:
        """The stacked weights of every member's best validation epoch, in ``parameters_in_order``."""
        return [getattr(self, f"best_{i}") for i in range(len(self.net.parameters_in_order()))]

    def results(self) -> list[MemberResult]:
        """Each member's history, test predictions, weights and optimizer state (after ``trainer.test``)."""
        best = self.best_tensors()
        return [
            MemberResult(
                plan=plan,
                history=hist,
                test_targets=self._test_targets,
                last_state=self.net.member_state_dict(k),
                best_state=self.net.member_state_dict(k, best),
                optimizer_state=self.member_optimizer_state(k),
                optimizer_implementation=implementation(self._member_optimizer(k)),
                device=str(self.device),
                lockstep_runs=len(self.members),
                test_predictions=self.test_predictions(k),
            )
            for k, (plan, hist) in enumerate(zip(self.members, self.histories))
        ]
