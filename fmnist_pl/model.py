"""The reference MLP, its lockstep ensemble, and the LightningModules that train them.

* :class:`MLP` - the plain ``nn.Module`` of the reference (784 -> 300 -> 100 -> 10, ReLU,
  Glorot-uniform weights and zero biases as Keras' ``Dense`` defaults).
* :class:`LitClassifier` - one MLP, one optimizer, automatic optimization: the textbook
  Lightning path, kept as the trusted reference the fast engine is tested against.
* :class:`EnsembleMLP` / :class:`LitLockstep` - K MLPs (optimizers × seeds) trained in
  lockstep on the same batches, their weights stacked as ``[K, out, in]`` so that one step
  runs a few large batched matrix multiplies instead of K sets of small ones. At batch 32
  the per-step overhead (Python, Lightning hooks, kernel launches), not the FLOPs, dominates
  a single model; sharing it among K models is what makes the comparison fast. Each model is
  still stepped by its own ``torch.optim`` optimizer with its own hyperparameters, and its
  gradients are exactly those of its own mean loss (the ensemble's loss is the *sum* of the
  members' losses, whose gradient w.r.t. one member's weights is that member's gradient).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from fmnist_pl.config import parameter_count  # noqa: F401 (re-exported: the model's size)
from fmnist_pl.idx import CLASS_NAMES
from fmnist_pl.optimizers import OptimizerSpec, build_shared, implementation

NUM_CLASSES = len(CLASS_NAMES)
IN_FEATURES = 28 * 28


class MLP(nn.Module):
    """Flatten -> Dense(h, ReLU)... -> Dense(10) logits; 266,610 parameters for hidden=(300, 100)."""

    def __init__(self, hidden: Sequence[int] = (300, 100), in_features: int = IN_FEATURES,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(fan_in, fan_out)
            # Keras Dense defaults, which the reference used (torch's own default is Kaiming-uniform).
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < len(hidden):
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.layers if isinstance(m, nn.Linear)]


def seeded_mlp(hidden: Sequence[int], seed: int) -> MLP:
    """The initial weights of seed ``seed``: the same for every optimizer (a paired design)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return MLP(hidden)
    finally:
        torch.random.set_rng_state(generator_state)


def model_summary(hidden: Sequence[int]) -> list[dict[str, Any]]:
    """Keras-style summary rows (layer, output shape, parameters) as plain data."""
    rows = [{"layer": "Flatten", "output": f"(None, {IN_FEATURES})", "params": 0}]
    sizes = [IN_FEATURES, *hidden, NUM_CLASSES]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = "ReLU" if i < len(hidden) else "softmax (in the loss)"
        rows.append({"layer": f"Dense {b}, {act}", "output": f"(None, {b})", "params": a * b + b})
    return rows


