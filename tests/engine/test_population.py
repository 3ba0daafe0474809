"""Population evaluation: P flat weight vectors scored in one batched forward, as the plain MLP would."""

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from fmnist_pl.engine.mlp import MLP, seeded_mlp
from fmnist_pl.engine.population import population_fitness, population_logits, unflatten


def test_batched_fitness_equals_each_member_through_the_plain_mlp():
    torch.manual_seed(0)
    hidden = (32, 16)
    center = parameters_to_vector(seeded_mlp(hidden, 1).parameters())
    solutions = center + 0.05 * torch.randn(6, center.numel())  # a population around a centre
    x, y = torch.rand(50, 784), torch.randint(0, 10, (50,))
    losses = population_fitness(solutions, x, y, hidden)
    accuracy = population_fitness(solutions, x, y, hidden, metric="accuracy")
    logits = population_logits(solutions, x, hidden)
    for p in range(len(solutions)):
        net = MLP(hidden)
        vector_to_parameters(solutions[p], net.parameters())
        out = net(x)
        torch.testing.assert_close(logits[p].T, out, rtol=1e-5, atol=1e-5)
        assert losses[p].item() == pytest.approx(torch.nn.functional.cross_entropy(out, y).item(), rel=1e-5)
        assert accuracy[p].item() == pytest.approx((out.argmax(1) == y).float().mean().item())


def test_layer_views_share_the_solutions_memory_and_shapes_are_checked():
    solutions = torch.zeros(3, 784 * 8 + 8 + 8 * 10 + 10)
    weights, biases = unflatten(solutions, (8,))
    assert [tuple(w.shape) for w in weights] == [(3, 8, 784), (3, 10, 8)]
    solutions[1, 0] = 5.0
    assert weights[0][1, 0, 0] == 5.0  # a view, not a copy
    with pytest.raises(ValueError, match=r"solutions must be \[P, 6370\]"):
        unflatten(torch.zeros(3, 10), (8,))
