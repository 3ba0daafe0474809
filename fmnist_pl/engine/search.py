"""The gradient-free engine: one run of an EvoTorch search over the MLP's 266,610 weights.

Each training step is one generation: the population scores the step's mini-batch of training
images in one batched forward (:class:`~fmnist_pl.optim.evolution.MLPProblem`), the library
updates its search distribution (or a GA its population), and the run's *solution* - the
distribution's centre, or the GA's best - moves. An epoch is still one pass over the 55,000
training images, so epochs, validation after every epoch, the test of the last and best
solutions, TensorBoard, checkpoints and resume are exactly those of a gradient run
(:class:`~fmnist_pl.engine.evaluated.LitEvaluated`). What differs is the compute an image costs:
every row records the forward evaluations (population x images) beside the images seen.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from fmnist_pl.architecture import parameter_count
from fmnist_pl.config import RunPlan
from fmnist_pl.engine.evaluated import LitEvaluated, MemberResult
from fmnist_pl.engine.mlp import MLP, seeded_mlp
from fmnist_pl.engine.population import population_fitness, population_logits
from fmnist_pl.optim import evolution
from fmnist_pl.optim.registry import OptimizerSpec

CHECKPOINT_KEY = "fmnist_searcher"


def initial_solution(run: RunPlan) -> torch.Tensor:
    """The seed's Glorot weights as one flat vector: where the gradient runs of this seed start too."""
    return parameters_to_vector(seeded_mlp(run.hidden, run.seed).parameters()).detach()


def make_search(spec: OptimizerSpec, hidden: Sequence[int], start: torch.Tensor, seed: int) -> tuple[Any, Any]:
    """(problem, searcher) of a gradient-free spec: EvoTorch's algorithm over the flat weights of an
    MLP of ``hidden``, starting at ``start`` (and on its device), its population scored by this
    engine's batched forward."""
    fitness = functools.partial(population_fitness, hidden=tuple(hidden), metric=spec.hparams["fitness"])
    problem = evolution.make_problem(start, seed, spec.hparams, fitness)
    return problem, evolution.build_searcher(spec.info.cls, spec.kwargs(), problem)


def mlp_state(hidden: tuple[int, ...], solution: torch.Tensor) -> dict[str, torch.Tensor]:
    """A flat solution as the ``state_dict`` of a plain :class:`MLP` (loadable with ``weights_only=True``)."""
    net = MLP(hidden)
    vector_to_parameters(solution.detach().float().cpu(), net.parameters())
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class LitSearch(LitEvaluated):
    """One gradient-free run (manual optimization: EvoTorch's ``searcher.step()`` is the update).

    Args:
        run: the planned run; ``run.optimizer`` is a gradient-free registry entry whose
            hyperparameters build the searcher (:func:`fmnist_pl.optim.evolution.build_searcher`).
    """

    def __init__(self, run: RunPlan) -> None:
        super().__init__([run])
        if not run.optimizer.info.gradient_free:
            raise ValueError(f"{run.optimizer.name} is a gradient optimizer: train it with LitLockstep")
        self.save_hyperparameters({"run": run.to_dict()}, logger=False)  # its HPARAMS come with its test results
        self.automatic_optimization = False
        self.run = run
        start = initial_solution(run)
        # The run's solution now, and at its best validation epoch (both restored by a resume).
        self.register_buffer("solution", start.clone())
        self.register_buffer("best_solution", start.clone())
        self.problem: Any = None
        self.searcher: Any = None
        self._sampled_from: torch.Tensor | None = None  # generator state the last generation started from
        self._saved_search: dict[str, Any] | None = None

    @property
    def fitness_batch(self) -> int:
        return int(self.run.optimizer.hparams["batch_size"])

    # ----------------------------------------------------------------- searcher
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.epoch_clock()  # no torch optimizer trains here: EvoTorch's step is the update

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and (
            list(datamodule.seeds) != [self.run.seed]
            or datamodule.stack_seeds
            or datamodule.batch_size != self.fitness_batch
        ):
            raise ValueError(
                f"the DataModule must batch seed {self.run.seed} alone (stack_seeds=False) in "
                f"batches of the fitness batch {self.fitness_batch}"
            )
        # Built here, on the training device; a resumed run's state replaces the fresh one.
        self.problem, self.searcher = make_search(
            self.run.optimizer, self.run.hidden, initial_solution(self.run).to(self.device), self.run.seed
        )
        if self._saved_search is not None:
            evolution.load_searcher_state(self.searcher, self._saved_search)
            self._saved_search = None

    # ----------------------------------------------------------------- training
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        with torch.no_grad():
            # The solution's loss on the batch BEFORE this generation's update, as a gradient run's
            # training loss is its loss before each step.
            logits = self.member_logits(x)
            self._train_loss_sum += self.member_losses(logits, y.unsqueeze(0)).sum(1)
            self._train_correct += (logits.argmax(1) == y).sum(1)
            self.problem.set_batch(x, y)
            self._sampled_from = evolution.step(self.searcher)
            self.solution.copy_(evolution.center(self.searcher))
        self._train_seen += len(y)
        self._train_evaluations += self.problem.evaluated * len(y)
        self.tick(batch_idx)

    # ----------------------------------------------------------------- what LitEvaluated asks
    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return population_logits(self.solution.unsqueeze(0), x, self.run.hidden)

    def best_logits(self, x: torch.Tensor) -> torch.Tensor:
        return population_logits(self.best_solution.unsqueeze(0), x, self.run.hidden)

    def keep_best(self, k: int) -> None:
        self.best_solution.copy_(self.solution)

    def epoch_logged(self, k: int) -> dict[str, float]:
        sigma = evolution.stdev(self.searcher)
        return {} if sigma is None else {"search/stdev": sigma}

    def results(self) -> list[MemberResult]:
        """The run's history, test predictions, solutions as plain-MLP weights, and the searcher's state."""
        import evotorch

        hist = self.histories[0]
        return [
            MemberResult(
                plan=self.run,
                history=hist,
                test_targets=self._test_targets,
                last_state=mlp_state(self.run.hidden, self.solution),
                best_state=mlp_state(self.run.hidden, self.best_solution),
                optimizer_state=_to_cpu(evolution.searcher_state(self.searcher, self._sampled_from)),
                optimizer_implementation=f"EvoTorch {evotorch.__version__} {self.run.optimizer.info.class_name}",
                device=str(self.device),
                lockstep_runs=1,
                test_predictions=self.test_predictions(0),
            )
        ]

    # ----------------------------------------------------------------- resume
    def holds(self, checkpoint: dict[str, Any]) -> bool:
        # The flat solution of this architecture, and the searcher's state beside it.
        return (
            super().holds(checkpoint)
            and isinstance(checkpoint.get(CHECKPOINT_KEY), dict)
            and self._has_tensor(checkpoint, "solution", (parameter_count(self.run.hidden),))
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY] = _to_cpu(evolution.searcher_state(self.searcher, self._sampled_from))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._saved_search = checkpoint.get(CHECKPOINT_KEY)


def _to_cpu(state: Any) -> Any:
    if torch.is_tensor(state):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    return state