class EnsembleMLP(nn.Module):
    """K MLPs of one architecture with weights stacked as ``[K, out, in]``.

    Members are ordered seed-major: with ``G`` seed groups of ``M`` members each, member
    ``k`` belongs to group ``k // M`` and sees that group's batches. The first layer of all
    ``M`` members of a group is one matrix multiply (they share the input); the deeper
    layers are ``baddbmm`` over the K members.
    """

    def __init__(self, members: Sequence[MLP], groups: int = 1) -> None:
        super().__init__()
        if len(members) % groups:
            raise ValueError(f"{len(members)} members do not split into {groups} equal groups")
        self.groups, self.k = groups, len(members)
        per_member = [m.linears() for m in members]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([layers[i].weight.detach() for layers in per_member]))
             for i in range(len(per_member[0]))])
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([layers[i].bias.detach() for layers in per_member]))
             for i in range(len(per_member[0]))])

    @property
    def hidden(self) -> list[int]:
        return [w.shape[1] for w in self.weights[:-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [G, B, 784]`` (or ``[1, B, 784]`` shared by all) -> logits ``[K, 10, B]``.

        Activations are kept feature-major (``[K, features, B]``, i.e. ``h = W @ x``) so that
        every weight gradient ``dW = dh @ xᵀ`` comes out of one bmm already in the weights'
        own layout; the batch-major form ``x @ Wᵀ`` made autograd copy the whole first-layer
        gradient each step (measured: ~1.1 ms of a ~4 ms step on 2 CPU cores). The logits
        stay ``[K, C, B]``, which ``F.cross_entropy`` takes directly (class dimension 1).
        """
        g, k = self.groups, self.k
        m = k // g
        if x.shape[0] != g:
            x = x.expand(g, *x.shape[1:])
        w0, b0 = self.weights[0], self.biases[0]
        out0 = w0.shape[1]
        batch = x.shape[1]
        # [G, M*out, in] @ [G, in, B] -> [G, M*out, B]: one GEMM per seed group (members share x).
        h = torch.baddbmm(b0.reshape(g, m * out0, 1), w0.reshape(g, m * out0, -1), x.transpose(1, 2))
        h = h.relu_().view(k, out0, batch)
        last = len(self.weights) - 1
        for i in range(1, len(self.weights)):
            h = torch.baddbmm(self.biases[i].unsqueeze(2), self.weights[i], h)
            if i < last:
                h = h.relu_()
        return h

    def member_state_dict(self, k: int, params: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Member ``k`` as the ``state_dict`` of a plain :class:`MLP` (loadable with ``MLP.load_state_dict``)."""
        tensors = list(params) if params is not None else [*self.weights, *self.biases]
        n = len(self.weights)
        out = {}
        for i in range(n):
            out[f"layers.{2 * i + 1}.weight"] = tensors[i][k].detach().clone().cpu()
            out[f"layers.{2 * i + 1}.bias"] = tensors[n + i][k].detach().clone().cpu()
        return out


@dataclass
class MemberInfo:
    """Who a lockstep member is: a run name (``<optimizer>`` or ``<optimizer>/seed-<s>``)."""

    run: str
    optimizer: OptimizerSpec
    seed: int


@dataclass
class MemberHistory:
    """Per-epoch history and end-of-training results of one member, as plain data."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float = math.inf
    status: str = "ok"
    diverged_epoch: int | None = None
    test: dict[str, Any] = field(default_factory=dict)


class LitClassifier(pl.LightningModule):
    """One MLP, one optimizer, automatic optimization: the straightforward Lightning path.

    Log keys follow lightning-hydra-template: ``train/loss``, ``train/acc``, ``val/loss``,
    ``val/acc``, ``test/acc``, ``test/f1``. Used as the trusted reference that the lockstep
    engine must match, and convenient for loading a saved member back into Lightning.
    """

    def __init__(self, optimizer: dict[str, Any], hidden: Sequence[int] = (300, 100), seed: int = 42) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = seeded_mlp(hidden, seed)
        self.optimizer_spec = OptimizerSpec(optimizer["name"], optimizer["hparams"])
        self.lr = float(optimizer["hparams"]["lr"])  # an attribute, so Lightning's Tuner.lr_find can vary it
        self.train_acc = torchmetrics.classification.MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_acc = torchmetrics.classification.MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_f1 = torchmetrics.classification.MulticlassF1Score(NUM_CLASSES, average="macro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        x, y = x.reshape(-1, IN_FEATURES), y.reshape(-1)  # BatchStream yields [1, B, ...]
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


DIVERGENCE_LOSS = 1e3  # a mean cross-entropy this high (chance is ln 10 ≈ 2.3) has exploded


class LitLockstep(pl.LightningModule):
    """K MLPs (optimizers × seeds) trained in lockstep: the fast engine behind ``compare``.

    Manual optimization: one backward of the summed loss, then each member's own optimizer
    steps on that member's slice of the stacked weights. The per-member optimizers see
    ``nn.Parameter`` *views* of the stacked tensors (no copies), so the update is written
    straight into the weights the batched forward uses.

    Per-member results (history, best epoch, divergence, test metrics) are kept as plain
    data in :attr:`histories` and written by :mod:`fmnist_pl.train`; TensorBoard gets one
    logger per member (``trainer.loggers[k]``), so runs overlay in TensorBoard.
    """

    def __init__(self, members: list[dict[str, Any]], hidden: Sequence[int] = (300, 100),
                 use_cuda_graphs: bool = True, compile_fused: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.use_cuda_graphs = use_cuda_graphs
        self.compile_fused = compile_fused
        self.members = [MemberInfo(m["run"], OptimizerSpec(m["optimizer"]["name"], m["optimizer"]["hparams"]),
                                   int(m["seed"])) for m in members]
        seeds = [m.seed for m in self.members]
        self.group_seeds = list(dict.fromkeys(seeds))
        per_group = len(seeds) // len(self.group_seeds)
        expected = [s for s in self.group_seeds for _ in range(per_group)]
        if seeds != expected:
            raise ValueError("members must be ordered seed-major with the same optimizers in every seed group")
        self.net = EnsembleMLP([seeded_mlp(hidden, s) for s in seeds], groups=len(self.group_seeds))
        k = len(self.members)
        for i, p in enumerate(self._stacked()):
            # The weights of each member's best validation epoch (early stopping's answer).
            self.register_buffer(f"best_{i}", p.detach().clone())
        self.register_buffer("active", torch.ones(k, dtype=torch.bool))
        self.histories = [MemberHistory() for _ in self.members]
        self._views: list[list[nn.Parameter]] = []
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(
            NUM_CLASSES, average="micro", multidim_average="samplewise")
        self._reset_epoch_sums()

    # ----------------------------------------------------------------- optimizers
    def _member_views(self) -> list[list[nn.Parameter]]:
        return [[nn.Parameter(p.data[k]) for p in self._stacked()] for k in range(len(self.members))]

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

        On the CPU, always (unless ``compile_fused=False``): one kernel instead of five passes,
        ~3x faster (0.23 -> 0.11 ms a step for one model, 1.42 -> 0.46 ms for five, 2 cores),
        for a compile of a few seconds per process. Not by how long the run is: a run's numbers
        must not depend on ``--epochs`` or ``--seeds``, and kernels differ in float rounding.
        On a GPU the whole step is one CUDA graph already.
        """
        return self.compile_fused and self.device.type == "cpu"

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self._views = self._member_views()
        # capturable: optimizer step counters live on the GPU, so a CUDA graph can replay the step.
        capturable = self.device.type == "cuda" and self.use_cuda_graphs
        return [build_shared([self.members[k].optimizer for k in ks], [self._views[k] for k in ks],
                             capturable=capturable, compile_fused=self.fused_by_compile())
                for ks in self.optimizer_groups().values()]

    def _member_optimizer(self, k: int) -> torch.optim.Optimizer:
        return self.trainer.optimizers[list(self.optimizer_groups()).index(self.members[k].optimizer.info.cls_path)]

    def member_optimizer_implementation(self, k: int) -> str:
        """The kernels member ``k``'s optimizer stepped with (see ``optimizers.implementation``)."""
        return implementation(self._member_optimizer(k))

    def member_optimizer_state(self, k: int) -> dict[str, Any]:
        """Member ``k``'s optimizer state (per tensor, in layer order), for its own checkpoint."""
        opt = self._member_optimizer(k)
        return {"hparams": dict(self.members[k].optimizer.hparams),
                "state": [{n: (t.detach().cpu().clone() if torch.is_tensor(t) else t)
                           for n, t in opt.state.get(v, {}).items()} for v in self._views[k]]}

    def on_fit_start(self) -> None:
        # After a restore or a device move, re-point the views at the live stacked weights.
        for k, views in enumerate(self._views):
            for view, p in zip(views, self._stacked()):
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

    def member_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-member, per-image cross-entropy ``[K, B]`` from logits ``[K, C, B]``."""
        return F.cross_entropy(logits, targets, reduction="none")

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
        grads = [p.grad for p in self._stacked()]
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

    def _stacked(self) -> list[nn.Parameter]:
        return [*self.net.weights, *self.net.biases]

    def _clear_grads(self) -> None:
        for p in self._stacked():
            p.grad = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        if self._use_graphs and x.shape == self._graph_shape:
            self._graph_step(x, y)
        else:
            self._clear_grads()  # after a capture, .grad holds the graph's static buffers: never add to them
            self._step(x, y, self.manual_backward)
            self._clear_grads()
        # Lightning's step bookkeeping (global_step), once per batch, as one LightningOptimizer.step would.
        # (the manual-optimization loop installs these hooks on the wrapper for each batch)
        self._lightning_optimizer._on_before_step()
        self._lightning_optimizer._on_after_step()
        self._train_seen += y.shape[1]

    def _graph_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """On CUDA: warm up eagerly on a side stream, capture one whole step, then replay it.

        At batch 32 a GPU step is bound by kernel-launch and Python overhead (~2.6 ms for four
        models on an H100, measured), not arithmetic; replaying a captured graph launches the
        same ~100 kernels in one call. Full-size batches replay; the epoch's partial last batch
        runs eagerly.
        """
        if self._graph is None and self._warmup_left > 0:
            self._warmup_left -= 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._clear_grads()
                self._step(x, y, lambda loss: loss.backward())
                self._clear_grads()
            torch.cuda.current_stream(self.device).wait_stream(side)
            return
        if self._graph is None:
            self._static_x, self._static_y = x.clone(), y.clone()
            self._clear_grads()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step(self._static_x, self._static_y, lambda loss: loss.backward())
            self._graph = graph  # capture records, it does not run: replay below does this batch
        self._static_x.copy_(x)
        self._static_y.copy_(y)
        self._graph.replay()

    def on_train_start(self) -> None:
        wrapped = self.optimizers()
        wrapped = wrapped if isinstance(wrapped, list) else [wrapped]
        # Every optimizer steps raw (LightningOptimizer.step costs ~100 µs of bookkeeping a call,
        # measured); its progress hooks still run once per batch, so trainer.global_step counts batches.
        self._raw_optimizers = list(self.trainer.optimizers)
        compiled = [type(o).__name__ for o in self._raw_optimizers
                    if getattr(o, "fused", False) and getattr(o, "fused_needs_compile", False)]
        if compiled:  # the first step pauses for it: say why
            rank_zero_info(f"{', '.join(compiled)}: compiling its fused update with torch.compile "
                           "(10-20 s the first time on a machine, ~3 s once cached)")
        self._lightning_optimizer = wrapped[0]
        self._active_list = self.active.tolist()
        self._use_graphs = self.device.type == "cuda" and self.use_cuda_graphs
        self._graph_shape = torch.Size([len(self.group_seeds), self.trainer.datamodule.batch_size, IN_FEATURES]) \
            if self.trainer.datamodule is not None else None
        self._graph, self._warmup_left = None, 3

    # ----------------------------------------------------------------- validation
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        targets = y.expand(len(self.members), -1)
        self._val_loss_sum += self.member_losses(logits, targets).sum(1)
        self._val_seen += y.shape[1]
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
        train_loss = (self._train_loss_sum / max(self._train_seen, 1)).tolist()
        train_acc = (self._train_correct.double() / max(self._train_seen, 1)).tolist()
        val_loss = getattr(self, "_val_loss", [math.nan] * len(self.members))
        val_acc = getattr(self, "_val_acc", [math.nan] * len(self.members))
        best_params = self._best_params()
        stacked = self._stacked()
        for k, hist in enumerate(self.histories):
            if hist.status == "diverged":
                continue
            row = {"epoch": epoch, "train_loss": train_loss[k], "train_acc": train_acc[k],
                   "val_loss": val_loss[k], "val_acc": val_acc[k], "seconds": seconds}
            hist.epochs.append(row)
            if not all(math.isfinite(v) for v in (train_loss[k], val_loss[k])) or train_loss[k] > DIVERGENCE_LOSS:
                hist.status, hist.diverged_epoch = "diverged", epoch
                self.active[k] = False
                continue
            if val_loss[k] < hist.best_val_loss:
                hist.best_val_loss, hist.best_epoch = val_loss[k], epoch
                with torch.no_grad():
                    for best, p in zip(best_params, stacked):
                        best[k].copy_(p[k])
            if self.loggers:
                self.loggers[k].log_metrics(
                    {"train/loss": train_loss[k], "train/acc": train_acc[k], "val/loss": val_loss[k],
                     "val/acc": val_acc[k], "time/epoch_seconds": seconds}, step=epoch)
        active = self.active.tolist()
        if active != self._active_list:
            self._graph = None  # the captured step still updates the diverged run: capture anew
        self._active_list = active
        if not any(active):
            self.trainer.should_stop = True

    def _best_params(self) -> list[torch.Tensor]:
        n = len(self.net.weights) * 2
        return [getattr(self, f"best_{i}") for i in range(n)]

    # ----------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        self._test = {"last": [], "best": []}
        self._test_loss = {"last": 0.0, "best": 0.0}
        self._test_targets = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        targets = y.expand(len(self.members), -1)
        names = [f"weights.{i}" for i in range(len(self.net.weights))] + \
                [f"biases.{i}" for i in range(len(self.net.biases))]
        best = dict(zip(names, self._best_params()))
        for which, logits in (("last", self.net(x)),
                              ("best", torch.func.functional_call(self.net, best, (x,)))):
            self._test[which].append(logits.argmax(1))
            self._test_loss[which] = self._test_loss[which] + self.member_losses(logits, targets).sum(1)
        self._test_targets.append(y[0])

    def on_test_epoch_end(self) -> None:
        target = torch.cat(self._test_targets)
        for which in ("last", "best"):
            preds = torch.cat(self._test[which], dim=1)
            losses = (self._test_loss[which] / len(target)).tolist()
            for k, hist in enumerate(self.histories):
                hist.test[which] = classification_metrics(preds[k], target) | {"loss": losses[k]}
                hist.test[which]["predictions"] = preds[k].tolist()
        self.test_targets = target.tolist()

    # ----------------------------------------------------------------- resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fmnist_histories"] = [vars(h) | {} for h in self.histories]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.histories = [MemberHistory(**h) for h in checkpoint.get("fmnist_histories", [])] or self.histories


def classification_metrics(preds: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    """Everything a scikit-learn-style classification report needs, computed with torchmetrics."""
    from torchmetrics.functional import classification as C

    n = NUM_CLASSES
    out: dict[str, Any] = {
        "accuracy": C.multiclass_accuracy(preds, target, n, average="micro").item(),
        "confusion_matrix": C.multiclass_confusion_matrix(preds, target, n).tolist(),
        "support": torch.bincount(target, minlength=n).tolist(),
    }
    for average in ("none", "macro", "weighted"):
        key = "per_class" if average == "none" else average
        out[key] = {
            "precision": C.multiclass_precision(preds, target, n, average=average, zero_division=0).tolist(),
            "recall": C.multiclass_recall(preds, target, n, average=average, zero_division=0).tolist(),
            "f1": C.multiclass_f1_score(preds, target, n, average=average, zero_division=0).tolist(),
        }
    out["macro_f1"] = out["macro"]["f1"]
    return out
