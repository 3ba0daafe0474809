"""The EvoTorch glue: our MLP as an EvoTorch ``Problem``, searchers built from registry specs, and their state.

The algorithms are EvoTorch's (``SNES``, ``PGPE`` with ClipUp, ``CEM``, separable ``CMAES``,
``GeneticAlgorithm`` with its operators); what is written here is only what EvoTorch cannot know:

* :class:`MLPProblem` - a vectorized fitness: the whole ``[P, n]`` population scored at once by
  the fitness the engine injects (its batched forward,
  :func:`fmnist_pl.engine.population.population_fitness`) on the mini-batch of training images
  the engine sets before each generation; the initial population (a GA's) is the seed's Glorot
  weights plus Gaussian noise, so every method starts where the gradient runs of that seed start.
* :func:`build_searcher` - a registry spec's hyperparameters -> the algorithm's arguments.
* :func:`searcher_state` / :func:`load_searcher_state` - everything a searcher's next generation
  depends on (centre, step sizes, covariance paths, ClipUp velocity, a GA's population and the
  problem's random generator) as plain tensors and numbers, so that a resumed run continues
  exactly and checkpoints stay loadable with ``torch.load(weights_only=True)`` - no pickled
  library objects. A resume-equality test holds it to that.
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

if TYPE_CHECKING:
    from evotorch import Problem, SolutionBatch
    from evotorch.algorithms import SearchAlgorithm

# Hyperparameters that are ours, not the algorithm's: the fitness's mini-batch and metric (the GA's
# operator settings and initial spread are taken apart in _build).
FITNESS_KEYS = ("batch_size", "fitness")
FITNESS_SENSE = {"cross_entropy": "min", "accuracy": "max"}
Fitness = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(solutions [P, n], images [B, 784], labels [B]) -> [P]``: the engine's batched forward."""


@functools.cache
def _problem_class() -> type:
    # EvoTorch (and the Ray it imports) take seconds to import: only when a gradient-free run is planned.
    # Defined once per process (cached), so every run's problem is an instance of one class.
    with warnings.catch_warnings():  # its import uses torch.jit.script, which torch now deprecates
        warnings.simplefilter("ignore", FutureWarning)
        from evotorch import Problem
    # It logs an INFO line per problem and optimizer built (dtype, device, actors): ours to say or not.
    logging.getLogger("evotorch").setLevel(logging.WARNING)

    class MLPProblem(Problem):
        """The MLP's flat weights as the solution; fitness on the images set by :meth:`set_batch`.

        Args:
            center: the flat initial weights (the seed's Glorot init, ``parameters_to_vector`` order);
                its length is the solution length, its device the problem's.
            seed: seeds the problem's own generator, which every sample of the search draws from.
            sense: ``min`` (a loss) or ``max`` (an accuracy).
            fitness: scores a population (see :data:`Fitness`); None builds a problem that is never
                evaluated (checking a spec's hyperparameters).
            stdev_init: spread of an initial population around ``center`` (a GA's).
        """

        def __init__(
            self, center: torch.Tensor, seed: int, sense: str, fitness: Fitness | None, stdev_init: float = 0.0
        ) -> None:
            super().__init__(
                sense,
                solution_length=center.numel(),
                dtype=torch.float32,
                device=center.device,
                seed=seed,
                store_solution_stats=False,
            )
            self.fitness = fitness
            self.center_init, self.stdev_init = center, float(stdev_init)
            self.x: torch.Tensor | None = None
            self.y: torch.Tensor | None = None
            self.evaluated = 0  # solutions scored on the current batch (a GA re-evaluates its parents too)

        def set_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
            self.x, self.y, self.evaluated = x, y, 0

        def _fill(self, values: torch.Tensor) -> None:
            values.copy_(self.center_init.expand_as(values))
            if self.stdev_init > 0:
                values.add_(self.make_gaussian(values.shape, center=0.0, stdev=self.stdev_init))

        def _evaluate_batch(self, solutions: SolutionBatch) -> None:
            if self.x is None or self.fitness is None:
                raise RuntimeError("give the problem a fitness and set_batch(x, y) before a generation")
            # EvoTorch hands a ReadOnlyTensor (no in-place methods); the forward only reads it: no copy.
            values = solutions.values.as_subclass(torch.Tensor)
            self.evaluated += len(values)
            solutions.set_evals(self.fitness(values, self.x, self.y))

    return MLPProblem


def make_problem(center: torch.Tensor, seed: int, hparams: Mapping[str, Any], fitness: Fitness | None) -> Problem:
    """The problem for one run (see :class:`MLPProblem` inside :func:`_problem_class`).

    ``fitness`` is injected (the engine's batched forward, already told the architecture and
    metric), so this glue knows EvoTorch and nothing of how a population is evaluated.
    """
    sense = FITNESS_SENSE[str(hparams.get("fitness", "cross_entropy"))]
    return _problem_class()(center, seed, sense, fitness, float(hparams.get("stdev_init", 0.0)))


def _is_ga(cls: type) -> bool:
    from evotorch.algorithms import GeneticAlgorithm

    return issubclass(cls, GeneticAlgorithm)


def build_searcher(cls: type, hparams: Mapping[str, Any], problem: Problem) -> SearchAlgorithm:
    """The EvoTorch algorithm ``cls`` on ``problem``, with a registry spec's hyperparameters.

    Every key the registry lists that is not ours (:data:`FITNESS_KEYS`) is an argument of the
    algorithm; distribution-based methods start their centre at the problem's initial weights.
    """
    kwargs = {k: v for k, v in hparams.items() if k not in FITNESS_KEYS}
    with warnings.catch_warnings():
        # EvoTorch copies center_init with torch.tensor(tensor), which torch warns about; the copy is intended.
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        return _build(cls, kwargs, problem)


def _build(cls: type, kwargs: dict[str, Any], problem: Problem) -> SearchAlgorithm:
    if _is_ga(cls):
        from evotorch.operators import GaussianMutation, TwoPointCrossOver

        # Selection (tournament) happens inside the cross-over operator, as in EvoTorch's examples.
        operators = [
            TwoPointCrossOver(problem, tournament_size=int(kwargs.pop("tournament_size"))),
            GaussianMutation(
                problem,
                stdev=float(kwargs.pop("mutation_stdev")),
                mutation_probability=float(kwargs.pop("mutation_probability")),
            ),
        ]
        kwargs.pop("stdev_init")
        # re_evaluate: a mini-batch fitness is noisy, so parents are scored again on each new batch.
        return cls(problem, operators=operators, re_evaluate=True, **kwargs)
    return cls(problem, center_init=problem.center_init, **kwargs)


def center(searcher: SearchAlgorithm) -> torch.Tensor:
    """The one solution a run stands for: a distribution's centre, or a GA's best on the latest batch."""
    if hasattr(searcher, "_distribution"):
        return searcher._distribution.mu
    if hasattr(searcher, "m"):  # CMAES
        return searcher.m
    population = searcher.population
    return population.values[population.argbest()]


def stdev(searcher: SearchAlgorithm) -> float | None:
    """The search's mean step size (root-mean-square sigma), logged per epoch; None for a GA."""
    if hasattr(searcher, "_distribution"):
        sigma = searcher._distribution.sigma
    elif hasattr(searcher, "m"):
        sigma = searcher.sigma * searcher.A  # separable CMA-ES: sigma * sqrt(diag C)
    else:
        return None
    return float(sigma.float().pow(2).mean().sqrt())


# The attributes each family's next generation depends on (read from EvoTorch 0.6's sources):
# CMAES keeps its state as plain attributes, the Gaussian searchers as the distribution's
# parameters plus the centre optimizer (ClipUp's velocity) - see searcher_state.
_CMAES_STATE = ("m", "sigma", "C", "A", "p_sigma", "p_c")


def step(searcher: SearchAlgorithm) -> torch.Tensor:
    """One generation; returns the state of the problem's random generator it started from.

    A Gaussian searcher draws nothing before it samples (ranking and the update are
    deterministic), so its new population is exactly the sample of its updated distribution
    from that state: what :func:`searcher_state` keeps instead of the population itself.
    """
    before = searcher.problem.generator.get_state()
    searcher.step()
    return before


def searcher_state(searcher: SearchAlgorithm, sampled_from: torch.Tensor | None = None) -> dict[str, Any]:
    """Everything the searcher's future depends on, as tensors and numbers (``weights_only``-safe).

    EvoTorch's Gaussian searchers update from the PREVIOUS generation's samples and fitnesses
    (step k ranks population k-1, moves the distribution, then samples and scores population k),
    so their last population is state, as a GA's is; CMA-ES samples anew and updates in one step.
    With ``sampled_from`` (what :func:`step` returned) a Gaussian searcher's population is kept as
    that generator state plus its P fitnesses and re-drawn on load: a few kB instead of P x n
    floats (213 MB at population 200), written every epoch.
    """
    problem = searcher.problem
    state: dict[str, Any] = {"steps": int(searcher.step_count), "generator": problem.generator.get_state().clone()}
    gaussian = hasattr(searcher, "_distribution")
    if gaussian:
        state["distribution"] = {
            k: v.detach().clone() for k, v in searcher._distribution.parameters.items() if torch.is_tensor(v)
        }
        velocity = getattr(searcher._optimizer, "_velocity", None)
        if searcher._optimizer is not None and velocity is None:
            raise TypeError(f"cannot checkpoint the centre optimizer {type(searcher._optimizer).__name__}")
        if velocity is not None:
            state["velocity"] = velocity.detach().clone()
        state["first_iter"] = bool(searcher._first_iter)
    elif hasattr(searcher, "m"):
        state["cmaes"] = {
            k: (v.detach().clone() if torch.is_tensor(v) else float(v))
            for k, v in ((k, getattr(searcher, k)) for k in _CMAES_STATE)
        }
    population = None if hasattr(searcher, "m") else searcher._population
    if population is not None:
        state["population"] = {"evals": population.evals.detach().clone()}
        if gaussian and sampled_from is not None:
            state["population"]["sampled_from"] = sampled_from.detach().clone()
        else:
            state["population"]["values"] = population.values.detach().clone()
    return state


def load_searcher_state(searcher: SearchAlgorithm, state: Mapping[str, Any]) -> None:
    """Put a :func:`searcher_state` back into a freshly built searcher of the same spec."""
    from evotorch import SolutionBatch

    problem = searcher.problem
    device = problem.device
    searcher._steps_count = int(state["steps"])
    if "distribution" in state:
        params = {k: v.to(device) for k, v in state["distribution"].items()}
        searcher._distribution = searcher._distribution.modified_copy(**params)
        if "velocity" in state:
            searcher._optimizer._velocity = state["velocity"].to(device)
        searcher._first_iter = bool(state["first_iter"])
    elif "cmaes" in state:
        for k, v in state["cmaes"].items():
            setattr(searcher, k, v.to(device) if torch.is_tensor(v) else v)
    if "population" in state:
        saved = state["population"]
        evals = saved["evals"].to(device)
        if searcher._population is None:
            searcher._population = SolutionBatch(problem, popsize=len(evals), device=device, empty=True)
        if "sampled_from" in saved:  # re-draw it exactly as the searcher drew it (see step)
            problem.generator.set_state(saved["sampled_from"].cpu())
            searcher._distribution.sample(out=searcher._population.access_values(), generator=problem)
        else:
            searcher._population.set_values(saved["values"].to(device))
        searcher._population.set_evals(evals)
    problem.generator.set_state(state["generator"].cpu())
